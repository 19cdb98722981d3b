// SPDX-License-Identifier: GPL-2.0
/* uffdwp snap: a memory-only snapshot of a running process tree. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "img.h"
#include "log.h"
#include "snap.h"

static const char snap_usage[] =
    "usage: uffdwp [-v] [--json] snap -t PID -D DIR [--parent DIR] [--tree]\n"
    "                                 [--level N] [--frame-size B] [--threads N]\n"
    "\n"
    "Write the memory of a running process (with --tree, and of all its\n"
    "descendants) into a compressed image in DIR. Pages are copied while the\n"
    "tree runs; it is then stopped (SIGSTOP) for as long as it takes to\n"
    "re-read the pages written during the copy, so that the image is the\n"
    "memory of one instant. A task that was stopped already stays stopped.\n"
    "\n"
    "Without --parent the image is full: every present page. If no holder\n"
    "tracks PID, one is started ('uffdwp track'), so that later snapshots can\n"
    "be deltas; if one does, its scans are committed with this image as the\n"
    "new base.\n"
    "\n"
    "With --parent DIR the image is a delta: only pages written since the\n"
    "parent are stored; other present pages are \"in parent\". The holder must\n"
    "be tracking relative to that image (its last snapshot); otherwise the\n"
    "snapshot is refused. If tracking was lost (no holder runs: killed, idle\n"
    "timeout), a full image is written instead, without a parent link, a\n"
    "warning says so, and a new holder is started. Nothing is committed to\n"
    "the holder unless the image is: after a failure, the next snapshot still\n"
    "stores every page written since the parent.\n"
    "\n"
    "Stored: anonymous, hugetlb and the private copies of private file\n"
    "pages, per task (by pid); shared memory (MAP_SHARED anonymous, memfd,\n"
    "SysV, tmpfs) once per file, keyed by its inode number ('img read\n"
    "--shmem INO'). Not stored: shared mappings of regular files, [vdso].\n"
    "\n"
    "options:\n"
    "  -t, --pid PID        the process\n"
    "  -D, --dir DIR        the new image (created; must not hold one)\n"
    "  --parent DIR         the previous image of the chain: write a delta\n"
    "  --tree               the descendants too\n"
    "  --level N            zstd level (default -1)\n"
    "  --frame-size B       raw bytes per frame (default 64K)\n"
    "  --threads N          compression threads (default 1)\n"
    "  --json               print the summary as JSON\n"
    "\n"
    "Progress goes to stderr when it is a terminal, or with -v. Exit codes: 0\n"
    "ok, 1 error (nothing committed), 2 usage.\n";

enum {
	OPT_PARENT = 0x100,
	OPT_TREE,
	OPT_LEVEL,
	OPT_FRAME,
	OPT_THREADS,
	OPT_JSON,
};

static int parse_size(const char *s, uint32_t *v)
{
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	if (*end == 'k' || *end == 'K') {
		x <<= 10;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		x <<= 20;
		end++;
	}
	if (*end || x > UINT32_MAX)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int parse_int(const char *s, int *v)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(s, &end, 10);
	if (errno || end == s || *end || x < -1000 || x > 1000)
		return -1;
	*v = (int)x;
	return 0;
}

/* Returns 0, 2 (usage, printed) or 3 (--help). */
static int parse_args(int argc, char **argv, struct uffdwp_snap_opts *a)
{
	static const struct option opts[] = {
	    {"pid", required_argument, NULL, 't'},
	    {"dir", required_argument, NULL, 'D'},
	    {"parent", required_argument, NULL, OPT_PARENT},
	    {"tree", no_argument, NULL, OPT_TREE},
	    {"level", required_argument, NULL, OPT_LEVEL},
	    {"frame-size", required_argument, NULL, OPT_FRAME},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(a, 0, sizeof(*a));
	uffdwp_img_opts__init(&a->img);
	optind = 1;
	while ((c = getopt_long(argc, argv, "t:D:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return 2;
			break;
		case 'D':
			a->dir = optarg;
			break;
		case OPT_PARENT:
			a->parent = optarg;
			break;
		case OPT_TREE:
			a->tree = true;
			break;
		case OPT_LEVEL:
			if (parse_int(optarg, &a->img.level)) {
				fprintf(stderr, "uffdwp: snap: bad --level '%s'\n", optarg);
				return 2;
			}
			break;
		case OPT_FRAME:
			if (parse_size(optarg, &a->img.frame_size)) {
				fprintf(stderr, "uffdwp: snap: bad --frame-size '%s'\n", optarg);
				return 2;
			}
			break;
		case OPT_THREADS:
			if (parse_int(optarg, &a->img.threads)) {
				fprintf(stderr, "uffdwp: snap: bad --threads '%s'\n", optarg);
				return 2;
			}
			break;
		case OPT_JSON:
			cli_json = true;
			break;
		case 'h':
			fputs(snap_usage, stdout);
			return 3;
		default:
			fputs(snap_usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "uffdwp: snap: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->pid || !a->dir) {
		fprintf(stderr, "uffdwp: snap: -t PID and -D DIR are required\n");
		return 2;
	}
	return 0;
}

struct progress_state {
	bool on;
	bool tty;
	bool shown;
	uint64_t last_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void show_progress(void *arg, enum uffdwp_snap_phase phase, uint64_t done, uint64_t total)
{
	static const char *const names[] = {
	    [UFFDWP_SNAP_COPY] = "copying",
	    [UFFDWP_SNAP_FROZEN] = "re-reading (stopped)",
	    [UFFDWP_SNAP_WRITE] = "writing",
	};
	struct progress_state *p = arg;
	uint64_t now = mono_ns();

	/* About once a second, and not for phases that end sooner. */
	if (!p->on || (p->last_ns && now - p->last_ns < 1000000000ULL) || done >= total)
		return;
	if (!p->last_ns) {
		p->last_ns = now;
		return;
	}
	p->last_ns = now;
	fprintf(stderr, "%s%s: %3.0f%% (%.1f of %.1f MiB)%s", p->tty ? "\r" : "", names[phase],
		100.0 * done / total, done / 1048576.0, total / 1048576.0, p->tty ? "" : "\n");
	p->shown = true;
}

static const char *mode_name(enum uffdwp_snap_mode m)
{
	switch (m) {
	case UFFDWP_SNAP_DELTA:
		return "delta";
	case UFFDWP_SNAP_FULL:
		return "full";
	case UFFDWP_SNAP_LOST:
		return "full, tracking lost";
	}
	return "?";
}

static void print_json(const struct uffdwp_snap_opts *a, const struct uffdwp_snap_result *r)
{
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	uint64_t stored = r->st.pages_file + r->st.index_bytes;

	printf("{\"pid\": %d, \"dir\": ", a->pid);
	uffdwp_json_str(stdout, a->dir);
	printf(", \"id\": \"%s\", \"mode\": \"%s\", \"parent\": ", uffdwp_img__id_str(r->id, id),
	       r->mode == UFFDWP_SNAP_DELTA ? "delta" : "full");
	if (r->mode == UFFDWP_SNAP_DELTA)
		uffdwp_json_str(stdout, a->parent);
	else
		printf("null");
	printf(", \"tracking_lost\": %s, \"holder_started\": %s, \"tracked\": %s, "
	       "\"committed\": %s, \"gen\": %" PRIu64 ", \"tasks\": %u, \"shmem_objects\": %u, "
	       "\"pages\": %" PRIu64 ", \"data_pages\": %" PRIu64 ", \"zero_pages\": %" PRIu64
	       ", \"parent_pages\": %" PRIu64 ", \"raw_bytes\": %" PRIu64
	       ", \"bytes_written\": %" PRIu64 ", \"ratio\": %.3f, \"copied_pages\": %" PRIu64
	       ", \"frozen_pages\": %" PRIu64 ", \"frozen_ms\": %.3f, \"total_ms\": %.3f}\n",
	       r->mode == UFFDWP_SNAP_LOST ? "true" : "false", r->holder_started ? "true" : "false",
	       r->tracked ? "true" : "false", r->committed ? "true" : "false", r->gen, r->nr_tasks,
	       r->nr_shmem, r->st.pages, r->st.data_pages, r->st.fill_pages, r->st.parent_pages,
	       r->st.data_pages * UFFDWP_IMG_PAGE_SIZE, stored,
	       stored ? (double)r->st.data_pages * UFFDWP_IMG_PAGE_SIZE / stored : 0.0,
	       r->copied_pages, r->frozen_pages, r->frozen_ns / 1e6, r->total_ns / 1e6);
}

static void print_text(const struct uffdwp_snap_opts *a, const struct uffdwp_snap_result *r)
{
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	uint64_t stored = r->st.pages_file + r->st.index_bytes;
	uint64_t raw = r->st.data_pages * UFFDWP_IMG_PAGE_SIZE;

	printf("%s: %s snapshot %s of %d: %u task(s), %u shared memory object(s)\n", a->dir,
	       mode_name(r->mode), uffdwp_img__id_str(r->id, id), a->pid, r->nr_tasks, r->nr_shmem);
	printf("  pages: %" PRIu64 " stored, %" PRIu64 " zero/fill, %" PRIu64 " in parent\n",
	       r->st.data_pages, r->st.fill_pages, r->st.parent_pages);
	printf("  written: %" PRIu64 " bytes for %.1f MiB of data, ratio %.2f\n", stored,
	       raw / 1048576.0, stored ? (double)raw / stored : 0.0);
	printf("  stopped for %.2f ms (%" PRIu64 " pages re-read, %" PRIu64
	       " copied while running), total %.1f ms\n",
	       r->frozen_ns / 1e6, r->frozen_pages, r->copied_pages, r->total_ns / 1e6);
	if (r->holder_started)
		printf("  tracking started: the next snapshot can be a delta (--parent %s)\n",
		       a->dir);
	else if (!r->committed)
		printf("  not tracked: the next snapshot will be full\n");
}

int cmd_snap(int argc, char **argv)
{
	struct progress_state ps = {0};
	struct uffdwp_snap_result res;
	struct uffdwp_snap_opts a;
	int r, err;

	r = parse_args(argc, argv, &a);
	if (r)
		return r == 3 ? 0 : r;
	ps.tty = isatty(STDERR_FILENO);
	ps.on = ps.tty || cli_verbose;
	a.progress = show_progress;
	a.progress_arg = &ps;
	err = uffdwp_snap(&a, &res);
	if (ps.shown && ps.tty)
		fputc('\n', stderr);
	/* The library said why, once. */
	if (err)
		return 1;
	if (cli_json)
		print_json(&a, &res);
	else
		print_text(&a, &res);
	return 0;
}
