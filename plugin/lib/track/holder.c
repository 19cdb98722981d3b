// SPDX-License-Identifier: GPL-2.0
/* The holder daemon: keeps a tracker between commands and serves its socket. */
#define LOG_PREFIX "holder: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "track/holder_priv.h"
#include "base/io.h"
#include "base/log.h"
#include "base/procfs.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t self_rss(void)
{
	char line[128];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static volatile sig_atomic_t holder_quit;

static void holder_sig(int sig)
{
	holder_quit = 1;
}

/*
 * Any tracked task still alive? Before the first adopt (CRIU mode) the
 * list is empty: then the root process decides.
 */
static bool holder_tasks_alive(const struct uffdwp_holder_opts *o, struct uffdwp_tracker *t)
{
	if (!uffdwp_tracker__nr_tasks(t))
		return kill(o->track.pid, 0) == 0 && !uffdwp_proc_is_zombie(o->track.pid);
	return uffdwp_tracker__any_alive(t);
}

static int peer_ok(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len))
		return 0;
	return cr.uid == geteuid();
}

/* The pid of the process at the other end of @fd (peer_ok() checked its uid), or 0. */
static pid_t peer_pid(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) ? 0 : cr.pid;
}

static void holder_reply_err(int fd, int err)
{
	struct hw_buf b = {0};

	if (!hw_put_u64(&b, (uint64_t)(int64_t)err))
		hw_send(fd, RESP_ERR, &b);
	free(b.p);
}

/* Serve one request. Returns 1 when the holder must exit afterwards. */
/*
 * The images of a commit_sync, synced after its caller went on (the tasks
 * run again by then), in a thread of their own: fork events keep being
 * read meanwhile, and no request is taken before it is done, so the next
 * run sees the outcome. A failure leaves the images unknown.
 */
struct holder_sync {
	pthread_t thread;
	int fd;	  /* the images directory while a sync runs, else -1 */
	int done; /* eventfd: the thread is through */
	int err;
};

static void *holder_sync_thread(void *arg)
{
	struct holder_sync *s = arg;
	uint64_t one = 1;

	/* No logging here: the log and uffdwp_strerror() are the loop's. */
	s->err = syncfs(s->fd) ? -errno : 0;
	/* Cannot fail: the counter is 0, far from its limit. */
	if (write(s->done, &one, sizeof(one)) != sizeof(one) && !s->err)
		s->err = -EIO;
	return NULL;
}

static void holder_sync_end(struct holder_sync *s, struct uffdwp_holder_status *hs, bool joined)
{
	uint64_t v;

	if (joined) {
		pthread_join(s->thread, NULL);
		if (read(s->done, &v, sizeof(v)) != sizeof(v))
			pr_debug("eventfd read: %s\n", uffdwp_strerror(errno));
	}
	hs->sync_err = s->err;
	if (s->err) {
		memset(hs->tag, 0, sizeof(hs->tag));
		pr_warn("syncfs of the committed images failed: %s; "
			"the next dump takes all memory\n",
			uffdwp_strerror(-s->err));
	}
	close(s->fd);
	s->fd = -1;
}

static void holder_sync_start(struct holder_sync *s, int fd, struct uffdwp_holder_status *hs)
{
	s->fd = fd;
	if (s->done < 0)
		s->done = eventfd(0, EFD_CLOEXEC);
	if (s->done >= 0 && !pthread_create(&s->thread, NULL, holder_sync_thread, s))
		return;
	/* No thread: here, then. */
	s->err = syncfs(fd) ? -errno : 0;
	holder_sync_end(s, hs, false);
}

/*
 * One request on @cfd; a commit_sync leaves its directory in *@sync_fd.
 * *@used says whether it was a use (anything but a status query), which
 * holds off the idle timeout; @last_use_ms is the previous one.
 */
