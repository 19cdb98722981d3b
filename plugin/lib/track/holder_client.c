// SPDX-License-Identifier: GPL-2.0
/* The client side of the holder API (holder.h). */
#define LOG_PREFIX "holder: "
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "track/holder_priv.h"

static int client_call_fds(pid_t pid, uint32_t type, const struct hw_buf *req, const int *fds,
			   int nfds, uint32_t want, struct hw_buf *resp)
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
	err = nfds ? hw_send_fds(fd, type, req, fds, nfds) : hw_send(fd, type, req);
	if (!err)
		err = hw_recv(fd, &rtype, resp);
	close(fd);
	if (err)
		return err == -EPIPE ? -ECONNRESET : err;
	if (rtype == RESP_ERR) {
		err = (int)(int64_t)hw_get_u64(resp);
		return err < 0 ? err : -EPROTO;
	}
	return rtype == want ? 0 : -EPROTO;
}

static int client_call(pid_t pid, uint32_t type, const struct hw_buf *req, uint32_t want,
		       struct hw_buf *resp)
{
	return client_call_fds(pid, type, req, NULL, 0, want, resp);
}

int uffdwp_holder_adopt(pid_t pid, pid_t task, int uffd, int pagemap_fd)
{
	struct hw_buf req = {0}, resp = {0};
	int fds[2] = {uffd, pagemap_fd};
	int err;

	err = hw_put_u64(&req, (uint64_t)task);
	if (!err)
		err = client_call_fds(pid, REQ_ADOPT, &req, fds, 2, RESP_OK, &resp);
	free(req.p);
	free(resp.p);
	return err;
}

int uffdwp_holder_scan(pid_t pid, struct uffdwp_report **out)
{
	struct hw_buf resp = {0};
	int err;

	err = client_call(pid, REQ_SCAN, NULL, RESP_REPORT, &resp);
	if (!err)
		err = hw_report_decode(&resp, out);
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
	struct hw_buf req = {0}, resp = {0};
	int err;

	err = hw_put_u64(&req, gen);
	if (!err && tag)
		err = hw_buf_put(&req, tag, UFFDWP_HOLDER_TAG_LEN);
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
	struct hw_buf resp = {0};
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
	struct hw_buf req = {0}, resp = {0};
	int err;

	err = hw_put_u64(&req, recollapse ? 1 : 0);
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
