// SPDX-License-Identifier: GPL-2.0
/* The migration control channel: lines of verb and key=value, and files. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>

#include "base/io.h"
#include "wire.h"

static bool plain_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("._/,:+-@", c);
}

static void out_raw(struct mig_out *o, const char *s, size_t n)
{
	if (o->overflow || o->len + n + 2 > sizeof(o->buf)) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

void mig_out__init(struct mig_out *o, const char *verb)
{
	o->len = 0;
	o->overflow = false;
	out_raw(o, verb, strlen(verb));
}

void mig_out__str(struct mig_out *o, const char *key, const char *val)
{
	char esc[4];

	out_raw(o, " ", 1);
	out_raw(o, key, strlen(key));
	out_raw(o, "=", 1);
	for (; *val; val++) {
		if (plain_char((unsigned char)*val)) {
			out_raw(o, val, 1);
		} else {
			snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*val);
			out_raw(o, esc, 3);
		}
	}
}

void mig_out__u64(struct mig_out *o, const char *key, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	mig_out__str(o, key, num);
}

void mig_out__i64(struct mig_out *o, const char *key, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	mig_out__str(o, key, num);
}

int mig_out__send(struct mig_out *o, int sk)
{
	if (o->overflow)
		return -EMSGSIZE;
	o->buf[o->len] = '\n';
	return uffdwp_send_full(sk, o->buf, o->len + 1);
}

int mig_wait_readable(int fd, int timeout_ms, int cancel_fd)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = cancel_fd, .events = POLLIN}};
	int n;

	for (;;) {
		n = poll(p, cancel_fd >= 0 ? 2 : 1, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ETIMEDOUT;
		if (cancel_fd >= 0 && p[1].revents)
			return -ECANCELED;
		return 1;
	}
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Undo mig_out__str()'s escapes in place; -EBADMSG for a bad one. */
static int unescape(char *s)
{
	char *w = s;
	int hi, lo;

	for (; *s; s++) {
		if (*s != '%') {
			*w++ = *s;
			continue;
		}
		hi = unhex(s[1]);
		lo = hi < 0 ? -1 : unhex(s[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return -EBADMSG;
		*w++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*w = 0;
	return 0;
}

static int split(struct mig_msg *m)
{
	char *save = NULL, *tok, *eq;

	m->nr = 0;
	m->verb = strtok_r(m->buf, " ", &save);
	if (!m->verb)
		return -EBADMSG;
	while ((tok = strtok_r(NULL, " ", &save))) {
		eq = strchr(tok, '=');
		if (!eq || eq == tok || m->nr == MIG_KV_MAX)
			return -EBADMSG;
		*eq = 0;
		m->kv[m->nr].key = tok;
		m->kv[m->nr].val = eq + 1;
		if (unescape(eq + 1))
			return -EBADMSG;
		m->nr++;
	}
	return 0;
}

int mig_recv(int sk, struct mig_msg *m, int timeout_ms, int cancel_fd)
{
	size_t len = 0;
	ssize_t n;
	char c;
	int err;

	for (;;) {
		err = mig_wait_readable(sk, timeout_ms, cancel_fd);
		if (err < 0)
			return err;
		n = recv(sk, &c, 1, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		if (c == '\n')
			break;
		if (len + 1 >= sizeof(m->buf) || c == 0)
			return -EBADMSG;
		m->buf[len++] = c;
	}
	m->buf[len] = 0;
	return split(m);
}

const char *mig_msg__get(const struct mig_msg *m, const char *key)
{
	int i;

	for (i = 0; i < m->nr; i++)
		if (!strcmp(m->kv[i].key, key))
			return m->kv[i].val;
	return NULL;
}

int mig_msg__u64(const struct mig_msg *m, const char *key, uint64_t *v)
{
	const char *s = mig_msg__get(m, key);
	char *end;

	if (!s)
		return -ENOENT;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return -EINVAL;
	return 0;
}

bool mig_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n && n < 256 && name[0] != '.' && !strchr(name, '/');
}

int mig_send_file(int sk, int dirfd, const char *name, uint64_t iter)
{
	struct mig_out o;
	struct stat st;
	char buf[65536];
	uint64_t left;
	ssize_t n;
	int fd, err;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	mig_out__init(&o, "FILE");
	mig_out__u64(&o, "n", iter);
	mig_out__str(&o, "name", name);
	mig_out__u64(&o, "size", (uint64_t)st.st_size);
	err = mig_out__send(&o, sk);
	for (left = (uint64_t)st.st_size; !err && left; left -= (uint64_t)n) {
		n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n < 0 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			/* The size was sent: a short file would desync the peer. */
			err = n < 0 ? -errno : -EIO;
			break;
		}
		err = uffdwp_send_full(sk, buf, (size_t)n);
	}
out:
	close(fd);
	return err;
}

/* Read and drop @left bytes of a body. */
static int skip_body(int sk, uint64_t left, int timeout_ms)
{
	char buf[65536];
	ssize_t n;
	int err;

	while (left) {
		err = mig_wait_readable(sk, timeout_ms, -1);
		if (err < 0)
			return err;
		n = recv(sk, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		left -= (uint64_t)n;
	}
	return 0;
}

int mig_recv_file(int sk, const struct mig_msg *m, int dirfd, int timeout_ms, bool *kept)
{
	const char *name = mig_msg__get(m, "name");
	char tmp[300], buf[65536];
	uint64_t size, left;
	ssize_t n;
	int fd, err;

	*kept = false;
	if (!name || !mig_name_ok(name) || mig_msg__u64(m, "size", &size))
		return -EBADMSG;
	if (!faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW)) {
		*kept = true;
		return skip_body(sk, size, timeout_ms);
	}
	snprintf(tmp, sizeof(tmp), ".%s.part", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		skip_body(sk, size, timeout_ms);
		return err;
	}
	err = 0;
	for (left = size; left;) {
		err = mig_wait_readable(sk, timeout_ms, -1);
		if (err < 0)
			break;
		err = 0;
		n = recv(sk, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -ECONNRESET;
			break;
		}
		left -= (uint64_t)n;
		err = uffdwp_write_full(fd, buf, (size_t)n);
		if (err) {
			/* Keep the stream in step: read the rest of the body. */
			skip_body(sk, left, timeout_ms);
			break;
		}
	}
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && renameat(dirfd, tmp, dirfd, name))
		err = -errno;
	if (err)
		unlinkat(dirfd, tmp, 0);
	return err;
}

int mig_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	unsigned long port;
	size_t hl;
	char *end;

	memset(ss, 0, sizeof(*ss));
	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']')
			return -EINVAL;
		s++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port == 0 || port > 65535)
		return -EINVAL;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

