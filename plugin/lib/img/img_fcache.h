/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A cache of decompressed frames of page files (img_zstd.h), least
 * recently used first out. The page source of a chain (img_pagesrc.c)
 * keeps one for all its images; the CRIU backend (img_criu_backend.c) one
 * for every page file a process reads, so that lazy-pages serving the
 * layers of a chain has one budget for all of them.
 *
 * A reader takes a key (__key()) for its page file and gives it back
 * (__forget()) when it closes the file. Thread safe.
 */
#ifndef UFFDWP_IMG_FCACHE_H__
#define UFFDWP_IMG_FCACHE_H__

#include <stdint.h>

#include "img/img_zstd.h"

struct uffdwp_fcache;

struct uffdwp_fcache_stats {
	uint64_t hits;	/* frames found in the cache */
	uint64_t loads; /* frames read, checked and decompressed */
};

/* A cache of @nr_frames frames (0: 16). Returns it, or NULL with errno. */
struct uffdwp_fcache *uffdwp_fcache__new(unsigned int nr_frames);
/* NULL is fine. Every key must have been forgotten. */
void uffdwp_fcache__free(struct uffdwp_fcache *fc);

/* A key no other page file has, for __read() and __forget(). */
uint64_t uffdwp_fcache__key(struct uffdwp_fcache *fc);

/*
 * Copy @len bytes at @off of raw frame @idx of the page file @fd (seek
 * table @zt, @path for messages, @key its own) into @buf, reading, checking
 * and decompressing the frame if it is not cached. @off + @len must lie in
 * the frame. Returns 0, -EBADMSG (the message names the file and offset),
 * -EIO or -ENOMEM.
 */
int uffdwp_fcache__read(struct uffdwp_fcache *fc, uint64_t key, const struct uffdwp_ztable *zt,
			int fd, const char *path, uint32_t idx, uint64_t off, void *buf,
			uint64_t len);

/* Drop the frames of @key: its page file is closed. */
void uffdwp_fcache__forget(struct uffdwp_fcache *fc, uint64_t key);

void uffdwp_fcache__stats(struct uffdwp_fcache *fc, struct uffdwp_fcache_stats *st);

#endif /* UFFDWP_IMG_FCACHE_H__ */
