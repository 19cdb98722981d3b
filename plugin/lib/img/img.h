/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Compressed delta images: the public API of the image layer.
 *
 * An image is one directory holding an index (uffdwp-index.img), a page
 * stream of independent zstd frames with a seek table (uffdwp-pages.zst) and,
 * for a delta, a "parent" symlink to the previous image. Each task and each
 * shared-memory object has a sorted list of page ranges; a range is stored
 * here as data, is all one byte (zero or fill), or is "in parent". The
 * newest image of a chain describes the whole layout: a page it does not
 * list is absent, whatever older images held. images/FORMAT.md has the
 * bytes.
 *
 * Writing:  uffdwp_img_writer__begin(), then for each object
 *           __begin_object(), __add_pages()/__add_parent()/__add_fill() in
 *           ascending address order, __end_object(); then __commit() and
 *           __free(). Nothing is visible under the final names before the
 *           commit, and a commit is atomic (rename of the index last).
 * Reading:  uffdwp_chain__open() on the newest directory, then a page source
 *           (uffdwp_pagesrc__new()) to read pages out of the chain.
 */
#ifndef UFFDWP_IMG_H__
#define UFFDWP_IMG_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* File names inside an image directory. */
#define UFFDWP_IMG_INDEX "uffdwp-index.img"
#define UFFDWP_IMG_PAGES "uffdwp-pages.zst"
/* The same name CRIU gives its link to the previous dump directory. */
#define UFFDWP_IMG_PARENT "parent"
/* Temporary names, renamed over the final ones at commit. */
#define UFFDWP_IMG_TMP_PREFIX ".uffdwp-tmp-"
#define UFFDWP_IMG_INDEX_TMP  UFFDWP_IMG_TMP_PREFIX "index.img"
#define UFFDWP_IMG_PAGES_TMP  UFFDWP_IMG_TMP_PREFIX "pages.zst"
#define UFFDWP_IMG_PARENT_TMP UFFDWP_IMG_TMP_PREFIX "parent"
/* CRIU's own image names, written by uffdwp_img__flatten_criu(). */
#define UFFDWP_CRIU_PAGEMAP	  "pagemap-%lu.img"
#define UFFDWP_CRIU_SHMEM_PAGEMAP "pagemap-shmem-%lu.img"
#define UFFDWP_CRIU_PAGES	  "pages-%u.img"

#define UFFDWP_IMG_PAGE_SIZE  4096u
#define UFFDWP_IMG_PAGE_SHIFT 12
/* The index version written (images/FORMAT.md); readers take 1 too. */
#define UFFDWP_IMG_VERSION 2
/*
 * Defaults and limits of the options. Level -1 against 1, on the memory of
 * a Python process here: 4 % larger, 20 % faster to write, 30 % faster to
 * read back; still 1.5 times smaller than lz4 (scripts/bench-img).
 */
#define UFFDWP_IMG_DEF_LEVEL   -1
#define UFFDWP_IMG_DEF_FRAME   (64u << 10)
#define UFFDWP_IMG_MAX_FRAME   (16u << 20)
#define UFFDWP_IMG_MAX_THREADS 16
/* Longest chain a reader follows; deeper chains are refused. */
#define UFFDWP_IMG_MAX_DEPTH 4096
#define UFFDWP_IMG_ID_LEN    16

enum uffdwp_img_obj_kind {
	UFFDWP_IMG_OBJ_TASK = 1,  /* id: pid; addresses: virtual */
	UFFDWP_IMG_OBJ_SHMEM = 2, /* id: CRIU shmid; addresses: offsets */
};

enum uffdwp_img_range_kind {
	UFFDWP_IMG_R_DATA = 1,	 /* pages in this image's page stream */
	UFFDWP_IMG_R_PARENT = 2, /* pages are the parent image's */
	UFFDWP_IMG_R_ZERO = 3,	 /* all bytes zero, no data stored */
	UFFDWP_IMG_R_FILL = 4,	 /* all bytes equal to range.fill, no data stored */
};

