// SPDX-License-Identifier: GPL-2.0
/*
 * The tracker benchmark behind `make bench` (run by scripts/bench-track).
 *
 * For each size and page kind it forks a target that maps one anonymous
 * region (4 KiB pages with MADV_NOHUGEPAGE, or THP with MADV_HUGEPAGE,
 * 2 MiB aligned), fills it, and then writes on command over a pipe. This
 * process tracks the target with the core library and measures:
 *  - attach: uffdwp_tracker__new() (inject, register, first protect);
 *  - scan + commit with 0 %, 1 % and 10 % of the pages written at random
 *    since the previous scan, median of --runs;
 *  - one pread() of the region's /proc/PID/pagemap entries, what a
 *    soft-dirty tool pays to learn the same thing;
 *  - what a scan with nothing written is made of (maps, the
 *    not-WPALLOWED walk, a read-only walk for written pages), to tell the
 *    library's own work from the kernel's;
 *  - the first write to a protected page, timed inside the target, against
 *    the same write before tracking began;
 *  - the tracker's memory and, through `uffdwp track start`, the holder's RSS.
 * Prints a table with the targets of issue 2 and writes everything as JSON.
 * Exits 0 when it ran, whatever the verdicts; 1 when it could not run.
 *
 * usage: bench-track-tool [--out FILE] [--sizes 1G,4G] [--kinds 4k,thp]
 *                         [--runs N] [--fault-pages N] [--quick] [--uffdwp PATH]
 */
#define LOG_PREFIX "bench-track: "
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "uapi/uffdwp-uapi.h"
#include "track/holder.h"
#include "base/log.h"
#include "base/pagemap.h"
#include "track/probe.h"
#include "base/procfs.h"
#include "track/tracker.h"

#define PAGE_SZ	     4096ULL
#define HPAGE_SZ     (2ULL << 20)
#define GIB	     (1ULL << 30)
#define MAX_CONFIGS  16
#define MAX_RUNS     31
#define MAX_ATTACH   5
#define CHILD_WAIT_S 300 /* filling 4 GiB takes about a second; a hang is a bug */
#define CLI_WAIT_S   60

enum pct { P0, P1, P10, NR_PCT };
static const unsigned int pct_bp[NR_PCT] = {0, 100, 1000}; /* basis points of the pages */
static const char *const pct_name[NR_PCT] = {"0", "1", "10"};

enum child_op {
	OP_WRITE_RANDOM = 1, /* arg: basis points of the pages, distinct, in random order */
	OP_WRITE_SEQ,	     /* arg: pages from the start, one byte each; answer: ns taken */
	OP_EXIT,
};

struct child_cmd {
	uint32_t op;
	uint32_t arg;
	uint64_t seed;
};

struct child {
	pid_t pid;
	int cmd_fd;
	int ans_fd;
	uint64_t addr;
	uint64_t size;
};

struct breakdown {
	double maps_ms;	      /* uffdwp_maps__read() */
	double wpallowed_ms;  /* PAGEMAP_SCAN for what is not WPALLOWED, over the region */
	double written_ro_ms; /* PAGEMAP_SCAN for PAGE_IS_WRITTEN, no re-protect */
};

struct result {
	char name[32];
	uint64_t size;
	bool thp;
	uint64_t huge_start, huge_attached, huge_end; /* AnonHugePages of the target */
	double probe_ms, attach_ms, stop_ms;	      /* stop: all protected, nothing written */
	double attach_runs[MAX_ATTACH];
	unsigned int nr_attach;
	double scan_ms[NR_PCT];
	double scan_runs[NR_PCT][MAX_RUNS];
	uint64_t written_pages[NR_PCT]; /* what the target wrote each run */
	uint64_t reported_min[NR_PCT];	/* fewest region pages a scan reported dirty */
	uint64_t reported_max[NR_PCT];	/* most */
	double pagemap_ms;
	struct breakdown bd;
	double write_untracked_ns, write_first_ns, write_rescan_ns;
	uint64_t fault_pages;
	uint64_t mem_attach, mem_committed_max, mem_pending_peak;
	uint64_t tracked_bytes;
	uint64_t holder_rss, holder_rss_anon, holder_rss_file, holder_tracker_mem;
};

struct opts {
	const char *out;
	const char *uffdwp;
	uint64_t sizes[MAX_CONFIGS];
	size_t nr_sizes;
	bool kind_4k, kind_thp;
	unsigned int runs;
	uint64_t fault_pages;
	bool quick;
};

/* For the signal handler: what to kill if we are interrupted. */
static volatile pid_t g_child_pid = -1;
static volatile pid_t g_holder_pid = -1;

static void on_signal(int sig)
{
	if (g_child_pid > 0)
		kill(g_child_pid, SIGKILL);
	if (g_holder_pid > 0)
		kill(g_holder_pid, SIGTERM);
	_exit(128 + sig);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, size_t n)
{
	double s[MAX_RUNS];

	if (!n)
		return 0;
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- the target ---------------------------------------------------------- */

/*
 * A bijection of [0, mask], mask = 2^bits - 1: multiplying by an odd number
 * and adding modulo 2^bits, and x ^= x >> s (s >= 1), can each be undone.
 */
static uint64_t shuffle_step(uint64_t x, uint64_t mask, unsigned int shift, uint64_t seed)
{
	x = (x * 0x9e3779b97f4a7c15ULL + seed) & mask;
	x ^= x >> shift;
	x = (x * (seed << 1 | 1)) & mask;
	x ^= x >> shift;
	return x;
}

/*
 * The @i-th page of a random permutation of @n pages, without memory of our
 * own to write (that would add to what the scan finds): walk the cycle of a
 * bijection of the next power of two until it lands below @n.
 */
static uint64_t shuffled(uint64_t i, uint64_t n, uint64_t seed)
{
	unsigned int bits = 64 - __builtin_clzll(n - 1);
	uint64_t mask = bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
	unsigned int shift = bits / 2 ? bits / 2 : 1;

	do
		i = shuffle_step(i, mask, shift, seed);
	while (i >= n);
	return i;
}

static bool child_io(int fd, void *buf, size_t len, bool rd)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = rd ? read(fd, (char *)buf + done, len - done)
			       : write(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += n;
	}
	return true;
}

