// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "img/img.h"
#include "img/img_crc.h"
#include "criu_backend/img_criu_backend.h"
#include "img/img_fcache.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

#define CPAGES_DEF_CACHE 16
#define CPAGES_IO_CHUNK	 (256u << 10)

/* "<dir>/<name>" for messages, the directory named by its descriptor. */
static void dir_path(int dir_fd, const char *name, char *out, size_t size)
{
	char link[64], dir[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", dir_fd);
	n = readlink(link, dir, sizeof(dir) - 1);
	if (n < 0)
		n = snprintf(dir, sizeof(dir), "(fd %d)", dir_fd);
	dir[n] = 0;
	snprintf(out, size, "%s/%s", dir, name);
}

/* ------------------------------------------------------------------ writer */

struct uffdwp_cpages_writer {
	int dir_fd; /* ours, a dup */
	int fd;
	uint32_t id;
	bool committed;
	bool no_sync;
	struct uffdwp_zwriter *zw;
	uint8_t *buf;
	char tmp[NAME_MAX + 1], name[NAME_MAX + 1];
	char path[PATH_MAX + NAME_MAX + 2];
};

struct uffdwp_cpages_writer *uffdwp_cpages_writer__new(int dir_fd, uint32_t id,
						       const struct uffdwp_img_opts *opts)
{
	struct uffdwp_img_opts def;
	struct uffdwp_cpages_writer *w;
	int err;

	if (!opts) {
		uffdwp_img_opts__init(&def);
		opts = &def;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = -1;
	w->id = id;
	w->no_sync = opts->no_sync;
	snprintf(w->tmp, sizeof(w->tmp), UFFDWP_CPAGES_TMP_NAME, id);
	snprintf(w->name, sizeof(w->name), UFFDWP_CPAGES_NAME, id);
	dir_path(dir_fd, w->name, w->path, sizeof(w->path));
	w->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
	if (w->dir_fd < 0)
		goto err;
	w->buf = malloc(CPAGES_IO_CHUNK);
	if (!w->buf)
		goto err;
	/* A page file left by an earlier run under the final name would be read back. */
	if (unlinkat(w->dir_fd, w->name, 0) && errno != ENOENT)
		goto err_path;
	w->fd = openat(w->dir_fd, w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0)
		goto err_path;
	w->zw = uffdwp_zwriter__new(w->fd, w->path, opts->level, opts->frame_size, opts->threads);
	if (!w->zw)
		goto err;
	return w;
err_path:
	pr_perror("Can't create %s", w->path);
err:
	err = errno ? errno : ENOMEM;
	uffdwp_cpages_writer__free(w);
	errno = err;
	return NULL;
}

int uffdwp_cpages_writer__write(struct uffdwp_cpages_writer *w, const void *buf, size_t len)
{
	return uffdwp_zwriter__write(w->zw, buf, len);
}

int uffdwp_cpages_writer__write_fd(struct uffdwp_cpages_writer *w, int fd, uint64_t len)
{
	ssize_t n;
	int err;

	while (len) {
		n = read(fd, w->buf, len < CPAGES_IO_CHUNK ? len : CPAGES_IO_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			pr_perror("%s: can't read pages from a pipe", w->path);
			return err;
		}
		if (n == 0) {
			pr_err("%s: pipe closed with %" PRIu64 " bytes still expected\n", w->path,
			       len);
			return -EPIPE;
		}
		err = uffdwp_zwriter__write(w->zw, w->buf, n);
		if (err)
			return err;
		len -= n;
	}
	return 0;
}

int uffdwp_cpages_writer__commit(struct uffdwp_cpages_writer *w, uint64_t *raw, uint64_t *stored)
{
	uint64_t r, s, frames, fsize;
	uint32_t crc;
	int err;

	uffdwp_zwriter__counts(w->zw, &r, &s, &frames);
	if (r % UFFDWP_IMG_PAGE_SIZE) {
		pr_err("%s: %" PRIu64 " bytes are not whole pages\n", w->path, r);
		return -EINVAL;
	}
	err = uffdwp_zwriter__finish(w->zw, &fsize, &crc);
	if (err)
		return err;
	uffdwp_zwriter__counts(w->zw, &r, &s, &frames);
	if ((!w->no_sync && fsync(w->fd)) || renameat(w->dir_fd, w->tmp, w->dir_fd, w->name)) {
		err = -errno;
		pr_perror("Can't finish %s", w->path);
		return err;
	}
	w->committed = true;
	if (raw)
		*raw = r;
	if (stored)
		*stored = fsize;
	pr_info("%s: %" PRIu64 " raw bytes in %" PRIu64 " (%" PRIu64 " frames)\n", w->path, r,
		fsize, frames);
	return 0;
}

void uffdwp_cpages_writer__free(struct uffdwp_cpages_writer *w)
{
	if (!w)
		return;
	uffdwp_zwriter__free(w->zw);
	if (w->fd >= 0)
		close(w->fd);
	if (!w->committed && w->dir_fd >= 0)
		unlinkat(w->dir_fd, w->tmp, 0);
	if (w->dir_fd >= 0)
		close(w->dir_fd);
	free(w->buf);
	free(w);
}

/* ------------------------------------------------------------------ reader */

struct uffdwp_cpages_reader {
	int fd;
	struct uffdwp_ztable zt;
	struct uffdwp_fcache *fc;
	bool own_fc;
	uint64_t key;
	pthread_mutex_t lock;
	void *cbuf; /* __verify() */
	char path[PATH_MAX + NAME_MAX + 2];
};

int uffdwp_cpages_reader__open(int dir_fd, uint32_t id, struct uffdwp_fcache *fc,
			       struct uffdwp_cpages_reader **out)
{
	struct uffdwp_cpages_reader *r;
	char name[NAME_MAX + 1];
	int err;

	snprintf(name, sizeof(name), UFFDWP_CPAGES_NAME, id);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	dir_path(dir_fd, name, r->path, sizeof(r->path));
	r->fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		err = -errno;
		if (err != -ENOENT)
			pr_perror("Can't open %s", r->path);
		goto err;
	}
	err = uffdwp_ztable__load(&r->zt, r->fd, r->path, UFFDWP_IMG_MAX_FRAME);
	if (err)
		goto err;
	r->fc = fc;
	if (!r->fc) {
		r->fc = uffdwp_fcache__new(CPAGES_DEF_CACHE);
		if (!r->fc) {
			err = -ENOMEM;
			goto err;
		}
		r->own_fc = true;
	}
	r->key = uffdwp_fcache__key(r->fc);
	*out = r;
	return 0;
err:
	uffdwp_cpages_reader__free(r);
	return err;
}

uint64_t uffdwp_cpages_reader__size(const struct uffdwp_cpages_reader *r)
{
	return r->zt.rpage[r->zt.nframes] * UFFDWP_IMG_PAGE_SIZE;
}

const char *uffdwp_cpages_reader__path(const struct uffdwp_cpages_reader *r)
{
	return r->path;
}

int uffdwp_cpages_reader__read(struct uffdwp_cpages_reader *r, void *buf, uint64_t len,
			       uint64_t off)
{
	uint8_t *p = buf;
	uint64_t fstart, fend, n;
	long idx;
	int err = 0;

	if (off + len < off || off + len > uffdwp_cpages_reader__size(r)) {
		pr_err("%s: %" PRIu64 " bytes at %" PRIu64 " asked, it holds %" PRIu64 "\n",
		       r->path, len, off, uffdwp_cpages_reader__size(r));
		return -ERANGE;
	}
	while (len) {
		idx = uffdwp_ztable__find(&r->zt, off / UFFDWP_IMG_PAGE_SIZE);
		if (idx < 0)
			return -ERANGE;
		fstart = r->zt.rpage[idx] * UFFDWP_IMG_PAGE_SIZE;
		fend = r->zt.rpage[idx + 1] * UFFDWP_IMG_PAGE_SIZE;
		n = fend - off;
		if (n > len)
			n = len;
		err = uffdwp_fcache__read(r->fc, r->key, &r->zt, r->fd, r->path, idx, off - fstart,
					  p, n);
		if (err)
			return err;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int uffdwp_cpages_reader__verify(struct uffdwp_cpages_reader *r)
{
	uint64_t off, csize;
	uint32_t i;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	if (!r->cbuf)
		r->cbuf = malloc(r->zt.max_csize ? r->zt.max_csize : 1);
	if (!r->cbuf) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	for (i = 0; i < r->zt.nframes; i++) {
		off = r->zt.coff[i];
		csize = r->zt.coff[i + 1] - off;
		err = uffdwp_pread_full(r->fd, r->cbuf, csize, off);
		if (err) {
			pr_err("%s: offset %" PRIu64 ": frame %u can't be read: %s\n", r->path, off,
			       i, uffdwp_strerror(-err));
			break;
		}
		if (uffdwp_crc32c(0, r->cbuf, csize) != r->zt.frame_crc[i]) {
			pr_err("%s: offset %" PRIu64 ": frame %u checksum mismatch\n", r->path, off,
			       i);
			err = -EBADMSG;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

void uffdwp_cpages_reader__free(struct uffdwp_cpages_reader *r)
{
	if (!r)
		return;
	if (r->fc) {
		uffdwp_fcache__forget(r->fc, r->key);
		if (r->own_fc)
			uffdwp_fcache__free(r->fc);
	}
	free(r->cbuf);
	uffdwp_ztable__fini(&r->zt);
	if (r->fd > 0)
		close(r->fd);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
