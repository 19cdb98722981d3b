/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tracker's insides, shared by its files: tracker.c (tasks, scans,
 * commits, stop), task_scan.c (one task's registration, protection and
 * scan), shmem.c (shared memory objects across the tree), report.c.
 */
#ifndef UFFDWP_TRACKER_PRIV_H__
#define UFFDWP_TRACKER_PRIV_H__

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "base/pagemap.h"
#include "base/procfs.h"
#include "track/punchwatch.h"
#include "base/rangeset.h"
#include "track/tracker.h"

#define PAGE_SZ	 4096ULL
#define HUGE_PMD (2ULL << 20)

struct pending_gen {
	uint64_t gen;
	struct uffdwp_rangeset set;
};

struct trk_task {
	pid_t pid;
	uint64_t start_time;
	int uffd;	/* ours; -1 when tracking of this task is lost */
	int pagemap_fd; /* opened on the same mm as uffd: tells us when it dies */
	bool adopted;	/* uffd came from the caller (CRIU), do not re-inject */
	bool fresh;	/* attached, all of it still to be reported */
	bool had_uffd;	/* was tracked once: failing now is losing it */
	bool seen;	/* found in this scan's walk of the tree */
	uint64_t thp_bytes_start;
	struct uffdwp_rangeset ours;	  /* ranges registered by our uffd */
	struct uffdwp_rangeset thp_start; /* PMD-mapped when tracking began */
	struct uffdwp_rangeset markers;	  /* uffd-wp markers in private file mappings */
	struct pending_gen *pend;
	size_t nr_pend;
};

struct shm_win {
	pid_t pid;
	uint64_t start, end, pgoff;
};

struct shm_obj {
	struct uffdwp_obj_id id;
	struct shm_win *prev, *cur; /* mappings of it at the previous scan, and now */
	size_t nr_prev, nr_cur;
	bool tainted; /* once seen shared outside the tracked page tables: always dirty */
	bool used;    /* mapped by a tracked task in this scan */
	int sysv_id;
	unsigned long tracked_attach;
	uint64_t atime, dtime;
	bool times_known;
	uint64_t ctime_ns; /* the object's inode change time at the previous scan */
	bool ctime_known;
	bool punched;	  /* a hole may have been punched in it since the last scan: dirty whole */
	bool watched;	  /* its holes punched are counted (punchwatch.h) */
	uint64_t punches; /* the count at the previous scan */
	struct uffdwp_rangeset dirty;  /* object offsets, this scan */
	struct uffdwp_rangeset gone;   /* of it, windows of mappings gone since the last scan */
	struct uffdwp_rangeset forked; /* of it, windows of mappers that forked since then */
};

struct uffdwp_tracker {
	struct uffdwp_tracker_opts opts;
	struct trk_task *tasks;
	size_t nr_tasks;
	size_t cap_tasks;
	uint64_t gen;
	struct shm_obj *objs;
	size_t nr_objs;
	struct uffdwp_forkwatch *fw; /* NULL: forks are not seen, shared objects always dirty */
	pid_t requester; /* asks for the scans, its fds and maps do not count; 0: none */
	struct uffdwp_punchwatch *pw; /* NULL: holes punched seen only in the ctime */
	bool pw_tried;
	uint64_t pw_lost; /* its count of calls it could not place, at the previous scan */
};

struct task_scan_state {
	struct uffdwp_maps maps;
	struct uffdwp_rangeset dirty;	/* found in this scan */
	struct uffdwp_rangeset written; /* of it, seen written by the scan */
	bool ok;			/* maps and results are of the tracked mm */
	bool forked;			/* created a process since the previous scan */
};

static inline bool vma_dumpable(const struct uffdwp_vma *v)
{
	return v->kind == UFFDWP_VMA_ANON || v->kind == UFFDWP_VMA_FILE_PRIVATE ||
	       v->kind == UFFDWP_VMA_SHMEM || v->kind == UFFDWP_VMA_HUGETLB;
}

/*
 * A private mapping of a file, hugetlbfs included (a MAP_PRIVATE hugetlb
 * memfd, or anonymous MAP_HUGETLB, which the kernel backs by a hugetlbfs
 * file): its pages are the file's until written, and only the written ones
 * (anonymous copies) are the task's to dump.
 */
static inline bool vma_private_file(const struct uffdwp_vma *v)
{
	return v->kind == UFFDWP_VMA_FILE_PRIVATE ||
	       (v->kind == UFFDWP_VMA_HUGETLB && !(v->prot & UFFDWP_VMA_SHARED));
}

/* The pages of [start, end) with every category of @mask (base/pagemap.h). */
static inline int pm_scan(int fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
			  struct uffdwp_rangeset *out, uint64_t *failed_at)
{
	return uffdwp_pm_collect(fd, start, end, flags, mask, 0, out, failed_at);
}

/*
 * End of the user address space the maps cover. [vsyscall] sits in the
 * kernel half, where PAGEMAP_SCAN answers EFAULT.
 */
static inline uint64_t maps_user_end(const struct uffdwp_maps *maps)
{
	size_t i = maps->nr;

	while (i && (int64_t)maps->v[i - 1].start < 0)
		i--;
	return i ? maps->v[i - 1].end : 0;
}

/* report.c: add a note to @rep, merged with the last one when they touch. */
int trk_note_add(struct uffdwp_task_report *rep, uint64_t start, uint64_t end,
		 enum uffdwp_reason reason, int err);

/*
 * task_scan.c: scan one task against @maps (its comment has the whole
 * contract): new mappings registered and protected, what cannot be proven
 * clean into @dirty, the written pages alone into @written.
 */
int trk_task_scan(struct trk_task *tk, const struct uffdwp_maps *maps,
		  struct uffdwp_task_report *rep, struct uffdwp_rangeset *dirty,
		  struct uffdwp_rangeset *written);
/* All of @maps' dumpable memory into @dirty, noted in @rep with @why. */
int trk_dirty_all(const struct uffdwp_maps *maps, struct uffdwp_task_report *rep,
		  struct uffdwp_rangeset *dirty, enum uffdwp_reason why, int errnum);

/* shmem.c: the shared memory pass of a scan, over every task scanned. */
int trk_shmem_pass(struct uffdwp_tracker *t, struct task_scan_state *st, struct uffdwp_report *rep);
/* Forget the objects no tracked task maps any more. */
void trk_gc_objs(struct uffdwp_tracker *t);
void trk_obj_fini(struct shm_obj *o);

#endif /* UFFDWP_TRACKER_PRIV_H__ */
