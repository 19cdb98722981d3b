// SPDX-License-Identifier: GPL-2.0
/* uffdwp track: start|scan|commit|status|stop|rate */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "track/holder.h"
#include "base/log.h"
#include "base/procfs.h"
#include "track/tracker.h"

enum {
	OPT_TREE = 0x100,
	OPT_HOLD,
	OPT_RANGES,
	OPT_RECOLLAPSE,
	OPT_IDLE,
	OPT_INTERVAL,
	OPT_COUNT,
};

static const struct cli_sub track_subs[] = {
    {"start", "-t PID [--tree] [--idle-timeout S]", "attach to PID and write-protect its memory",
     "Creates a userfaultfd inside each target mm (ptrace-injected userfaultfd(2), copied "
     "out with pidfd_getfd, the target's copy closed again; its registers and any "
     "interrupted system call are left intact), registers every mapping that holds memory "
     "to dump and write-protects it. A holder process keeps the descriptors open between "
     "commands (closing the last one drops all protection) and answers on "
     "/run/uffdwp/PIDNS-PID.sock. It exits when its tasks are gone, on 'track stop', or "
     "after --idle-timeout seconds without a scan, commit or stop. Needs root: ptrace, "
     "pidfd_getfd and /proc/PID/map_files need CAP_SYS_PTRACE and CAP_SYS_ADMIN."},
    {"scan", "-t PID [--hold] [--ranges]", "what PID wrote since the last committed scan",
     "Reports, per task, the ranges written since the last committed scan and every range "
     "that cannot be proven clean, each with its reason (new-task, new-mapping, "
     "foreign-userfaultfd, untrackable, shmem-shared, scan-failed, tracking-lost). "
     "'written' pages were written since they were last protected; 'pending' pages came "
     "in a held scan not committed yet, and so come again. The scan is committed at once "
     "unless --hold is given: a held scan's ranges come back in every later scan until "
     "'track commit GEN', so a failed dump loses nothing. If no holder answers (killed, "
     "idle timeout), tracking is lost: the report marks all memory of the tree dirty and "
     "the exit status is 3."},
    {"commit", "-t PID GEN", "forget the scans up to GEN (their images are durable)",
     "GEN is the scan number that 'track scan --hold' printed."},
    {"status", "-t PID", "the holder, its tasks and its memory",
     "A status query does not count as use: it does not hold off the idle timeout. Exit "
     "status 3: PID is not tracked."},
    {"stop", "-t PID [--recollapse]", "stop tracking PID",
     "All write protection goes and the holder exits. With --recollapse, the ranges that "
     "tracking split out of transparent huge pages are collapsed back (MADV_COLLAPSE)."},
    {"rate", "-t PID [--tree] [--interval S] [--count N]",
     "measure the dirty rate of PID, without a holder",
     "Pages/s and MB/s written, with a per-mapping breakdown (like QEMU's "
     "calc-dirty-rate), to tell whether iterative pre-copy will converge: it does when the "
     "copy runs faster than that. Default: 5 samples of 1 s."},
    {NULL, NULL, NULL, NULL},
};