static void __attribute__((noreturn))
child_main(int cmd_fd, int ans_fd, uint64_t size, bool thp, pid_t parent)
{
	uint64_t npages = size / PAGE_SZ, hdr[2], ans, i, t0;
	volatile uint8_t *p;
	struct child_cmd c;
	uintptr_t raw, a;

	/* Never outlive the benchmark, whatever way it ends. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(1);
	raw = (uintptr_t)mmap(NULL, size + HPAGE_SZ, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((void *)raw == MAP_FAILED) {
		pr_perror("target: mmap of %" PRIu64 " bytes", size);
		_exit(1);
	}
	a = (raw + HPAGE_SZ - 1) & ~(HPAGE_SZ - 1);
	if (a > raw)
		munmap((void *)raw, a - raw);
	if (raw + HPAGE_SZ > a)
		munmap((void *)(a + size), raw + HPAGE_SZ - a);
	if (madvise((void *)a, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
		pr_perror("target: madvise(%s)", thp ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE");
		_exit(1);
	}
	memset((void *)a, 0x5a, size);
	p = (volatile uint8_t *)a;

	hdr[0] = a;
	hdr[1] = size;
	if (!child_io(ans_fd, hdr, sizeof(hdr), false))
		_exit(1);
	while (child_io(cmd_fd, &c, sizeof(c), true)) {
		switch (c.op) {
		case OP_WRITE_RANDOM:
			ans = npages * c.arg / 10000;
			for (i = 0; i < ans; i++)
				p[shuffled(i, npages, c.seed) * PAGE_SZ + (c.seed & 0xff8)]++;
			break;
		case OP_WRITE_SEQ:
			ans = c.arg < npages ? c.arg : npages;
			t0 = now_ns();
			for (i = 0; i < ans; i++)
				p[i * PAGE_SZ]++;
			ans = now_ns() - t0;
			break;
		default:
			_exit(0);
		}
		if (!child_io(ans_fd, &ans, sizeof(ans), false))
			_exit(1);
	}
	_exit(0);
}

static int wait_readable(int fd, int timeout_s)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int n;

	do
		n = poll(&pfd, 1, timeout_s * 1000);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

static void child_kill(struct child *c)
{
	struct child_cmd cmd = {.op = OP_EXIT};

	if (c->pid <= 0)
		return;
	/* Ask first, then make sure: it must be gone before the next one starts. */
	if (c->cmd_fd >= 0 && write(c->cmd_fd, &cmd, sizeof(cmd)) < 0)
		cmd.op = 0;
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	g_child_pid = -1;
	c->pid = -1;
	if (c->cmd_fd >= 0)
		close(c->cmd_fd);
	if (c->ans_fd >= 0)
		close(c->ans_fd);
	c->cmd_fd = c->ans_fd = -1;
}

static int child_start(struct child *c, uint64_t size, bool thp)
{
	int to[2], from[2], err;
	pid_t parent = getpid();
	uint64_t hdr[2];

	c->pid = -1;
	c->cmd_fd = c->ans_fd = -1;
	if (pipe2(to, O_CLOEXEC))
		return -errno;
	if (pipe2(from, O_CLOEXEC)) {
		err = -errno;
		close(to[0]);
		close(to[1]);
		return err;
	}
	c->pid = fork();
	if (c->pid < 0) {
		err = -errno;
		pr_perror("fork");
		close(to[0]);
		close(to[1]);
		close(from[0]);
		close(from[1]);
		return err;
	}
	if (!c->pid) {
		close(to[1]);
		close(from[0]);
		child_main(to[0], from[1], size, thp, parent);
	}
	g_child_pid = c->pid;
	close(to[0]);
	close(from[1]);
	c->cmd_fd = to[1];
	c->ans_fd = from[0];

	err = wait_readable(c->ans_fd, CHILD_WAIT_S);
	if (!err && !child_io(c->ans_fd, hdr, sizeof(hdr), true))
		err = -EPIPE;
	if (err) {
		pr_err("the target did not start: %s\n", uffdwp_strerror(-err));
		child_kill(c);
		return err;
	}
	c->addr = hdr[0];
	c->size = hdr[1];
	return 0;
}

/* Run one command in the target; *@ans gets its answer. */
static int child_cmd(struct child *c, enum child_op op, uint32_t arg, uint64_t seed, uint64_t *ans)
{
	struct child_cmd cmd = {.op = op, .arg = arg, .seed = seed};
	int err = 0;

	if (!child_io(c->cmd_fd, &cmd, sizeof(cmd), false))
		err = -EPIPE;
	if (!err)
		err = wait_readable(c->ans_fd, CHILD_WAIT_S);
	if (!err && !child_io(c->ans_fd, ans, sizeof(*ans), true))
		err = -EPIPE;
	if (err)
		pr_err("target %d did not answer: %s\n", c->pid, uffdwp_strerror(-err));
	return err;
}

/* ---- what /proc says ------------------------------------------------------ */

/*
 * Field @key (in kB) of a /proc file such as status or smaps_rollup of
 * @pid, or of /proc itself (meminfo) for pid 0, in bytes; 0 if not found.
 */
static uint64_t proc_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	unsigned long long kb = 0;
	FILE *f;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	else
		snprintf(path, sizeof(path), "/proc/%s", file);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			kb = strtoull(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb * 1024;
}

static int count_region(void *arg, uint64_t start, uint64_t end, uint64_t categories)
{
	++*(long *)arg;
	return 0;
}

/*
 * A read-only PAGEMAP_SCAN of [start, end) for pages in @mask, walked to the
 * end. Returns the number of regions found, or -errno.
 */
