// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "img-head.pb-c.h"
#include "img-object.pb-c.h"
#include "img/img.h"
#include "img/img_crc.h"
#include "img/img_priv.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

struct wobj {
	uint32_t kind;
	uint64_t id;
	uint64_t data_start;
	uint64_t *gap;
	uint64_t *npages;
	uint32_t *rkind;
	size_t n, cap;
	uint64_t end; /* first page after the last range */
};

struct uffdwp_img_writer {
	char *dir;
	int dirfd;
	bool created_dir;
	struct uffdwp_img_opts opts;

	bool has_parent;
	uint8_t parent_id[UFFDWP_IMG_ID_LEN];
	uint32_t parent_crc;
	uint32_t parent_depth;
	char *link_target; /* NULL: the "parent" link is already right */

	int pages_fd;
	char *pages_tmp; /* for messages */
	struct uffdwp_zwriter *zw;

	struct wobj *objs;
	size_t nobjs, cap;
	struct wobj *cur;

	struct uffdwp_img_stats st;
	int err; /* sticky: after a failed write only __free() is allowed */
	bool committed;
	bool tmp_pages, tmp_index, tmp_parent;
};

void uffdwp_img_opts__init(struct uffdwp_img_opts *o)
{
	o->level = UFFDWP_IMG_DEF_LEVEL;
	o->frame_size = UFFDWP_IMG_DEF_FRAME;
	o->threads = 1;
	o->no_sync = false;
}

/*
 * The "parent" link is relative, so a chain can be moved or copied as a
 * whole: from realpath(@dir) up to the common ancestor, then down to @parent.
 */
static char *relative_link(const char *dir, const char *parent)
{
	char *d = realpath(dir, NULL), *p = realpath(parent, NULL), *out = NULL;
	size_t common = 0, i, ups = 0, len;

	if (!d || !p)
		goto out;
	for (i = 0; d[i] && d[i] == p[i]; i++)
		if (d[i] == '/')
			common = i;
	if (!d[i] && (!p[i] || p[i] == '/'))
		common = i;
	else if (!p[i] && d[i] == '/')
		common = i;
	if (!strcmp(d, p)) {
		errno = ELOOP;
		goto out;
	}
	for (i = common; d[i]; i++)
		if (d[i] == '/')
			ups++;
	len = ups * 3 + strlen(p + common) + 2;
	out = malloc(len);
	if (!out)
		goto out;
	out[0] = 0;
	for (i = 0; i < ups; i++)
		strcat(out, "../");
	if (p[common] == '/')
		strcat(out, p + common + 1);
	else
		strcat(out, p + common);
	if (!out[0])
		strcpy(out, ".");
	len = strlen(out);
	if (len > 1 && out[len - 1] == '/')
		out[len - 1] = 0;
out:
	free(d);
	free(p);
	return out;
}

/* Remove our temporary files, or with @stale whatever an earlier writer left. */
static void unlink_tmp(struct uffdwp_img_writer *w, bool stale)
{
	if (w->dirfd < 0)
		return;
	if (stale || w->tmp_pages)
		unlinkat(w->dirfd, UFFDWP_IMG_PAGES_TMP, 0);
	if (stale || w->tmp_index)
		unlinkat(w->dirfd, UFFDWP_IMG_INDEX_TMP, 0);
	if (stale || w->tmp_parent)
		unlinkat(w->dirfd, UFFDWP_IMG_PARENT_TMP, 0);
	/* A page file without an index is the rest of an interrupted commit. */
	if (stale)
		unlinkat(w->dirfd, UFFDWP_IMG_PAGES, 0);
	w->tmp_pages = w->tmp_index = w->tmp_parent = false;
}