static const struct cli_opt track_opts[] = {
    {"pid", 't', "PID", NULL, "the process (with --tree, the root of the tree)"},
    {"tree", OPT_TREE, NULL, " start rate ", "its descendants too, later ones included"},
    {"idle-timeout", OPT_IDLE, "S", " start ",
     "the holder exits S seconds after the last scan, commit or stop, within 10 ms "
     "(default 3600; 0: never)"},
    {"hold", OPT_HOLD, NULL, " scan ", "do not commit: the ranges come again until committed"},
    {"ranges", OPT_RANGES, NULL, " scan ", "list every dirty range (JSON always does)"},
    {"recollapse", OPT_RECOLLAPSE, NULL, " stop ",
     "collapse back into huge pages what tracking split"},
    {"interval", OPT_INTERVAL, "S", " rate ", "seconds per sample (default 1)"},
    {"count", OPT_COUNT, "N", " rate ", "samples (default 5)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_cmd cli_track = {
    .name = "track",
    .summary = "track the pages a running process tree writes",
    .fn = cmd_track,
    .text = "Asynchronous userfaultfd write-protect (Linux 6.7) instead of soft-dirty. A "
	    "holder process keeps the tracking alive between commands; CRIU's pre-dump and "
	    "dump --uffd-wp-track use the same holder.",
    .subs = track_subs,
    .opts = track_opts,
};

struct track_args {
	pid_t pid;
	bool tree;
	bool hold;
	bool ranges;
	bool recollapse;
	unsigned int idle_timeout;
	double interval;
	int count;
	const char *sub;
	const char *gen;
};

/* Returns -1 to go on, or the exit code (CLI_OK after --help). */
static int parse_args(int argc, char **argv, struct track_args *a)
{
	struct cli_parser p;
	uint64_t v;
	int c, r;

	memset(a, 0, sizeof(*a));
	a->idle_timeout = UFFDWP_IDLE_TIMEOUT_S;
	a->interval = 1.0;
	a->count = 5;
	cli_parser__init(&p, &cli_track, argc, argv);
	while ((c = cli_parser__next(&p, argc, argv)) != CLI_OPT_END) {
		switch (c) {
		case 't':
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return CLI_USAGE;
			break;
		case OPT_TREE:
			a->tree = true;
			break;
		case OPT_HOLD:
			a->hold = true;
			break;
		case OPT_RANGES:
			a->ranges = true;
			break;
		case OPT_RECOLLAPSE:
			a->recollapse = true;
			break;
		case OPT_IDLE:
			if (cli_num__u64(optarg, 0, 0, UINT_MAX / 1000, &v)) {
				cli_err("bad --idle-timeout '%s' (seconds)\n", optarg);
				return CLI_USAGE;
			}
			a->idle_timeout = (unsigned int)v;
			break;
		case OPT_INTERVAL:
			if (cli_num__double(optarg, 1e-3, 86400, &a->interval)) {
				cli_err("bad --interval '%s' (seconds)\n", optarg);
				return CLI_USAGE;
			}
			break;
		case OPT_COUNT:
			if (cli_num__int(optarg, 1, 1000000, &a->count)) {
				cli_err("bad --count '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		default:
			cli_usage(&cli_track, NULL);
			return CLI_USAGE;
		}
	}
	if (optind < argc)
		a->sub = argv[optind++];
	if (a->sub && !cli_find_sub(&cli_track, a->sub)) {
		cli_err("unknown track command '%s'\n", a->sub);
		cli_usage(&cli_track, NULL);
		return CLI_USAGE;
	}
	r = cli_parser__finish(&p, a->sub);
	if (r >= 0)
		return r;
	if (!a->sub) {
		cli_err("track needs a command\n");
		cli_usage(&cli_track, NULL);
		return CLI_USAGE;
	}
	if (optind < argc && !strcmp(a->sub, "commit"))
		a->gen = argv[optind++];
	if (optind < argc) {
		cli_err("unexpected argument '%s'\n", argv[optind]);
		cli_usage(&cli_track, cli_find_sub(&cli_track, a->sub));
		return CLI_USAGE;
	}
	if (!a->pid) {
		cli_err("-t PID is required\n");
		cli_usage(&cli_track, cli_find_sub(&cli_track, a->sub));
		return CLI_USAGE;
	}
	return -1;
}

static void print_flags(FILE *f, uint32_t flags, bool json)
{
	static const char *const names[] = {"new", "exited", "exec", "lost"};
	bool first = true;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(flags & (1u << i)))
			continue;
		fprintf(f, json ? "%s\"%s\"" : "%s%s", first ? "" : json ? ", " : ",", names[i]);
		first = false;
	}
}

static void print_report_json(const struct uffdwp_report *r, pid_t root, bool committed, bool lost)
{
	size_t i, j;

	printf("{\"pid\": %d, \"gen\": %" PRIu64 ", \"committed\": %s, \"tracking_lost\": %s, "
	       "\"scan_ms\": %.3f, \"dirty_bytes\": %" PRIu64 ", \"shmem_objects\": %u, "
	       "\"shmem_shared_objects\": %u, \"tasks\": [",
	       root, r->gen, committed ? "true" : "false", lost ? "true" : "false",
	       r->scan_ns / 1e6, uffdwp_report__dirty_bytes(r), r->shmem_objects,
	       r->shmem_shared_objects);
	for (i = 0; i < r->nr_tasks; i++) {
		const struct uffdwp_task_report *t = &r->tasks[i];

		printf("%s\n  {\"pid\": %d, \"flags\": [", i ? "," : "", t->pid);
		print_flags(stdout, t->flags, true);
		printf("], \"dirty_bytes\": %" PRIu64 ", \"written_bytes\": %" PRIu64
		       ", \"pending_bytes\": %" PRIu64 ", \"tracked_bytes\": %" PRIu64
		       ", \"thp_bytes_start\": %" PRIu64 ", \"ranges\": [",
		       uffdwp_rangeset__bytes(&t->dirty), t->written_bytes, t->pending_bytes,
		       t->tracked_bytes, t->thp_bytes_start);
		for (j = 0; j < t->dirty.nr; j++)
			printf("%s[%" PRIu64 ", %" PRIu64 "]", j ? ", " : "", t->dirty.r[j].start,
			       t->dirty.r[j].end);
		printf("], \"notes\": [");
		for (j = 0; j < t->nr_notes; j++)
			printf("%s{\"start\": %" PRIu64 ", \"end\": %" PRIu64
			       ", \"reason\": \"%s\", \"errno\": %d}",
			       j ? ", " : "", t->notes[j].start, t->notes[j].end,
			       uffdwp_reason_name(t->notes[j].reason), t->notes[j].err);
		printf("]}");
	}
	printf("]}\n");
}

static void print_report_text(const struct uffdwp_report *r, bool ranges)
{
	size_t i, j;

	printf("scan %" PRIu64 ": %.1f MiB dirty in %zu task(s), scan took %.2f ms\n", r->gen,
	       uffdwp_report__dirty_bytes(r) / 1048576.0, r->nr_tasks, r->scan_ns / 1e6);
	if (r->shmem_shared_objects)
		printf("  %u of %u shared memory objects are open as files or mapped outside the "
		       "tree: always dirty (their writes are invisible to page tables we scan)\n",
		       r->shmem_shared_objects, r->shmem_objects);
	for (i = 0; i < r->nr_tasks; i++) {
		const struct uffdwp_task_report *t = &r->tasks[i];

		printf("  pid %d", t->pid);
		if (t->flags) {
			printf(" [");
			print_flags(stdout, t->flags, false);
			printf("]");
		}
		printf(": %" PRIu64 " pages dirty (%" PRIu64 " written, %" PRIu64
		       " pending), %.1f MiB tracked",
		       uffdwp_rangeset__bytes(&t->dirty) / 4096, t->written_bytes / 4096,
		       t->pending_bytes / 4096, t->tracked_bytes / 1048576.0);
		if (t->thp_bytes_start)
			printf(", %.1f MiB in huge pages when tracking began",
			       t->thp_bytes_start / 1048576.0);
		printf("\n");
		for (j = 0; j < t->nr_notes; j++) {
			/* Not memory of the task's: nothing to dump, so neither dirty nor clean. */
			if (t->notes[j].reason == UFFDWP_R_NOT_DUMPED) {
				printf("    %012" PRIx64 "-%012" PRIx64
				       " not dumped: a shared mapping of a file, whose data the "
				       "file holds\n",
				       t->notes[j].start, t->notes[j].end);
				continue;
			}
			printf("    %012" PRIx64 "-%012" PRIx64 " dirty: %s%s%s\n",
			       t->notes[j].start, t->notes[j].end,
			       uffdwp_reason_name(t->notes[j].reason), t->notes[j].err ? ": " : "",
			       t->notes[j].err ? uffdwp_strerror(t->notes[j].err) : "");
		}
		if (ranges)
			for (j = 0; j < t->dirty.nr; j++)
				printf("    %012" PRIx64 "-%012" PRIx64 "\n", t->dirty.r[j].start,
				       t->dirty.r[j].end);
	}
}

/*
 * Tracking is lost: build the only honest answer, every dumpable byte of
 * the tree is dirty.
 */
static int lost_report(pid_t pid, struct uffdwp_report **out)
{
	struct uffdwp_report *r;
	pid_t *pids = NULL;
	int n, i;
	size_t j;

	n = uffdwp_proc_tree(pid, true, &pids);
	if (n < 0)
		return n;
	r = calloc(1, sizeof(*r));
	if (!r || !(r->tasks = calloc(n, sizeof(*r->tasks)))) {
		free(r);
		free(pids);
		return -ENOMEM;
	}
	r->nr_tasks = n;
	for (i = 0; i < n; i++) {
		struct uffdwp_task_report *t = &r->tasks[i];
		struct uffdwp_maps maps;

		t->pid = pids[i];
		t->flags = UFFDWP_TASK_LOST;
		if (uffdwp_maps__read(pids[i], &maps))
			continue;
		for (j = 0; j < maps.nr; j++)
			if (maps.v[j].kind != UFFDWP_VMA_FILE_SHARED &&
			    maps.v[j].kind != UFFDWP_VMA_SPECIAL)
				uffdwp_rangeset__add(&t->dirty, maps.v[j].start, maps.v[j].end);
		uffdwp_maps__fini(&maps);
	}
	free(pids);
	*out = r;
	return 0;
}

/* No holder answers for this process (-ESRCH: it answered for another one). */
static bool holder_gone(int err)
{
	return err == -ENOENT || err == -ECONNREFUSED || err == -ECONNRESET || err == -ESRCH;
}

/* @pid names no process (or a zombie, which has no memory left). */
static bool no_process(pid_t pid)
{
	return (kill(pid, 0) && errno == ESRCH) || uffdwp_proc_is_zombie(pid);
}

/* What a failure to reach the holder of @pid means, said once. */
static void holder_error(const char *what, pid_t pid, int err)
{
	if (err == -EACCES || err == -EPERM)
		cli_err("%s of %d: %s (the holders in " UFFDWP_RUN_DIR " are root's)\n", what, pid,
			uffdwp_strerror(-err));
	else
		cli_err("%s of %d failed: %s\n", what, pid, uffdwp_strerror(-err));
}

static int track_start(struct track_args *a)
{
	struct uffdwp_holder_opts o = {
	    .track = {.pid = a->pid, .tree = a->tree},
	    .idle_timeout_s = a->idle_timeout,
	};
	struct uffdwp_holder_status st;
	char sock[108];
	int holder;

	uffdwp_holder_path(a->pid, "sock", sock, sizeof(sock));
	/* The library said why (no process, already tracked, not allowed). */
	holder = uffdwp_holder_spawn(&o);
	if (holder < 0)
		return CLI_ERR;
	if (uffdwp_holder_status(a->pid, &st))
		memset(&st, 0, sizeof(st));
	if (cli_json)
		printf("{\"pid\": %d, \"holder_pid\": %d, \"tasks\": %u, \"tree\": %s, "
		       "\"idle_timeout_s\": %u}\n",
		       a->pid, holder, st.nr_tasks, a->tree ? "true" : "false", a->idle_timeout);
	else
		printf("tracking %d%s: %u task(s), holder pid %d, socket %s\n", a->pid,
		       a->tree ? " and its descendants" : "", st.nr_tasks, holder, sock);
	return CLI_OK;
}

static int track_scan(struct track_args *a)
{
	struct uffdwp_report *r = NULL;
	bool lost = false, committed = false;
	int err;

	err = uffdwp_holder_scan(a->pid, &r);
	if (holder_gone(err)) {
		if (no_process(a->pid)) {
			cli_err("no process %d\n", a->pid);
			return CLI_ERR;
		}
		cli_err("tracking lost for %d: no holder answers (never started, or exited, killed "
			"or idle too long); all its memory counts as dirty\n",
			a->pid);
		lost = true;
		err = lost_report(a->pid, &r);
		if (err) {
			cli_err("cannot read the mappings of %d: %s\n", a->pid,
				uffdwp_strerror(-err));
			return CLI_ERR;
		}
	} else if (err) {
		holder_error("scan", a->pid, err);
		return CLI_ERR;
	}
	if (!lost && !a->hold) {
		err = uffdwp_holder_commit(a->pid, r->gen);
		if (holder_gone(err) && no_process(a->pid)) {
			/* The holder exits with its last task, between our two calls. */
			cli_err("no process %d: it exited after scan %" PRIu64
				", which is reported but not committed\n",
				a->pid, r->gen);
		} else if (holder_gone(err)) {
			cli_err("tracking lost for %d after scan %" PRIu64
				": the holder went away before the commit; all its memory counts "
				"as dirty from now on\n",
				a->pid, r->gen);
			lost = true;
		} else if (err) {
			cli_err("commit of scan %" PRIu64 " failed: %s\n", r->gen,
				uffdwp_strerror(-err));
		}
		committed = !err;
	}
	if (cli_json)
		print_report_json(r, a->pid, committed, lost);
	else
		print_report_text(r, a->ranges);
	uffdwp_report__free(r);
	return lost ? CLI_LOST : err ? CLI_ERR : CLI_OK;
}

static int track_commit(struct track_args *a)
{
	uint64_t gen;
	int err;

	if (!a->gen) {
		cli_err("commit needs the scan number\n");
		cli_usage(&cli_track, cli_find_sub(&cli_track, "commit"));
		return CLI_USAGE;
	}
	if (cli_num__u64(a->gen, 0, 1, UINT64_MAX, &gen)) {
		cli_err("'%s' is not a scan number\n", a->gen);
		return CLI_USAGE;
	}
	err = uffdwp_holder_commit(a->pid, gen);
	if (holder_gone(err)) {
		if (no_process(a->pid))
			cli_err("no process %d\n", a->pid);
		else
			cli_err("%d is not tracked: no holder answers\n", a->pid);
		return no_process(a->pid) ? CLI_ERR : CLI_LOST;
	}
	if (err == -EINVAL) {
		cli_err("commit of scan %" PRIu64 " failed: %d has no such scan held\n", gen,
			a->pid);
		return CLI_ERR;
	}
	if (err) {
		holder_error("commit", a->pid, err);
		return CLI_ERR;
	}
	if (cli_json)
		printf("{\"pid\": %d, \"gen\": %" PRIu64 ", \"committed\": true}\n", a->pid, gen);
	else
		printf("committed scan %" PRIu64 " of %d\n", gen, a->pid);
	return CLI_OK;
}

static int track_status(struct track_args *a)
{
	struct uffdwp_holder_status st;
	int err = uffdwp_holder_status(a->pid, &st);
	bool gone;

	if (holder_gone(err)) {
		gone = no_process(a->pid);
		if (cli_json)
			printf("{\"pid\": %d, \"tracked\": false, \"process\": %s}\n", a->pid,
			       gone ? "false" : "true");
		else
			printf("%d is not tracked%s\n", a->pid, gone ? " (no such process)" : "");
		return CLI_LOST;
	}
	if (err) {
		holder_error("status", a->pid, err);
		return CLI_ERR;
	}
	if (cli_json)
		printf("{\"pid\": %d, \"tracked\": true, \"holder_pid\": %d, \"tree\": %s, "
		       "\"tasks\": %u, \"last_scan\": %" PRIu64 ", \"uptime_ms\": %" PRIu64
		       ", \"tracker_mem_bytes\": %" PRIu64 ", \"holder_rss_bytes\": %" PRIu64
		       ", \"fork_events\": %s, \"sync_error\": %d, \"idle_ms\": %" PRIu64
		       ", \"idle_timeout_s\": %u}\n",
		       a->pid, st.holder_pid, st.tree ? "true" : "false", st.nr_tasks, st.last_gen,
		       st.uptime_ms, st.tracker_mem_bytes, st.holder_rss_bytes,
		       st.fork_events ? "true" : "false", (int)-st.sync_err, st.idle_ms,
		       st.idle_timeout_s);
	else
		printf("%d tracked by holder %d%s: %u task(s), last scan %" PRIu64
		       ", up %.1f s, unused for %.1f s (exits at %u), tracker memory %.1f KiB, "
		       "holder RSS %.1f MiB%s%s%s\n",
		       a->pid, st.holder_pid, st.tree ? " (tree)" : "", st.nr_tasks, st.last_gen,
		       st.uptime_ms / 1000.0, st.idle_ms / 1000.0, st.idle_timeout_s,
		       st.tracker_mem_bytes / 1024.0, st.holder_rss_bytes / 1048576.0,
		       st.fork_events
			   ? ""
			   : "; no fork events: shared memory counts as written at every scan",
		       st.sync_err ? "; the last committed images could not be synced: " : "",
		       st.sync_err ? uffdwp_strerror(-st.sync_err) : "");
	return 0;
}

static int track_stop(struct track_args *a)
{
	struct uffdwp_stop_stats s;
	int err = uffdwp_holder_stop(a->pid, a->recollapse, &s), i;

	if (holder_gone(err)) {
		cli_err("%d is not tracked (no holder answers%s)\n", a->pid,
			no_process(a->pid) ? "; no such process" : "");
		return CLI_LOST;
	}
	if (err) {
		holder_error("stop", a->pid, err);
		return CLI_ERR;
	}
	/* Return once the holder is gone, so a new tracker can start right away. */
	for (i = 0; i < 500 && uffdwp_holder_running(a->pid) > 0; i++)
		usleep(10000);
	if (cli_json)
		printf("{\"pid\": %d, \"stopped\": true, \"thp_split_bytes\": %" PRIu64
		       ", \"thp_recollapsed_bytes\": %" PRIu64 "}\n",
		       a->pid, s.thp_split_bytes, s.thp_recollapsed_bytes);
	else
		printf("stopped tracking %d; huge pages split while tracked: %.1f MiB, "
		       "collapsed back: %.1f MiB\n",
		       a->pid, s.thp_split_bytes / 1048576.0, s.thp_recollapsed_bytes / 1048576.0);
	return 0;
}

struct rate_map {
	char name[64];
	uint64_t bytes;
};

static void rate_attribute(const struct uffdwp_report *r, struct rate_map **maps, size_t *nr)
{
	size_t i, j, k;

	for (i = 0; i < r->nr_tasks; i++) {
		struct uffdwp_maps m;

		if (uffdwp_maps__read(r->tasks[i].pid, &m))
			continue;
		for (j = 0; j < m.nr; j++) {
			struct uffdwp_rangeset one = UFFDWP_RANGESET_INIT;
			const char *name = m.v[j].name[0] ? m.v[j].name : "[anon]";
			uint64_t b;

			uffdwp_rangeset__add_clipped(&one, &r->tasks[i].dirty, m.v[j].start,
						     m.v[j].end, 0);
			b = uffdwp_rangeset__bytes(&one);
			uffdwp_rangeset__fini(&one);
			if (!b)
				continue;
			for (k = 0; k < *nr && strcmp((*maps)[k].name, name); k++)
				;
			if (k == *nr) {
				struct rate_map *nm = realloc(*maps, (*nr + 1) * sizeof(*nm));

				if (!nm)
					continue;
				*maps = nm;
				snprintf(nm[k].name, sizeof(nm[k].name), "%s", name);
				nm[k].bytes = 0;
				(*nr)++;
			}
			(*maps)[k].bytes += b;
		}
		uffdwp_maps__fini(&m);
	}
}

static int rate_cmp(const void *x, const void *y)
{
	const struct rate_map *a = x, *b = y;

	return (a->bytes < b->bytes) - (a->bytes > b->bytes);
}

static int track_rate(struct track_args *a)
{
	struct uffdwp_tracker_opts o = {.pid = a->pid, .tree = a->tree};
	struct uffdwp_tracker *t = NULL;
	struct rate_map *maps = NULL;
	size_t nmaps = 0, i;
	uint64_t total = 0;
	double peak = 0;
	int err, n, holder;

	holder = uffdwp_holder_running(a->pid);
	if (holder > 0) {
		cli_err("%d is already tracked by holder %d; use 'track scan'\n", a->pid, holder);
		return CLI_ERR;
	}
	err = uffdwp_tracker__new(&o, &t);
	if (err) {
		cli_err("cannot track %d: %s\n", a->pid, uffdwp_strerror(-err));
		return CLI_ERR;
	}
	if (cli_json)
		printf("{\"pid\": %d, \"interval_s\": %.3f, \"samples\": [", a->pid, a->interval);
	for (n = 0; n < a->count; n++) {
		struct timespec ts = {.tv_sec = (time_t)a->interval,
				      .tv_nsec = (long)((a->interval - (time_t)a->interval) * 1e9)};
		struct uffdwp_report *r;
		uint64_t bytes;
		double rate;

		nanosleep(&ts, NULL);
		err = uffdwp_tracker__scan(t, &r);
		if (err) {
			cli_err("scan failed: %s\n", uffdwp_strerror(-err));
			break;
		}
		uffdwp_tracker__commit(t, r->gen);
		bytes = uffdwp_report__dirty_bytes(r);
		rate = bytes / a->interval;
		total += bytes;
		if (rate > peak)
			peak = rate;
		rate_attribute(r, &maps, &nmaps);
		if (cli_json)
			printf("%s{\"pages_per_s\": %.1f, \"mb_per_s\": %.3f, \"scan_ms\": %.3f}",
			       n ? ", " : "", rate / 4096, rate / 1e6, r->scan_ns / 1e6);
		else
			printf("%3d: %10.0f pages/s %9.2f MB/s  (scan %.2f ms, %zu task(s))\n",
			       n + 1, rate / 4096, rate / 1e6, r->scan_ns / 1e6, r->nr_tasks);
		fflush(stdout);
		uffdwp_report__free(r);
	}
	qsort(maps, nmaps, sizeof(*maps), rate_cmp);
	if (cli_json) {
		printf("], \"avg_mb_per_s\": %.3f, \"peak_mb_per_s\": %.3f, \"mappings\": [",
		       total / (a->interval * a->count) / 1e6, peak / 1e6);
		for (i = 0; i < nmaps; i++)
			printf("%s{\"name\": \"%s\", \"mb_per_s\": %.3f}", i ? ", " : "",
			       maps[i].name, maps[i].bytes / (a->interval * a->count) / 1e6);
		printf("]}\n");
	} else {
		printf("average %.2f MB/s, peak %.2f MB/s: iterative pre-copy converges when the "
		       "copy runs faster than that\n",
		       total / (a->interval * a->count) / 1e6, peak / 1e6);
		for (i = 0; i < nmaps && i < 10; i++)
			printf("  %9.2f MB/s  %s\n", maps[i].bytes / (a->interval * a->count) / 1e6,
			       maps[i].name);
	}
	free(maps);
	uffdwp_tracker__stop(t, false, NULL);
	return err ? CLI_ERR : CLI_OK;
}

int cmd_track(int argc, char **argv)
{
	struct track_args a;
	int r;

	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	if (!strcmp(a.sub, "start"))
		return track_start(&a);
	if (!strcmp(a.sub, "scan"))
		return track_scan(&a);
	if (!strcmp(a.sub, "commit"))
		return track_commit(&a);
	if (!strcmp(a.sub, "status"))
		return track_status(&a);
	if (!strcmp(a.sub, "stop"))
		return track_stop(&a);
	return track_rate(&a);
}