static long pm_scan_ro(int fd, uint64_t start, uint64_t end, uint64_t mask, uint64_t inverted)
{
	long total = 0;
	struct uffdwp_pm_walk w = {
	    .category_mask = mask,
	    .category_inverted = inverted,
	    .return_mask = mask,
	    .region = count_region,
	    .arg = &total,
	};
	int err = uffdwp_pm_walk(fd, start, end, &w, NULL);

	return err ? err : total;
}

/* ---- tracking ------------------------------------------------------------- */

/* Pages of [start, end) in @rs. */
static uint64_t pages_in(const struct uffdwp_rangeset *rs, uint64_t start, uint64_t end)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < rs->nr; i++) {
		uint64_t s = rs->r[i].start > start ? rs->r[i].start : start;
		uint64_t e = rs->r[i].end < end ? rs->r[i].end : end;

		if (s < e)
			sum += e - s;
	}
	return sum / PAGE_SZ;
}

/*
 * One scan and its commit, timed together (the report is read and freed
 * outside the clock). *@region_pages: pages of the target's region found
 * dirty.
 */
static int scan_commit(struct uffdwp_tracker *t, const struct child *c, struct result *r,
		       double *ms, uint64_t *region_pages)
{
	struct uffdwp_report *rep;
	uint64_t t0, scan_ns, mem;
	size_t i;
	int err;

	t0 = now_ns();
	err = uffdwp_tracker__scan(t, &rep);
	scan_ns = now_ns() - t0;
	if (err) {
		pr_err("scan of %d failed: %s\n", c->pid, uffdwp_strerror(-err));
		return err;
	}
	mem = uffdwp_tracker__mem_bytes(t);
	if (mem > r->mem_pending_peak)
		r->mem_pending_peak = mem;
	t0 = now_ns();
	err = uffdwp_tracker__commit(t, rep->gen);
	*ms = (scan_ns + now_ns() - t0) / 1e6;
	if (err) {
		pr_err("commit of scan %" PRIu64 " failed: %s\n", rep->gen, uffdwp_strerror(-err));
		uffdwp_report__free(rep);
		return err;
	}
	mem = uffdwp_tracker__mem_bytes(t);
	if (mem > r->mem_committed_max)
		r->mem_committed_max = mem;
	*region_pages = 0;
	r->tracked_bytes = 0;
	for (i = 0; i < rep->nr_tasks; i++) {
		if (rep->tasks[i].flags & (UFFDWP_TASK_LOST | UFFDWP_TASK_EXITED)) {
			pr_err("tracking of %d lost during the benchmark\n", rep->tasks[i].pid);
			uffdwp_report__free(rep);
			return -ESRCH;
		}
		*region_pages += pages_in(&rep->tasks[i].dirty, c->addr, c->addr + c->size);
		r->tracked_bytes += rep->tasks[i].tracked_bytes;
	}
	uffdwp_report__free(rep);
	return 0;
}

/* @runs scans, each after the target wrote @p of its pages. */
static int bench_scans(struct uffdwp_tracker *t, struct child *c, struct result *r, enum pct p,
		       unsigned int runs, uint64_t *seed)
{
	uint64_t written = 0, found;
	unsigned int i;
	int err;

	r->reported_min[p] = UINT64_MAX;
	for (i = 0; i < runs; i++) {
		if (pct_bp[p]) {
			err = child_cmd(c, OP_WRITE_RANDOM, pct_bp[p], ++*seed, &written);
			if (err)
				return err;
		}
		err = scan_commit(t, c, r, &r->scan_runs[p][i], &found);
		if (err)
			return err;
		if (found < r->reported_min[p])
			r->reported_min[p] = found;
		if (found > r->reported_max[p])
			r->reported_max[p] = found;
	}
	r->written_pages[p] = written;
	r->scan_ms[p] = median(r->scan_runs[p], runs);
	return 0;
}

/* The pieces of a scan with nothing written, measured one by one. */
static int bench_breakdown(const struct child *c, struct result *r, unsigned int runs)
{
	double maps[MAX_RUNS], wpa[MAX_RUNS], wr[MAX_RUNS];
	struct uffdwp_maps m = {0};
	uint64_t end = c->addr + c->size, t0;
	char path[64];
	unsigned int i;
	int fd, err = 0;
	long n;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", c->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		pr_perror("open %s", path);
		return err;
	}
	for (i = 0; i < runs && !err; i++) {
		t0 = now_ns();
		err = uffdwp_maps__read(c->pid, &m);
		maps[i] = ms_since(t0);
		uffdwp_maps__fini(&m);
		if (err)
			break;
		/* As the tracker asks: what is not WPALLOWED (the kernel skips the rest). */
		t0 = now_ns();
		n = pm_scan_ro(fd, c->addr, end, PAGE_IS_WPALLOWED, PAGE_IS_WPALLOWED);
		wpa[i] = ms_since(t0);
		if (n != 0) {
			/* The whole region is registered: nothing, else something is off. */
			pr_err("not-WPALLOWED scan of %d found %ld regions, expected 0\n", c->pid,
			       n);
			err = n < 0 ? (int)n : -EIO;
			break;
		}
		t0 = now_ns();
		n = pm_scan_ro(fd, c->addr, end, PAGE_IS_WRITTEN, 0);
		wr[i] = ms_since(t0);
		if (n < 0) {
			err = (int)n;
			pr_err("read-only scan of %d failed: %s\n", c->pid, uffdwp_strerror(-err));
		}
	}
	close(fd);
	if (err)
		return err;
	r->bd.maps_ms = median(maps, runs);
	r->bd.wpallowed_ms = median(wpa, runs);
	r->bd.written_ro_ms = median(wr, runs);
	return 0;
}

