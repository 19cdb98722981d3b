// SPDX-License-Identifier: GPL-2.0
/*
 * The end of the source's migration: the cut-over in two steps, the end
 * of a lazy cut-over, and the rollback that leaves the source as it was.
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

#include "track/holder.h"
#include "base/log.h"
#include "base/procfs.h"
#include "source.h"

int src__signal_tree(pid_t root, int sig)
{
	pid_t *pids = NULL;
	int n, i, bad = 0;

	n = uffdwp_proc_tree(root, true, &pids);
	if (n < 0)
		return n == -ESRCH ? 0 : 1;
	for (i = 0; i < n; i++)
		if (kill(pids[i], sig) && errno != ESRCH)
			bad++;
	free(pids);
	return bad;
}

/*
 * Undo what was done: the destination cleans up, the tasks run again,
 * tracking stops and the huge pages it split are collapsed back.
 */
int src__rollback(struct src *s)
{
	struct uffdwp_migrate_event ev = {.kind = MIG_EV_ROLLBACK};
	struct uffdwp_stop_stats st;
	bool serving = mig_child__running(&s->lazy_dump);
	struct mig_out out;
	struct mig_msg m;
	char msg[512];
	int bad = 0, err;
	size_t len = 0;

	/*
	 * A final dump held in its post-dump action: told no, CRIU undoes its
	 * locks and resumes the tasks itself.
	 */
	if (s->held_dump.pid > 0) {
		err = src__hook_answer(s, false);
		len +=
		    snprintf(msg + len, sizeof(msg) - len, "%s; ",
			     err == -ETIMEDOUT ? "criu dump killed after 30 s"
					       : "criu dump undid its locks and resumed the tasks");
	}
	/*
	 * Without GO the destination never runs the tree: resume ours first,
	 * not after the destination's answer, which may be long in coming.
	 * A post-copy dump still serving holds the tasks until it ends.
	 */
	if (s->stopped && !serving) {
		bad = src__signal_tree(s->o->pid, SIGCONT);
		s->stopped = bad != 0;
		len += snprintf(msg + len, sizeof(msg) - len, "%s; ",
				bad ? "could not resume every task" : "tasks resumed");
	}
	if (s->ctl >= 0) {
		mig_out__init(&out, "ABORT");
		if (!mig_out__send(&out, s->ctl) &&
		    !mig_recv(s->ctl, &m, s->io_ms < 30000 ? s->io_ms : 30000, -1) &&
		    !strcmp(m.verb, "OK"))
			len += snprintf(msg + len, sizeof(msg) - len, "destination cleaned up; ");
		else
			len += snprintf(msg + len, sizeof(msg) - len,
					"destination not reached (it cleans up by itself when the "
					"connection drops); ");
	}
	if (serving) {
		/*
		 * The destination closed its end of the page connection, so CRIU
		 * ends the transfer. It takes a closed connection for the end of
		 * the pages and leaves the tasks stopped (--leave-stopped), or
		 * fails and resumes them: either way they get SIGCONT, which a
		 * running task ignores.
		 */
		if (mig_child__wait(&s->lazy_dump, 30000, NULL) == -ETIMEDOUT)
			len += snprintf(msg + len, sizeof(msg) - len, "post-copy dump killed; ");
		bad = src__signal_tree(s->o->pid, SIGCONT);
		s->stopped = bad != 0;
		len += snprintf(msg + len, sizeof(msg) - len, "%s; ",
				bad ? "could not resume every task" : "tasks resumed");
	}
	err = s->o->track ? uffdwp_holder_stop(s->o->pid, 1, &st) : -ENOENT;
	if (!err)
		len += snprintf(
		    msg + len, sizeof(msg) - len,
		    "tracking stopped, %.1f of %.1f MiB of split huge pages collapsed back",
		    st.thp_recollapsed_bytes / 1048576.0, st.thp_split_bytes / 1048576.0);
	else if (err == -ENOENT || err == -ECONNREFUSED)
		len += snprintf(msg + len, sizeof(msg) - len, "not tracked");
	else
		len += snprintf(msg + len, sizeof(msg) - len, "stopping tracking failed: %s",
				uffdwp_strerror(-err));
	ev.reason = s->rep->error;
	ev.message = msg;
	src__emit(s, &ev);
	/* Still stopped, or still tracked: not as it was. */
	if (bad || (err && err != -ENOENT && err != -ECONNREFUSED))
		return MIG_ROLLBACK_FAILED;
	return MIG_ROLLED_BACK;
}

/*
 * The cut-over after the final dump, in two steps. The restore: the
 * destination restores the tree and keeps it stopped (RESTORED), while an
 * eager final dump waits in its post-dump action; told "go" then, CRIU
 * ends with the tasks stopped. A failure up to here is a rollback in which
 * CRIU itself resumes the tasks. Then GO: the destination lets the tree
 * run and says RUNNING, and only then is the source killed. A connection
 * lost between GO and RUNNING leaves the source stopped: the tree may run
 * on the destination, and two running copies would be worse than a
 * stopped one.
 */
