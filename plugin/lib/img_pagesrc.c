// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "img_priv.h"
#include "img_zstd.h"

#define LOG_PREFIX "img: "
#include "log.h"

#define PAGESRC_DEF_CACHE 16

struct cache_ent {
	uint8_t *buf;
	size_t cap;
	uint64_t stamp; /* 0: empty */
	uint32_t level;
	uint32_t frame;
};

struct uffdwp_pagesrc {
	struct uffdwp_chain *c;
	pthread_mutex_t lock;
	struct cache_ent *ents;
	unsigned int nr_ents;
	uint64_t clock;
	ZSTD_DCtx *dctx;
	void *cbuf;
	struct uffdwp_pagesrc_stats st;
};

struct uffdwp_pagesrc *uffdwp_pagesrc__new(struct uffdwp_chain *c, unsigned int cache_frames)
{
	struct uffdwp_pagesrc *ps;
	uint32_t max_c = 1;
	size_t i;

	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->c = c;
	ps->nr_ents = cache_frames ? cache_frames : PAGESRC_DEF_CACHE;
	for (i = 0; i < uffdwp_chain__length(c); i++)
		if (uffdwp_chain__image(c, i)->zt.max_csize > max_c)
			max_c = uffdwp_chain__image(c, i)->zt.max_csize;
	ps->ents = calloc(ps->nr_ents, sizeof(*ps->ents));
	ps->cbuf = malloc(max_c);
	ps->dctx = ZSTD_createDCtx();
	if (!ps->ents || !ps->cbuf || !ps->dctx) {
		uffdwp_pagesrc__free(ps);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&ps->lock, NULL);
	return ps;
}

void uffdwp_pagesrc__free(struct uffdwp_pagesrc *ps)
{
	unsigned int i;

	if (!ps)
		return;
	if (ps->ents) {
		for (i = 0; i < ps->nr_ents; i++)
			free(ps->ents[i].buf);
		pthread_mutex_destroy(&ps->lock);
	}
	free(ps->ents);
	free(ps->cbuf);
	ZSTD_freeDCtx(ps->dctx);
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

/* The decompressed frame @frame of chain image @level, from the cache or loaded into it. */
static int get_frame(struct uffdwp_pagesrc *ps, uint32_t level, uint32_t frame, const uint8_t **out)
{
	struct uffdwp_img *img = uffdwp_chain__image(ps->c, level);
	struct cache_ent *e, *victim = &ps->ents[0];
	unsigned int i;
	long r;

	for (i = 0; i < ps->nr_ents; i++) {
		e = &ps->ents[i];
		if (e->stamp && e->level == level && e->frame == frame) {
			e->stamp = ++ps->clock;
			ps->st.frame_hits++;
			*out = e->buf;
			return 0;
		}
		if (e->stamp < victim->stamp)
			victim = e;
	}
	e = victim;
	e->stamp = 0;
	if (e->cap < img->zt.max_rsize) {
		free(e->buf);
		e->cap = 0;
		e->buf = malloc(img->zt.max_rsize);
		if (!e->buf)
			return -ENOMEM;
		e->cap = img->zt.max_rsize;
	}
	r = uffdwp_zframe__load(&img->zt, img->pages_fd, img->pages_path, frame, ps->dctx, ps->cbuf,
				e->buf);
	if (r < 0)
		return r;
	e->level = level;
	e->frame = frame;
	e->stamp = ++ps->clock;
	ps->st.frame_loads++;
	*out = e->buf;
	return 0;
}

static int copy_data(struct uffdwp_pagesrc *ps, uint32_t level, uint64_t dp, uint8_t *buf,
		     uint64_t nr)
{
	struct uffdwp_img *img = uffdwp_chain__image(ps->c, level);
	const uint8_t *f = NULL;
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
		err = get_frame(ps, level, idx, &f);
		if (err)
			return err;
		n = img->zt.rpage[idx + 1] - dp;
		if (n > nr)
			n = nr;
		memcpy(buf, f + (dp - img->zt.rpage[idx]) * UFFDWP_IMG_PAGE_SIZE,
		       n * UFFDWP_IMG_PAGE_SIZE);
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
	*st = ps->st;
}
