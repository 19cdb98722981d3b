// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "img/img_fcache.h"

#define FCACHE_DEF_FRAMES 16

struct fcache_ent {
	uint8_t *buf;
	size_t cap;
	uint64_t stamp; /* 0: empty */
	uint64_t key;
	uint32_t frame;
};

struct uffdwp_fcache {
	pthread_mutex_t lock;
	struct fcache_ent *ents;
	unsigned int nr_ents;
	uint64_t clock, next_key;
	ZSTD_DCtx *dctx;
	void *cbuf;
	size_t cbuf_cap;
	struct uffdwp_fcache_stats st;
};

struct uffdwp_fcache *uffdwp_fcache__new(unsigned int nr_frames)
{
	struct uffdwp_fcache *fc;

	fc = calloc(1, sizeof(*fc));
	if (!fc)
		return NULL;
	fc->nr_ents = nr_frames ? nr_frames : FCACHE_DEF_FRAMES;
	fc->ents = calloc(fc->nr_ents, sizeof(*fc->ents));
	fc->dctx = ZSTD_createDCtx();
	if (!fc->ents || !fc->dctx) {
		free(fc->ents);
		ZSTD_freeDCtx(fc->dctx);
		free(fc);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&fc->lock, NULL);
	return fc;
}

void uffdwp_fcache__free(struct uffdwp_fcache *fc)
{
	unsigned int i;

	if (!fc)
		return;
	for (i = 0; i < fc->nr_ents; i++)
		free(fc->ents[i].buf);
	free(fc->ents);
	free(fc->cbuf);
	ZSTD_freeDCtx(fc->dctx);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

uint64_t uffdwp_fcache__key(struct uffdwp_fcache *fc)
{
	uint64_t key;

	pthread_mutex_lock(&fc->lock);
	key = ++fc->next_key;
	pthread_mutex_unlock(&fc->lock);
	return key;
}

/* Buffers at least @size bytes long: frames of page files differ in size. */
static int grow(uint8_t **buf, size_t *cap, size_t size)
{
	uint8_t *p;

	if (*cap >= size)
		return 0;
	p = malloc(size);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = size;
	return 0;
}

/* The frame from the cache or loaded into it; called with the lock held. */
static int get_frame(struct uffdwp_fcache *fc, uint64_t key, const struct uffdwp_ztable *zt, int fd,
		     const char *path, uint32_t idx, const uint8_t **out)
{
	struct fcache_ent *e, *victim = &fc->ents[0];
	unsigned int i;
	long n;
	int err;

	for (i = 0; i < fc->nr_ents; i++) {
		e = &fc->ents[i];
		if (e->stamp && e->key == key && e->frame == idx) {
			e->stamp = ++fc->clock;
			fc->st.hits++;
			*out = e->buf;
			return 0;
		}
		if (e->stamp < victim->stamp)
			victim = e;
	}
	e = victim;
	e->stamp = 0;
	err = grow(&e->buf, &e->cap, zt->max_rsize);
	if (!err)
		err = grow((uint8_t **)&fc->cbuf, &fc->cbuf_cap, zt->max_csize ? zt->max_csize : 1);
	if (err)
		return err;
	n = uffdwp_zframe__load(zt, fd, path, idx, fc->dctx, fc->cbuf, e->buf);
	if (n < 0)
		return n;
	e->key = key;
	e->frame = idx;
	e->stamp = ++fc->clock;
	fc->st.loads++;
	*out = e->buf;
	return 0;
}

int uffdwp_fcache__read(struct uffdwp_fcache *fc, uint64_t key, const struct uffdwp_ztable *zt,
			int fd, const char *path, uint32_t idx, uint64_t off, void *buf,
			uint64_t len)
{
	const uint8_t *f = NULL;
	int err;

	pthread_mutex_lock(&fc->lock);
	err = get_frame(fc, key, zt, fd, path, idx, &f);
	if (!err)
		memcpy(buf, f + off, len);
	pthread_mutex_unlock(&fc->lock);
	return err;
}

void uffdwp_fcache__forget(struct uffdwp_fcache *fc, uint64_t key)
{
	unsigned int i;

	pthread_mutex_lock(&fc->lock);
	for (i = 0; i < fc->nr_ents; i++)
		if (fc->ents[i].key == key)
			fc->ents[i].stamp = 0;
	pthread_mutex_unlock(&fc->lock);
}

void uffdwp_fcache__stats(struct uffdwp_fcache *fc, struct uffdwp_fcache_stats *st)
{
	pthread_mutex_lock(&fc->lock);
	*st = fc->st;
	pthread_mutex_unlock(&fc->lock);
}
