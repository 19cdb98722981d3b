// SPDX-License-Identifier: GPL-2.0
/* uffdwp track: start|scan|commit|status|stop|rate */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "holder.h"
#include "log.h"
#include "procfs.h"
#include "tracker.h"

#define EXIT_LOST 3

static const char track_usage[] =
    "usage: uffdwp [--json] track COMMAND -t PID [options]\n"
    "\n"
    "Track the pages a running process (tree) writes, with asynchronous\n"
    "userfaultfd write-protect. A holder process keeps the tracking alive\n"
    "between commands.\n"
    "\n"
    "commands:\n"
    "  start  -t PID [--tree] [--idle-timeout S]  attach and write-protect;\n"
    "         the holder exits when the tasks are gone, on stop, or after S\n"
    "         seconds without a request (default 3600, 0: never)\n"
    "  scan   -t PID [--hold] [--ranges]  what was written since the last\n"
    "         committed scan; committed at once unless --hold is given\n"
    "  commit -t PID GEN                  forget scans up to GEN (images durable)\n"
    "  status -t PID                      the holder, its tasks and its memory\n"
    "  stop   -t PID [--recollapse]       stop tracking; with --recollapse,\n"
    "         collapse back into huge pages what tracking split\n"
    "  rate   -t PID [--tree] [--interval S] [--count N]  measure the dirty\n"
    "         rate (pages/s, MB/s, per mapping) without a holder, to tell\n"
    "         whether iterative pre-copy will converge (default 1 s, 5 times)\n"
    "\n"
    "--json (before 'track') prints JSON. Exit codes: 0 ok, 1 error,\n"
    "2 usage, 3 tracking lost (the report then marks all memory dirty).\n";

struct track_args {
	pid_t pid;
	bool tree;
	bool hold;
	bool ranges;
	bool recollapse;
	unsigned int idle_timeout;
	double interval;
	int count;
	const char *gen;
};

