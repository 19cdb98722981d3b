// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "tracker: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "uapi/uffdwp-uapi.h"
#include "track/forkwatch.h"
#include "track/inject.h"
#include "base/log.h"
#include "base/pagemap.h"
#include "track/probe.h"
#include "base/procfs.h"
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
};

static const char *const reason_names[UFFDWP_R__MAX] = {
    [UFFDWP_R_NEW_TASK] = "new-task",
    [UFFDWP_R_NEW_MAPPING] = "new-mapping",
    [UFFDWP_R_FOREIGN_UFFD] = "foreign-userfaultfd",
    [UFFDWP_R_UNTRACKABLE] = "untrackable",
    [UFFDWP_R_SHMEM_SHARED] = "shmem-shared",
    [UFFDWP_R_SCAN_FAILED] = "scan-failed",
    [UFFDWP_R_LOST] = "tracking-lost",
    [UFFDWP_R_NOT_DUMPED] = "not-dumped",
    [UFFDWP_R_SHMEM_UNMAPPED] = "shmem-unmapped",
    [UFFDWP_R_SHMEM_FORKED] = "shmem-forked",
};

const char *uffdwp_reason_name(enum uffdwp_reason r)
{
	return r > 0 && r < UFFDWP_R__MAX ? reason_names[r] : "?";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static bool vma_dumpable(const struct uffdwp_vma *v)
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
static bool vma_private_file(const struct uffdwp_vma *v)
{
	return v->kind == UFFDWP_VMA_FILE_PRIVATE ||
	       (v->kind == UFFDWP_VMA_HUGETLB && !(v->prot & UFFDWP_VMA_SHARED));
}

static int note_add(struct uffdwp_task_report *rep, uint64_t start, uint64_t end,
		    enum uffdwp_reason reason, int err)
{
	struct uffdwp_note *n;

	/* Neighbouring ranges with the same reason read better as one. */
	if (rep->nr_notes) {
		n = &rep->notes[rep->nr_notes - 1];
		if (n->end == start && n->reason == (uint32_t)reason && n->err == err) {
			n->end = end;
			return 0;
		}
	}
	if (!(rep->nr_notes & (rep->nr_notes - 1)) || !rep->notes) {
		size_t cap = rep->nr_notes ? rep->nr_notes * 2 : 8;

		n = realloc(rep->notes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		rep->notes = n;
	}
	n = &rep->notes[rep->nr_notes++];
	n->start = start;
	n->end = end;
	n->reason = reason;
	n->err = err;
	return 0;
}

/* The pages of [start, end) with every category of @mask (base/pagemap.h). */
static int pm_scan(int fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
		   struct uffdwp_rangeset *out, uint64_t *failed_at)
{
	return uffdwp_pm_collect(fd, start, end, flags, mask, 0, out, failed_at);
}

/*
 * Whether the mm that @pagemap_fd was opened on still has users: pagemap
 * reads come back empty once it is gone (exit, or execve replaced it).
 */
static bool mm_alive(int pagemap_fd)
{
	uint64_t ent;

	return pread(pagemap_fd, &ent, sizeof(ent), 0) == sizeof(ent);
}

/*
 * End of the user address space the maps cover. [vsyscall] sits in the
 * kernel half, where PAGEMAP_SCAN answers EFAULT.
 */
static uint64_t maps_user_end(const struct uffdwp_maps *maps)
{
	size_t i = maps->nr;

	while (i && (int64_t)maps->v[i - 1].start < 0)
		i--;
	return i ? maps->v[i - 1].end : 0;
}

static void task_drop_uffd(struct trk_task *tk)
{
	if (tk->uffd >= 0)
		close(tk->uffd);
	if (tk->pagemap_fd >= 0)
		close(tk->pagemap_fd);
	tk->uffd = tk->pagemap_fd = -1;
	uffdwp_rangeset__clear(&tk->ours);
	uffdwp_rangeset__clear(&tk->markers);
}

static void task_fini(struct trk_task *tk)
{
	size_t i;

	task_drop_uffd(tk);
	uffdwp_rangeset__fini(&tk->ours);
	uffdwp_rangeset__fini(&tk->thp_start);
	uffdwp_rangeset__fini(&tk->markers);
	for (i = 0; i < tk->nr_pend; i++)
		uffdwp_rangeset__fini(&tk->pend[i].set);
	free(tk->pend);
	tk->pend = NULL;
	tk->nr_pend = 0;
}

static int uffd_api(int uffd)
{
	struct uffdio_api api = {
	    .api = UFFD_API,
	    .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	};

	if (ioctl(uffd, UFFDIO_API, &api)) {
		int err = -errno;

		pr_perror("UFFDIO_API with WP_ASYNC|WP_UNPOPULATED|WP_HUGETLBFS_SHMEM");
		return err;
	}
	return 0;
}

/* Remember the PMD-mapped ranges, to put them back when tracking ends. */
static void task_note_thp(struct trk_task *tk, const struct uffdwp_maps *maps)
{
	uint64_t failed_at;

	if (!maps->nr)
		return;
	uffdwp_rangeset__clear(&tk->thp_start);
	if (pm_scan(tk->pagemap_fd, maps->v[0].start, maps_user_end(maps), 0, PAGE_IS_HUGE,
		    &tk->thp_start, &failed_at))
		uffdwp_rangeset__clear(&tk->thp_start);
}

/*
 * Create our userfaultfd in @pid's mm and open its pagemap while the
 * target is stopped, so both refer to the same mm.
 */
static int task_inject(struct trk_task *tk)
{
	struct uffdwp_remote *rem = NULL;
	char path[64];
	long rfd = -1, rret;
	int pidfd = -1, fd = -1, pm = -1, err;

	err = uffdwp_remote__attach(tk->pid, &rem);
	if (err)
		return err;
	err = uffdwp_remote__syscall(rem, &rfd, __NR_userfaultfd,
				     O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0);
	if (!err && rfd < 0)
		err = (int)rfd;
	if (err) {
		pr_err("cannot create a userfaultfd in %d: %s\n", tk->pid, uffdwp_strerror(-err));
		goto out_detach;
	}
	pidfd = syscall(__NR_pidfd_open, tk->pid, 0);
	if (pidfd < 0) {
		err = -errno;
		pr_perror("pidfd_open(%d)", tk->pid);
		goto out_close_remote;
	}
	fd = syscall(__NR_pidfd_getfd, pidfd, (int)rfd, 0);
	if (fd < 0) {
		err = -errno;
		pr_perror("pidfd_getfd(%d, %ld)", tk->pid, rfd);
		goto out_close_remote;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", tk->pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		err = -errno;
		pr_perror("open %s", path);
		goto out_close_remote;
	}
out_close_remote:
	/* Leave nothing in the target's fd table, whatever happened above. */
	if (uffdwp_remote__syscall(rem, &rret, __NR_close, (unsigned long)rfd, 0, 0, 0, 0, 0) ||
	    rret)
		pr_warn("could not close the userfaultfd copy in %d\n", tk->pid);
out_detach:
	uffdwp_remote__detach(rem);
	if (pidfd >= 0)
		close(pidfd);
	if (!err)
		err = uffd_api(fd);
	if (err) {
		if (fd >= 0)
			close(fd);
		if (pm >= 0)
			close(pm);
		return err;
	}
	tk->uffd = fd;
	tk->pagemap_fd = pm;
	return 0;
}

static struct trk_task *tracker_add_task(struct uffdwp_tracker *t, pid_t pid)
{
	struct trk_task *tk;

	if (t->nr_tasks == t->cap_tasks) {
		size_t cap = t->cap_tasks ? t->cap_tasks * 2 : 8;

		tk = realloc(t->tasks, cap * sizeof(*tk));
		if (!tk)
			return NULL;
		t->tasks = tk;
		t->cap_tasks = cap;
	}
	tk = &t->tasks[t->nr_tasks++];
	memset(tk, 0, sizeof(*tk));
	tk->pid = pid;
	tk->start_time = uffdwp_proc_start_time(pid);
	tk->uffd = tk->pagemap_fd = -1;
	tk->fresh = true;
	return tk;
}

static struct trk_task *tracker_find(const struct uffdwp_tracker *t, pid_t pid)
{
	size_t i;

	for (i = 0; i < t->nr_tasks; i++)
		if (t->tasks[i].pid == pid)
			return &t->tasks[i];
	return NULL;
}

static int reg_range(int uffd, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
	    .range = {.start = start, .len = end - start},
	    .mode = UFFDIO_REGISTER_MODE_WP,
	};

	return ioctl(uffd, UFFDIO_REGISTER, &reg) ? -errno : 0;
}

static int protect_range(int uffd, uint64_t start, uint64_t end)
{
	struct uffdio_writeprotect wp = {
	    .range = {.start = start, .len = end - start},
	    .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/*
 * In a private file mapping, protect the pages that are there and leave
 * holes alone: with WP_UNPOPULATED a protected hole gets a PTE marker, and
 * so does a zapped page (MADV_DONTNEED, truncate). Only the second kind
 * means lost data, and they are told apart only if the first never exists.
 * A marker in a hole also reads as a swapped page to a dumper's pagemap
 * walk: CRIU, which skips the unwritten file pages of a private mapping,
 * would copy such a hole, and restore a private copy where the task saw the
 * file (zdtm memfd02-hugetlb: a later write to the file did not show).
 */
static int protect_present(struct trk_task *tk, uint64_t start, uint64_t end)
{
	struct uffdwp_rangeset present = UFFDWP_RANGESET_INIT;
	uint64_t failed_at;
	size_t i;
	int err;

	err = pm_scan(tk->pagemap_fd, start, end, 0, PAGE_IS_PRESENT, &present, &failed_at);
	for (i = 0; !err && i < present.nr; i++)
		err = protect_range(tk->uffd, present.r[i].start, present.r[i].end);
	uffdwp_rangeset__fini(&present);
	return err;
}

/*
 * Protect a freshly registered anonymous range. PAGEMAP_SCAN with
 * WP_MATCHING and no output vector takes the kernel's fast path for
 * exclusive write-protect: about half the time of UFFDIO_WRITEPROTECT over
 * 4K pages. Holes get markers either way (WP_UNPOPULATED); one missed would
 * only make a later read fault look like a write.
 */
static int protect_anon(struct trk_task *tk, uint64_t start, uint64_t end)
{
	struct uffdwp_pm_walk w = {
	    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};

	return uffdwp_pm_walk(tk->pagemap_fd, start, end, &w, NULL);
}

/*
 * Swap types this high are no swap device: the PTE marker
 * (UFFDWP_PM_MARKER_TYPE) and migration, hwpoison and device entries. The
 * tracker takes them all for markers: a page in migration then counts as
 * changed once, which is only a false positive.
 */
#define PM_SWP_NOT_DEVICE 24

/*
 * A private file page that was ours (COW) and got zapped leaves a uffd-wp
 * marker: not "written" to PAGEMAP_SCAN, yet the page now reads the file's
 * data, and pagemap calls it swapped, so a dumper would copy the file's
 * data over the old one. A marker is news once: the scan that first sees it
 * reports it; while it stays, the page keeps reading the file. Markers the
 * kernel puts on pages that never were ours (file text it remaps) cost one
 * false positive each. Clearing them instead does not work: something puts
 * them back on the next walk, and they would be reported at every scan.
 * @markers collects the markers seen now.
 */
static int scan_file_markers(struct trk_task *tk, uint64_t start, uint64_t end,
			     struct uffdwp_rangeset *dirty, struct uffdwp_rangeset *markers)
{
	struct uffdwp_rangeset swapped = UFFDWP_RANGESET_INIT;
	uint64_t failed_at, a, ent[64];
	size_t i, k, n;
	int err;

	err = pm_scan(tk->pagemap_fd, start, end, 0, PAGE_IS_SWAPPED, &swapped, &failed_at);
	if (err) {
		/* Cannot tell markers from swap: all of it is dirty. */
		err = uffdwp_rangeset__add(dirty, failed_at, end);
		goto out;
	}
	for (i = 0; !err && i < swapped.nr; i++) {
		for (a = swapped.r[i].start; !err && a < swapped.r[i].end; a += n * PAGE_SZ) {
			n = (swapped.r[i].end - a) / PAGE_SZ;
			if (n > 64)
				n = 64;
			if (pread(tk->pagemap_fd, ent, n * 8, a / PAGE_SZ * 8) != (ssize_t)(n * 8))
				for (k = 0; k < n; k++)
					ent[k] = UFFDWP_PM_SWAP | PM_SWP_NOT_DEVICE;
			for (k = 0; !err && k < n; k++) {
				uint64_t pa = a + k * PAGE_SZ;

				if (!(ent[k] & UFFDWP_PM_SWAP) ||
				    UFFDWP_PM_SWP_TYPE(ent[k]) < PM_SWP_NOT_DEVICE)
					continue;
				err = uffdwp_rangeset__add(markers, pa, pa + PAGE_SZ);
				if (!err &&
				    !uffdwp_rangeset__covers(&tk->markers, pa, pa + PAGE_SZ))
					err = uffdwp_rangeset__add(dirty, pa, pa + PAGE_SZ);
			}
		}
	}
out:
	uffdwp_rangeset__fini(&swapped);
	return err;
}

/*
 * Shared memory: protection gives every page of the mapping a PTE, a
 * marker at least (WP_UNPOPULATED). A written PTE that is dropped (reclaim,
 * MADV_DONTNEED) leaves nothing, and the write is forgotten while the data
 * stays in the object. So an empty PTE in a protected shared mapping is a
 * page written since the last scan: report it and protect it again.
 */
static int scan_shared_holes(struct trk_task *tk, uint64_t start, uint64_t end,
			     struct uffdwp_rangeset *dirty)
{
	const uint64_t cat = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	struct uffdwp_rangeset holes = UFFDWP_RANGESET_INIT;
	uint64_t failed_at;
	size_t i;
	int err;

	err = uffdwp_pm_collect(tk->pagemap_fd, start, end, 0, cat, cat, &holes, &failed_at);
	if (err && err != -ENOMEM) {
		err = uffdwp_rangeset__add(dirty, failed_at, end);
		goto out;
	}
	for (i = 0; !err && i < holes.nr; i++) {
		err = uffdwp_rangeset__add(dirty, holes.r[i].start, holes.r[i].end);
		if (!err)
			protect_range(tk->uffd, holes.r[i].start, holes.r[i].end);
	}
out:
	uffdwp_rangeset__fini(&holes);
	return err;
}

/*
 * Register and protect [start, end), a part of a mapping that no uffd of
 * ours covers. It is all dirty in this scan whatever happens; the note says
 * why. Returns -ESRCH when our uffd's mm is gone, else 0.
 */
static int task_register(struct trk_task *tk, const struct uffdwp_vma *v, uint64_t start,
			 uint64_t end, struct uffdwp_task_report *rep, enum uffdwp_reason why,
			 struct uffdwp_rangeset *newreg)
{
	int err;

	err = reg_range(tk->uffd, start, end);
	if (!err && vma_private_file(v))
		err = protect_present(tk, start, end);
	else if (!err && v->kind == UFFDWP_VMA_ANON)
		err = protect_anon(tk, start, end);
	else if (!err)
		err = protect_range(tk->uffd, start, end);
	if (err == -ESRCH)
		return err;
	if (!err) {
		if (uffdwp_rangeset__add(newreg, start, end))
			return -ENOMEM;
		return why ? note_add(rep, start, end, why, 0) : 0;
	}
	/*
	 * EBUSY: another userfaultfd has the range (CRIU lazy-pages, a GC, a
	 * VM). Anything else: the kernel will not track this kind of memory.
	 * Either way it is dirty at every scan.
	 */
	return note_add(rep, start, end,
			err == -EBUSY ? UFFDWP_R_FOREIGN_UFFD : UFFDWP_R_UNTRACKABLE, -err);
}

/* The ranges of @maps that are WPALLOWED: the mappings minus what is not. */
static int list_wpallowed(struct trk_task *tk, const struct uffdwp_maps *maps, uint64_t lo,
			  uint64_t hi, struct uffdwp_rangeset *out, uint64_t *failed_at)
{
	struct uffdwp_rangeset notw = UFFDWP_RANGESET_INIT;
	size_t i;
	int err;

	err = uffdwp_pm_collect(tk->pagemap_fd, lo, hi, 0, PAGE_IS_WPALLOWED, PAGE_IS_WPALLOWED,
				&notw, failed_at);
	for (i = 0; !err && i < maps->nr; i++)
		if (maps->v[i].end <= hi)
			err = uffdwp_rangeset__add(out, maps->v[i].start, maps->v[i].end);
	for (i = 0; !err && i < notw.nr; i++)
		err = uffdwp_rangeset__remove(out, notw.r[i].start, notw.r[i].end);
	uffdwp_rangeset__fini(&notw);
	return err;
}

/* Dirty [start, end) of one mapping in the current scan. */
static int scan_add_dirty(struct uffdwp_rangeset *dirty, uint64_t start, uint64_t end)
{
	return uffdwp_rangeset__add(dirty, start, end);
}

/*
 * Scan one task. Fills @dirty with what this scan found (written pages and
 * whole ranges that cannot be proven clean) and @written with the written
 * pages alone. Returns 0, -ESRCH if our uffd's mm died under us (exec or
 * exit: the caller decides), -ENOMEM.
 */
static int task_scan(struct trk_task *tk, const struct uffdwp_maps *maps,
		     struct uffdwp_task_report *rep, struct uffdwp_rangeset *dirty,
		     struct uffdwp_rangeset *written)
{
	struct uffdwp_rangeset wpallowed = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset ours_now = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset newreg = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset file_priv = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset shared = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset markers = UFFDWP_RANGESET_INIT;
	uint64_t lo, hi, failed_at;
	size_t i, j;
	int err = 0;

	if (!maps->nr)
		return 0;
	lo = maps->v[0].start;
	hi = maps_user_end(maps);

	/*
	 * Which ranges of the mm are registered for async wp, by anyone. Asked
	 * the other way round: the kernel skips a VMA that does not match
	 * without walking its page tables, and most VMAs are registered.
	 */
	err = list_wpallowed(tk, maps, lo, hi, &wpallowed, &failed_at);
	if (err) {
		pr_warn("cannot list registered ranges of %d: %s\n", tk->pid,
			uffdwp_strerror(-err));
		uffdwp_rangeset__clear(&wpallowed);
		err = 0;
	}

	for (i = 0; i < maps->nr && !err; i++) {
		const struct uffdwp_vma *v = &maps->v[i];
		uint64_t a;

		if (!vma_dumpable(v)) {
			if (v->kind == UFFDWP_VMA_FILE_SHARED)
				err = note_add(rep, v->start, v->end, UFFDWP_R_NOT_DUMPED, 0);
			continue;
		}

		/*
		 * Walk the mapping in pieces: registered by us (scan it),
		 * registered by someone else (dirty), registered by nobody
		 * (dirty, then ours). A piece registered but not by our hand
		 * that our uffd can register again is ours too: mremap grew
		 * one of our mappings in place.
		 */
		for (a = v->start; a < v->end && !err;) {
			bool in_w, in_ours;
			uint64_t b = v->end;

			in_w = uffdwp_rangeset__edge(&wpallowed, a, &b);
			in_ours = uffdwp_rangeset__edge(&tk->ours, a, &b);

			if (in_w && !in_ours) {
				int r = reg_range(tk->uffd, a, b);

				if (r == -ESRCH) {
					err = r;
					break;
				}
				if (!r) {
					in_ours = true;
				} else {
					err = note_add(rep, a, b, UFFDWP_R_FOREIGN_UFFD, -r);
					if (!err)
						err = scan_add_dirty(dirty, a, b);
				}
			}
			if (!err && in_w && in_ours) {
				err = uffdwp_rangeset__add(&ours_now, a, b);
				if (!err && vma_private_file(v))
					err = uffdwp_rangeset__add(&file_priv, a, b);
				if (!err && uffdwp_vma_is_shared_obj(v))
					err = uffdwp_rangeset__add(&shared, a, b);
			} else if (!err && !in_w) {
				/* Ours before, not registered now: unmapped and mapped again. */
				err = task_register(tk, v, a, b, rep,
						    tk->fresh ? 0 : UFFDWP_R_NEW_MAPPING, &newreg);
				if (!err)
					err = scan_add_dirty(dirty, a, b);
			}
			a = b;
		}
	}
	if (err)
		goto out;

	/*
	 * The scan proper: runs of our registered ranges, each on its own. In
	 * private file mappings only our own copies of pages count: a file
	 * page without protection (fault-around, reclaim and refault) holds
	 * the file's data, which no dumper takes from us.
	 */
	for (j = 0; j < ours_now.nr; j++) {
		uint64_t s = ours_now.r[j].start, e = ours_now.r[j].end;

		rep->tracked_bytes += e - s;
		while (s < e) {
			uint64_t b = e;
			bool fp = uffdwp_rangeset__edge(&file_priv, s, &b);

			err = uffdwp_pm_collect(tk->pagemap_fd, s, b,
						PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
						PAGE_IS_WRITTEN | (fp ? PAGE_IS_FILE : 0),
						fp ? PAGE_IS_FILE : 0, written, &failed_at);
			if (err == -ENOMEM)
				goto out;
			if (err) {
				/*
				 * The vector of the failed call may hold regions the
				 * kernel already re-protected: all the rest is dirty.
				 */
				pr_info("scan of %d at %" PRIx64 "-%" PRIx64 " failed: %s\n",
					tk->pid, failed_at, b, uffdwp_strerror(-err));
				err = note_add(rep, failed_at, b, UFFDWP_R_SCAN_FAILED, -err);
				if (!err)
					err = scan_add_dirty(dirty, failed_at, b);
				if (err)
					goto out;
			}
			s = b;
		}
	}
	for (j = 0; j < file_priv.nr && !err; j++)
		err = scan_file_markers(tk, file_priv.r[j].start, file_priv.r[j].end, dirty,
					&markers);
	for (j = 0; j < shared.nr && !err; j++)
		err = scan_shared_holes(tk, shared.r[j].start, shared.r[j].end, dirty);
	if (!err)
		err = uffdwp_rangeset__add_set(dirty, written);
	if (err)
		goto out;
	rep->written_bytes = uffdwp_rangeset__bytes(written);

	/* Forget registrations of ranges that are gone; add the new ones. */
	err = uffdwp_rangeset__add_set(&ours_now, &newreg);
	if (err)
		goto out;
	uffdwp_rangeset__fini(&tk->ours);
	tk->ours = ours_now;
	uffdwp_rangeset__init(&ours_now);
	uffdwp_rangeset__fini(&tk->markers);
	tk->markers = markers;
	uffdwp_rangeset__init(&markers);
out:
	uffdwp_rangeset__fini(&wpallowed);
	uffdwp_rangeset__fini(&ours_now);
	uffdwp_rangeset__fini(&newreg);
	uffdwp_rangeset__fini(&file_priv);
	uffdwp_rangeset__fini(&shared);
	uffdwp_rangeset__fini(&markers);
	return err;
}

static int dirty_all(const struct uffdwp_maps *maps, struct uffdwp_task_report *rep,
		     struct uffdwp_rangeset *dirty, enum uffdwp_reason why, int errnum)
{
	size_t i;
	int err;

	for (i = 0; i < maps->nr; i++) {
		if (!vma_dumpable(&maps->v[i]))
			continue;
		err = scan_add_dirty(dirty, maps->v[i].start, maps->v[i].end);
		if (!err && why)
			err = note_add(rep, maps->v[i].start, maps->v[i].end, why, errnum);
		if (err)
			return err;
	}
	return 0;
}

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

static void obj_fini(struct shm_obj *o)
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

struct task_scan_state {
	struct uffdwp_maps maps;
	struct uffdwp_rangeset dirty;	/* found in this scan */
	struct uffdwp_rangeset written; /* of it, seen written by the scan */
	bool ok;			/* maps and results are of the tracked mm */
	bool forked;			/* created a process since the previous scan */
};

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
		err = note_add(tr, part.r[k].start, part.r[k].end, why, 0);
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
		return err ? err : note_add(tr, v->start, v->end, UFFDWP_R_SHMEM_SHARED, 0);
	}
	err = uffdwp_rangeset__add_clipped(&s->dirty, &o->dirty, v->pgoff, end, delta);
	if (!err)
		err = shm_note(tr, v, &o->gone, UFFDWP_R_SHMEM_UNMAPPED);
	if (!err)
		err = shm_note(tr, v, &o->forked, UFFDWP_R_SHMEM_FORKED);
	return err;
}

/*
 * Shared memory: a page written through one mapper's page table shows
 * only in that table, so an object's dirty set is the union over its
 * tracked mappers, and every mapper reports all of it. Writes through a
 * file descriptor (pwrite, fallocate) or through a page table we do not
 * scan (a process outside the tree) show nowhere: such objects are dirty
 * whole, at every scan from then on.
 */
static int tracker_shmem_pass(struct uffdwp_tracker *t, struct task_scan_state *st,
			      struct uffdwp_report *rep)
{
	struct uffdwp_obj_id *ids = NULL;
	size_t *idx = NULL;
	pid_t *pids = NULL;
	bool *seen = NULL;
	size_t i, n = 0;
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
static void tracker_gc_objs(struct uffdwp_tracker *t)
{
	size_t i, k = 0;

	for (i = 0; i < t->nr_objs; i++) {
		if (t->objs[i].used)
			t->objs[k++] = t->objs[i];
		else
			obj_fini(&t->objs[i]);
	}
	t->nr_objs = k;
}

/* Refresh the task list from the process tree; new tasks are attached. */
static int tracker_refresh_tasks(struct uffdwp_tracker *t, struct uffdwp_report *rep)
{
	pid_t *pids = NULL;
	size_t i;
	int n;

	n = uffdwp_proc_tree(t->opts.pid, t->opts.tree, &pids);
	if (n == -ESRCH)
		n = 0; /* the root is gone; descendants of it are not ours to find */
	else if (n < 0)
		return n;

	for (i = 0; i < t->nr_tasks; i++)
		t->tasks[i].seen = false;
	for (i = 0; i < (size_t)n; i++) {
		struct trk_task *tk = tracker_find(t, pids[i]);

		if (tk && tk->start_time != uffdwp_proc_start_time(pids[i])) {
			/* Same pid, another process: the old one exited. */
			tk->pid = -tk->pid;
			tk = NULL;
		}
		if (!tk) {
			tk = tracker_add_task(t, pids[i]);
			if (!tk) {
				free(pids);
				return -ENOMEM;
			}
		}
		tk->seen = true;
	}
	free(pids);
	(void)rep;
	return 0;
}

static int report_task_init(struct uffdwp_task_report *r, const struct trk_task *tk)
{
	memset(r, 0, sizeof(*r));
	r->pid = tk->pid;
	return 0;
}

/* Record @set as generation @gen of @tk's pending sets (takes it over). */
static int task_push_pending(struct trk_task *tk, uint64_t gen, struct uffdwp_rangeset *set)
{
	struct pending_gen *p;

	p = realloc(tk->pend, (tk->nr_pend + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	tk->pend = p;
	p = &tk->pend[tk->nr_pend++];
	p->gen = gen;
	p->set = *set;
	uffdwp_rangeset__init(set);
	return 0;
}

static bool tracker_watches(void *arg, pid_t pid)
{
	return tracker_find(arg, pid) != NULL;
}

void uffdwp_tracker__set_requester(struct uffdwp_tracker *t, pid_t pid)
{
	t->requester = pid;
}

bool uffdwp_tracker__fork_events(const struct uffdwp_tracker *t)
{
	return t && t->fw;
}

int uffdwp_tracker__event_fd(const struct uffdwp_tracker *t)
{
	return t && t->fw ? uffdwp_forkwatch__fd(t->fw) : -1;
}

int uffdwp_tracker__read_events(struct uffdwp_tracker *t)
{
	return t && t->fw ? uffdwp_forkwatch__drain(t->fw, tracker_watches, t) : 0;
}

int uffdwp_tracker__scan(struct uffdwp_tracker *t, struct uffdwp_report **out)
{
	struct task_scan_state *st = NULL;
	struct uffdwp_report *rep;
	uint64_t t0 = now_ns();
	size_t i, k;
	int err;

	rep = calloc(1, sizeof(*rep));
	if (!rep)
		return -ENOMEM;

	/* Forks since the previous scan, by the tasks tracked then. */
	err = uffdwp_tracker__read_events(t);
	if (err)
		goto err_free;

	err = tracker_refresh_tasks(t, rep);
	if (err)
		goto err_free;

	rep->tasks = calloc(t->nr_tasks, sizeof(*rep->tasks));
	st = calloc(t->nr_tasks, sizeof(*st));
	if (!rep->tasks || !st) {
		err = -ENOMEM;
		goto err_free;
	}
	rep->nr_tasks = t->nr_tasks;
	for (i = 0; i < t->nr_tasks; i++)
		st[i].forked = !t->fw || uffdwp_forkwatch__forked(t->fw, t->tasks[i].pid);
	if (t->fw)
		uffdwp_forkwatch__reset(t->fw);

	for (i = 0; i < t->nr_tasks; i++) {
		struct trk_task *tk = &t->tasks[i];
		struct uffdwp_task_report *tr = &rep->tasks[i];
		int r;

		report_task_init(tr, tk);
		if (!tk->seen) {
			tr->pid = tk->pid < 0 ? -tk->pid : tk->pid;
			tr->flags |= UFFDWP_TASK_EXITED;
			continue;
		}

		if (tk->uffd >= 0 && !mm_alive(tk->pagemap_fd)) {
			/* execve gave the task a new mm: nothing of the old one holds. */
			tr->flags |= UFFDWP_TASK_EXEC;
			task_drop_uffd(tk);
			tk->fresh = true;
		}
		if (tk->uffd < 0 && !tk->adopted && !t->opts.adopt_only) {
			r = task_inject(tk);
			if (r) {
				/* A task never tracked has lost nothing: it is not tracked. */
				if (!tk->had_uffd)
					pr_warn("cannot track %d: %s\n", tk->pid,
						uffdwp_strerror(-r));
				else
					pr_warn("tracking of %d lost: %s\n", tk->pid,
						uffdwp_strerror(-r));
				tr->flags |= UFFDWP_TASK_LOST;
			} else {
				if (!(tr->flags & UFFDWP_TASK_EXEC) && !tk->fresh)
					tr->flags |= UFFDWP_TASK_LOST;
				tk->had_uffd = true;
			}
		}
		if (tk->fresh)
			tr->flags |= UFFDWP_TASK_NEW;

		r = uffdwp_maps__read(tk->pid, &st[i].maps);
		if (r == -ESRCH) {
			tr->flags |= UFFDWP_TASK_EXITED;
			continue;
		}
		if (r) {
			err = r;
			goto err_free;
		}
		if (tk->fresh && tk->uffd >= 0) {
			task_note_thp(tk, &st[i].maps);
			tk->thp_bytes_start = uffdwp_rangeset__bytes(&tk->thp_start);
		}

		r = -ESRCH;
		if (tk->uffd >= 0)
			r = task_scan(tk, &st[i].maps, tr, &st[i].dirty, &st[i].written);
		if (r == -ENOMEM) {
			err = r;
			goto err_free;
		}
		if (!r && !mm_alive(tk->pagemap_fd))
			r = -ESRCH; /* exec raced with the scan: its results are of the old mm */
		if (r) {
			uffdwp_rangeset__clear(&st[i].dirty);
			if (!(tr->flags & (UFFDWP_TASK_EXEC | UFFDWP_TASK_NEW)))
				tr->flags |= UFFDWP_TASK_LOST;
			task_drop_uffd(tk);
			tk->fresh = true;
		}
		if (tk->fresh || r) {
			enum uffdwp_reason why = (tr->flags & UFFDWP_TASK_LOST) ? UFFDWP_R_LOST
						 : (tr->flags & UFFDWP_TASK_EXEC)
						     ? UFFDWP_R_NEW_MAPPING
						     : UFFDWP_R_NEW_TASK;

			r = dirty_all(&st[i].maps, tr, &st[i].dirty, why, 0);
			if (r) {
				err = r;
				goto err_free;
			}
		}
		st[i].ok = true;
		tr->thp_bytes_start = tk->thp_bytes_start;
	}

	err = tracker_shmem_pass(t, st, rep);
	if (err)
		goto err_free;

	/* Commit point: nothing below fails but for memory. */
	t->gen++;
	rep->gen = t->gen;
	for (i = 0; i < t->nr_tasks; i++) {
		struct trk_task *tk = &t->tasks[i];
		struct uffdwp_task_report *tr = &rep->tasks[i];
		size_t p;

		if (!st[i].ok)
			continue;
		for (p = 0; p < tk->nr_pend; p++) {
			tr->pending_bytes += uffdwp_rangeset__bytes(&tk->pend[p].set);
			err = uffdwp_rangeset__add_set(&tr->dirty, &tk->pend[p].set);
			if (err)
				goto err_free;
		}
		err = uffdwp_rangeset__add_set(&tr->dirty, &st[i].dirty);
		if (!err)
			err = task_push_pending(tk, t->gen, &st[i].dirty);
		if (err)
			goto err_free;
		tk->fresh = false;
	}

	/* Tasks that exited leave the list; their report says so. */
	for (i = 0, k = 0; i < t->nr_tasks; i++) {
		if (t->tasks[i].seen && !(rep->tasks[i].flags & UFFDWP_TASK_EXITED))
			t->tasks[k++] = t->tasks[i];
		else
			task_fini(&t->tasks[i]);
	}
	t->nr_tasks = k;
	tracker_gc_objs(t);

	for (i = 0; i < rep->nr_tasks; i++) {
		uffdwp_maps__fini(&st[i].maps);
		uffdwp_rangeset__fini(&st[i].dirty);
		uffdwp_rangeset__fini(&st[i].written);
	}
	free(st);
	rep->scan_ns = now_ns() - t0;
	*out = rep;
	return 0;

err_free:
	/*
	 * Some tasks may have been scanned, their written pages re-protected
	 * and the news of them now dropped here: every task starts over whole
	 * at the next scan. A false positive, never a lost write.
	 */
	for (i = 0; i < t->nr_tasks; i++)
		t->tasks[i].fresh = true;
	if (st) {
		for (i = 0; i < rep->nr_tasks; i++) {
			uffdwp_maps__fini(&st[i].maps);
			uffdwp_rangeset__fini(&st[i].dirty);
			uffdwp_rangeset__fini(&st[i].written);
		}
		free(st);
	}
	uffdwp_report__free(rep);
	return err;
}

int uffdwp_tracker__commit(struct uffdwp_tracker *t, uint64_t gen)
{
	size_t i, p, k;

	if (!gen || gen > t->gen)
		return -EINVAL;
	for (i = 0; i < t->nr_tasks; i++) {
		struct trk_task *tk = &t->tasks[i];

		for (p = 0, k = 0; p < tk->nr_pend; p++) {
			if (tk->pend[p].gen <= gen)
				uffdwp_rangeset__fini(&tk->pend[p].set);
			else
				tk->pend[k++] = tk->pend[p];
		}
		tk->nr_pend = k;
	}
	return 0;
}

void uffdwp_report__free(struct uffdwp_report *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nr_tasks; i++) {
		uffdwp_rangeset__fini(&r->tasks[i].dirty);
		free(r->tasks[i].notes);
	}
	free(r->tasks);
	free(r);
}

uint64_t uffdwp_report__dirty_bytes(const struct uffdwp_report *r)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < r->nr_tasks; i++)
		sum += uffdwp_rangeset__bytes(&r->tasks[i].dirty);
	return sum;
}

int uffdwp_tracker__new(const struct uffdwp_tracker_opts *opts, struct uffdwp_tracker **out)
{
	struct uffdwp_tracker *t;
	struct uffdwp_report *rep = NULL;
	int err;

	err = uffdwp_probe_tracker();
	if (err)
		return err;
	if (kill(opts->pid, 0) && errno == ESRCH) {
		pr_err("no process %d\n", opts->pid);
		return -ESRCH;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->opts = *opts;
	/*
	 * Before anything is protected: a fork after that must not go unseen.
	 * UFFDWP_NO_FORK_EVENTS=1 runs as if there were no connector (tests).
	 */
	if (getenv("UFFDWP_NO_FORK_EVENTS"))
		err = -ENOSYS;
	else
		err = uffdwp_forkwatch__open(&t->fw);
	if (err) {
		pr_warn("no fork events (%s): shared memory counts as written at every scan\n",
			err == -ENOSYS ? "UFFDWP_NO_FORK_EVENTS is set"
				       : uffdwp_forkwatch_why(err));
		t->fw = NULL;
	}
	if (opts->adopt_only) {
		*out = t;
		return 0;
	}

	/* The first scan attaches, registers and protects: gen 1 is "everything". */
	err = uffdwp_tracker__scan(t, &rep);
	if (err)
		goto err_free;
	if (!t->nr_tasks || (rep->nr_tasks && (rep->tasks[0].flags & UFFDWP_TASK_LOST))) {
		err = t->nr_tasks ? -EPERM : -ESRCH;
		pr_err("cannot track %d\n", opts->pid);
		goto err_free;
	}
	uffdwp_tracker__commit(t, rep->gen);
	uffdwp_report__free(rep);
	*out = t;
	return 0;

err_free:
	uffdwp_report__free(rep);
	uffdwp_tracker__stop(t, false, NULL);
	return err;
}

int uffdwp_tracker__adopt(struct uffdwp_tracker *t, pid_t pid, int uffd, int pagemap_fd)
{
	struct trk_task *tk = tracker_find(t, pid);
	int err;

	err = uffd_api(uffd);
	if (err)
		return err;
	if (!tk)
		tk = tracker_add_task(t, pid);
	if (!tk)
		return -ENOMEM;
	task_drop_uffd(tk);
	tk->uffd = uffd;
	tk->pagemap_fd = pagemap_fd;
	tk->adopted = true;
	tk->had_uffd = true;
	tk->fresh = true;
	return 0;
}

size_t uffdwp_tracker__nr_tasks(const struct uffdwp_tracker *t)
{
	return t->nr_tasks;
}

bool uffdwp_tracker__any_alive(const struct uffdwp_tracker *t)
{
	size_t i;

	for (i = 0; i < t->nr_tasks; i++) {
		pid_t pid = t->tasks[i].pid;

		/* start_time 0: exited, or a zombie whose stat we could not read. */
		if (pid > 0 && uffdwp_proc_start_time(pid) == t->tasks[i].start_time &&
		    t->tasks[i].start_time && !uffdwp_proc_is_zombie(pid))
			return true;
	}
	return false;
}

bool uffdwp_tracker__has_task(const struct uffdwp_tracker *t, pid_t pid)
{
	return tracker_find(t, pid) != NULL;
}

size_t uffdwp_tracker__mem_bytes(const struct uffdwp_tracker *t)
{
	size_t sum = sizeof(*t) + t->cap_tasks * sizeof(*t->tasks) + t->nr_objs * sizeof(*t->objs);
	size_t i, p;

	for (i = 0; i < t->nr_tasks; i++) {
		const struct trk_task *tk = &t->tasks[i];

		sum += (tk->ours.cap + tk->thp_start.cap + tk->markers.cap) *
		       sizeof(struct uffdwp_range);
		for (p = 0; p < tk->nr_pend; p++)
			sum +=
			    sizeof(tk->pend[p]) + tk->pend[p].set.cap * sizeof(struct uffdwp_range);
	}
	for (i = 0; i < t->nr_objs; i++)
		sum += t->objs[i].dirty.cap * sizeof(struct uffdwp_range);
	return sum;
}

static void task_recollapse(struct trk_task *tk, struct uffdwp_stop_stats *stats)
{
	struct uffdwp_rangeset huge_now = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset split = UFFDWP_RANGESET_INIT;
	uint64_t failed_at;
	int pidfd = -1;
	size_t i;

	if (!tk->thp_start.nr || tk->pagemap_fd < 0)
		return;
	if (pm_scan(tk->pagemap_fd, tk->thp_start.r[0].start,
		    tk->thp_start.r[tk->thp_start.nr - 1].end, 0, PAGE_IS_HUGE, &huge_now,
		    &failed_at))
		goto out;
	for (i = 0; i < tk->thp_start.nr; i++)
		if (uffdwp_rangeset__add(&split, tk->thp_start.r[i].start, tk->thp_start.r[i].end))
			goto out;
	for (i = 0; i < huge_now.nr; i++)
		if (uffdwp_rangeset__remove(&split, huge_now.r[i].start, huge_now.r[i].end))
			goto out;
	if (stats)
		stats->thp_split_bytes += uffdwp_rangeset__bytes(&split);
	if (!stats || !split.nr)
		goto out;

	pidfd = syscall(__NR_pidfd_open, tk->pid, 0);
	if (pidfd < 0)
		goto out;
	for (i = 0; i < split.nr; i++) {
		/* Whole PMDs only: collapsing a partial one would fill it in. */
		uint64_t s = (split.r[i].start + HUGE_PMD - 1) & ~(HUGE_PMD - 1);
		uint64_t e = split.r[i].end & ~(HUGE_PMD - 1);
		struct iovec iov;

		if (s >= e)
			continue;
		iov.iov_base = (void *)(uintptr_t)s;
		iov.iov_len = e - s;
		if (syscall(__NR_process_madvise, pidfd, &iov, 1, MADV_COLLAPSE, 0) < 0)
			pr_info("MADV_COLLAPSE of %d at %" PRIx64 ": %s\n", tk->pid, s,
				uffdwp_strerror(errno));
	}
	uffdwp_rangeset__clear(&huge_now);
	if (!pm_scan(tk->pagemap_fd, split.r[0].start, split.r[split.nr - 1].end, 0, PAGE_IS_HUGE,
		     &huge_now, &failed_at))
		for (i = 0; i < huge_now.nr; i++)
			if (uffdwp_rangeset__overlaps(&split, huge_now.r[i].start,
						      huge_now.r[i].end))
				stats->thp_recollapsed_bytes +=
				    huge_now.r[i].end - huge_now.r[i].start;
out:
	if (pidfd >= 0)
		close(pidfd);
	uffdwp_rangeset__fini(&huge_now);
	uffdwp_rangeset__fini(&split);
}

void uffdwp_tracker__stop(struct uffdwp_tracker *t, bool recollapse,
			  struct uffdwp_stop_stats *stats)
{
	size_t i;

	if (!t)
		return;
	if (stats)
		memset(stats, 0, sizeof(*stats));
	for (i = 0; i < t->nr_tasks; i++) {
		struct trk_task *tk = &t->tasks[i];
		int pm = tk->pagemap_fd;

		/* Closing the last reference to the uffd clears all protection. */
		if (tk->uffd >= 0)
			close(tk->uffd);
		tk->uffd = -1;
		if (pm >= 0 && mm_alive(pm))
			task_recollapse(tk, recollapse ? stats : NULL);
		task_fini(tk);
	}
	for (i = 0; i < t->nr_objs; i++)
		obj_fini(&t->objs[i]);
	uffdwp_forkwatch__close(t->fw);
	free(t->objs);
	free(t->tasks);
	free(t);
}
