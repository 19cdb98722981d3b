// SPDX-License-Identifier: GPL-2.0
/* uffdwp snap: staging the pages, while the tasks run and frozen, and writing the image. */
#define LOG_PREFIX "snap: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "base/log.h"
#include "snap/snap_priv.h"

void snap_progress(struct snap *s, uint64_t bytes)
{
	s->prog_done += bytes;
	if (!s->o->progress)
		return;
	if (bytes && s->prog_done < s->prog_total && s->prog_done - s->prog_last < PROGRESS_GAP)
		return;
	s->prog_last = s->prog_done;
	s->o->progress(s->o->progress_arg, s->phase, s->prog_done, s->prog_total);
}

void snap_progress_start(struct snap *s, enum uffdwp_snap_phase phase, uint64_t total)
{
	s->phase = phase;
	s->prog_done = s->prog_last = 0;
	s->prog_total = total;
	snap_progress(s, 0);
}

/* ------------------------------------------------------------------ copying */

int snap_stage_open(struct snap *s)
{
	char path[4096];
	int fd;

	fd = open(s->o->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE here (Linux 3.11, not every file system): unlink at once. */
		snprintf(path, sizeof(path), "%s/" UFFDWP_IMG_TMP_PREFIX "stage-%d", s->o->dir,
			 getpid());
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0) {
		int err = -errno;

		pr_perror("Can't make a staging file in %s", s->o->dir);
		return err;
	}
	s->stage_fd = fd;
	return 0;
}

static int stage_put(struct snap *s, struct sobj *ob, int which, uint64_t addr, uint64_t npages)
{
	struct sruns *rs = &ob->runs[which];
	uint64_t len = npages * PG;
	ssize_t n;
	int err;

	n = pwrite(s->stage_fd, s->buf, len, s->stage_off);
	if (n != (ssize_t)len) {
		err = n < 0 ? -errno : -ENOSPC;
		errno = -err;
		pr_perror("Can't write the staging file in %s", s->o->dir);
		return err;
	}
	if (rs->nr && rs->r[rs->nr - 1].end == addr &&
	    rs->r[rs->nr - 1].off + (addr - rs->r[rs->nr - 1].start) == s->stage_off) {
		rs->r[rs->nr - 1].end += len;
	} else {
		if (rs->nr == rs->cap) {
			size_t nc = rs->cap ? rs->cap * 2 : 16;
			struct srun *nr = realloc(rs->r, nc * sizeof(*nr));

			if (!nr)
				return -ENOMEM;
			rs->r = nr;
			rs->cap = nc;
		}
		rs->r[rs->nr].start = addr;
		rs->r[rs->nr].end = addr + len;
		rs->r[rs->nr].off = s->stage_off;
		rs->nr++;
	}
	s->stage_off += len;
	if (which == STAGE_COPY)
		err = uffdwp_rangeset__add(&ob->staged, addr, addr + len);
	else
		err = uffdwp_rangeset__add(&ob->fresh, addr, addr + len);
	return err;
}

