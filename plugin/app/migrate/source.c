// SPDX-License-Identifier: GPL-2.0
/*
 * The source side of a migration: pre-dumps until the model says stop, the
 * final dump with the tasks left stopped, the two-step cut-over, and the
 * rollback when anything fails before the destination runs. This file has
 * the loop; one CRIU run is in source_run.c, the cut-over and the rollback
 * in source_cut.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "dirs.h"
#include "base/log.h"
#include "source.h"
#include "track/holder.h"

double src__now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void src__emit(struct src *s, struct uffdwp_migrate_event *ev)
{
	mig_event__emit(s->o->cb, s->o->cb_arg, ev);
}

int src__fail(struct src *s, const char *fmt, ...)
{
	va_list ap;

	if (s->rep->error[0])
		return -1;
	va_start(ap, fmt);
	vsnprintf(s->rep->error, sizeof(s->rep->error), fmt, ap);
	va_end(ap);
	return -1;
}

bool src__interrupted(struct src *s)
{
	return s->o->signals && *s->o->signals > 0;
}

int src__answer(struct src *s, const char *want, struct mig_msg *m, int timeout_ms)
{
	const char *why;
	int err;

	err = mig_recv(s->ctl, m, timeout_ms, -1);
	if (err)
		return src__fail(s, "the destination %s",
				 err == -ECONNRESET  ? "closed the connection"
				 : err == -ETIMEDOUT ? "did not answer in time"
						     : uffdwp_strerror(-err));
	if (!strcmp(m->verb, "ERR")) {
		why = mig_msg__get(m, "msg");
		return src__fail(s, "the destination: %s", why ? why : "failed");
	}
	if (strcmp(m->verb, want))
		return src__fail(s, "the destination answered %s, not %s", m->verb, want);
	return 0;
}

int src__send(struct src *s, struct mig_out *out)
{
	int err = mig_out__send(out, s->ctl);

	if (err)
		return src__fail(s, "cannot talk to the destination: %s", uffdwp_strerror(-err));
	return 0;
}

static int hello(struct src *s)
{
	const struct uffdwp_migrate_opts *o = s->o;
	struct mig_out out;
	struct mig_msg m;

	s->ctl = mig_connect(o->to, s->io_ms);
	if (s->ctl < 0)
		return src__fail(s, "cannot connect to %s: %s", o->to, uffdwp_strerror(-s->ctl));
	mig_out__init(&out, "HELLO");
	mig_out__u64(&out, "v", MIG_PROTO_VERSION);
	mig_out__u64(&out, "track", o->track);
	mig_out__u64(&out, "plugin_pages", o->plugin_pages);
	mig_out__u64(&out, "tcp_established", o->tcp_established);
	mig_out__u64(&out, "shell_job", o->shell_job);
	mig_out__u64(&out, "postcopy", o->postcopy);
	mig_out__u64(&out, "lazy_restore", o->lazy_restore);
	if (src__send(s, &out) || src__answer(s, "OK", &m, s->io_ms))
		return -1;
	return 0;
}

static void run_event(struct src *s, unsigned int n, bool final, const struct run_result *r)
{
	struct uffdwp_migrate_event ev = {
	    .kind = MIG_EV_ITERATION,
	    .iter = n,
	    .final = final,
	    .pages = r->st.pages_written + r->st.shpages_written,
	    .bytes = r->bytes,
	    .duration_ms = (r->end_s - r->start_s) * 1e3,
	    .frozen_ms = r->st.frozen_us / 1e3,
	    .dirty_rate = s->model.dirty_rate,
	    .bandwidth = s->model.bandwidth,
	    .predicted_ms = final ? -1 : s->model.predicted_ms,
	    .predicted_pages = s->model.predicted_pages,
	};

	src__emit(s, &ev);
}

static int make_work_dir(struct src *s)
{
	const char *base = getenv("TMPDIR");
	int err;

	if (s->o->work_dir) {
		snprintf(s->work, sizeof(s->work), "%s", s->o->work_dir);
		if (!mkdir(s->work, 0700))
			s->made_work = true;
		else if (errno != EEXIST)
			return src__fail(s, "cannot make %s: %s", s->work, uffdwp_strerror(errno));
		/* A migration that succeeds removes its work directory, all of it. */
		err = mig_dir_is_empty(s->work);
		if (err != 1)
			return src__fail(
			    s, "-W %s: %s", s->work,
			    err ? uffdwp_strerror(-err)
				: "not empty (-W takes a new or empty directory, which a "
				  "migration that succeeds removes)");
	} else {
		snprintf(s->work, sizeof(s->work), "%s/uffdwp-migrate.XXXXXX",
			 base && *base ? base : "/var/tmp");
		if (!mkdtemp(s->work))
			return src__fail(s, "cannot make %s: %s", s->work, uffdwp_strerror(errno));
		s->made_work = true;
	}
	s->workfd = open(s->work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->workfd < 0)
		return src__fail(s, "%s: %s", s->work, uffdwp_strerror(errno));
	return 0;
}

