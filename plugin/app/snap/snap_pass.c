// SPDX-License-Identifier: GPL-2.0
/* uffdwp snap: the objects, the passes over mappings and shared memory, the tracker's answers. */
#define LOG_PREFIX "snap: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "uapi/uffdwp-uapi.h"
#include "track/holder.h"
#include "base/log.h"
#include "base/pagemap.h"
#include "snap/snap_priv.h"

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

void snap_obj_fini(struct sobj *ob)
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
		snap_obj_fini(ob);
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
void snap_pass_reset(struct snap *s)
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
void snap_pass_close_files(struct snap *s)
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

int snap_pass_tasks(struct snap *s, bool frozen)
{
	pid_t *pids = NULL;
	int n, i, err = 0;

	snap_pass_reset(s);
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
		err = uffdwp_rangeset__intersect(&ob->present, &held, &ob->win);
	uffdwp_rangeset__fini(&held);
	return err;
}

int snap_pass_shmem(struct snap *s)
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

static const struct uffdwp_task_report *report_task(const struct uffdwp_report *r, pid_t pid)
{
	size_t i;

	for (i = 0; r && i < r->nr_tasks; i++)
		if (r->tasks[i].pid == pid)
			return &r->tasks[i];
	return NULL;
}

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
int snap_dirty_pass1(struct snap *s)
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
int snap_dirty_pass2(struct snap *s)
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
			err = uffdwp_rangeset__subtract(&c, &t2->dirty, &t1->dirty);
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