/* What a soft-dirty tool pays: the region's pagemap entries, one pread. */
static int bench_pagemap(const struct child *c, struct result *r, unsigned int runs)
{
	size_t len = c->size / PAGE_SZ * 8;
	double v[MAX_RUNS];
	char path[64];
	unsigned int i;
	uint64_t t0;
	void *buf;
	ssize_t n;
	int fd, err = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", c->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		pr_perror("open %s", path);
		return err;
	}
	buf = malloc(len);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0, len); /* our own page faults are not the cost measured */
	for (i = 0; i < runs; i++) {
		t0 = now_ns();
		n = pread(fd, buf, len, c->addr / PAGE_SZ * 8);
		v[i] = ms_since(t0);
		if (n != (ssize_t)len) {
			err = n < 0 ? -errno : -EIO;
			pr_err("reading %s: %zd of %zu bytes\n", path, n, len);
			break;
		}
	}
	free(buf);
	close(fd);
	if (!err)
		r->pagemap_ms = median(v, runs);
	return err;
}

/* ns per page of @c writing one byte to each of its first @pages pages. */
static int write_cost(struct child *c, uint64_t pages, double *ns)
{
	uint64_t took;
	int err;

	err = child_cmd(c, OP_WRITE_SEQ, (uint32_t)pages, 0, &took);
	if (!err)
		*ns = (double)took / pages;
	return err;
}

/* ---- the holder ----------------------------------------------------------- */

static int wait_child_timeout(pid_t pid, int timeout_s, int *status)
{
	uint64_t end = now_ns() + timeout_s * 1000000000ULL;
	pid_t w;

	for (;;) {
		w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		usleep(5000);
	}
}

/* Let a holder we stopped finish exiting, so the next target starts clean. */
static void holder_reap(pid_t holder)
{
	int i;

	for (i = 0; i < 400 && kill(holder, 0) == 0; i++)
		usleep(5000);
	if (!kill(holder, 0)) {
		pr_warn("holder %d did not exit after stop: killing it\n", holder);
		kill(holder, SIGKILL);
	}
	g_holder_pid = -1;
}

/*
 * Start a holder for the target with `uffdwp track start`, as a user would
 * (a small fresh process, not a fork of this one), have it scan once with
 * 1 % written, and read its RSS.
 */
static int bench_holder(const char *uffdwp, struct child *c, struct result *r, uint64_t *seed)
{
	struct uffdwp_holder_status st;
	struct uffdwp_stop_stats stop;
	struct uffdwp_report *rep = NULL;
	char pid_s[16];
	uint64_t written;
	int status, err;
	pid_t cli;

	snprintf(pid_s, sizeof(pid_s), "%d", c->pid);
	cli = fork();
	if (cli < 0) {
		err = -errno;
		pr_perror("fork");
		return err;
	}
	if (!cli) {
		int nul = open("/dev/null", O_WRONLY);

		if (nul >= 0)
			dup2(nul, STDOUT_FILENO);
		/* The holder outlives the command; it exits when the target does. */
		execl(uffdwp, "uffdwp", "track", "start", "-t", pid_s, "--idle-timeout", "300",
		      (char *)NULL);
		pr_perror("exec %s", uffdwp);
		_exit(127);
	}
	err = wait_child_timeout(cli, CLI_WAIT_S, &status);
	if (!err && (!WIFEXITED(status) || WEXITSTATUS(status))) {
		pr_err("%s track start -t %d failed (status %#x)\n", uffdwp, c->pid, status);
		err = -EIO;
	}
	if (err)
		return err;

	err = uffdwp_holder_status(c->pid, &st);
	if (err) {
		pr_err("status of the holder for %d: %s\n", c->pid, uffdwp_strerror(-err));
		return err;
	}
	g_holder_pid = st.holder_pid;
	r->holder_rss = st.holder_rss_bytes;

	err = child_cmd(c, OP_WRITE_RANDOM, pct_bp[P1], ++*seed, &written);
	if (!err) {
		err = uffdwp_holder_scan(c->pid, &rep);
		if (err)
			pr_err("scan through the holder for %d: %s\n", c->pid,
			       uffdwp_strerror(-err));
	}
	if (!err) {
		err = uffdwp_holder_commit(c->pid, rep->gen);
		uffdwp_report__free(rep);
	}
	if (!err)
		err = uffdwp_holder_status(c->pid, &st);
	if (!err) {
		if (st.holder_rss_bytes > r->holder_rss)
			r->holder_rss = st.holder_rss_bytes;
		r->holder_tracker_mem = st.tracker_mem_bytes;
		r->holder_rss_anon = proc_kb(st.holder_pid, "status", "RssAnon");
		r->holder_rss_file = proc_kb(st.holder_pid, "status", "RssFile");
	}
	if (uffdwp_holder_stop(c->pid, 0, &stop))
		pr_warn("could not stop the holder for %d\n", c->pid);
	holder_reap(st.holder_pid);
	return err;
}

/* ---- one configuration ---------------------------------------------------- */

