// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "img.h"
#include "log.h"
#include "version.h"

bool cli_json;
int cli_verbose;
bool cli_stdout_raw;

static const struct cli_cmd *const commands[] = {&cli_track, &cli_snap, &cli_img, &cli_migrate};

/*
 * The error messages of this run, for the JSON error object: the first
 * (where it went wrong; the others add context) and the last ones.
 */
#define KEEP_MSGS 8
static char msgs[KEEP_MSGS][512];
static char first_msg[512];
static unsigned int nr_msgs;
/* Bytes the command printed on stdout. */
static size_t out_bytes;

static void keep(const char *msg)
{
	char *m = msgs[nr_msgs++ % KEEP_MSGS];
	size_t n;

	snprintf(m, sizeof(msgs[0]), "%s", msg);
	n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		m[--n] = '\0';
	if (nr_msgs == 1)
		memcpy(first_msg, m, sizeof(first_msg));
}

const char *cli_first_error(void)
{
	return nr_msgs ? first_msg : NULL;
}

const char *cli_last_error(void)
{
	return nr_msgs ? msgs[(nr_msgs - 1) % KEEP_MSGS] : NULL;
}

void cli_err(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	keep(buf);
	/* One line each, however the caller ended it. */
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	fprintf(stderr, "uffdwp: %s\n", buf);
}

/* The library's messages: as it prints them, and its errors kept. */
static void log_sink(enum uffdwp_loglevel level, const char *msg)
{
	size_t n = strlen(msg);

	if (level == UFFDWP_LOG_ERROR)
		keep(msg);
	if (level > uffdwp_log_get_level())
		return;
	while (n && msg[n - 1] == '\n')
		n--;
	fprintf(stderr, "uffdwp: %s%.*s\n",
		level == UFFDWP_LOG_ERROR  ? "error: "
		: level == UFFDWP_LOG_WARN ? "warning: "
					   : "",
		(int)n, msg);
}

/* stdout through a counter: an error object must not follow a result. */
static ssize_t out_write(void *cookie, const char *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(STDOUT_FILENO, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		done += n;
	}
	out_bytes += done;
	return done;
}

static void count_stdout(void)
{
	cookie_io_functions_t io = {.write = out_write};
	FILE *f = fopencookie(NULL, "w", io);

	if (!f)
		return;
	/* Line buffered on a terminal, as stdout was. */
	setvbuf(f, NULL, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, BUFSIZ);
	fflush(stdout);
	stdout = f;
}

static void json_error(int rc)
{
	unsigned int i, from = nr_msgs > KEEP_MSGS ? nr_msgs - KEEP_MSGS : 0;

	printf("{\"error\": ");
	uffdwp_json_str(stdout, nr_msgs ? first_msg : rc == CLI_USAGE ? "bad arguments" : "failed");
	printf(", \"messages\": [");
	/* The first, then the last ones: what went wrong, then what it led to. */
	if (from) {
		uffdwp_json_str(stdout, first_msg);
		printf(", \"...\"");
	}
	for (i = from; i < nr_msgs; i++) {
		printf("%s", i > from || from ? ", " : "");
		uffdwp_json_str(stdout, msgs[i % KEEP_MSGS]);
	}
	printf("], \"exit_code\": %d}\n", rc);
}

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: uffdwp [-v] [--json] COMMAND [ARGS]\n"
		   "       uffdwp --version | --help | --help-man\n\n"
		   "Incremental memory checkpoints of live processes with asynchronous\n"
		   "userfaultfd write-protect.\n\ncommands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f, "\nglobal options (before the command or among its arguments):\n"
		   "  --json          print the result, and errors, as JSON on stdout\n"
		   "  -v, --verbose   more messages on stderr (twice: debugging)\n"
		   "  -h, --help      help; 'uffdwp COMMAND --help' describes each command\n"
		   "  --version       version, CRIU plugin ABI, the CRIU commit of the series\n"
		   "  --help-man      the manual page, as roff ('make man' writes it)\n\n");
	cli_wrap(f, cli_exit_codes);
}