int uffdwp_img_opts__check(const struct uffdwp_img_opts *o)
{
	if (o->frame_size < UFFDWP_IMG_PAGE_SIZE || o->frame_size > UFFDWP_IMG_MAX_FRAME ||
	    o->frame_size % UFFDWP_IMG_PAGE_SIZE) {
		pr_err("frame size %u is not a multiple of 4096 between 4 KiB and 16 MiB\n",
		       o->frame_size);
		return -EINVAL;
	}
	if (o->threads < 1 || o->threads > UFFDWP_IMG_MAX_THREADS) {
		pr_err("%d threads: 1 to %d please\n", o->threads, UFFDWP_IMG_MAX_THREADS);
		return -EINVAL;
	}
	if (o->level != UFFDWP_ZLEVEL_STORE &&
	    (o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())) {
		pr_err("zstd level %d is outside %d..%d\n", o->level, ZSTD_minCLevel(),
		       ZSTD_maxCLevel());
		return -EINVAL;
	}
	return 0;
}

static int setup_parent(struct uffdwp_img_writer *w, const char *parent_dir)
{
	struct uffdwp_img *p;
	struct stat a, b;
	int err;

	p = uffdwp_img__open(parent_dir);
	if (!p) {
		err = -errno;
		pr_err("%s: parent %s is not a complete image\n", w->dir, parent_dir);
		return err;
	}
	w->has_parent = true;
	memcpy(w->parent_id, p->info.id, UFFDWP_IMG_ID_LEN);
	w->parent_crc = p->info.index_crc;
	w->parent_depth = p->info.depth;
	uffdwp_img__close(p);
	if (w->parent_depth + 1 >= UFFDWP_IMG_MAX_DEPTH) {
		pr_err("%s: chain would be deeper than %d; merge it first\n", w->dir,
		       UFFDWP_IMG_MAX_DEPTH);
		return -EINVAL;
	}

	if (stat(parent_dir, &b) < 0) {
		err = -errno;
		pr_perror("Can't stat %s", parent_dir);
		return err;
	}
	if (fstatat(w->dirfd, UFFDWP_IMG_PARENT, &a, 0) == 0) {
		/* CRIU may have made the link already: fine if it is ours. */
		if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return 0;
		pr_err("%s/%s exists and is not %s\n", w->dir, UFFDWP_IMG_PARENT, parent_dir);
		return -EEXIST;
	}
	if (errno != ENOENT || fstatat(w->dirfd, UFFDWP_IMG_PARENT, &a, AT_SYMLINK_NOFOLLOW) == 0) {
		pr_err("%s/%s exists and does not lead to %s\n", w->dir, UFFDWP_IMG_PARENT,
		       parent_dir);
		return -EEXIST;
	}
	w->link_target = relative_link(w->dir, parent_dir);
	if (!w->link_target) {
		err = -errno;
		pr_perror("Can't link %s to its parent %s", w->dir, parent_dir);
		return err;
	}
	return 0;
}

