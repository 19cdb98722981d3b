// SPDX-License-Identifier: GPL-2.0
/*
 * The destination side of a migration: a CRIU page server for each run of
 * the source, the image files it sends, the restore with the tree kept
 * stopped until the source says go, and the removal of everything written
 * when the migration fails before the tree runs here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "criu_run.h"
#include "dirs.h"
#include "events.h"
#include "base/log.h"
#include "migrate.h"
#include "base/procfs.h"
#include "wire.h"

#define MAX_ARGS 48

struct dst {
	const struct uffdwp_migrate_dest_opts *o;
	struct uffdwp_migrate_report *rep;
	int lsk, ctl, dirfd;
	bool made_dir; /* DIR was made here: removed on failure */
	unsigned int cur;
	bool track, plugin_pages, tcp_established, shell_job, postcopy;
	struct mig_child ps;
	struct mig_child lazy; /* post-copy: criu lazy-pages, fetching from the source */
	int lazy_sk;	       /* post-copy: the page connection, for lazy-pages */
	bool lazy_iter;	       /* this run is the post-copy final dump */
	bool lazy_restore;     /* restore from the images here with lazy-pages */
	int file_err;
	pid_t restored; /* root of the restored tree, stopped until GO */
	bool running;
	int io_ms;
	double restore_ms;
	double running_ms; /* when the tree began to run here */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define info(d, ...) mig_event__info((d)->o->cb, (d)->o->cb_arg, __VA_ARGS__)

/* Tell the source what failed (and keep the first reason for the report). */
static int refuse(struct dst *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct dst *d, const char *fmt, ...)
{
	struct mig_out out;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!d->rep->error[0])
		snprintf(d->rep->error, sizeof(d->rep->error), "%s", msg);
	info(d, "%s", msg);
	mig_out__init(&out, "ERR");
	mig_out__str(&out, "msg", msg);
	mig_out__send(&out, d->ctl);
	return -1;
}

static int reply(struct dst *d, const char *verb, const char *key, int64_t v)
{
	struct mig_out out;

	mig_out__init(&out, verb);
	if (key)
		mig_out__i64(&out, key, v);
	return mig_out__send(&out, d->ctl);
}

static bool interrupted(struct dst *d)
{
	return d->o->signals && *d->o->signals > 0;
}

/*
 * Wait until @fd is readable, looking for an interruption every 200 ms:
 * 0, -ECANCELED, -ETIMEDOUT after @timeout_ms (<= 0: never) or -errno.
 */
static int wait_readable(struct dst *d, int fd, int timeout_ms)
{
	int waited = 0, err;

	for (;;) {
		if (interrupted(d))
			return -ECANCELED;
		/* A page server that died must not leave its connection held open. */
		mig_child__end_group(&d->ps);
		err = mig_wait_readable(fd, 200, -1);
		if (err != -ETIMEDOUT)
			return err;
		waited += 200;
		if (timeout_ms > 0 && waited >= timeout_ms)
			return -ETIMEDOUT;
	}
}

/* Accept one connection on the listening socket, polling for interruption. */
static int accept_one(struct dst *d, int timeout_ms)
{
	int err, sk;

	for (;;) {
		err = wait_readable(d, d->lsk, timeout_ms);
		if (err < 0)
			return err;
		sk = accept4(d->lsk, NULL, NULL, SOCK_CLOEXEC);
		if (sk >= 0)
			return sk;
		if (errno != EINTR && errno != ECONNABORTED)
			return -errno;
	}
}

/* Receive a line, polling for interruption: as mig_recv(). */
static int recv_line(struct dst *d, int sk, struct mig_msg *m, int timeout_ms)
{
	int err = wait_readable(d, sk, timeout_ms);

	return err < 0 ? err : mig_recv(sk, m, d->io_ms, -1);
}

