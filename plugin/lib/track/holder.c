// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "holder: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "track/holder.h"
#include "base/io.h"
#include "base/log.h"
#include "base/procfs.h"

#define WIRE_MAGIC 0x31505755u /* "UWP1" */
#define WIRE_MAX   (256u << 20)

enum wire_type {
	REQ_SCAN = 1,
	REQ_COMMIT,
	REQ_STATUS,
	REQ_STOP,
	REQ_ADOPT,	 /* u64 pid; SCM_RIGHTS: uffd, pagemap fd */
	REQ_COMMIT_SYNC, /* as REQ_COMMIT; SCM_RIGHTS: the images directory */
	RESP_OK = 100,
	RESP_ERR,
	RESP_REPORT,
	RESP_STATUS,
	RESP_STOP,
};

struct wire_hdr {
	uint32_t magic;
	uint32_t type;
	uint64_t len;
};

struct buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	size_t off; /* read cursor */
	bool bad;   /* a read ran past the end */
};

static int buf_put(struct buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		uint8_t *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int put_u64(struct buf *b, uint64_t v)
{
	return buf_put(b, &v, sizeof(v));
}

static uint64_t get_u64(struct buf *b)
{
	uint64_t v = 0;

	if (b->off + sizeof(v) > b->len) {
		b->bad = true;
		return 0;
	}
	memcpy(&v, b->p + b->off, sizeof(v));
	b->off += sizeof(v);
	return v;
}

static int report_encode(const struct uffdwp_report *r, struct buf *b)
{
	size_t i, j;
	int err = 0;

	err |= put_u64(b, r->gen);
	err |= put_u64(b, r->scan_ns);
	err |= put_u64(b, r->shmem_objects);
	err |= put_u64(b, r->shmem_shared_objects);
	err |= put_u64(b, r->nr_tasks);
	for (i = 0; i < r->nr_tasks; i++) {
		const struct uffdwp_task_report *t = &r->tasks[i];

		err |= put_u64(b, (uint64_t)t->pid);
		err |= put_u64(b, t->flags);
		err |= put_u64(b, t->written_bytes);
		err |= put_u64(b, t->pending_bytes);
		err |= put_u64(b, t->tracked_bytes);
		err |= put_u64(b, t->thp_bytes_start);
		err |= put_u64(b, t->dirty.nr);
		err |= put_u64(b, t->nr_notes);
		for (j = 0; j < t->dirty.nr; j++) {
			err |= put_u64(b, t->dirty.r[j].start);
			err |= put_u64(b, t->dirty.r[j].end);
		}
		for (j = 0; j < t->nr_notes; j++) {
			err |= put_u64(b, t->notes[j].start);
			err |= put_u64(b, t->notes[j].end);
			err |= put_u64(b, t->notes[j].reason);
			err |= put_u64(b, (uint64_t)(int64_t)t->notes[j].err);
		}
	}
	return err ? -ENOMEM : 0;
}

static int report_decode(struct buf *b, struct uffdwp_report **out)
{
	struct uffdwp_report *r;
	size_t i, j;
	uint64_t n;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->gen = get_u64(b);
	r->scan_ns = get_u64(b);
	r->shmem_objects = get_u64(b);
	r->shmem_shared_objects = get_u64(b);
	n = get_u64(b);
	/* Each task takes at least 8 words: refuse counts the buffer cannot hold. */
	if (b->bad || n > (b->len - b->off) / 64)
		goto err_bad;
	r->tasks = calloc(n ? n : 1, sizeof(*r->tasks));
	if (!r->tasks)
		goto err_nomem;
	r->nr_tasks = n;
	for (i = 0; i < n; i++) {
		struct uffdwp_task_report *t = &r->tasks[i];
		uint64_t nr, nn;

		t->pid = (pid_t)get_u64(b);
		t->flags = (uint32_t)get_u64(b);
		t->written_bytes = get_u64(b);
		t->pending_bytes = get_u64(b);
		t->tracked_bytes = get_u64(b);
		t->thp_bytes_start = get_u64(b);
		nr = get_u64(b);
		nn = get_u64(b);
		if (b->bad || nr > (b->len - b->off) / 16 || nn > (b->len - b->off) / 32)
			goto err_bad;
		for (j = 0; j < nr; j++) {
			uint64_t s = get_u64(b), e = get_u64(b);

			if (uffdwp_rangeset__add(&t->dirty, s, e))
				goto err_nomem;
		}
		t->notes = calloc(nn ? nn : 1, sizeof(*t->notes));
		if (!t->notes)
			goto err_nomem;
		t->nr_notes = nn;
		for (j = 0; j < nn; j++) {
			t->notes[j].start = get_u64(b);
			t->notes[j].end = get_u64(b);
			t->notes[j].reason = (uint32_t)get_u64(b);
			t->notes[j].err = (int32_t)get_u64(b);
		}
		if (b->bad)
			goto err_bad;
	}
	*out = r;
	return 0;

err_bad:
	pr_err("malformed report from the holder\n");
	uffdwp_report__free(r);
	return -EBADMSG;
err_nomem:
	uffdwp_report__free(r);
	return -ENOMEM;
}

static int read_all(int fd, void *p, size_t len)
{
	uint8_t *c = p;

	while (len) {
		ssize_t n = read(fd, c, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		c += n;
		len -= n;
	}
	return 0;
}

static int msg_send_fds(int fd, uint32_t type, const struct buf *b, const int *fds, int nfds)
{
	struct wire_hdr h = {.magic = WIRE_MAGIC, .type = type, .len = b ? b->len : 0};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;

	if (nfds < 0 || nfds > 2)
		return -EINVAL;
	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	/* The header goes alone in one sendmsg so the fds ride with its bytes. */
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(h))
		return -errno ? -errno : -EIO;
	if (b && b->len)
		return uffdwp_send_full(fd, b->p, b->len);
	return 0;
}

static int msg_send(int fd, uint32_t type, const struct buf *b)
{
	struct wire_hdr h = {.magic = WIRE_MAGIC, .type = type, .len = b ? b->len : 0};
	int err;

	err = uffdwp_send_full(fd, &h, sizeof(h));
	if (!err && b && b->len)
		err = uffdwp_send_full(fd, b->p, b->len);
	return err;
}

/*
 * Receive one message; fds passed along with it (at most 2) land in @fds,
 * the others closed, unused slots -1. @fds may be NULL: any fd is closed.
 */
static int msg_recv_fds(int fd, uint32_t *type, struct buf *b, int *fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cm;
	struct wire_hdr h;
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	struct cmsghdr *c;
	ssize_t n;
	int err, k = 0;

	if (fds)
		fds[0] = fds[1] = -1;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n < 0 ? -errno : -EPIPE;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		int i, nr;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nr = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nr; i++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fds && k < 2)
				fds[k++] = got;
			else
				close(got);
		}
	}
	if ((size_t)n < sizeof(h)) {
		err = read_all(fd, (char *)&h + n, sizeof(h) - n);
		if (err)
			return err;
	}
	if (h.magic != WIRE_MAGIC || h.len > WIRE_MAX)
		return -EBADMSG;
	(void)k;
	*type = h.type;
	b->len = b->off = 0;
	b->bad = false;
	if (!h.len)
		return 0;
	if (h.len > b->cap) {
		uint8_t *p = realloc(b->p, h.len);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = h.len;
	}
	err = read_all(fd, b->p, h.len);
	if (!err)
		b->len = h.len;
	return err;
}

