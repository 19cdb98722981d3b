/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tracker benchmark's two halves: bench-track-tool.c measures,
 * bench-track-out.c prints the table and writes the JSON.
 */
#ifndef UFFDWP_BENCH_TRACK_H__
#define UFFDWP_BENCH_TRACK_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define PAGE_SZ	 4096ULL
#define HPAGE_SZ (2ULL << 20)

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

struct machine {
	char kernel[128];
	char cpu[128];
	char date[32];
	char thp[32];
	long cpus;
	uint64_t mem_total;
};

static inline double gib(uint64_t bytes)
{
	return (double)bytes / GIB;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* bench-track-child.c: the target, a forked process that writes on command. */
extern volatile pid_t g_child_pid; /* what the signal handler kills */
/* Fork it with @size bytes mapped (THP or 4 KiB pages) and filled. */
int child_start(struct child *c, uint64_t size, bool thp);
/* Run @op in it; its answer in *@ans (if not NULL). 0 or -errno. */
int child_cmd(struct child *c, enum child_op op, uint32_t arg, uint64_t seed, uint64_t *ans);
/* Kill and reap it. */
void child_kill(struct child *c);

/* bench-track-out.c: this machine: kernel, CPU, THP mode, memory, the date. */
void machine_read(struct machine *m);
/* Everything as JSON into @path; 0 or -errno. */
int json_write(const char *path, const struct opts *o, const struct machine *m,
	       const struct result *res, size_t nr);
/* The table, with the targets and their verdicts, on stdout. */
void table_print(const struct opts *o, const struct machine *m, const struct result *res,
		 size_t nr);

#endif /* UFFDWP_BENCH_TRACK_H__ */
