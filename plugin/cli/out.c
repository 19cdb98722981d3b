// SPDX-License-Identifier: GPL-2.0
/*
 * What every command prints besides its result: messages on stderr, kept
 * for the JSON error object, and stdout counted so that no error object
 * follows a result.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "base/log.h"

bool cli_json;
int cli_verbose;
bool cli_stdout_raw;

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

void cli_apply_verbose(void)
{
	uffdwp_log_set_level(cli_verbose >= 2	? UFFDWP_LOG_DEBUG
			     : cli_verbose == 1 ? UFFDWP_LOG_INFO
						: UFFDWP_LOG_WARN);
}

void cli_out_init(void)
{
	uffdwp_log_set_sink(log_sink);
	count_stdout();
}

void cli_out_finish(int rc)
{
	fflush(stdout);
	if (cli_json && rc != CLI_OK && !out_bytes && !cli_stdout_raw)
		json_error(rc);
	fflush(stdout);
}