static int holder_serve(int cfd, const struct uffdwp_holder_opts *o, struct uffdwp_tracker **tp,
			uint64_t started_ms, uint64_t last_use_ms, uint64_t *last_gen,
			struct uffdwp_holder_status *hs, int *sync_fd, bool *used)
{
	struct hw_buf in = {0}, out = {0};
	struct uffdwp_report *rep = NULL;
	struct uffdwp_stop_stats stop;
	uint32_t type;
	int err, quit = 0, fds[2] = {-1, -1};

	*used = false;
	err = hw_recv_fds(cfd, &type, &in, fds);
	if (err)
		goto out;
	*used = type != REQ_STATUS;
	/*
	 * The pid we were started for now names another process: whoever asks
	 * about it must not get our answers.
	 */
	if (uffdwp_proc_start_time(o->track.pid) != o->root_start) {
		holder_reply_err(cfd, -ESRCH);
		quit = 1;
		goto out;
	}
	switch (type) {
	case REQ_SCAN:
		uffdwp_tracker__set_requester(*tp, peer_pid(cfd));
		err = uffdwp_tracker__scan(*tp, &rep);
		uffdwp_tracker__set_requester(*tp, 0);
		if (err) {
			holder_reply_err(cfd, err);
			break;
		}
		*last_gen = rep->gen;
		err = hw_report_encode(rep, &out);
		if (!err)
			err = hw_send(cfd, RESP_REPORT, &out);
		else
			holder_reply_err(cfd, err);
		break;
	case REQ_COMMIT:
	case REQ_COMMIT_SYNC: {
		uint64_t gen = hw_get_u64(&in);

		if (in.bad || (type == REQ_COMMIT_SYNC && fds[0] < 0))
			err = -EBADMSG;
		else
			err = uffdwp_tracker__commit(*tp, gen);
		/*
		 * An optional tag names what the committed images are. A commit
		 * without one clears it: those images are nobody's we know, and
		 * a delta against the old tag would miss what they hold.
		 */
		if (!err && in.len - in.off == sizeof(hs->tag))
			memcpy(hs->tag, in.p + in.off, sizeof(hs->tag));
		else if (!err)
			memset(hs->tag, 0, sizeof(hs->tag));
		if (!err && type == REQ_COMMIT_SYNC) {
			*sync_fd = fds[0];
			fds[0] = -1;
		}
		if (err)
			holder_reply_err(cfd, err);
		else
			hw_send(cfd, RESP_OK, NULL);
		break;
	}
	case REQ_ADOPT: {
		pid_t pid = (pid_t)hw_get_u64(&in);

		err = (in.bad || fds[0] < 0 || fds[1] < 0)
			  ? -EBADMSG
			  : uffdwp_tracker__adopt(*tp, pid, fds[0], fds[1]);
		if (!err)
			fds[0] = fds[1] = -1; /* the tracker owns them now */
		if (err)
			holder_reply_err(cfd, err);
		else
			hw_send(cfd, RESP_OK, NULL);
		break;
	}
	case REQ_STATUS:
		hs->holder_pid = getpid();
		hs->root_pid = o->track.pid;
		hs->tree = o->track.tree;
		hs->nr_tasks = uffdwp_tracker__nr_tasks(*tp);
		hs->last_gen = *last_gen;
		hs->uptime_ms = mono_ms() - started_ms;
		hs->tracker_mem_bytes = uffdwp_tracker__mem_bytes(*tp);
		hs->holder_rss_bytes = self_rss();
		hs->fork_events = uffdwp_tracker__fork_events(*tp);
		hs->idle_timeout_s = o->idle_timeout_s;
		hs->idle_ms = mono_ms() - last_use_ms;
		if (!hw_buf_put(&out, hs, sizeof(*hs)))
			hw_send(cfd, RESP_STATUS, &out);
		break;
	case REQ_STOP:
		uffdwp_tracker__stop(*tp, hw_get_u64(&in) != 0, &stop);
		*tp = NULL;
		if (!hw_buf_put(&out, &stop, sizeof(stop)))
			hw_send(cfd, RESP_STOP, &out);
		quit = 1;
		break;
	default:
		holder_reply_err(cfd, -EBADMSG);
	}
out:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	uffdwp_report__free(rep);
	free(in.p);
	free(out.p);
	return quit;
}

