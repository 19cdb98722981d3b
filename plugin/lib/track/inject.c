// SPDX-License-Identifier: GPL-2.0
/*
 * Remote system calls through ptrace, x86-64 only.
 *
 * The life of one injection:
 *
 *   SEIZE + INTERRUPT -> PTRACE_EVENT_STOP   (target parked inside get_signal())
 *   save regs and sigmask, block signals
 *   for each call: regs = {rip: `syscall` in [vdso], rax: nr, args}
 *                  PTRACE_SYSCALL -> entry stop, PTRACE_SYSCALL -> exit stop
 *   put back regs and sigmask exactly as saved, DETACH
 *
 * The stop happens where the kernel delivers signals, so a syscall the
 * target was blocked in has already returned one of the -ERESTART* codes,
 * with orig_rax still naming it. We leave the restart to the kernel rather
 * than rewinding rip ourselves (CRIU's compel does rip -= 2, rax = orig_rax,
 * orig_rax = -1): DETACH wakes the thread with TIF_SIGPENDING set
 * (ptrace_signal_wake_up()) and ptrace_stop() never clears it, so on its
 * way out the thread always passes arch_do_signal_or_restart(), which reads
 * our restored registers as if the interrupted call had just returned. That
 * gets the one case a rewind gets wrong: a signal that arrived while we
 * worked (blocked by us, so still pending) and has a handler. The kernel
 * turns -ERESTARTNOHAND/-ERESTARTSYS into -EINTR for it, as it would have
 * without us; after a rewind the handler runs and pause()/sigsuspend() go
 * back to sleep as if the signal never came (test_signal_during_injection_kept
 * in test_inject.py hangs with a rewind).
 */
#define LOG_PREFIX "inject: "

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "uapi/uffdwp-uapi.h"
#include "track/inject.h"
#include "base/log.h"
#include "base/procfs.h"

/* __USER_CS: a 64-bit task. 0x23 would be an ia32 one, which we do not handle. */
#define X86_64_USER_CS 0x33

/*
 * How long we wait for the first stop. A thread in an uninterruptible sleep
 * (D state, a cgroup v1 freezer) does not stop until it wakes up.
 */
#define STOP_TIMEOUT_MS 5000

/* A ptrace stop is `syscall`-stop when TRACESYSGOOD marks it so. */
#define SYSCALL_STOP (SIGTRAP | 0x80)

/* The vdso is two pages today; read a little more in case it grows. */
#define VDSO_READ_MAX (64 * 1024)
/* Without a vdso, we look through this much of the executable mappings. */
#define EXEC_SCAN_MAX (16 * 1024 * 1024)

struct uffdwp_remote {
	pid_t pid;		  /* thread group id */
	pid_t tid;		  /* the stopped thread */
	unsigned long syscall_ip; /* address of a 0f 05 in the target */
	struct user_regs_struct saved;
	uint64_t saved_sigmask;
	uint64_t cur_sigmask; /* ours while calls run, 0 before the first one */
	bool seized;
	bool stopped;	 /* in a ptrace stop we can detach from */
	bool regs_saved; /* saved and saved_sigmask are valid */
	bool dead;	 /* the thread has exited; nothing to restore */
};

/*
 * The leader, unless it already exited and is only waiting for its threads
 * (zombie leader): then a zombie cannot stop, so take any live thread.
 */
