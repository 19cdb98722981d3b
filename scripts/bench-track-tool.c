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
 * Prints a table with the targets (scan cost, fault cost, memory) and writes everything as JSON.
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
#include <unistd.h>
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
#include "bench-track.h"

/* For the signal handler: what to kill if we are interrupted. */
volatile pid_t g_child_pid = -1;
static volatile pid_t g_holder_pid = -1;

static void on_signal(int sig)
{
	if (g_child_pid > 0)
		kill(g_child_pid, SIGKILL);
	if (g_holder_pid > 0)
		kill(g_holder_pid, SIGTERM);
	_exit(128 + sig);
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