static int holder_listen(pid_t pid)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, err;

	uffdwp_holder_path(pid, "sock", sa.sun_path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* We hold the lock: a socket file left here is a dead holder's. */
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(sa.sun_path, 0600) ||
	    listen(fd, 8)) {
		err = -errno;
		pr_perror("cannot listen on %s", sa.sun_path);
		close(fd);
		return err;
	}
	return fd;
}

static void holder_main(const struct uffdwp_holder_opts *o, int lockfd, int notify)
{
	struct uffdwp_tracker *t = NULL;
	struct uffdwp_holder_status hs;
	struct holder_sync sync;
	struct stat st;
	uint64_t started = mono_ms(), last, checked = started, last_gen = 1;
	uint64_t idle_ms = (uint64_t)o->idle_timeout_s * 1000;
	char path[108];
	int lfd, err, logfd;

	memset(&hs, 0, sizeof(hs));
	sync.fd = sync.done = -1;
	setsid();
	/* Forked from whatever started us (criu, uffdwp): say what we are. */
	prctl(PR_SET_NAME, "uffdwp-holder");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, holder_sig);
	signal(SIGINT, holder_sig);
	signal(SIGHUP, SIG_IGN);

	err = uffdwp_tracker__new(&o->track, &t);
	if (!err) {
		lfd = holder_listen(o->track.pid);
		if (lfd < 0)
			err = lfd;
	}
	if (err) {
		uffdwp_tracker__stop(t, false, NULL);
		uffdwp_holder_path(o->track.pid, "lock", path, sizeof(path));
		unlink(path);
		uffdwp_write_full(notify, &err, sizeof(err));
		_exit(1);
	}

	/* From here on nobody reads our stderr: log to a file. */
	uffdwp_holder_path(o->track.pid, "log", path, sizeof(path));
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd >= 0) {
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		close(logfd);
	}
	err = 0;
	uffdwp_write_full(notify, &err, sizeof(err));
	close(notify);
	/* Idle from here: attaching took what it took. */
	last = mono_ms();

	while (!holder_quit) {
		/* While a sync runs, requests wait in the backlog. */
		struct pollfd pfd[2] = {{.fd = sync.fd >= 0 ? sync.done : lfd, .events = POLLIN},
					{.fd = uffdwp_tracker__event_fd(t), .events = POLLIN}};
		uint64_t now = mono_ms(), wait = now - checked < 1000 ? 1000 - (now - checked) : 0;
		int n;

		/* Woken at the idle deadline itself, not at the next alive check. */
		if (idle_ms && now - last >= idle_ms) {
			pr_warn("idle for %u s, dropping tracking of %d\n", o->idle_timeout_s,
				o->track.pid);
			break;
		}
		if (idle_ms && idle_ms - (now - last) < wait)
			wait = idle_ms - (now - last);
		n = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, (int)wait);

		/* Fork events pile up between scans: read them as they come. */
		if (n > 0 && (pfd[1].revents & POLLIN))
			uffdwp_tracker__read_events(t);
		if (n > 0 && (pfd[0].revents & POLLIN) && sync.fd >= 0) {
			holder_sync_end(&sync, &hs, true);
		} else if (n > 0 && (pfd[0].revents & POLLIN)) {
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (cfd >= 0) {
				struct timeval tv = {.tv_sec = 30};
				int sync_fd = -1;
				bool used = false;

				setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
				if (!peer_ok(cfd))
					holder_reply_err(cfd, -EACCES);
				else if (holder_serve(cfd, o, &t, started, last, &last_gen, &hs,
						      &sync_fd, &used))
					holder_quit = 1;
				/* Idle counts from the end of a use: a long scan is no idleness. */
				if (used)
					last = mono_ms();
				close(cfd);
				if (sync_fd >= 0)
					holder_sync_start(&sync, sync_fd, &hs);
			}
		}
		/* Checked once a second, busy or not: requests must not keep us alive. */
		if (holder_quit || mono_ms() - checked < 1000)
			continue;
		checked = mono_ms();
		if (!holder_tasks_alive(o, t)) {
			pr_info("tracked tasks of %d are gone, exiting\n", o->track.pid);
			break;
		}
	}
	if (sync.fd >= 0)
		holder_sync_end(&sync, &hs, true);
	uffdwp_holder_path(o->track.pid, "sock", path, sizeof(path));
	unlink(path);
	uffdwp_tracker__stop(t, false, NULL);
	close(lfd);
	/*
	 * Leave nothing behind: the lock goes while we still hold it (a
	 * starter that opened it just before takes it and finds the socket
	 * gone, as if it came after us), the log only if nothing was said.
	 */
	uffdwp_holder_path(o->track.pid, "log", path, sizeof(path));
	if (!stat(path, &st) && !st.st_size)
		unlink(path);
	uffdwp_holder_path(o->track.pid, "lock", path, sizeof(path));
	unlink(path);
	close(lockfd);
	_exit(0);
}

