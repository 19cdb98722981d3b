/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Running system calls inside another process, from outside, without its
 * cooperation: PTRACE_SEIZE + PTRACE_INTERRUPT one thread, point it at a
 * `syscall` instruction in its [vdso], step through the call with
 * PTRACE_SYSCALL, put every register back and detach. An interrupted system
 * call of the target restarts as if nothing happened.
 *
 * Needed because a userfaultfd belongs to the mm of the process that created
 * it: to track another process's writes we must create the fd inside it.
 */
#ifndef UFFDWP_INJECT_H__
#define UFFDWP_INJECT_H__

#include <stdbool.h>
#include <sys/types.h>

struct uffdwp_remote;

/*
 * Seize and stop one thread of process @pid (the leader, or another thread
 * if the leader is a zombie). Other threads keep running.
 * Returns 0 and *@out, or -errno: -ESRCH no such process, -EPERM not
 * allowed to ptrace it, -EBUSY already traced by someone else.
 */
int uffdwp_remote__attach(pid_t pid, struct uffdwp_remote **out);

/*
 * Run system call @nr with up to six arguments in the stopped thread.
 * *@ret gets the raw return value of the call (a negative errno on failure
 * of the remote call itself). Returns 0, or -errno if the injection failed
 * (the process died: -ESRCH).
 */
int uffdwp_remote__syscall(struct uffdwp_remote *r, long *ret, long nr, unsigned long a1,
			   unsigned long a2, unsigned long a3, unsigned long a4,
			   unsigned long a5, unsigned long a6);

/* The pid of the thread that runs the calls. */
pid_t uffdwp_remote__tid(const struct uffdwp_remote *r);

/* Restore the registers and detach. Accepts NULL. */
void uffdwp_remote__detach(struct uffdwp_remote *r);

/*
 * Create a userfaultfd with @flags (O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY
 * is what the tracker uses) inside process @pid and return a duplicate of it
 * in the caller's fd table. The target's copy is closed again before the
 * target resumes: nothing is left in its fd table.
 * Returns the new fd (>= 0), or -errno: -ESRCH, -EPERM (ptrace or
 * pidfd_getfd refused), -EMFILE (target's fd table full), -ENOSYS (seccomp
 * or no userfaultfd in the kernel).
 */
int uffdwp_inject_userfaultfd(pid_t pid, int flags);

#endif /* UFFDWP_INJECT_H__ */