static int bench_one(const struct opts *o, struct result *r, uint64_t *seed)
{
	struct uffdwp_tracker_opts to = {0};
	struct uffdwp_tracker *t = NULL;
	struct child c;
	uint64_t pages, t0, found;
	double ns[MAX_RUNS];
	unsigned int i, nw = o->quick ? 2 : 3;
	int err;

	err = child_start(&c, r->size, r->thp);
	if (err)
		return err;
	pages = c.size / PAGE_SZ;
	r->fault_pages = o->fault_pages < pages ? o->fault_pages : pages;
	r->huge_start = proc_kb(c.pid, "smaps_rollup", "AnonHugePages");

	/* Untracked writes: the same pages, before anything is protected. */
	for (i = 0; i < nw; i++) {
		err = write_cost(&c, r->fault_pages, &ns[i]);
		if (err)
			goto out;
	}
	r->write_untracked_ns = median(ns, nw);

	t0 = now_ns();
	err = uffdwp_probe_tracker(); /* cached after the first call: keep it out of attach */
	r->probe_ms = ms_since(t0);
	if (err) {
		pr_err("the kernel cannot track: %s\n", uffdwp_strerror(-err));
		goto out;
	}
	/* Attach a few times: stopping puts the target back as it was. */
	to.pid = c.pid;
	r->nr_attach = o->runs < MAX_ATTACH ? o->runs : MAX_ATTACH;
	for (i = 0; i < r->nr_attach; i++) {
		t0 = now_ns();
		err = uffdwp_tracker__new(&to, &t);
		r->attach_runs[i] = ms_since(t0);
		if (err) {
			pr_err("cannot attach to %d: %s\n", c.pid, uffdwp_strerror(-err));
			goto out;
		}
		if (i + 1 == r->nr_attach)
			break;
		t0 = now_ns();
		uffdwp_tracker__stop(t, false, NULL);
		ns[i] = ms_since(t0);
		t = NULL;
	}
	r->attach_ms = median(r->attach_runs, r->nr_attach);
	r->stop_ms = median(ns, r->nr_attach - 1);
	r->mem_attach = uffdwp_tracker__mem_bytes(t);
	r->huge_attached = proc_kb(c.pid, "smaps_rollup", "AnonHugePages");

	err = bench_scans(t, &c, r, P0, o->runs, seed);
	if (!err)
		err = bench_breakdown(&c, r, o->runs);
	if (!err)
		err = bench_pagemap(&c, r, o->runs);
	if (err)
		goto out;

	/*
	 * First writes: round 1 on pages protected at attach (for THP this
	 * includes splitting the PMDs), later rounds on pages a scan protected
	 * again.
	 */
	err = write_cost(&c, r->fault_pages, &r->write_first_ns);
	for (i = 0; !err && i < nw; i++) {
		double ms;

		err = scan_commit(t, &c, r, &ms, &found);
		if (!err && i + 1 < nw)
			err = write_cost(&c, r->fault_pages, &ns[i]);
	}
	if (err)
		goto out;
	r->write_rescan_ns = nw > 1 ? median(ns, nw - 1) : 0;

	err = bench_scans(t, &c, r, P1, o->runs, seed);
	if (!err)
		err = bench_scans(t, &c, r, P10, o->runs, seed);
	if (err)
		goto out;
	r->huge_end = proc_kb(c.pid, "smaps_rollup", "AnonHugePages");

	t0 = now_ns();
	uffdwp_tracker__stop(t, false, NULL);
	if (r->nr_attach == 1)
		r->stop_ms = ms_since(t0);
	t = NULL;

	if (o->uffdwp)
		err = bench_holder(o->uffdwp, &c, r, seed);
out:
	uffdwp_tracker__stop(t, false, NULL);
	child_kill(&c);
	return err;
}

/* ---- output --------------------------------------------------------------- */

struct machine {
	char kernel[128];
	char cpu[128];
	char date[32];
	char thp[32];
	long cpus;
	uint64_t mem_total;
};

static void machine_read(struct machine *m)
{
	char line[256], *s, *e;
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;

	memset(m, 0, sizeof(*m));
	if (!uname(&u))
		snprintf(m->kernel, sizeof(m->kernel), "%s", u.release);
	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	f = fopen("/proc/cpuinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) || !(s = strchr(line, ':')))
			continue;
		for (s++; *s == ' ' || *s == '\t'; s++)
			;
		s[strcspn(s, "\n")] = '\0';
		snprintf(m->cpu, sizeof(m->cpu), "%s", s);
		break;
	}
	if (f)
		fclose(f);
	snprintf(m->thp, sizeof(m->thp), "absent");
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f && fgets(line, sizeof(line), f) && (s = strchr(line, '[')) && (e = strchr(s, ']'))) {
		*e = '\0';
		snprintf(m->thp, sizeof(m->thp), "%s", s + 1);
	}
	if (f)
		fclose(f);
	m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
	m->mem_total = (uint64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
	gmtime_r(&now, &tm);
	strftime(m->date, sizeof(m->date), "%FT%TZ", &tm);
}

static double gib(uint64_t bytes)
{
	return (double)bytes / GIB;
}

enum target_id { T_SCAN0, T_SCAN0_VS_PAGEMAP, T_ATTACH, T_MEM, T_HOLDER, NR_TARGETS };

static const struct {
	const char *key;
	const char *text;
	double limit;
	bool at_least;
} targets[NR_TARGETS] = {
    [T_SCAN0] = {"scan_0pct_ms_per_gib", "<= 1 ms/GiB", 1.0, false},
    [T_SCAN0_VS_PAGEMAP] = {"pagemap_over_scan_0pct", ">= 10x", 10.0, true},
    [T_ATTACH] = {"attach_ms_1gib", "<= 25 ms", 25.0, false},
    [T_MEM] = {"tracker_kib_per_gib", "<= 64 KiB/GiB", 64.0, false},
    [T_HOLDER] = {"holder_rss_mib", "<= 4 MiB", 4.0, false},
};

/* The value @r has for target @id; false when the target does not apply to it. */
static bool target_value(const struct result *r, enum target_id id, double *v)
{
	switch (id) {
	case T_SCAN0:
		*v = r->scan_ms[P0] / gib(r->size);
		return !r->thp; /* the target is about 4 KiB pages */
	case T_SCAN0_VS_PAGEMAP:
		*v = r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0;
		return !r->thp;
	case T_ATTACH:
		*v = r->attach_ms;
		return r->size == GIB;
	case T_MEM:
		*v = r->mem_committed_max / 1024.0 / gib(r->tracked_bytes);
		return true;
	case T_HOLDER:
		*v = r->holder_rss / 1048576.0;
		return r->holder_rss != 0;
	default:
		return false;
	}
}

static bool target_pass(enum target_id id, double v)
{
	return targets[id].at_least ? v >= targets[id].limit : v <= targets[id].limit;
}

static void json_pct(FILE *f, const char *key, const double *v, const char *fmt_end)
{
	int p;

	fprintf(f, "\"%s\": {", key);
	for (p = 0; p < NR_PCT; p++)
		fprintf(f, "%s\"%s\": %.4f", p ? ", " : "", pct_name[p], v[p]);
	fprintf(f, "}%s", fmt_end);
}

static void json_pct_u64(FILE *f, const char *key, const uint64_t *v, const char *fmt_end)
{
	int p;

	fprintf(f, "\"%s\": {", key);
	for (p = 0; p < NR_PCT; p++)
		fprintf(f, "%s\"%s\": %" PRIu64, p ? ", " : "", pct_name[p], v[p]);
	fprintf(f, "}%s", fmt_end);
}