struct uffdwp_img_opts {
	int level;	     /* zstd level, default UFFDWP_IMG_DEF_LEVEL */
	uint32_t frame_size; /* raw bytes per frame: a multiple of 4096 up to MAX_FRAME */
	int threads;	     /* 1: compress in the caller; N > 1: N worker threads */
	/*
	 * CRIU page files only: rename without fsync(), leaving durability to
	 * a later syncfs() (writes while the tasks are frozen; CRIU's own
	 * images are never synced by CRIU). Frame CRCs still catch a torn file.
	 */
	bool no_sync;
};

/* Fill @o with the defaults. */
void uffdwp_img_opts__init(struct uffdwp_img_opts *o);
/* Whether a writer takes @o: 0, or -EINVAL with the reason logged. */
int uffdwp_img_opts__check(const struct uffdwp_img_opts *o);

/* Sizes, as a writer counted them or as a reader finds them. */
struct uffdwp_img_stats {
	uint64_t pages;	       /* pages listed, all kinds */
	uint64_t data_pages;   /* stored as data */
	uint64_t parent_pages; /* in parent */
	uint64_t fill_pages;   /* zero or one repeated byte: no data */
	uint64_t frames;
	uint64_t stored_bytes; /* compressed frames, without the seek table */
	uint64_t pages_file;   /* whole uffdwp-pages.zst */
	uint64_t index_bytes;  /* whole uffdwp-index.img */
};

/* ------------------------------------------------------------------ writer */

struct uffdwp_img_writer;

/*
 * Start an image in @dir (created if missing; it may hold other files, such
 * as CRIU's, but not an uffdwp image). @parent_dir, if not NULL, is the
 * previous image of the chain: it must be a complete image; @dir gets a
 * relative "parent" symlink to it, unless one already points there. Stale
 * temporary files of an interrupted writer are removed. @opts may be NULL.
 * Returns the writer, or NULL with errno set: EEXIST (@dir already holds an
 * image, or its "parent" link points elsewhere), EINVAL (bad options),
 * EBADMSG/ENOENT (the parent is not a good image), or what the system said.
 */
struct uffdwp_img_writer *uffdwp_img_writer__begin(const char *dir, const char *parent_dir,
						   const struct uffdwp_img_opts *opts);

/*
 * Open the next object. Objects may come in any order but each at most once.
 * Returns 0, -EEXIST (already written), -EINVAL (bad kind, or an object is
 * open), or -ENOMEM.
 */
int uffdwp_img_writer__begin_object(struct uffdwp_img_writer *w, enum uffdwp_img_obj_kind kind,
				    uint64_t id);

/*
 * Add @nr_pages pages at address (or offset) @addr, page aligned, taking
 * their contents from @data. Each page that repeats one byte is recorded as
 * zero/fill and stores nothing. Ranges must come in ascending order without
 * overlap. Returns 0, -EINVAL (order, alignment, no object open), or the
 * -errno of a failed write (-ENOSPC, -EIO); after a failure the writer only
 * accepts __free().
 */
int uffdwp_img_writer__add_pages(struct uffdwp_img_writer *w, uint64_t addr, const void *data,
				 uint64_t nr_pages);

/* Mark @nr_pages at @addr as the parent's. Returns 0, -EINVAL (no parent, order). */
int uffdwp_img_writer__add_parent(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr_pages);

/* Mark @nr_pages at @addr as all @byte (0: zero pages). Returns 0 or -EINVAL. */
int uffdwp_img_writer__add_fill(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr_pages,
				uint8_t byte);

/* Close the open object. Returns 0 or -EINVAL (none open). */
int uffdwp_img_writer__end_object(struct uffdwp_img_writer *w);

/*
 * Flush the last frame, write the seek table and the index, fsync both,
 * rename them to their final names (the index last: that rename is the
 * commit) and fsync the directory. Returns 0 or -errno; on failure nothing
 * new is left under a final name, unless the index rename itself went
 * through and only the directory fsync failed (-EIO, logged).
 */
int uffdwp_img_writer__commit(struct uffdwp_img_writer *w);

/* What was written so far (index_bytes and pages_file are set by the commit). */
void uffdwp_img_writer__stats(const struct uffdwp_img_writer *w, struct uffdwp_img_stats *st);

/* Free @w (NULL is fine). An uncommitted image is discarded: its temporary files go. */
void uffdwp_img_writer__free(struct uffdwp_img_writer *w);

