/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which watched processes created a process, from the proc connector's fork
 * events (CONFIG_PROC_EVENTS, Linux 2.6.15; the initial user and pid
 * namespaces; before Linux 6.6 also CAP_NET_ADMIN).
 *
 * Why: a child forked after a scan shares its parent's shared memory through
 * page tables that no userfaultfd of ours covers (without
 * UFFD_FEATURE_EVENT_FORK the kernel drops the registration in the child).
 * If it writes and exits before the next scan, nothing of its writes is left
 * to see. The connector tells us it existed, without slowing fork down the
 * way EVENT_FORK would (fork waits until the event is read).
 *
 * A fork counts for the watched process it descends from: grandchildren of a
 * watched process, forked by a child that is not watched, count for it too.
 * Threads (same mm) do not count.
 */
#ifndef UFFDWP_FORKWATCH_H__
#define UFFDWP_FORKWATCH_H__

#include <stdbool.h>
#include <sys/types.h>

struct uffdwp_forkwatch;

/*
 * Subscribe to fork events, and check that they come, with our pids, by
 * forking a child that exits at once. Returns 0 and *@out, or -errno:
 * -EPERM (not in the initial user and pid namespaces: the kernel would
 * ignore us without a word), -EPROTONOSUPPORT (no connector), -ETIMEDOUT
 * (no event for the probe fork), -ENOBUFS (the kernel dropped it each
 * time), or the error the kernel answered the subscription with.
 */
int uffdwp_forkwatch__open(struct uffdwp_forkwatch **out);

/* What an error of uffdwp_forkwatch__open() means, for people. */
const char *uffdwp_forkwatch_why(int err);

/* The descriptor to poll for events. */
int uffdwp_forkwatch__fd(const struct uffdwp_forkwatch *w);

/*
 * Read every pending event. @watched says whether a process (tgid) is one
 * of ours. Returns 0: events the kernel dropped (a full socket buffer) and
 * forks we had no memory to remember are noted as lost, so that every
 * process counts as forked, never returned as an error (the holder reads
 * events between scans and has nobody to tell).
 */
int uffdwp_forkwatch__drain(struct uffdwp_forkwatch *w, bool (*watched)(void *arg, pid_t pid),
			    void *arg);

/*
 * Whether watched process @pid created a process since the last reset
 * (through its descendants too). True for every process once events were
 * lost.
 */
bool uffdwp_forkwatch__forked(const struct uffdwp_forkwatch *w, pid_t pid);

/* Whether events were lost since the last reset. */
bool uffdwp_forkwatch__lost(const struct uffdwp_forkwatch *w);

/* Forget what was seen: a new interval starts. */
void uffdwp_forkwatch__reset(struct uffdwp_forkwatch *w);

/* Unsubscribe and free. Accepts NULL. */
void uffdwp_forkwatch__close(struct uffdwp_forkwatch *w);

#endif /* UFFDWP_FORKWATCH_H__ */