struct uffdwp_img_writer *uffdwp_img_writer__begin(const char *dir, const char *parent_dir,
						   const struct uffdwp_img_opts *opts)
{
	struct uffdwp_img_writer *w;
	int err;

	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->dirfd = -1;
	w->pages_fd = -1;
	if (opts)
		w->opts = *opts;
	else
		uffdwp_img_opts__init(&w->opts);
	err = uffdwp_img_opts__check(&w->opts);
	if (err)
		goto err_free;
	w->dir = strdup(dir);
	if (!w->dir) {
		err = -ENOMEM;
		goto err_free;
	}

	if (mkdir(dir, 0755) == 0) {
		w->created_dir = true;
	} else if (errno != EEXIST) {
		err = -errno;
		pr_perror("Can't create %s", dir);
		goto err_free;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		err = -errno;
		pr_perror("Can't open %s", dir);
		goto err_free;
	}
	if (faccessat(w->dirfd, UFFDWP_IMG_INDEX, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		pr_err("%s already holds an image\n", dir);
		err = -EEXIST;
		goto err_free;
	}
	/* Left over by a writer that was killed: never part of an image. */
	unlink_tmp(w, true);

	if (parent_dir) {
		err = setup_parent(w, parent_dir);
		if (err)
			goto err_free;
	}

	w->pages_fd = openat(w->dirfd, UFFDWP_IMG_PAGES_TMP,
			     O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0644);
	if (w->pages_fd < 0) {
		err = -errno;
		pr_perror("Can't create %s/%s", dir, UFFDWP_IMG_PAGES_TMP);
		goto err_free;
	}
	w->tmp_pages = true;
	w->pages_tmp = uffdwp_img_path_join(dir, UFFDWP_IMG_PAGES_TMP);
	if (!w->pages_tmp) {
		err = -ENOMEM;
		goto err_free;
	}
	w->zw = uffdwp_zwriter__new(w->pages_fd, w->pages_tmp, w->opts.level, w->opts.frame_size,
				    w->opts.threads);
	if (!w->zw) {
		err = -errno;
		goto err_free;
	}
	return w;

err_free:
	uffdwp_img_writer__free(w);
	errno = -err;
	return NULL;
}

int uffdwp_img_writer__begin_object(struct uffdwp_img_writer *w, enum uffdwp_img_obj_kind kind,
				    uint64_t id)
{
	struct wobj *o;
	size_t i;

	if (w->err)
		return w->err;
	if (w->cur || (kind != UFFDWP_IMG_OBJ_TASK && kind != UFFDWP_IMG_OBJ_SHMEM)) {
		pr_err("%s: begin_object(%d, %" PRIu64 ") out of place\n", w->dir, kind, id);
		return -EINVAL;
	}
	for (i = 0; i < w->nobjs; i++)
		if (w->objs[i].kind == (uint32_t)kind && w->objs[i].id == id) {
			pr_err("%s: object %d/%" PRIu64 " written twice\n", w->dir, kind, id);
			return -EEXIST;
		}
	if (w->nobjs == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 8;

		o = realloc(w->objs, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		w->objs = o;
		w->cap = cap;
	}
	o = &w->objs[w->nobjs++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->id = id;
	o->data_start = w->st.data_pages;
	w->cur = o;
	return 0;
}

static int check_range(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr_pages)
{
	uint64_t page = addr >> UFFDWP_IMG_PAGE_SHIFT;

	if (!w->cur) {
		pr_err("%s: pages added with no object open\n", w->dir);
		return -EINVAL;
	}
	if (addr % UFFDWP_IMG_PAGE_SIZE || page > UFFDWP_IMG_MAX_PAGE - nr_pages ||
	    (w->cur->n && page < w->cur->end)) {
		pr_err("%s: range %#" PRIx64 "+%" PRIu64 " pages is unaligned, too big or out of "
		       "order\n",
		       w->dir, addr, nr_pages);
		return -EINVAL;
	}
	return 0;
}

/* Append a range to the open object, joining it to the last one when it continues it. */
static int push_range(struct uffdwp_img_writer *w, uint64_t page, uint64_t nr, uint32_t rkind)
{
	struct wobj *o = w->cur;
	size_t cap;
	void *a, *b, *c;

	if (!nr)
		return 0;
	w->st.pages += nr;
	if (o->n && o->end == page && o->rkind[o->n - 1] == rkind) {
		o->npages[o->n - 1] += nr;
		o->end += nr;
		return 0;
	}
	if (o->n == o->cap) {
		cap = o->cap ? 2 * o->cap : 16;
		a = realloc(o->gap, cap * sizeof(*o->gap));
		if (a)
			o->gap = a;
		b = realloc(o->npages, cap * sizeof(*o->npages));
		if (b)
			o->npages = b;
		c = realloc(o->rkind, cap * sizeof(*o->rkind));
		if (c)
			o->rkind = c;
		if (!a || !b || !c)
			return -ENOMEM;
		o->cap = cap;
	}
	o->gap[o->n] = page - o->end;
	o->npages[o->n] = nr;
	o->rkind[o->n] = rkind;
	o->n++;
	o->end = page + nr;
	return 0;
}

/* The byte a page repeats, or -1 if it holds more than one value. */
static int page_fill_byte(const uint8_t *p)
{
	uint64_t a, b;

	memcpy(&a, p, 8);
	memcpy(&b, p + UFFDWP_IMG_PAGE_SIZE - 8, 8);
	if (a != b || a != (a & 0xff) * 0x0101010101010101ull)
		return -1;
	/* p[i] == p[i + 8] everywhere, and the first 8 bytes are equal. */
	if (memcmp(p, p + 8, UFFDWP_IMG_PAGE_SIZE - 8))
		return -1;
	return p[0];
}

static int write_data(struct uffdwp_img_writer *w, uint64_t page, const uint8_t *p, uint64_t nr)
{
	int err;

	if (!nr)
		return 0;
	err = uffdwp_zwriter__write(w->zw, p, nr * UFFDWP_IMG_PAGE_SIZE);
	if (err) {
		w->err = err;
		return err;
	}
	w->st.data_pages += nr;
	return push_range(w, page, nr, UFFDWP_IMG_R_DATA);
}

int uffdwp_img_writer__add_pages(struct uffdwp_img_writer *w, uint64_t addr, const void *data,
				 uint64_t nr_pages)
{
	uint64_t page = addr >> UFFDWP_IMG_PAGE_SHIFT, i, run = 0;
	const uint8_t *p = data;
	int err, b;

	if (w->err)
		return w->err;
	err = check_range(w, addr, nr_pages);
	if (err)
		return err;
	for (i = 0; i < nr_pages; i++) {
		b = page_fill_byte(p + i * UFFDWP_IMG_PAGE_SIZE);
		if (b < 0) {
			run++;
			continue;
		}
		err = write_data(w, page + i - run, p + (i - run) * UFFDWP_IMG_PAGE_SIZE, run);
		if (err)
			return err;
		run = 0;
		w->st.fill_pages++;
		err = push_range(w, page + i, 1,
				 b ? UFFDWP_RKIND(UFFDWP_IMG_R_FILL, b) : UFFDWP_IMG_R_ZERO);
		if (err)
			return err;
	}
	return write_data(w, page + i - run, p + (i - run) * UFFDWP_IMG_PAGE_SIZE, run);
}

int uffdwp_img_writer__add_parent(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr_pages)
{
	int err;

	if (w->err)
		return w->err;
	if (!w->has_parent) {
		pr_err("%s: pages marked in parent, but the image has no parent\n", w->dir);
		return -EINVAL;
	}
	err = check_range(w, addr, nr_pages);
	if (err)
		return err;
	w->st.parent_pages += nr_pages;
	return push_range(w, addr >> UFFDWP_IMG_PAGE_SHIFT, nr_pages, UFFDWP_IMG_R_PARENT);
}

int uffdwp_img_writer__add_fill(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr_pages,
				uint8_t byte)
{
	int err;

	if (w->err)
		return w->err;
	err = check_range(w, addr, nr_pages);
	if (err)
		return err;
	w->st.fill_pages += nr_pages;
	return push_range(w, addr >> UFFDWP_IMG_PAGE_SHIFT, nr_pages,
			  byte ? UFFDWP_RKIND(UFFDWP_IMG_R_FILL, byte) : UFFDWP_IMG_R_ZERO);
}

int uffdwp_img_writer__end_object(struct uffdwp_img_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->cur) {
		pr_err("%s: end_object with no object open\n", w->dir);
		return -EINVAL;
	}
	w->cur = NULL;
	return 0;
}

/* Append one length-prefixed record to @buf at *@off. */
static size_t put_record(uint8_t *buf, size_t off, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);

	uffdwp_put_le32(buf + off, len);
	protobuf_c_message_pack(m, buf + off + 4);
	return off + 4 + len;
}

static int write_index(struct uffdwp_img_writer *w, uint64_t pages_size, uint32_t seek_crc)
{
	UffdwpImgHead head = UFFDWP_IMG_HEAD__INIT;
	UffdwpImgObject *objs;
	uint8_t id[UFFDWP_IMG_ID_LEN], *buf = NULL;
	size_t i, size, off;
	struct timespec ts;
	uint32_t crc;
	int fd, err;

	if (getrandom(id, sizeof(id), 0) != sizeof(id)) {
		err = -errno;
		pr_perror("Can't make an image id");
		return err;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	head.id.data = id;
	head.id.len = sizeof(id);
	head.depth = w->has_parent ? w->parent_depth + 1 : 0;
	if (w->has_parent) {
		head.has_parent_id = head.has_parent_crc = true;
		head.parent_id.data = w->parent_id;
		head.parent_id.len = UFFDWP_IMG_ID_LEN;
		head.parent_crc = w->parent_crc;
	}
	head.page_size = UFFDWP_IMG_PAGE_SIZE;
	head.frame_size = w->opts.frame_size;
	head.level = w->opts.level;
	head.data_pages = w->st.data_pages;
	head.pages_size = pages_size;
	head.seek_crc = seek_crc;
	head.nr_objects = w->nobjs;
	head.flags = 0;
	head.has_ctime_ns = true;
	head.ctime_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;

	objs = calloc(w->nobjs ? w->nobjs : 1, sizeof(*objs));
	if (!objs)
		return -ENOMEM;
	size = UFFDWP_IDX_HDR + UFFDWP_IDX_TRAILER + 4 +
	       protobuf_c_message_get_packed_size(&head.base);
	for (i = 0; i < w->nobjs; i++) {
		struct wobj *o = &w->objs[i];

		uffdwp_img_object__init(&objs[i]);
		objs[i].kind = o->kind;
		objs[i].id = o->id;
		objs[i].data_start = o->data_start;
		objs[i].n_gap = objs[i].n_npages = objs[i].n_rkind = o->n;
		objs[i].gap = o->gap;
		objs[i].npages = o->npages;
		objs[i].rkind = o->rkind;
		objs[i].flags = 0;
		size += 4 + protobuf_c_message_get_packed_size(&objs[i].base);
	}
	if (size > UFFDWP_IDX_MAX) {
		pr_err("%s: index of %zu bytes is too big\n", w->dir, size);
		err = -EFBIG;
		goto out;
	}
	buf = malloc(size);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	uffdwp_put_le32(buf, UFFDWP_IDX_MAGIC);
	buf[4] = UFFDWP_IDX_VERSION;
	buf[5] = 0;
	buf[6] = buf[7] = 0; /* flags, reserved */
	uffdwp_put_le32(buf + 8, size - UFFDWP_IDX_HDR - UFFDWP_IDX_TRAILER);
	uffdwp_put_le32(buf + 12, 1 + w->nobjs);
	off = put_record(buf, UFFDWP_IDX_HDR, &head.base);
	for (i = 0; i < w->nobjs; i++)
		off = put_record(buf, off, &objs[i].base);
	crc = uffdwp_crc32c(0, buf, off);
	uffdwp_put_le32(buf + off, crc);
	uffdwp_put_le32(buf + off + 4, UFFDWP_IDX_END);

	fd = openat(w->dirfd, UFFDWP_IMG_INDEX_TMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		pr_perror("Can't create %s/%s", w->dir, UFFDWP_IMG_INDEX_TMP);
		goto out;
	}
	w->tmp_index = true;
	err = uffdwp_write_full(fd, buf, size);
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (err) {
		errno = -err;
		pr_perror("Can't write %s/%s", w->dir, UFFDWP_IMG_INDEX_TMP);
	}
	close(fd);
	w->st.index_bytes = size;
out:
	free(buf);
	free(objs);
	return err;
}

static int sync_parent_dir(const char *dir)
{
	char *copy = strdup(dir), *slash;
	int fd, err = 0;

	if (!copy)
		return -ENOMEM;
	slash = strrchr(copy, '/');
	if (slash == copy)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(copy, ".");
	fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		err = -errno;
		pr_perror("Can't sync %s", copy);
	}
	if (fd >= 0)
		close(fd);
	free(copy);
	return err;
}

int uffdwp_img_writer__commit(struct uffdwp_img_writer *w)
{
	uint64_t pages_size, raw;
	uint32_t seek_crc;
	int err;

	if (w->err)
		return w->err;
	if (w->committed)
		return -EINVAL;
	w->cur = NULL;

	err = uffdwp_zwriter__finish(w->zw, &pages_size, &seek_crc);
	if (err)
		goto err;
	uffdwp_zwriter__counts(w->zw, &raw, &w->st.stored_bytes, &w->st.frames);
	w->st.pages_file = pages_size;
	if (fsync(w->pages_fd) < 0) {
		err = -errno;
		pr_perror("Can't sync %s/%s", w->dir, UFFDWP_IMG_PAGES_TMP);
		goto err;
	}
	close(w->pages_fd);
	w->pages_fd = -1;

	err = write_index(w, pages_size, seek_crc);
	if (err)
		goto err;

	if (w->link_target) {
		if (symlinkat(w->link_target, w->dirfd, UFFDWP_IMG_PARENT_TMP) < 0) {
			err = -errno;
			pr_perror("Can't link %s to its parent", w->dir);
			goto err;
		}
		w->tmp_parent = true;
		if (renameat(w->dirfd, UFFDWP_IMG_PARENT_TMP, w->dirfd, UFFDWP_IMG_PARENT) < 0) {
			err = -errno;
			pr_perror("Can't rename %s/%s", w->dir, UFFDWP_IMG_PARENT_TMP);
			goto err;
		}
		w->tmp_parent = false;
	}
	if (renameat(w->dirfd, UFFDWP_IMG_PAGES_TMP, w->dirfd, UFFDWP_IMG_PAGES) < 0) {
		err = -errno;
		pr_perror("Can't rename %s/%s", w->dir, UFFDWP_IMG_PAGES_TMP);
		goto err;
	}
	w->tmp_pages = false;
	/* The commit point: an index names a complete image. */
	if (renameat(w->dirfd, UFFDWP_IMG_INDEX_TMP, w->dirfd, UFFDWP_IMG_INDEX) < 0) {
		err = -errno;
		pr_perror("Can't rename %s/%s", w->dir, UFFDWP_IMG_INDEX_TMP);
		unlinkat(w->dirfd, UFFDWP_IMG_PAGES, 0);
		goto err;
	}
	w->tmp_index = false;
	w->committed = true;
	if (fsync(w->dirfd) < 0) {
		err = -errno;
		pr_perror("Can't sync %s", w->dir);
		return -EIO;
	}
	if (w->created_dir && sync_parent_dir(w->dir))
		return -EIO;
	return 0;
err:
	w->err = err;
	return err;
}

void uffdwp_img_writer__stats(const struct uffdwp_img_writer *w, struct uffdwp_img_stats *st)
{
	uint64_t raw;

	*st = w->st;
	if (!w->committed && w->zw)
		uffdwp_zwriter__counts(w->zw, &raw, &st->stored_bytes, &st->frames);
}

void uffdwp_img_writer__free(struct uffdwp_img_writer *w)
{
	size_t i;

	if (!w)
		return;
	uffdwp_zwriter__free(w->zw);
	if (w->pages_fd >= 0)
		close(w->pages_fd);
	if (!w->committed)
		unlink_tmp(w, false);
	if (w->dirfd >= 0)
		close(w->dirfd);
	/* A directory we made for an image that did not come to be goes too (if empty). */
	if (!w->committed && w->created_dir)
		rmdir(w->dir);
	for (i = 0; i < w->nobjs; i++) {
		free(w->objs[i].gap);
		free(w->objs[i].npages);
		free(w->objs[i].rkind);
	}
	free(w->objs);
	free(w->link_target);
	free(w->pages_tmp);
	free(w->dir);
	free(w);
}