/* ------------------------------------------------------------------ reader */

/* One range of an object, as the reader expands it. Addresses in pages. */
struct uffdwp_img_range {
	uint64_t start;	    /* first page (address >> 12) */
	uint64_t nr_pages;  /* > 0 */
	uint64_t data_page; /* DATA: index of the first page in the page stream */
	uint8_t kind;	    /* enum uffdwp_img_range_kind */
	uint8_t fill;	    /* FILL: the byte */
};

struct uffdwp_img_object {
	uint32_t kind; /* enum uffdwp_img_obj_kind */
	uint64_t id;
	size_t nr_ranges;
	const struct uffdwp_img_range *ranges; /* sorted, disjoint */
	struct uffdwp_img_stats st;	       /* pages by kind; stored_bytes apportioned */
};

struct uffdwp_img_info {
	uint8_t id[UFFDWP_IMG_ID_LEN];
	uint8_t parent_id[UFFDWP_IMG_ID_LEN];
	bool has_parent;
	bool parent_crc_known; /* false for version 1 deltas: parent_crc tells nothing */
	uint32_t parent_crc;   /* the parent's index_crc, as this image was written */
	uint32_t index_crc;    /* the CRC32C this image's index stores for itself */
	uint32_t version;      /* of the index format */
	uint32_t depth;
	uint32_t frame_size;
	int level;
	uint64_t ctime_ns;
	struct uffdwp_img_stats st;
};

struct uffdwp_img;

/*
 * Open the image in @dir and check its index and seek table: magic numbers,
 * version, reserved bits, every length against the file size, the index
 * CRC, the seek table CRC, and that both files belong together. Frames are
 * not read (uffdwp_img__verify_data() does that). The parent is not looked
 * at (uffdwp_chain__open() does that).
 * Returns the image, or NULL with errno: ENOENT (no image, or an incomplete
 * one: the message says which), EBADMSG (corrupt: the message names the
 * file and offset), ENOMEM, or what the system said.
 */
struct uffdwp_img *uffdwp_img__open(const char *dir);
/* Close @img (NULL is fine). */
void uffdwp_img__close(struct uffdwp_img *img);

const struct uffdwp_img_info *uffdwp_img__info(const struct uffdwp_img *img);
const char *uffdwp_img__path(const struct uffdwp_img *img);
size_t uffdwp_img__nr_objects(const struct uffdwp_img *img);
const struct uffdwp_img_object *uffdwp_img__object(const struct uffdwp_img *img, size_t i);
/* The object @kind/@id, or NULL if this image has none. */
const struct uffdwp_img_object *uffdwp_img__find_object(const struct uffdwp_img *img, uint32_t kind,
							uint64_t id);
/*
 * The range of @obj that holds page @page, or NULL. If @next is not NULL
 * and there is none, *next is set to the first page after @page that some
 * range holds (UINT64_MAX if none).
 */
const struct uffdwp_img_range *uffdwp_img__find_range(const struct uffdwp_img_object *obj,
						      uint64_t page, uint64_t *next);

/*
 * Read and check every frame: CRC32C of the compressed bytes, zstd's own
 * content checksum, and the decompressed size. Returns 0 or -EBADMSG (the
 * message names the file and offset), -EIO, -ENOMEM.
 */
int uffdwp_img__verify_data(struct uffdwp_img *img);

/* ------------------------------------------------------------------- chain */

struct uffdwp_chain;

/*
 * Open the image in @dir and every ancestor through the "parent" links,
 * refusing a chain whose parent is missing, is not the image the child was
 * written against (id, index CRC, depth), or loops. Returns the chain, or
 * NULL with errno: ENOENT, EBADMSG (corrupt or mismatched chain; the
 * message gives the reason), ELOOP, ENOMEM.
 */
struct uffdwp_chain *uffdwp_chain__open(const char *dir);
void uffdwp_chain__close(struct uffdwp_chain *c);
/* Number of images; image 0 is the newest, the last is the base. */
size_t uffdwp_chain__length(const struct uffdwp_chain *c);
struct uffdwp_img *uffdwp_chain__image(const struct uffdwp_chain *c, size_t i);

