/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The uffdwp command: one file per subcommand, joined by main.c. Each
 * command describes itself in one table (struct cli_cmd): getopt's options,
 * --help and the man page (uffdwp --help-man) all come from it, so they
 * cannot disagree.
 */
#ifndef UFFDWP_CLI_H__
#define UFFDWP_CLI_H__

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes of every command; cli_exit_codes[] describes them. */
#define CLI_OK	  0
#define CLI_ERR	  1 /* failed; the message says why (with --json: a JSON error object) */
#define CLI_USAGE 2 /* bad arguments */
#define CLI_LOST  3 /* track: no holder answers for the process (tracking lost) */

/* An option: one entry gives getopt its option and --help its line. */
struct cli_opt {
	const char *name; /* long name, without "--" */
	int val;	  /* the short letter, or a value above 255 */
	const char *arg;  /* the argument's name; NULL: a flag */
	const char *subs; /* subcommands taking it, as " start scan "; NULL: all */
	const char *help;
};

/* A subcommand (or, with name NULL, a command that has none). */
struct cli_sub {
	const char *name;
	const char *args;    /* synopsis after "uffdwp CMD SUB" */
	const char *summary; /* one line */
	const char *text;    /* paragraphs, "\n\n" between; "  " starts a verbatim one */
};

struct cli_cmd {
	const char *name;
	const char *summary;
	int (*fn)(int argc, char **argv);
	const char *text; /* what the command does as a whole; NULL: nothing more */
	const struct cli_sub *subs;
	const struct cli_opt *opts; /* ends with an entry whose name is NULL */
};

extern const struct cli_cmd cli_track, cli_snap, cli_img, cli_migrate;

/* Each returns the process exit code (CLI_*). */
int cmd_track(int argc, char **argv);
int cmd_img(int argc, char **argv);
int cmd_snap(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
/* Hidden: poke at single library pieces (tests, kernel bring-up). */
int cmd_debug(int argc, char **argv);
/* `uffdwp __debug img-write`: the tests' writer of exact images (debug_img.c). */
int debug_img_write(int argc, char **argv);

/* Set by --json and -v, before the command or among its arguments. */
extern bool cli_json;
extern int cli_verbose;
/* Output that is not stdio's (img read): an error object must not follow it. */
extern bool cli_stdout_raw;

/*
 * Around a command (out.c): the library's messages to stderr and stdout
 * counted; after it, with --json, an error object if it printed nothing.
 */
void cli_out_init(void);
void cli_out_finish(int rc);

/* Log level from cli_verbose (-v: info, -vv: debug). */
void cli_apply_verbose(void);

/* Print "uffdwp: MESSAGE" on stderr and keep it for a JSON error object. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The first error message of this run (library or CLI: where it went
 * wrong), the last one (what that led to), or NULL.
 */
const char *cli_first_error(void);
const char *cli_last_error(void);

/*
 * Numbers, the one parser of every command: 0 or -EINVAL (not a number)
 * or -ERANGE (outside [min, max]); nothing printed. CLI_NUM_SUFFIX takes
 * K, M and G (binary); CLI_NUM_HEX reads hexadecimal with or without 0x,
 * as img show and /proc/PID/maps print addresses; else 0x and 0 prefixes
 * select hexadecimal and octal as in C.
 */
#define CLI_NUM_SUFFIX 0x1
#define CLI_NUM_HEX    0x2
int cli_num__u64(const char *s, unsigned int flags, uint64_t min, uint64_t max, uint64_t *v);
int cli_num__int(const char *s, long min, long max, int *v);
int cli_num__double(const char *s, double min, double max, double *v);

/* Parse a pid argument; prints the error and returns -1 if it is not one. */
int cli_parse_pid(const char *arg);

/*
 * The image writer's options, one parser for every command that writes
 * images: @name is the long option ("level", "frame-size", "threads") and
 * @cmd prefixes the message. cli_img_opts__check() runs the writer's own
 * check once all options are in, so that a bad value is a usage error
 * before any work starts. Both return 0, or CLI_USAGE with the reason
 * printed.
 */
struct uffdwp_img_opts;
int cli_img_opts__set(struct uffdwp_img_opts *o, const char *cmd, const char *name,
		      const char *arg);
int cli_img_opts__check(const struct uffdwp_img_opts *o);

/*
 * Options of one command, parsed with getopt_long (GNU order: options and
 * arguments mixed, "--" ends options). --json, -v and --help are handled
 * here for every command.
 */
struct cli_parser {
	const struct cli_cmd *cmd;
	struct option lopts[48];
	char sopts[64];
	int seen[48]; /* the option values met, to check them against the subcommand */
	int nr_seen;
	bool help;
};

#define CLI_OPT_END (-1)
#define CLI_OPT_BAD (-2)

void cli_parser__init(struct cli_parser *p, const struct cli_cmd *cmd, int argc, char **argv);
/*
 * The next option of @cmd, as getopt_long returns it (optarg set), the
 * global ones handled. Returns CLI_OPT_END after the last (the arguments
 * are then argv[optind..]) or CLI_OPT_BAD (getopt said why).
 */
int cli_parser__next(struct cli_parser *p, int argc, char **argv);
/*
 * After parsing: with --help given, print the help of @sub (a subcommand
 * of p->cmd or NULL) and return CLI_OK; if an option met is not one of
 * @sub, say so and return CLI_USAGE; else -1 (go on).
 */
int cli_parser__finish(struct cli_parser *p, const char *sub);

/* Progress on stderr: on a terminal, never with --json; progress.c. */
struct cli_progress {
	bool on, shown;
	const char *what; /* the phase; a new one starts a new line */
	uint64_t done, total, start_ns, last_ns, delay_ns;
};

void cli_progress__init(struct cli_progress *p);
/* @done of @total bytes in phase @what (a string that lives on). */
void cli_progress__show(struct cli_progress *p, const char *what, uint64_t done, uint64_t total);
/* The work is over: a line shown ends at 100 %. */
void cli_progress__end(struct cli_progress *p);

/* The long name of @cmd's option @val ("?" if it has none). */
const char *cli_opt_name(const struct cli_cmd *cmd, int val);
/* The subcommand @name of @cmd, or NULL. */
const struct cli_sub *cli_find_sub(const struct cli_cmd *cmd, const char *name);
/* Help of @cmd (@sub NULL: the whole command) to @f. */
void cli_help(FILE *f, const struct cli_cmd *cmd, const struct cli_sub *sub);
/* "usage: ..." lines of @cmd (or @sub) and where to read more, on stderr. */
void cli_usage(const struct cli_cmd *cmd, const struct cli_sub *sub);
/* @text wrapped to the terminal width the help uses. */
void cli_wrap(FILE *f, const char *text);
/* The whole manual, as roff, to @f. */
void cli_man(FILE *f, const struct cli_cmd *const *cmds, size_t n, const char *version);
/* "exit status: ..." for help texts. */
extern const char cli_exit_codes[];

#endif /* UFFDWP_CLI_H__ */