static void version(void)
{
	if (cli_json) {
		printf("{\"version\": \"%s\", \"plugin_abi\": ", UFFDWP_VERSION);
		if (UFFDWP_PLUGIN_ABI[0])
			printf("\"%s\"", UFFDWP_PLUGIN_ABI);
		else
			printf("null");
		printf(", \"criu_base\": \"%s\", \"index_version\": %d}\n", UFFDWP_CRIU_BASE,
		       UFFDWP_IMG_VERSION);
		return;
	}
	printf("uffdwp %s\n", UFFDWP_VERSION);
	if (UFFDWP_PLUGIN_ABI[0])
		printf("CRIU plugin ABI %s (the plugin was built against it)\n", UFFDWP_PLUGIN_ABI);
	else
		printf("CRIU plugin not built (no CRIU with criu-patches/ found: 'make criu')\n");
	printf("criu-patches/ apply to CRIU %s\n", UFFDWP_CRIU_BASE);
	printf("image index version %d (images/FORMAT.md)\n", UFFDWP_IMG_VERSION);
}

void cli_apply_verbose(void)
{
	uffdwp_log_set_level(cli_verbose >= 2	? UFFDWP_LOG_DEBUG
			     : cli_verbose == 1 ? UFFDWP_LOG_INFO
						: UFFDWP_LOG_WARN);
}

int cli_parse_pid(const char *arg)
{
	int v;

	if (cli_num__int(arg, 1, INT_MAX, &v)) {
		cli_err("'%s' is not a process id\n", arg);
		return -1;
	}
	return v;
}

/* The command named in @argv, and the global options before it taken out. */
static int run(int argc, char **argv)
{
	bool want_version = false, want_man = false, want_help = false;
	int i;
	size_t c;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json"))
			cli_json = true;
		else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			cli_verbose++;
		else if (!strcmp(argv[i], "-vv"))
			cli_verbose += 2;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			want_help = true;
		else if (!strcmp(argv[i], "--version"))
			want_version = true;
		else if (!strcmp(argv[i], "--help-man"))
			want_man = true;
		else {
			cli_err("unknown option '%s'\n", argv[i]);
			usage(stderr);
			return CLI_USAGE;
		}
	}
	if (want_man) {
		cli_man(stdout, commands, sizeof(commands) / sizeof(commands[0]), UFFDWP_VERSION);
		return CLI_OK;
	}
	if (want_version) {
		version();
		return CLI_OK;
	}
	if (want_help && i == argc) {
		usage(stdout);
		return CLI_OK;
	}
	if (i == argc) {
		cli_err("no command given\n");
		usage(stderr);
		return CLI_USAGE;
	}
	cli_apply_verbose();
	if (!strcmp(argv[i], "__debug"))
		return cmd_debug(argc - i, argv + i);
	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
		if (strcmp(argv[i], commands[c]->name))
			continue;
		/* --help before the command: as if after it, so a subcommand gets its own. */
		if (want_help) {
			char *args[64];
			int n = argc - i < 62 ? argc - i : 62;

			memcpy(args, argv + i, n * sizeof(*args));
			args[n] = "--help";
			args[n + 1] = NULL;
			return commands[c]->fn(n + 1, args);
		}
		return commands[c]->fn(argc - i, argv + i);
	}
	cli_err("unknown command '%s'\n", argv[i]);
	usage(stderr);
	return CLI_USAGE;
}

int main(int argc, char **argv)
{
	int rc;

	uffdwp_log_set_sink(log_sink);
	count_stdout();
	rc = run(argc, argv);
	fflush(stdout);
	if (cli_json && rc != CLI_OK && !out_bytes && !cli_stdout_raw)
		json_error(rc);
	fflush(stdout);
	return rc;
}