/* Read @n pages of @ob at @addr into s->buf[@at]. Returns true if it could. */
static bool read_one(struct snap *s, struct sobj *ob, uint64_t addr, uint64_t n, uint64_t at)
{
	uint8_t *dst = s->buf + at * PG;
	struct iovec l = {dst, n * PG}, r = {(void *)(uintptr_t)addr, n * PG};
	char path[64];

	if (ob->kind == UFFDWP_IMG_OBJ_SHMEM)
		return pread(ob->fd, dst, n * PG, addr) == (ssize_t)(n * PG);
	if (process_vm_readv((pid_t)ob->id, &l, 1, &r, 1, 0) == (ssize_t)(n * PG))
		return true;
	if (n > 1)
		return false;
	/*
	 * process_vm_readv does not force access: a page of a PROT_NONE
	 * mapping (a guard the program moved, a JIT's spare) reads through
	 * /proc/PID/mem, which does.
	 */
	if (ob->fd < 0) {
		snprintf(path, sizeof(path), "/proc/%" PRIu64 "/mem", ob->id);
		ob->fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return ob->fd >= 0 && pread(ob->fd, dst, PG, addr) == (ssize_t)PG;
}

/*
 * Copy the pages @want of @ob into the staging file, as @which. Pages that
 * cannot be read (gone meanwhile, poisoned) are left out; *@missed counts
 * them. Returns 0 or -errno of the staging file.
 */
static int copy_set(struct snap *s, struct sobj *ob, const struct uffdwp_rangeset *want, int which,
		    uint64_t *missed)
{
	size_t i;
	int err;

	for (i = 0; i < want->nr; i++) {
		uint64_t a = want->r[i].start, e = want->r[i].end;

		while (a < e) {
			uint64_t n = (e - a) / PG, k, run = 0;

			if (n > CHUNK_PAGES)
				n = CHUNK_PAGES;
			if (read_one(s, ob, a, n, 0)) {
				err = stage_put(s, ob, which, a, n);
				if (err)
					return err;
			} else {
				/* Page by page, keeping runs of the readable ones together. */
				for (k = 0; k <= n; k++) {
					if (k < n && read_one(s, ob, a + k * PG, 1, run)) {
						run++;
						continue;
					}
					if (run) {
						err = stage_put(s, ob, which, a + (k - run) * PG,
								run);
						if (err)
							return err;
					}
					if (k < n)
						(*missed)++;
					run = 0;
				}
			}
			snap_progress(s, n * PG);
			a += n * PG;
		}
	}
	return 0;
}

/*
 * Pages of @ob to store as data, as far as known: those present, less what
 * the parent lists and the tracker calls clean (@tmp: scratch).
 */
static int data_of(struct snap *s, struct sobj *ob, struct uffdwp_rangeset *out,
		   struct uffdwp_rangeset *tmp)
{
	int err;

	uffdwp_rangeset__clear(tmp);
	if (!s->delta || !ob->has_listed)
		return uffdwp_rangeset__subtract(out, &ob->present, tmp);
	err = uffdwp_rangeset__subtract(tmp, &ob->listed, &ob->dirty);
	return err ? err : uffdwp_rangeset__subtract(out, &ob->present, tmp);
}

/* While the tree runs: copy what the image will most likely store. */
int snap_copy_running(struct snap *s)
{
	struct uffdwp_rangeset want = UFFDWP_RANGESET_INIT, tmp = UFFDWP_RANGESET_INIT;
	uint64_t total = 0, missed = 0;
	size_t i;
	int err = 0;

	for (i = 0; i < s->nr_objs && !err; i++) {
		if (!s->objs[i].live)
			continue;
		err = data_of(s, &s->objs[i], &want, &tmp);
		total += uffdwp_rangeset__bytes(&want);
	}
	snap_progress_start(s, UFFDWP_SNAP_COPY, total);
	for (i = 0; i < s->nr_objs && !err; i++) {
		if (!s->objs[i].live)
			continue;
		err = data_of(s, &s->objs[i], &want, &tmp);
		if (!err)
			err = copy_set(s, &s->objs[i], &want, STAGE_COPY, &missed);
	}
	snap_progress(s, 0);
	s->res->copied_pages = s->stage_off / PG;
	if (missed)
		pr_info("%" PRIu64 " pages went away while being copied\n", missed);
	uffdwp_rangeset__fini(&want);
	uffdwp_rangeset__fini(&tmp);
	return err;
}

/*
 * While the tree is stopped: decide what each object stores, and read what
 * the staging file does not hold, or may hold stale (@ob->fresh).
 */
int snap_read_frozen(struct snap *s)
{
	struct uffdwp_rangeset read = UFFDWP_RANGESET_INIT, good = UFFDWP_RANGESET_INIT;
	uint64_t before = s->stage_off, missed = 0, total = 0, m;
	size_t i;
	int pass, err = 0;

	/* Pass 0 counts, for the progress report; pass 1 reads. */
	for (pass = 0; pass < 2; pass++) {
		if (pass)
			snap_progress_start(s, UFFDWP_SNAP_FROZEN, total);
		for (i = 0; i < s->nr_objs && !err; i++) {
			struct sobj *ob = &s->objs[i];

			uffdwp_rangeset__clear(&ob->fresh);
			if (!ob->live)
				continue;
			err = data_of(s, ob, &ob->data, &read);
			if (!err)
				err = uffdwp_rangeset__subtract(&good, &ob->staged, &ob->changed);
			if (!err)
				err = uffdwp_rangeset__subtract(&read, &ob->data, &good);
			if (err || !pass) {
				total += uffdwp_rangeset__bytes(&read);
				continue;
			}
			m = 0;
			err = copy_set(s, ob, &read, STAGE_FROZEN, &m);
			/* What cannot be read now is not there: absent. */
			if (!err && m) {
				err = uffdwp_rangeset__remove_set(&read, &ob->fresh);
				if (!err)
					err = uffdwp_rangeset__remove_set(&ob->data, &read);
				if (!err)
					err = uffdwp_rangeset__remove_set(&ob->present, &read);
			}
			missed += m;
		}
	}
	snap_progress(s, 0);
	s->res->frozen_pages = (s->stage_off - before) / PG;
	if (missed)
		pr_warn("%" PRIu64 " present pages could not be read: left out\n", missed);
	uffdwp_rangeset__fini(&read);
	uffdwp_rangeset__fini(&good);
	return err;
}

/* ------------------------------------------------------------------ writing */

static const struct srun *run_find(const struct sruns *rs, uint64_t a)
{
	size_t lo = 0, hi = rs->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rs->nr && rs->r[lo].start <= a ? &rs->r[lo] : NULL;
}

/* Data pages [a, e) of @ob, all from one staging run set. */
static int write_data(struct snap *s, struct sobj *ob, int which, uint64_t a, uint64_t e)
{
	const struct srun *r;
	uint64_t n;
	ssize_t got;
	int err;

	while (a < e) {
		r = run_find(&ob->runs[which], a);
		if (!r) {
			pr_err("page %#" PRIx64 " of object %" PRIu64 " was never read\n", a,
			       ob->id);
			return -EIO;
		}
		n = ((r->end < e ? r->end : e) - a) / PG;
		if (n > CHUNK_PAGES)
			n = CHUNK_PAGES;
		got = pread(s->stage_fd, s->buf, n * PG, r->off + (a - r->start));
		if (got != (ssize_t)(n * PG)) {
			err = got < 0 ? -errno : -EIO;
			errno = -err;
			pr_perror("Can't read the staging file");
			return err;
		}
		err = uffdwp_img_writer__add_pages(s->w, a, s->buf, n);
		if (err)
			return err;
		snap_progress(s, n * PG);
		a += n * PG;
	}
	return 0;
}

static int write_obj(struct snap *s, struct sobj *ob)
{
	size_t i;
	int err;

	err = uffdwp_img_writer__begin_object(s->w, ob->kind, ob->id);
	for (i = 0; i < ob->present.nr && !err; i++) {
		uint64_t a = ob->present.r[i].start, e = ob->present.r[i].end;

		while (a < e && !err) {
			uint64_t b = e;

			if (!uffdwp_rangeset__edge(&ob->data, a, &b))
				err = uffdwp_img_writer__add_parent(s->w, a, (b - a) / PG);
			else if (uffdwp_rangeset__edge(&ob->fresh, a, &b))
				err = write_data(s, ob, STAGE_FROZEN, a, b);
			else
				err = write_data(s, ob, STAGE_COPY, a, b);
			a = b;
		}
	}
	if (!err)
		err = uffdwp_img_writer__end_object(s->w);
	return err;
}

static int obj_cmp(const void *x, const void *y)
{
	const struct sobj *a = *(const struct sobj *const *)x, *b = *(const struct sobj *const *)y;

	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

int snap_write_image(struct snap *s)
{
	struct uffdwp_img *img;
	struct sobj **order;
	uint64_t total = 0;
	size_t i, n = 0;
	int err = 0;

	/* Tasks by pid, then shared memory by id: the same order in every image. */
	order = calloc(s->nr_objs + 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (i = 0; i < s->nr_objs; i++) {
		if (!s->objs[i].live)
			continue;
		order[n++] = &s->objs[i];
		total += uffdwp_rangeset__bytes(&s->objs[i].data);
	}
	qsort(order, n, sizeof(*order), obj_cmp);
	snap_progress_start(s, UFFDWP_SNAP_WRITE, total);
	for (i = 0; i < n && !err; i++) {
		if (order[i]->kind == UFFDWP_IMG_OBJ_TASK)
			s->res->nr_tasks++;
		else
			s->res->nr_shmem++;
		err = write_obj(s, order[i]);
	}
	free(order);
	if (!err)
		err = uffdwp_img_writer__commit(s->w);
	if (err)
		return err;
	snap_progress(s, 0);
	uffdwp_img_writer__stats(s->w, &s->res->st);
	img = uffdwp_img__open(s->o->dir);
	if (!img)
		return -errno;
	memcpy(s->res->id, uffdwp_img__info(img)->id, UFFDWP_IMG_ID_LEN);
	uffdwp_img__close(img);
	return 0;
}
