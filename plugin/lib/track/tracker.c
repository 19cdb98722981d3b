// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "tracker: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "track/probe.h"
#include "track/tracker_priv.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
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
			r = trk_task_scan(tk, &st[i].maps, tr, &st[i].dirty, &st[i].written);
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

			r = trk_dirty_all(&st[i].maps, tr, &st[i].dirty, why, 0);
			if (r) {
				err = r;
				goto err_free;
			}
		}
		st[i].ok = true;
		tr->thp_bytes_start = tk->thp_bytes_start;
	}

	err = trk_shmem_pass(t, st, rep);
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
	trk_gc_objs(t);

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
		trk_obj_fini(&t->objs[i]);
	uffdwp_forkwatch__close(t->fw);
	uffdwp_punchwatch__free(t->pw);
	free(t->objs);
	free(t->tasks);
	free(t);
}
