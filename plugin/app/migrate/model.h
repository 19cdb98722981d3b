/* SPDX-License-Identifier: GPL-2.0 */
/*
 * When to stop pre-copying. After each pre-dump the model knows how many
 * pages were written between two scans (the dirty rate), how fast pages
 * went to the destination (the bandwidth), and what a run costs while the
 * tasks are frozen besides copying pages. From that it predicts the final
 * dump's downtime if it started now, and says stop when that is below the
 * limit, when an iteration no longer shrinks the dirty set (a workload
 * writing faster than the link carries), or at the iteration limit.
 * Pure arithmetic on what CRIU measured: no I/O here.
 */
#ifndef UFFDWP_MIG_MODEL_H__
#define UFFDWP_MIG_MODEL_H__

#include <stdbool.h>
#include <stdint.h>

enum mig_stop {
	MIG_GO_ON,
	MIG_STOP_CONVERGED,	/* the predicted downtime is below the limit */
	MIG_STOP_NOT_SHRINKING, /* this iteration sent as much as the one before */
	MIG_STOP_MAX_ITERS,	/* as many pre-dumps as allowed */
};

/* One CRIU run, as the model needs it. */
struct mig_run {
	double start_s;	    /* monotonic, when CRIU was started */
	double end_s;	    /* when its pages were at the destination */
	double frozen_ms;   /* CRIU's frozen time */
	double memdump_ms;  /* of it, collecting pages */
	double memwrite_ms; /* sending pages (after the tasks ran again) */
	uint64_t pages;	    /* pages sent */
};

struct mig_model {
	/* Set by the caller. */
	double max_downtime_ms;
	unsigned int max_iters;
	double restore_est_ms;
	/* Derived. */
	unsigned int nr; /* runs accounted */
	struct mig_run prev, last;
	double sent_bytes; /* for the bandwidth: pages with a measured send */
	double send_s;
	double dirty_rate;   /* pages/s; 0 until two runs */
	double bandwidth;    /* bytes/s; 0 until measured */
	double predicted_ms; /* < 0: not predictable yet */
	uint64_t predicted_pages;
};

void mig_model__init(struct mig_model *m, double max_downtime_ms, unsigned int max_iters,
		     double restore_est_ms);
/*
 * The destination's restore, when the user gave no estimate: a fixed cost
 * (CRIU's start, the tree's tasks, the control messages), and for an eager
 * restore the copy of each of @memory_pages while the tree is stopped.
 */
double mig_model__restore_ms(uint64_t memory_pages, bool lazy);
/* Account pre-dump @r, finished at @now_s; returns whether to stop. */
enum mig_stop mig_model__add(struct mig_model *m, const struct mig_run *r, double now_s);
/* The words for a stop reason. */
const char *mig_stop__str(enum mig_stop s);

#endif /* UFFDWP_MIG_MODEL_H__ */
