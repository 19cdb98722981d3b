// SPDX-License-Identifier: GPL-2.0
/*
 * The source side of a migration: pre-dumps until the model says stop, the
 * final dump with the tasks left stopped, the two-step cut-over, and the
 * rollback when anything fails before the destination runs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "criu_run.h"
#include "events.h"
#include "dirs.h"
#include "track/holder.h"
#include "base/log.h"
#include "migrate.h"
#include "model.h"
#include "base/procfs.h"
#include "wire.h"

#define PAGE_BYTES 4096
#define MAX_ARGS   64

struct src {
	const struct uffdwp_migrate_opts *o;
	struct uffdwp_migrate_report *rep;
	int ctl;
	int workfd;
	char work[PATH_MAX];
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

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void emit(struct src *s, struct uffdwp_migrate_event *ev)
{
	mig_event__emit(s->o->cb, s->o->cb_arg, ev);
}

#define info(s, ...) mig_event__info((s)->o->cb, (s)->o->cb_arg, __VA_ARGS__)

/* Record what failed (the first failure is the one to report); returns -1. */
static int fail(struct src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct src *s, const char *fmt, ...)
{
	va_list ap;

	if (s->rep->error[0])
		return -1;
	va_start(ap, fmt);
	vsnprintf(s->rep->error, sizeof(s->rep->error), fmt, ap);
	va_end(ap);
	return -1;
}

static bool interrupted(struct src *s)
{
	return s->o->signals && *s->o->signals > 0;
}

/* Wait for the destination's answer to what was just sent: OK-like verb @want. */
static int answer(struct src *s, const char *want, struct mig_msg *m, int timeout_ms)
{
	const char *why;
	int err;

	err = mig_recv(s->ctl, m, timeout_ms, -1);
	if (err)
		return fail(s, "the destination %s",
			    err == -ECONNRESET	? "closed the connection"
			    : err == -ETIMEDOUT ? "did not answer in time"
						: uffdwp_strerror(-err));
	if (!strcmp(m->verb, "ERR")) {
		why = mig_msg__get(m, "msg");
		return fail(s, "the destination: %s", why ? why : "failed");
	}
	if (strcmp(m->verb, want))
		return fail(s, "the destination answered %s, not %s", m->verb, want);
	return 0;
}

static int send_line(struct src *s, struct mig_out *out)
{
	int err = mig_out__send(out, s->ctl);

	if (err)
		return fail(s, "cannot talk to the destination: %s", uffdwp_strerror(-err));
	return 0;
}

static int hello(struct src *s)
{
	const struct uffdwp_migrate_opts *o = s->o;
	struct mig_out out;
	struct mig_msg m;

	s->ctl = mig_connect(o->to, s->io_ms);
	if (s->ctl < 0)
		return fail(s, "cannot connect to %s: %s", o->to, uffdwp_strerror(-s->ctl));
	mig_out__init(&out, "HELLO");
	mig_out__u64(&out, "v", MIG_PROTO_VERSION);
	mig_out__u64(&out, "track", o->track);
	mig_out__u64(&out, "plugin_pages", o->plugin_pages);
	mig_out__u64(&out, "tcp_established", o->tcp_established);
	mig_out__u64(&out, "shell_job", o->shell_job);
	mig_out__u64(&out, "postcopy", o->postcopy);
	mig_out__u64(&out, "lazy_restore", o->lazy_restore);
	if (send_line(s, &out) || answer(s, "OK", &m, s->io_ms))
		return -1;
	return 0;
}

/* Every regular file CRIU wrote into the local directory @n goes across. */
static int send_files(struct src *s, unsigned int n, uint64_t *bytes)
{
	char name[32];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, err = 0;

	snprintf(name, sizeof(name), "%u", n);
	fd = openat(s->workfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fail(s, "%s/%s: %s", s->work, name, uffdwp_strerror(errno));
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return fail(s, "%s/%s: %s", s->work, name, uffdwp_strerror(errno));
	}
	while (!err && (de = readdir(d))) {
		if (!mig_name_ok(de->d_name) || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode))
			continue;
		err = mig_send_file(s->ctl, fd, de->d_name, n);
		if (err)
			fail(s, "sending %s/%u/%s: %s", s->work, n, de->d_name,
			     uffdwp_strerror(-err));
		*bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return err ? -1 : 0;
}

