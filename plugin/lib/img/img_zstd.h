/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The page stream of an image: independent zstd frames, each over up to
 * frame_size raw bytes, then a seek table in a zstd skippable frame, so the
 * file stays a valid zstd stream (`zstd -d` prints the raw pages) and any
 * frame is found without reading the others. images/FORMAT.md has the bytes.
 */
#ifndef UFFDWP_IMG_ZSTD_H__
#define UFFDWP_IMG_ZSTD_H__

#include "base/io.h"
#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

/* zstd's skippable frame magic, the first of the 16 it reserves. */
#define UFFDWP_ZSKIP_MAGIC 0x184d2a5eu
/* Last four bytes of the page file: "UWPS" read as a little-endian u32. */
#define UFFDWP_ZSEEK_MAGIC 0x53505755u
/* Skippable frame header (magic, size) and the table footer. */
#define UFFDWP_ZSKIP_HDR    8
#define UFFDWP_ZSEEK_FOOTER 16
#define UFFDWP_ZSEEK_ENTRY  12

struct uffdwp_zwriter;

/*
 * A level below zstd's range: frames of raw blocks, still zstd frames that
 * any reader decodes, written at the cost of a copy (for writes while the
 * tasks are frozen).
 */
#define UFFDWP_ZLEVEL_STORE (-1000000)

/*
 * A frame writer appending to @fd (named @path in messages). Frames hold
 * @frame_size raw bytes (the last one less) compressed at @level with zstd's
 * content checksum. @threads > 1 compresses on that many worker threads,
 * frames still in order and independent. Returns NULL with errno.
 */
struct uffdwp_zwriter *uffdwp_zwriter__new(int fd, const char *path, int level, uint32_t frame_size,
					   int threads);

/* Append @len raw bytes. Returns 0 or -errno (-ENOSPC, -EIO...). */
int uffdwp_zwriter__write(struct uffdwp_zwriter *zw, const void *data, size_t len);

/*
 * Compress and write what is left, then the seek table. Returns 0 and sets
 * *@file_size and *@seek_crc, or -errno.
 */
int uffdwp_zwriter__finish(struct uffdwp_zwriter *zw, uint64_t *file_size, uint32_t *seek_crc);

/* Raw bytes taken, compressed bytes written, frames written. */
void uffdwp_zwriter__counts(const struct uffdwp_zwriter *zw, uint64_t *raw, uint64_t *stored,
			    uint64_t *frames);

/* Stop the workers and free @zw (NULL is fine). Does not close the fd. */
void uffdwp_zwriter__free(struct uffdwp_zwriter *zw);

/* A seek table as read back. */
struct uffdwp_ztable {
	uint32_t nframes;
	uint32_t max_csize;  /* largest compressed frame */
	uint32_t max_rsize;  /* largest raw frame */
	uint32_t crc;	     /* the table's own CRC32C */
	uint64_t file_size;  /* the whole page file */
	uint64_t *coff;	     /* nframes + 1 compressed offsets */
	uint64_t *rpage;     /* nframes + 1 first raw page of each frame */
	uint32_t *frame_crc; /* CRC32C of each compressed frame */
};

/*
 * Read and check the seek table of page file @fd (@path for messages).
 * Frames must hold whole pages, at most @max_rsize bytes each. Returns 0,
 * -EBADMSG (the message names the file and offset), -ENOMEM or -EIO.
 */
int uffdwp_ztable__load(struct uffdwp_ztable *t, int fd, const char *path, uint32_t max_rsize);
void uffdwp_ztable__fini(struct uffdwp_ztable *t);

/* The frame holding raw page @page, or -1 if past the end. */
long uffdwp_ztable__find(const struct uffdwp_ztable *t, uint64_t page);

/*
 * Read frame @idx into @cbuf (t->max_csize bytes), check its CRC32C, and
 * decompress it into @out (t->max_rsize bytes) with @dctx, which checks
 * zstd's content checksum. Returns the raw size, or -EBADMSG (message names
 * @path and the offset), -EIO.
 */
long uffdwp_zframe__load(const struct uffdwp_ztable *t, int fd, const char *path, uint32_t idx,
			 ZSTD_DCtx *dctx, void *cbuf, void *out);

/* Little-endian helpers shared by the image files. */
static inline void uffdwp_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static inline uint32_t uffdwp_get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif /* UFFDWP_IMG_ZSTD_H__ */
