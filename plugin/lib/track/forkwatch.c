// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "forkwatch: "
/*
 * Fork events from the proc connector; see forkwatch.h.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

#include "track/forkwatch.h"
#include "base/log.h"

/* Descendants of watched processes remembered in one interval, at most. */
#define KIDS_MAX 65536
/*
 * How long the event of our own probe fork may take. The kernel queues it
 * before fork() returns, so this only covers a reader descheduled under
 * load; a probe whose event the kernel dropped (ENOBUFS) forks again.
 */
#define PROBE_TIMEOUT_MS 2000
#define PROBE_TRIES	 3
/* Inode numbers of the initial namespaces (include/linux/proc_ns.h), fixed. */
#define PROC_USER_INIT_INO 0xEFFFFFFDU
#define PROC_PID_INIT_INO  0xEFFFFFFCU
/* Room for bursts of forks between two drains (needs CAP_NET_ADMIN to force). */
#define RCVBUF_BYTES (4 << 20)

struct fork_kid {
	pid_t pid;	/* a process forked from a watched one, or from such a kid */
	pid_t ancestor; /* the watched process it descends from */
};

struct uffdwp_forkwatch {
	int fd;
	uint32_t seq; /* of our last request, to find the kernel's answer */
	bool lost;
	pid_t *forked; /* watched processes that forked in this interval */
	size_t nr_forked, cap_forked;
	struct fork_kid *kids;
	size_t nr_kids, cap_kids;
};

/*
 * Linux 6.6 takes a filter with the subscription (struct proc_input) and
 * then only sends the events asked for; older kernels drop a message of
 * that size without an answer. The bare operation (4 bytes) every kernel
 * takes, and answers: it is how we learn the subscription was taken.
 */
struct listen_req {
	uint32_t op;	/* enum proc_cn_mcast_op */
	uint32_t event; /* enum proc_cn_event, 6.6 */
};

#define REQ_BARE     sizeof(uint32_t)
#define REQ_FILTERED sizeof(struct listen_req)

static int send_op(int fd, uint32_t op, size_t len, uint32_t seq)
{
	char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(struct listen_req))]
	    __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *nl = (struct nlmsghdr *)buf;
	struct cn_msg *cn = NLMSG_DATA(nl);
	struct listen_req req = {.op = op, .event = PROC_EVENT_FORK};

	memset(buf, 0, sizeof(buf));
	nl->nlmsg_len = NLMSG_LENGTH(sizeof(*cn) + len);
	nl->nlmsg_type = NLMSG_DONE;
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->seq = seq;
	cn->ack = seq;
	cn->len = (uint16_t)len;
	memcpy(cn->data, &req, len);
	if (send(fd, buf, nl->nlmsg_len, MSG_NOSIGNAL) != (ssize_t)nl->nlmsg_len)
		return -errno;
	return 0;
}

/*
 * The fork event in @nl, copied out: the kernel puts struct proc_event right
 * after struct cn_msg, 4 bytes off the 8-byte alignment it needs. Returns
 * false for anything else.
 */
static bool fork_event(const struct nlmsghdr *nl, struct proc_event *ev)
{
	const struct cn_msg *cn = NLMSG_DATA(nl);
	size_t need = offsetof(struct proc_event, event_data) + sizeof(ev->event_data.fork);

	if (nl->nlmsg_type == NLMSG_ERROR || nl->nlmsg_type == NLMSG_NOOP ||
	    nl->nlmsg_len < NLMSG_LENGTH(sizeof(*cn)) ||
	    nl->nlmsg_len - NLMSG_LENGTH(sizeof(*cn)) < need || cn->len < need ||
	    cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
		return false;
	memcpy(ev, cn->data, need);
	return ev->what == PROC_EVENT_FORK;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The kernel's answer to our request @seq in @nl: 1 and *@err (its errno,
 * 0 for taken) if @nl is one, else 0. Answers go to every listener that
 * takes all events; the kernel numbers them by the request's ack field
 * plus one (their seq is its own event counter).
 */
static int answer(const struct nlmsghdr *nl, uint32_t seq, int *err)
{
	const struct cn_msg *cn = NLMSG_DATA(nl);
	size_t need = offsetof(struct proc_event, event_data) + sizeof(uint32_t);
	struct proc_event ev;

	if (nl->nlmsg_len < NLMSG_LENGTH(sizeof(*cn) + need) || cn->len < need ||
	    cn->id.idx != CN_IDX_PROC || cn->ack != seq + 1)
		return 0;
	memcpy(&ev, cn->data, need);
	if (ev.what != PROC_EVENT_NONE)
		return 0;
	*err = (int)ev.event_data.ack.err;
	return 1;
}

/*
 * Read @fd until @match says 1 (then return what it put in *err) or the
 * timeout (-ETIMEDOUT). *@dropped tells whether the kernel dropped events
 * meanwhile (ENOBUFS: the socket buffer overflowed).
 */
static int wait_for(int fd, int (*match)(const struct nlmsghdr *nl, void *arg, int *err), void *arg,
		    bool *dropped)
{
	char buf[4096] __attribute__((aligned(NLMSG_ALIGNTO)));
	uint64_t end = mono_ms() + PROBE_TIMEOUT_MS;
	int err;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = mono_ms();
		struct nlmsghdr *nl;
		ssize_t n;

		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(end - now)) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == ENOBUFS)
				*dropped = true;
			continue;
		}
		for (nl = (struct nlmsghdr *)buf; NLMSG_OK(nl, (size_t)n); nl = NLMSG_NEXT(nl, n))
			if (match(nl, arg, &err))
				return err;
	}
}

