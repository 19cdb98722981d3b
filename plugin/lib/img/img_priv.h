/* SPDX-License-Identifier: GPL-2.0 */
/* Internals shared by the img_*.c files; not an API. */
#ifndef UFFDWP_IMG_PRIV_H__
#define UFFDWP_IMG_PRIV_H__

#include <stdint.h>

#include "img/img.h"
#include "img/img_zstd.h"

/* uffdwp-index.img: header and trailer around the records. */
#define UFFDWP_IDX_MAGIC   0x49575755u /* "UWWI" read as a little-endian u32 */
#define UFFDWP_IDX_END	   0x45575755u /* "UWWE" */
#define UFFDWP_IDX_HDR	   16
#define UFFDWP_IDX_TRAILER 8
/*
 * Version 2 records in a delta's parent_crc the CRC its parent's index
 * stores; version 1 writers took the CRC of the whole file, stored CRC and
 * end magic included: the CRC32C residue, the same for every index.
 */
#define UFFDWP_IDX_VERSION     UFFDWP_IMG_VERSION
#define UFFDWP_IDX_VERSION_MIN 1
/* An index bigger than this is refused before it is read. */
#define UFFDWP_IDX_MAX (1ull << 32)

/* Range kind word: kind in bits 0-7, fill byte in 8-15, the rest reserved. */
#define UFFDWP_RKIND_KIND(w)	 ((w)&0xff)
#define UFFDWP_RKIND_FILL(w)	 (((w) >> 8) & 0xff)
#define UFFDWP_RKIND_RESERVED(w) ((w)&0xffff0000u)
#define UFFDWP_RKIND(kind, fill) ((uint32_t)(kind) | (uint32_t)(fill) << 8)

/* Highest page number: 64-bit addresses, 4 KiB pages. */
#define UFFDWP_IMG_MAX_PAGE (UINT64_MAX >> UFFDWP_IMG_PAGE_SHIFT)

struct uffdwp_img {
	char *path;	  /* the directory, as given */
	char *index_path; /* for messages */
	char *pages_path;
	int dirfd;
	int pages_fd;
	struct uffdwp_img_info info;
	struct uffdwp_ztable zt;
	size_t nr_objects;
	struct uffdwp_img_object *objects; /* sorted by kind, id */
	struct uffdwp_img_range *ranges;   /* all objects' ranges, one array */
};

/* Build "@dir/@name" into a new string, or NULL. */
char *uffdwp_img_path_join(const char *dir, const char *name);

#endif /* UFFDWP_IMG_PRIV_H__ */