int uffdwp_holder_spawn(const struct uffdwp_holder_opts *opts)
{
	struct uffdwp_holder_opts o;
	char path[108], buf[32];
	int lockfd, p[2], err, n, res = -EIO;
	pid_t child;

	o = *opts;
	o.root_start = uffdwp_proc_start_time(opts->track.pid);
	if (!o.root_start) {
		pr_err("no process %d\n", opts->track.pid);
		return -ESRCH;
	}
	opts = &o;
	err = holder_run_dir_prepare();
	if (err)
		return err;
	holder_run_dir_sweep();
	uffdwp_holder_path(opts->track.pid, "lock", path, sizeof(path));
	for (;;) {
		lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (lockfd < 0) {
			err = -errno;
			pr_perror("open %s", path);
			return err;
		}
		if (flock(lockfd, LOCK_EX | LOCK_NB)) {
			n = pread(lockfd, buf, sizeof(buf) - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			pr_err("process %d is already tracked by holder %s\n", opts->track.pid,
			       n > 0 ? buf : "?");
			close(lockfd);
			return -EBUSY;
		}
		/* A holder leaving (or a sweep) unlinked it after we opened it: again. */
		if (holder_lock_is_current(lockfd, path))
			break;
		close(lockfd);
	}
	if (pipe2(p, O_CLOEXEC)) {
		err = -errno;
		close(lockfd);
		return err;
	}
	child = fork();
	if (child < 0) {
		err = -errno;
		close(p[0]);
		close(p[1]);
		close(lockfd);
		return err;
	}
	if (!child) {
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		close(p[0]);
		if (nul >= 0) {
			dup2(nul, STDIN_FILENO);
			close(nul);
		}
		n = snprintf(buf, sizeof(buf), "%d\n", getpid());
		if (ftruncate(lockfd, 0) || pwrite(lockfd, buf, n, 0) != n)
			pr_warn("cannot record the holder pid in %s\n", path);
		holder_main(opts, lockfd, p[1]);
	}
	close(p[1]);
	/* The lock now belongs to the child: its fd shares our open file. */
	close(lockfd);
	n = hw_read_all(p[0], &res, sizeof(res));
	close(p[0]);
	if (n) {
		waitpid(child, NULL, WNOHANG);
		pr_err("the holder for %d died while starting\n", opts->track.pid);
		return -EIO;
	}
	if (res) {
		waitpid(child, NULL, 0);
		return res;
	}
	return child;
}
