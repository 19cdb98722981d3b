// SPDX-License-Identifier: GPL-2.0
/* The messages between a client and its holder (holder_priv.h). */
#define LOG_PREFIX "holder: "
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "track/holder_priv.h"
#include "base/io.h"
#include "base/log.h"

int hw_buf_put(struct hw_buf *b, const void *data, size_t len)
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

int hw_put_u64(struct hw_buf *b, uint64_t v)
{
	return hw_buf_put(b, &v, sizeof(v));
}

uint64_t hw_get_u64(struct hw_buf *b)
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

int hw_report_encode(const struct uffdwp_report *r, struct hw_buf *b)
{
	size_t i, j;
	int err = 0;

	err |= hw_put_u64(b, r->gen);
	err |= hw_put_u64(b, r->scan_ns);
	err |= hw_put_u64(b, r->shmem_objects);
	err |= hw_put_u64(b, r->shmem_shared_objects);
	err |= hw_put_u64(b, r->nr_tasks);
	for (i = 0; i < r->nr_tasks; i++) {
		const struct uffdwp_task_report *t = &r->tasks[i];

		err |= hw_put_u64(b, (uint64_t)t->pid);
		err |= hw_put_u64(b, t->flags);
		err |= hw_put_u64(b, t->written_bytes);
		err |= hw_put_u64(b, t->pending_bytes);
		err |= hw_put_u64(b, t->tracked_bytes);
		err |= hw_put_u64(b, t->thp_bytes_start);
		err |= hw_put_u64(b, t->dirty.nr);
		err |= hw_put_u64(b, t->nr_notes);
		for (j = 0; j < t->dirty.nr; j++) {
			err |= hw_put_u64(b, t->dirty.r[j].start);
			err |= hw_put_u64(b, t->dirty.r[j].end);
		}
		for (j = 0; j < t->nr_notes; j++) {
			err |= hw_put_u64(b, t->notes[j].start);
			err |= hw_put_u64(b, t->notes[j].end);
			err |= hw_put_u64(b, t->notes[j].reason);
			err |= hw_put_u64(b, (uint64_t)(int64_t)t->notes[j].err);
		}
	}
	return err ? -ENOMEM : 0;
}

int hw_report_decode(struct hw_buf *b, struct uffdwp_report **out)
{
	struct uffdwp_report *r;
	size_t i, j;
	uint64_t n;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->gen = hw_get_u64(b);
	r->scan_ns = hw_get_u64(b);
	r->shmem_objects = hw_get_u64(b);
	r->shmem_shared_objects = hw_get_u64(b);
	n = hw_get_u64(b);
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

		t->pid = (pid_t)hw_get_u64(b);
		t->flags = (uint32_t)hw_get_u64(b);
		t->written_bytes = hw_get_u64(b);
		t->pending_bytes = hw_get_u64(b);
		t->tracked_bytes = hw_get_u64(b);
		t->thp_bytes_start = hw_get_u64(b);
		nr = hw_get_u64(b);
		nn = hw_get_u64(b);
		if (b->bad || nr > (b->len - b->off) / 16 || nn > (b->len - b->off) / 32)
			goto err_bad;
		for (j = 0; j < nr; j++) {
			uint64_t s = hw_get_u64(b), e = hw_get_u64(b);

			if (uffdwp_rangeset__add(&t->dirty, s, e))
				goto err_nomem;
		}
		t->notes = calloc(nn ? nn : 1, sizeof(*t->notes));
		if (!t->notes)
			goto err_nomem;
		t->nr_notes = nn;
		for (j = 0; j < nn; j++) {
			t->notes[j].start = hw_get_u64(b);
			t->notes[j].end = hw_get_u64(b);
			t->notes[j].reason = (uint32_t)hw_get_u64(b);
			t->notes[j].err = (int32_t)hw_get_u64(b);
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

int hw_read_all(int fd, void *p, size_t len)
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

int hw_send_fds(int fd, uint32_t type, const struct hw_buf *b, const int *fds, int nfds)
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

int hw_send(int fd, uint32_t type, const struct hw_buf *b)
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
int hw_recv_fds(int fd, uint32_t *type, struct hw_buf *b, int *fds)
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
		err = hw_read_all(fd, (char *)&h + n, sizeof(h) - n);
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
	err = hw_read_all(fd, b->p, h.len);
	if (!err)
		b->len = h.len;
	return err;
}

int hw_recv(int fd, uint32_t *type, struct hw_buf *b)
{
	return hw_recv_fds(fd, type, b, NULL);
}
