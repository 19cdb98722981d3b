// SPDX-License-Identifier: GPL-2.0
/*
 * Shared memory in the tracker: each object's mappings across the tree,
 * its dirty offsets projected into every mapper, and what makes it dirty
 * as a whole (outside users, forks, unmapped windows) (tracker_priv.h).
 */
#define LOG_PREFIX "tracker: "
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "track/tracker_priv.h"

static int obj_add_win(struct shm_obj *o, pid_t pid, const struct uffdwp_vma *v)
{
	struct shm_win *w = realloc(o->cur, (o->nr_cur + 1) * sizeof(*w));

	if (!w)
		return -ENOMEM;
	o->cur = w;
	w = &o->cur[o->nr_cur++];
	memset(w, 0, sizeof(*w));
	w->pid = pid;
	w->start = v->start;
	w->end = v->end;
	w->pgoff = v->pgoff;
	return 0;
}

void trk_obj_fini(struct shm_obj *o)
{
	uffdwp_rangeset__fini(&o->dirty);
	uffdwp_rangeset__fini(&o->gone);
	uffdwp_rangeset__fini(&o->forked);
	free(o->prev);
	free(o->cur);
}

static struct shm_obj *obj_get(struct uffdwp_tracker *t, const struct uffdwp_vma *v)
{
	struct shm_obj *o;
	size_t i;

	for (i = 0; i < t->nr_objs; i++)
		if (t->objs[i].id.dev == v->dev && t->objs[i].id.ino == v->ino)
			return &t->objs[i];
	o = realloc(t->objs, (t->nr_objs + 1) * sizeof(*o));
	if (!o)
		return NULL;
	t->objs = o;
	o = &t->objs[t->nr_objs++];
	memset(o, 0, sizeof(*o));
	o->id.dev = v->dev;
	o->id.ino = v->ino;
	o->sysv_id = (v->prot & UFFDWP_VMA_SYSV) ? v->sysv_id : -1;
	return o;
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

typedef int (*shm_vma_fn)(struct shm_obj *o, const struct uffdwp_vma *v, pid_t pid,
			  struct task_scan_state *s, struct uffdwp_task_report *tr);

/* Call @fn for each shared-object mapping of each task scanned. */
static int for_each_shared_vma(struct uffdwp_tracker *t, struct task_scan_state *st,
			       struct uffdwp_report *rep, shm_vma_fn fn)
{
	size_t i, j;
	int err;

	for (i = 0; i < t->nr_tasks; i++) {
		if (!st[i].ok)
			continue;
		for (j = 0; j < st[i].maps.nr; j++) {
			const struct uffdwp_vma *v = &st[i].maps.v[j];
			struct shm_obj *o;

			if (!uffdwp_vma_is_shared_obj(v))
				continue;
			o = obj_get(t, v);
			if (!o)
				return -ENOMEM;
			err = fn(o, v, t->tasks[i].pid, &st[i], &rep->tasks[i]);
			if (err)
				return err;
		}
	}
	return 0;
}

/*
 * Object offsets of what this mapper found dirty. A mapper that forked
 * shared its window with a child whose page table we may never see (it
 * can write and exit before the next scan): all of the window.
 */
static int shm_gather(struct shm_obj *o, const struct uffdwp_vma *v, pid_t pid,
		      struct task_scan_state *s, struct uffdwp_task_report *tr)
{
	o->used = true;
	o->tracked_attach++;
	if (obj_add_win(o, pid, v))
		return -ENOMEM;
	if (s->forked && uffdwp_rangeset__add(&o->forked, v->pgoff, v->pgoff + (v->end - v->start)))
		return -ENOMEM;
	return uffdwp_rangeset__add_clipped(&o->dirty, &s->dirty, v->start, v->end,
					    (int64_t)v->pgoff - (int64_t)v->start);
}

/* Note the parts of @v that @set (object offsets) makes dirty, for @why. */
static int shm_note(struct uffdwp_task_report *tr, const struct uffdwp_vma *v,
		    const struct uffdwp_rangeset *set, enum uffdwp_reason why)
{
	struct uffdwp_rangeset part = UFFDWP_RANGESET_INIT;
	int64_t delta = (int64_t)v->start - (int64_t)v->pgoff;
	uint64_t end = v->pgoff + (v->end - v->start);
	size_t k;
	int err;

	err = uffdwp_rangeset__add_clipped(&part, set, v->pgoff, end, delta);
	for (k = 0; !err && k < part.nr; k++)
		err = trk_note_add(tr, part.r[k].start, part.r[k].end, why, 0);
	uffdwp_rangeset__fini(&part);
	return err;
}

/* The object's dirty offsets, back into this mapper's addresses. */
static int shm_project(struct shm_obj *o, const struct uffdwp_vma *v, pid_t pid,
		       struct task_scan_state *s, struct uffdwp_task_report *tr)
{
	int64_t delta = (int64_t)v->start - (int64_t)v->pgoff;
	uint64_t end = v->pgoff + (v->end - v->start);
	int err;

