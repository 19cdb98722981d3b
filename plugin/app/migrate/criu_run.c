// SPDX-License-Identifier: GPL-2.0
/* Running CRIU: spawn, wait, and read its statistics and log. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "criu_run.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3 */
#endif

int mig_child__spawn(struct mig_child *c, char *const argv[], const int *keep, int nr_keep,
		     int out_fd)
{
	int err, null, i;

	c->pid = -1;
	c->pidfd = -1;
	c->reaped = 0;
	c->status = 0;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		setpgid(0, 0);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		null = open("/dev/null", O_RDWR);
		if (null < 0)
			_exit(127);
		dup2(null, 0);
		dup2(out_fd >= 0 ? out_fd : null, 1);
		dup2(out_fd >= 0 ? out_fd : null, 2);
		for (i = 0; i < nr_keep; i++)
			if (keep[i] >= 0)
				fcntl(keep[i], F_SETFD, 0);
		execv(argv[0], argv);
		dprintf(2, "uffdwp: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	if (c->pidfd < 0) {
		err = -errno;
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
		c->pid = -1;
		return err;
	}
	return 0;
}

/* The group of a child not reaped yet: its zombie keeps the pgid from reuse. */
static void kill_group(struct mig_child *c)
{
	if (!c->keep_group && c->pid > 0 && !c->reaped)
		kill(-c->pid, SIGKILL);
}

static int reap(struct mig_child *c)
{
	int st;

	kill_group(c);
	for (;;) {
		if (waitpid(c->pid, &st, 0) == c->pid)
			break;
		if (errno != EINTR)
			return -errno;
	}
	c->status = st;
	c->reaped = 1;
	close(c->pidfd);
	c->pidfd = -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int mig_child__wait(struct mig_child *c, int timeout_ms, volatile sig_atomic_t *signals)
{
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
	int waited = 0, n;

	if (c->pid < 0)
		return -ECHILD;
	if (c->reaped)
		return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 128 + WTERMSIG(c->status);
	for (;;) {
		n = poll(&p, 1, 100);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return reap(c);
		if (signals && *signals >= 2)
			kill(c->pid, SIGKILL);
		waited += 100;
		if (timeout_ms >= 0 && waited >= timeout_ms) {
			kill(c->pid, SIGKILL);
			reap(c);
			return -ETIMEDOUT;
		}
	}
}

int mig_child__wait_status(struct mig_child *c, int status_fd, int timeout_ms,
			   volatile sig_atomic_t *signals)
{
	struct pollfd p[2] = {{.fd = status_fd, .events = POLLIN},
			      {.fd = c->pidfd, .events = POLLIN}};
	int waited = 0, n;

	for (;;) {
		n = poll(p, 2, 100);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[0].revents) {
			char b;

			if (read(status_fd, &b, 1) == 1)
				return 0;
			/*
			 * Closed without the byte: CRIU failed (or exited)
			 * before it was ready. Its exit code says why.
			 */
			n = mig_child__wait(c, timeout_ms >= 0 ? timeout_ms - waited : -1, signals);
			return n ? n : -EPIPE;
		}
		if (n > 0 && p[1].revents)
			return reap(c);
		if (signals && *signals >= 2)
			kill(c->pid, SIGKILL);
		waited += 100;
		if (timeout_ms >= 0 && waited >= timeout_ms)
			return -ETIMEDOUT;
	}
}

int mig_wait_gone(pid_t pid, int timeout_ms)
{
	struct pollfd p = {.events = POLLIN};
	int n;

	p.fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p.fd < 0)
		return errno == ESRCH ? 0 : -errno;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	close(p.fd);
	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

int mig_child__running(struct mig_child *c)
{
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};

	if (c->pid <= 0 || c->reaped)
		return 0;
	return poll(&p, 1, 0) == 0;
}

void mig_child__kill(struct mig_child *c)
{
	if (c->pid <= 0 || c->reaped)
		return;
	kill(c->pid, SIGKILL);
	reap(c);
}

void mig_child__end_group(struct mig_child *c)
{
	if (c->pid > 0 && !c->reaped && !mig_child__running(c))
		kill_group(c);
}

