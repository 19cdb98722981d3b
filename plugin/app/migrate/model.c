// SPDX-License-Identifier: GPL-2.0
/* The pre-copy convergence model (model.h; docs/migrate.md derives it). */
#include <string.h>

#include "model.h"

#define PAGE_BYTES 4096.0
/* A send shorter than this says more about timer resolution than the link. */
#define MIN_SEND_MS 2.0

void mig_model__init(struct mig_model *m, double max_downtime_ms, unsigned int max_iters,
		     double restore_est_ms)
{
	memset(m, 0, sizeof(*m));
	m->max_downtime_ms = max_downtime_ms;
	m->max_iters = max_iters;
	m->restore_est_ms = restore_est_ms;
	m->predicted_ms = -1;
}

/*
 * Measured here (scripts/bench-migrate, 256 MiB): an eager restore took
 * 340-410 ms, 5-6 us a page; a lazy one 40-65 ms besides lazy-pages' start.
 */
#define RESTORE_FIXED_MS	  50.0
#define RESTORE_EAGER_MS_PER_PAGE 0.005

double mig_model__restore_ms(uint64_t memory_pages, bool lazy)
{
	return RESTORE_FIXED_MS + (lazy ? 0 : memory_pages * RESTORE_EAGER_MS_PER_PAGE);
}

enum mig_stop mig_model__add(struct mig_model *m, const struct mig_run *r, double now_s)
{
	double overhead_ms, per_page_ms, since_s;

	m->prev = m->last;
	m->last = *r;
	m->nr++;
	if (r->memwrite_ms >= MIN_SEND_MS && r->pages) {
		m->sent_bytes += r->pages * PAGE_BYTES;
		m->send_s += r->memwrite_ms / 1e3;
		m->bandwidth = m->sent_bytes / m->send_s;
	}
	/*
	 * Run k sent what was written between scan k-1 and scan k. Both scans
	 * come at the same point of their runs, so the time between the starts
	 * is the time between the scans.
	 */
	if (m->nr >= 2 && r->start_s > m->prev.start_s)
		m->dirty_rate = r->pages / (r->start_s - m->prev.start_s);
	if (m->nr >= 2 && m->bandwidth > 0) {
		/*
		 * The final dump sends what is written from this run's scan to
		 * its own: since this run started, and again as long as a run
		 * takes to reach its scan (its frozen time besides the copy).
		 * While frozen it costs what this run cost besides the pages,
		 * then per page the collection and the send.
		 */
		overhead_ms = r->frozen_ms - r->memdump_ms;
		if (overhead_ms < 0)
			overhead_ms = 0;
		since_s = now_s - r->start_s + overhead_ms / 1e3;
		m->predicted_pages = (uint64_t)(m->dirty_rate * since_s + 0.5);
		per_page_ms =
		    (r->pages ? r->memdump_ms / r->pages : 0) + PAGE_BYTES / m->bandwidth * 1e3;
		m->predicted_ms =
		    overhead_ms + m->predicted_pages * per_page_ms + m->restore_est_ms;
	}
	if (m->predicted_ms >= 0 && m->predicted_ms <= m->max_downtime_ms)
		return MIG_STOP_CONVERGED;
	if (m->nr >= 2 && r->pages >= m->prev.pages)
		return MIG_STOP_NOT_SHRINKING;
	if (m->nr >= m->max_iters)
		return MIG_STOP_MAX_ITERS;
	return MIG_GO_ON;
}

const char *mig_stop__str(enum mig_stop s)
{
	switch (s) {
	case MIG_GO_ON:
		return "not stopped";
	case MIG_STOP_CONVERGED:
		return "predicted downtime under the limit";
	case MIG_STOP_NOT_SHRINKING:
		return "the dirty set no longer shrinks (writes outpace the link)";
	case MIG_STOP_MAX_ITERS:
		return "iteration limit reached";
	}
	return "?";
}
