// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "img/img.h"
#include "img/img_crc.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

enum slot_state {
	SLOT_FREE,   /* owned by the producer, being filled */
	SLOT_QUEUED, /* full, waiting for a worker */
	SLOT_BUSY,   /* a worker compresses it */
	SLOT_DONE,   /* compressed, waiting to be written in order */
};

struct zslot {
	uint8_t *raw;
	size_t raw_len;
	uint8_t *cbuf;
	size_t c_len;
	uint32_t crc;
	int err;
	uint64_t seq;
	enum slot_state state;
};

struct uffdwp_zwriter {
	int fd;
	const char *path;
	int level;
	uint32_t frame_size;
	size_t cbound;

	/* Compression in the caller (threads == 1). */
	ZSTD_CCtx *cctx;

	/* Slots are used round robin: frame number s goes into slot s % nslots. */
	struct zslot *slots;
	unsigned int nslots;
	uint64_t fill_seq;  /* frame being filled */
	uint64_t write_seq; /* next frame to write out */

	pthread_t *tids;
	int nr_tids;
	pthread_mutex_t lock;
	pthread_cond_t work_cond; /* a slot was queued, or stop */
	pthread_cond_t done_cond; /* a slot is done */
	bool stop;
	bool sync_init;

	uint32_t *tab; /* 3 words per frame: csize, rsize, crc */
	uint64_t nframes, tab_cap;
	uint64_t raw_bytes, stored_bytes;
	int err;
};

/*
 * UFFDWP_ZLEVEL_STORE: a zstd frame of raw blocks (RFC 8878, 3.1.1), which
 * every zstd decoder reads, written at the cost of a copy. The frame header
 * is single segment with the content size; blocks hold at most 128 KiB.
 */
static size_t store_frame(uint8_t *dst, const uint8_t *src, size_t n)
{
	uint8_t *p = dst;
	size_t off = 0;

	p[0] = 0x28, p[1] = 0xb5, p[2] = 0x2f, p[3] = 0xfd; /* ZSTD_MAGICNUMBER, little-endian */
	p += 4;
	if (n >= 256 && n < 65536 + 256) {
		*p++ = 1 << 6 | 1 << 5; /* 2-byte content size, less 256; single segment */
		p[0] = (n - 256) & 0xff, p[1] = (n - 256) >> 8;
		p += 2;
	} else {
		*p++ = 2 << 6 | 1 << 5; /* 4-byte content size; single segment */
		p[0] = n & 0xff, p[1] = n >> 8 & 0xff, p[2] = n >> 16 & 0xff, p[3] = n >> 24 & 0xff;
		p += 4;
	}
	do {
		size_t bs = n - off < ZSTD_BLOCKSIZE_MAX ? n - off : ZSTD_BLOCKSIZE_MAX;
		uint32_t hdr = (uint32_t)(bs << 3) | (off + bs == n); /* type 0: raw */

		p[0] = hdr & 0xff, p[1] = hdr >> 8 & 0xff, p[2] = hdr >> 16 & 0xff;
		memcpy(p + 3, src + off, bs);
		p += 3 + bs;
		off += bs;
	} while (off < n);
	return p - dst;
}

static ZSTD_CCtx *cctx_new(int level)
{
	ZSTD_CCtx *c;

	if (level == UFFDWP_ZLEVEL_STORE)
		return NULL;
	c = ZSTD_createCCtx();

	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
	    /* CRC32C over the compressed frame covers it: XXH64 cost a third of decoding. */
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1))) {
		ZSTD_freeCCtx(c);
		errno = EINVAL;
		return NULL;
	}
	return c;
}

static void slot_compress(struct zslot *s, ZSTD_CCtx *c, size_t cbound)
{
	size_t r = c ? ZSTD_compress2(c, s->cbuf, cbound, s->raw, s->raw_len)
		     : store_frame(s->cbuf, s->raw, s->raw_len);

	if (ZSTD_isError(r)) {
		pr_err("zstd compression failed: %s\n", ZSTD_getErrorName(r));
		s->err = -EIO;
		return;
	}
	s->c_len = r;
	s->crc = uffdwp_crc32c(0, s->cbuf, r);
	s->err = 0;
}

