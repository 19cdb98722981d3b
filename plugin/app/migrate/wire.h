/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The migration control channel: one TCP connection between the source and
 * the destination, carrying lines of text, each a verb and key=value pairs
 * (docs/migrate.md has every message). Values are percent-escaped, so a
 * line never holds a space, '=' or newline of a value. A FILE line is
 * followed by exactly size raw bytes: the image files CRIU wrote locally.
 *
 * Lines are read a byte at a time and never past their newline: a data
 * connection starts with one line and is then handed to CRIU as it is.
 */
#ifndef UFFDWP_MIG_WIRE_H__
#define UFFDWP_MIG_WIRE_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MIG_PROTO_VERSION 2
#define MIG_LINE_MAX	  4096
#define MIG_KV_MAX	  24

struct mig_msg {
	char *verb;
	int nr;
	struct {
		char *key;
		char *val;
	} kv[MIG_KV_MAX];
	char buf[MIG_LINE_MAX];
};

struct mig_out {
	size_t len;
	bool overflow;
	char buf[MIG_LINE_MAX];
};

void mig_out__init(struct mig_out *o, const char *verb);
void mig_out__str(struct mig_out *o, const char *key, const char *val);
void mig_out__u64(struct mig_out *o, const char *key, uint64_t v);
void mig_out__i64(struct mig_out *o, const char *key, int64_t v);
/* Send the line; 0 or -errno (-EMSGSIZE when it did not fit). */
int mig_out__send(struct mig_out *o, int sk);

/*
 * Wait until @fd is readable, for at most @timeout_ms (< 0: no limit).
 * Returns 1 readable, -ETIMEDOUT, -ECANCELED when @cancel_fd (may be -1)
 * became readable first, or -errno.
 */
int mig_wait_readable(int fd, int timeout_ms, int cancel_fd);

/*
 * Read one line into @m and split it. Returns 0, -ECONNRESET when the peer
 * closed before a whole line, -EBADMSG for a line too long or malformed,
 * -ETIMEDOUT, -ECANCELED (see mig_wait_readable) or -errno.
 */
int mig_recv(int sk, struct mig_msg *m, int timeout_ms, int cancel_fd);

/* The value of @key, or NULL. */
const char *mig_msg__get(const struct mig_msg *m, const char *key);
/* @key as a number into @v: 0, -ENOENT missing, -EINVAL not a number. */
int mig_msg__u64(const struct mig_msg *m, const char *key, uint64_t *v);

/*
 * Send regular file @name of directory @dirfd as "FILE n=@iter name= size="
 * and its bytes. Returns 0 or -errno.
 */
int mig_send_file(int sk, int dirfd, const char *name, uint64_t iter);
/*
 * Receive the body announced by FILE line @m into @dirfd (a temporary name,
 * then renamed; a file of that name already there is kept and the body
 * skipped: *@kept is set). Returns 0, -EBADMSG for a bad name or size, or
 * -errno (-ENOSPC for a full disk, with the partial file removed).
 */
int mig_recv_file(int sk, const struct mig_msg *m, int dirfd, int timeout_ms, bool *kept);

/*
 * ADDR:PORT ("10.0.0.2:2700", "[fd00::2]:2700") into @ss. Returns 0 or
 * -EINVAL.
 */
int mig_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* A TCP connection to @s, given up after @timeout_ms: fd or -errno. */
int mig_connect(const char *s, int timeout_ms);
/* A listening TCP socket on @s: fd or -errno. */
int mig_listen(const char *s);

/* A file name of one directory level, as images have ("core-1.img"). */
bool mig_name_ok(const char *name);

#endif /* UFFDWP_MIG_WIRE_H__ */