/*
 * uffdwp_img__verify_data() on every image, then check that every "in
 * parent" range of each image is held by its parent. Returns 0, -EBADMSG or
 * another -errno.
 */
int uffdwp_chain__verify(struct uffdwp_chain *c);

/* ------------------------------------------------------------- page source */

/* Where a run of pages lives, as uffdwp_pagesrc__locate() finds it. */
struct uffdwp_page_loc {
	uint64_t nr_pages;  /* pages from the asked page on that share this place */
	uint32_t level;	    /* chain index of the image holding them (0: newest) */
	uint8_t kind;	    /* DATA, ZERO or FILL */
	uint8_t fill;	    /* FILL: the byte */
	uint64_t data_page; /* DATA: stream index of the asked page in that image */
};

/* Counters of a page source. */
struct uffdwp_pagesrc_stats {
	uint64_t reads;	      /* pages returned */
	uint64_t frame_hits;  /* frames found in the cache */
	uint64_t frame_loads; /* frames read and decompressed */
};

struct uffdwp_pagesrc;

/*
 * A page source over @c, caching up to @cache_frames decompressed frames (0:
 * the default, 16). @c must outlive it. Safe to call from several threads
 * (one lock; decompression happens under it). Returns NULL with errno.
 */
struct uffdwp_pagesrc *uffdwp_pagesrc__new(struct uffdwp_chain *c, unsigned int cache_frames);
void uffdwp_pagesrc__free(struct uffdwp_pagesrc *ps);

/*
 * Find where page @page (an address >> 12) of object @kind/@id lives, from
 * the newest image down through "in parent" ranges. Returns 0 and fills
 * @loc, -ENOENT (the newest image does not list the page), or -EBADMSG (an
 * "in parent" range that the parent does not hold).
 */
int uffdwp_pagesrc__locate(struct uffdwp_pagesrc *ps, uint32_t kind, uint64_t id, uint64_t page,
			   struct uffdwp_page_loc *loc);

/*
 * Copy @nr_pages pages at address @addr (page aligned) of object @kind/@id
 * into @buf. Returns 0, -ENOENT (some page is absent; @buf is partly
 * written), -EINVAL (unaligned), -EBADMSG (corrupt frame: the message names
 * the file and offset), -EIO, -ENOMEM.
 */
int uffdwp_pagesrc__read(struct uffdwp_pagesrc *ps, uint32_t kind, uint64_t id, uint64_t addr,
			 void *buf, uint64_t nr_pages);

void uffdwp_pagesrc__stats(const struct uffdwp_pagesrc *ps, struct uffdwp_pagesrc_stats *st);

/* ------------------------------------------------------------------- tools */

/*
 * Progress of merge and flatten: @done of @total bytes of pages, at least
 * every 16 MiB, and once with @done == @total at the end. NULL: none.
 */
typedef void (*uffdwp_img_progress_fn)(void *arg, uint64_t done, uint64_t total);

/*
 * Write into @out a base image (no parent) equal to chain @c: the objects
 * and layout of the newest image, each page taken from the newest image
 * that has it. Returns 0 or -errno.
 */
int uffdwp_img__merge(struct uffdwp_chain *c, const char *out, const struct uffdwp_img_opts *opts,
		      uffdwp_img_progress_fn progress, void *arg);

/*
 * Write chain @c as plain CRIU images into directory @out, new or empty:
 * pagemap-<pid>.img per task, pagemap-shmem-<shmid>.img per shared memory
 * object, and their pages-<n>.img, n from 1 in object order. Zero and fill
 * pages are written out as data. All or nothing: the files are written
 * under temporary names and fsynced, then renamed; after a failure @out is
 * as it was (removed if it was made). Returns 0, -ENOTEMPTY (@out holds
 * something) or -errno.
 */
int uffdwp_img__flatten_criu(struct uffdwp_chain *c, const char *out,
			     uffdwp_img_progress_fn progress, void *arg);

/* Hex of @id into @buf (2 * UFFDWP_IMG_ID_LEN + 1 bytes). Returns @buf. */
char *uffdwp_img__id_str(const uint8_t *id, char *buf);

#endif /* UFFDWP_IMG_H__ */
