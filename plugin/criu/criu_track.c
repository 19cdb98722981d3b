// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "criu: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi/uffdwp-uapi.h"
#include "criu_track.h"
#include "track/holder.h"
#include "base/log.h"
#include "base/procfs.h"

#define PAGE_SZ 4096ULL

static struct {
	pid_t root;		     /* 0 until the first hook of the run */
	bool begun;		     /* the holder was looked for in this run */
	bool holder;		     /* a holder serves root */
	bool trusted;		     /* its committed state is that of our parent images */
	bool foreign;		     /* root's holder files belong to another pid namespace */
	struct uffdwp_report *rep;   /* latest scan of this run, NULL if none */
	struct cr_mem_range *ranges; /* answer buffer of dirty() */
	size_t cap;
} run;

static void moff_reset(void);

void uffdwp_criu_track__reset(void)
{
	moff_reset();
	uffdwp_report__free(run.rep);
	free(run.ranges);
	memset(&run, 0, sizeof(run));
}

/*
 * Fault injection for the tests, as CRIU's own CRIU_FAULT: with
 * UFFDWP_CRIU_FAULT=@point in its environment, CRIU is SIGKILLed there.
 * Each point is one where the tasks are in no injected system call, so a
 * CRIU killed there leaves them running as plain CRIU does: "track-task"
 * as a task's tracking begins, "adopted" once the holder has its
 * userfaultfd and before anything is registered, "after-scan" after each
 * scan, "finish" as the run ends (a pre-dump's tasks run again by then),
 * before the commit.
 */
