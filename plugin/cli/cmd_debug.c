// SPDX-License-Identifier: GPL-2.0
/*
 * `uffdwp __debug`: hidden entry points into single library pieces, for the
 * tests and for poking at a kernel by hand. Output is "key value" lines (or
 * tab-separated rows) so that scripts can read it; not a stable interface.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "uapi/uffdwp-uapi.h"
#include "cli.h"
#include "track/forkwatch.h"
#include "track/inject.h"
#include "track/holder.h"
#include "base/log.h"
#include "track/probe.h"
#include "base/rangeset.h"

/* Short keys for scripts; the library's names are for people. */
static const char *const feature_keys[UFFDWP_FEAT__MAX] = {
    [UFFDWP_FEAT_USERFAULTFD] = "USERFAULTFD",
    [UFFDWP_FEAT_UFFD_WP] = "UFFD_WP",
    [UFFDWP_FEAT_WP_UNPOPULATED] = "WP_UNPOPULATED",
    [UFFDWP_FEAT_WP_ASYNC] = "WP_ASYNC",
    [UFFDWP_FEAT_PAGEMAP_SCAN] = "PAGEMAP_SCAN",
    [UFFDWP_FEAT_PTE_MARKER] = "PTE_MARKER",
    [UFFDWP_FEAT_WP_SHMEM] = "WP_SHMEM",
    [UFFDWP_FEAT_PIDFD_GETFD] = "PIDFD_GETFD",
    [UFFDWP_FEAT_THP] = "THP",
    [UFFDWP_FEAT_MADV_COLLAPSE] = "MADV_COLLAPSE",
};

/* System calls that make sense without pointer arguments. */
static const struct {
	const char *name;
	long nr;
} syscall_names[] = {
    {"getpid", __NR_getpid},
    {"gettid", __NR_gettid},
    {"getppid", __NR_getppid},
    {"getuid", __NR_getuid},
    {"sched_yield", __NR_sched_yield},
    {"pause", __NR_pause},
    {"close", __NR_close},
    {"dup", __NR_dup},
};

