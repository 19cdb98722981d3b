/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The dirty-page tracker: which pages of a running process tree were
 * written since the previous scan, with asynchronous userfaultfd
 * write-protect (UFFD_FEATURE_WP_ASYNC, Linux 6.7) and PAGEMAP_SCAN.
 *
 * The promise a scan makes, per task: a page that is present (in RAM or in
 * swap) now and lies outside the returned dirty set holds the same data as
 * at the previous scan that was committed. Pages that are not present now
 * are not covered: a dumper records them as absent, as CRIU does. A page
 * whose state the tracker cannot prove is in the dirty set.
 *
 * Scans are transactions: what scan N found stays pending, and comes back in
 * every later scan, until the caller commits N (its images are durable).
 */
#ifndef UFFDWP_TRACKER_H__
#define UFFDWP_TRACKER_H__

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/rangeset.h"

/* Why a range is dirty beyond "the scan saw it written". */
enum uffdwp_reason {
	UFFDWP_R_NEW_TASK = 1,	 /* task was not tracked before: all of it */
	UFFDWP_R_NEW_MAPPING,	 /* not registered: new mmap, mremap target, exec */
	UFFDWP_R_FOREIGN_UFFD,	 /* another userfaultfd owns the range */
	UFFDWP_R_UNTRACKABLE,	 /* the kernel refused to register it (err says why) */
	UFFDWP_R_SHMEM_SHARED,	 /* shared object open as a file or mapped outside the tree */
	UFFDWP_R_SCAN_FAILED,	 /* the scan of the range stopped part way */
	UFFDWP_R_LOST,		 /* tracking lost: mm gone or replaced, holder died */
	UFFDWP_R_NOT_DUMPED,	 /* file-backed shared or special mapping: not memory to dump */
	UFFDWP_R_SHMEM_UNMAPPED, /* a mapping of the shared object went away, with its writes */
	UFFDWP_R_SHMEM_FORKED,	 /* a mapper forked: the child may have written it and gone */
	UFFDWP_R_SHMEM_CHANGED,	 /* the shared object's ctime moved: a hole punched, a resize */
	UFFDWP_R__MAX,
};

const char *uffdwp_reason_name(enum uffdwp_reason r);

struct uffdwp_note {
	uint64_t start;
	uint64_t end;
	uint32_t reason; /* enum uffdwp_reason */
	int32_t err;	 /* errno behind UNTRACKABLE / SCAN_FAILED, else 0 */
};

#define UFFDWP_TASK_NEW	   (1u << 0) /* first seen in this scan */
#define UFFDWP_TASK_EXITED (1u << 1) /* gone since the previous scan */
#define UFFDWP_TASK_EXEC   (1u << 2) /* its mm was replaced (execve) */
#define UFFDWP_TASK_LOST   (1u << 3) /* tracking could not be kept: all dirty */

struct uffdwp_task_report {
	pid_t pid;
	uint32_t flags;		      /* UFFDWP_TASK_* */
	struct uffdwp_rangeset dirty; /* all dirty bytes, pending ones included */
	struct uffdwp_note *notes;    /* why ranges beyond the written ones are dirty */
	size_t nr_notes;
	uint64_t written_bytes;	  /* what the scan itself found written */
	uint64_t pending_bytes;	  /* carried over from uncommitted scans */
	uint64_t tracked_bytes;	  /* registered and scanned */
	uint64_t thp_bytes_start; /* PMD-mapped when tracking began */
};

struct uffdwp_report {
	uint64_t gen; /* commit this to drop what it returned */
	struct uffdwp_task_report *tasks;
	size_t nr_tasks;
	uint64_t scan_ns;	       /* wall time of the whole scan */
	uint32_t shmem_objects;	       /* shared memory objects among the mappings */
	uint32_t shmem_shared_objects; /* of those, always dirty (open or mapped outside) */
};

void uffdwp_report__free(struct uffdwp_report *r);
/* Sum of dirty bytes over all tasks. */
uint64_t uffdwp_report__dirty_bytes(const struct uffdwp_report *r);

struct uffdwp_tracker;

