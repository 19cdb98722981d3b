// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "snap: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#include "uapi/uffdwp-uapi.h"
#include "snap/freeze.h"
#include "track/holder.h"
#include "base/log.h"
#include "base/pagemap.h"
#include "snap/snap.h"
#include "track/tracker.h"

#define PG	      4096ULL
#define CHUNK_PAGES   256 /* pages per read, per staging write, per add_pages */
#define PROGRESS_GAP  (16ULL << 20)
#define DEF_FREEZE_MS 10000

/* Where pages of an object sit in the staging file: [start, end) at @off. */
struct srun {
	uint64_t start;
	uint64_t end;
	uint64_t off;
};

struct sruns {
	struct srun *r;
	size_t nr, cap;
};

enum { STAGE_COPY, STAGE_FROZEN };

struct sobj {
	uint32_t kind; /* UFFDWP_IMG_OBJ_* */
	uint64_t id;
	uint64_t dev, ino; /* SHMEM: the file */
	bool live;	   /* seen in the current pass */
	int fd;		   /* SHMEM: the file, during a pass; TASK: /proc/PID/mem */
	bool has_listed;
	struct uffdwp_rangeset listed;	/* what the parent image lists */
	struct uffdwp_rangeset win;	/* SHMEM: offsets the tree maps */
	struct uffdwp_rangeset present; /* holds data now */
	struct uffdwp_rangeset dirty;	/* changed since the parent */
	struct uffdwp_rangeset changed; /* may differ from its staged copy */
	struct uffdwp_rangeset staged;	/* copied while the tree ran */
	struct uffdwp_rangeset data;	/* to store as data */
	struct uffdwp_rangeset fresh;	/* of those, read while frozen */
	struct sruns runs[2];		/* STAGE_COPY, STAGE_FROZEN */
};

/* One dumpable mapping of a task in the current pass. */
struct smap {
	pid_t pid;
	size_t obj;	/* index in snap.objs of the object it shows */
	uint64_t start; /* [start, end) virtual */
	uint64_t end;
	uint64_t pgoff; /* where start lies in the object (tasks: start) */
};

struct stask {
	pid_t pid;
	struct uffdwp_rangeset changed; /* virtual: written since protected */
};

