// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"

bool cli_json;
int cli_verbose;

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} commands[] = {
    {"track", cmd_track, "track the pages a running process tree writes"},
    {"snap", cmd_snap, "snapshot the memory of a running process tree into an image"},
    {"img", cmd_img, "inspect, verify, merge and flatten compressed images"},
    {"migrate", cmd_migrate, "move a running process tree to another host with CRIU"},
    {"__debug", cmd_debug, NULL}, /* internal: library pieces, for the tests */
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: uffdwp [-v] [--json] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].help)
			fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'uffdwp COMMAND --help' describes each.\n");
}

int cli_parse_pid(const char *arg)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v <= 0 || v > INT_MAX) {
		fprintf(stderr, "uffdwp: '%s' is not a process id\n", arg);
		return -1;
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	int i = 1;
	size_t c;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json")) {
			cli_json = true;
		} else if (!strcmp(argv[i], "-v")) {
			cli_verbose++;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "uffdwp: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	uffdwp_log_set_level(cli_verbose >= 2	? UFFDWP_LOG_DEBUG
			     : cli_verbose == 1 ? UFFDWP_LOG_INFO
						: UFFDWP_LOG_WARN);

	for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
		if (!strcmp(argv[i], commands[c].name))
			return commands[c].fn(argc - i, argv + i);

	fprintf(stderr, "uffdwp: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