static int pick_thread(pid_t pid, pid_t *tgid, pid_t *tid, struct uffdwp_thread_status *st)
{
	struct dirent *de;
	char path[64];
	DIR *d;
	int err;

	err = uffdwp_proc_thread_status(pid, pid, st);
	if (err) {
		if (err == -ESRCH)
			pr_err("no process %d\n", pid);
		else
			pr_err("cannot read /proc/%d/status: %s\n", pid, uffdwp_strerror(-err));
		return err;
	}
	*tgid = st->tgid ? st->tgid : pid;
	if (*tgid == pid && !uffdwp_state_is_dead(st->state)) {
		*tid = pid;
		return 0;
	}
	if (*tgid != pid) {
		/* A thread id: the mm is shared, so its group will do. */
		err = uffdwp_proc_thread_status(*tgid, *tgid, st);
		if (!err && !uffdwp_state_is_dead(st->state)) {
			*tid = *tgid;
			return 0;
		}
	}

	snprintf(path, sizeof(path), "/proc/%d/task", *tgid);
	d = opendir(path);
	if (!d) {
		err = -errno;
		pr_perror("cannot open %s", path);
		return err == -ENOENT ? -ESRCH : err;
	}
	err = -ESRCH;
	while ((de = readdir(d))) {
		pid_t t = atoi(de->d_name);

		if (t <= 0 || t == *tgid)
			continue;
		if (uffdwp_proc_thread_status(*tgid, t, st) || uffdwp_state_is_dead(st->state))
			continue;
		*tid = t;
		err = 0;
		break;
	}
	closedir(d);
	if (err)
		pr_err("process %d has no live thread left\n", pid);
	else
		pr_debug("leader of %d is a zombie, using thread %d\n", *tgid, *tid);
	return err;
}

/* Read @len bytes at @addr of the target: process_vm_readv, or /proc/PID/mem. */
static ssize_t remote_read(pid_t tid, unsigned long addr, void *buf, size_t len)
{
	struct iovec local = {.iov_base = buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};
	char path[64];
	ssize_t n;
	int fd, err;

	n = process_vm_readv(tid, &local, 1, &remote, 1, 0);
	if (n > 0)
		return n;

	/* process_vm_readv() can be filtered by seccomp or an LSM; the tracer may use mem. */
	snprintf(path, sizeof(path), "/proc/%d/mem", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, len, (off_t)addr);
	err = -errno;
	close(fd);
	return n < 0 ? err : n;
}

/* Look for the bytes 0f 05 (`syscall`) in [@start, @end) of the target. */
static int scan_for_syscall(struct uffdwp_remote *r, unsigned long start, unsigned long end,
			    size_t max)
{
	unsigned char *buf;
	size_t len = end - start, i;
	ssize_t n;

	if (len > max)
		len = max;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	n = remote_read(r->tid, start, buf, len);
	if (n < 0) {
		pr_debug("cannot read %#lx-%#lx of %d: %s\n", start, end, r->tid,
			 uffdwp_strerror((int)-n));
		free(buf);
		return (int)n;
	}
	for (i = 0; i + 1 < (size_t)n; i++) {
		if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
			r->syscall_ip = start + i;
			free(buf);
			return 0;
		}
	}
	free(buf);
	return -ENOENT;
}

/*
 * The [vdso] holds a `syscall` for its fallback paths and is mapped in every
 * process. A process may lack one (vdso=0, or moved away after a restore):
 * then any executable mapping will do, the bytes need not start an
 * instruction of the program since we jump to them directly.
 */
