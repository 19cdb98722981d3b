// SPDX-License-Identifier: GPL-2.0
/*
 * Options, --help and the man page of the uffdwp command, all from the
 * commands' tables (cli.h): what getopt takes is what the help lists.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define WIDTH	 79
#define OPT_COL	 24
#define OPT_JSON 0x1000

const char cli_exit_codes[] =
    "exit status: 0 ok; 1 failed (the message says why; with --json a JSON object "
    "{\"error\": MESSAGE, \"messages\": [...], \"exit_code\": 1} on stdout, unless the "
    "command printed its result); 2 bad arguments; 3 (track) no holder answers for the "
    "process: tracking is lost, all its memory counts as written.";

static const struct cli_opt global_opts[] = {
    {"json", OPT_JSON, NULL, NULL, "print the result, and errors, as JSON on stdout"},
    {"verbose", 'v', NULL, NULL, "more messages on stderr (twice: debugging)"},
    {"help", 'h', NULL, NULL, "this help"},
    {NULL, 0, NULL, NULL, NULL},
};

/* ------------------------------------------------------------------ parsing */

static void add_opts(struct cli_parser *p, const struct cli_opt *o, size_t *n, size_t *s)
{
	for (; o->name && *n + 1 < sizeof(p->lopts) / sizeof(p->lopts[0]); o++, (*n)++) {
		p->lopts[*n].name = o->name;
		p->lopts[*n].has_arg = o->arg ? required_argument : no_argument;
		p->lopts[*n].flag = NULL;
		p->lopts[*n].val = o->val;
		if (o->val < 256 && *s + 3 < sizeof(p->sopts)) {
			p->sopts[(*s)++] = (char)o->val;
			if (o->arg)
				p->sopts[(*s)++] = ':';
		}
	}
}

void cli_parser__init(struct cli_parser *p, const struct cli_cmd *cmd, int argc, char **argv)
{
	size_t n = 0, s = 0;

	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	add_opts(p, cmd->opts, &n, &s);
	add_opts(p, global_opts, &n, &s);
	memset(&p->lopts[n], 0, sizeof(p->lopts[n]));
	p->sopts[s] = '\0';
	optind = 1;
	opterr = 1;
}

int cli_parser__next(struct cli_parser *p, int argc, char **argv)
{
	int c;

	for (;;) {
		c = getopt_long(argc, argv, p->sopts, p->lopts, NULL);
		switch (c) {
		case -1:
			return CLI_OPT_END;
		case '?':
		case ':':
			return CLI_OPT_BAD;
		case OPT_JSON:
			cli_json = true;
			continue;
		case 'v':
			cli_verbose++;
			cli_apply_verbose();
			continue;
		case 'h':
			p->help = true;
			continue;
		}
		if (p->nr_seen < (int)(sizeof(p->seen) / sizeof(p->seen[0])))
			p->seen[p->nr_seen++] = c;
		return c;
	}
}

static const struct cli_opt *opt_by_val(const struct cli_cmd *cmd, int val)
{
	const struct cli_opt *o;

	for (o = cmd->opts; o->name; o++)
		if (o->val == val)
			return o;
	return NULL;
}

const char *cli_opt_name(const struct cli_cmd *cmd, int val)
{
	const struct cli_opt *o = opt_by_val(cmd, val);

	return o ? o->name : "?";
}

static bool opt_of_sub(const struct cli_opt *o, const char *sub)
{
	char word[40];

	if (!o->subs || !sub)
		return true;
	snprintf(word, sizeof(word), " %s ", sub);
	return strstr(o->subs, word) != NULL;
}