struct snap {
	const struct uffdwp_snap_opts *o;
	struct uffdwp_snap_result *res;
	bool delta, tracked;
	struct uffdwp_chain *chain;
	struct uffdwp_img *pimg; /* the parent image, in chain */
	struct uffdwp_img_writer *w;
	struct uffdwp_report *rep1, *rep2;
	struct sobj *objs;
	size_t nr_objs, cap_objs;
	struct smap *maps;
	size_t nr_maps, cap_maps;
	struct stask *tasks;
	size_t nr_tasks, cap_tasks;
	int stage_fd;
	uint64_t stage_off;
	uint8_t *buf;
	enum uffdwp_snap_phase phase;
	uint64_t prog_done, prog_total, prog_last;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void progress(struct snap *s, uint64_t bytes)
{
	s->prog_done += bytes;
	if (!s->o->progress)
		return;
	if (bytes && s->prog_done < s->prog_total && s->prog_done - s->prog_last < PROGRESS_GAP)
		return;
	s->prog_last = s->prog_done;
	s->o->progress(s->o->progress_arg, s->phase, s->prog_done, s->prog_total);
}

static void progress_start(struct snap *s, enum uffdwp_snap_phase phase, uint64_t total)
{
	s->phase = phase;
	s->prog_done = s->prog_last = 0;
	s->prog_total = total;
	progress(s, 0);
}

/* ---------------------------------------------------------------- rangesets */

/* @out = @a minus @b, appended in order. Returns 0 or -ENOMEM. */
static int rs_subtract(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
		       const struct uffdwp_rangeset *b)
{
	size_t i, j = 0;
	int err;

	uffdwp_rangeset__clear(out);
	for (i = 0; i < a->nr; i++) {
		uint64_t s = a->r[i].start, e = a->r[i].end;

		while (j < b->nr && b->r[j].end <= s)
			j++;
		for (size_t k = j; k < b->nr && b->r[k].start < e && s < e; k++) {
			if (b->r[k].start > s) {
				err = uffdwp_rangeset__add(out, s, b->r[k].start);
				if (err)
					return err;
			}
			if (b->r[k].end > s)
				s = b->r[k].end;
		}
		if (s < e) {
			err = uffdwp_rangeset__add(out, s, e);
			if (err)
				return err;
		}
	}
	return 0;
}

/* @out = @a and @b. Returns 0 or -ENOMEM. */
static int rs_intersect(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
			const struct uffdwp_rangeset *b)
{
	size_t i = 0, j = 0;
	int err;

	uffdwp_rangeset__clear(out);
	while (i < a->nr && j < b->nr) {
		uint64_t s = a->r[i].start > b->r[j].start ? a->r[i].start : b->r[j].start;
		uint64_t e = a->r[i].end < b->r[j].end ? a->r[i].end : b->r[j].end;

		if (s < e) {
			err = uffdwp_rangeset__add(out, s, e);
			if (err)
				return err;
		}
		if (a->r[i].end < b->r[j].end)
			i++;
		else
			j++;
	}
	return 0;
}

/* @a = @a minus @b. */
static int rs_remove_set(struct uffdwp_rangeset *a, const struct uffdwp_rangeset *b)
{
	struct uffdwp_rangeset t = UFFDWP_RANGESET_INIT;
	int err = rs_subtract(&t, a, b);

	if (!err) {
		uffdwp_rangeset__fini(a);
		*a = t;
	} else {
		uffdwp_rangeset__fini(&t);
	}
	return err;
}

/* ----------------------------------------------------------------- objects */

void uffdwp_snap_tag(const uint8_t *id, uint8_t *tag)
{
	memset(tag, 0, UFFDWP_HOLDER_TAG_LEN);
	memcpy(tag, id, UFFDWP_IMG_ID_LEN);
}

/* st_dev of the kernel's internal shm mount, where memfds live; 0 if unknown. */
static uint64_t shm_mnt_dev(void)
{
	static uint64_t dev;
	static bool known;
	struct stat st;
	int fd;

	if (known)
		return dev;
	fd = memfd_create("uffdwp-probe", MFD_CLOEXEC);
	if (fd >= 0) {
		if (!fstat(fd, &st))
			dev = st.st_dev;
		close(fd);
	}
	known = true;
	return dev;
}

uint64_t uffdwp_snap_shmem_id(uint64_t dev, uint64_t ino)
{
	if (dev == shm_mnt_dev())
		return ino;
	return (1ULL << 63) | ((uint64_t)(minor(dev) & 0x7ffff) << 44) | (ino & ((1ULL << 44) - 1));
}

static void obj_fini(struct sobj *ob)
{
	size_t i;

	if (ob->fd >= 0)
		close(ob->fd);
	ob->fd = -1;
	uffdwp_rangeset__fini(&ob->listed);
	uffdwp_rangeset__fini(&ob->win);
	uffdwp_rangeset__fini(&ob->present);
	uffdwp_rangeset__fini(&ob->dirty);
	uffdwp_rangeset__fini(&ob->changed);
	uffdwp_rangeset__fini(&ob->staged);
	uffdwp_rangeset__fini(&ob->data);
	uffdwp_rangeset__fini(&ob->fresh);
	for (i = 0; i < 2; i++)
		free(ob->runs[i].r);
}

/* What the parent image lists of @ob, in bytes. */
static int obj_load_listed(struct snap *s, struct sobj *ob)
{
	const struct uffdwp_img_object *po;
	size_t i;
	int err;

	if (!s->pimg)
		return 0;
	po = uffdwp_img__find_object(s->pimg, ob->kind, ob->id);
	if (!po)
		return 0;
	ob->has_listed = true;
	for (i = 0; i < po->nr_ranges; i++) {
		const struct uffdwp_img_range *r = &po->ranges[i];

		err =
		    uffdwp_rangeset__add(&ob->listed, r->start * PG, (r->start + r->nr_pages) * PG);
		if (err)
			return err;
	}
	return 0;
}

/*
 * The object @kind/@id, made if new. Returns its index, or -errno:
 * -ENOTUNIQ when two shared memory files come out with the same id.
 */
static long obj_get(struct snap *s, uint32_t kind, uint64_t id, uint64_t dev, uint64_t ino)
{
	struct sobj *ob;
	size_t i;
	int err;

	for (i = 0; i < s->nr_objs; i++) {
		ob = &s->objs[i];
		if (ob->kind != kind || ob->id != id)
			continue;
		if (kind == UFFDWP_IMG_OBJ_SHMEM && (ob->dev != dev || ob->ino != ino)) {
			pr_err("shared memory files %" PRIu64 ":%" PRIu64 " and %" PRIu64
			       ":%" PRIu64 " would share object id %#" PRIx64 "\n",
			       ob->dev, ob->ino, dev, ino, id);
			return -ENOTUNIQ;
		}
		return (long)i;
	}
	if (s->nr_objs == s->cap_objs) {
		size_t nc = s->cap_objs ? s->cap_objs * 2 : 16;

		ob = realloc(s->objs, nc * sizeof(*ob));
		if (!ob)
			return -ENOMEM;
		s->objs = ob;
		s->cap_objs = nc;
	}
	ob = &s->objs[s->nr_objs];
	memset(ob, 0, sizeof(*ob));
	ob->kind = kind;
	ob->id = id;
	ob->dev = dev;
	ob->ino = ino;
	ob->fd = -1;
	err = obj_load_listed(s, ob);
	if (err) {
		obj_fini(ob);
		return err;
	}
	return (long)s->nr_objs++;
}

static int maps_push(struct snap *s, pid_t pid, size_t obj, uint64_t start, uint64_t end,
		     uint64_t pgoff)
{
	struct smap *m;

	if (s->nr_maps == s->cap_maps) {
		size_t nc = s->cap_maps ? s->cap_maps * 2 : 64;

		m = realloc(s->maps, nc * sizeof(*m));
		if (!m)
			return -ENOMEM;
		s->maps = m;
		s->cap_maps = nc;
	}
	m = &s->maps[s->nr_maps++];
	m->pid = pid;
	m->obj = obj;
	m->start = start;
	m->end = end;
	m->pgoff = pgoff;
	return 0;
}

/* Forget the previous pass: tasks, mappings, open files, what was present. */
static void pass_reset(struct snap *s)
{
	size_t i;

	for (i = 0; i < s->nr_tasks; i++)
		uffdwp_rangeset__fini(&s->tasks[i].changed);
	s->nr_tasks = 0;
	s->nr_maps = 0;
	for (i = 0; i < s->nr_objs; i++) {
		struct sobj *ob = &s->objs[i];

		if (ob->fd >= 0)
			close(ob->fd);
		ob->fd = -1;
		ob->live = false;
		uffdwp_rangeset__clear(&ob->win);
		uffdwp_rangeset__clear(&ob->present);
		uffdwp_rangeset__clear(&ob->dirty);
		uffdwp_rangeset__clear(&ob->changed);
	}
}

/* Close the files a pass opened; what it found stays. */
static void pass_close_files(struct snap *s)
{
	size_t i;

	for (i = 0; i < s->nr_objs; i++) {
		if (s->objs[i].fd >= 0)
			close(s->objs[i].fd);
		s->objs[i].fd = -1;
	}
}

/* ------------------------------------------------------------------ pagemap */

/* Add the pages of [start, end), all swapped to PAGEMAP_SCAN, that are no markers. */
static int add_unmarked(int pmfd, uint64_t start, uint64_t end, struct uffdwp_rangeset *out)
{
	uint64_t ent[512], a;
	size_t k, n;
	ssize_t got;
	int err;

	for (a = start; a < end; a += n * PG) {
		n = (end - a) / PG;
		if (n > 512)
			n = 512;
		got = pread(pmfd, ent, n * 8, a / PG * 8);
		if (got < 0)
			return -errno;
		if ((size_t)got < n * 8)
			return -ESRCH; /* the mm is gone */
		for (k = 0; k < n; k++) {
			uint64_t e = ent[k];

			if (!(e & UFFDWP_PM_PRESENT) &&
			    (!(e & UFFDWP_PM_SWAP) ||
			     UFFDWP_PM_SWP_TYPE(e) == UFFDWP_PM_MARKER_TYPE))
				continue;
			err = uffdwp_rangeset__add(out, a + k * PG, a + (k + 1) * PG);
			if (err)
				return err;
		}
	}
	return 0;
}

struct vma_pages {
	int pagemap_fd;
	bool file_priv, shared;
	struct uffdwp_rangeset *present, *changed;
};

#define HAVE_DATA (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)

static int vma_pages_region(void *arg, uint64_t rs, uint64_t re, uint64_t c)
{
	struct vma_pages *vp = arg;
	bool own = (c & HAVE_DATA) && !(vp->file_priv && (c & PAGE_IS_FILE));
	int err = 0;

	if (vp->present && own && (c & PAGE_IS_PRESENT))
		err = uffdwp_rangeset__add(vp->present, rs, re);
	else if (vp->present && own)
		err = add_unmarked(vp->pagemap_fd, rs, re, vp->present);
	if (!err && vp->changed &&
	    (((c & PAGE_IS_WRITTEN) && !(vp->file_priv && (c & PAGE_IS_FILE))) ||
	     (vp->shared && !(c & HAVE_DATA))))
		err = uffdwp_rangeset__add(vp->changed, rs, re);
	return err;
}

int uffdwp_snap_vma_pages(int pagemap_fd, const struct uffdwp_vma *v, uint64_t start, uint64_t end,
			  struct uffdwp_rangeset *present, struct uffdwp_rangeset *changed)
{
	struct vma_pages vp = {
	    .pagemap_fd = pagemap_fd,
	    .file_priv = v->kind == UFFDWP_VMA_FILE_PRIVATE,
	    .shared = uffdwp_vma_is_shared_obj(v),
	    .present = present,
	    .changed = changed,
	};
	struct uffdwp_pm_walk w = {
	    .return_mask = HAVE_DATA | PAGE_IS_FILE | PAGE_IS_WRITTEN,
	    .region = vma_pages_region,
	    .arg = &vp,
	};

