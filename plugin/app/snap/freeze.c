// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "freeze: "
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "snap/freeze.h"
#include "base/log.h"
#include "base/procfs.h"

/* Rounds of "list the tree, stop what is new" before giving up on a fork bomb. */
#define FREEZE_MAX_ROUNDS 64

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* State letter of one thread, from /proc/@pid/task/@tid/stat; 0 if it is gone. */
static char thread_state(pid_t pid, pid_t tid)
{
	char path[64], buf[512], *p;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : 0;
}

static bool state_stopped(char st)
{
	/* T: group stop; t: a tracer holds it; Z, X, gone: runs no more. */
	return !st || st == 'T' || st == 't' || st == 'Z' || st == 'X';
}

/*
 * Whether every thread of @pid is stopped. If not, *@running gets the
 * state of a thread that is not. A process that is gone counts as stopped.
 */
static bool task_stopped(pid_t pid, char *running)
{
	char path[64];
	struct dirent *de;
	bool all = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return true;
	while ((de = readdir(d))) {
		char st;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		st = thread_state(pid, atoi(de->d_name));
		if (!state_stopped(st)) {
			*running = st;
			all = false;
			break;
		}
	}
	closedir(d);
	return all;
}

static bool pid_in(const pid_t *v, size_t n, pid_t pid)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] == pid)
			return true;
	return false;
}

static int pid_push(pid_t **v, size_t *n, size_t *cap, pid_t pid)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		pid_t *nv = realloc(*v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = pid;
	return 0;
}

/* Stop the tasks of @pids not seen before. Returns how many were new, or -errno. */
static int stop_new(struct uffdwp_freezer *fz, const pid_t *pids, int n)
{
	int i, nnew = 0, err;
	char st;

	for (i = 0; i < n; i++) {
		pid_t p = pids[i];

		if (pid_in(fz->stopped, fz->nr, p) || pid_in(fz->left, fz->nr_left, p))
			continue;
		nnew++;
		st = 0;
		if (task_stopped(p, &st)) {
			/* Stopped by someone else (or gone): not ours to continue. */
			err = pid_push(&fz->left, &fz->nr_left, &fz->cap_left, p);
			if (err)
				return err;
			continue;
		}
		/* Recorded first: a failed kill must still be undone by thaw. */
		err = pid_push(&fz->stopped, &fz->nr, &fz->cap, p);
		if (err)
			return err;
		if (kill(p, SIGSTOP) && errno != ESRCH) {
			err = -errno;
			pr_perror("Can't stop %d", p);
			return err;
		}
	}
	return nnew;
}

int uffdwp_freeze(pid_t root, bool tree, unsigned int timeout_ms, struct uffdwp_freezer *fz)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	pid_t *pids = NULL;
	sigset_t held;
	int round, n, err;
	size_t i;

	memset(fz, 0, sizeof(*fz));
	sigemptyset(&held);
	sigaddset(&held, SIGINT);
	sigaddset(&held, SIGTERM);
	sigaddset(&held, SIGHUP);
	sigaddset(&held, SIGQUIT);
	sigaddset(&held, SIGTSTP);
	if (!sigprocmask(SIG_BLOCK, &held, &fz->oldmask))
		fz->masked = true;

	for (round = 0; round < FREEZE_MAX_ROUNDS; round++) {
		/*
		 * A task may fork until it is stopped: list the tree again
		 * once all we know of are stopped, until nothing is new.
		 */
		n = uffdwp_proc_tree(root, tree, &pids);
		if (n < 0) {
			err = n;
			if (err == -ESRCH)
				pr_err("process %d is gone\n", root);
			goto err_thaw;
		}
		err = stop_new(fz, pids, n);
		free(pids);
		pids = NULL;
		if (err < 0)
			goto err_thaw;
		if (!err)
			return 0;
		for (i = 0; i < fz->nr; i++) {
			char st = 0;

			while (!task_stopped(fz->stopped[i], &st)) {
				if (mono_ms() > deadline) {
					pr_err("process %d did not stop within %u ms (state %c)\n",
					       fz->stopped[i], timeout_ms, st);
					err = -ETIMEDOUT;
					goto err_thaw;
				}
				usleep(200);
			}
		}
	}
	pr_err("the tree of %d keeps forking: cannot stop it\n", root);
	err = -EAGAIN;
err_thaw:
	uffdwp_thaw(fz);
	return err;
}

void uffdwp_thaw(struct uffdwp_freezer *fz)
{
	size_t i;

	for (i = 0; i < fz->nr; i++)
		if (kill(fz->stopped[i], SIGCONT) && errno != ESRCH)
			pr_perror("Can't continue %d", fz->stopped[i]);
	free(fz->stopped);
	free(fz->left);
	fz->stopped = fz->left = NULL;
	fz->nr = fz->cap = fz->nr_left = fz->cap_left = 0;
	if (fz->masked)
		sigprocmask(SIG_SETMASK, &fz->oldmask, NULL);
	fz->masked = false;
}
