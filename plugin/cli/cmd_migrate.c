// SPDX-License-Identifier: GPL-2.0
/* uffdwp migrate: live migration of a process tree with CRIU. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "base/log.h"
#include "migrate/migrate.h"

enum {
	OPT_TO = 0x100,
	OPT_LISTEN,
	OPT_MAX_DOWNTIME,
	OPT_MAX_ITERS,
	OPT_NO_TRACK,
	OPT_RESTORE_EST,
	OPT_PLUGIN_PAGES,
	OPT_TCP,
	OPT_SHELL_JOB,
	OPT_KEEP,
	OPT_CRIU_ARG,
	OPT_CRIU,
	OPT_TIMEOUT,
	OPT_POSTCOPY,
	OPT_LAZY_RESTORE,
};

static const struct cli_sub migrate_subs[] = {
    {NULL,
     "-t PID --to ADDR:PORT [options] (the source) | --listen ADDR:PORT -D DIR [options] "
     "(the destination)",
     NULL,
     "Any failure before the destination runs (a page server or CRIU run that fails, a "
     "full disk on either side, a restore that fails, a lost connection, Ctrl-C) rolls "
     "back: the destination removes what it wrote, the source tree runs on as before, "
     "untracked, with the huge pages tracking split collapsed back. One Ctrl-C lets the "
     "CRIU run in progress finish first; a second kills it. After the destination has "
     "restored the tree, Ctrl-C is ignored: the cut-over completes.\n\n"
     "The tree must be a session of its own (CRIU's rule), in a pid namespace of its own "
     "if source and destination are one machine.\n\n"
     "Progress goes to stderr, one line per CRIU run: pages and MB sent, the dirty rate, "
     "the link's bandwidth and the predicted downtime; then a summary. With --json, "
     "stdout has one record per line: iteration, cutover, running, rollback, summary "
     "(docs/migrate.md).\n\n"
     "A tree that a holder tracks already (uffdwp track or snap, a CRIU pre-dump) is "
     "refused: migrate tracks it itself and would end that tracking. Stop it first, or "
     "give --no-track.\n\n"
     "Exit codes of migrate: 0 migrated (the tree runs on the destination); 1 failed and "
     "rolled back (the source runs); 2 bad arguments, or refused (nothing started); 3 --postcopy "
     "or --lazy-restore "
     "failed after the cut-over (the destination's tree is killed, the source runs again "
     "from the cut-over); 4 the source is stopped or still tracked, or it is unknown "
     "whether the destination's tree is whole (the message says what to do)."},
    {NULL, NULL, NULL, NULL},
};

static const struct cli_opt migrate_opts[] = {
    {"pid", 't', "PID", NULL, "source: the root of the tree"},
    {"to", OPT_TO, "ADDR:PORT", NULL, "source: the destination ('uffdwp migrate --listen')"},
    {"max-downtime", OPT_MAX_DOWNTIME, "MS", NULL,
     "source: cut over once the predicted downtime is below (default 300)"},
    {"max-iterations", OPT_MAX_ITERS, "N", NULL,
     "source: pre-dumps at most (default 10); 0: stop-and-copy"},
    {"no-track", OPT_NO_TRACK, NULL, NULL, "source: no --uffd-wp-track: every pre-dump is whole"},
    {"restore-estimate", OPT_RESTORE_EST, "MS", NULL,
     "source: the destination's restore time, in the prediction (default: 50, and "
     "5 us a page of the tree unless the restore is lazy)"},
    {"postcopy", OPT_POSTCOPY, NULL, NULL,
     "source: cut over before the last pages are sent: the destination's tree faults them "
     "in from the source (criu lazy-pages); after the cut-over they live only on the "
     "source (needs fs.pipe-max-size >= 4 MiB)"},
    {"lazy-restore", OPT_LAZY_RESTORE, NULL, NULL,
     "source: the destination restores from its images with criu lazy-pages: the tree "
     "runs before its memory is all mapped in (the pages are at the destination)"},
    {"plugin-pages", OPT_PLUGIN_PAGES, NULL, NULL,
     "source: compressed images (the plugin on both sides)"},
    {"tcp-established", OPT_TCP, NULL, NULL, "source: migrate established TCP connections"},
    {"shell-job", OPT_SHELL_JOB, NULL, NULL, "source: the tree is a shell job"},
    {"work-dir", 'W', "DIR", NULL,
     "source: the local images, in a new or empty DIR, removed after a success (default: a "
     "new /var/tmp/uffdwp-migrate.*)"},
    {"keep", OPT_KEEP, NULL, NULL, "source: keep the local images after a success"},
    {"criu-arg", OPT_CRIU_ARG, "ARG", NULL,
     "source: one more argument for every CRIU pre-dump and dump (repeatable)"},
    {"listen", OPT_LISTEN, "ADDR:PORT", NULL, "destination: where to wait for the source"},
    {"dir", 'D', "DIR", NULL, "destination: where the images go (made if missing; must be empty)"},
    {"criu", OPT_CRIU, "PATH", NULL, "CRIU with criu-patches/ (default: $CRIU, else criu on PATH)"},
    {"libdir", 'L', "DIR", NULL, "CRIU's plugin directory, with uffdwp_plugin.so"},
    {"timeout", OPT_TIMEOUT, "S", NULL, "for one CRIU run or one answer (default 600)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_cmd cli_migrate = {
    .name = "migrate",
    .summary = "move a running process tree to another host with CRIU",
    .fn = cmd_migrate,
    .text = "The destination listens; the source connects, pre-dumps with --uffd-wp-track "
	    "while the tree runs (each pre-dump after the first sends only the pages written "
	    "since the one before, through CRIU's page server), and stops when the predicted "
	    "downtime of the final dump is under --max-downtime, when an iteration no longer "
	    "shrinks the set of written pages, or after --max-iterations. The final dump "
	    "leaves the tree stopped; the destination restores it, still stopped; the source "
	    "says go; only when the destination says the tree runs is the source killed.",
    .subs = migrate_subs,
    .opts = migrate_opts,
};

static volatile sig_atomic_t interrupts;

static void on_signal(int sig)
{
	(void)sig;
	interrupts++;
}

static const char *find_criu(const char *given)
{
	static char path[PATH_MAX];
	const char *env = getenv("CRIU"), *p, *colon;
	size_t n;

	if (given)
		return given;
	if (env && *env)
		return env;
	for (p = getenv("PATH") ?: "/usr/sbin:/usr/bin:/sbin:/bin"; *p; p = colon + 1) {
		colon = strchr(p, ':');
		if (!colon)
			colon = p + strlen(p);
		n = (size_t)(colon - p);
		if (n && n < sizeof(path) - 6) {
			snprintf(path, sizeof(path), "%.*s/criu", (int)n, p);
			if (!access(path, X_OK))
				return path;
		}
		if (!*colon)
			break;
	}
	return NULL;
}

static double mb(double bytes)
{
	return bytes / 1e6;
}

static void json_kv_num(const char *key, double v, bool *first)
{
	printf("%s\"%s\": %.3f", *first ? "" : ", ", key, v);
	*first = false;
}

static void json_kv_str(const char *key, const char *v, bool *first)
{
	printf("%s\"%s\": ", *first ? "" : ", ", key);
	uffdwp_json_str(stdout, v ? v : "");
	*first = false;
}

static void print_event(void *arg, const struct uffdwp_migrate_event *ev)
{
	bool first = true;

	(void)arg;
	switch (ev->kind) {
	case MIG_EV_ITERATION:
		fprintf(stderr, "%s %u: %llu pages, %.1f MB sent in %.2f s, frozen %.1f ms",
			ev->final ? "final dump" : "pre-dump", ev->iter,
			(unsigned long long)ev->pages, mb((double)ev->bytes), ev->duration_ms / 1e3,
			ev->frozen_ms);
		if (ev->dirty_rate > 0)
			fprintf(stderr, ", dirty %.0f pages/s (%.1f MB/s)", ev->dirty_rate,
				mb(ev->dirty_rate * 4096));
		if (ev->bandwidth > 0)
			fprintf(stderr, ", link %.0f MB/s", mb(ev->bandwidth));
		if (ev->predicted_ms >= 0)
			fprintf(stderr, ", predicted downtime %.0f ms", ev->predicted_ms);
		fputc('\n', stderr);
		break;
	case MIG_EV_CUTOVER:
		fprintf(stderr, "cut-over after %u pre-dump(s): %s", ev->iter, ev->reason);
		if (ev->predicted_ms >= 0)
			fprintf(stderr, " (predicted %.0f ms for %llu pages)", ev->predicted_ms,
				(unsigned long long)ev->predicted_pages);
		fputc('\n', stderr);
		break;
	case MIG_EV_RUNNING:
		fprintf(stderr, "the tree runs on the destination\n");
		break;
	case MIG_EV_ROLLBACK:
		fprintf(stderr, "failed: %s\nrolled back: %s\n", ev->reason, ev->message);
		break;
	case MIG_EV_INFO:
		fprintf(stderr, "%s\n", ev->message);
		break;
	}
	if (!cli_json || ev->kind == MIG_EV_INFO)
		return;
	printf("{");
	switch (ev->kind) {
	case MIG_EV_ITERATION:
		json_kv_str("event", "iteration", &first);
		json_kv_num("iter", ev->iter, &first);
		printf(", \"final\": %s", ev->final ? "true" : "false");
		json_kv_num("pages", (double)ev->pages, &first);
		json_kv_num("bytes", (double)ev->bytes, &first);
		json_kv_num("duration_ms", ev->duration_ms, &first);
		json_kv_num("frozen_ms", ev->frozen_ms, &first);
		json_kv_num("dirty_pages_per_s", ev->dirty_rate, &first);
		json_kv_num("bandwidth_bytes_per_s", ev->bandwidth, &first);
		json_kv_num("predicted_downtime_ms", ev->predicted_ms, &first);
		break;
	case MIG_EV_CUTOVER:
		json_kv_str("event", "cutover", &first);
		json_kv_num("predumps", ev->iter, &first);
		json_kv_str("reason", ev->reason, &first);
		json_kv_num("predicted_downtime_ms", ev->predicted_ms, &first);
		json_kv_num("predicted_pages", (double)ev->predicted_pages, &first);
		break;
	case MIG_EV_RUNNING:
		json_kv_str("event", "running", &first);
		break;
	case MIG_EV_ROLLBACK:
		json_kv_str("event", "rollback", &first);
		json_kv_str("error", ev->reason, &first);
		json_kv_str("undone", ev->message, &first);
		break;
	case MIG_EV_INFO:
		break;
	}
	printf("}\n");
	fflush(stdout);
}

static void print_summary(int ret, const struct uffdwp_migrate_report *r, bool source)
{
	bool first = true;

	if (ret == MIG_OK && source)
		fprintf(stderr,
			"migrated in %.2f s: %u CRIU runs, %.1f MB sent for %.1f MB of memory, "
			"downtime %.1f ms (predicted %.0f: final dump frozen %.1f, last images "
			"over %.1f, restore %.1f), pid %d on the destination\n",
			r->total_ms / 1e3, r->iterations, mb((double)r->bytes_sent),
			mb((double)r->memory_bytes), r->downtime_ms, r->predicted_ms, r->frozen_ms,
			r->images_ms, r->restore_ms, r->dest_pid);
	else if (ret == MIG_OK)
		fprintf(stderr, "the tree runs here as pid %d\n", r->dest_pid);
	else if (r->error[0])
		fprintf(stderr, "uffdwp migrate: %s\n", r->error);
	if (!cli_json)
		return;
	printf("{");
	json_kv_str("event", "summary", &first);
	json_kv_str("side", source ? "source" : "destination", &first);
	printf(", \"ok\": %s", ret == MIG_OK ? "true" : "false");
	json_kv_num("exit_code", ret, &first);
	json_kv_num("dest_pid", r->dest_pid, &first);
	if (source) {
		json_kv_num("iterations", r->iterations, &first);
		json_kv_num("total_ms", r->total_ms, &first);
		json_kv_num("downtime_ms", r->downtime_ms, &first);
		json_kv_num("frozen_ms", r->frozen_ms, &first);
		json_kv_num("images_ms", r->images_ms, &first);
		json_kv_num("restore_ms", r->restore_ms, &first);
		json_kv_num("predicted_downtime_ms", r->predicted_ms, &first);
		json_kv_num("pages_sent", (double)r->pages_sent, &first);
		json_kv_num("bytes_sent", (double)r->bytes_sent, &first);
		json_kv_num("memory_bytes", (double)r->memory_bytes, &first);
		json_kv_str("stop_reason", r->stop_reason, &first);
	}
	json_kv_str("error", r->error, &first);
	printf("}\n");
}

static int parse_num(const char *opt, const char *arg, double min, double max, double *v)
{
	if (cli_num__double(arg, min, max, v)) {
		cli_err("%s '%s': not a number in [%g, %g]", opt, arg, min, max);
		return -1;
	}
	return 0;
}

int cmd_migrate(int argc, char **argv)
{
	struct uffdwp_migrate_opts so = {
	    .track = true,
	    .max_downtime_ms = 300,
	    .max_iters = 10,
	    .restore_est_ms = -1,
	    .timeout_s = 600,
	    .signals = &interrupts,
	    .cb = print_event,
	};
	struct uffdwp_migrate_dest_opts dop = {
	    .timeout_s = 600, .signals = &interrupts, .cb = print_event};
	struct uffdwp_migrate_report rep;
	struct sigaction sa = {.sa_handler = on_signal};
	const char *listen = NULL, *dir = NULL, *criu = NULL;
	char *extra[32];
	struct cli_parser p;
	double v;
	int c, ret, nr_extra = 0;

	cli_parser__init(&p, &cli_migrate, argc, argv);
	while ((c = cli_parser__next(&p, argc, argv)) != CLI_OPT_END) {
		switch (c) {
		case 't':
			so.pid = cli_parse_pid(optarg);
			if (so.pid < 0)
				return CLI_USAGE;
			break;
		case OPT_TO:
			so.to = optarg;
			break;
		case OPT_LISTEN:
			listen = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 'W':
			so.work_dir = optarg;
			break;
		case 'L':
			so.libdir = dop.libdir = optarg;
			break;
		case OPT_MAX_DOWNTIME:
			if (parse_num("--max-downtime", optarg, 0, 3.6e6, &so.max_downtime_ms))
				return CLI_USAGE;
			break;
		case OPT_MAX_ITERS:
			if (parse_num("--max-iterations", optarg, 0, 1000, &v))
				return CLI_USAGE;
			so.max_iters = (unsigned int)v;
			break;
		case OPT_NO_TRACK:
			so.track = false;
			break;
		case OPT_RESTORE_EST:
			if (parse_num("--restore-estimate", optarg, 0, 3.6e6, &so.restore_est_ms))
				return CLI_USAGE;
			break;
		case OPT_PLUGIN_PAGES:
			so.plugin_pages = true;
			break;
		case OPT_TCP:
			so.tcp_established = true;
			break;
		case OPT_SHELL_JOB:
			so.shell_job = true;
			break;
		case OPT_KEEP:
			so.keep = true;
			break;
		case OPT_CRIU_ARG:
			if (nr_extra == (int)(sizeof(extra) / sizeof(extra[0]))) {
				cli_err("too many --criu-arg");
				return CLI_USAGE;
			}
			extra[nr_extra++] = optarg;
			break;
		case OPT_CRIU:
			criu = optarg;
			break;
		case OPT_TIMEOUT:
			if (parse_num("--timeout", optarg, 1, 86400, &v))
				return CLI_USAGE;
			so.timeout_s = dop.timeout_s = (int)v;
			break;
		case OPT_POSTCOPY:
			so.postcopy = true;
			break;
		case OPT_LAZY_RESTORE:
			so.lazy_restore = true;
			break;
		default:
			cli_usage(&cli_migrate, NULL);
			return CLI_USAGE;
		}
	}
	ret = cli_parser__finish(&p, NULL);
	if (ret >= 0)
		return ret;
	if (optind < argc) {
		cli_err("unexpected argument '%s'", argv[optind]);
		cli_usage(&cli_migrate, NULL);
		return CLI_USAGE;
	}
	if (!!listen == !!so.to) {
		cli_err("give either --to (the source) or --listen (the destination)");
		return CLI_USAGE;
	}
	if (so.to && !so.pid) {
		cli_err("the source needs -t PID");
		return CLI_USAGE;
	}
	if (listen && !dir) {
		cli_err("the destination needs -D DIR");
		return CLI_USAGE;
	}
	so.criu = dop.criu = find_criu(criu);
	if (!so.criu) {
		cli_err("no CRIU: give --criu PATH or set $CRIU (a CRIU with criu-patches/)");
		return CLI_USAGE;
	}
	if (access(so.criu, X_OK)) {
		cli_err("%s: %s", so.criu, strerror(errno));
		return CLI_USAGE;
	}
	so.criu_args = extra;
	so.nr_criu_args = nr_extra;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A lost terminal is an interrupt too, not the end of the rollback. */
	sigaction(SIGHUP, &sa, NULL);
	/*
	 * A reader of our output that went away (Ctrl-C on "| tee") must not
	 * kill us halfway through a rollback: writes to it just fail.
	 */
	signal(SIGPIPE, SIG_IGN);
	/* Inherited as ignored, it would make every wait for CRIU fail. */
	signal(SIGCHLD, SIG_DFL);
	if (listen) {
		dop.listen = listen;
		dop.dir = dir;
		ret = uffdwp_migrate__dest(&dop, &rep);
	} else {
		ret = uffdwp_migrate__source(&so, &rep);
	}
	print_summary(ret, &rep, !listen);
	return ret;
}
