// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi/uffdwp-uapi.h"
#include "criu_track.h"
#include "holder.h"
#include "log.h"

#define PAGE_SZ 4096ULL

static struct {
	pid_t root;		     /* 0 until the first hook of the run */
	bool begun;		     /* the holder was looked for in this run */
	bool holder;		     /* a holder serves root */
	bool trusted;		     /* its committed state is that of our parent images */
	struct uffdwp_report *rep;   /* latest scan of this run, NULL if none */
	struct cr_mem_range *ranges; /* answer buffer of dirty() */
	size_t cap;
} run;

void uffdwp_criu_track__reset(void)
{
	uffdwp_report__free(run.rep);
	free(run.ranges);
	memset(&run, 0, sizeof(run));
}

static int scan(void)
{
	struct uffdwp_report *rep;
	int err;

	err = uffdwp_holder_scan(run.root, &rep);
	if (err) {
		pr_err("scan by the holder of %d failed: %s\n", run.root, uffdwp_strerror(-err));
		return err;
	}
	uffdwp_report__free(run.rep);
	run.rep = rep;
	pr_info("scan gen %llu: %zu tasks, %llu dirty bytes, %llu us\n",
		(unsigned long long)rep->gen, rep->nr_tasks,
		(unsigned long long)uffdwp_report__dirty_bytes(rep),
		(unsigned long long)(rep->scan_ns / 1000));
	return 0;
}

/* Read the id in the parent images, if any: 0, or -errno (-ENOENT: none). */
static int parent_id(int img_dir, uint8_t id[UFFDWP_HOLDER_TAG_LEN])
{
	int fd, err = 0;
	ssize_t n;

	fd = openat(img_dir, "parent/" UFFDWP_TRACK_ID_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, id, UFFDWP_HOLDER_TAG_LEN);
	if (n != UFFDWP_HOLDER_TAG_LEN)
		err = n < 0 ? -errno : -EBADMSG;
	close(fd);
	return err;
}

/*
 * First hook of the run: find the holder and, if there is one, scan while
 * the tasks are frozen. Tracking is trusted only if what the holder last
 * committed is what the parent images hold.
 */
static int begin(void)
{
	static const uint8_t zero[UFFDWP_HOLDER_TAG_LEN];
	uint8_t id[UFFDWP_HOLDER_TAG_LEN];
	struct uffdwp_holder_status st;
	int err;

	if (run.begun)
		return 0;
	run.begun = true;

	err = uffdwp_holder_running(run.root);
	if (err <= 0) {
		pr_info("no holder tracks %d: all its memory counts as written\n", run.root);
		return 0;
	}
	err = uffdwp_holder_status(run.root, &st);
	if (!err)
		err = scan();
	if (err) {
		/* A holder that does not answer is as good as none. */
		pr_warn("holder of %d does not answer (%s): all memory counts as written\n",
			run.root, uffdwp_strerror(-err));
		return 0;
	}
	run.holder = true;

	err = parent_id(criu_get_image_dir(), id);
	if (err && err != -ENOENT)
		pr_warn("cannot read the parent's %s: %s\n", UFFDWP_TRACK_ID_FILE,
			uffdwp_strerror(-err));
	run.trusted = !err && memcmp(id, zero, sizeof(id)) && !memcmp(id, st.tag, sizeof(id));
	if (!run.trusted)
		pr_info("parent images are not the ones tracking of %d is relative to: "
			"all memory counts as written\n",
			run.root);
	return 0;
}

static void note_root(pid_t pid)
{
	if (!run.root)
		run.root = pid;
}

static const struct uffdwp_task_report *task_report(pid_t pid)
{
	size_t i;

	if (!run.rep)
		return NULL;
	for (i = 0; i < run.rep->nr_tasks; i++)
		if (run.rep->tasks[i].pid == pid)
			return &run.rep->tasks[i];
	return NULL;
}

