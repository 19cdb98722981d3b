/* SPDX-License-Identifier: GPL-2.0 */
/* The uffdwp command: one file per subcommand, this table joins them. */
#ifndef UFFDWP_CLI_H__
#define UFFDWP_CLI_H__

#include <stdbool.h>
#include <stdio.h>

/* Each returns the process exit code: 0 success, 1 failure, 2 usage. */
int cmd_track(int argc, char **argv);
int cmd_img(int argc, char **argv);
int cmd_snap(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
/* Hidden: poke at single library pieces (tests, kernel bring-up). */
int cmd_debug(int argc, char **argv);

/* Set by the global --json / -v options, before the subcommand runs. */
extern bool cli_json;
extern int cli_verbose;

/* Parse a pid argument; prints the error and returns -1 if it is not one. */
int cli_parse_pid(const char *arg);

#endif /* UFFDWP_CLI_H__ */