int mig_connect(const char *s, int timeout_ms)
{
	struct sockaddr_storage ss;
	struct pollfd p;
	socklen_t len, elen = sizeof(int);
	int sk, err, one = 1, flags;

	if (mig_parse_addr(s, &ss, &len))
		return -EINVAL;
	sk = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sk < 0)
		return -errno;
	if (connect(sk, (struct sockaddr *)&ss, len) && errno != EINPROGRESS) {
		err = -errno;
		goto err;
	}
	p.fd = sk;
	p.events = POLLOUT;
	err = poll(&p, 1, timeout_ms);
	if (err <= 0) {
		err = err ? -errno : -ETIMEDOUT;
		goto err;
	}
	if (getsockopt(sk, SOL_SOCKET, SO_ERROR, &err, &elen) || err) {
		err = err ? -err : -errno;
		goto err;
	}
	flags = fcntl(sk, F_GETFL);
	fcntl(sk, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(sk, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return sk;
err:
	close(sk);
	return err;
}

int mig_listen(const char *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int sk, err, one = 1;

	if (mig_parse_addr(s, &ss, &len))
		return -EINVAL;
	sk = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sk < 0)
		return -errno;
	setsockopt(sk, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(sk, (struct sockaddr *)&ss, len) || listen(sk, 8)) {
		err = -errno;
		close(sk);
		return err;
	}
	return sk;
}
