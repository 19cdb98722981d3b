/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared bits of the test workloads: tiny, header-only, no library.
 * A workload prints "ready ..." on stdout once set up, then waits.
 */
#ifndef UFFDWP_WORKLOAD_H__
#define UFFDWP_WORKLOAD_H__

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Print a line to stdout and flush it: the test reads it as a signal. */
static inline void wl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void wl_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static inline __attribute__((noreturn)) void wl_die(const char *what)
{
	wl_say("error %s", what);
	exit(1);
}

/* The byte a page gets for a (seed, page index): what the test recomputes. */
static inline uint8_t wl_pattern(uint32_t seed, uint64_t page, uint64_t byte)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (page * 0xbf58476d1ce4e5b9ULL) ^ byte;

	x ^= x >> 29;
	return (uint8_t)(x ? x : 1);
}

/*
 * Page contents of criu_wl and shm_wl: word @j of @page for @seed, never
 * zero (a zero page is never a written one); seed 0 is an all-zero page.
 */
static inline uint64_t wl_word(uint32_t seed, uint64_t page, uint64_t j)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (page * 0xbf58476d1ce4e5b9ULL) ^
		     (j * 0x94d049bb133111ebULL);

	x ^= x >> 31;
	return x | 1;
}

static inline void wl_fill_page(char *p, uint32_t seed, uint64_t page)
{
	uint64_t *w = (uint64_t *)p;
	size_t j;

	for (j = 0; j < 4096 / 8; j++)
		w[j] = wl_word(seed, page, j);
}

static inline bool wl_check_page(const char *p, uint32_t seed, uint64_t page)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t j;

	for (j = 0; j < 4096 / 8; j++)
		if (w[j] != (seed ? wl_word(seed, page, j) : 0))
			return false;
	return true;
}

/*
 * Write DIR/NAME (DIR/NAME.child for @child) with open, write, close and
 * rename: the test never reads half an answer, and no descriptor stays open
 * across a dump. Exits 3 on failure.
 */
static inline void wl_answer(const char *dir, bool child, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void wl_answer(const char *dir, bool child, const char *name, const char *fmt, ...)
{
	char path[4096], tmp[4100], buf[256];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s%s", dir, name, child ? ".child" : "");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, n) != n || close(fd) || rename(tmp, path))
		exit(3);
}

/*
 * What DIR/NAME (DIR/NAME.child for @child) says, into @buf (@size bytes,
 * NUL-terminated): its length, 0 if it is not there (yet) or empty.
 */
static inline ssize_t wl_read_answer(const char *dir, bool child, const char *name, char *buf,
				     size_t size)
{
	char path[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s%s", dir, name, child ? ".child" : "");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		buf[0] = '\0';
		return 0;
	}
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	return n;
}

/* The step last answered, from DIR/step (DIR/step.child for @child); 0: none yet. */
static inline long wl_step_answered(const char *dir, bool child)
{
	char buf[32];

	wl_read_answer(dir, child, "step", buf, sizeof(buf));
	return strtol(buf, NULL, 10);
}

/*
 * Our pid as the host sees it: /proc is the host's (no --mount-proc), so
 * /proc/self names it even inside a pid namespace.
 */
static inline pid_t wl_host_pid(void)
{
	char buf[32];
	ssize_t n;

	n = readlink("/proc/self", buf, sizeof(buf) - 1);
	if (n <= 0)
		return getpid();
	buf[n] = '\0';
	return (pid_t)atoi(buf);
}

/*
 * Wait (up to a minute) for DIR/NAME.child to say @k, any number if @k < 0;
 * return the number. Exits 4 on timeout.
 */
static inline long wl_wait_child(const char *dir, const char *name, long k)
{
	char buf[32];
	int tries;
	long v;

	for (tries = 0; tries < 60000; tries++) {
		if (wl_read_answer(dir, true, name, buf, sizeof(buf)) > 0) {
			v = strtol(buf, NULL, 10);
			if (k < 0 || v == k)
				return v;
		}
		usleep(1000);
	}
	exit(4);
}

/*
 * The loop of criu_wl and shm_wl, a parent and one child driven by the
 * signals in @set (blocked): SIGUSR1 runs @apply for the next *@step, in
 * the parent first, so that the child's writes of a step come after its
 * own, then in the child, and answers DIR/step once both are done.
 * SIGUSR2 has the child, then the parent, check their memory with @verify
 * (which answers DIR/verify, so the parent's answer is the last file
 * written) and returns the exit status. @child: the child's pid in the
 * parent, 0 in the child.
 */
static inline int wl_serve(const char *dir, const sigset_t *set, pid_t child,
			   volatile uint32_t *step, void (*apply)(uint32_t), int (*verify)(void))
{
	bool is_child = !child;
	int sig, status, bad;

	for (;;) {
		if (sigwait(set, &sig))
			continue;
		if (sig == SIGUSR1) {
			(*step)++;
			apply(*step);
			if (!is_child) {
				kill(child, SIGUSR1);
				wl_wait_child(dir, "step", *step);
			}
			wl_answer(dir, is_child, "step", "%u\n", *step);
		} else if (sig == SIGUSR2) {
			if (is_child)
				return verify();
			kill(child, SIGUSR2);
			bad = waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
			      WEXITSTATUS(status);
			if (verify())
				return 1;
			if (bad)
				wl_answer(dir, is_child, "verify", "bad child %u\n", *step);
			return bad;
		}
	}
}

#endif /* UFFDWP_WORKLOAD_H__ */