static void fault_point(const char *point)
{
	const char *f = getenv("UFFDWP_CRIU_FAULT");

	if (!f || strcmp(f, point))
		return;
	pr_warn("fault injection: CRIU killed at %s\n", point);
	kill(getpid(), SIGKILL);
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
	fault_point("after-scan");
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
 * The run directory is shared by all pid namespaces. The holder's files
 * carry the namespace in their names, and a holder refuses requests once
 * its root pid names another process; this check stays as a second line:
 * the holder is ours only if we can see it, in our pid namespace, with
 * the lock file open. (zdtm runs every test as pid 78 of its own
 * namespace: a holder taken for another tree's would lose writes.)
 */
static bool holder_is_ours(pid_t holder)
{
	char path[108];
	struct stat self_ns, ns, lock, st;
	struct dirent *de;
	bool ours = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", holder);
	if (holder <= 1 || stat("/proc/self/ns/pid", &self_ns) || stat(path, &ns) ||
	    self_ns.st_dev != ns.st_dev || self_ns.st_ino != ns.st_ino)
		return false;
	if (uffdwp_holder_path(run.root, "lock", path, sizeof(path)) || stat(path, &lock))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/fd", holder);
	d = opendir(path);
	if (!d)
		return false;
	while (!ours && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		/* Follows the link: the open file itself. */
		ours = !fstatat(dirfd(d), de->d_name, &st, 0) && st.st_dev == lock.st_dev &&
		       st.st_ino == lock.st_ino;
	}
	closedir(d);
	return ours;
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
	if (!holder_is_ours(err)) {
		pr_warn("the holder for %d (%s) is not in our pid namespace: "
			"memory is not tracked, all of it counts as written\n",
			run.root, UFFDWP_RUN_DIR);
		run.foreign = true;
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
	if (st.sync_err)
		pr_warn("the images of the run before could not be synced (%s): they may not "
			"all be on disk; all memory of %d counts as written\n",
			uffdwp_strerror(-st.sync_err), run.root);
	else if (!run.trusted)
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
	fault_point("track-task");
	if (r->compat) {
		pr_warn("%d is a 32-bit task: not tracked\n", r->pid);
		return -ENOTSUP;
	}
	err = begin();
	if (err)
		return err;
	if (run.foreign)
		return -ENOTSUP; /* another namespace's holder has our root's files */

	tr = task_report(r->pid);
	if (tr && tr->tracked_bytes &&
	    !(tr->flags & (UFFDWP_TASK_LOST | UFFDWP_TASK_EXEC | UFFDWP_TASK_EXITED)))
		return 0; /* tracked, and this run's scan already re-protected it */

	if (!run.holder) {
		err = holder_start(log_get_fd());
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
	fault_point("adopted");
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

/* One task's mappings, read once while CRIU asks about it. */
static struct {
	pid_t pid;
	struct uffdwp_maps maps;
} moff;

static void moff_reset(void)
{
	uffdwp_maps__fini(&moff.maps);
	memset(&moff, 0, sizeof(moff));
}

/* The tasks are frozen while CRIU asks: their maps do not change meanwhile. */
static int moff_load(pid_t pid)
{
	int err;

	if (moff.pid == pid)
		return 0;
	moff_reset();
	err = uffdwp_maps__read(pid, &moff.maps);
	if (err)
		return err;
	moff.pid = pid;
	return 0;
}

/*
 * Where the pages of the file mapping @start-@end stop being backed by its
 * file: @end for anything else. Pages past the end of the file cannot be
 * touched (SIGBUS), so they hold nothing to dump; but protection with
 * UFFD_FEATURE_WP_UNPOPULATED puts uffd-wp markers there too, which the
 * tracker reports as changed file pages and pagemap as swapped ones: CRIU
 * would collect them and the parasite's vmsplice() fails with EFAULT
 * ("Can't splice all pages to pipe", zdtm shmemfd-priv).
 */
static uint64_t file_backed_end(pid_t pid, uint64_t start, uint64_t end)
{
	char path[96];
	uint64_t size, lim, off;
	size_t lo, hi;
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid, (unsigned long long)start,
		 (unsigned long long)end);
	if (stat(path, &st) || !S_ISREG(st.st_mode))
		return end; /* anonymous (no entry), or not a regular file */
	if (moff_load(pid))
		return end;
	lo = 0;
	hi = moff.maps.nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (moff.maps.v[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == moff.maps.nr || moff.maps.v[lo].start != start)
		return end;
	size = ((uint64_t)st.st_size + PAGE_SZ - 1) & ~(PAGE_SZ - 1);
	off = moff.maps.v[lo].pgoff;
	lim = size > off ? start + (size - off) : start;
	return lim < end ? lim : end;
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
	if (n) {
		uint64_t lim = file_backed_end(pid, start, end);

		while (n && run.ranges[n - 1].start >= lim)
			n--;
		if (n && run.ranges[n - 1].end > lim)
			run.ranges[n - 1].end = lim;
	}
	*ranges = run.ranges;
	*nr = n;
	pr_debug("%d %llx-%llx: %zu dirty ranges\n", pid, (unsigned long long)start,
		 (unsigned long long)end, n);
	return 0;
}

/* The images, @id with them, on disk before a commit may count on them. */
static int sync_images(int img_dir)
{
	/* CRIU never syncs its images; committing means they must survive a crash. */
	if (syncfs(img_dir)) {
		int err = -errno;

		pr_perror("syncfs of the images directory");
		return err;
	}
	return 0;
}

/* Write @id into the images directory (not synced: see finish()). */
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
	return err;
}

int uffdwp_criu_track__finish(int status, bool tasks_end, int img_dir)
{
	uint8_t id[UFFDWP_HOLDER_TAG_LEN];
	int err = 0;

	fault_point("finish");
	if (status) {
		if (run.rep)
			pr_info("run failed: scan gen %llu stays pending\n",
				(unsigned long long)run.rep->gen);
		goto out;
	}
	if (!run.rep)
		goto out; /* nothing scanned in this run: nothing to commit */
	if (tasks_end) {
		/*
		 * The tasks are killed next and the holder goes with them:
		 * nothing will ever ask for this generation, so neither the
		 * commit nor the sync is worth the frozen time.
		 */
		pr_info("tasks end with this dump: gen %llu not committed\n",
			(unsigned long long)run.rep->gen);
		goto out;
	}
	if (getrandom(id, sizeof(id), 0) != sizeof(id)) {
		err = -errno;
		pr_perror("getrandom");
		goto out;
	}
	err = write_id(img_dir, id);
	if (err)
		goto out;
	/*
	 * The holder syncs the images once we have gone on, the tasks running
	 * again, and answers nothing else before: a sync of the whole file
	 * system can take long on a busy machine, and the next run learns
	 * from the holder whether it worked. One without commit_sync gets
	 * the sync from us first.
	 */
	err = uffdwp_holder_commit_sync(run.root, run.rep->gen, id, img_dir);
	if (err == -EBADMSG) {
		err = sync_images(img_dir);
		if (err)
			goto out;
		err = uffdwp_holder_commit_tag(run.root, run.rep->gen, id);
	}
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