static int parse_args(int argc, char **argv, struct track_args *a)
{
	static const struct option opts[] = {
	    {"pid", required_argument, NULL, 't'},
	    {"tree", no_argument, NULL, 'T'},
	    {"hold", no_argument, NULL, 'H'},
	    {"ranges", no_argument, NULL, 'r'},
	    {"recollapse", no_argument, NULL, 'c'},
	    {"idle-timeout", required_argument, NULL, 'i'},
	    {"interval", required_argument, NULL, 'I'},
	    {"count", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	memset(a, 0, sizeof(*a));
	a->idle_timeout = UFFDWP_IDLE_TIMEOUT_S;
	a->interval = 1.0;
	a->count = 5;
	optind = 1;
	while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return -1;
			break;
		case 'T':
			a->tree = true;
			break;
		case 'H':
			a->hold = true;
			break;
		case 'r':
			a->ranges = true;
			break;
		case 'c':
			a->recollapse = true;
			break;
		case 'i':
			a->idle_timeout = strtoul(optarg, &end, 10);
			if (*end) {
				fprintf(stderr, "uffdwp: bad --idle-timeout '%s'\n", optarg);
				return -1;
			}
			break;
		case 'I':
			a->interval = strtod(optarg, &end);
			if (*end || a->interval <= 0) {
				fprintf(stderr, "uffdwp: bad --interval '%s'\n", optarg);
				return -1;
			}
			break;
		case 'n':
			a->count = atoi(optarg);
			if (a->count <= 0) {
				fprintf(stderr, "uffdwp: bad --count '%s'\n", optarg);
				return -1;
			}
			break;
		case 'h':
			fputs(track_usage, stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind < argc)
		a->gen = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "uffdwp: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!a->pid) {
		fprintf(stderr, "uffdwp: -t PID is required\n");
		return -1;
	}
	return 0;
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
		for (j = 0; j < t->nr_notes; j++)
			printf("    %012" PRIx64 "-%012" PRIx64 " dirty: %s%s%s\n",
			       t->notes[j].start, t->notes[j].end,
			       uffdwp_reason_name(t->notes[j].reason), t->notes[j].err ? ": " : "",
			       t->notes[j].err ? uffdwp_strerror(t->notes[j].err) : "");
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
	holder = uffdwp_holder_spawn(&o);
	if (holder < 0) {
		if (holder != -EBUSY)
			fprintf(stderr, "uffdwp: cannot track %d: %s\n", a->pid,
				uffdwp_strerror(-holder));
		return 1;
	}
	if (uffdwp_holder_status(a->pid, &st))
		memset(&st, 0, sizeof(st));
	if (cli_json)
		printf("{\"pid\": %d, \"holder_pid\": %d, \"tasks\": %u, \"tree\": %s}\n", a->pid,
		       holder, st.nr_tasks, a->tree ? "true" : "false");
	else
		printf("tracking %d%s: %u task(s), holder pid %d, socket %s\n", a->pid,
		       a->tree ? " and its descendants" : "", st.nr_tasks, holder, sock);
	return 0;
}

static int track_scan(struct track_args *a)
{
	struct uffdwp_report *r = NULL;
	bool lost = false, committed = false;
	int err;

	err = uffdwp_holder_scan(a->pid, &r);
	if (holder_gone(err)) {
		fprintf(stderr,
			"uffdwp: tracking lost for %d: no holder answers (it exited or was "
			"killed); all memory counts as dirty\n",
			a->pid);
		lost = true;
		err = lost_report(a->pid, &r);
	}
	if (err) {
		fprintf(stderr, "uffdwp: scan of %d failed: %s\n", a->pid, uffdwp_strerror(-err));
		return 1;
	}
	if (!lost && !a->hold) {
		err = uffdwp_holder_commit(a->pid, r->gen);
		if (err)
			fprintf(stderr, "uffdwp: commit of scan %" PRIu64 " failed: %s\n", r->gen,
				uffdwp_strerror(-err));
		committed = !err;
	}
	if (cli_json)
		print_report_json(r, a->pid, committed, lost);
	else
		print_report_text(r, a->ranges);
	uffdwp_report__free(r);
	return lost ? EXIT_LOST : err ? 1 : 0;
}

static int track_commit(struct track_args *a)
{
	char *end;
	uint64_t gen;
	int err;

	if (!a->gen) {
		fprintf(stderr, "uffdwp: commit needs the scan number\n");
		return 2;
	}
	gen = strtoull(a->gen, &end, 10);
	if (*end || !gen) {
		fprintf(stderr, "uffdwp: '%s' is not a scan number\n", a->gen);
		return 2;
	}
	err = uffdwp_holder_commit(a->pid, gen);
	if (holder_gone(err)) {
		fprintf(stderr, "uffdwp: tracking lost for %d: no holder answers\n", a->pid);
		return EXIT_LOST;
	}
	if (err) {
		fprintf(stderr, "uffdwp: commit of scan %" PRIu64 " failed: %s\n", gen,
			err == -EINVAL ? "no such scan" : uffdwp_strerror(-err));
		return 1;
	}
	return 0;
}

static int track_status(struct track_args *a)
{
	struct uffdwp_holder_status st;
	int err = uffdwp_holder_status(a->pid, &st);

	if (holder_gone(err)) {
		if (cli_json)
			printf("{\"pid\": %d, \"tracked\": false}\n", a->pid);
		else
			printf("%d is not tracked\n", a->pid);
		return EXIT_LOST;
	}
	if (err) {
		fprintf(stderr, "uffdwp: status of %d: %s\n", a->pid, uffdwp_strerror(-err));
		return 1;
	}
	if (cli_json)
		printf("{\"pid\": %d, \"tracked\": true, \"holder_pid\": %d, \"tree\": %s, "
		       "\"tasks\": %u, \"last_scan\": %" PRIu64 ", \"uptime_ms\": %" PRIu64
		       ", \"tracker_mem_bytes\": %" PRIu64 ", \"holder_rss_bytes\": %" PRIu64
		       ", \"fork_events\": %s, \"sync_error\": %d}\n",
		       a->pid, st.holder_pid, st.tree ? "true" : "false", st.nr_tasks, st.last_gen,
		       st.uptime_ms, st.tracker_mem_bytes, st.holder_rss_bytes,
		       st.fork_events ? "true" : "false", (int)-st.sync_err);
	else
		printf("%d tracked by holder %d%s: %u task(s), last scan %" PRIu64
		       ", up %.1f s, tracker memory %.1f KiB, holder RSS %.1f MiB%s%s%s\n",
		       a->pid, st.holder_pid, st.tree ? " (tree)" : "", st.nr_tasks, st.last_gen,
		       st.uptime_ms / 1000.0, st.tracker_mem_bytes / 1024.0,
		       st.holder_rss_bytes / 1048576.0,
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
		fprintf(stderr, "uffdwp: %d is not tracked (no holder answers)\n", a->pid);
		return EXIT_LOST;
	}
	if (err) {
		fprintf(stderr, "uffdwp: stop of %d: %s\n", a->pid, uffdwp_strerror(-err));
		return 1;
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
		fprintf(stderr, "uffdwp: %d is already tracked by holder %d; use 'track scan'\n",
			a->pid, holder);
		return 1;
	}
	err = uffdwp_tracker__new(&o, &t);
	if (err) {
		fprintf(stderr, "uffdwp: cannot track %d: %s\n", a->pid, uffdwp_strerror(-err));
		return 1;
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
			fprintf(stderr, "uffdwp: scan failed: %s\n", uffdwp_strerror(-err));
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
	return err ? 1 : 0;
}

int cmd_track(int argc, char **argv)
{
	struct track_args a;
	const char *sub;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(track_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	if (parse_args(argc - 1, argv + 1, &a))
		return 2;
	if (a.gen && strcmp(sub, "commit")) {
		fprintf(stderr, "uffdwp: unexpected argument '%s'\n", a.gen);
		return 2;
	}
	if (!strcmp(sub, "start"))
		return track_start(&a);
	if (!strcmp(sub, "scan"))
		return track_scan(&a);
	if (!strcmp(sub, "commit"))
		return track_commit(&a);
	if (!strcmp(sub, "status"))
		return track_status(&a);
	if (!strcmp(sub, "stop"))
		return track_stop(&a);
	if (!strcmp(sub, "rate"))
		return track_rate(&a);
	fprintf(stderr, "uffdwp: unknown track command '%s'\n", sub);
	fputs(track_usage, stderr);
	return 2;
}