/*
 * Start a holder for root from a child of ours with a clean slate: CRIU's
 * descriptors closed (stderr aside, which goes to CRIU's log until the
 * holder opens its own), no signals blocked. The holder is that child's
 * child, so CRIU never waits for it. SIGCHLD stays blocked until the child
 * is reaped: the handler of CRIU's parasite code exits CRIU on any child it
 * does not expect, and after the reap it finds nothing of ours.
 */
static int holder_start(int log_fd)
{
	struct uffdwp_holder_opts o = {
	    .track = {.pid = run.root, .tree = true, .adopt_only = true},
	    .idle_timeout_s = UFFDWP_IDLE_TIMEOUT_S,
	};
	sigset_t chld, old, none;
	int status, err;
	pid_t child;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, &old))
		return -errno;
	child = fork();
	if (child < 0) {
		err = -errno;
		sigprocmask(SIG_SETMASK, &old, NULL);
		return err;
	}
	if (!child) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (log_fd >= 0 && log_fd != STDERR_FILENO)
			dup2(log_fd, STDERR_FILENO);
		syscall(SYS_close_range, 3, ~0U, 0);
		uffdwp_log_set_sink(NULL);
		err = uffdwp_holder_spawn(&o);
		_exit(err < 0 ? (-err & 0xff) : 0);
	}
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (!WIFEXITED(status))
		return -EIO;
	return -WEXITSTATUS(status);
}

/* Create a userfaultfd inside the task and bring a copy of it here. */
static int remote_userfaultfd(struct cr_plugin_remote *r)
{
	long ret, cret;
	int fd;

	if (r->syscall(r, &ret, __NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0,
		       0, 0, 0, 0)) {
		pr_err("cannot run userfaultfd() in %d\n", r->pid);
		return -EIO;
	}
	if (ret < 0) {
		pr_warn("userfaultfd() in %d: %s\n", r->pid, uffdwp_strerror((int)-ret));
		return (int)ret;
	}
	fd = r->getfd(r, (int)ret);
	if (fd < 0)
		pr_err("cannot copy fd %ld out of %d: %s\n", ret, r->pid, uffdwp_strerror(-fd));
	/* The task must not keep it: its copy would keep tracking alive after ours. */
	if (r->syscall(r, &cret, __NR_close, ret, 0, 0, 0, 0, 0) || cret) {
		pr_err("cannot close fd %ld in %d\n", ret, r->pid);
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	return fd;
}

int uffdwp_criu_track__task(struct cr_plugin_remote *r)
{
	const struct uffdwp_task_report *tr;
	char path[64];
	int uffd, pm, err;

	note_root(r->pid);
	if (r->compat) {
		pr_warn("%d is a 32-bit task: not tracked\n", r->pid);
		return -ENOTSUP;
	}
	err = begin();
	if (err)
		return err;

	tr = task_report(r->pid);
	if (tr && tr->tracked_bytes &&
	    !(tr->flags & (UFFDWP_TASK_LOST | UFFDWP_TASK_EXEC | UFFDWP_TASK_EXITED)))
		return 0; /* tracked, and this run's scan already re-protected it */

	if (!run.holder) {
		err = holder_start(uffdwp_criu_log_fd());
		if (err) {
			pr_err("cannot start a holder for %d: %s\n", run.root,
			       uffdwp_strerror(-err));
			return err;
		}
		run.holder = true;
		pr_info("started a holder for %d\n", run.root);
	}

	uffd = remote_userfaultfd(r);
	if (uffd < 0)
		return uffd == -EIO ? -EIO : -ENOTSUP;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", r->pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		err = -errno;
		pr_perror("open %s", path);
		close(uffd);
		return err;
	}
	err = uffdwp_holder_adopt(run.root, r->pid, uffd, pm);
	close(uffd);
	close(pm);
	if (err) {
		pr_err("holder of %d cannot adopt %d: %s\n", run.root, r->pid,
		       uffdwp_strerror(-err));
		return err;
	}
	/* Register and protect it now, while it is frozen. */
	return scan();
}