const struct cli_sub *cli_find_sub(const struct cli_cmd *cmd, const char *name)
{
	const struct cli_sub *s;

	for (s = cmd->subs; name && s->name; s++)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

int cli_parser__finish(struct cli_parser *p, const char *sub)
{
	const struct cli_sub *s = sub ? cli_find_sub(p->cmd, sub) : NULL;
	const struct cli_opt *o;
	int i;

	if (p->help) {
		cli_help(stdout, p->cmd, s);
		return CLI_OK;
	}
	for (i = 0; s && i < p->nr_seen; i++) {
		o = opt_by_val(p->cmd, p->seen[i]);
		if (o && !opt_of_sub(o, s->name)) {
			cli_err("--%s is not an option of '%s %s'\n", o->name, p->cmd->name,
				s->name);
			cli_usage(p->cmd, s);
			return CLI_USAGE;
		}
	}
	return -1;
}

/* -------------------------------------------------------------------- text */

/*
 * Print @text wrapped to WIDTH, every line indented by @indent (the first
 * by @first when it is >= 0: it continues a line already started).
 * Paragraphs are separated by "\n\n"; one that starts with two spaces is
 * printed as it is.
 */
static void wrap(FILE *f, const char *text, int indent, int first)
{
	const char *p = text, *end, *w;
	int col;

	while (*p) {
		end = strstr(p, "\n\n");
		if (!end)
			end = p + strlen(p);
		if (p[0] == ' ' && p[1] == ' ') {
			const char *nl;

			for (; p < end; p = nl + 1) {
				nl = memchr(p, '\n', end - p);
				if (!nl)
					nl = end;
				fprintf(f, "%*s%.*s\n", first >= 0 ? 0 : indent, "", (int)(nl - p),
					p);
				first = -1;
				if (nl == end)
					break;
			}
		} else {
			col = first >= 0 ? first : indent;
			if (first < 0)
				fprintf(f, "%*s", indent, "");
			first = col;
			while (p < end) {
				while (p < end && isspace((unsigned char)*p))
					p++;
				for (w = p; w < end && !isspace((unsigned char)*w); w++)
					;
				if (w == p)
					break;
				if (col > first && col + 1 + (w - p) > WIDTH) {
					fprintf(f, "\n%*s", indent, "");
					col = first = indent;
				}
				fprintf(f, "%s%.*s", col > first ? " " : "", (int)(w - p), p);
				col += (col > first) + (int)(w - p);
				p = w;
			}
			fputc('\n', f);
		}
		first = -1;
		p = end;
		if (*p) {
			p += 2;
			fputc('\n', f);
		}
	}
}

static void synopsis(FILE *f, const struct cli_cmd *cmd, const struct cli_sub *s, bool first)
{
	int n;

	n = fprintf(f, "%s uffdwp %s%s%s", first ? "usage:" : "      ", cmd->name,
		    s->name ? " " : "", s->name ? s->name : "");
	if (s->args) {
		fputc(' ', f);
		wrap(f, s->args, n + 1, n + 1);
	} else {
		fputc('\n', f);
	}
}

static void opt_line(FILE *f, const struct cli_opt *o)
{
	char left[64];
	int n;

	if (!o->help)
		return; /* hidden */
	if (o->val < 256)
		n = snprintf(left, sizeof(left), "  -%c, --%s%s%s", o->val, o->name,
			     o->arg ? " " : "", o->arg ? o->arg : "");
	else
		n = snprintf(left, sizeof(left), "  --%s%s%s", o->name, o->arg ? " " : "",
			     o->arg ? o->arg : "");
	if (n >= OPT_COL - 1) {
		fprintf(f, "%s\n", left);
		wrap(f, o->help, OPT_COL, -1);
	} else {
		fprintf(f, "%-*s", OPT_COL, left);
		wrap(f, o->help, OPT_COL, OPT_COL);
	}
}

void cli_help(FILE *f, const struct cli_cmd *cmd, const struct cli_sub *sub)
{
	const struct cli_sub *s;
	const struct cli_opt *o;
	bool first = true;

	for (s = cmd->subs; s->name || s == cmd->subs; s++) {
		if (sub && s != sub)
			continue;
		synopsis(f, cmd, s, first);
		first = false;
		if (!s->name)
			break;
	}
	fputc('\n', f);
	if (sub && sub->name) {
		wrap(f, sub->summary, 0, -1);
		if (sub->text) {
			fputc('\n', f);
			wrap(f, sub->text, 0, -1);
		}
	} else {
		wrap(f, cmd->summary, 0, -1);
		if (cmd->text) {
			fputc('\n', f);
			wrap(f, cmd->text, 0, -1);
		}
		if (cmd->subs->name) {
			fprintf(f, "\ncommands:\n");
			for (s = cmd->subs; s->name; s++) {
				fprintf(f, "  %-10s", s->name);
				wrap(f, s->summary, 12, 12);
			}
		} else if (cmd->subs->text) {
			fputc('\n', f);
			wrap(f, cmd->subs->text, 0, -1);
		}
	}
	fprintf(f, "\noptions:\n");
	for (o = cmd->opts; o->name; o++)
		if (!sub || opt_of_sub(o, sub->name))
			opt_line(f, o);
	for (o = global_opts; o->name; o++)
		opt_line(f, o);
	if (cmd->subs->name && !sub)
		fprintf(f, "\n'uffdwp %s COMMAND --help' describes each command.\n", cmd->name);
	fputc('\n', f);
	wrap(f, cli_exit_codes, 0, -1);
}

void cli_wrap(FILE *f, const char *text)
{
	wrap(f, text, 0, -1);
}

void cli_usage(const struct cli_cmd *cmd, const struct cli_sub *sub)
{
	const struct cli_sub *s;
	bool first = true;

	for (s = cmd->subs; s->name || s == cmd->subs; s++) {
		if (sub && s != sub)
			continue;
		synopsis(stderr, cmd, s, first);
		first = false;
		if (!s->name)
			break;
	}
	fprintf(stderr, "'uffdwp %s%s%s --help' says more.\n", cmd->name,
		sub && sub->name ? " " : "", sub && sub->name ? sub->name : "");
}

/* --------------------------------------------------------------------- man */

/* @s as roff text: backslashes, minus signs and a leading dot escaped. */
static void roff(FILE *f, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && s[i]; i++) {
		if ((i == 0 || s[i - 1] == '\n') && (s[i] == '.' || s[i] == '\''))
			fputs("\\&", f);
		if (s[i] == '\\')
			fputs("\\e", f);
		else if (s[i] == '-')
			fputs("\\-", f);
		else
			fputc(s[i], f);
	}
}