/*
 * CRIU's post-dump action, for the final dump: by then the images are all
 * written and the tasks still frozen, and CRIU asks the action whether to
 * keep its dump. The destination restores the tree while the action waits;
 * "go" leaves the tasks stopped for the cut-over, anything else makes CRIU
 * resume them and undo what only it can undo (the network lock and TCP
 * repair mode of --tcp-established, link remaps): the tree runs on as it
 * was. CRIU closes every fd but 0-2 for its actions, so the action talks
 * to us through two FIFOs next to it. We hold both open read-write: the
 * action's opens never block while we live, and once we are gone its read
 * sees the end of the FIFO and says no.
 */
static const char hook_script[] =
    "#!/bin/sh\n"
    "# uffdwp migrate: CRIU's post-dump action (see docs/migrate.md).\n"
    "[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] || exit 0\n"
    "exec timeout -s KILL %d sh -c 'echo ready > \"$1/hook.req\" && "
    "read -r a < \"$1/hook.ans\" && [ \"$a\" = go ]' sh \"${0%%/*}\"\n";

static int hook_prepare(struct src *s, char *path, size_t len)
{
	char dir[PATH_MAX];
	int fd;

	if (!realpath(s->work, dir))
		return fail(s, "%s: %s", s->work, uffdwp_strerror(errno));
	snprintf(path, len, "%s/post-dump-hook", dir);
	if ((mkfifoat(s->workfd, "hook.req", 0600) && errno != EEXIST) ||
	    (mkfifoat(s->workfd, "hook.ans", 0600) && errno != EEXIST))
		return fail(s, "cannot make FIFOs in %s: %s", dir, uffdwp_strerror(errno));
	s->hook_req = openat(s->workfd, "hook.req", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	s->hook_ans = openat(s->workfd, "hook.ans", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (s->hook_req < 0 || s->hook_ans < 0)
		return fail(s, "cannot open the FIFOs in %s: %s", dir, uffdwp_strerror(errno));
	fd = openat(s->workfd, "post-dump-hook", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	if (fd < 0)
		return fail(s, "cannot write %s: %s", path, uffdwp_strerror(errno));
	/* Long enough for the restore, which the destination bounds by itself. */
	if (dprintf(fd, hook_script, s->o->timeout_s + 60) < 0) {
		close(fd);
		return fail(s, "cannot write %s: %s", path, uffdwp_strerror(errno));
	}
	close(fd);
	return 0;
}

/*
 * Our word to the final dump held in its post-dump action; then wait for
 * CRIU to end. Returns its exit code: 0 after "go" leaves the tasks
 * stopped; anything else (and any answer but "go") has them running again.
 */
static int hook_answer(struct src *s, bool go)
{
	const char *word = go ? "go\n" : "no\n";
	int rc;

	if (write(s->hook_ans, word, strlen(word)) < 0 && go)
		info(s, "warning: cannot answer CRIU's post-dump action: %s",
		     uffdwp_strerror(errno));
	rc = mig_child__wait(&s->held_dump, 30000, NULL);
	s->held_dump.pid = -1;
	s->stopped = go && rc == 0;
	return rc;
}

static void close_hook(struct src *s)
{
	if (s->hook_req >= 0)
		close(s->hook_req);
	if (s->hook_ans >= 0)
		close(s->hook_ans);
	s->hook_req = s->hook_ans = -1;
}

struct run_result {
	struct mig_dump_stats st;
	double start_s, criu_end_s, end_s;
	uint64_t bytes;
};

/*
 * One CRIU run, pre-dump or the final dump, into local directory @n with
 * its pages through the destination's page server, then its local files
 * over: the destination has all of run @n when this returns 0.
 */
static int run_criu(struct src *s, unsigned int n, bool final, struct run_result *res)
{
	const struct uffdwp_migrate_opts *o = s->o;
	char dname[32], dpath[PATH_MAX + 40], pid[16], psk[16], parent[48], reason[512];
	char *argv[MAX_ARGS], sfd[16], hook[PATH_MAX + 16];
	struct mig_child c = {.pid = -1};
	struct mig_out out;
	struct mig_msg m;
	int argc = 0, data, outfd, dirfd, rc, err, i, keep[2], status[2] = {-1, -1};
	const char *action = final ? "dump" : "pre-dump";
	bool lazy = final && o->postcopy;

	memset(res, 0, sizeof(*res));
	snprintf(dname, sizeof(dname), "%u", n);
	snprintf(dpath, sizeof(dpath), "%s/%u", s->work, n);
	if (mkdirat(s->workfd, dname, 0700))
		return fail(s, "cannot make %s: %s", dpath, uffdwp_strerror(errno));
	dirfd = openat(s->workfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return fail(s, "%s: %s", dpath, uffdwp_strerror(errno));

	mig_out__init(&out, "ITER");
	mig_out__u64(&out, "n", n);
	mig_out__u64(&out, "final", final);
	mig_out__u64(&out, "lazy", lazy);
	if (send_line(s, &out) || answer(s, "READY", &m, s->io_ms))
		goto err_dir;
	data = mig_connect(o->to, s->io_ms);
	if (data < 0) {
		fail(s, "cannot open a page connection to %s: %s", o->to, uffdwp_strerror(-data));
		goto err_dir;
	}
	mig_out__init(&out, "DATA");
	mig_out__u64(&out, "n", n);
	err = mig_out__send(&out, data);
	if (err) {
		fail(s, "page connection to %s: %s", o->to, uffdwp_strerror(-err));
		close(data);
		goto err_dir;
	}

	snprintf(pid, sizeof(pid), "%d", o->pid);
	snprintf(psk, sizeof(psk), "%d", data);
	snprintf(parent, sizeof(parent), "../%u", n - 1);
	argv[argc++] = (char *)o->criu;
	argv[argc++] = (char *)action;
	argv[argc++] = "-t";
	argv[argc++] = pid;
	argv[argc++] = "-D";
	argv[argc++] = dpath;
	argv[argc++] = "-o";
	argv[argc++] = final ? "dump.log" : "pre-dump.log";
	argv[argc++] = "-v4";
	if (lazy) {
		/*
		 * Post-copy: the dump keeps the tasks frozen and serves their
		 * pages on the connection, to the destination's lazy-pages, once
		 * its images are written (--status-fd says when).
		 */
		if (pipe2(status, O_CLOEXEC)) {
			fail(s, "pipe: %s", uffdwp_strerror(errno));
			close(data);
			goto err_dir;
		}
		snprintf(sfd, sizeof(sfd), "%d", status[1]);
		argv[argc++] = "--lazy-pages";
		argv[argc++] = "--status-fd";
		argv[argc++] = sfd;
	} else {
		argv[argc++] = "--page-server";
	}
	argv[argc++] = "--ps-socket";
	argv[argc++] = psk;
	if (n > 1) {
		argv[argc++] = "--prev-images-dir";
		argv[argc++] = parent;
	}
	if (o->track)
		argv[argc++] = "--uffd-wp-track";
	if (o->libdir) {
		argv[argc++] = "-L";
		argv[argc++] = (char *)o->libdir;
	}
	if (o->plugin_pages)
		argv[argc++] = "--plugin-pages";
	if (final)
		argv[argc++] = "--leave-stopped";
	if (final && !lazy) {
		if (hook_prepare(s, hook, sizeof(hook))) {
			close(data);
			goto err_dir;
		}
		argv[argc++] = "--action-script";
		argv[argc++] = hook;
	}
	if (o->tcp_established)
		argv[argc++] = "--tcp-established";
	if (o->shell_job)
		argv[argc++] = "--shell-job";
	for (i = 0; i < o->nr_criu_args && argc < MAX_ARGS - 1; i++)
		argv[argc++] = o->criu_args[i];
	argv[argc] = NULL;

	outfd = openat(dirfd, "criu.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	res->start_s = now_s();
	keep[0] = data;
	keep[1] = status[1];
	err = mig_child__spawn(&c, argv, keep, 2, outfd);
	close(data); /* CRIU has its own: when it ends, the page server sees it */
	if (status[1] >= 0)
		close(status[1]);
	if (outfd >= 0)
		close(outfd);
	if (err) {
		fail(s, "cannot run %s: %s", o->criu, uffdwp_strerror(-err));
		if (status[0] >= 0)
			close(status[0]);
		goto err_dir;
	}
	if (lazy) {
		rc = mig_child__wait_status(&c, status[0], o->timeout_s * 1000, o->signals);
		close(status[0]);
		if (rc == 0) {
			/* Frozen and serving: its exit is awaited after the cut-over. */
			s->lazy_dump = c;
			s->final_dirfd = dirfd;
			s->stopped = true;
			res->criu_end_s = now_s();
			goto files;
		}
		if (rc == -ETIMEDOUT)
			mig_child__kill(&c);
	} else if (final) {
		rc = mig_child__wait_status(&c, s->hook_req, o->timeout_s * 1000, o->signals);
		if (rc == 0 && !c.reaped) {
			char b[64];

			/* Complete, and held in its post-dump action until the restore. */
			while (read(s->hook_req, b, sizeof(b)) > 0)
				;
			s->held_dump = c;
			s->held = true;
			s->stopped = true;
			res->criu_end_s = now_s();
			goto files;
		}
		if (rc == -ETIMEDOUT)
			mig_child__kill(&c);
	} else {
		rc = mig_child__wait(&c, o->timeout_s * 1000, o->signals);
	}
	res->criu_end_s = now_s();
	if (rc == 0 && final)
		s->stopped = true;
	if (rc) {
		mig_log_reason(dirfd, final ? "dump.log" : "pre-dump.log", reason, sizeof(reason));
		if (rc == -ETIMEDOUT)
			fail(s, "criu %s took more than %d s (log: %s/%s.log)", action,
			     o->timeout_s, dpath, action);
		else if (rc >= 128)
			fail(s, "criu %s was killed by signal %d%s", action, rc - 128,
			     interrupted(s) ? " (interrupted)" : "");
		else
			fail(s, "criu %s failed (exit %d): %s (log: %s/%s.log)", action, rc,
			     reason[0] ? reason : "no log", dpath, action);
		/*
		 * The page server may know better (a full disk there shows here
		 * as a broken pipe): add what the destination says.
		 */
		mig_out__init(&out, "DONE");
		mig_out__u64(&out, "n", n);
		mig_out__i64(&out, "rc", rc);
		if (!mig_out__send(&out, s->ctl) && !mig_recv(s->ctl, &m, s->io_ms, -1) &&
		    !strcmp(m.verb, "ERR") && mig_msg__get(&m, "msg")) {
			size_t len = strlen(s->rep->error);

			snprintf(s->rep->error + len, sizeof(s->rep->error) - len,
				 "; the destination says: %s", mig_msg__get(&m, "msg"));
		}
		goto err_dir;
	}
	err = mig_read_dump_stats(dirfd, &res->st);
	if (err) {
		fail(s, "%s/stats-dump: %s", dpath, uffdwp_strerror(-err));
		goto err_dir;
	}
files:
	if (send_files(s, n, &res->bytes))
		goto err_dir;
	mig_out__init(&out, "DONE");
	mig_out__u64(&out, "n", n);
	mig_out__u64(&out, "rc", 0);
	if (send_line(s, &out) || answer(s, "OK", &m, s->io_ms))
		goto err_dir;
	res->end_s = now_s();
	res->bytes += (res->st.pages_written + res->st.shpages_written) * PAGE_BYTES;
	if (final)
		s->final_dirfd = dirfd;
	else
		close(dirfd);
	return 0;
err_dir:
	if (dirfd != s->final_dirfd)
		close(dirfd);
	return -1;
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

	emit(s, &ev);
}

/* Signal every task of the tree; returns how many could not be. */
static int signal_tree(pid_t root, int sig)
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
static int rollback(struct src *s)
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
		err = hook_answer(s, false);
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
		bad = signal_tree(s->o->pid, SIGCONT);
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
		bad = signal_tree(s->o->pid, SIGCONT);
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
	emit(s, &ev);
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
static int restore_step(struct src *s, unsigned int n, struct run_result *r)
{
	struct mig_out out;
	struct mig_msg m;
	char why[512];
	uint64_t v;
	int rc;

	mig_out__init(&out, "RESTORE");
	mig_out__u64(&out, "n", n);
	s->rep->images_ms = (now_s() - s->dump_end_s) * 1e3;
	if (send_line(s, &out) || answer(s, "RESTORED", &m, s->o->timeout_s * 1000))
		return -1;
	if (!mig_msg__u64(&m, "restore_us", &v))
		s->rep->restore_ms = v / 1e3;
	if (s->held_dump.pid <= 0)
		return 0;
	/* The destination has it, stopped: now CRIU may keep its dump. */
	rc = hook_answer(s, true);
	r->criu_end_s = now_s();
	if (rc) {
		mig_log_reason(s->final_dirfd, "dump.log", why, sizeof(why));
		return fail(s,
			    "criu dump failed after the destination restored the tree (exit %d): "
			    "%s; CRIU resumed the source tree",
			    rc, why[0] ? why : "no log");
	}
	if (mig_read_dump_stats(s->final_dirfd, &r->st))
		memset(&r->st, 0, sizeof(r->st));
	r->bytes += (r->st.pages_written + r->st.shpages_written) * PAGE_BYTES;
	return 0;
}

static int go_step(struct src *s)
{
	struct uffdwp_migrate_event ev = {.kind = MIG_EV_RUNNING};
	struct mig_out out;
	struct mig_msg m;
	uint64_t v;

	mig_out__init(&out, "GO");
	if (send_line(s, &out))
		return -1;
	s->cut = true;
	if (answer(s, "RUNNING", &m, s->io_ms))
		return -1;
	s->running_s = now_s();
	s->rep->dest_pid = mig_msg__u64(&m, "pid", &v) ? 0 : (pid_t)v;
	emit(s, &ev);
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
static int lazy_end(struct src *s, struct run_result *r)
{
	struct uffdwp_stop_stats st;
	char why[512] = "";
	const char *dmsg;
	struct mig_msg m;
	int rc = 0, err;
	uint64_t v;

	if (s->o->postcopy) {
		rc = mig_child__wait(&s->lazy_dump, s->o->timeout_s * 1000, NULL);
		r->criu_end_s = now_s();
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
			s->stopped = !signal_tree(s->o->pid, SIGSTOP);
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
		s->stopped = signal_tree(s->o->pid, SIGCONT) != 0;
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

static int make_work_dir(struct src *s)
{
	const char *base = getenv("TMPDIR");
	int err;

	if (s->o->work_dir) {
		snprintf(s->work, sizeof(s->work), "%s", s->o->work_dir);
		if (mkdir(s->work, 0700) && errno != EEXIST)
			return fail(s, "cannot make %s: %s", s->work, uffdwp_strerror(errno));
		/* A migration that succeeds removes its work directory, all of it. */
		err = mig_dir_is_empty(s->work);
		if (err != 1)
			return fail(s, "-W %s: %s", s->work,
				    err ? uffdwp_strerror(-err)
					: "not empty (-W takes a new or empty directory, which a "
					  "migration that succeeds removes)");
	} else {
		snprintf(s->work, sizeof(s->work), "%s/uffdwp-migrate.XXXXXX",
			 base && *base ? base : "/var/tmp");
		if (!mkdtemp(s->work))
			return fail(s, "cannot make %s: %s", s->work, uffdwp_strerror(errno));
	}
	s->workfd = open(s->work, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->workfd < 0)
		return fail(s, "%s: %s", s->work, uffdwp_strerror(errno));
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
	s.t0 = now_s();
	mig_model__init(&s.model, o->max_downtime_ms, o->max_iters, o->restore_est_ms);
	if (kill(o->pid, 0)) {
		fail(&s, "no process %d: %s", o->pid, uffdwp_strerror(errno));
		return MIG_USAGE;
	}
	if (o->postcopy) {
		char why[512];

		if (mig_postcopy_problem(why, sizeof(why)) == 1) {
			fail(&s, "%s", why);
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
		if (interrupted(&s)) {
			fail(&s, "interrupted");
			goto rollback;
		}
		n++;
		if (run_criu(&s, n, false, &r))
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
		stop = mig_model__add(&s.model, &run, now_s());
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
	emit(&s, &ev);
	if (interrupted(&s)) {
		fail(&s, "interrupted");
		goto rollback;
	}

	/* The final dump: the tasks stay stopped until the destination runs them. */
	n++;
	if (run_criu(&s, n, true, &r))
		goto rollback;
	s.dump_end_s = r.criu_end_s;
	rep->iterations = n;
	if (interrupted(&s)) {
		fail(&s, "interrupted");
		goto rollback;
	}
	if (restore_step(&s, n, &r))
		goto rollback;
	if (!rep->memory_bytes) /* stop-and-copy: the dump found it */
		rep->memory_bytes = (r.st.pages_scanned + r.st.shpages_scanned) * PAGE_BYTES;
	if (!o->postcopy)
		run_event(&s, n, true, &r);
	if (go_step(&s))
		goto rollback;
	if (o->postcopy || o->lazy_restore) {
		ret = lazy_end(&s, &r);
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
	signal_tree(o->pid, SIGKILL);
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
	rep->total_ms = (now_s() - s.t0) * 1e3;
	if (s.final_dirfd >= 0)
		close(s.final_dirfd);
	close(s.ctl);
	close(s.workfd);
	close_hook(&s);
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
		ret = rollback(&s);
	}
out:
	if (s.final_dirfd >= 0)
		close(s.final_dirfd);
	rep->iterations = n;
	rep->total_ms = (now_s() - s.t0) * 1e3;
	if (s.ctl >= 0)
		close(s.ctl);
	if (s.workfd >= 0)
		close(s.workfd);
	close_hook(&s);
	info(&s, "local images and CRIU logs kept in %s", s.work);
	return ret;
}
