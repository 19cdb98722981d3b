/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Running CRIU for the migration driver: spawning it with one socket
 * handed down (--ps-socket), waiting for it with a timeout and an
 * interruption count, and reading what it measured (stats-dump) and said
 * (the tail of its log).
 */
#ifndef UFFDWP_MIG_CRIU_RUN_H__
#define UFFDWP_MIG_CRIU_RUN_H__

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mig_child {
	pid_t pid;
	int pidfd;
	int status; /* wait(2) status once reaped */
	int reaped;
	/*
	 * Leave its process group be when it ends. By default whatever it
	 * left there dies with it: a CRIU killed while probing the kernel
	 * leaves a ptrace probe child that sleeps forever with CRIU's fds,
	 * its page connection among them. A restore sets it: with
	 * --shell-job the restored tree joins CRIU's group.
	 */
	int keep_group;
};

/*
 * Start @argv (argv[0] a path) in its own process group, so that a Ctrl-C
 * on the terminal reaches only us: stdin /dev/null, stdout and stderr
 * @out_fd (or /dev/null if < 0), the @nr_keep fds of @keep (-1 entries are
 * skipped) left open across exec, everything else close-on-exec. Returns 0
 * or -errno.
 */
int mig_child__spawn(struct mig_child *c, char *const argv[], const int *keep, int nr_keep,
		     int out_fd);
/*
 * Wait until @pid (not a child of ours) has exited: 0, -ETIMEDOUT after
 * @timeout_ms, or -errno.
 */
int mig_wait_gone(pid_t pid, int timeout_ms);
/*
 * Wait until the child writes its byte to the status pipe @status_fd,
 * CRIU's --status-fd: 0 when it did; the child's exit code (as wait) if
 * it ended or closed the pipe without writing (-EPIPE if that code is 0);
 * -ETIMEDOUT, or -errno.
 */
int mig_child__wait_status(struct mig_child *c, int status_fd, int timeout_ms,
			   volatile sig_atomic_t *signals);
/*
 * Wait for the child. While it runs, a @signals count (the caller's signal
 * handler increments it) of 2 or more kills it: one Ctrl-C lets a CRIU run
 * finish, so that what it froze it also lets go. Returns its exit code
 * (0-255), 128+N for a death by signal N, -ETIMEDOUT after @timeout_ms (<0:
 * none; the child is killed and reaped), or -errno.
 */
int mig_child__wait(struct mig_child *c, int timeout_ms, volatile sig_atomic_t *signals);
/* Whether it still runs (not yet reaped and no exit seen). */
int mig_child__running(struct mig_child *c);
/* SIGKILL and reap it; no-op for a child not started or already reaped. */
void mig_child__kill(struct mig_child *c);
/*
 * If it has ended but is not reaped yet, kill what it left in its process
 * group now (see keep_group), so that nothing holds its connections open.
 */
void mig_child__end_group(struct mig_child *c);

/* CRIU's dump statistics (its stats-dump image), times in microseconds. */
struct mig_dump_stats {
	uint32_t freezing_us;
	uint32_t frozen_us;
	uint32_t memdump_us;
	uint32_t memwrite_us;
	uint64_t pages_scanned;
	uint64_t pages_skipped_parent;
	uint64_t pages_written;
	uint64_t pages_lazy;
	uint64_t shpages_scanned;
	uint64_t shpages_skipped_parent;
	uint64_t shpages_written;
};

/*
 * Read @dirfd/stats-dump into @st. Returns 0, -ENOENT without one, or
 * -EBADMSG for a file that is not CRIU's dump statistics.
 */
int mig_read_dump_stats(int dirfd, struct mig_dump_stats *st);

/*
 * The first error line of CRIU log @name in @dirfd (else its last line),
 * into @buf; "" when there is no such log.
 */
void mig_log_reason(int dirfd, const char *name, char *buf, size_t len);

/*
 * The time CRIU log @name in @dirfd gives (seconds since CRIU started) on
 * its first line holding @needle, into *@t. Returns 0, -ENOENT (no such
 * line or log), or -errno.
 */
int mig_log_time(int dirfd, const char *name, const char *needle, double *t);
/*
 * Why CRIU's remote lazy pages (post-copy) cannot work here, into @buf, or
 * 0 when they can: they put 819-page pipes (4 MiB once rounded) between the
 * page server and the socket, which needs fs.pipe-max-size >= 4194304 or
 * CAP_SYS_RESOURCE. Returns 1 with @buf set, 0, or -errno.
 */
int mig_postcopy_problem(char *buf, size_t len);

/* What CRIU logs just before it freezes the tasks, and once they go again. */
#define MIG_LOG_FREEZE	 "Detected cgroup V"
#define MIG_LOG_UNFREEZE "Unfreezing tasks"

#endif /* UFFDWP_MIG_CRIU_RUN_H__ */