	/* Without @changed only pages with data are of interest: let the kernel filter. */
	if (!changed) {
		w.category_anyof_mask = HAVE_DATA;
		if (vp.file_priv) {
			w.category_inverted = PAGE_IS_FILE;
			w.category_mask = PAGE_IS_FILE;
		}
	}
	return uffdwp_pm_walk(pagemap_fd, start, end, &w, NULL);
}

/* ------------------------------------------------------------------- passes */

static bool vma_private_kind(const struct uffdwp_vma *v)
{
	return v->kind == UFFDWP_VMA_ANON || v->kind == UFFDWP_VMA_FILE_PRIVATE ||
	       v->kind == UFFDWP_VMA_HUGETLB;
}

/*
 * One task in a pass: its mappings, and the present pages of its own
 * memory; with @frozen also what changed since protected. A task that is
 * gone is skipped. Returns 0 or -errno.
 */
static int pass_task(struct snap *s, pid_t pid, bool frozen)
{
	struct uffdwp_maps maps = {0};
	struct stask *t;
	char path[64];
	long ti, oi;
	size_t i;
	int err, fd = -1;

	err = uffdwp_maps__read(pid, &maps);
	if (err == -ESRCH)
		return 0;
	if (err) {
		pr_err("cannot read the mappings of %d: %s\n", pid, uffdwp_strerror(-err));
		return err;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ENOENT || err == -ESRCH) {
			err = 0;
		} else {
			pr_perror("Can't open %s", path);
		}
		goto out;
	}
	if (s->nr_tasks == s->cap_tasks) {
		size_t nc = s->cap_tasks ? s->cap_tasks * 2 : 16;

		t = realloc(s->tasks, nc * sizeof(*t));
		if (!t) {
			err = -ENOMEM;
			goto out;
		}
		s->tasks = t;
		s->cap_tasks = nc;
	}
	t = &s->tasks[s->nr_tasks++];
	t->pid = pid;
	uffdwp_rangeset__init(&t->changed);