int src__restore(struct src *s, unsigned int n, struct run_result *r)
{
	struct mig_out out;
	struct mig_msg m;
	char why[512];
	uint64_t v;
	int rc;

	mig_out__init(&out, "RESTORE");
	mig_out__u64(&out, "n", n);
	s->rep->images_ms = (src__now() - s->dump_end_s) * 1e3;
	if (src__send(s, &out) || src__answer(s, "RESTORED", &m, s->o->timeout_s * 1000))
		return -1;
	if (!mig_msg__u64(&m, "restore_us", &v))
		s->rep->restore_ms = v / 1e3;
	if (s->held_dump.pid <= 0)
		return 0;
	/* The destination has it, stopped: now CRIU may keep its dump. */
	rc = src__hook_answer(s, true);
	r->criu_end_s = src__now();
	if (rc) {
		mig_log_reason(s->final_dirfd, "dump.log", why, sizeof(why));
		return src__fail(
		    s,
		    "criu dump failed after the destination restored the tree (exit %d): "
		    "%s; CRIU resumed the source tree",
		    rc, why[0] ? why : "no log");
	}
	if (mig_read_dump_stats(s->final_dirfd, &r->st))
		memset(&r->st, 0, sizeof(r->st));
	r->bytes += (r->st.pages_written + r->st.shpages_written) * PAGE_BYTES;
	return 0;
}

int src__go(struct src *s)
{
	struct uffdwp_migrate_event ev = {.kind = MIG_EV_RUNNING};
	struct mig_out out;
	struct mig_msg m;
	uint64_t v;

	mig_out__init(&out, "GO");
	if (src__send(s, &out))
		return -1;
	s->cut = true;
	if (src__answer(s, "RUNNING", &m, s->io_ms))
		return -1;
	s->running_s = src__now();
	s->rep->dest_pid = mig_msg__u64(&m, "pid", &v) ? 0 : (pid_t)v;
	src__emit(s, &ev);
	return 0;
}

/*
 * A lazy cut-over (--postcopy, --lazy-restore): the destination's tree runs
 * before its memory is all there, and is whole only once its criu
 * lazy-pages has every page. Its word on that (PAGES rc=) decides what
 * becomes of the source, not our own dump's exit: CRIU's lazy dump also
 * ends well when the page connection just closes. rc=0: the source is
 * killed (by the caller), even if our dump then failed and CRIU resumed
 * it. rc!=0: the destination killed its tree, the source runs again from
 * the cut-over. No word: nobody knows, the source stays stopped.
 * Interrupts are not taken now: the pages may live here.
 */
int src__lazy_end(struct src *s, struct run_result *r)
{
	struct uffdwp_stop_stats st;
	char why[512] = "";
	const char *dmsg;
	struct mig_msg m;
	int rc = 0, err;
	uint64_t v;

	if (s->o->postcopy) {
		rc = mig_child__wait(&s->lazy_dump, s->o->timeout_s * 1000, NULL);
		r->criu_end_s = src__now();
		s->rep->postcopy_ms = (r->criu_end_s - s->running_s) * 1e3;
		if (rc)
			mig_log_reason(s->final_dirfd, "dump.log", why, sizeof(why));
		else if (mig_read_dump_stats(s->final_dirfd, &r->st))
			memset(&r->st, 0, sizeof(r->st));
		/* Serving or not, CRIU left the tasks stopped (or resumed them). */
		s->stopped = !rc;
	}
	info(s, "waiting for the destination to have every page");
	err = mig_recv(s->ctl, &m, s->o->timeout_s * 1000, -1);
	if (!err && strcmp(m.verb, "PAGES"))
		err = -EBADMSG;
	if (err) {
		if (!s->stopped)
			s->stopped = !src__signal_tree(s->o->pid, SIGSTOP);
		snprintf(s->rep->error, sizeof(s->rep->error),
			 "no word from the destination on its pages after the cut-over (%s): "
			 "whether its tree is whole is unknown, so the source %s; check the "
			 "destination before resuming it (kill -CONT) or killing it%s%s",
			 err == -EBADMSG ? m.verb : uffdwp_strerror(-err),
			 s->stopped ? "is stopped" : "could not be stopped",
			 rc ? " (criu dump here failed too: " : "", rc ? why : "");
		if (rc)
			strncat(s->rep->error, ")",
				sizeof(s->rep->error) - strlen(s->rep->error) - 1);
		return MIG_ROLLBACK_FAILED;
	}
	if (!mig_msg__u64(&m, "rc", &v) && v == 0) {
		if (rc)
			info(s,
			     "warning: criu dump here exited %d after the destination had every "
			     "page (%s); the source is killed all the same",
			     rc, why[0] ? why : "no log");
		return MIG_OK;
	}
	dmsg = mig_msg__get(&m, "msg");
	if (s->stopped)
		s->stopped = src__signal_tree(s->o->pid, SIGCONT) != 0;
	uffdwp_holder_stop(s->o->pid, 1, &st);
	if (rc)
		snprintf(s->rep->error, sizeof(s->rep->error),
			 "post-copy failed after the cut-over (criu dump exit %d: %s): the pages "
			 "the destination's tree had not got yet were here, so that tree is lost; "
			 "CRIU resumed the source tree, which goes on from the moment of the "
			 "cut-over (what the destination's tree did meanwhile is lost)",
			 rc, why[0] ? why : "no log");
	else
		snprintf(
		    s->rep->error, sizeof(s->rep->error),
		    "%s failed after the cut-over on the destination (%s), which killed its "
		    "tree; %s from the moment of the cut-over (what the destination's tree did "
		    "meanwhile is lost)",
		    s->o->postcopy ? "post-copy" : "lazy restore",
		    dmsg ? dmsg : "criu lazy-pages failed",
		    s->stopped ? "the source tree could not be resumed: it is stopped"
			       : "the source tree runs again, untracked,");
	return MIG_POSTCOPY_FAILED;
}
