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
 * allowed to ptrace it, -EBUSY already traced by someone else,
 * -ETIMEDOUT the thread did not stop within 5 s (uninterruptible sleep,
 * cgroup v1 freezer): it then stays seized until a later attach from the
 * same thread finds it stopped and lets it go, or this process exits.
 * -EOPNOTSUPP for a 32-bit thread.
 *
 * While attached, the thread's signals are blocked (except the ones the CPU
 * raises); signals sent meanwhile stay pending and arrive after the detach.
 * A seccomp filter of the target is suspended (PTRACE_O_SUSPEND_SECCOMP)
 * when we have CAP_SYS_ADMIN; otherwise it applies to the calls we make.
 */
int uffdwp_remote__attach(pid_t pid, struct uffdwp_remote **out);

/*
 * Run system call @nr with up to six arguments in the stopped thread.
 * *@ret gets the raw return value of the call (a negative errno on failure
 * of the remote call itself). Returns 0, or -errno if the injection failed:
 * -ESRCH the process died (never a hang), -EFAULT the call raised a fault
 * signal (discarded), -EIO we lost track of the thread's stops.
 * Pointer arguments are addresses in the target.
 */
int uffdwp_remote__syscall(struct uffdwp_remote *r, long *ret, long nr, unsigned long a1,
			   unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5,
			   unsigned long a6);

/* The pid of the thread that runs the calls. */
pid_t uffdwp_remote__tid(const struct uffdwp_remote *r);

/*
 * Restore the registers and signal mask and detach. A system call the
 * thread was blocked in is restarted by the kernel (or fails with EINTR if
 * a signal with a handler came meanwhile, as it would have without us). A
 * thread of a stopped process goes back to its stop. Accepts NULL.
 */
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