static void json_result(FILE *f, const struct opts *o, const struct result *r)
{
	double per_gib[NR_PCT];
	unsigned int i;
	int p;

	for (p = 0; p < NR_PCT; p++)
		per_gib[p] = r->scan_ms[p] / gib(r->size);
	fprintf(f, "    {\"name\": \"%s\", \"size_bytes\": %" PRIu64 ", \"kind\": \"%s\",\n",
		r->name, r->size, r->thp ? "thp" : "4k");
	fprintf(f,
		"     \"anon_huge_bytes\": {\"start\": %" PRIu64 ", \"attached\": %" PRIu64
		", \"end\": %" PRIu64 "},\n",
		r->huge_start, r->huge_attached, r->huge_end);
	fprintf(f, "     \"probe_ms\": %.4f, \"attach_ms\": %.4f, \"stop_ms\": %.4f,\n",
		r->probe_ms, r->attach_ms, r->stop_ms);
	fprintf(f, "     \"attach_runs_ms\": [");
	for (i = 0; i < r->nr_attach; i++)
		fprintf(f, "%s%.4f", i ? ", " : "", r->attach_runs[i]);
	fprintf(f, "],\n");
	fprintf(f, "     ");
	json_pct(f, "scan_ms", r->scan_ms, ",\n     ");
	json_pct(f, "scan_ms_per_gib", per_gib, ",\n     ");
	fprintf(f, "\"scan_runs_ms\": {");
	for (p = 0; p < NR_PCT; p++) {
		fprintf(f, "%s\"%s\": [", p ? ", " : "", pct_name[p]);
		for (i = 0; i < o->runs; i++)
			fprintf(f, "%s%.4f", i ? ", " : "", r->scan_runs[p][i]);
		fprintf(f, "]");
	}
	fprintf(f, "},\n     ");
	json_pct_u64(f, "written_pages", r->written_pages, ",\n     ");
	json_pct_u64(f, "reported_pages_min", r->reported_min, ",\n     ");
	json_pct_u64(f, "reported_pages_max", r->reported_max, ",\n");
	fprintf(f, "     \"pagemap_read_ms\": %.4f, \"pagemap_over_scan_0pct\": %.2f,\n",
		r->pagemap_ms, r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0);
	fprintf(f,
		"     \"scan_0pct_breakdown_ms\": {\"maps\": %.4f, "
		"\"pagemap_scan_not_wpallowed\": %.4f, \"pagemap_scan_written_readonly\": %.4f},\n",
		r->bd.maps_ms, r->bd.wpallowed_ms, r->bd.written_ro_ms);
	fprintf(f,
		"     \"write_ns_per_page\": {\"untracked\": %.2f, \"first_after_protect\": %.2f, "
		"\"after_scan_reprotect\": %.2f}, \"write_pages\": %" PRIu64 ",\n",
		r->write_untracked_ns, r->write_first_ns, r->write_rescan_ns, r->fault_pages);
	fprintf(f,
		"     \"tracker_mem_bytes\": {\"after_attach\": %" PRIu64
		", \"committed_max\": %" PRIu64 ", \"pending_peak\": %" PRIu64 "},\n",
		r->mem_attach, r->mem_committed_max, r->mem_pending_peak);
	fprintf(f, "     \"tracked_bytes\": %" PRIu64 ", \"tracker_kib_per_gib\": %.3f,\n",
		r->tracked_bytes, r->mem_committed_max / 1024.0 / gib(r->tracked_bytes));
	fprintf(f,
		"     \"holder\": {\"rss_bytes\": %" PRIu64 ", \"rss_anon_bytes\": %" PRIu64
		", \"rss_file_bytes\": %" PRIu64 ", \"tracker_mem_bytes\": %" PRIu64 "}}",
		r->holder_rss, r->holder_rss_anon, r->holder_rss_file, r->holder_tracker_mem);
}

static int json_write(const char *path, const struct opts *o, const struct machine *m,
		      const struct result *res, size_t nr)
{
	bool first = true;
	size_t i;
	int id, err = 0;
	FILE *f;

	f = fopen(path, "we");
	if (!f) {
		err = -errno;
		pr_perror("cannot write %s", path);
		return err;
	}
	fprintf(f, "{\n  \"bench\": \"track\",\n  \"machine\": {\"kernel\": ");
	uffdwp_json_str(f, m->kernel);
	fprintf(f, ", \"cpu\": ");
	uffdwp_json_str(f, m->cpu);
	fprintf(f, ", \"cpus\": %ld, \"mem_total_bytes\": %" PRIu64 ", \"thp\": ", m->cpus,
		m->mem_total);
	uffdwp_json_str(f, m->thp);
	fprintf(f, ", \"date\": \"%s\"},\n", m->date);
	fprintf(f, "  \"params\": {\"runs\": %u, \"write_pages\": %" PRIu64 ", \"quick\": %s},\n",
		o->runs, o->fault_pages, o->quick ? "true" : "false");
	fprintf(f, "  \"results\": [\n");
	for (i = 0; i < nr; i++) {
		json_result(f, o, &res[i]);
		fprintf(f, "%s\n", i + 1 < nr ? "," : "");
	}
	fprintf(f, "  ],\n  \"targets\": [");
	for (id = 0; id < NR_TARGETS; id++) {
		for (i = 0; i < nr; i++) {
			double v;

			if (!target_value(&res[i], id, &v))
				continue;
			fprintf(f,
				"%s\n    {\"name\": \"%s\", \"target\": \"%s\", \"limit\": %.1f, "
				"\"where\": \"%s\", \"value\": %.4f, \"pass\": %s}",
				first ? "" : ",", targets[id].key, targets[id].text,
				targets[id].limit, res[i].name, v,
				target_pass(id, v) ? "true" : "false");
			first = false;
		}
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f)) {
		err = -errno;
		pr_perror("cannot write %s", path);
	}
	return err;
}