static int hello(struct dst *d, struct mig_msg *m)
{
	uint64_t v;

	if (strcmp(m->verb, "HELLO"))
		return refuse(d, "expected HELLO, got %s", m->verb);
	if (mig_msg__u64(m, "v", &v) || v != MIG_PROTO_VERSION)
		return refuse(d, "protocol version %s, this destination speaks %d",
			      mig_msg__get(m, "v") ?: "?", MIG_PROTO_VERSION);
	d->postcopy = !mig_msg__u64(m, "postcopy", &v) && v;
	d->lazy_restore = !mig_msg__u64(m, "lazy_restore", &v) && v;
	if (d->postcopy) {
		char why[512];

		if (mig_postcopy_problem(why, sizeof(why)) == 1)
			return refuse(d, "%s", why);
	}
	d->track = !mig_msg__u64(m, "track", &v) && v;
	d->plugin_pages = !mig_msg__u64(m, "plugin_pages", &v) && v;
	d->tcp_established = !mig_msg__u64(m, "tcp_established", &v) && v;
	d->shell_job = !mig_msg__u64(m, "shell_job", &v) && v;
	return reply(d, "OK", "v", MIG_PROTO_VERSION);
}

static void add_common(struct dst *d, char **argv, int *argc)
{
	if (d->o->libdir) {
		argv[(*argc)++] = "-L";
		argv[(*argc)++] = (char *)d->o->libdir;
	}
	if (d->plugin_pages)
		argv[(*argc)++] = "--plugin-pages";
}