static int find_syscall_insn(struct uffdwp_remote *r)
{
	unsigned long exec_budget = EXEC_SCAN_MAX;
	struct uffdwp_maps maps;
	int err = -ENOENT, pass;
	size_t i;

	/* The task's own maps: the leader's is empty once it is a zombie. */
	err = uffdwp_maps__read_thread(r->pid, r->tid, &maps);
	if (err) {
		pr_err("cannot read the maps of %d/%d: %s\n", r->pid, r->tid,
		       uffdwp_strerror(-err));
		return err == -ENOENT ? -ESRCH : err;
	}
	err = -ENOENT;
	for (pass = 0; pass < 2 && r->syscall_ip == 0; pass++) {
		for (i = 0; i < maps.nr; i++) {
			const struct uffdwp_vma *v = &maps.v[i];
			bool vdso = !strcmp(v->name, "[vdso]");

			if (pass == 0 && !vdso)
				continue;
			/* [vsyscall] is execute-only or emulated: jumping into it faults. */
			if (pass == 1 && ((v->prot & (UFFDWP_VMA_READ | UFFDWP_VMA_EXEC)) !=
					      (UFFDWP_VMA_READ | UFFDWP_VMA_EXEC) ||
					  !strcmp(v->name, "[vsyscall]") || !exec_budget))
				continue;
			err = scan_for_syscall(r, v->start, v->end,
					       pass ? exec_budget : VDSO_READ_MAX);
			if (pass == 1)
				exec_budget -= v->end - v->start < exec_budget ? v->end - v->start
									       : exec_budget;
			if (!err)
				break;
		}
	}
	uffdwp_maps__fini(&maps);
	if (!r->syscall_ip) {
		pr_err("no syscall instruction found in the mappings of %d\n", r->pid);
		return err == -ENOENT ? -ENOEXEC : err;
	}
	pr_debug("syscall instruction of %d at %#lx\n", r->pid, r->syscall_ip);
	return 0;
}

static void sleep_us(long us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

static long elapsed_us(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000000L + (now.tv_nsec - since->tv_nsec) / 1000;
}

/*
 * Wait for the next ptrace event of the thread. With @timeout_ms >= 0 poll,
 * since waitpid() has no timeout: short yields first (a stop usually comes
 * within microseconds), then sleeps growing to a millisecond.
 * Returns 0 with *@status of a stop, -ESRCH if the thread exited (it is
 * reaped then), -ETIMEDOUT, or -errno.
 */
static int wait_event(struct uffdwp_remote *r, int *status, int timeout_ms)
{
	struct timespec t0 = {0, 0};
	long delay = 0;
	pid_t ret;

	if (timeout_ms >= 0)
		clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ret = waitpid(r->tid, status, __WALL | (timeout_ms >= 0 ? WNOHANG : 0));
		if (ret == r->tid)
			break;
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			/* ECHILD: someone else reaped it, or it is no longer ours. */
			r->dead = true;
			r->stopped = false;
			return -ESRCH;
		}
		if (elapsed_us(&t0) >= timeout_ms * 1000L)
			return -ETIMEDOUT;
		if (delay < 50) {
			sched_yield();
			delay++;
		} else {
			sleep_us(delay);
			delay = delay < 500 ? delay * 2 : 1000;
		}
	}
	if (WIFEXITED(*status) || WIFSIGNALED(*status)) {
		pr_debug("thread %d exited (status %#x)\n", r->tid, *status);
		r->dead = true;
		r->stopped = false;
		return -ESRCH;
	}
	r->stopped = true;
	return 0;
}

static int resume(struct uffdwp_remote *r, int request, int sig)
{
	if (ptrace(request, r->tid, NULL, (void *)(long)sig)) {
		int err = -errno;

		if (err == -ESRCH) {
			/*
			 * Killed while stopped (SIGKILL wakes a traced task): reap
			 * the exit so that the thread does not linger as ours.
			 */
			int status;

			if (wait_event(r, &status, STOP_TIMEOUT_MS) == 0)
				pr_err("thread %d is stopped but refuses to resume\n", r->tid);
			return -ESRCH;
		}
		pr_perror("cannot resume thread %d", r->tid);
		return err;
	}
	r->stopped = false;
	return 0;
}

static bool is_stop_signal(int sig)
{
	return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/*
 * Signals the kernel raises for the instruction at hand. If one were blocked
 * when raised, force_sig() would unblock it *and reset its handler to
 * SIG_DFL*, so these stay unblocked while we run and a fault of ours shows
 * up as a signal-delivery-stop we can discard.
 */
static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};

static uint64_t sigbit(int sig)
{
	return 1ULL << (sig - 1);
}

