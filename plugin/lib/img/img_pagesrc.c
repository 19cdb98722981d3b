// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "img/img.h"
#include "img/img_fcache.h"
#include "img/img_priv.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

struct uffdwp_pagesrc {
	struct uffdwp_chain *c;
	pthread_mutex_t lock;
	struct uffdwp_fcache *fc;
	uint64_t *keys; /* of each image of the chain in fc */
	struct uffdwp_pagesrc_stats st;
};

struct uffdwp_pagesrc *uffdwp_pagesrc__new(struct uffdwp_chain *c, unsigned int cache_frames)
{
	struct uffdwp_pagesrc *ps;
	size_t i;

	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->c = c;
	ps->fc = uffdwp_fcache__new(cache_frames);
	ps->keys = calloc(uffdwp_chain__length(c), sizeof(*ps->keys));
	if (!ps->fc || !ps->keys) {
		uffdwp_fcache__free(ps->fc);
		free(ps->keys);
		free(ps);
		errno = ENOMEM;
		return NULL;
	}
	for (i = 0; i < uffdwp_chain__length(c); i++)
		ps->keys[i] = uffdwp_fcache__key(ps->fc);
	pthread_mutex_init(&ps->lock, NULL);
	return ps;
}

void uffdwp_pagesrc__free(struct uffdwp_pagesrc *ps)
{
	if (!ps)
		return;
	uffdwp_fcache__free(ps->fc);
	free(ps->keys);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
}

static int locate(struct uffdwp_pagesrc *ps, uint32_t kind, uint64_t id, uint64_t page,
		  struct uffdwp_page_loc *loc)
{
	const struct uffdwp_img_object *o;
	const struct uffdwp_img_range *r;
	uint64_t nr = UINT64_MAX, left;
	struct uffdwp_img *img;
	size_t level;

	for (level = 0; level < uffdwp_chain__length(ps->c); level++) {
		img = uffdwp_chain__image(ps->c, level);
		o = uffdwp_img__find_object(img, kind, id);
		r = o ? uffdwp_img__find_range(o, page, NULL) : NULL;
		if (!r) {
			if (!level)
				return -ENOENT;
			pr_err("%s: object %u/%" PRIu64 " page %#" PRIx64
			       " is in parent, but this parent does not have it\n",
			       img->path, kind, id, page << UFFDWP_IMG_PAGE_SHIFT);
			return -EBADMSG;
		}
		left = r->start + r->nr_pages - page;
		if (left < nr)
			nr = left;
		if (r->kind == UFFDWP_IMG_R_PARENT)
			continue;
		loc->nr_pages = nr;
		loc->level = level;
		loc->kind = r->kind;
		loc->fill = r->kind == UFFDWP_IMG_R_FILL ? r->fill : 0;
		loc->data_page = r->kind == UFFDWP_IMG_R_DATA ? r->data_page + page - r->start : 0;
		return 0;
	}
	/* The base image has no parent: uffdwp_img__open() refuses such ranges. */
	return -EBADMSG;
}

int uffdwp_pagesrc__locate(struct uffdwp_pagesrc *ps, uint32_t kind, uint64_t id, uint64_t page,
			   struct uffdwp_page_loc *loc)
{
	int err;

	pthread_mutex_lock(&ps->lock);
	err = locate(ps, kind, id, page, loc);
	pthread_mutex_unlock(&ps->lock);
	return err;
}

static int copy_data(struct uffdwp_pagesrc *ps, uint32_t level, uint64_t dp, uint8_t *buf,
		     uint64_t nr)
{
	struct uffdwp_img *img = uffdwp_chain__image(ps->c, level);
	uint64_t n;
	long idx;
	int err;

	while (nr) {
		idx = uffdwp_ztable__find(&img->zt, dp);
		if (idx < 0) {
			pr_err("%s: data page %" PRIu64 " is past the last frame\n",
			       img->pages_path, dp);
			return -EBADMSG;
		}
		n = img->zt.rpage[idx + 1] - dp;
		if (n > nr)
			n = nr;
		err = uffdwp_fcache__read(ps->fc, ps->keys[level], &img->zt, img->pages_fd,
					  img->pages_path, idx,
					  (dp - img->zt.rpage[idx]) * UFFDWP_IMG_PAGE_SIZE, buf,
					  n * UFFDWP_IMG_PAGE_SIZE);
		if (err)
			return err;
		buf += n * UFFDWP_IMG_PAGE_SIZE;
		dp += n;
		nr -= n;
	}
	return 0;
}

int uffdwp_pagesrc__read(struct uffdwp_pagesrc *ps, uint32_t kind, uint64_t id, uint64_t addr,
			 void *buf, uint64_t nr_pages)
{
	uint64_t page = addr >> UFFDWP_IMG_PAGE_SHIFT, n;
	struct uffdwp_page_loc loc;
	uint8_t *p = buf;
	int err = 0;

	if (addr % UFFDWP_IMG_PAGE_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&ps->lock);
	while (nr_pages) {
		err = locate(ps, kind, id, page, &loc);
		if (err)
			break;
		n = loc.nr_pages < nr_pages ? loc.nr_pages : nr_pages;
		if (loc.kind == UFFDWP_IMG_R_DATA) {
			err = copy_data(ps, loc.level, loc.data_page, p, n);
			if (err)
				break;
		} else {
			memset(p, loc.fill, n * UFFDWP_IMG_PAGE_SIZE);
		}
		ps->st.reads += n;
		p += n * UFFDWP_IMG_PAGE_SIZE;
		page += n;
		nr_pages -= n;
	}
	pthread_mutex_unlock(&ps->lock);
	return err;
}

void uffdwp_pagesrc__stats(const struct uffdwp_pagesrc *ps, struct uffdwp_pagesrc_stats *st)
{
	struct uffdwp_fcache_stats fst;

	uffdwp_fcache__stats(ps->fc, &fst);
	*st = ps->st;
	st->frame_hits = fst.hits;
	st->frame_loads = fst.loads;
}