static void *zworker(void *arg)
{
	struct uffdwp_zwriter *zw = arg;
	ZSTD_CCtx *c = cctx_new(zw->level);
	struct zslot *s;
	unsigned int i;

	pthread_mutex_lock(&zw->lock);
	for (;;) {
		s = NULL;
		for (i = 0; i < zw->nslots; i++)
			if (zw->slots[i].state == SLOT_QUEUED && (!s || zw->slots[i].seq < s->seq))
				s = &zw->slots[i];
		if (!s) {
			if (zw->stop)
				break;
			pthread_cond_wait(&zw->work_cond, &zw->lock);
			continue;
		}
		s->state = SLOT_BUSY;
		pthread_mutex_unlock(&zw->lock);
		if (c || zw->level == UFFDWP_ZLEVEL_STORE)
			slot_compress(s, c, zw->cbound);
		else
			s->err = -ENOMEM;
		pthread_mutex_lock(&zw->lock);
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&zw->done_cond);
	}
	pthread_mutex_unlock(&zw->lock);
	ZSTD_freeCCtx(c);
	return NULL;
}

struct uffdwp_zwriter *uffdwp_zwriter__new(int fd, const char *path, int level, uint32_t frame_size,
					   int threads)
{
	struct uffdwp_zwriter *zw;
	unsigned int i;
	int err;

	zw = calloc(1, sizeof(*zw));
	if (!zw)
		return NULL;
	zw->fd = fd;
	zw->path = path;
	zw->level = level;
	zw->frame_size = frame_size;
	/* A stored frame takes 4 + 5 + 3 bytes per 128 KiB more than the raw bytes. */
	zw->cbound = ZSTD_compressBound(frame_size) + 16 + 3 * (frame_size / ZSTD_BLOCKSIZE_MAX);
	zw->nslots = threads > 1 ? 2 * threads : 1;

	zw->slots = calloc(zw->nslots, sizeof(*zw->slots));
	if (!zw->slots)
		goto err_free;
	for (i = 0; i < zw->nslots; i++) {
		zw->slots[i].raw = malloc(frame_size);
		zw->slots[i].cbuf = malloc(zw->cbound);
		if (!zw->slots[i].raw || !zw->slots[i].cbuf)
			goto err_free;
	}

	if (threads <= 1) {
		zw->cctx = cctx_new(level);
		if (!zw->cctx && level != UFFDWP_ZLEVEL_STORE)
			goto err_free;
		return zw;
	}

	pthread_mutex_init(&zw->lock, NULL);
	pthread_cond_init(&zw->work_cond, NULL);
	pthread_cond_init(&zw->done_cond, NULL);
	zw->sync_init = true;
	zw->tids = calloc(threads, sizeof(*zw->tids));
	if (!zw->tids)
		goto err_free;
	for (i = 0; i < (unsigned int)threads; i++) {
		err = pthread_create(&zw->tids[i], NULL, zworker, zw);
		if (err) {
			errno = err;
			pr_perror("Can't start a compression thread");
			goto err_free;
		}
		zw->nr_tids++;
	}
	return zw;

err_free:
	err = errno ? errno : ENOMEM;
	uffdwp_zwriter__free(zw);
	errno = err;
	return NULL;
}

static int tab_add(struct uffdwp_zwriter *zw, uint32_t csize, uint32_t rsize, uint32_t crc)
{
	uint32_t *n;

	if (zw->nframes == zw->tab_cap) {
		zw->tab_cap = zw->tab_cap ? 2 * zw->tab_cap : 256;
		n = realloc(zw->tab, zw->tab_cap * 3 * sizeof(*n));
		if (!n)
			return -ENOMEM;
		zw->tab = n;
	}
	n = zw->tab + 3 * zw->nframes++;
	n[0] = csize;
	n[1] = rsize;
	n[2] = crc;
	return 0;
}

/* Write a compressed slot out. Called by the producer only. */
static int slot_write(struct uffdwp_zwriter *zw, struct zslot *s)
{
	int err = s->err;

	if (!err) {
		err = uffdwp_write_full(zw->fd, s->cbuf, s->c_len);
		if (err) {
			errno = -err;
			pr_perror("Can't write %s", zw->path);
		}
	}
	if (!err)
		err = tab_add(zw, s->c_len, s->raw_len, s->crc);
	if (!err) {
		zw->stored_bytes += s->c_len;
		zw->raw_bytes += s->raw_len;
	}
	s->raw_len = 0;
	return err;
}