	ti = obj_get(s, UFFDWP_IMG_OBJ_TASK, pid, 0, 0);
	if (ti < 0) {
		err = ti;
		goto out;
	}
	s->objs[ti].live = true;
	for (i = 0; i < maps.nr && !err; i++) {
		const struct uffdwp_vma *v = &maps.v[i];

		if (vma_private_kind(v)) {
			err = maps_push(s, pid, ti, v->start, v->end, v->start);
			if (!err)
				err = uffdwp_snap_vma_pages(fd, v, v->start, v->end,
							    &s->objs[ti].present,
							    frozen ? &t->changed : NULL);
		} else if (v->kind == UFFDWP_VMA_SHMEM) {
			oi = obj_get(s, UFFDWP_IMG_OBJ_SHMEM, uffdwp_snap_shmem_id(v->dev, v->ino),
				     v->dev, v->ino);
			if (oi < 0) {
				err = oi;
				break;
			}
			s->objs[oi].live = true;
			err = uffdwp_rangeset__add(&s->objs[oi].win, v->pgoff,
						   v->pgoff + (v->end - v->start));
			if (!err)
				err = maps_push(s, pid, oi, v->start, v->end, v->pgoff);
			if (!err && frozen)
				err = uffdwp_snap_vma_pages(fd, v, v->start, v->end, NULL,
							    &t->changed);
		}
		if (err == -ESRCH || err == -ENOENT) {
			/* Gone meanwhile: only possible while it runs. */
			err = 0;
			break;
		}
		if (err)
			pr_err("cannot read the page table of %d at %" PRIx64 "-%" PRIx64 ": %s\n",
			       pid, v->start, v->end, uffdwp_strerror(-err));
	}
out:
	if (fd >= 0)
		close(fd);
	uffdwp_maps__fini(&maps);
	return err;
}

static int pass_tasks(struct snap *s, bool frozen)
{
	pid_t *pids = NULL;
	int n, i, err = 0;

	pass_reset(s);
	n = uffdwp_proc_tree(s->o->pid, s->o->tree, &pids);
	if (n < 0) {
		if (n == -ESRCH)
			pr_err("process %d is gone\n", s->o->pid);
		return n;
	}
	for (i = 0; i < n && !err; i++)
		err = pass_task(s, pids[i], frozen);
	free(pids);
	return err;
}

/*
 * Open the file of shared memory object @ob through one of its mappings and
 * find the pages it holds (SEEK_DATA: in RAM or swapped) within the windows
 * the tree maps.
 */