static uint64_t injection_sigmask(void)
{
	uint64_t mask = ~0ULL;
	size_t i;

	for (i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
		mask &= ~sigbit(sync_signals[i]);
	return mask;
}

/*
 * Wait until the thread parks in a stop we may work from: PTRACE_EVENT_STOP
 * (our interrupt, or a group stop). A signal-delivery-stop comes first when
 * a signal was already on its way; we let it through untouched (delivered
 * on the target's own registers, as if we were not there) and interrupt
 * again, since any trap consumes a pending interrupt.
 */
static int wait_first_stop(struct uffdwp_remote *r)
{
	struct timespec t0;
	int status, err, left;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		left = STOP_TIMEOUT_MS - (int)(elapsed_us(&t0) / 1000);
		err = wait_event(r, &status, left > 0 ? left : 0);
		if (err == -ETIMEDOUT) {
			struct uffdwp_thread_status st = {};

			uffdwp_proc_thread_status(r->pid, r->tid, &st);
			pr_err(
			    "thread %d did not stop within %d ms (state %c); it stays seized until "
			    "a later attach finds it stopped, or this process exits\n",
			    r->tid, STOP_TIMEOUT_MS, st.state ? st.state : '?');
			return err;
		}
		if (err)
			return err;
		if ((status >> 16) == PTRACE_EVENT_STOP) {
			if (is_stop_signal(WSTOPSIG(status)))
				pr_debug("thread %d is in a group stop\n", r->tid);
			return 0;
		}
		if ((status >> 16) == 0 && WSTOPSIG(status) != SYSCALL_STOP) {
			pr_debug("thread %d: signal %d arrived first, passing it on\n", r->tid,
				 WSTOPSIG(status));
			/* Queued while trapped: fires once this stop ends. */
			if (ptrace(PTRACE_INTERRUPT, r->tid, NULL, NULL) && errno != ESRCH) {
				err = -errno;
				pr_perror("cannot interrupt thread %d", r->tid);
				return err;
			}
			err = resume(r, PTRACE_CONT, WSTOPSIG(status));
		} else {
			err = resume(r, PTRACE_CONT, 0);
		}
		if (err)
			return err;
	}
}

/*
 * Wait for the next syscall-stop while our registers are loaded. Anything
 * else on the way is dealt with so that nothing is lost:
 * - PTRACE_EVENT_STOP (group stop, a left-over interrupt): resume; DETACH
 *   puts a group-stopped thread back into the stop.
 * - a signal-delivery-stop: only signals we could not block get here.
 *   SIGSTOP is handed back so that the group stop it asks for happens;
 *   anything else is blocked first and handed back, which makes the kernel
 *   queue it again with its siginfo (ptrace_signal()), to be delivered after
 *   we are gone. A fault raised by our own registers is discarded: -EFAULT.
 */
static int wait_syscall_stop(struct uffdwp_remote *r)
{
	int status, err, sig;
	siginfo_t si;

	for (;;) {
		err = wait_event(r, &status, -1);
		if (err)
			return err;
		sig = WSTOPSIG(status);
		if (sig == SYSCALL_STOP)
			return 0;
		if ((status >> 16) != 0) {
			if ((status >> 16) == PTRACE_EVENT_STOP && is_stop_signal(sig))
				pr_debug("thread %d: group stop during injection\n", r->tid);
			err = resume(r, PTRACE_SYSCALL, 0);
			if (err)
				return err;
			continue;
		}

		if (ptrace(PTRACE_GETSIGINFO, r->tid, NULL, &si)) {
			err = -errno;
			pr_perror("cannot read the siginfo of thread %d", r->tid);
			return err;
		}
		/* Raised by the kernel for an instruction (SI_KERNEL for #GP and int3). */
		if (si.si_code > 0 && sig != SIGSTOP && (sigbit(sig) & ~injection_sigmask())) {
			pr_err("thread %d got signal %d (code %d) running an injected call\n",
			       r->tid, sig, si.si_code);
			return -EFAULT;
		}
		if (sig != SIGSTOP) {
			uint64_t mask = r->cur_sigmask | sigbit(sig);

			if (ptrace(PTRACE_SETSIGMASK, r->tid, sizeof(mask), &mask)) {
				err = -errno;
				pr_perror("cannot block signal %d in thread %d", sig, r->tid);
				return err;
			}
			r->cur_sigmask = mask;
		}
		pr_debug("thread %d: signal %d during injection, handed back\n", r->tid, sig);
		err = resume(r, PTRACE_SYSCALL, sig);
		if (err)
			return err;
	}
}