static int msg_recv(int fd, uint32_t *type, struct buf *b)
{
	return msg_recv_fds(fd, type, b, NULL);
}

static int run_dir_prepare(void)
{
	/*
	 * Say so before anything fails with a bare EPERM: the holder injects
	 * with ptrace (CAP_SYS_PTRACE), copies the fd with pidfd_getfd and
	 * reads /proc/PID/map_files (CAP_SYS_ADMIN); its run directory is
	 * root's.
	 */
	if (geteuid()) {
		pr_err("tracking needs root (CAP_SYS_PTRACE and CAP_SYS_ADMIN, and %s is "
		       "root's)\n",
		       UFFDWP_RUN_DIR);
		return -EPERM;
	}
	if (mkdir(UFFDWP_RUN_DIR, 0700) && errno != EEXIST) {
		int err = -errno;

		pr_perror("mkdir %s", UFFDWP_RUN_DIR);
		return err;
	}
	/* An existing directory may have come with looser modes: not ours to trust. */
	if (chmod(UFFDWP_RUN_DIR, 0700)) {
		int err = -errno;

		pr_perror("chmod %s", UFFDWP_RUN_DIR);
		return err;
	}
	return 0;
}

/* The lock we hold on @fd is the one at @path, not one a holder unlinked. */
static bool lock_is_current(int fd, const char *path)
{
	struct stat a, b;

	return !fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* How long the log of a holder that is gone is kept for its reader. */
#define HOLDER_LOG_KEEP_S (7 * 24 * 3600)

/* A log whose holder is gone (no lock file) and that is older than a week. */
static void sweep_old_log(char *path, size_t n, time_t now)
{
	struct stat st;

	strcpy(path + n - 3, "lock");
	if (!access(path, F_OK))
		return;
	strcpy(path + n - 3, "log");
	if (!lstat(path, &st) && S_ISREG(st.st_mode) && st.st_mtime + HOLDER_LOG_KEEP_S < now)
		unlink(path);
}

/*
 * A holder that was killed (SIGKILL, OOM) leaves its lock, socket and log
 * behind. Whoever takes such a lock knows its holder is dead: take the
 * files away, keeping a log that says something (for a week).
 */
static void run_dir_sweep(void)
{
	time_t now = time(NULL);
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	d = opendir(UFFDWP_RUN_DIR);
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		int fd, n;

		if (len < 5)
			continue;
		n = snprintf(path, sizeof(path), UFFDWP_RUN_DIR "/%s", de->d_name);
		if (n < 0 || (size_t)n >= sizeof(path) - 1)
			continue;
		if (!strcmp(de->d_name + len - 4, ".log")) {
			sweep_old_log(path, n, now);
			continue;
		}
		if (len < 6 || strcmp(de->d_name + len - 5, ".lock"))
			continue;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (!flock(fd, LOCK_EX | LOCK_NB) && lock_is_current(fd, path)) {
			char *dot = path + n - 4;

			strcpy(dot, "sock");
			unlink(path);
			strcpy(dot, "log");
			if (!stat(path, &st) && !st.st_size)
				unlink(path);
			strcpy(dot, "lock");
			/* Unlinked while held, as a holder does on its way out. */
			unlink(path);
		}
		close(fd);
	}
	closedir(d);
}

