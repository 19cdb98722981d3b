// SPDX-License-Identifier: GPL-2.0
/* uffdwp snap: a memory-only snapshot of a running process tree. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "img/img.h"
#include "base/log.h"
#include "snap/snap.h"

enum {
	OPT_PARENT = 0x100,
	OPT_TREE,
	OPT_LEVEL,
	OPT_FRAME,
	OPT_THREADS,
};

static const struct cli_sub snap_subs[] = {
    {NULL, "-t PID -D DIR [--parent DIR] [--tree] [--level N] [--frame-size B] [--threads N]", NULL,
     "Without --parent the image is full: every present page. If no holder tracks PID, one "
     "is started ('uffdwp track'), so that later snapshots can be deltas; if one does, its "
     "scans are committed with this image as the new base.\n\n"
     "With --parent DIR the image is a delta: only pages written since the parent are "
     "stored; other present pages are \"in parent\". The holder must be tracking relative "
     "to that image (its last snapshot); otherwise the snapshot is refused. If tracking was "
     "lost (no holder runs: killed, idle timeout), a full image is written instead, "
     "without a parent link, a warning says so, and a new holder is started. Nothing is "
     "committed to the holder unless the image is: after a failure, the next snapshot "
     "still stores every page written since the parent.\n\n"
     "A snapshot that fails leaves things as they were: a holder it started is stopped "
     "again, and one that ran before keeps its scans uncommitted (the next snapshot stores "
     "the same pages); the message says so when it cannot.\n\n"
     "Stored: anonymous, hugetlb and the private copies of private file pages, per task "
     "(by pid); shared memory (MAP_SHARED anonymous, memfd, SysV, tmpfs) once per file, "
     "keyed by its inode number ('img read --shmem INO'). Not stored: shared mappings of "
     "regular files, [vdso].\n\n"
     "The summary: 'stored' pages are data in this image, 'zero/fill' pages repeat one "
     "byte and take no space, 'in parent' pages are the parent's. 'written' is the size of "
     "the image's two files. 'stopped' is how long the tree was stopped; while it was, the "
     "pages written during the copy were read again ('re-read'); the others were 'copied "
     "while running'.\n\n"
     "Progress goes to stderr when it is a terminal, never with --json."},
    {NULL, NULL, NULL, NULL},
};

static const struct cli_opt snap_opts[] = {
    {"pid", 't', "PID", NULL, "the process (with --tree, the root of the tree)"},
    {"dir", 'D', "DIR", NULL, "the new image (created; must not hold one)"},
    {"parent", OPT_PARENT, "DIR", NULL, "the previous image of the chain: write a delta"},
    {"tree", OPT_TREE, NULL, NULL, "the descendants too"},
    {"level", OPT_LEVEL, "N", NULL, "zstd level (default -1)"},
    {"frame-size", OPT_FRAME, "B", NULL, "raw bytes per frame (default 64K; K and M suffixes)"},
    {"threads", OPT_THREADS, "N", NULL, "compression threads (default 1, at most 16)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_cmd cli_snap = {
    .name = "snap",
    .summary = "snapshot the memory of a running process tree into an image",
    .fn = cmd_snap,
    .text = "Write the memory of a running process (with --tree, and of all its descendants) "
	    "into a compressed image in DIR. Pages are copied while the tree runs; it is then "
	    "stopped (SIGSTOP) for as long as it takes to re-read the pages written during "
	    "the copy, so that the image is the memory of one instant. A task that was "
	    "stopped already stays stopped.",
    .subs = snap_subs,
    .opts = snap_opts,
};

/* Returns -1 to go on, or the exit code (CLI_OK after --help). */
static int parse_args(int argc, char **argv, struct uffdwp_snap_opts *a)
{
	struct cli_parser p;
	int c, r;

	memset(a, 0, sizeof(*a));
	uffdwp_img_opts__init(&a->img);
	cli_parser__init(&p, &cli_snap, argc, argv);
	while ((c = cli_parser__next(&p, argc, argv)) != CLI_OPT_END) {
		switch (c) {
		case 't':
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return CLI_USAGE;
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
		case OPT_FRAME:
		case OPT_THREADS:
			if (cli_img_opts__set(&a->img, "snap", cli_opt_name(&cli_snap, c), optarg))
				return CLI_USAGE;
			break;
		default:
			cli_usage(&cli_snap, NULL);
			return CLI_USAGE;
		}
	}
	r = cli_parser__finish(&p, NULL);
	if (r >= 0)
		return r;
	if (optind < argc) {
		cli_err("snap: unexpected argument '%s'\n", argv[optind]);
		cli_usage(&cli_snap, NULL);
		return CLI_USAGE;
	}
	if (!a->pid || !a->dir) {
		cli_err("snap: -t PID and -D DIR are required\n");
		cli_usage(&cli_snap, NULL);
		return CLI_USAGE;
	}
	return cli_img_opts__check(&a->img) ?: -1;
}

static void show_progress(void *arg, enum uffdwp_snap_phase phase, uint64_t done, uint64_t total)
{
	static const char *const names[] = {
	    [UFFDWP_SNAP_COPY] = "copying",
	    [UFFDWP_SNAP_FROZEN] = "re-reading (stopped)",
	    [UFFDWP_SNAP_WRITE] = "writing",
	};

	cli_progress__show(arg, names[phase], done, total);
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
	       ", \"bytes_written\": %" PRIu64 ", \"ratio\": %.3f, \"pages_file\": %" PRIu64
	       ", \"index_bytes\": %" PRIu64 ", \"copied_pages\": %" PRIu64
	       ", \"frozen_pages\": %" PRIu64 ", \"frozen_ms\": %.3f, \"total_ms\": %.3f}\n",
	       r->mode == UFFDWP_SNAP_LOST ? "true" : "false", r->holder_started ? "true" : "false",
	       r->tracked ? "true" : "false", r->committed ? "true" : "false", r->gen, r->nr_tasks,
	       r->nr_shmem, r->st.pages, r->st.data_pages, r->st.fill_pages, r->st.parent_pages,
	       r->st.data_pages * UFFDWP_IMG_PAGE_SIZE, stored,
	       r->st.pages_file ? (double)r->st.data_pages * UFFDWP_IMG_PAGE_SIZE / r->st.pages_file
				: 0.0,
	       r->st.pages_file, r->st.index_bytes, r->copied_pages, r->frozen_pages,
	       r->frozen_ns / 1e6, r->total_ns / 1e6);
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
	/* As img stats counts them: the ratio is the page file's, the index apart. */
	printf("  written: %" PRIu64 " bytes (page file %" PRIu64 ", index %" PRIu64
	       ") for %.1f MiB of data, ratio %.2f\n",
	       stored, r->st.pages_file, r->st.index_bytes, raw / 1048576.0,
	       r->st.pages_file ? (double)raw / r->st.pages_file : 0.0);
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
	struct cli_progress ps;
	struct uffdwp_snap_result res;
	struct uffdwp_snap_opts a;
	int r, err;

	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	cli_progress__init(&ps);
	a.progress = show_progress;
	a.progress_arg = &ps;
	err = uffdwp_snap(&a, &res);
	/* The summary goes below the last progress line, which ends at 100 %. */
	if (!err)
		cli_progress__end(&ps);
	else if (ps.shown)
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