static void roff_text(FILE *f, const char *text)
{
	const char *p = text, *end;

	while (*p) {
		end = strstr(p, "\n\n");
		if (!end)
			end = p + strlen(p);
		if (p[0] == ' ' && p[1] == ' ') {
			fputs(".PP\n.nf\n", f);
			roff(f, p, end - p);
			fputs("\n.fi\n", f);
		} else {
			fputs(".PP\n", f);
			roff(f, p, end - p);
			fputc('\n', f);
		}
		p = *end ? end + 2 : end;
	}
}

static void roff_str(FILE *f, const char *s)
{
	roff(f, s, strlen(s));
}

static void man_opt(FILE *f, const struct cli_opt *o)
{
	if (!o->help)
		return; /* hidden */
	fputs(".TP\n", f);
	if (o->val < 256)
		fprintf(f, "\\fB\\-%c\\fR, ", o->val);
	fputs("\\fB\\-\\-", f);
	roff_str(f, o->name);
	fputs("\\fR", f);
	if (o->arg) {
		fputs(" \\fI", f);
		roff_str(f, o->arg);
		fputs("\\fR", f);
	}
	fputc('\n', f);
	roff_str(f, o->help);
	fputc('\n', f);
}

void cli_man(FILE *f, const struct cli_cmd *const *cmds, size_t n, const char *version)
{
	const struct cli_sub *s;
	const struct cli_opt *o;
	size_t i;

	fprintf(f, ".\\\" Generated by 'uffdwp --help-man' from the tables that make --help.\n");
	fprintf(f, ".TH UFFDWP 1 \"\" \"uffdwp %s\" \"User Commands\"\n", version);
	fputs(".SH NAME\nuffdwp \\- incremental memory checkpoints with userfaultfd "
	      "write\\-protect\n.SH SYNOPSIS\n",
	      f);
	for (i = 0; i < n; i++)
		for (s = cmds[i]->subs; s->name || s == cmds[i]->subs; s++) {
			fprintf(f, ".B uffdwp %s%s%s\n", cmds[i]->name, s->name ? " " : "",
				s->name ? s->name : "");
			if (s->args) {
				roff_str(f, s->args);
				fputc('\n', f);
			}
			fputs(".br\n", f);
			if (!s->name)
				break;
		}
	fputs(".SH DESCRIPTION\n", f);
	roff_text(f, "uffdwp tracks the pages a running process tree writes with asynchronous "
		     "userfaultfd write-protect (Linux 6.7: UFFD_FEATURE_WP_ASYNC and "
		     "PAGEMAP_SCAN), writes memory snapshots of it into compressed, seekable "
		     "delta images, and inspects them. The CRIU plugin built with it does the "
		     "same inside criu pre-dump and dump --uffd-wp-track.");
	fputs(".SH \"GLOBAL OPTIONS\"\n", f);
	roff_text(f, "These go before the command or anywhere among its arguments.");
	for (o = global_opts; o->name; o++)
		man_opt(f, o);
	fputs(".TP\n\\fB\\-\\-version\\fR\nthe version, the CRIU plugin ABI it was built "
	      "for and the CRIU commit the patch series applies to\n",
	      f);
	fputs(".TP\n\\fB\\-\\-help\\-man\\fR\nthis manual, as roff\n", f);
	for (i = 0; i < n; i++) {
		fprintf(f, ".SH \"uffdwp %s\"\n", cmds[i]->name);
		roff_text(f, cmds[i]->summary);
		if (cmds[i]->text)
			roff_text(f, cmds[i]->text);
		for (s = cmds[i]->subs; s->name || s == cmds[i]->subs; s++) {
			if (s->name) {
				fprintf(f, ".SS \"uffdwp %s %s\"\n", cmds[i]->name, s->name);
				roff_text(f, s->summary);
			}
			if (s->text)
				roff_text(f, s->text);
			if (!s->name)
				break;
		}
		fputs(".SS Options\n", f);
		for (o = cmds[i]->opts; o->name; o++)
			man_opt(f, o);
	}
	fputs(".SH \"EXIT STATUS\"\n", f);
	roff_text(f, cli_exit_codes + strlen("exit status: "));
	fputs(".SH FILES\n", f);
	roff_text(f, "/run/uffdwp/PIDNS-PID.sock, .lock, .log: the holder of process PID in the "
		     "pid namespace of inode PIDNS (root only). A log stays if it says "
		     "something, for a week after its holder is gone.");
	fputs(".SH ENVIRONMENT\n", f);
	roff_text(f, "UFFDWP_NO_FORK_EVENTS=1 runs the tracker as if the proc connector sent no "
		     "fork events (shared memory then counts as written at every scan).");
	roff_text(f, "UFFDWP_PROGRESS_DELAY=SECONDS: how long snap, img merge and img flatten "
		     "work before they show progress on a terminal (default 0.5; 0 shows it at "
		     "once).");
	fputs(".SH \"SEE ALSO\"\n.BR criu (8),\n.BR zstd (1),\n.BR userfaultfd (2)\n", f);
}