static int pass_shmem_obj(struct snap *s, size_t oi)
{
	struct sobj *ob = &s->objs[oi];
	struct uffdwp_rangeset held = UFFDWP_RANGESET_INIT;
	char path[96];
	struct stat st;
	off_t d, h;
	size_t i;
	int err = -ENOENT;

	for (i = 0; i < s->nr_maps && ob->fd < 0; i++) {
		const struct smap *m = &s->maps[i];

		if (m->obj != oi)
			continue;
		/* map_files needs CAP_SYS_ADMIN, as the tracker does. */
		snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, m->pid,
			 m->start, m->end);
		ob->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (ob->fd < 0) {
			err = -errno;
			continue;
		}
		if (fstat(ob->fd, &st) || st.st_dev != ob->dev || st.st_ino != ob->ino) {
			close(ob->fd);
			ob->fd = -1;
			err = -ESRCH; /* replaced meanwhile */
		}
	}
	if (ob->fd < 0) {
		if (err == -ESRCH || err == -ENOENT) {
			/* Its mappings went away while the tree ran: nothing to copy now. */
			ob->live = false;
			return 0;
		}
		pr_err("cannot open shared memory %" PRIu64 " (inode %" PRIu64 "): %s\n", ob->id,
		       ob->ino, uffdwp_strerror(-err));
		return err;
	}
	for (d = 0;; d = h) {
		d = lseek(ob->fd, d, SEEK_DATA);
		if (d < 0) {
			err = errno == ENXIO ? 0 : -errno;
			break;
		}
		h = lseek(ob->fd, d, SEEK_HOLE);
		if (h < 0) {
			err = -errno;
			break;
		}
		err = uffdwp_rangeset__add(&held, d & ~(PG - 1), (h + PG - 1) & ~(PG - 1));
		if (err)
			break;
	}
	if (err)
		pr_err("cannot find the pages of shared memory %" PRIu64 ": %s\n", ob->id,
		       uffdwp_strerror(-err));
	else
		err = rs_intersect(&ob->present, &held, &ob->win);
	uffdwp_rangeset__fini(&held);
	return err;
}

static int pass_shmem(struct snap *s)
{
	size_t i;
	int err;

	for (i = 0; i < s->nr_objs; i++) {
		if (s->objs[i].kind != UFFDWP_IMG_OBJ_SHMEM || !s->objs[i].live)
			continue;
		err = pass_shmem_obj(s, i);
		if (err)
			return err;
	}
	return 0;
}

/* ---------------------------------------------------------------- tracking */

static bool holder_gone(int err)
{
	return err == -ENOENT || err == -ECONNREFUSED || err == -ECONNRESET;
}

static const struct uffdwp_task_report *report_task(const struct uffdwp_report *r, pid_t pid)
{
	size_t i;

	for (i = 0; r && i < r->nr_tasks; i++)
		if (r->tasks[i].pid == pid)
			return &r->tasks[i];
	return NULL;
}

enum sfield { F_DIRTY, F_CHANGED };

/*
 * Add to the @which set of the objects what the virtual ranges @va of task
 * @pid show of them (@va NULL: all its mappings).
 */
static int project(struct snap *s, pid_t pid, const struct uffdwp_rangeset *va, enum sfield which)
{
	size_t i;
	int err = 0;

	for (i = 0; i < s->nr_maps && !err; i++) {
		const struct smap *m = &s->maps[i];
		struct sobj *ob = &s->objs[m->obj];
		struct uffdwp_rangeset *dst = which == F_DIRTY ? &ob->dirty : &ob->changed;

		if (m->pid != pid)
			continue;
		if (va)
			err = uffdwp_rangeset__add_clipped(dst, va, m->start, m->end,
							   (int64_t)(m->pgoff - m->start));
		else
			err = uffdwp_rangeset__add(dst, m->pgoff, m->pgoff + (m->end - m->start));
	}
	return err;
}

/* Notes whose ranges may change without a trace in the page tables we read. */
static bool note_unreliable(uint32_t reason)
{
	return reason != UFFDWP_R_NEW_TASK && reason != UFFDWP_R_NEW_MAPPING &&
	       reason != UFFDWP_R_NOT_DUMPED;
}

/* A task the report does not vouch for: all of it is dirty. */
static bool task_untracked(const struct uffdwp_task_report *tr)
{
	return !tr || (tr->flags & (UFFDWP_TASK_LOST | UFFDWP_TASK_EXEC));
}

/* D1, projected: what the first scan found, for the copy while running. */
static int dirty_pass1(struct snap *s)
{
	size_t i;
	int err = 0;

	for (i = 0; i < s->nr_tasks && !err; i++) {
		const struct uffdwp_task_report *tr = report_task(s->rep1, s->tasks[i].pid);

		err = project(s, s->tasks[i].pid, task_untracked(tr) ? NULL : &tr->dirty, F_DIRTY);
	}
	return err;
}

/*
 * D2 and what may differ from the staged copies, projected, for each task of
 * the frozen pass: pages written since the first scan (the page tables
 * say), D2 minus D1, the notes' ranges, and everything of a task the scans
 * do not vouch for.
 */