#define LABEL_W 40
#define COL_W	10

/* One row of the table: a value per configuration, then target and verdict. */
static void table_row(const char *label, const struct result *res, size_t nr,
		      double (*get)(const struct result *), int prec, int target)
{
	char cell[32], verdict[96] = "";
	bool any = false, miss = false;
	size_t i;

	printf("%-*s", LABEL_W, label);
	for (i = 0; i < nr; i++) {
		double v = get(&res[i]), tv;
		bool applies = target >= 0 && target_value(&res[i], target, &tv);

		snprintf(cell, sizeof(cell), "%.*f", prec, v);
		if (applies && !target_pass(target, tv)) {
			strcat(cell, "*");
			if (!miss)
				snprintf(verdict, sizeof(verdict), "MISS (%s", res[i].name);
			else if (strlen(verdict) + strlen(res[i].name) + 4 < sizeof(verdict))
				strcat(strcat(verdict, ", "), res[i].name);
			miss = true;
		}
		any |= applies;
		printf("%*s", COL_W, cell);
	}
	if (target >= 0) {
		if (miss)
			strcat(verdict, ")");
		else
			snprintf(verdict, sizeof(verdict), "%s", any ? "PASS" : "n/a here");
		printf("  %-14s %s", targets[target].text, verdict);
	}
	printf("\n");
}

static double get_attach(const struct result *r)
{
	return r->attach_ms;
}

static double get_scan0(const struct result *r)
{
	return r->scan_ms[P0];
}

static double get_scan0_gib(const struct result *r)
{
	return r->scan_ms[P0] / gib(r->size);
}

static double get_scan1(const struct result *r)
{
	return r->scan_ms[P1];
}

static double get_scan10(const struct result *r)
{
	return r->scan_ms[P10];
}

static double get_pagemap(const struct result *r)
{
	return r->pagemap_ms;
}

static double get_ratio(const struct result *r)
{
	return r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0;
}

static double get_bd_maps(const struct result *r)
{
	return r->bd.maps_ms;
}

static double get_bd_wpa(const struct result *r)
{
	return r->bd.wpallowed_ms;
}

static double get_bd_wr(const struct result *r)
{
	return r->bd.written_ro_ms;
}

static double get_w_first(const struct result *r)
{
	return r->write_first_ns;
}

static double get_w_rescan(const struct result *r)
{
	return r->write_rescan_ns;
}

static double get_w_untracked(const struct result *r)
{
	return r->write_untracked_ns;
}

static double get_stop(const struct result *r)
{
	return r->stop_ms;
}

static double get_mem(const struct result *r)
{
	return r->mem_committed_max / 1024.0 / gib(r->tracked_bytes);
}

static double get_mem_pending(const struct result *r)
{
	return r->mem_pending_peak / 1024.0;
}

static double get_holder(const struct result *r)
{
	return r->holder_rss / 1048576.0;
}

static double get_huge(const struct result *r)
{
	return 100.0 * r->huge_attached / r->size;
}

static void table_print(const struct opts *o, const struct machine *m, const struct result *res,
			size_t nr)
{
	size_t i;

	printf("uffdwp tracker benchmark: Linux %s, %s, %ld CPUs, %.0f GiB, THP %s, %s\n",
	       m->kernel, m->cpu, m->cpus, gib(m->mem_total), m->thp, m->date);
	printf("median of %u runs; ms unless said; * = target missed\n\n", o->runs);
	printf("%-*s", LABEL_W, "");
	for (i = 0; i < nr; i++)
		printf("%*s", COL_W, res[i].name);
	printf("  %-14s %s\n", "target", "verdict");
	table_row("huge pages at attach, %", res, nr, get_huge, 0, -1);
	table_row("attach (inject, register, protect)", res, nr, get_attach, 2, T_ATTACH);
	table_row("scan + commit, 0 % written", res, nr, get_scan0, 3, -1);
	table_row("  per GiB", res, nr, get_scan0_gib, 3, T_SCAN0);
	table_row("scan + commit, 1 % written", res, nr, get_scan1, 2, -1);
	table_row("scan + commit, 10 % written", res, nr, get_scan10, 2, -1);
	table_row("read /proc/PID/pagemap (soft-dirty)", res, nr, get_pagemap, 2, -1);
	table_row("  pagemap / scan 0 %, x", res, nr, get_ratio, 1, T_SCAN0_VS_PAGEMAP);
	table_row("scan 0 % parts: read maps", res, nr, get_bd_maps, 3, -1);
	table_row("  PAGEMAP_SCAN not WPALLOWED", res, nr, get_bd_wpa, 3, -1);
	table_row("  PAGEMAP_SCAN WRITTEN (no wp)", res, nr, get_bd_wr, 3, -1);
	table_row("write after attach's protect, ns/page", res, nr, get_w_first, 0, -1);
	table_row("write after a scan's protect, ns/page", res, nr, get_w_rescan, 0, -1);
	table_row("write untracked, ns/page", res, nr, get_w_untracked, 1, -1);
	table_row("stop (drop all protection)", res, nr, get_stop, 2, -1);
	table_row("tracker memory, KiB per GiB", res, nr, get_mem, 2, T_MEM);
	table_row("  peak before commit (10 %), KiB", res, nr, get_mem_pending, 0, -1);
	table_row("holder RSS, MiB", res, nr, get_holder, 2, T_HOLDER);
}