/* Write out, in order, the done slots; with @all wait for every queued one. */
static int drain(struct uffdwp_zwriter *zw, bool all, struct zslot *until_free)
{
	struct zslot *s;
	int err = 0;

	while (zw->write_seq < zw->fill_seq) {
		s = &zw->slots[zw->write_seq % zw->nslots];
		if (s->state != SLOT_DONE) {
			if (!all && (!until_free || until_free->state == SLOT_FREE))
				break;
			pthread_cond_wait(&zw->done_cond, &zw->lock);
			continue;
		}
		pthread_mutex_unlock(&zw->lock);
		if (!err)
			err = slot_write(zw, s);
		s->raw_len = 0;
		pthread_mutex_lock(&zw->lock);
		s->state = SLOT_FREE;
		zw->write_seq++;
	}
	return err;
}

static int submit(struct uffdwp_zwriter *zw)
{
	struct zslot *s = &zw->slots[zw->fill_seq % zw->nslots];
	int err;

	if (!zw->nr_tids) {
		slot_compress(s, zw->cctx, zw->cbound);
		return slot_write(zw, s);
	}
	pthread_mutex_lock(&zw->lock);
	s->seq = zw->fill_seq++;
	s->state = SLOT_QUEUED;
	pthread_cond_signal(&zw->work_cond);
	/* The next slot to fill must be written out first. */
	err = drain(zw, false, &zw->slots[zw->fill_seq % zw->nslots]);
	pthread_mutex_unlock(&zw->lock);
	return err;
}

int uffdwp_zwriter__write(struct uffdwp_zwriter *zw, const void *data, size_t len)
{
	const uint8_t *p = data;
	struct zslot *s;
	size_t n;
	int err;

	if (zw->err)
		return zw->err;
	while (len) {
		s = &zw->slots[zw->fill_seq % zw->nslots];
		n = zw->frame_size - s->raw_len;
		if (n > len)
			n = len;
		memcpy(s->raw + s->raw_len, p, n);
		s->raw_len += n;
		p += n;
		len -= n;
		if (s->raw_len == zw->frame_size) {
			err = submit(zw);
			if (err) {
				zw->err = err;
				return err;
			}
		}
	}
	return 0;
}

int uffdwp_zwriter__finish(struct uffdwp_zwriter *zw, uint64_t *file_size, uint32_t *seek_crc)
{
	size_t tsize, i;
	uint8_t *buf, *p;
	uint32_t crc;
	int err;

	if (zw->err)
		return zw->err;
	if (zw->slots[zw->fill_seq % zw->nslots].raw_len) {
		err = submit(zw);
		if (err)
			goto out_err;
	}
	if (zw->nr_tids) {
		pthread_mutex_lock(&zw->lock);
		err = drain(zw, true, NULL);
		pthread_mutex_unlock(&zw->lock);
		if (err)
			goto out_err;
	}

	if (zw->nframes > (UINT32_MAX - UFFDWP_ZSEEK_FOOTER) / UFFDWP_ZSEEK_ENTRY) {
		pr_err("%s: too many frames (%" PRIu64 ")\n", zw->path, zw->nframes);
		err = -EFBIG;
		goto out_err;
	}
	tsize = UFFDWP_ZSKIP_HDR + zw->nframes * UFFDWP_ZSEEK_ENTRY + UFFDWP_ZSEEK_FOOTER;
	buf = malloc(tsize);
	if (!buf) {
		err = -ENOMEM;
		goto out_err;
	}
	p = buf;
	uffdwp_put_le32(p, UFFDWP_ZSKIP_MAGIC);
	uffdwp_put_le32(p + 4, tsize - UFFDWP_ZSKIP_HDR);
	p += UFFDWP_ZSKIP_HDR;
	for (i = 0; i < zw->nframes; i++, p += UFFDWP_ZSEEK_ENTRY) {
		uffdwp_put_le32(p, zw->tab[3 * i]);
		uffdwp_put_le32(p + 4, zw->tab[3 * i + 1]);
		uffdwp_put_le32(p + 8, zw->tab[3 * i + 2]);
	}
	uffdwp_put_le32(p, zw->nframes);
	uffdwp_put_le32(p + 4, 0); /* flags, reserved */
	crc = uffdwp_crc32c(0, buf, p + 8 - buf);
	uffdwp_put_le32(p + 8, crc);
	uffdwp_put_le32(p + 12, UFFDWP_ZSEEK_MAGIC);
	err = uffdwp_write_full(zw->fd, buf, tsize);
	free(buf);
	if (err) {
		errno = -err;
		pr_perror("Can't write %s", zw->path);
		goto out_err;
	}
	*file_size = zw->stored_bytes + tsize;
	*seek_crc = crc;
	return 0;

out_err:
	zw->err = err;
	return err;
}

