/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The holder's insides, shared by its files: holder_wire.c (the messages
 * between a client and the holder), holder_rundir.c (the run directory,
 * its locks and sockets), holder.c (the daemon), holder_client.c.
 */
#ifndef UFFDWP_HOLDER_PRIV_H__
#define UFFDWP_HOLDER_PRIV_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "track/holder.h"

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

struct hw_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	size_t off; /* read cursor */
	bool bad;   /* a read ran past the end */
};

/* A message body: appended to by the put functions, read by the get ones. */
int hw_buf_put(struct hw_buf *b, const void *data, size_t len);
int hw_put_u64(struct hw_buf *b, uint64_t v);
/* The next u64 of @b; past its end: 0 and b->bad set. */
uint64_t hw_get_u64(struct hw_buf *b);
/* A scan's report, in and out of a message body. */
int hw_report_encode(const struct uffdwp_report *r, struct hw_buf *b);
int hw_report_decode(struct hw_buf *b, struct uffdwp_report **out);
/* read(2) all of @len: 0, -EPIPE at the end of the stream, or -errno. */
int hw_read_all(int fd, void *p, size_t len);
/* One message, with up to two fds; a received body is checked against WIRE_MAX. */
int hw_send_fds(int fd, uint32_t type, const struct hw_buf *b, const int *fds, int nfds);
int hw_send(int fd, uint32_t type, const struct hw_buf *b);
int hw_recv_fds(int fd, uint32_t *type, struct hw_buf *b, int *fds);
int hw_recv(int fd, uint32_t *type, struct hw_buf *b);

/* The run directory (root only), made and checked before a holder listens. */
int holder_run_dir_prepare(void);
/* Whether @fd is still the file at @path (not one a sweep removed). */
bool holder_lock_is_current(int fd, const char *path);
/* Remove what holders that are gone left behind. */
void holder_run_dir_sweep(void);

#endif /* UFFDWP_HOLDER_PRIV_H__ */