static int match_answer(const struct nlmsghdr *nl, void *arg, int *err)
{
	return answer(nl, *(uint32_t *)arg, err);
}

struct probe_child {
	pid_t parent, child;
};

static int match_probe(const struct nlmsghdr *nl, void *arg, int *err)
{
	const struct probe_child *pc = arg;
	struct proc_event ev;

	*err = 0;
	return fork_event(nl, &ev) && ev.event_data.fork.parent_tgid == pc->parent &&
	       ev.event_data.fork.child_tgid == pc->child;
}

/*
 * Fork a child that exits at once and wait for its event, with our own pid
 * as the parent: the events reach us, and their pids are ours (the kernel
 * reports them in the initial pid namespace). Returns 0, -ENOBUFS (the
 * kernel dropped events, ours maybe: try again) or -ETIMEDOUT.
 */
static int probe_fork(int fd)
{
	struct probe_child pc = {.parent = getpid()};
	bool dropped = false;
	int err;

	pc.child = fork();
	if (pc.child < 0)
		return -errno;
	if (!pc.child)
		_exit(0);
	while (waitpid(pc.child, NULL, 0) < 0 && errno == EINTR)
		;
	err = wait_for(fd, match_probe, &pc, &dropped);
	return err == -ETIMEDOUT && dropped ? -ENOBUFS : err;
}

/*
 * Subscribe: the bare request first, whose answer says the kernel took it
 * (a request it refuses changes nothing: a listener that never checked
 * gets events only while someone else listens); then the filtered one,
 * which narrows it to forks on Linux 6.6 and is dropped before. Then see
 * a fork event come.
 */
static int subscribe(struct uffdwp_forkwatch *w)
{
	bool dropped = false;
	uint32_t seq;
	int err, i;

	seq = ++w->seq;
	err = send_op(w->fd, PROC_CN_MCAST_LISTEN, REQ_BARE, seq);
	if (!err)
		err = wait_for(w->fd, match_answer, &seq, &dropped);
	/* No answer at all: the kernel ignores this process (namespaces). */
	if (err == -ETIMEDOUT && !dropped)
		err = -EPERM;
	else if (err > 0)
		err = -err;
	if (!err)
		err = send_op(w->fd, PROC_CN_MCAST_LISTEN, REQ_FILTERED, ++w->seq);
	for (i = 0; !err && i < PROBE_TRIES; i++) {
		err = probe_fork(w->fd);
		if (err != -ENOBUFS)
			break;
	}
	return err;
}

const char *uffdwp_forkwatch_why(int err)
{
	switch (err) {
	case 0:
		return "fork events come";
	case -EPERM:
		return "the proc connector takes listeners only from the initial user and pid "
		       "namespaces";
	case -EPROTONOSUPPORT:
	case -EAFNOSUPPORT:
		return "no proc connector in this kernel (CONFIG_PROC_EVENTS)";
	case -ETIMEDOUT:
		return "subscribed, but no fork event came for a probe fork";
	case -EINVAL:
		return "the proc connector refused the subscription (EINVAL)";
	case -ENOBUFS:
		return "the kernel kept dropping fork events (a full socket buffer)";
	}
	return uffdwp_strerror(-err);
}

int uffdwp_forkwatch__open(struct uffdwp_forkwatch **out)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
	struct uffdwp_forkwatch *w;
	int size = RCVBUF_BYTES;
	struct stat st;
	int err;

	/*
	 * The kernel only takes listeners from the initial user and pid
	 * namespaces, and tells the others nothing: do not wait for it.
	 */
	if (stat("/proc/self/ns/user", &st) || st.st_ino != PROC_USER_INIT_INO ||
	    stat("/proc/self/ns/pid", &st) || st.st_ino != PROC_PID_INIT_INO)
		return -EPERM;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	/* Answers go to every listener: numbered by our pid, they are told apart. */
	w->seq = (uint32_t)getpid() << 8;
	w->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (w->fd < 0) {
		err = -errno;
		goto err_free;
	}
	if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
		setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		goto err_close;
	}
	err = subscribe(w);
	if (err)
		goto err_ignore;
	*out = w;
	return 0;