struct uffdwp_tracker_opts {
	pid_t pid;
	bool tree; /* also every descendant, present and future */
	/*
	 * Never inject: every task's userfaultfd comes through
	 * uffdwp_tracker__adopt() (CRIU creates them while it holds the
	 * tasks seized). A task without one is reported dirty whole.
	 */
	bool adopt_only;
};

/*
 * Attach to @opts->pid (and its tree): create a userfaultfd inside each mm,
 * register every mapping that holds memory to dump, write-protect it. The
 * first scan afterwards reports what was written since this call. With
 * @opts->adopt_only nothing is attached: tasks come with adopt().
 * Returns 0 and *@out, or -errno: -ESRCH no such process, -EPERM no
 * permission, -EOPNOTSUPP a kernel feature is missing (logged by name),
 * -EBUSY the process is already traced or tracked.
 */
int uffdwp_tracker__new(const struct uffdwp_tracker_opts *opts, struct uffdwp_tracker **out);

/*
 * Take over a userfaultfd that someone else created inside @pid's mm (CRIU
 * does that through its parasite), with @pagemap_fd opened on that same mm.
 * Both fds are kept (not duplicated). The task starts all dirty.
 * Returns 0 or -errno.
 */
int uffdwp_tracker__adopt(struct uffdwp_tracker *t, pid_t pid, int uffd, int pagemap_fd);

/*
 * Scan every task: follow tree changes, register what is new, collect and
 * re-protect written pages. Returns 0 and a report to free with
 * uffdwp_report__free(), or -errno (-ENOMEM, or a /proc read failing);
 * after a failed scan the next one reports every task whole. Per-task
 * trouble never fails the scan: it turns into dirty ranges with notes.
 */
int uffdwp_tracker__scan(struct uffdwp_tracker *t, struct uffdwp_report **out);

/*
 * The process that asks for the next scans (0: none, the default). Its
 * descriptors and mappings of shared objects do not make them dirty: a
 * dumper (CRIU's memfd code) holds read-only descriptors of the objects it
 * dumps while it asks. It is trusted not to write them.
 */
void uffdwp_tracker__set_requester(struct uffdwp_tracker *t, pid_t pid);

/*
 * Whether fork events come (forkwatch.h). Without them a fork between two
 * scans cannot be ruled out and shared memory counts as written at every
 * scan.
 */
bool uffdwp_tracker__fork_events(const struct uffdwp_tracker *t);

/*
 * The images holding everything scan @gen returned are durable: forget it
 * and all older generations. Returns 0, or -EINVAL if @gen was never
 * returned.
 */
int uffdwp_tracker__commit(struct uffdwp_tracker *t, uint64_t gen);

/* Number of tasks tracked now. */
size_t uffdwp_tracker__nr_tasks(const struct uffdwp_tracker *t);
/* Whether any tracked task is still alive (not exited, not a zombie). */
bool uffdwp_tracker__any_alive(const struct uffdwp_tracker *t);
/* Whether @pid is one of them. */
bool uffdwp_tracker__has_task(const struct uffdwp_tracker *t, pid_t pid);

struct uffdwp_stop_stats {
	uint64_t thp_split_bytes;	/* huge at start, not huge at stop */
	uint64_t thp_recollapsed_bytes; /* of those, huge again after MADV_COLLAPSE */
};

/*
 * Stop tracking: drop all protection (closing our userfaultfds) and, with
 * @recollapse, collapse back into huge pages the ranges that were
 * PMD-mapped when tracking began and are not any more. Frees @t.
 * Accepts NULL. @stats may be NULL.
 */
void uffdwp_tracker__stop(struct uffdwp_tracker *t, bool recollapse,
			  struct uffdwp_stop_stats *stats);

/*
 * A descriptor that becomes readable when the tracker has events to read
 * (forks, see forkwatch.h), or -1. A long-lived owner polls it and calls
 * read_events(), so that bursts between scans do not overflow; scans read
 * them anyway. read_events() returns 0: what it cannot keep counts as a
 * fork of every task.
 */
int uffdwp_tracker__event_fd(const struct uffdwp_tracker *t);
int uffdwp_tracker__read_events(struct uffdwp_tracker *t);

/* Memory the tracker itself holds, in bytes (for the benchmark). */
size_t uffdwp_tracker__mem_bytes(const struct uffdwp_tracker *t);

#endif /* UFFDWP_TRACKER_H__ */