/* A protobuf varint at *p (before @end); -EBADMSG when cut short. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	int shift;

	*v = 0;
	for (shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -EBADMSG;
		*v |= (uint64_t)(**p & 0x7f) << shift;
		if (!(*(*p)++ & 0x80))
			return 0;
	}
	return -EBADMSG;
}

/* The dump_stats_entry message's fields, by number (CRIU images/stats.proto). */
static int parse_dump_stats(const uint8_t *p, const uint8_t *end, struct mig_dump_stats *st)
{
	uint64_t key, v;

	while (p < end) {
		if (varint(&p, end, &key))
			return -EBADMSG;
		if ((key & 7) != 0) /* every field of it is a varint */
			return -EBADMSG;
		if (varint(&p, end, &v))
			return -EBADMSG;
		switch (key >> 3) {
		case 1:
			st->freezing_us = (uint32_t)v;
			break;
		case 2:
			st->frozen_us = (uint32_t)v;
			break;
		case 3:
			st->memdump_us = (uint32_t)v;
			break;
		case 4:
			st->memwrite_us = (uint32_t)v;
			break;
		case 5:
			st->pages_scanned = v;
			break;
		case 6:
			st->pages_skipped_parent = v;
			break;
		case 7:
			st->pages_written = v;
			break;
		case 9:
			st->pages_lazy = v;
			break;
		case 12:
			st->shpages_scanned = v;
			break;
		case 13:
			st->shpages_skipped_parent = v;
			break;
		case 14:
			st->shpages_written = v;
			break;
		default:
			break;
		}
	}
	return 0;
}

int mig_read_dump_stats(int dirfd, struct mig_dump_stats *st)
{
	uint8_t buf[512];
	const uint8_t *p, *end;
	uint64_t key, len;
	uint32_t n;
	ssize_t got;
	int fd;

	memset(st, 0, sizeof(*st));
	fd = openat(dirfd, "stats-dump", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	got = read(fd, buf, sizeof(buf));
	close(fd);
	/* Two magics (service, stats), a u32 size, one stats_entry. */
	if (got < 12)
		return -EBADMSG;
	memcpy(&n, buf + 8, 4);
	if (n > (size_t)got - 12)
		return -EBADMSG;
	p = buf + 12;
	end = p + n;
	while (p < end) {
		if (varint(&p, end, &key) || (key & 7) != 2 || varint(&p, end, &len) ||
		    len > (uint64_t)(end - p))
			return -EBADMSG;
		if (key >> 3 == 1) /* stats_entry.dump */
			return parse_dump_stats(p, p + len, st);
		p += len;
	}
	return -EBADMSG;
}

void mig_log_reason(int dirfd, const char *name, char *buf, size_t len)
{
	char line[1024], last[1024] = "", err[1024] = "";
	FILE *f;
	int fd;

	buf[0] = 0;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		snprintf(last, sizeof(last), "%s", line);
		/*
		 * Not the reason: CRIU's noise on this kind of machine, and the
		 * parent pages a run through a page server does not have here.
		 */
		if (!err[0] && strstr(line, "Error") && !strstr(line, "RLIMIT_NOFILE") &&
		    !strstr(line, "No parent image found, though parent directory is set"))
			snprintf(err, sizeof(err), "%s", line);
	}
	fclose(f);
	snprintf(buf, len, "%s", err[0] ? err : last);
}

int mig_log_time(int dirfd, const char *name, const char *needle, double *t)
{
	char line[1024];
	int fd, err = -ENOENT;
	FILE *f;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle) && sscanf(line, "(%lf)", t) == 1) {
			err = 0;
			break;
		}
	fclose(f);
	return err;
}

#define LAZY_PIPE_BYTES	     4194304UL
#define CAP_SYS_RESOURCE_BIT 24

int mig_postcopy_problem(char *buf, size_t len)
{
	unsigned long long caps = 0;
	unsigned long max = 0;
	char line[256];
	FILE *f;

	f = fopen("/proc/sys/fs/pipe-max-size", "r");
	if (!f)
		return -errno;
	if (fscanf(f, "%lu", &max) != 1)
		max = 0;
	fclose(f);
	if (max >= LAZY_PIPE_BYTES)
		return 0;
	f = fopen("/proc/self/status", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	if (caps & (1ULL << CAP_SYS_RESOURCE_BIT))
		return 0;
	snprintf(buf, len,
		 "post-copy needs CRIU's 4 MiB lazy-page pipes: fs.pipe-max-size is %lu and "
		 "this process lacks CAP_SYS_RESOURCE; raise it (sysctl -w "
		 "fs.pipe-max-size=4194304) on both hosts",
		 max);
	return 1;
}