static int seize(struct uffdwp_remote *r, const struct uffdwp_thread_status *st)
{
	unsigned long opts = PTRACE_O_TRACESYSGOOD;
	int err;

	/*
	 * A seccomp filter could kill the target or send it SIGSYS for a call
	 * it never makes itself. Root may suspend filters while we trace.
	 */
	if (st->seccomp == 2)
		opts |= PTRACE_O_SUSPEND_SECCOMP;
	if (!ptrace(PTRACE_SEIZE, r->tid, NULL, (void *)opts))
		return 0;
	err = -errno;
	if (err == -EPERM && (opts & PTRACE_O_SUSPEND_SECCOMP)) {
		opts &= ~PTRACE_O_SUSPEND_SECCOMP;
		if (!ptrace(PTRACE_SEIZE, r->tid, NULL, (void *)opts)) {
			pr_warn("cannot suspend the seccomp filter of %d: injected calls may be "
				"refused\n",
				r->pid);
			return 0;
		}
		err = -errno;
	}

	if (err == -ESRCH) {
		pr_err("no process %d\n", r->pid);
	} else if (err == -EPERM) {
		struct uffdwp_thread_status now;

		if (!uffdwp_proc_thread_status(r->pid, r->tid, &now) && now.tracer) {
			pr_err("process %d is already traced by %d (a debugger, strace or CRIU)\n",
			       r->pid, now.tracer);
			return -EBUSY;
		}
		pr_err("not allowed to ptrace process %d (credentials, "
		       "kernel.yama.ptrace_scope, or an LSM)\n",
		       r->pid);
	} else {
		pr_perror("cannot seize thread %d", r->tid);
	}
	return err;
}

/*
 * A thread that did not stop in time on an earlier attach is still seized
 * by us, and once it stops it stays stopped until we let go: do that now.
 * Only the thread that seized it may (ptrace is per tracer thread).
 */
static int release_abandoned(struct uffdwp_remote *r, struct uffdwp_thread_status *st)
{
	int status;
	pid_t ret;

	ret = waitpid(r->tid, &status, __WALL | WNOHANG);
	if (ret == r->tid && !WIFSTOPPED(status)) {
		pr_err("no process %d\n", r->pid);
		return -ESRCH;
	}
	if (ret != r->tid || ptrace(PTRACE_DETACH, r->tid, NULL, NULL)) {
		pr_err("thread %d is still seized by this process from an earlier attach and has "
		       "not stopped yet\n",
		       r->tid);
		return -EBUSY;
	}
	pr_info("released thread %d, left seized by an earlier attach\n", r->tid);
	return uffdwp_proc_thread_status(r->pid, r->tid, st);
}

