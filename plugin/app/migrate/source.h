/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The source side of a migration, private to its three files: source.c
 * (the pre-copy loop and the whole run), source_run.c (one CRIU run and
 * its images sent across, the final dump's post-dump action) and
 * source_cut.c (the cut-over, the end of a lazy one, and the rollback).
 */
#ifndef UFFDWP_MIG_SOURCE_H__
#define UFFDWP_MIG_SOURCE_H__

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "criu_run.h"
#include "events.h"
#include "migrate.h"
#include "model.h"
#include "wire.h"

#define PAGE_BYTES 4096
#define MAX_ARGS   64

struct src {
	const struct uffdwp_migrate_opts *o;
	struct uffdwp_migrate_report *rep;
	int ctl;
	int workfd;
	char work[PATH_MAX];
	bool made_work;	   /* the work directory is ours: made by this run */
	int io_ms;	   /* how long one answer of the destination may take */
	bool stopped;	   /* the final dump left the tasks stopped */
	bool cut;	   /* GO was sent: the destination may run the tree */
	double dump_end_s; /* when the final dump's CRIU ended (post-copy: began serving) */
	double running_s;  /* when the destination said RUNNING */
	struct mig_child lazy_dump; /* post-copy: the final dump, serving pages */
	struct mig_child held_dump; /* the final dump, waiting in its post-dump action */
	int hook_req, hook_ans;	    /* its FIFOs: "ready" from the action, our word back */
	bool held;		    /* the final dump was held so (its stats include the restore) */
	int final_dirfd;	    /* the final dump's local directory */
	double t0;
	struct mig_model model;
};

/* What one CRIU run did: its stats, when it began and ended, what it sent. */
struct run_result {
	struct mig_dump_stats st;
	double start_s, criu_end_s, end_s;
	uint64_t bytes;
};

#define info(s, ...) mig_event__info((s)->o->cb, (s)->o->cb_arg, __VA_ARGS__)

double src__now(void);
void src__emit(struct src *s, struct uffdwp_migrate_event *ev);
/* Record what failed (the first failure is the one to report); returns -1. */
int src__fail(struct src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether a SIGINT, SIGTERM or SIGHUP came. */
bool src__interrupted(struct src *s);
/* Wait for the destination's answer to what was just sent: OK-like verb @want. */
int src__answer(struct src *s, const char *want, struct mig_msg *m, int timeout_ms);
/* Send @out on the control connection; a failure is recorded. */
int src__send(struct src *s, struct mig_out *out);

/*
 * One CRIU run, pre-dump or the final dump, into local directory @n with
 * its pages through the destination's page server, then its local files
 * over: the destination has all of run @n when this returns 0. An eager
 * final dump returns held in its post-dump action (s->held_dump), its
 * stats not yet written.
 */
int src__run_criu(struct src *s, unsigned int n, bool final, struct run_result *res);
/*
 * Our word to the final dump held in its post-dump action; then wait for
 * CRIU to end. Returns its exit code: 0 after "go" leaves the tasks
 * stopped; anything else (and any answer but "go") has them running again.
 */
int src__hook_answer(struct src *s, bool go);
void src__close_hook(struct src *s);

/* Signal every task of the tree; returns how many could not be. */
int src__signal_tree(pid_t root, int sig);
/* RESTORE, RESTORED, then the held final dump told "go" (its stats read into @r). */
int src__restore(struct src *s, unsigned int n, struct run_result *r);
/* GO, RUNNING: from here the destination may run the tree. */
int src__go(struct src *s);
/* After a lazy cut-over: the destination's PAGES decides. Returns a MIG_* code. */
int src__lazy_end(struct src *s, struct run_result *r);
/* Undo everything before GO; returns MIG_ROLLED_BACK or MIG_ROLLBACK_FAILED. */
int src__rollback(struct src *s);

#endif /* UFFDWP_MIG_SOURCE_H__ */
