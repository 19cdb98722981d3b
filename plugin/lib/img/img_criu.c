// SPDX-License-Identifier: GPL-2.0
/*
 * Plain CRIU page images out of an uffdwp chain. What CRIU expects, as its
 * source has it (criu/include/magic.h, criu/image.c, criu/pagemap.c,
 * images/pagemap.proto):
 *  - pagemap-<pid>.img and pagemap-shmem-<shmid>.img open with two host-endian
 *    u32s, the common image magic and the pagemap magic, then hold records,
 *    each a u32 length and a packed protobuf message: one pagemap_head, then
 *    pagemap_entry records in ascending address order (for shmem the
 *    address is the offset in the object);
 *  - pagemap_head.pages_id names pages-<pages_id>.img, a raw image without
 *    any magic, holding the pages of the entries flagged "present", in order;
 *  - an entry may cross VMA boundaries; restore walks them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu-pagemap.pb-c.h"
#include "img/img.h"
#include "img/img_priv.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

#define CRIU_IMG_COMMON_MAGIC 0x54564319u
#define CRIU_PAGEMAP_MAGIC    0x56084025u
#define CRIU_PE_PRESENT	      (1u << 2)

/* Pages copied at a time, and the longest entry (CRIU's nr_pages is a u32 in old images). */
#define FLAT_CHUNK     256
#define FLAT_MAX_ENTRY (1u << 30)

struct flat_file {
	int fd;
	char tmp[64];
	char name[64];
	/* Output buffer: records are small, pages go around it. */
	uint8_t *buf;
	size_t len, cap;
};

static int flat_flush(struct flat_file *f)
{
	int err = uffdwp_write_full(f->fd, f->buf, f->len);

	f->len = 0;
	return err;
}

static int flat_put(struct flat_file *f, const void *p, size_t len)
{
	int err;

	if (f->len + len > f->cap) {
		err = flat_flush(f);
		if (err)
			return err;
		if (len > f->cap)
			return uffdwp_write_full(f->fd, p, len);
	}
	memcpy(f->buf + f->len, p, len);
	f->len += len;
	return 0;
}

static int flat_put_msg(struct flat_file *f, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint32_t len32 = len;
	uint8_t tmp[64];

	if (len + 4 > sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, &len32, 4); /* CRIU writes host endianness */
	protobuf_c_message_pack(m, tmp + 4);
	return flat_put(f, tmp, len + 4);
}

static int flat_open(int dirfd, struct flat_file *f, const char *name)
{
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->tmp, sizeof(f->tmp), UFFDWP_IMG_TMP_PREFIX "%s", name);
	f->cap = 1 << 20;
	f->buf = malloc(f->cap);
	if (!f->buf)
		return -ENOMEM;
	f->fd = openat(dirfd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		int err = -errno;

		pr_perror("Can't create %s", f->tmp);
		return err;
	}
	return 0;
}

/*
 * Flush, fsync and close @f; with @keep it stays under its temporary name
 * for flat_publish(), else it is removed.
 */
static int flat_close(int dirfd, struct flat_file *f, bool keep)
{
	int err = 0;

	if (f->fd >= 0) {
		if (keep) {
			err = flat_flush(f);
			if (!err && fsync(f->fd) < 0)
				err = -errno;
		}
		close(f->fd);
		f->fd = -1;
		if (err) {
			errno = -err;
			pr_perror("Can't write %s", f->tmp);
		}
		if (!keep || err)
			unlinkat(dirfd, f->tmp, 0);
	}
	free(f->buf);
	f->buf = NULL;
	return err;
}

/* The files written so far, under temporary names until all are. */
struct flat_done {
	char (*names)[64];
	size_t nr;
};