int uffdwp_remote__attach(pid_t pid, struct uffdwp_remote **out)
{
	struct uffdwp_remote *r;
	struct uffdwp_thread_status st;
	int err;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = pick_thread(pid, &r->pid, &r->tid, &st);
	if (err)
		goto err_free;
	if (st.tracer == getpid()) {
		err = release_abandoned(r, &st);
		if (err)
			goto err_free;
	}
	if (st.tracer) {
		pr_err("process %d is already traced by %d (a debugger, strace or CRIU)\n", r->pid,
		       st.tracer);
		err = -EBUSY;
		goto err_free;
	}

	err = seize(r, &st);
	if (err)
		goto err_free;
	r->seized = true;

	/* ESRCH here means it died after the seize: the wait below reaps it. */
	if (ptrace(PTRACE_INTERRUPT, r->tid, NULL, NULL) && errno != ESRCH) {
		err = -errno;
		pr_perror("cannot interrupt thread %d", r->tid);
		goto err_detach;
	}
	err = wait_first_stop(r);
	if (err)
		goto err_detach;

	if (ptrace(PTRACE_GETSIGMASK, r->tid, sizeof(r->saved_sigmask), &r->saved_sigmask) ||
	    ptrace(PTRACE_GETREGS, r->tid, NULL, &r->saved)) {
		err = -errno;
		pr_perror("cannot read the state of thread %d", r->tid);
		goto err_detach;
	}
	r->regs_saved = true;
	if (r->saved.cs != X86_64_USER_CS) {
		pr_err("thread %d runs 32-bit code (cs %#llx): not supported\n", r->tid,
		       r->saved.cs);
		err = -EOPNOTSUPP;
		goto err_detach;
	}

	err = find_syscall_insn(r);
	if (err)
		goto err_detach;

	*out = r;
	return 0;

err_detach:
	uffdwp_remote__detach(r);
	return err;
err_free:
	free(r);
	return err;
}

int uffdwp_remote__syscall(struct uffdwp_remote *r, long *ret, long nr, unsigned long a1,
			   unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5,
			   unsigned long a6)
{
	struct user_regs_struct regs;
	int err;

	if (r->dead)
		return -ESRCH;
	if (!r->stopped || !r->regs_saved)
		return -EINVAL;

	/*
	 * Block every signal we can for the duration: one delivered now would
	 * build its frame on our registers. PTRACE_GETSIGMASK gave the mask a
	 * sigsuspend()/pselect() will go back to, and SETSIGMASK drops their
	 * pending restore; the kernel restarts them after we leave, and they
	 * install their own mask again.
	 */
	if (!r->cur_sigmask) {
		uint64_t mask = injection_sigmask();

		if (ptrace(PTRACE_SETSIGMASK, r->tid, sizeof(mask), &mask)) {
			err = -errno;
			pr_perror("cannot block signals in thread %d", r->tid);
			return err;
		}
		r->cur_sigmask = mask;
	}

	regs = r->saved;
	regs.rip = r->syscall_ip;
	regs.rax = nr;
	regs.orig_rax = -1; /* not in a syscall: no restart logic on the way out */
	regs.rdi = a1;
	regs.rsi = a2;
	regs.rdx = a3;
	regs.r10 = a4;
	regs.r8 = a5;
	regs.r9 = a6;
	if (ptrace(PTRACE_SETREGS, r->tid, NULL, &regs)) {
		err = -errno;
		pr_perror("cannot set the registers of thread %d", r->tid);
		return err;
	}

	err = resume(r, PTRACE_SYSCALL, 0);
	if (!err)
		err = wait_syscall_stop(r);
	if (err)
		goto err_log;
	/* The entry stop must be ours; anything else means we lost track. */
	if (ptrace(PTRACE_GETREGS, r->tid, NULL, &regs)) {
		err = -errno;
		goto err_log;
	}
	if (regs.orig_rax != (unsigned long long)nr || regs.rip != r->syscall_ip + 2) {
		pr_err("thread %d stopped in syscall %lld at %#llx, expected %ld at %#lx\n", r->tid,
		       regs.orig_rax, regs.rip, nr, r->syscall_ip + 2);
		return -EIO;
	}

	err = resume(r, PTRACE_SYSCALL, 0);
	if (!err)
		err = wait_syscall_stop(r);
	if (err)
		goto err_log;
	if (ptrace(PTRACE_GETREGS, r->tid, NULL, &regs)) {
		err = -errno;
		goto err_log;
	}
	*ret = (long)regs.rax;
	return 0;

err_log:
	if (err == -ESRCH)
		pr_err("process %d exited during syscall %ld\n", r->pid, nr);
	else if (err != -EFAULT)
		pr_err("syscall %ld in thread %d failed: %s\n", nr, r->tid, uffdwp_strerror(-err));
	return err;
}