int uffdwp_migrate__source(const struct uffdwp_migrate_opts *o, struct uffdwp_migrate_report *rep)
{
	struct uffdwp_migrate_event ev = {.kind = MIG_EV_CUTOVER};
	struct src s = {.o = o,
			.rep = rep,
			.ctl = -1,
			.workfd = -1,
			.lazy_dump = {.pid = -1},
			.held_dump = {.pid = -1},
			.hook_req = -1,
			.hook_ans = -1,
			.final_dirfd = -1};
	struct mig_out out;
	enum mig_stop stop = MIG_STOP_MAX_ITERS;
	struct run_result r;
	struct mig_run run;
	unsigned int n = 0;
	double freeze_s, t;
	int err;
	int ret;

	memset(rep, 0, sizeof(*rep));
	s.io_ms = o->timeout_s * 1000;
	s.t0 = src__now();
	mig_model__init(&s.model, o->max_downtime_ms, o->max_iters, o->restore_est_ms);
	if (kill(o->pid, 0)) {
		src__fail(&s, "no process %d: %s", o->pid, uffdwp_strerror(errno));
		return MIG_USAGE;
	}
	/*
	 * A holder that runs already (uffdwp track or snap, a CRIU pre-dump)
	 * would be taken over, its scans committed and at a rollback stopped:
	 * its user would lose what it tracks. Leave it alone instead.
	 */
	err = o->track ? uffdwp_holder_running(o->pid) : 0;
	if (err > 0) {
		src__fail(&s,
			  "%d is tracked already (holder %d: uffdwp track or snap, or a CRIU "
			  "pre-dump); migrate tracks it itself: stop that first (uffdwp track "
			  "stop -t %d), or pass --no-track",
			  o->pid, err, o->pid);
		return MIG_USAGE;
	}
	if (o->postcopy) {
		char why[512];

		if (mig_postcopy_problem(why, sizeof(why)) == 1) {
			src__fail(&s, "%s", why);
			return MIG_USAGE;
		}
	}
	if (make_work_dir(&s))
		return MIG_USAGE;
	info(&s, "local images in %s", s.work);
	if (hello(&s))
		goto rollback;

	/* Pre-copy. */
	while (n < o->max_iters) {
		if (src__interrupted(&s)) {
			src__fail(&s, "interrupted");
			goto rollback;
		}
		n++;
		if (src__run_criu(&s, n, false, &r))
			goto rollback;
		if (n == 1) {
			rep->memory_bytes =
			    (r.st.pages_scanned + r.st.shpages_scanned) * PAGE_BYTES;
			if (o->restore_est_ms < 0)
				s.model.restore_est_ms = mig_model__restore_ms(
				    rep->memory_bytes / PAGE_BYTES, o->lazy_restore || o->postcopy);
		}
		run = (struct mig_run){
		    .start_s = r.start_s,
		    .end_s = r.end_s,
		    .frozen_ms = r.st.frozen_us / 1e3,
		    .memdump_ms = r.st.memdump_us / 1e3,
		    .memwrite_ms = r.st.memwrite_us / 1e3,
		    .pages = r.st.pages_written + r.st.shpages_written,
		};
		stop = mig_model__add(&s.model, &run, src__now());
		rep->pages_sent += run.pages;
		rep->bytes_sent += r.bytes;
		run_event(&s, n, false, &r);
		if (stop != MIG_GO_ON)
			break;
	}
	rep->stop_reason = o->max_iters ? mig_stop__str(stop) : "no pre-copy (stop-and-copy)";
	rep->predicted_ms = s.model.predicted_ms;
	ev.iter = n;
	ev.reason = rep->stop_reason;
	ev.predicted_ms = s.model.predicted_ms;
	ev.predicted_pages = s.model.predicted_pages;
	src__emit(&s, &ev);
	if (src__interrupted(&s)) {
		src__fail(&s, "interrupted");
		goto rollback;
	}

	/* The final dump: the tasks stay stopped until the destination runs them. */
	n++;
	if (src__run_criu(&s, n, true, &r))
		goto rollback;
	s.dump_end_s = r.criu_end_s;
	rep->iterations = n;
	if (src__interrupted(&s)) {
		src__fail(&s, "interrupted");
		goto rollback;
	}
	if (src__restore(&s, n, &r))
		goto rollback;
	if (!rep->memory_bytes) /* stop-and-copy: the dump found it */
		rep->memory_bytes = (r.st.pages_scanned + r.st.shpages_scanned) * PAGE_BYTES;
	if (!o->postcopy)
		run_event(&s, n, true, &r);
	if (src__go(&s))
		goto rollback;
	if (o->postcopy || o->lazy_restore) {
		ret = src__lazy_end(&s, &r);
		if (ret != MIG_OK)
			goto out;
	}
	/*
	 * When the freeze began, by CRIU's log; else by its stats, freezing +
	 * frozen time before it ended (a lazy dump's stats are all zero).
	 */
	if (!mig_log_time(s.final_dirfd, "dump.log", MIG_LOG_FREEZE, &t))
		freeze_s = r.start_s + t;
	else /* a lazy dump's end is when it was ready, not when it served the last page */
		freeze_s = (o->postcopy ? s.dump_end_s : r.criu_end_s) -
			   (r.st.freezing_us + r.st.frozen_us) / 1e6;
	rep->downtime_ms = (s.running_s - freeze_s) * 1e3;
	/* The dump's own part: until its images were written (not the restore it waited for). */
	rep->frozen_ms =
	    o->postcopy || s.held ? (s.dump_end_s - freeze_s) * 1e3 : r.st.frozen_us / 1e3;
	if (rep->downtime_ms < 0)
		rep->downtime_ms = 0;
	if (rep->frozen_ms < 0)
		rep->frozen_ms = 0;
	rep->pages_sent += r.st.pages_written + r.st.shpages_written + r.st.pages_lazy;
	rep->bytes_sent += r.bytes + r.st.pages_lazy * PAGE_BYTES;
	if (o->postcopy) {
		/* A lazy dump's stats are all zero (CRIU resets them to serve). */
		r.st.frozen_us = (uint32_t)(rep->frozen_ms * 1e3);
		run_event(&s, n, true, &r);
	}
	src__signal_tree(o->pid, SIGKILL);
	s.stopped = false;
	/* Gone, not only signalled, when we say so: its resources are free. */
	err = mig_wait_gone(o->pid, 10000);
	if (err)
		info(&s, "warning: the source tree's root %d did not exit after SIGKILL: %s",
		     o->pid, uffdwp_strerror(-err));
	else
		info(&s, "source tree killed");
	mig_out__init(&out, "BYE");
	mig_out__send(&out, s.ctl);
	rep->total_ms = (src__now() - s.t0) * 1e3;
	if (s.final_dirfd >= 0)
		close(s.final_dirfd);
	close(s.ctl);
	close(s.workfd);
	src__close_hook(&s);
	if (!o->keep)
		mig_remove_dir(s.work);
	return MIG_OK;

rollback:
	if (s.cut) {
		/* GO went out: the destination may run it; keep ours stopped. */
		info(&s, "the connection was lost after the destination was told to run the "
			 "tree: the source stays stopped; check the destination before resuming "
			 "it (kill -CONT) or killing it");
		ret = MIG_ROLLBACK_FAILED;
	} else {
		ret = src__rollback(&s);
	}
out:
	if (s.final_dirfd >= 0)
		close(s.final_dirfd);
	rep->iterations = n;
	rep->total_ms = (src__now() - s.t0) * 1e3;
	if (s.ctl >= 0)
		close(s.ctl);
	if (s.workfd >= 0)
		close(s.workfd);
	src__close_hook(&s);
	/* Failed before any CRIU run wrote there: nothing to keep. */
	if (s.made_work && mig_dir_is_empty(s.work) == 1 && !rmdir(s.work))
		info(&s, "nothing was written into %s: removed", s.work);
	else
		info(&s, "local images and CRIU logs kept in %s", s.work);
	return ret;
}