/* ITER: a directory for run @n and a page server on its data connection. */
static int iter(struct dst *d, struct mig_msg *m)
{
	char name[32], path[PATH_MAX + 40], parent[48], psk[16];
	char *argv[MAX_ARGS];
	struct mig_msg dm;
	uint64_t n, dn;
	int argc = 0, data, out, err, ndir;

	if (mig_msg__u64(m, "n", &n) || n != d->cur + 1)
		return refuse(d, "ITER %s out of order (expected %u)", mig_msg__get(m, "n") ?: "?",
			      d->cur + 1);
	if (mig_child__running(&d->ps))
		return refuse(d, "ITER %" PRIu64 " while the page server of %u still runs", n,
			      d->cur);
	d->cur = (unsigned int)n;
	d->file_err = 0;
	snprintf(name, sizeof(name), "%u", d->cur);
	snprintf(path, sizeof(path), "%s/%u", d->o->dir, d->cur);
	if (mkdirat(d->dirfd, name, 0700))
		return refuse(d, "cannot make %s: %s", path, uffdwp_strerror(errno));
	d->lazy_iter = d->postcopy && !mig_msg__u64(m, "lazy", &dn) && dn;
	if (d->lazy_iter && d->cur > 1) {
		/* No page server writes this run's images: link the parent here. */
		snprintf(parent, sizeof(parent), "../%u", d->cur - 1);
		snprintf(path, sizeof(path), "%s/%u/parent", d->o->dir, d->cur);
		if (symlink(parent, path))
			return refuse(d, "cannot link %s: %s", path, uffdwp_strerror(errno));
		snprintf(path, sizeof(path), "%s/%u", d->o->dir, d->cur);
	}
	if (reply(d, "READY", NULL, 0))
		return -1;
	data = accept_one(d, d->io_ms);
	if (data < 0)
		return refuse(d, "no page connection for run %u: %s", d->cur,
			      uffdwp_strerror(-data));
	err = mig_recv(data, &dm, d->io_ms, -1);
	if (err || strcmp(dm.verb, "DATA") || mig_msg__u64(&dm, "n", &dn) || dn != n) {
		close(data);
		return refuse(d, "the page connection for run %u did not say DATA n=%u", d->cur,
			      d->cur);
	}
	if (d->lazy_iter) {
		/* The source's dump serves on it: lazy-pages takes it at RESTORE. */
		d->lazy_sk = data;
		return 0;
	}
	snprintf(psk, sizeof(psk), "%d", data);
	snprintf(parent, sizeof(parent), "../%u", d->cur - 1);
	argv[argc++] = (char *)d->o->criu;
	argv[argc++] = "page-server";
	argv[argc++] = "-D";
	argv[argc++] = path;
	argv[argc++] = "--ps-socket";
	argv[argc++] = psk;
	argv[argc++] = "-o";
	argv[argc++] = "page-server.log";
	argv[argc++] = "-v4";
	if (d->cur > 1) {
		argv[argc++] = "--prev-images-dir";
		argv[argc++] = parent;
	}
	if (d->track)
		argv[argc++] = "--uffd-wp-track";
	add_common(d, argv, &argc);
	argv[argc] = NULL;
	ndir = openat(d->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	out = ndir < 0
		  ? -1
		  : openat(ndir, "page-server.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (ndir >= 0)
		close(ndir);
	err = mig_child__spawn(&d->ps, argv, &data, 1, out);
	close(data);
	if (out >= 0)
		close(out);
	if (err)
		return refuse(d, "cannot run %s: %s", d->o->criu, uffdwp_strerror(-err));
	return 0;
}

/* The reason in the log @log of run @n, for a message. */
static void reason(struct dst *d, unsigned int n, const char *log, char *buf, size_t len)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "%u", n);
	fd = openat(d->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	buf[0] = 0;
	if (fd >= 0) {
		mig_log_reason(fd, log, buf, len);
		close(fd);
	}
}

static int file(struct dst *d, struct mig_msg *m)
{
	char name[32];
	bool kept;
	uint64_t n;
	int fd, err;

	if (mig_msg__u64(m, "n", &n) || n != d->cur)
		return refuse(d, "FILE for run %s, not %u", mig_msg__get(m, "n") ?: "?", d->cur);
	snprintf(name, sizeof(name), "%u", d->cur);
	fd = openat(d->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return refuse(d, "%s/%s: %s", d->o->dir, name, uffdwp_strerror(errno));
	err = mig_recv_file(d->ctl, m, fd, d->io_ms, &kept);
	close(fd);
	if (err == -EBADMSG)
		return refuse(d, "a bad FILE line: %s", mig_msg__get(m, "name") ?: "(no name)");
	if (err == -ECONNRESET || err == -ETIMEDOUT)
		return -1;
	if (err && !d->file_err) {
		d->file_err = err;
		info(d, "writing %s/%u/%s: %s", d->o->dir, d->cur, mig_msg__get(m, "name"),
		     uffdwp_strerror(-err));
	}
	return 0;
}

/* DONE: the run is over on the source; its page server must end well. */
static int done(struct dst *d, struct mig_msg *m)
{
	char why[512];
	uint64_t rc;
	int prc;

	if (mig_msg__u64(m, "rc", &rc))
		rc = 1;
	if (d->lazy_iter) {
		if (!rc && d->file_err)
			return refuse(d, "writing the images of run %u into %s: %s", d->cur,
				      d->o->dir, uffdwp_strerror(-d->file_err));
		return reply(d, "OK", NULL, 0);
	}
	prc = mig_child__wait(&d->ps, rc ? 5000 : d->io_ms, NULL);
	if (rc && !prc)
		return reply(d, "OK", NULL, 0);
	if (prc) {
		reason(d, d->cur, "page-server.log", why, sizeof(why));
		return refuse(d, "the page server of run %u failed (%d): %s", d->cur, prc,
			      why[0] ? why : "no log");
	}
	if (d->file_err)
		return refuse(d, "writing the images of run %u into %s: %s", d->cur, d->o->dir,
			      uffdwp_strerror(-d->file_err));
	return reply(d, "OK", NULL, 0);
}

/*
 * criu lazy-pages for the restore, ready (its --status-fd) before the
 * restore that hands it the tasks' userfaultfds starts: post-copy, on the
 * page connection to the source's dump; a lazy restore, from the images
 * here.
 */
static int start_lazy_pages(struct dst *d, const char *path)
{
	char psk[16], sfd[16], *argv[MAX_ARGS];
	int argc = 0, status[2], keep[2], err;

	if (d->lazy_iter && d->lazy_sk < 0)
		return refuse(d, "no page connection for post-copy");
	if (pipe2(status, O_CLOEXEC))
		return refuse(d, "pipe: %s", uffdwp_strerror(errno));
	snprintf(psk, sizeof(psk), "%d", d->lazy_sk);
	snprintf(sfd, sizeof(sfd), "%d", status[1]);
	argv[argc++] = (char *)d->o->criu;
	argv[argc++] = "lazy-pages";
	argv[argc++] = "-D";
	argv[argc++] = (char *)path;
	if (d->lazy_iter) {
		argv[argc++] = "--page-server";
		argv[argc++] = "--ps-socket";
		argv[argc++] = psk;
	}
	argv[argc++] = "--status-fd";
	argv[argc++] = sfd;
	argv[argc++] = "-o";
	argv[argc++] = "lazy-pages.log";
	argv[argc++] = "-v4";
	add_common(d, argv, &argc);
	argv[argc] = NULL;
	keep[0] = d->lazy_sk;
	keep[1] = status[1];
	err = mig_child__spawn(&d->lazy, argv, keep, 2, -1);
	close(status[1]);
	if (d->lazy_sk >= 0)
		close(d->lazy_sk);
	d->lazy_sk = -1;
	if (err) {
		close(status[0]);
		return refuse(d, "cannot run %s: %s", d->o->criu, uffdwp_strerror(-err));
	}
	err = mig_child__wait_status(&d->lazy, status[0], d->io_ms, NULL);
	close(status[0]);
	if (err) {
		char why[512];

		mig_child__kill(&d->lazy);
		reason(d, d->cur, "lazy-pages.log", why, sizeof(why));
		return refuse(d, "criu lazy-pages did not start (%d): %s", err,
			      why[0] ? why : "no log");
	}
	return 0;
}

static int restore(struct dst *d, struct mig_msg *m)
{
	char path[PATH_MAX + 40], pidfile[PATH_MAX + 60], why[512];
	char *argv[MAX_ARGS];
	/* With --shell-job the restored tree is in CRIU's process group: keep it. */
	struct mig_child c = {.pid = -1, .keep_group = 1};
	struct mig_out out;
	uint64_t n;
	FILE *f;
	int argc = 0, rc, err, pid = 0;
	double t0;

	if (mig_msg__u64(m, "n", &n) || n != d->cur)
		return refuse(d, "RESTORE of run %s, not %u", mig_msg__get(m, "n") ?: "?", d->cur);
	snprintf(path, sizeof(path), "%s/%u", d->o->dir, d->cur);
	snprintf(pidfile, sizeof(pidfile), "%s/restored.pid", path);
	argv[argc++] = (char *)d->o->criu;
	argv[argc++] = "restore";
	argv[argc++] = "-D";
	argv[argc++] = path;
	argv[argc++] = "-d";
	argv[argc++] = "--leave-stopped";
	argv[argc++] = "--pidfile";
	argv[argc++] = pidfile;
	argv[argc++] = "-o";
	argv[argc++] = "restore.log";
	argv[argc++] = "-v4";
	if (d->lazy_iter || d->lazy_restore) {
		if (start_lazy_pages(d, path))
			return -1;
		argv[argc++] = "--lazy-pages";
	}
	if (d->tcp_established)
		argv[argc++] = "--tcp-established";
	if (d->shell_job)
		argv[argc++] = "--shell-job";
	add_common(d, argv, &argc);
	argv[argc] = NULL;
	t0 = now_ms();
	err = mig_child__spawn(&c, argv, NULL, 0, -1);
	if (err)
		return refuse(d, "cannot run %s: %s", d->o->criu, uffdwp_strerror(-err));
	rc = mig_child__wait(&c, d->io_ms, NULL);
	d->restore_ms = now_ms() - t0;
	if (rc) {
		reason(d, d->cur, "restore.log", why, sizeof(why));
		return refuse(d, "criu restore failed (%d): %s (log: %s/restore.log)", rc,
			      why[0] ? why : "no log", path);
	}
	f = fopen(pidfile, "r");
	if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
		if (f)
			fclose(f);
		return refuse(d, "criu restore left no pid in %s", pidfile);
	}
	fclose(f);
	d->restored = pid;
	d->rep->dest_pid = pid;
	mig_out__init(&out, "RESTORED");
	mig_out__i64(&out, "pid", pid);
	mig_out__u64(&out, "restore_us", (uint64_t)(d->restore_ms * 1e3));
	return mig_out__send(&out, d->ctl);
}

static int signal_tree(pid_t root, int sig)
{
	pid_t *pids = NULL;
	int n, i, bad = 0;

	n = uffdwp_proc_tree(root, true, &pids);
	if (n < 0)
		return 1;
	for (i = 0; i < n; i++)
		if (kill(pids[i], sig) && errno != ESRCH)
			bad++;
	free(pids);
	return bad;
}

static int go(struct dst *d)
{
	if (!d->restored)
		return refuse(d, "GO before a restore");
	if (signal_tree(d->restored, SIGCONT))
		return refuse(d, "cannot let the restored tree %d run", d->restored);
	d->running = true;
	d->running_ms = now_ms();
	return reply(d, "RUNNING", "pid", d->restored);
}

/* Everything this migration made here goes again. */
static void clean_up(struct dst *d)
{
	char name[32];
	unsigned int n;

	mig_child__kill(&d->ps);
	if (d->running) {
		/*
		 * The tree ran here: its images and logs stay (after a lazy
		 * restore that failed they may be the tree's only copy).
		 */
		info(d, "images and CRIU logs kept in %s/%u", d->o->dir, d->cur);
		return;
	}
	mig_child__kill(&d->lazy);
	if (d->lazy_sk >= 0) {
		close(d->lazy_sk);
		d->lazy_sk = -1;
	}
	if (d->restored && !d->running) {
		signal_tree(d->restored, SIGKILL);
		d->restored = 0;
	}
	for (n = 1; n <= d->cur; n++) {
		snprintf(name, sizeof(name), "%u", n);
		{
			char path[PATH_MAX + 40];

			snprintf(path, sizeof(path), "%s/%s", d->o->dir, name);
			mig_remove_dir(path);
		}
	}
	if (d->made_dir)
		rmdir(d->o->dir);
}

static int serve(struct dst *d)
{
	struct mig_msg m;
	int err;

	for (;;) {
		err = recv_line(d, d->ctl, &m, d->o->timeout_s * 1000);
		if (err == -ECANCELED) {
			/* It runs here: an interrupt no longer undoes anything. */
			if (d->running)
				return 0;
			snprintf(d->rep->error, sizeof(d->rep->error), "interrupted");
			return -1;
		}
		if (err) {
			if (d->running)
				return 0; /* it runs here; the source is gone, or forgot BYE */
			if (!d->rep->error[0])
				snprintf(d->rep->error, sizeof(d->rep->error),
					 "the source %s before the tree ran here",
					 err == -ECONNRESET ? "went away" : uffdwp_strerror(-err));
			return -1;
		}
		if (!strcmp(m.verb, "ITER"))
			err = iter(d, &m);
		else if (!strcmp(m.verb, "FILE"))
			err = file(d, &m);
		else if (!strcmp(m.verb, "DONE"))
			err = done(d, &m);
		else if (!strcmp(m.verb, "RESTORE"))
			err = restore(d, &m);
		else if (!strcmp(m.verb, "GO")) {
			err = go(d);
			/* Lazy: the source waits for PAGES, sent once every page is here. */
			if (!err && d->running && d->lazy.pid > 0)
				return 0;
		} else if (!strcmp(m.verb, "BYE"))
			return d->running ? 0 : -1;
		else if (!strcmp(m.verb, "ABORT")) {
			snprintf(d->rep->error, sizeof(d->rep->error), "the source gave up");
			clean_up(d);
			reply(d, "OK", NULL, 0);
			return -1;
		} else
			err = refuse(d, "unknown request %s", m.verb);
		(void)err; /* a refusal was told; the source decides what follows */
	}
}

/*
 * After a lazy cut-over: the tree runs, and is whole once criu lazy-pages
 * has every page. Tell the source (PAGES rc=), which kills its tree only on
 * rc=0; on a failure our tree is killed and the source resumes. Interrupts
 * are not taken: the pages are still coming in.
 */
static int lazy_end(struct dst *d)
{
	struct mig_out out;
	struct mig_msg m;
	char why[512] = "";
	int rc;

	rc = mig_child__wait(&d->lazy, -1, NULL);
	d->rep->postcopy_ms = now_ms() - d->running_ms;
	if (rc)
		reason(d, d->cur, "lazy-pages.log", why, sizeof(why));
	mig_out__init(&out, "PAGES");
	mig_out__i64(&out, "rc", rc);
	if (rc) {
		char msg[600];

		snprintf(msg, sizeof(msg), "criu lazy-pages exit %d: %s", rc,
			 why[0] ? why : "no log");
		mig_out__str(&out, "msg", msg);
	}
	if (mig_out__send(&out, d->ctl))
		info(d, "warning: cannot tell the source that %s",
		     rc ? "lazy-pages failed" : "every page is here");
	if (rc) {
		snprintf(d->rep->error, sizeof(d->rep->error),
			 "%s failed after the cut-over: criu lazy-pages exit %d (%s); the tree "
			 "here %s and is killed; the source resumes its own",
			 d->postcopy ? "post-copy" : "lazy restore", rc, why[0] ? why : "no log",
			 d->postcopy ? "lacks pages that were on the source"
				     : "could not get all its pages from the images here");
		signal_tree(d->restored, SIGKILL);
		return MIG_POSTCOPY_FAILED;
	}
	info(d, "every page is here, %.0f ms after the tree began to run", d->rep->postcopy_ms);
	/* The source kills its tree, then says BYE; that is all it says. */
	recv_line(d, d->ctl, &m, d->io_ms);
	return MIG_OK;
}

int uffdwp_migrate__dest(const struct uffdwp_migrate_dest_opts *o,
			 struct uffdwp_migrate_report *rep)
{
	struct dst d = {.o = o,
			.rep = rep,
			.lsk = -1,
			.ctl = -1,
			.dirfd = -1,
			.ps = {.pid = -1},
			.lazy = {.pid = -1},
			.lazy_sk = -1};
	struct mig_msg m;
	int err, ret = MIG_ROLLED_BACK;

	memset(rep, 0, sizeof(*rep));
	d.io_ms = o->timeout_s > 0 ? o->timeout_s * 1000 : 600000;
	err = mig_dir_is_empty(o->dir);
	if (err == -ENOENT) {
		if (mkdir(o->dir, 0700)) {
			snprintf(rep->error, sizeof(rep->error), "cannot make %s: %s", o->dir,
				 uffdwp_strerror(errno));
			return MIG_USAGE;
		}
		d.made_dir = true;
	} else if (err != 1) {
		snprintf(rep->error, sizeof(rep->error), "%s: %s", o->dir,
			 err ? uffdwp_strerror(-err) : "not empty (images of another migration?)");
		return MIG_USAGE;
	}
	d.dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d.lsk = mig_listen(o->listen);
	if (d.dirfd < 0 || d.lsk < 0) {
		snprintf(rep->error, sizeof(rep->error), "%s: %s", d.dirfd < 0 ? o->dir : o->listen,
			 uffdwp_strerror(d.dirfd < 0 ? errno : -d.lsk));
		ret = MIG_USAGE;
		goto out;
	}
	info(&d, "listening on %s, images into %s", o->listen, o->dir);
	d.ctl = accept_one(&d, o->timeout_s * 1000);
	if (d.ctl < 0) {
		snprintf(rep->error, sizeof(rep->error), "no source connected: %s",
			 uffdwp_strerror(-d.ctl));
		goto out;
	}
	err = recv_line(&d, d.ctl, &m, d.io_ms);
	if (err || hello(&d, &m)) {
		if (!rep->error[0])
			snprintf(rep->error, sizeof(rep->error), "no HELLO from the source: %s",
				 uffdwp_strerror(-err));
		goto out;
	}
	if (!serve(&d))
		ret = MIG_OK;
	if (ret == MIG_OK && d.lazy.pid > 0)
		ret = lazy_end(&d);
out:
	if (ret != MIG_OK && ret != MIG_USAGE) {
		clean_up(&d);
	} else {
		mig_child__kill(&d.ps);
		if (ret == MIG_USAGE && d.made_dir)
			rmdir(o->dir);
	}
	if (d.ctl >= 0)
		close(d.ctl);
	if (d.lsk >= 0)
		close(d.lsk);
	if (d.dirfd >= 0)
		close(d.dirfd);
	return ret;
}