pid_t uffdwp_remote__tid(const struct uffdwp_remote *r)
{
	return r->tid;
}

void uffdwp_remote__detach(struct uffdwp_remote *r)
{
	if (!r)
		return;
	if (r->seized && r->stopped && !r->dead) {
		/*
		 * Verbatim, orig_rax included: an -ERESTART* in rax is restarted
		 * (or turned into -EINTR for a handler) by the kernel on the way
		 * out, see the top of this file. A nanosleep()'s remaining time
		 * waits in its restart_block, which our calls do not touch.
		 */
		if (r->regs_saved && ptrace(PTRACE_SETREGS, r->tid, NULL, &r->saved))
			pr_perror("cannot restore the registers of thread %d", r->tid);
		if (r->cur_sigmask &&
		    ptrace(PTRACE_SETSIGMASK, r->tid, sizeof(r->saved_sigmask), &r->saved_sigmask))
			pr_perror("cannot restore the signal mask of thread %d", r->tid);
		/*
		 * Signal 0: a fault of ours, if we stopped on one, is dropped. A
		 * group-stopped process goes back into its stop on detach.
		 */
		if (ptrace(PTRACE_DETACH, r->tid, NULL, NULL))
			pr_perror("cannot detach from thread %d", r->tid);
	}
	free(r);
}

static int open_pidfd(const struct uffdwp_remote *r)
{
	int fd, err;

	/*
	 * pidfd_getfd() reads the files of the task the pidfd names. A zombie
	 * leader has none left (ESRCH, measured on 6.18), so name the live
	 * thread (PIDFD_THREAD, 6.9).
	 */
	if (r->tid != r->pid) {
		fd = (int)syscall(__NR_pidfd_open, r->tid, PIDFD_THREAD);
		if (fd >= 0)
			return fd;
		pr_debug("pidfd_open(%d, PIDFD_THREAD): %s\n", r->tid, uffdwp_strerror(errno));
	}
	fd = (int)syscall(__NR_pidfd_open, r->pid, 0);
	if (fd < 0) {
		err = -errno;
		pr_perror("pidfd_open(%d)", r->pid);
		return err;
	}
	return fd;
}

int uffdwp_inject_userfaultfd(pid_t pid, int flags)
{
	struct uffdwp_remote *r;
	long rfd, ret;
	int err, err2, pidfd, fd = -1;

	err = uffdwp_remote__attach(pid, &r);
	if (err)
		return err;

	err = uffdwp_remote__syscall(r, &rfd, __NR_userfaultfd, flags, 0, 0, 0, 0, 0);
	if (err)
		goto out_detach;
	if (rfd < 0) {
		err = (int)rfd;
		pr_err("userfaultfd() in process %d failed: %s\n", r->pid, uffdwp_strerror(-err));
		goto out_detach;
	}

	pidfd = open_pidfd(r);
	if (pidfd < 0) {
		err = pidfd;
	} else {
		fd = (int)syscall(__NR_pidfd_getfd, pidfd, (int)rfd, 0);
		if (fd < 0) {
			err = -errno;
			pr_perror("pidfd_getfd(%d, %ld)", r->pid, rfd);
		}
		close(pidfd);
	}

	/* Always take the target's copy back, also when ours failed. */
	ret = 0;
	err2 = uffdwp_remote__syscall(r, &ret, __NR_close, rfd, 0, 0, 0, 0, 0);
	if (err2) {
		err = err2;
	} else if (ret < 0) {
		pr_err("close(%ld) in process %d failed: %s\n", rfd, r->pid,
		       uffdwp_strerror((int)-ret));
		if (!err)
			err = (int)ret;
	}

out_detach:
	uffdwp_remote__detach(r);
	if (err) {
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}
