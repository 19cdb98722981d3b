// SPDX-License-Identifier: GPL-2.0
/* uffdwp: the table of commands, the global options and main(). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "img/img.h"
#include "version.h"

static const struct cli_cmd *const commands[] = {&cli_track, &cli_snap, &cli_img, &cli_migrate};

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

	cli_out_init();
	rc = run(argc, argv);
	cli_out_finish(rc);
	return rc;
}
