/* SPDX-License-Identifier: GPL-2.0 */
/* Whole reads and writes, retried on EINTR and short transfers. */
#ifndef UFFDWP_IO_H__
#define UFFDWP_IO_H__

#include <stddef.h>
#include <stdint.h>

/* write(2) all of @len or fail: returns 0 or -errno (-EIO for a zero write). */
int uffdwp_write_full(int fd, const void *buf, size_t len);
/*
 * send(2) all of @len on a socket, with MSG_NOSIGNAL: a peer gone is
 * -EPIPE, never a SIGPIPE that kills the caller (CRIU, with our plugin in
 * it). Returns 0 or -errno.
 */
int uffdwp_send_full(int fd, const void *buf, size_t len);
/* pread(2) all of @len: returns 0, -EIO for a short read, or -errno. */
int uffdwp_pread_full(int fd, void *buf, size_t len, uint64_t off);

#endif /* UFFDWP_IO_H__ */
