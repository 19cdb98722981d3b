// SPDX-License-Identifier: GPL-2.0
/*
 * One CRIU run of the source: its pages through the destination's page
 * server, its other images sent over the control connection, and for the
 * final dump the post-dump action that holds CRIU while the destination
 * restores.
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

#include "base/log.h"
#include "source.h"

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
		return src__fail(s, "%s/%s: %s", s->work, name, uffdwp_strerror(errno));
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return src__fail(s, "%s/%s: %s", s->work, name, uffdwp_strerror(errno));
	}
	while (!err && (de = readdir(d))) {
		if (!mig_name_ok(de->d_name) || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode))
			continue;
		err = mig_send_file(s->ctl, fd, de->d_name, n);
		if (err)
			src__fail(s, "sending %s/%u/%s: %s", s->work, n, de->d_name,
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
		return src__fail(s, "%s: %s", s->work, uffdwp_strerror(errno));
	snprintf(path, len, "%s/post-dump-hook", dir);
	if ((mkfifoat(s->workfd, "hook.req", 0600) && errno != EEXIST) ||
	    (mkfifoat(s->workfd, "hook.ans", 0600) && errno != EEXIST))
		return src__fail(s, "cannot make FIFOs in %s: %s", dir, uffdwp_strerror(errno));
	s->hook_req = openat(s->workfd, "hook.req", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	s->hook_ans = openat(s->workfd, "hook.ans", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (s->hook_req < 0 || s->hook_ans < 0)
		return src__fail(s, "cannot open the FIFOs in %s: %s", dir, uffdwp_strerror(errno));
	fd = openat(s->workfd, "post-dump-hook", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	if (fd < 0)
		return src__fail(s, "cannot write %s: %s", path, uffdwp_strerror(errno));
	/* Long enough for the restore, which the destination bounds by itself. */
	if (dprintf(fd, hook_script, s->o->timeout_s + 60) < 0) {
		close(fd);
		return src__fail(s, "cannot write %s: %s", path, uffdwp_strerror(errno));
	}
	close(fd);
	return 0;
}

int src__hook_answer(struct src *s, bool go)
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

void src__close_hook(struct src *s)
{
	if (s->hook_req >= 0)
		close(s->hook_req);
	if (s->hook_ans >= 0)
		close(s->hook_ans);
	s->hook_req = s->hook_ans = -1;
}

int src__run_criu(struct src *s, unsigned int n, bool final, struct run_result *res)
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
		return src__fail(s, "cannot make %s: %s", dpath, uffdwp_strerror(errno));
	dirfd = openat(s->workfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return src__fail(s, "%s: %s", dpath, uffdwp_strerror(errno));

	mig_out__init(&out, "ITER");
	mig_out__u64(&out, "n", n);
	mig_out__u64(&out, "final", final);
	mig_out__u64(&out, "lazy", lazy);
	if (src__send(s, &out) || src__answer(s, "READY", &m, s->io_ms))
		goto err_dir;
	data = mig_connect(o->to, s->io_ms);
	if (data < 0) {
		src__fail(s, "cannot open a page connection to %s: %s", o->to,
			  uffdwp_strerror(-data));
		goto err_dir;
	}
	mig_out__init(&out, "DATA");
	mig_out__u64(&out, "n", n);
	err = mig_out__send(&out, data);
	if (err) {
		src__fail(s, "page connection to %s: %s", o->to, uffdwp_strerror(-err));
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
			src__fail(s, "pipe: %s", uffdwp_strerror(errno));
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
	res->start_s = src__now();
	keep[0] = data;
	keep[1] = status[1];
	err = mig_child__spawn(&c, argv, keep, 2, outfd);
	close(data); /* CRIU has its own: when it ends, the page server sees it */
	if (status[1] >= 0)
		close(status[1]);
	if (outfd >= 0)
		close(outfd);
	if (err) {
		src__fail(s, "cannot run %s: %s", o->criu, uffdwp_strerror(-err));
		if (status[0] >= 0)
			close(status[0]);
		goto err_dir;
	}
	if (final) {
		/* A lazy dump says on --status-fd, an eager one in its post-dump action. */
		rc = mig_child__wait_status(&c, lazy ? status[0] : s->hook_req, o->timeout_s * 1000,
					    o->signals);
		if (lazy)
			close(status[0]);
		if (rc == 0 && !c.reaped) {
			char b[64];

			/*
			 * Frozen, its images written: a lazy dump serves pages until
			 * the end of the cut-over, an eager one waits for the restore.
			 */
			while (!lazy && read(s->hook_req, b, sizeof(b)) > 0)
				;
			if (lazy)
				s->lazy_dump = c;
			else
				s->held_dump = c;
			s->held = !lazy;
			s->final_dirfd = dirfd;
			s->stopped = true;
			res->criu_end_s = src__now();
			goto files;
		}
		if (rc == -ETIMEDOUT)
			mig_child__kill(&c);
	} else {
		rc = mig_child__wait(&c, o->timeout_s * 1000, o->signals);
	}
	res->criu_end_s = src__now();
	if (rc == 0 && final)
		s->stopped = true;
	if (rc) {
		mig_log_reason(dirfd, final ? "dump.log" : "pre-dump.log", reason, sizeof(reason));
		if (rc == -ETIMEDOUT)
			src__fail(s, "criu %s took more than %d s (log: %s/%s.log)", action,
				  o->timeout_s, dpath, action);
		else if (rc >= 128)
			src__fail(s, "criu %s was killed by signal %d%s", action, rc - 128,
				  src__interrupted(s) ? " (interrupted)" : "");
		else
			src__fail(s, "criu %s failed (exit %d): %s (log: %s/%s.log)", action, rc,
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
		src__fail(s, "%s/stats-dump: %s", dpath, uffdwp_strerror(-err));
		goto err_dir;
	}
files:
	if (send_files(s, n, &res->bytes))
		goto err_dir;
	mig_out__init(&out, "DONE");
	mig_out__u64(&out, "n", n);
	mig_out__u64(&out, "rc", 0);
	if (src__send(s, &out) || src__answer(s, "OK", &m, s->io_ms))
		goto err_dir;
	res->end_s = src__now();
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