/* ---- main ----------------------------------------------------------------- */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'G':
	case 'g':
		v <<= 30;
		end++;
		break;
	case 'M':
	case 'm':
		v <<= 20;
		end++;
		break;
	case '\0':
		break;
	default:
		return -EINVAL;
	}
	if (*end || !v || v % HPAGE_SZ || v > (64ULL << 30))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"sizes", required_argument, NULL, 's'},
	    {"kinds", required_argument, NULL, 'k'},
	    {"runs", required_argument, NULL, 'r'},
	    {"fault-pages", required_argument, NULL, 'f'},
	    {"quick", no_argument, NULL, 'q'},
	    {"uffdwp", required_argument, NULL, 'u'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static char self_dir[PATH_MAX];
	const char *sizes = "1G,4G", *kinds = "4k,thp";
	bool runs_set = false, fault_set = false;
	char *list, *tok, *save;
	ssize_t n;
	int c;

	memset(o, 0, sizeof(*o));
	o->runs = 7;
	o->fault_pages = 65536;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->out = optarg;
			break;
		case 's':
			sizes = optarg;
			break;
		case 'k':
			kinds = optarg;
			break;
		case 'r':
			o->runs = strtoul(optarg, NULL, 10);
			runs_set = true;
			break;
		case 'f':
			o->fault_pages = strtoull(optarg, NULL, 10);
			fault_set = true;
			break;
		case 'q':
			o->quick = true;
			break;
		case 'u':
			o->uffdwp = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [--out FILE] [--sizes 1G,4G] [--kinds 4k,thp] "
				"[--runs N] [--fault-pages N] [--quick] [--uffdwp PATH]\n",
				argv[0]);
			return -EINVAL;
		}
	}
	if (o->quick && !runs_set)
		o->runs = 3;
	if (o->quick && !fault_set)
		o->fault_pages = 2048;
	if (!o->runs || o->runs > MAX_RUNS || !o->fault_pages || o->fault_pages > UINT32_MAX) {
		pr_err("--runs must be 1..%d and --fault-pages at least 1\n", MAX_RUNS);
		return -EINVAL;
	}
	list = strdupa(sizes);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->nr_sizes == MAX_CONFIGS / 2 || parse_size(tok, &o->sizes[o->nr_sizes])) {
			pr_err("bad size '%s': a multiple of 2M up to 64G, as 64M or 1G\n", tok);
			return -EINVAL;
		}
		o->nr_sizes++;
	}
	list = strdupa(kinds);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcasecmp(tok, "4k")) {
			o->kind_4k = true;
		} else if (!strcasecmp(tok, "thp")) {
			o->kind_thp = true;
		} else {
			pr_err("bad kind '%s': 4k or thp\n", tok);
			return -EINVAL;
		}
	}
	if (!o->nr_sizes || !(o->kind_4k || o->kind_thp)) {
		pr_err("nothing to measure\n");
		return -EINVAL;
	}
	if (!o->uffdwp) {
		/* The uffdwp command sits beside us in the build directory. */
		n = readlink("/proc/self/exe", self_dir, sizeof(self_dir) - sizeof("/uffdwp"));
		if (n <= 0 || !(tok = memrchr(self_dir, '/', n))) {
			pr_err("cannot find the uffdwp command: give --uffdwp PATH\n");
			return -EINVAL;
		}
		strcpy(tok, "/uffdwp");
		o->uffdwp = self_dir;
	}
	if (access(o->uffdwp, X_OK)) {
		pr_perror("%s", o->uffdwp);
		return -ENOENT;
	}
	return 0;
}

/* Refuse sizes that do not fit: a target swapping or OOM-killed measures nothing. */
static int check_memory(const struct opts *o)
{
	uint64_t avail = proc_kb(0, "meminfo", "MemAvailable"), need = 0;
	size_t i;

	for (i = 0; i < o->nr_sizes; i++)
		if (o->sizes[i] > need)
			need = o->sizes[i];
	/* One target at a time, plus our pagemap buffer (2 MiB per GiB). */
	need += need / 512 + (512ULL << 20);
	if (avail && need > avail) {
		pr_err("%.1f GiB available, the largest size needs %.1f GiB\n", gib(avail),
		       gib(need));
		return -ENOMEM;
	}
	return 0;
}

static void mark_config(struct result *r, uint64_t size, bool thp)
{
	memset(r, 0, sizeof(*r));
	r->size = size;
	r->thp = thp;
	if (size % GIB)
		snprintf(r->name, sizeof(r->name), "%" PRIu64 "M %s", size >> 20,
			 thp ? "THP" : "4K");
	else
		snprintf(r->name, sizeof(r->name), "%" PRIu64 "G %s", size >> 30,
			 thp ? "THP" : "4K");
}

int main(int argc, char **argv)
{
	static struct result res[MAX_CONFIGS];
	struct sigaction sa = {.sa_handler = on_signal};
	struct machine m;
	struct opts o;
	uint64_t seed = 1, t0 = now_ns();
	size_t i, nr = 0;
	int k, err;

	if (parse_opts(argc, argv, &o))
		return 1;
	if (geteuid()) {
		pr_err("needs root: it ptraces its target and takes an fd out of it\n");
		return 1;
	}
	if (check_memory(&o))
		return 1;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	machine_read(&m);

	for (i = 0; i < o.nr_sizes; i++) {
		for (k = 0; k < 2; k++) {
			bool thp = k == 1;

			if (thp ? !o.kind_thp : !o.kind_4k)
				continue;
			mark_config(&res[nr], o.sizes[i], thp);
			fprintf(stderr, "bench-track: %s ...\n", res[nr].name);
			err = bench_one(&o, &res[nr], &seed);
			if (err) {
				pr_err("%s failed: %s\n", res[nr].name, uffdwp_strerror(-err));
				return 1;
			}
			nr++;
		}
	}
	fprintf(stderr, "bench-track: done in %.1f s\n", ms_since(t0) / 1000);

	table_print(&o, &m, res, nr);
	for (i = 0; i < nr; i++) {
		int p;

		/* A scan that reports fewer pages than were written would be a bug. */
		for (p = P1; p < NR_PCT; p++)
			if (res[i].reported_min[p] < res[i].written_pages[p])
				printf("SUSPICIOUS: %s, %s %% written: a scan reported %" PRIu64
				       " pages of %" PRIu64 " written\n",
				       res[i].name, pct_name[p], res[i].reported_min[p],
				       res[i].written_pages[p]);
	}
	if (o.out) {
		if (json_write(o.out, &o, &m, res, nr))
			return 1;
		printf("\nJSON: %s\n", o.out);
	}
	return 0;
}
