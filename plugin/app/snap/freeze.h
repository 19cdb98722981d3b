/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Stop a process tree for a moment and let it go again, with SIGSTOP and
 * SIGCONT: what `uffdwp snap` needs to read a consistent last set of pages.
 * A task that was stopped already (job control, a tracer) is left as it
 * was: it is neither signalled nor continued.
 *
 * SIGSTOP is visible to the tasks' parents (waitpid(WUNTRACED), SIGCHLD
 * with CLD_STOPPED/CLD_CONTINUED); a cgroup freezer would not be, but
 * needs the tree in a cgroup of its own.
 */
#ifndef UFFDWP_FREEZE_H__
#define UFFDWP_FREEZE_H__

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct uffdwp_freezer {
	pid_t *stopped; /* tasks we sent SIGSTOP to: continued by thaw */
	size_t nr, cap;
	pid_t *left; /* stopped by someone else already: left alone */
	size_t nr_left, cap_left;
	sigset_t oldmask;
	bool masked;
};

/*
 * Stop @root and, with @tree, every descendant, including children forked
 * while this runs, and wait until every thread of each is stopped. While
 * the tree is frozen, SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGTSTP to the
 * caller are held back, so that an interrupt cannot leave the tree stopped;
 * they are delivered at uffdwp_thaw().
 * Returns 0, or -errno with everything continued again: -ESRCH @root is
 * gone, -EPERM not allowed to signal a task, -ETIMEDOUT a task did not stop
 * within @timeout_ms (the message names it and its state), -ENOMEM.
 */
int uffdwp_freeze(pid_t root, bool tree, unsigned int timeout_ms, struct uffdwp_freezer *fz);

/*
 * Continue the tasks uffdwp_freeze() stopped (those gone meanwhile are
 * skipped), unblock the held signals and free @fz's arrays. Safe to call
 * on a zeroed or already thawed @fz.
 */
void uffdwp_thaw(struct uffdwp_freezer *fz);

#endif /* UFFDWP_FREEZE_H__ */