void uffdwp_zwriter__counts(const struct uffdwp_zwriter *zw, uint64_t *raw, uint64_t *stored,
			    uint64_t *frames)
{
	*raw = zw->raw_bytes;
	*stored = zw->stored_bytes;
	*frames = zw->nframes;
}

void uffdwp_zwriter__free(struct uffdwp_zwriter *zw)
{
	unsigned int i;

	if (!zw)
		return;
	if (zw->nr_tids) {
		pthread_mutex_lock(&zw->lock);
		zw->stop = true;
		pthread_cond_broadcast(&zw->work_cond);
		pthread_mutex_unlock(&zw->lock);
		for (i = 0; i < (unsigned int)zw->nr_tids; i++)
			pthread_join(zw->tids[i], NULL);
	}
	if (zw->sync_init) {
		pthread_mutex_destroy(&zw->lock);
		pthread_cond_destroy(&zw->work_cond);
		pthread_cond_destroy(&zw->done_cond);
	}
	if (zw->slots)
		for (i = 0; i < zw->nslots; i++) {
			free(zw->slots[i].raw);
			free(zw->slots[i].cbuf);
		}
	free(zw->slots);
	free(zw->tids);
	free(zw->tab);
	ZSTD_freeCCtx(zw->cctx);
	free(zw);
}

/* ------------------------------------------------------------------ reader */

void uffdwp_ztable__fini(struct uffdwp_ztable *t)
{
	if (!t)
		return;
	free(t->coff);
	free(t->rpage);
	free(t->frame_crc);
	memset(t, 0, sizeof(*t));
}

int uffdwp_ztable__load(struct uffdwp_ztable *t, int fd, const char *path, uint32_t max_rsize)
{
	uint8_t foot[UFFDWP_ZSEEK_FOOTER], *buf = NULL, *p;
	uint64_t size, tsize, toff, nframes, i;
	uint32_t csize, rsize, crc;
	off_t end;
	int err;

	memset(t, 0, sizeof(*t));
	end = lseek(fd, 0, SEEK_END);
	if (end < 0) {
		err = -errno;
		pr_perror("Can't seek %s", path);
		return err;
	}
	size = end;
	if (size < UFFDWP_ZSKIP_HDR + UFFDWP_ZSEEK_FOOTER) {
		pr_err("%s: %" PRIu64 " bytes, too short for a seek table\n", path, size);
		return -EBADMSG;
	}
	err = uffdwp_pread_full(fd, foot, sizeof(foot), size - sizeof(foot));
	if (err)
		goto err_io;
	if (uffdwp_get_le32(foot + 12) != UFFDWP_ZSEEK_MAGIC) {
		pr_err("%s: offset %" PRIu64 ": no seek table magic\n", path, size - 4);
		return -EBADMSG;
	}
	if (uffdwp_get_le32(foot + 4) != 0) {
		pr_err("%s: offset %" PRIu64 ": reserved seek table flags set (%#x)\n", path,
		       size - 12, uffdwp_get_le32(foot + 4));
		return -EBADMSG;
	}
	nframes = uffdwp_get_le32(foot);
	tsize = UFFDWP_ZSKIP_HDR + nframes * UFFDWP_ZSEEK_ENTRY + UFFDWP_ZSEEK_FOOTER;
	if (tsize > size) {
		pr_err("%s: offset %" PRIu64 ": %" PRIu64 " frames do not fit in %" PRIu64
		       " bytes\n",
		       path, size - 16, nframes, size);
		return -EBADMSG;
	}
	toff = size - tsize;
	buf = malloc(tsize);
	t->coff = calloc(nframes + 1, sizeof(*t->coff));
	t->rpage = calloc(nframes + 1, sizeof(*t->rpage));
	t->frame_crc = calloc(nframes + 1, sizeof(*t->frame_crc));
	if (!buf || !t->coff || !t->rpage || !t->frame_crc) {
		err = -ENOMEM;
		goto err_free;
	}
	err = uffdwp_pread_full(fd, buf, tsize, toff);
	if (err)
		goto err_io;
	crc = uffdwp_crc32c(0, buf, tsize - 8);
	if (crc != uffdwp_get_le32(buf + tsize - 8)) {
		pr_err("%s: offset %" PRIu64 ": seek table checksum mismatch\n", path, toff);
		err = -EBADMSG;
		goto err_free;
	}
	if (uffdwp_get_le32(buf) != UFFDWP_ZSKIP_MAGIC ||
	    uffdwp_get_le32(buf + 4) != tsize - UFFDWP_ZSKIP_HDR) {
		pr_err("%s: offset %" PRIu64 ": bad skippable frame header\n", path, toff);
		err = -EBADMSG;
		goto err_free;
	}
	p = buf + UFFDWP_ZSKIP_HDR;
	for (i = 0; i < nframes; i++, p += UFFDWP_ZSEEK_ENTRY) {
		csize = uffdwp_get_le32(p);
		rsize = uffdwp_get_le32(p + 4);
		if (!csize || !rsize || rsize > max_rsize || rsize % UFFDWP_IMG_PAGE_SIZE ||
		    t->coff[i] + csize > toff) {
			pr_err("%s: offset %" PRIu64 ": bad seek table entry %" PRIu64
			       " (compressed %u, raw %u)\n",
			       path, (uint64_t)(p - buf) + toff, i, csize, rsize);
			err = -EBADMSG;
			goto err_free;
		}
		t->coff[i + 1] = t->coff[i] + csize;
		t->rpage[i + 1] = t->rpage[i] + rsize / UFFDWP_IMG_PAGE_SIZE;
		t->frame_crc[i] = uffdwp_get_le32(p + 8);
		if (csize > t->max_csize)
			t->max_csize = csize;
		if (rsize > t->max_rsize)
			t->max_rsize = rsize;
	}
	if (t->coff[nframes] != toff) {
		pr_err("%s: offset %" PRIu64 ": frames end at %" PRIu64 ", not at the seek table\n",
		       path, toff, t->coff[nframes]);
		err = -EBADMSG;
		goto err_free;
	}
	t->nframes = nframes;
	t->crc = crc;
	t->file_size = size;
	free(buf);
	return 0;

err_io:
	if (err == -EIO)
		pr_err("%s: short read (file changed under us?)\n", path);
	else {
		errno = -err;
		pr_perror("Can't read %s", path);
	}
err_free:
	free(buf);
	uffdwp_ztable__fini(t);
	return err;
}