static int dirty_pass2(struct snap *s)
{
	struct uffdwp_rangeset c = UFFDWP_RANGESET_INIT;
	bool consecutive = s->rep1 && s->rep2 && s->rep2->gen == s->rep1->gen + 1;
	size_t i, k;
	int err = 0;

	for (i = 0; i < s->nr_tasks && !err; i++) {
		struct stask *t = &s->tasks[i];
		const struct uffdwp_task_report *t2 = report_task(s->rep2, t->pid);
		const struct uffdwp_task_report *t1 =
		    consecutive ? report_task(s->rep1, t->pid) : NULL;

		if (!s->tracked || task_untracked(t2) || (t2->flags & UFFDWP_TASK_NEW)) {
			err = project(s, t->pid, NULL, F_DIRTY);
			if (!err)
				err = project(s, t->pid, NULL, F_CHANGED);
			continue;
		}
		err = project(s, t->pid, &t2->dirty, F_DIRTY);
		if (!err && !task_untracked(t1))
			err = rs_subtract(&c, &t2->dirty, &t1->dirty);
		else if (!err)
			err = uffdwp_rangeset__add_set(&c, &t2->dirty);
		if (!err)
			err = uffdwp_rangeset__add_set(&c, &t->changed);
		for (k = 0; !err && k < t2->nr_notes; k++)
			if (note_unreliable(t2->notes[k].reason))
				err =
				    uffdwp_rangeset__add(&c, t2->notes[k].start, t2->notes[k].end);
		if (!err)
			err = project(s, t->pid, &c, F_CHANGED);
		uffdwp_rangeset__clear(&c);
	}
	uffdwp_rangeset__fini(&c);
	return err;
}

/* ------------------------------------------------------------------ copying */

static int stage_open(struct snap *s)
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
			progress(s, n * PG);
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
		return rs_subtract(out, &ob->present, tmp);
	err = rs_subtract(tmp, &ob->listed, &ob->dirty);
	return err ? err : rs_subtract(out, &ob->present, tmp);
}

/* While the tree runs: copy what the image will most likely store. */
static int copy_running(struct snap *s)
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
	progress_start(s, UFFDWP_SNAP_COPY, total);
	for (i = 0; i < s->nr_objs && !err; i++) {
		if (!s->objs[i].live)
			continue;
		err = data_of(s, &s->objs[i], &want, &tmp);
		if (!err)
			err = copy_set(s, &s->objs[i], &want, STAGE_COPY, &missed);
	}
	progress(s, 0);
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
static int read_frozen(struct snap *s)
{
	struct uffdwp_rangeset read = UFFDWP_RANGESET_INIT, good = UFFDWP_RANGESET_INIT;
	uint64_t before = s->stage_off, missed = 0, total = 0, m;
	size_t i;
	int pass, err = 0;

	/* Pass 0 counts, for the progress report; pass 1 reads. */
	for (pass = 0; pass < 2; pass++) {
		if (pass)
			progress_start(s, UFFDWP_SNAP_FROZEN, total);
		for (i = 0; i < s->nr_objs && !err; i++) {
			struct sobj *ob = &s->objs[i];

			uffdwp_rangeset__clear(&ob->fresh);
			if (!ob->live)
				continue;
			err = data_of(s, ob, &ob->data, &read);
			if (!err)
				err = rs_subtract(&good, &ob->staged, &ob->changed);
			if (!err)
				err = rs_subtract(&read, &ob->data, &good);
			if (err || !pass) {
				total += uffdwp_rangeset__bytes(&read);
				continue;
			}
			m = 0;
			err = copy_set(s, ob, &read, STAGE_FROZEN, &m);
			/* What cannot be read now is not there: absent. */
			if (!err && m) {
				err = rs_remove_set(&read, &ob->fresh);
				if (!err)
					err = rs_remove_set(&ob->data, &read);
				if (!err)
					err = rs_remove_set(&ob->present, &read);
			}
			missed += m;
		}
	}
	progress(s, 0);
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
		progress(s, n * PG);
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

static int write_image(struct snap *s)
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
	progress_start(s, UFFDWP_SNAP_WRITE, total);
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
	progress(s, 0);
	uffdwp_img_writer__stats(s->w, &s->res->st);
	img = uffdwp_img__open(s->o->dir);
	if (!img)
		return -errno;
	memcpy(s->res->id, uffdwp_img__info(img)->id, UFFDWP_IMG_ID_LEN);
	uffdwp_img__close(img);
	return 0;
}

/* ----------------------------------------------------------------- the snap */

static int start_holder(struct snap *s)
{
	struct uffdwp_holder_opts ho = {
	    .track = {.pid = s->o->pid, .tree = s->o->tree},
	    .idle_timeout_s = UFFDWP_IDLE_TIMEOUT_S,
	};
	int r = uffdwp_holder_spawn(&ho);

	if (r > 0) {
		s->tracked = true;
		s->res->holder_started = true;
		return 0;
	}
	/* Someone started one since we looked: use it. */
	if (r == -EBUSY && uffdwp_holder_running(s->o->pid) > 0) {
		s->tracked = true;
		return 0;
	}
	if (r == -ESRCH || r == -EPERM || r == -EACCES)
		return r;
	pr_warn("cannot track %d (%s): copying with the tree stopped; the next snapshot "
		"cannot be a delta\n",
		s->o->pid, uffdwp_strerror(-r));
	return 0;
}