	if (o->tainted) {
		err = uffdwp_rangeset__add(&s->dirty, v->start, v->end);
		return err ? err : trk_note_add(tr, v->start, v->end, UFFDWP_R_SHMEM_SHARED, 0);
	}
	err = uffdwp_rangeset__add_clipped(&s->dirty, &o->dirty, v->pgoff, end, delta);
	if (!err && o->punched)
		err = uffdwp_rangeset__add(&s->dirty, v->start, v->end);
	if (!err)
		err = shm_note(tr, v, &o->gone, UFFDWP_R_SHMEM_UNMAPPED);
	if (!err)
		err = shm_note(tr, v, &o->forked, UFFDWP_R_SHMEM_FORKED);
	if (!err && o->punched)
		err = trk_note_add(tr, v->start, v->end, UFFDWP_R_SHMEM_CHANGED, 0);
	return err;
}

/*
 * Whether a hole may have been punched in the object since the previous
 * scan (MADV_REMOVE through any mapping, or fallocate()). A punch zaps
 * every mapper's PTEs; where they were write-protected the kernel leaves
 * protected markers, and the page a later fault maps is protected too:
 * the page now reads as zeros and no page table says it changed. With
 * the punch watch the count of fallocate() calls on the object says it;
 * without, the object's ctime, which a punch moves, and so does the first
 * write through a mapping after each scan: then a written object is dirty
 * whole.
 */
static bool shm_maybe_punched(struct uffdwp_tracker *t, struct shm_obj *o, bool lost)
{
	const struct shm_win *w = &o->prev[0]; /* this scan's windows, by now */
	bool was = o->watched, same;
	uint64_t n = 0;
	int err;

	if (t->pw && !o->watched && !uffdwp_punchwatch__watch(t->pw, &o->id)) {
		o->watched = true;
		o->punches = 0;
	}
	if (o->watched) {
		err = uffdwp_punchwatch__count(t->pw, &o->id, &n);
		if (!err && was) {
			same = !lost && n == o->punches;
			o->punches = n;
			o->ctime_known = false;
			return !same;
		}
		/* Watched from now on; what came before, the ctime says. */
		o->watched = !err;
		o->punches = n;
	}
	err = uffdwp_map_file_ctime(w->pid, w->start, w->end, &o->id, &n);
	if (err)
		pr_debug("ctime of the object at %" PRIx64 " in %d: %s\n", w->start, w->pid,
			 uffdwp_strerror(-err));
	same = !err && o->ctime_known && n == o->ctime_ns;
	o->ctime_known = !err;
	o->ctime_ns = n;
	return !same;
}

/*
 * Shared memory: a page written through one mapper's page table shows
 * only in that table, so an object's dirty set is the union over its
 * tracked mappers, and every mapper reports all of it. Writes through a
 * file descriptor (pwrite, fallocate) or through a page table we do not
 * scan (a process outside the tree) show nowhere: such objects are dirty
 * whole, at every scan from then on.
 */
int trk_shmem_pass(struct uffdwp_tracker *t, struct task_scan_state *st, struct uffdwp_report *rep)
{
	struct uffdwp_obj_id *ids = NULL;
	size_t *idx = NULL;
	pid_t *pids = NULL;
	bool *seen = NULL;
	size_t i, n = 0;
	bool lost = false;
	int err = 0;

	for (i = 0; i < t->nr_objs; i++) {
		t->objs[i].used = false;
		t->objs[i].tracked_attach = 0;
		t->objs[i].nr_cur = 0;
		uffdwp_rangeset__clear(&t->objs[i].dirty);
		uffdwp_rangeset__clear(&t->objs[i].gone);
		uffdwp_rangeset__clear(&t->objs[i].forked);
	}

	/* Gather each object's dirty offsets from every mapper. */
	err = for_each_shared_vma(t, st, rep, shm_gather);
	if (err)
		return err;

	/*
	 * A mapping gone since the previous scan (munmap, mremap, exit) took
	 * its written PTEs with it, while the data stays in the object for the
	 * other mappers to see: that window of the object is dirty.
	 */
	for (i = 0; i < t->nr_objs; i++) {
		struct shm_obj *o = &t->objs[i];
		size_t p, c;

		for (p = 0; p < o->nr_prev; p++) {
			const struct shm_win *w = &o->prev[p];

			for (c = 0; c < o->nr_cur; c++)
				if (!memcmp(w, &o->cur[c], sizeof(*w)))
					break;
			if (c == o->nr_cur && uffdwp_rangeset__add(&o->gone, w->pgoff,
								   w->pgoff + (w->end - w->start)))
				return -ENOMEM;
		}
		if (uffdwp_rangeset__add_set(&o->dirty, &o->gone) ||
		    uffdwp_rangeset__add_set(&o->dirty, &o->forked))
			return -ENOMEM;
		free(o->prev);
		o->prev = o->cur;
		o->nr_prev = o->nr_cur;
		o->cur = NULL;
		o->nr_cur = 0;
	}

	for (i = 0; i < t->nr_objs; i++)
		n += t->objs[i].used;
	rep->shmem_objects = n;
	if (!n)
		return 0;
	if (!t->pw_tried) {
		t->pw_tried = true;
		/* UFFDWP_NO_PUNCH_WATCH=1 runs as if BPF could not be had (tests). */
		err = getenv("UFFDWP_NO_PUNCH_WATCH") ? -ENOSYS : uffdwp_punchwatch__new(&t->pw);
		if (err)
			pr_warn("holes punched in shared memory are not watched (%s): a shared "
				"object written since the previous scan is dirty whole\n",
				err == -ENOSYS	     ? "UFFDWP_NO_PUNCH_WATCH is set"
				: err == -EOPNOTSUPP ? "built without libbpf"
						     : uffdwp_strerror(-err));
		err = 0;
	}
	if (t->pw) {
		uint64_t nl = UINT64_MAX;

		uffdwp_punchwatch__lost(t->pw, &nl);
		lost = nl != t->pw_lost;
		t->pw_lost = nl;
	}

	ids = calloc(t->nr_objs, sizeof(*ids));
	idx = calloc(t->nr_objs, sizeof(*idx));
	seen = calloc(t->nr_objs, sizeof(*seen));
	pids = calloc(t->nr_tasks, sizeof(*pids));
	if (!ids || !idx || !seen || !pids) {
		err = -ENOMEM;
		goto out;
	}
	/*
	 * Only objects not yet known to be shared outside: a tainted one stays
	 * dirty whole, so when all are, nobody else's fds and maps are read
	 * (on a busy host that is most of a scan's time).
	 */
	n = 0;
	for (i = 0; i < t->nr_objs; i++) {
		if (!t->objs[i].used || t->objs[i].tainted)
			continue;
		idx[n] = i;
		ids[n++] = t->objs[i].id;
	}
	for (i = 0; i < t->nr_tasks; i++)
		pids[i] = t->tasks[i].pid;
	qsort(pids, t->nr_tasks, sizeof(*pids), pid_cmp);
	if (n && uffdwp_proc_find_outside_users(ids, n, pids, t->nr_tasks, t->requester, seen)) {
		/* Cannot tell who else uses them: all are shared then. */
		for (i = 0; i < n; i++)
			seen[i] = true;
	}
	for (i = 0; i < n; i++)
		if (seen[i])
			t->objs[idx[i]].tainted = true;

	for (i = 0; i < t->nr_objs; i++) {
		struct shm_obj *o = &t->objs[i];

		if (!o->used)
			continue;
		if (o->sysv_id >= 0) {
			unsigned long nattch;
			uint64_t at, dt;

			/*
			 * Anyone with permission can attach a SysV segment at any
			 * time: one attach or detach that is not ours, and its
			 * writes are out of sight.
			 */
			if (uffdwp_sysv_shm_info(o->sysv_id, &nattch, &at, &dt) ||
			    nattch != o->tracked_attach ||
			    (o->times_known && (at != o->atime || dt != o->dtime)))
				o->tainted = true;
			o->atime = at;
			o->dtime = dt;
			o->times_known = true;
		}
		o->punched = !o->tainted && shm_maybe_punched(t, o, lost);
		rep->shmem_shared_objects += o->tainted;
	}

	/* Hand each object's dirty set back to every mapper. */
	err = for_each_shared_vma(t, st, rep, shm_project);
out:
	free(ids);
	free(idx);
	free(seen);
	free(pids);
	return err;
}

/* Drop objects no tracked task maps any more: their state means nothing now. */
void trk_gc_objs(struct uffdwp_tracker *t)
{
	size_t i, k = 0;

	for (i = 0; i < t->nr_objs; i++) {
		if (t->objs[i].used) {
			t->objs[k++] = t->objs[i];
			continue;
		}
		if (t->objs[i].watched)
			uffdwp_punchwatch__unwatch(t->pw, &t->objs[i].id);
		trk_obj_fini(&t->objs[i]);
	}
	t->nr_objs = k;
}
