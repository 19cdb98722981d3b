// SPDX-License-Identifier: GPL-2.0
/* The holders' run directory: sockets, locks, logs, sweeping (holder_priv.h). */
#define LOG_PREFIX "holder: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "track/holder_priv.h"
#include "base/log.h"

int holder_run_dir_prepare(void)
{
	/*
	 * Say so before anything fails with a bare EPERM: the holder injects
	 * with ptrace (CAP_SYS_PTRACE), copies the fd with pidfd_getfd and
	 * reads /proc/PID/map_files (CAP_SYS_ADMIN); its run directory is
	 * root's.
	 */
	if (geteuid()) {
		pr_err("tracking needs root (CAP_SYS_PTRACE and CAP_SYS_ADMIN, and %s is "
		       "root's)\n",
		       UFFDWP_RUN_DIR);
		return -EPERM;
	}
	if (mkdir(UFFDWP_RUN_DIR, 0700) && errno != EEXIST) {
		int err = -errno;

		pr_perror("mkdir %s", UFFDWP_RUN_DIR);
		return err;
	}
	/* An existing directory may have come with looser modes: not ours to trust. */
	if (chmod(UFFDWP_RUN_DIR, 0700)) {
		int err = -errno;

		pr_perror("chmod %s", UFFDWP_RUN_DIR);
		return err;
	}
	return 0;
}

/* The lock we hold on @fd is the one at @path, not one a holder unlinked. */
bool holder_lock_is_current(int fd, const char *path)
{
	struct stat a, b;

	return !fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* How long the log of a holder that is gone is kept for its reader. */
#define HOLDER_LOG_KEEP_S (7 * 24 * 3600)

/* A log whose holder is gone (no lock file) and that is older than a week. */
static void sweep_old_log(char *path, size_t n, time_t now)
{
	struct stat st;

	strcpy(path + n - 3, "lock");
	if (!access(path, F_OK))
		return;
	strcpy(path + n - 3, "log");
	if (!lstat(path, &st) && S_ISREG(st.st_mode) && st.st_mtime + HOLDER_LOG_KEEP_S < now)
		unlink(path);
}

/*
 * A holder that was killed (SIGKILL, OOM) leaves its lock, socket and log
 * behind. Whoever takes such a lock knows its holder is dead: take the
 * files away, keeping a log that says something (for a week).
 */
void holder_run_dir_sweep(void)
{
	time_t now = time(NULL);
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	d = opendir(UFFDWP_RUN_DIR);
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		int fd, n;

		if (len < 5)
			continue;
		n = snprintf(path, sizeof(path), UFFDWP_RUN_DIR "/%s", de->d_name);
		if (n < 0 || (size_t)n >= sizeof(path) - 1)
			continue;
		if (!strcmp(de->d_name + len - 4, ".log")) {
			sweep_old_log(path, n, now);
			continue;
		}
		if (len < 6 || strcmp(de->d_name + len - 5, ".lock"))
			continue;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (!flock(fd, LOCK_EX | LOCK_NB) && holder_lock_is_current(fd, path)) {
			char *dot = path + n - 4;

			strcpy(dot, "sock");
			unlink(path);
			strcpy(dot, "log");
			if (!stat(path, &st) && !st.st_size)
				unlink(path);
			strcpy(dot, "lock");
			/* Unlinked while held, as a holder does on its way out. */
			unlink(path);
		}
		close(fd);
	}
	closedir(d);
}

int uffdwp_holder_path(pid_t pid, const char *kind, char *buf, size_t len)
{
	struct stat ns;
	int n;

	/* Without /proc, namespace 0: a name no namespace can share by mistake. */
	if (stat("/proc/self/ns/pid", &ns))
		ns.st_ino = 0;
	n = snprintf(buf, len, UFFDWP_HOLDER_FILE_FMT, (unsigned long)ns.st_ino, pid, kind);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int uffdwp_holder_running(pid_t pid)
{
	char path[108], buf[32];
	int fd, n, holder = 0;

	uffdwp_holder_path(pid, "lock", path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		/* We got it: nobody holds it. */
		close(fd);
		return 0;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		holder = atoi(buf);
	}
	close(fd);
	return holder > 0 ? holder : 1;
}