/* No holder tracks the tree (any more): a full image without parent, and a new holder. */
static int tracking_lost(struct snap *s, const char *when)
{
	if (s->chain)
		pr_warn("tracking lost for %d (%s): writing a full snapshot, without a "
			"parent\n",
			s->o->pid, when);
	s->res->mode = s->chain ? UFFDWP_SNAP_LOST : UFFDWP_SNAP_FULL;
	s->delta = s->tracked = false;
	/* The holder must not inherit the chain's files. */
	uffdwp_chain__close(s->chain);
	s->chain = NULL;
	s->pimg = NULL;
	return start_holder(s);
}

/* Decide between delta, full and lost; start a holder if none runs. */
static int setup_tracking(struct snap *s)
{
	uint8_t want[UFFDWP_HOLDER_TAG_LEN], zero[UFFDWP_HOLDER_TAG_LEN] = {0};
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	struct uffdwp_holder_status st;
	int hp, err;

	hp = uffdwp_holder_running(s->o->pid);
	if (hp < 0) {
		pr_err("cannot tell whether %d is tracked: %s\n", s->o->pid, uffdwp_strerror(-hp));
		return hp;
	}
	if (hp > 0) {
		err = uffdwp_holder_status(s->o->pid, &st);
		if (holder_gone(err)) {
			hp = 0;
		} else if (err) {
			pr_err("cannot ask the holder of %d: %s\n", s->o->pid,
			       uffdwp_strerror(-err));
			return err;
		}
	}
	if (!hp)
		return tracking_lost(s, "no holder runs");
	if (!s->chain) {
		s->res->mode = UFFDWP_SNAP_FULL;
		s->tracked = true;
		return 0;
	}
	uffdwp_snap_tag(uffdwp_img__info(s->pimg)->id, want);
	if (!memcmp(st.tag, want, sizeof(want))) {
		s->res->mode = UFFDWP_SNAP_DELTA;
		s->delta = s->tracked = true;
		return 0;
	}
	uffdwp_img__id_str(uffdwp_img__info(s->pimg)->id, id);
	if (!memcmp(st.tag, zero, sizeof(zero)))
		pr_err("tracking of %d is not relative to %s (image %s): its holder never "
		       "committed an image; take a full snapshot (no --parent) first\n",
		       s->o->pid, s->o->parent, id);
	else
		pr_err("tracking of %d is not relative to %s (image %s) but to another image; "
		       "take a delta of that one, or a full snapshot\n",
		       s->o->pid, s->o->parent, id);
	return -ESTALE;
}

static int check_target(pid_t pid)
{
	char path[64];
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	err = -errno;
	if (err == -ENOENT)
		pr_err("no process %d\n", pid);
	else
		pr_err("cannot read the memory of %d: %s\n", pid, uffdwp_strerror(-err));
	return err == -ENOENT ? -ESRCH : err;
}

/*
 * What can be found wrong with @dir before any tracking starts: a holder
 * started for a snapshot that then cannot be written would outlive it.
 */