static int done_add(struct flat_done *d, const char *name)
{
	char(*n)[64] = realloc(d->names, (d->nr + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	d->names = n;
	snprintf(d->names[d->nr++], sizeof(*n), "%s", name);
	return 0;
}

struct flat_progress {
	uffdwp_img_progress_fn fn;
	void *arg;
	uint64_t done, total, last; /* pages */
};

/* At least every 16 MiB, and at the end. */
static void flat_report(struct flat_progress *p, uint64_t pages, bool end)
{
	p->done += pages;
	if (!p->fn || (!end && p->done - p->last < 4096))
		return;
	p->last = p->done;
	p->fn(p->arg, p->done * UFFDWP_IMG_PAGE_SIZE, p->total * UFFDWP_IMG_PAGE_SIZE);
}

static int flatten_object(struct uffdwp_pagesrc *ps, int dirfd, const struct uffdwp_img_object *o,
			  unsigned int pages_id, uint8_t *buf, struct flat_done *done,
			  struct flat_progress *prog)
{
	UffdwpCriuPagemapHead head = UFFDWP_CRIU_PAGEMAP_HEAD__INIT;
	UffdwpCriuPagemapEntry pe = UFFDWP_CRIU_PAGEMAP_ENTRY__INIT;
	struct flat_file pm = {.fd = -1}, pg = {.fd = -1};
	uint64_t start, end, page, n;
	uint32_t magic[2] = {CRIU_IMG_COMMON_MAGIC, CRIU_PAGEMAP_MAGIC};
	char name[64];
	size_t k, j;
	int err, ret;

	snprintf(name, sizeof(name),
		 o->kind == UFFDWP_IMG_OBJ_TASK ? UFFDWP_CRIU_PAGEMAP : UFFDWP_CRIU_SHMEM_PAGEMAP,
		 (unsigned long)o->id);
	err = flat_open(dirfd, &pm, name);
	if (err)
		goto out;
	snprintf(name, sizeof(name), UFFDWP_CRIU_PAGES, pages_id);
	err = flat_open(dirfd, &pg, name);
	if (err)
		goto out;

	err = flat_put(&pm, magic, sizeof(magic));
	head.pages_id = pages_id;
	if (!err)
		err = flat_put_msg(&pm, &head.base);
	for (k = 0; !err && k < o->nr_ranges; k = j) {
		/* One entry per run of adjacent ranges: all of them become present pages. */
		start = o->ranges[k].start;
		end = start + o->ranges[k].nr_pages;
		for (j = k + 1; j < o->nr_ranges && o->ranges[j].start == end; j++)
			end += o->ranges[j].nr_pages;
		while (!err && start < end) {
			n = end - start < FLAT_MAX_ENTRY ? end - start : FLAT_MAX_ENTRY;
			pe.vaddr = start << UFFDWP_IMG_PAGE_SHIFT;
			pe.nr_pages = n;
			pe.has_flags = true;
			pe.flags = CRIU_PE_PRESENT;
			err = flat_put_msg(&pm, &pe.base);
			for (page = start; !err && page < start + n; page += FLAT_CHUNK) {
				uint64_t m =
				    start + n - page < FLAT_CHUNK ? start + n - page : FLAT_CHUNK;

				err = uffdwp_pagesrc__read(ps, o->kind, o->id,
							   page << UFFDWP_IMG_PAGE_SHIFT, buf, m);
				if (!err)
					err = flat_put(&pg, buf, m * UFFDWP_IMG_PAGE_SIZE);
				flat_report(prog, m, false);
			}
			start += n;
		}
	}
	if (err && err != -EBADMSG && err != -ENOENT) {
		errno = -err;
		pr_perror("Can't flatten object %u/%" PRIu64, o->kind, o->id);
	}
out:
	/* The pages first: a pagemap never names a pages image that is not there. */
	ret = flat_close(dirfd, &pg, !err);
	if (!err)
		err = ret;
	if (!err)
		err = done_add(done, pg.name);
	ret = flat_close(dirfd, &pm, !err);
	if (!err)
		err = ret;
	if (!err)
		err = done_add(done, pm.name);
	return err;
}

/* @dirfd holds nothing at all: flatten never mixes its files with others. */
static int dir_empty(int dirfd, const char *out)
{
	struct dirent *de;
	int fd, err = 0;
	DIR *d;

	fd = dup(dirfd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		err = -errno;
		if (fd >= 0)
			close(fd);
		pr_perror("Can't read %s", out);
		return err;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			pr_err("%s is not empty (%s): flatten writes into a new or empty "
			       "directory\n",
			       out, de->d_name);
			err = -ENOTEMPTY;
			break;
		}
	closedir(d);
	return err;
}

int uffdwp_img__flatten_criu(struct uffdwp_chain *c, const char *out,
			     uffdwp_img_progress_fn progress, void *arg)
{
	struct flat_progress prog = {.fn = progress, .arg = arg};
	struct uffdwp_img *top = uffdwp_chain__image(c, 0);
	struct flat_done done = {NULL, 0};
	struct uffdwp_pagesrc *ps = NULL;
	char tmp[sizeof(done.names[0]) + sizeof(UFFDWP_IMG_TMP_PREFIX)];
	bool made = false;
	uint8_t *buf;
	size_t i;
	int dirfd, err = 0;

	if (!mkdir(out, 0755)) {
		made = true;
	} else if (errno != EEXIST) {
		err = -errno;
		pr_perror("Can't create %s", out);
		return err;
	}
	dirfd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		err = -errno;
		pr_perror("Can't open %s", out);
		return err;
	}
	if (!made) {
		err = dir_empty(dirfd, out);
		if (err)
			goto out_close;
	}
	buf = malloc(FLAT_CHUNK * UFFDWP_IMG_PAGE_SIZE);
	ps = uffdwp_pagesrc__new(c, 0);
	if (!buf || !ps) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < uffdwp_img__nr_objects(top); i++)
		prog.total += uffdwp_img__object(top, i)->st.pages;
	for (i = 0; !err && i < uffdwp_img__nr_objects(top); i++)
		err =
		    flatten_object(ps, dirfd, uffdwp_img__object(top, i), i + 1, buf, &done, &prog);
	/* All or nothing: the files get their names once every one is written. */
	for (i = 0; !err && i < done.nr; i++) {
		snprintf(tmp, sizeof(tmp), UFFDWP_IMG_TMP_PREFIX "%s", done.names[i]);
		if (renameat(dirfd, tmp, dirfd, done.names[i]) < 0) {
			err = -errno;
			pr_perror("Can't rename %s/%s", out, tmp);
		}
	}
	if (!err && fsync(dirfd) < 0) {
		err = -errno;
		pr_perror("Can't sync %s", out);
	}
	if (!err)
		flat_report(&prog, 0, true);
	if (err) {
		for (i = 0; i < done.nr; i++) {
			snprintf(tmp, sizeof(tmp), UFFDWP_IMG_TMP_PREFIX "%s", done.names[i]);
			unlinkat(dirfd, tmp, 0);
			unlinkat(dirfd, done.names[i], 0);
		}
	}
out:
	uffdwp_pagesrc__free(ps);
	free(buf);
out_close:
	close(dirfd);
	if (err && made)
		rmdir(out);
	free(done.names);
	return err;
}