static int ranges_reserve(size_t n)
{
	struct cr_mem_range *p;

	if (n <= run.cap)
		return 0;
	p = realloc(run.ranges, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	run.ranges = p;
	run.cap = n;
	return 0;
}

int uffdwp_criu_track__dirty(pid_t pid, uint64_t start, uint64_t end,
			     const struct cr_mem_range **ranges, size_t *nr)
{
	const struct uffdwp_task_report *tr;
	const struct uffdwp_rangeset *rs;
	size_t lo, hi, n = 0;
	int err;

	note_root(pid);
	err = begin();
	if (err)
		return err;
	if (!run.trusted)
		return -ENOTSUP;
	tr = task_report(pid);
	if (!tr || (tr->flags & (UFFDWP_TASK_LOST | UFFDWP_TASK_EXITED))) {
		pr_info("%d is not tracked: all its memory counts as written\n", pid);
		return -ENOTSUP;
	}
	rs = &tr->dirty;

	/* First range that ends above start. */
	lo = 0;
	hi = rs->nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < rs->nr && rs->r[lo].start < end; lo++) {
		/* Whole pages: CRIU looks at page starts. */
		uint64_t s = rs->r[lo].start & ~(PAGE_SZ - 1);
		uint64_t e = (rs->r[lo].end + PAGE_SZ - 1) & ~(PAGE_SZ - 1);

		if (s < start)
			s = start;
		if (e > end)
			e = end;
		if (n && run.ranges[n - 1].end >= s) {
			if (e > run.ranges[n - 1].end)
				run.ranges[n - 1].end = e;
			continue;
		}
		if (n == run.cap) {
			err = ranges_reserve(run.cap ? 2 * run.cap : 64);
			if (err)
				return err;
		}
		run.ranges[n].start = s;
		run.ranges[n].end = e;
		n++;
	}
	*ranges = run.ranges;
	*nr = n;
	pr_debug("%d %llx-%llx: %zu dirty ranges\n", pid, (unsigned long long)start,
		 (unsigned long long)end, n);
	return 0;
}

/* Write @id into the images directory, durably with the images around it. */
static int write_id(int img_dir, const uint8_t id[UFFDWP_HOLDER_TAG_LEN])
{
	int fd, err = 0;

	fd = openat(img_dir, UFFDWP_TRACK_ID_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		pr_perror("cannot create %s", UFFDWP_TRACK_ID_FILE);
		return err;
	}
	if (write(fd, id, UFFDWP_HOLDER_TAG_LEN) != UFFDWP_HOLDER_TAG_LEN) {
		err = -errno ? -errno : -EIO;
		pr_perror("cannot write %s", UFFDWP_TRACK_ID_FILE);
	}
	close(fd);
	/* CRIU never syncs its images; committing means they must survive a crash. */
	if (!err && syncfs(img_dir)) {
		err = -errno;
		pr_perror("syncfs of the images directory");
	}
	return err;
}

int uffdwp_criu_track__finish(int status, int img_dir)
{
	uint8_t id[UFFDWP_HOLDER_TAG_LEN];
	int err = 0;

	if (status) {
		if (run.rep)
			pr_info("run failed: scan gen %llu stays pending\n",
				(unsigned long long)run.rep->gen);
		goto out;
	}
	if (!run.rep)
		goto out; /* nothing scanned in this run: nothing to commit */
	if (getrandom(id, sizeof(id), 0) != sizeof(id)) {
		err = -errno;
		pr_perror("getrandom");
		goto out;
	}
	err = write_id(img_dir, id);
	if (err)
		goto out;
	err = uffdwp_holder_commit_tag(run.root, run.rep->gen, id);
	if (err) {
		/* The id in the images does not match then: the next dump is a full one. */
		pr_warn("holder of %d cannot commit gen %llu: %s\n", run.root,
			(unsigned long long)run.rep->gen, uffdwp_strerror(-err));
		err = 0;
	} else {
		pr_info("committed gen %llu of %d\n", (unsigned long long)run.rep->gen, run.root);
	}
out:
	uffdwp_criu_track__reset();
	return err;
}