static void debug_usage(FILE *f)
{
	fprintf(f,
		"usage: uffdwp __debug probe\n"
		"       uffdwp __debug forkwatch   subscribe to fork events as a holder does\n"
		"       uffdwp __debug img-write --to DIR ...   write an exact image (--help)\n"
		"       uffdwp __debug inject-uffd [-n COUNT] PID\n"
		"       uffdwp __debug remote-syscall [-n COUNT] [-r REPEAT] PID NAME|NR [ARG...]\n"
		"       uffdwp __debug adopt-track PID   start a holder that injects nothing\n"
		"                 and hand it a uffd made here, as the CRIU plugin does\n"
		"       uffdwp __debug rangeset   range set operations from stdin, one per line:\n"
		"                 'add S E', 'remove S E', 'set S E [S E...]' (add_set of those),\n"
		"                 'print' (the ranges as 'S E' lines, then '.')\n"
		"\n"
		"-n: attach COUNT times, -r: run the call REPEAT times in each attach\n");
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* min/median/max of @n timings, sorted in place. */
static void print_times(double *t, int n)
{
	qsort(t, n, sizeof(*t), cmp_double);
	printf("usec_min %.1f\nusec_median %.1f\nusec_max %.1f\n", t[0], t[n / 2], t[n - 1]);
}

/* Entries in /proc/PID/fd, or -1 if it cannot be read (zombie leader: see task/). */
static int count_fds(pid_t pid)
{
	struct dirent *de;
	char path[64];
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int parse_count(const char *arg)
{
	int v;

	if (cli_num__int(arg, 1, 1000000, &v)) {
		fprintf(stderr, "uffdwp: '%s' is not a count\n", arg);
		return -1;
	}
	return v;
}

static int debug_probe(void)
{
	int f, has;

	for (f = 0; f < UFFDWP_FEAT__MAX; f++) {
		has = uffdwp_feature_has(f);
		printf("%s\t%s\t%s\t%s\t%s\t%s\n", feature_keys[f],
		       has > 0	  ? "present"
		       : has == 0 ? "missing"
				  : "error",
		       uffdwp_feature_name(f), uffdwp_feature_kernel(f),
		       uffdwp_feature_required(f) ? "required" : "optional",
		       has < 0	  ? uffdwp_strerror(-has)
		       : has == 0 ? uffdwp_strerror(uffdwp_feature_why(f))
				  : "-");
	}
	return uffdwp_probe_tracker() ? 1 : 0;
}

static int debug_inject_uffd(pid_t pid, int count)
{
	int before, after = -1, fd = -1, i, ret = 1;
	char path[64], link[PATH_MAX];
	double *t, t0;
	ssize_t n;

	t = calloc(count, sizeof(*t));
	if (!t)
		return 1;
	before = count_fds(pid);
	for (i = 0; i < count; i++) {
		if (fd >= 0)
			close(fd);
		t0 = now_us();
		fd = uffdwp_inject_userfaultfd(pid, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		t[i] = now_us() - t0;
		if (fd < 0) {
			fprintf(stderr, "uffdwp: cannot create a userfaultfd in %d: %s\n", pid,
				uffdwp_strerror(-fd));
			goto out;
		}
	}
	after = count_fds(pid);

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	printf("fd %d\nlink %s\ntarget_fds_before %d\ntarget_fds_after %d\n", fd, link, before,
	       after);
	print_times(t, count);
	close(fd);
	ret = 0;
out:
	free(t);
	return ret;
}

static int debug_remote_syscall(pid_t pid, int count, int repeat, int argc, char **argv)
{
	unsigned long a[6] = {0};
	struct uffdwp_remote *r;
	long nr = -1, res = 0;
	double *t, t0;
	size_t i;
	int err, k, j, ret = 1;

	for (i = 0; i < sizeof(syscall_names) / sizeof(syscall_names[0]); i++)
		if (!strcmp(argv[0], syscall_names[i].name))
			nr = syscall_names[i].nr;
	if (nr < 0) {
		char *end;

		nr = strtol(argv[0], &end, 0);
		if (*end || end == argv[0] || nr < 0) {
			fprintf(stderr, "uffdwp: unknown system call '%s'\n", argv[0]);
			return 2;
		}
	}
	if (argc > 7) {
		debug_usage(stderr);
		return 2;
	}
	for (k = 1; k < argc; k++)
		a[k - 1] = strtoul(argv[k], NULL, 0);

	t = calloc(count, sizeof(*t));
	if (!t)
		return 1;
	for (k = 0; k < count; k++) {
		t0 = now_us();
		err = uffdwp_remote__attach(pid, &r);
		if (!err) {
			for (j = 0; j < repeat && !err; j++)
				err = uffdwp_remote__syscall(r, &res, nr, a[0], a[1], a[2], a[3],
							     a[4], a[5]);
			if (!err && k == 0)
				printf("tid %d\n", uffdwp_remote__tid(r));
			uffdwp_remote__detach(r);
		}
		t[k] = now_us() - t0;
		if (err) {
			fprintf(stderr, "uffdwp: cannot run syscall %ld in %d: %s\n", nr, pid,
				uffdwp_strerror(-err));
			goto out;
		}
	}
	printf("ret %ld\n", res);
	print_times(t, count);
	ret = 0;
out:
	free(t);
	return ret;
}

/* The subscription a holder makes, and why it failed: the tests' probe. */
static int debug_forkwatch(void)
{
	struct uffdwp_forkwatch *w;
	int err = uffdwp_forkwatch__open(&w);

	uffdwp_forkwatch__close(err ? NULL : w);
	printf("fork_events %s%s%s\n", err ? "no" : "yes", err ? ": " : "",
	       err ? uffdwp_forkwatch_why(err) : "");
	return err ? 1 : 0;
}

/* What the CRIU plugin does, with our injection standing in for CRIU's. */
static int debug_adopt_track(pid_t pid)
{
	struct uffdwp_holder_opts o = {
	    .track = {.pid = pid, .adopt_only = true},
	    .idle_timeout_s = UFFDWP_IDLE_TIMEOUT_S,
	};
	char path[64];
	int uffd, pm, err, holder;

	holder = uffdwp_holder_spawn(&o);
	if (holder < 0)
		return 1;
	uffd = uffdwp_inject_userfaultfd(pid, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (uffd < 0) {
		fprintf(stderr, "uffdwp: inject: %s\n", uffdwp_strerror(-uffd));
		return 1;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		fprintf(stderr, "uffdwp: open %s: %s\n", path, uffdwp_strerror(errno));
		close(uffd);
		return 1;
	}
	err = uffdwp_holder_adopt(pid, pid, uffd, pm);
	close(uffd);
	close(pm);
	if (err) {
		fprintf(stderr, "uffdwp: adopt: %s\n", uffdwp_strerror(-err));
		return 1;
	}
	printf("holder %d adopted a userfaultfd of %d\n", holder, pid);
	return 0;
}

/* Apply one line of debug_rangeset() to @rs; 0, or -1 on a bad line. */
static int rangeset_line(struct uffdwp_rangeset *rs, char *line)
{
	struct uffdwp_rangeset src = UFFDWP_RANGESET_INIT;
	char *op = strtok(line, " \n"), *a, *b;
	int err = 0;
	size_t i;

	if (!op)
		return 0;
	if (!strcmp(op, "print")) {
		for (i = 0; i < rs->nr; i++)
			printf("%llu %llu\n", (unsigned long long)rs->r[i].start,
			       (unsigned long long)rs->r[i].end);
		printf(".\n");
		return fflush(stdout) ? -1 : 0;
	}
	while (!err && (a = strtok(NULL, " \n"))) {
		uint64_t s, e;

		b = strtok(NULL, " \n");
		if (!b || cli_num__u64(a, 0, 0, UINT64_MAX, &s) ||
		    cli_num__u64(b, 0, 0, UINT64_MAX, &e))
			err = -EINVAL;
		else if (!strcmp(op, "add"))
			err = uffdwp_rangeset__add(rs, s, e);
		else if (!strcmp(op, "remove"))
			err = uffdwp_rangeset__remove(rs, s, e);
		else if (!strcmp(op, "set"))
			err = uffdwp_rangeset__add(&src, s, e);
		else
			err = -EINVAL;
	}
	if (!err && !strcmp(op, "set"))
		err = uffdwp_rangeset__add_set(rs, &src);
	uffdwp_rangeset__fini(&src);
	return err ? -1 : 0;
}

static int debug_rangeset(void)
{
	struct uffdwp_rangeset rs = UFFDWP_RANGESET_INIT;
	char line[65536];
	int ret = 0;

	while (!ret && fgets(line, sizeof(line), stdin))
		if (rangeset_line(&rs, line)) {
			fprintf(stderr, "uffdwp: __debug rangeset: bad line\n");
			ret = 1;
		}
	uffdwp_rangeset__fini(&rs);
	return ret;
}

int cmd_debug(int argc, char **argv)
{
	int i = 2, count = 1, repeat = 1, *opt;
	pid_t pid;

	if (argc < 2) {
		debug_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "probe"))
		return debug_probe();
	if (!strcmp(argv[1], "forkwatch"))
		return debug_forkwatch();
	if (!strcmp(argv[1], "rangeset"))
		return debug_rangeset();
	if (!strcmp(argv[1], "img-write"))
		return debug_img_write(argc - 1, argv + 1);

	while (i + 1 < argc && (!strcmp(argv[i], "-n") || !strcmp(argv[i], "-r"))) {
		opt = argv[i][1] == 'n' ? &count : &repeat;
		*opt = parse_count(argv[i + 1]);
		if (*opt < 0)
			return 2;
		i += 2;
	}
	if (i >= argc) {
		debug_usage(stderr);
		return 2;
	}
	pid = cli_parse_pid(argv[i]);
	if (pid < 0)
		return 2;

	if (!strcmp(argv[1], "adopt-track") && i + 1 == argc)
		return debug_adopt_track(pid);
	if (!strcmp(argv[1], "inject-uffd") && i + 1 == argc)
		return debug_inject_uffd(pid, count);
	if (!strcmp(argv[1], "remote-syscall") && i + 1 < argc)
		return debug_remote_syscall(pid, count, repeat, argc - i - 1, argv + i + 1);
	debug_usage(stderr);
	return 2;
}