long uffdwp_ztable__find(const struct uffdwp_ztable *t, uint64_t page)
{
	uint64_t lo = 0, hi = t->nframes, mid;

	if (!t->nframes || page >= t->rpage[t->nframes])
		return -1;
	/* Every frame but the last is full: try the direct guess first. */
	if (t->rpage[1]) {
		mid = page / t->rpage[1];
		if (mid < t->nframes && t->rpage[mid] <= page && page < t->rpage[mid + 1])
			return mid;
	}
	while (hi - lo > 1) {
		mid = (lo + hi) / 2;
		if (t->rpage[mid] <= page)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

long uffdwp_zframe__load(const struct uffdwp_ztable *t, int fd, const char *path, uint32_t idx,
			 ZSTD_DCtx *dctx, void *cbuf, void *out)
{
	uint64_t off = t->coff[idx];
	size_t csize = t->coff[idx + 1] - off;
	size_t rsize = (t->rpage[idx + 1] - t->rpage[idx]) * UFFDWP_IMG_PAGE_SIZE;
	unsigned long long fcs;
	size_t r;
	int err;

	err = uffdwp_pread_full(fd, cbuf, csize, off);
	if (err) {
		if (err == -EIO) {
			pr_err("%s: offset %" PRIu64 ": frame %u is cut short\n", path, off, idx);
			return -EBADMSG;
		}
		errno = -err;
		pr_perror("Can't read %s", path);
		return err;
	}
	if (uffdwp_crc32c(0, cbuf, csize) != t->frame_crc[idx]) {
		pr_err("%s: offset %" PRIu64 ": frame %u checksum mismatch\n", path, off, idx);
		return -EBADMSG;
	}
	fcs = ZSTD_getFrameContentSize(cbuf, csize);
	if (fcs != rsize || ZSTD_findFrameCompressedSize(cbuf, csize) != csize) {
		pr_err("%s: offset %" PRIu64 ": frame %u is not one zstd frame of %zu bytes\n",
		       path, off, idx, rsize);
		return -EBADMSG;
	}
	r = ZSTD_decompressDCtx(dctx, out, rsize, cbuf, csize);
	if (ZSTD_isError(r) || r != rsize) {
		pr_err("%s: offset %" PRIu64 ": frame %u: %s\n", path, off, idx,
		       ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
		return -EBADMSG;
	}
	return (long)rsize;
}
