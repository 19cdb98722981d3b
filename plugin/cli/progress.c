// SPDX-License-Identifier: GPL-2.0
/*
 * Progress of long commands (snap, img merge, img flatten) on stderr: on a
 * terminal only, never with --json, and always to the end of what it showed,
 * so the last line of a phase reads 100 %.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/*
 * Nothing for work that is over sooner (UFFDWP_PROGRESS_DELAY seconds, as
 * git's GIT_PROGRESS_DELAY); then a redraw at most this often.
 */
#define FIRST_NS (500ULL * 1000 * 1000)
#define EVERY_NS (200ULL * 1000 * 1000)

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void cli_progress__init(struct cli_progress *p)
{
	const char *env;
	double delay;

	memset(p, 0, sizeof(*p));
	p->on = !cli_json && isatty(STDERR_FILENO);
	p->start_ns = mono_ns();
	p->delay_ns = FIRST_NS;
	env = getenv("UFFDWP_PROGRESS_DELAY");
	if (env && !cli_num__double(env, 0, 3600, &delay))
		p->delay_ns = (uint64_t)(delay * 1e9);
}

static void draw(struct cli_progress *p, uint64_t done, uint64_t total)
{
	fprintf(stderr, "\r%s: %3.0f%% (%.1f of %.1f MiB)\033[K", p->what,
		total ? 100.0 * done / total : 100.0, done / 1048576.0, total / 1048576.0);
	p->shown = true;
}

void cli_progress__show(struct cli_progress *p, const char *what, uint64_t done, uint64_t total)
{
	uint64_t now;

	if (!p->on)
		return;
	now = mono_ns();
	if (p->what != what) {
		/* A phase shown stays on its line, at its end; the next starts below. */
		if (p->shown) {
			draw(p, p->total, p->total);
			fputc('\n', stderr);
			p->shown = false;
		}
		p->what = what;
	}
	p->done = done;
	p->total = total;
	/* Nothing to do in this phase, or over before it was worth a line. */
	if (!total || (now - p->start_ns < p->delay_ns && !p->shown))
		return;
	if (done < total && p->shown && now - p->last_ns < EVERY_NS)
		return;
	p->last_ns = now;
	draw(p, done, total);
}

void cli_progress__end(struct cli_progress *p)
{
	if (!p->on || !p->shown)
		return;
	/* Over: whatever the last report said, the work is done. */
	draw(p, p->total, p->total);
	fputc('\n', stderr);
	p->shown = false;
}
