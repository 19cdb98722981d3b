/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The holder: a small daemon that owns a tracker between separate command
 * invocations. Closing the last reference to a userfaultfd drops all its
 * write protection, so someone must keep the fds open from one `criu
 * pre-dump` (or `uffdwp track scan`) to the next.
 *
 * It serves a unix stream socket in UFFDWP_RUN_DIR (0700, root only),
 * answers only peers of its own uid, and exits when its tasks are gone, on
 * request, or after an idle timeout. It asks the kernel for no uffd events,
 * so no task ever waits on it.
 */
#ifndef UFFDWP_HOLDER_H__
#define UFFDWP_HOLDER_H__

#include <stdint.h>
#include <sys/types.h>

#include "track/tracker.h"

#define UFFDWP_RUN_DIR "/run/uffdwp"
/*
 * A holder's files are UFFDWP_RUN_DIR/<pid namespace inode>-<pid>.<kind>:
 * the directory is shared by every pid namespace, and pid 78 in one is
 * not pid 78 in another (zdtm runs each test as pid 78 of its own).
 */
#define UFFDWP_HOLDER_FILE_FMT UFFDWP_RUN_DIR "/%lu-%d.%s"
/*
 * A holder not used for this long exits. Use is a scan, a commit, an adopt
 * or a stop; a status query is not (a monitor polling it would keep every
 * holder alive). Counted from the end of the last use, or from the moment
 * the holder is ready; it exits within 10 ms of the timeout.
 */
#define UFFDWP_IDLE_TIMEOUT_S 3600

struct uffdwp_holder_opts {
	struct uffdwp_tracker_opts track;
	unsigned int idle_timeout_s; /* 0: never */
	uint64_t root_start;	     /* set by spawn: the root's start time, to tell pid reuse */
};

#define UFFDWP_HOLDER_TAG_LEN 32

struct uffdwp_holder_status {
	pid_t holder_pid;
	pid_t root_pid;
	uint32_t tree;
	uint32_t nr_tasks;
	uint64_t last_gen;
	uint64_t uptime_ms;
	uint64_t tracker_mem_bytes;
	uint64_t holder_rss_bytes;
	/* Fork events are watched; 0: shared memory counts as written at every scan. */
	uint32_t fork_events;
	/* What the caller said its last committed images are (commit_tag). */
	uint8_t tag[UFFDWP_HOLDER_TAG_LEN];
	/* -errno of the last syncfs() a commit_sync left to us, else 0. */
	int32_t sync_err;
	/* The idle timeout (0: none), and how long since the last use. */
	uint32_t idle_timeout_s;
	uint64_t idle_ms;
};

/*
 * Start a holder for @opts->track.pid in the background: it attaches, and
 * only then does this return. Returns the holder's pid, or -errno with the
 * holder's own error already printed: -EBUSY already tracked (by a holder
 * or otherwise), -ESRCH, -EPERM, -EOPNOTSUPP.
 */
int uffdwp_holder_spawn(const struct uffdwp_holder_opts *opts);

/* Client side. Each returns 0 or -errno; -ENOENT/-ECONNREFUSED: no holder (lost). */
int uffdwp_holder_scan(pid_t pid, struct uffdwp_report **out);
int uffdwp_holder_commit(pid_t pid, uint64_t gen);
/*
 * Commit @gen and remember @tag (UFFDWP_HOLDER_TAG_LEN bytes; NULL clears
 * it): the caller's name for the images that hold it, so a later run can
 * tell whether its parent is the one tracking is relative to.
 */
int uffdwp_holder_commit_tag(pid_t pid, uint64_t gen, const uint8_t *tag);
/*
 * commit_tag, with the images not yet on disk: the holder answers at once,
 * then syncfs()es @img_dir before it answers anything else. If that fails
 * it forgets the tag (the next run dumps everything) and status says why
 * in sync_err. -EBADMSG: a holder without it (sync, then commit_tag).
 */
int uffdwp_holder_commit_sync(pid_t pid, uint64_t gen, const uint8_t *tag, int img_dir);
/*
 * Hand the holder of @pid a userfaultfd created in @task's mm (not yet
 * through UFFDIO_API) and a pagemap fd opened on the same mm. The holder
 * keeps duplicates; the caller still owns and closes its own.
 */
int uffdwp_holder_adopt(pid_t pid, pid_t task, int uffd, int pagemap_fd);
int uffdwp_holder_status(pid_t pid, struct uffdwp_holder_status *st);
int uffdwp_holder_stop(pid_t pid, int recollapse, struct uffdwp_stop_stats *stats);

/*
 * The path of the holder file of @kind ("sock", "lock", "log") for @pid as
 * the caller's pid namespace numbers it. Returns 0 or -errno.
 */
int uffdwp_holder_path(pid_t pid, const char *kind, char *buf, size_t len);

/*
 * Whether a holder for @pid is alive, by its lock: returns the holder's pid,
 * 0 if none, -errno on failure to tell.
 */
int uffdwp_holder_running(pid_t pid);

#endif /* UFFDWP_HOLDER_H__ */