int uffdwp_holder_path(pid_t pid, const char *kind, char *buf, size_t len)
{
	struct stat ns;
	int n;

	/* Without /proc, namespace 0: a name no namespace can share by mistake. */
	if (stat("/proc/self/ns/pid", &ns))
		ns.st_ino = 0;
	n = snprintf(buf, len, UFFDWP_HOLDER_FILE_FMT, (unsigned long)ns.st_ino, pid, kind);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int uffdwp_holder_running(pid_t pid)
{
	char path[108], buf[32];
	int fd, n, holder = 0;

	uffdwp_holder_path(pid, "lock", path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		/* We got it: nobody holds it. */
		close(fd);
		return 0;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		holder = atoi(buf);
	}
	close(fd);
	return holder > 0 ? holder : 1;
}

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
	struct buf b = {0};

	if (!put_u64(&b, (uint64_t)(int64_t)err))
		msg_send(fd, RESP_ERR, &b);
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
	struct buf in = {0}, out = {0};
	struct uffdwp_report *rep = NULL;
	struct uffdwp_stop_stats stop;
	uint32_t type;
	int err, quit = 0, fds[2] = {-1, -1};

	*used = false;
	err = msg_recv_fds(cfd, &type, &in, fds);
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
		err = report_encode(rep, &out);
		if (!err)
			err = msg_send(cfd, RESP_REPORT, &out);
		else
			holder_reply_err(cfd, err);
		break;
	case REQ_COMMIT:
	case REQ_COMMIT_SYNC: {
		uint64_t gen = get_u64(&in);

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
			msg_send(cfd, RESP_OK, NULL);
		break;
	}
	case REQ_ADOPT: {
		pid_t pid = (pid_t)get_u64(&in);

		err = (in.bad || fds[0] < 0 || fds[1] < 0)
			  ? -EBADMSG
			  : uffdwp_tracker__adopt(*tp, pid, fds[0], fds[1]);
		if (!err)
			fds[0] = fds[1] = -1; /* the tracker owns them now */
		if (err)
			holder_reply_err(cfd, err);
		else
			msg_send(cfd, RESP_OK, NULL);
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
		if (!buf_put(&out, hs, sizeof(*hs)))
			msg_send(cfd, RESP_STATUS, &out);
		break;
	case REQ_STOP:
		uffdwp_tracker__stop(*tp, get_u64(&in) != 0, &stop);
		*tp = NULL;
		if (!buf_put(&out, &stop, sizeof(stop)))
			msg_send(cfd, RESP_STOP, &out);
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
	err = run_dir_prepare();
	if (err)
		return err;
	run_dir_sweep();
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
		if (lock_is_current(lockfd, path))
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
	n = read_all(p[0], &res, sizeof(res));
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

static int client_call_fds(pid_t pid, uint32_t type, const struct buf *req, const int *fds,
			   int nfds, uint32_t want, struct buf *resp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint32_t rtype;
	int fd, err;

	uffdwp_holder_path(pid, "sock", sa.sun_path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	err = nfds ? msg_send_fds(fd, type, req, fds, nfds) : msg_send(fd, type, req);
	if (!err)
		err = msg_recv(fd, &rtype, resp);
	close(fd);
	if (err)
		return err == -EPIPE ? -ECONNRESET : err;
	if (rtype == RESP_ERR) {
		err = (int)(int64_t)get_u64(resp);
		return err < 0 ? err : -EPROTO;
	}
	return rtype == want ? 0 : -EPROTO;
}

static int client_call(pid_t pid, uint32_t type, const struct buf *req, uint32_t want,
		       struct buf *resp)
{
	return client_call_fds(pid, type, req, NULL, 0, want, resp);
}

int uffdwp_holder_adopt(pid_t pid, pid_t task, int uffd, int pagemap_fd)
{
	struct buf req = {0}, resp = {0};
	int fds[2] = {uffd, pagemap_fd};
	int err;

	err = put_u64(&req, (uint64_t)task);
	if (!err)
		err = client_call_fds(pid, REQ_ADOPT, &req, fds, 2, RESP_OK, &resp);
	free(req.p);
	free(resp.p);
	return err;
}

int uffdwp_holder_scan(pid_t pid, struct uffdwp_report **out)
{
	struct buf resp = {0};
	int err;

	err = client_call(pid, REQ_SCAN, NULL, RESP_REPORT, &resp);
	if (!err)
		err = report_decode(&resp, out);
	free(resp.p);
	return err;
}

int uffdwp_holder_commit(pid_t pid, uint64_t gen)
{
	return uffdwp_holder_commit_tag(pid, gen, NULL);
}

/* A commit (with @tag if any); with @img_dir >= 0 the holder syncs it after. */
static int holder_commit(pid_t pid, uint64_t gen, const uint8_t *tag, int img_dir)
{
	struct buf req = {0}, resp = {0};
	int err;

	err = put_u64(&req, gen);
	if (!err && tag)
		err = buf_put(&req, tag, UFFDWP_HOLDER_TAG_LEN);
	if (!err && img_dir >= 0)
		err = client_call_fds(pid, REQ_COMMIT_SYNC, &req, &img_dir, 1, RESP_OK, &resp);
	else if (!err)
		err = client_call(pid, REQ_COMMIT, &req, RESP_OK, &resp);
	free(req.p);
	free(resp.p);
	return err;
}

int uffdwp_holder_commit_tag(pid_t pid, uint64_t gen, const uint8_t *tag)
{
	return holder_commit(pid, gen, tag, -1);
}

int uffdwp_holder_commit_sync(pid_t pid, uint64_t gen, const uint8_t *tag, int img_dir)
{
	return img_dir < 0 ? -EBADF : holder_commit(pid, gen, tag, img_dir);
}

int uffdwp_holder_status(pid_t pid, struct uffdwp_holder_status *st)
{
	struct buf resp = {0};
	int err;

	err = client_call(pid, REQ_STATUS, NULL, RESP_STATUS, &resp);
	if (!err && resp.len != sizeof(*st))
		err = -EPROTO;
	if (!err)
		memcpy(st, resp.p, sizeof(*st));
	free(resp.p);
	return err;
}

int uffdwp_holder_stop(pid_t pid, int recollapse, struct uffdwp_stop_stats *stats)
{
	struct buf req = {0}, resp = {0};
	int err;

	err = put_u64(&req, recollapse ? 1 : 0);
	if (!err)
		err = client_call(pid, REQ_STOP, &req, RESP_STOP, &resp);
	if (!err && resp.len != sizeof(*stats))
		err = -EPROTO;
	if (!err)
		memcpy(stats, resp.p, sizeof(*stats));
	free(req.p);
	free(resp.p);
	return err;
}