static int check_dir(const char *dir)
{
	char path[4096], *slash;
	struct stat st;
	int err;

	if (!stat(dir, &st)) {
		if (!S_ISDIR(st.st_mode)) {
			pr_err("%s is not a directory\n", dir);
			return -ENOTDIR;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, UFFDWP_IMG_INDEX);
		if (!access(path, F_OK)) {
			pr_err("%s already holds an image\n", dir);
			return -EEXIST;
		}
		snprintf(path, sizeof(path), "%s", dir);
	} else if (errno == ENOENT) {
		/* Created by the writer: its parent must take it. */
		snprintf(path, sizeof(path), "%s", dir);
		slash = strrchr(path, '/');
		if (slash == path)
			path[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			snprintf(path, sizeof(path), ".");
	} else {
		err = -errno;
		pr_perror("Can't stat %s", dir);
		return err;
	}
	if (access(path, W_OK | X_OK)) {
		err = -errno;
		pr_perror("Can't write into %s", path);
		return err;
	}
	return 0;
}

/*
 * A snapshot that failed after starting a holder stops it again: the
 * process is left as it was found. Says so if it cannot.
 */
static void undo_holder(struct snap *s)
{
	struct uffdwp_stop_stats st;
	int i, err;

	if (!s->res->holder_started)
		return;
	err = uffdwp_holder_stop(s->o->pid, 0, &st);
	for (i = 0; !err && i < 500 && uffdwp_holder_running(s->o->pid) > 0; i++)
		usleep(10000);
	if (err || uffdwp_holder_running(s->o->pid) > 0)
		pr_warn("the holder started for %d is still running ('uffdwp track stop -t %d' "
			"ends it): %s\n",
			s->o->pid, s->o->pid, err ? uffdwp_strerror(-err) : "did not exit");
	else
		s->res->holder_started = false;
}

static void snap_free(struct snap *s)
{
	size_t i;

	pass_reset(s);
	for (i = 0; i < s->nr_objs; i++)
		obj_fini(&s->objs[i]);
	free(s->objs);
	free(s->maps);
	free(s->tasks);
	free(s->buf);
	if (s->stage_fd >= 0)
		close(s->stage_fd);
	uffdwp_img_writer__free(s->w);
	uffdwp_report__free(s->rep1);
	uffdwp_report__free(s->rep2);
	uffdwp_chain__close(s->chain);
}

static int scan(struct snap *s, struct uffdwp_report **rep)
{
	int err = uffdwp_holder_scan(s->o->pid, rep);

	if (err && !holder_gone(err))
		pr_err("scan of %d failed: %s\n", s->o->pid, uffdwp_strerror(-err));
	return err;
}

/* Steps 3: frozen. The tree is stopped only inside; thawed on every path. */
static int frozen_part(struct snap *s)
{
	struct uffdwp_freezer fz;
	uint64_t t0;
	unsigned int tmo = s->o->freeze_timeout_ms ? s->o->freeze_timeout_ms : DEF_FREEZE_MS;
	int err;

	/* Counted from the first SIGSTOP: the wait for the tree to stop is part of it. */
	t0 = now_ns();
	err = uffdwp_freeze(s->o->pid, s->o->tree, tmo, &fz);
	if (err)
		return err;
	err = pass_tasks(s, true);
	if (!err && s->tracked) {
		err = scan(s, &s->rep2);
		if (holder_gone(err)) {
			if (s->delta) {
				pr_err("tracking of %d was lost during the snapshot; the next one "
				       "will be full\n",
				       s->o->pid);
				err = -ECONNRESET;
			} else {
				pr_warn("tracking of %d was lost during the snapshot\n", s->o->pid);
				s->tracked = false;
				err = 0;
			}
		}
	}
	if (!err)
		err = dirty_pass2(s);
	/* Files of shared memory opened only now, after the scan: see snap.h. */
	if (!err)
		err = pass_shmem(s);
	if (!err)
		err = read_frozen(s);
	pass_close_files(s);
	uffdwp_thaw(&fz);
	s->res->frozen_ns = now_ns() - t0;
	return err;
}

int uffdwp_snap(const struct uffdwp_snap_opts *o, struct uffdwp_snap_result *res)
{
	uint8_t tag[UFFDWP_HOLDER_TAG_LEN];
	struct snap s = {.o = o, .res = res, .stage_fd = -1};
	uint64_t t0 = now_ns();
	int err;

	memset(res, 0, sizeof(*res));
	err = check_target(o->pid);
	if (!err)
		err = check_dir(o->dir);
	if (!err)
		err = uffdwp_img_opts__check(&o->img);
	if (err)
		return err;
	if (o->parent) {
		s.chain = uffdwp_chain__open(o->parent);
		if (!s.chain) {
			err = -errno;
			pr_err("parent %s: not a usable image chain (%s)\n", o->parent,
			       uffdwp_strerror(-err));
			return err;
		}
		s.pimg = uffdwp_chain__image(s.chain, 0);
	}
	/* Before any file of ours is open: a holder we start inherits them all. */
	err = setup_tracking(&s);
	if (!err && s.tracked) {
		err = scan(&s, &s.rep1);
		if (holder_gone(err) && !res->holder_started) {
			/* It went away since we asked: start over, with a holder of ours. */
			err = tracking_lost(&s, "its holder exited");
			if (!err && s.tracked)
				err = scan(&s, &s.rep1);
		}
		if (holder_gone(err)) {
			pr_warn("tracking of %d is lost: copying with the tree stopped\n", o->pid);
			s.tracked = false;
			err = 0;
		}
	}
	if (err)
		goto out;

	s.w = uffdwp_img_writer__begin(o->dir, s.delta ? o->parent : NULL, &o->img);
	if (!s.w) {
		err = -errno;
		goto out;
	}
	s.buf = malloc(CHUNK_PAGES * PG);
	if (!s.buf) {
		err = -ENOMEM;
		goto out;
	}
	err = stage_open(&s);
	if (err)
		goto out;

	/* 1, 2: while the tree runs. Untracked, nothing copied now could be trusted. */
	if (s.tracked) {
		err = pass_tasks(&s, false);
		if (!err)
			err = dirty_pass1(&s);
		if (!err)
			err = pass_shmem(&s);
		if (!err)
			err = copy_running(&s);
		pass_close_files(&s);
		if (err)
			goto out;
	}
	err = frozen_part(&s);
	if (err)
		goto out;

	/* 4: the image, then the commit. */
	err = write_image(&s);
	if (err)
		goto out;
	res->tracked = s.tracked;
	if (s.tracked && s.rep2) {
		uffdwp_snap_tag(res->id, tag);
		err = uffdwp_holder_commit_tag(o->pid, s.rep2->gen, tag);
		if (err) {
			pr_warn("the image is written, but the holder of %d did not take the "
				"commit (%s): no delta can be taken against it\n",
				o->pid, uffdwp_strerror(-err));
			err = 0;
		} else {
			res->committed = true;
			res->gen = s.rep2->gen;
		}
	}
out:
	/* Files closed first: the holder must not wait on ours. */
	snap_free(&s);
	if (err)
		undo_holder(&s);
	res->total_ns = now_ns() - t0;
	return err;
}