err_ignore:
	/*
	 * The kernel counts listeners by their requests and not by their
	 * sockets: one closed without IGNORE (a holder killed) stays counted
	 * until reboot, and every fork on the machine then makes an event.
	 */
	send_op(w->fd, PROC_CN_MCAST_IGNORE, REQ_BARE, ++w->seq);
err_close:
	close(w->fd);
err_free:
	free(w);
	return err;
}

int uffdwp_forkwatch__fd(const struct uffdwp_forkwatch *w)
{
	return w->fd;
}

static pid_t kid_ancestor(const struct uffdwp_forkwatch *w, pid_t pid)
{
	size_t i;

	for (i = w->nr_kids; i-- > 0;)
		if (w->kids[i].pid == pid)
			return w->kids[i].ancestor;
	return 0;
}

static int note_fork(struct uffdwp_forkwatch *w, pid_t ancestor, pid_t child)
{
	size_t i;

	for (i = 0; i < w->nr_forked && w->forked[i] != ancestor; i++)
		;
	if (i == w->nr_forked) {
		if (w->nr_forked == w->cap_forked) {
			size_t cap = w->cap_forked ? 2 * w->cap_forked : 16;
			pid_t *p = realloc(w->forked, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			w->forked = p;
			w->cap_forked = cap;
		}
		w->forked[w->nr_forked++] = ancestor;
	}
	/* Too many to follow their own forks: count every process as forked. */
	if (w->nr_kids == KIDS_MAX) {
		w->lost = true;
		return 0;
	}
	if (w->nr_kids == w->cap_kids) {
		size_t cap = w->cap_kids ? 2 * w->cap_kids : 64;
		struct fork_kid *k = realloc(w->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		w->kids = k;
		w->cap_kids = cap;
	}
	w->kids[w->nr_kids].pid = child;
	w->kids[w->nr_kids].ancestor = ancestor;
	w->nr_kids++;
	return 0;
}

int uffdwp_forkwatch__drain(struct uffdwp_forkwatch *w, bool (*watched)(void *arg, pid_t pid),
			    void *arg)
{
	char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));

	for (;;) {
		struct nlmsghdr *nl;
		ssize_t n;

		n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			/* ENOBUFS: the socket buffer overflowed and the kernel dropped events. */
			if (!w->lost)
				pr_warn("fork events lost (%s): every process counts as forked\n",
					uffdwp_strerror(errno));
			w->lost = true;
			if (errno == ENOBUFS)
				continue;
			return 0;
		}
		for (nl = (struct nlmsghdr *)buf; NLMSG_OK(nl, (size_t)n); nl = NLMSG_NEXT(nl, n)) {
			struct proc_event ev;
			pid_t parent, ancestor;
			int err;

			if (!fork_event(nl, &ev))
				continue;
			/* A thread shares its mm: its writes are in page tables we scan. */
			if (ev.event_data.fork.child_pid != ev.event_data.fork.child_tgid)
				continue;
			parent = ev.event_data.fork.parent_tgid;
			ancestor = watched(arg, parent) ? parent : kid_ancestor(w, parent);
			if (!ancestor)
				continue;
			err = note_fork(w, ancestor, ev.event_data.fork.child_tgid);
			/* Out of memory: a fork not remembered counts as every fork. */
			if (err)
				w->lost = true;
		}
	}
}

bool uffdwp_forkwatch__forked(const struct uffdwp_forkwatch *w, pid_t pid)
{
	size_t i;

	if (w->lost)
		return true;
	for (i = 0; i < w->nr_forked; i++)
		if (w->forked[i] == pid)
			return true;
	return false;
}

bool uffdwp_forkwatch__lost(const struct uffdwp_forkwatch *w)
{
	return w->lost;
}

void uffdwp_forkwatch__reset(struct uffdwp_forkwatch *w)
{
	w->lost = false;
	w->nr_forked = 0;
	w->nr_kids = 0;
}

void uffdwp_forkwatch__close(struct uffdwp_forkwatch *w)
{
	if (!w)
		return;
	/* The kernel makes fork events while anyone listens: say we stopped. */
	send_op(w->fd, PROC_CN_MCAST_IGNORE, REQ_BARE, ++w->seq);
	close(w->fd);
	free(w->forked);
	free(w->kids);
	free(w);
}
