// SPDX-License-Identifier: GPL-2.0
/*
 * A single-threaded target for syscall injection: it says "ready", blocks in
 * the system call named by MODE, and checks on its way out that the call
 * behaved as if nobody had been there. Exit 0 when it did.
 *
 *   read        read(0) gets "hello\n"
 *   select      select() on fd 0 (30 s timeout), then "hello\n"
 *   poll        poll() on fd 0 (30 s timeout), then "hello\n"
 *   futex       FUTEX_WAIT on a word a helper thread wakes once fd 0 has "hello\n"
 *   nanosleep MS  sleeps MS ms: neither returns early nor starts over
 *   pause       pause() returns EINTR after a SIGUSR1 handler ran, never before
 *   sigsuspend  SIGUSR1 blocked, sigsuspend() with it unblocked: EINTR after the
 *               handler, and the old mask is back afterwards
 *   pselect     the same with pselect() and its mask argument
 *   compute MS  runs a register-heavy loop for MS ms and checks every result
 *   epoll       epoll_wait() on fd 0; counts EINTRs (say "eintr N" at the end)
 *   vfork       vfork()s a child that waits for a byte on fd 0: the parent sits
 *               in an uninterruptible wait meanwhile; then "hello\n"
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "workload.h"

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	got_usr1 = 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int expect_hello(void)
{
	char buf[64];
	ssize_t n;

	do
		n = read(0, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		wl_say("error read: %s", strerror(errno));
		return 1;
	}
	buf[n] = '\0';
	if (strcmp(buf, "hello\n")) {
		wl_say("error read got '%s'", buf);
		return 1;
	}
	return 0;
}

static int do_read(void)
{
	char buf[64];
	ssize_t n;

	wl_say("ready");
	/* No EINTR loop: an injection must not make read() fail. */
	n = read(0, buf, sizeof(buf) - 1);
	if (n < 0) {
		wl_say("error read: %s (errno %d)", strerror(errno), errno);
		return 1;
	}
	buf[n] = '\0';
	if (strcmp(buf, "hello\n")) {
		wl_say("error read got '%s'", buf);
		return 1;
	}
	return 0;
}

static int do_select(void)
{
	struct timeval tv = {.tv_sec = 30};
	fd_set rd;
	int n;

	FD_ZERO(&rd);
	FD_SET(0, &rd);
	wl_say("ready");
	n = select(1, &rd, NULL, NULL, &tv);
	if (n != 1 || !FD_ISSET(0, &rd)) {
		wl_say("error select returned %d: %s", n, n < 0 ? strerror(errno) : "timeout");
		return 1;
	}
	return expect_hello();
}

static int do_poll(void)
{
	struct pollfd p = {.fd = 0, .events = POLLIN};
	int n;

	wl_say("ready");
	n = poll(&p, 1, 30000);
	if (n != 1 || !(p.revents & POLLIN)) {
		wl_say("error poll returned %d: %s", n, n < 0 ? strerror(errno) : "timeout");
		return 1;
	}
	return expect_hello();
}

static uint32_t futex_word;

static void *futex_waker(void *arg)
{
	if (expect_hello())
		exit(1);
	__atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	return NULL;
}

static int do_futex(void)
{
	pthread_t t;
	long r;

	if (pthread_create(&t, NULL, futex_waker, NULL))
		wl_die("pthread_create");
	wl_say("ready");
	while (!__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST)) {
		r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		/* EAGAIN: the word changed before we slept. Anything else is wrong. */
		if (r < 0 && errno != EAGAIN) {
			wl_say("error futex: %s", strerror(errno));
			return 1;
		}
	}
	pthread_join(t, NULL);
	return 0;
}

static int do_nanosleep(long ms)
{
	struct timespec req = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000}, rem;
	double t0, took;

	wl_say("ready");
	t0 = now_ms();
	if (nanosleep(&req, &rem)) {
		wl_say("error nanosleep: %s", strerror(errno));
		return 1;
	}
	took = now_ms() - t0;
	/* Started over after an injection it would take about twice as long. */
	if (took < ms || took > ms * 1.3 + 100) {
		wl_say("error nanosleep of %ld ms took %.1f ms", ms, took);
		return 1;
	}
	wl_say("slept %.1f", took);
	return 0;
}

static int do_pause(void)
{
	struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
	int r;

	sigaction(SIGUSR1, &sa, NULL);
	wl_say("ready");
	r = pause();
	if (r != -1 || errno != EINTR || !got_usr1) {
		wl_say("error pause returned %d (%s) with%s a SIGUSR1", r, strerror(errno),
		       got_usr1 ? "" : "out");
		return 1;
	}
	return 0;
}

/* SIGUSR1 is blocked outside the wait, and must be again after it. */
static int check_mask(void)
{
	sigset_t cur;

	sigprocmask(SIG_BLOCK, NULL, &cur);
	if (!sigismember(&cur, SIGUSR1) || sigismember(&cur, SIGUSR2)) {
		wl_say("error the signal mask was not restored");
		return 1;
	}
	return 0;
}

static int do_sigwait(int pselect_mode)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigset_t block, during;
	int r;

	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigemptyset(&during);
	sigaddset(&during, SIGUSR2);
	wl_say("ready");
	if (pselect_mode)
		r = pselect(0, NULL, NULL, NULL, NULL, &during);
	else
		r = sigsuspend(&during);
	if (r != -1 || errno != EINTR || !got_usr1) {
		wl_say("error %s returned %d (%s) with%s a SIGUSR1",
		       pselect_mode ? "pselect" : "sigsuspend", r, strerror(errno),
		       got_usr1 ? "" : "out");
		return 1;
	}
	return check_mask();
}

/*
 * Fourteen general registers (all but rsp and rbp) run through a chain of
 * add-and-rotate for many rounds, with a branch on the flags in between.
 * An injection that put back any register (or rflags) wrong shows up as a
 * result that differs from the same chain computed in C.
 */
#define NREGS 14
__attribute__((visibility("hidden"))) uint64_t wl_regs[NREGS];
__attribute__((visibility("hidden"))) uint64_t wl_iters;

#define STEP(cur, next, rot) "addq %%" next ", %%" cur "\n\trolq $" rot ", %%" cur "\n\t"
#define LOAD(i, reg)	     "movq wl_regs+" #i "(%%rip), %%" reg "\n\t"
#define STORE(i, reg)	     "movq %%" reg ", wl_regs+" #i "(%%rip)\n\t"

/* clang-format off */
static void chain_asm(void)
{
	__asm__ volatile(
		LOAD(0, "rax") LOAD(8, "rbx") LOAD(16, "rcx") LOAD(24, "rdx")
		LOAD(32, "rsi") LOAD(40, "rdi") LOAD(48, "r8") LOAD(56, "r9")
		LOAD(64, "r10") LOAD(72, "r11") LOAD(80, "r12") LOAD(88, "r13")
		LOAD(96, "r14") LOAD(104, "r15")
		"1:\n\t"
		STEP("rax", "rbx", "1") STEP("rbx", "rcx", "4") STEP("rcx", "rdx", "7")
		STEP("rdx", "rsi", "10") STEP("rsi", "rdi", "13") STEP("rdi", "r8", "16")
		STEP("r8", "r9", "19") STEP("r9", "r10", "22") STEP("r10", "r11", "25")
		STEP("r11", "r12", "28") STEP("r12", "r13", "31") STEP("r13", "r14", "34")
		STEP("r14", "r15", "37") STEP("r15", "rax", "40")
		"decq wl_iters(%%rip)\n\t"
		"jnz 1b\n\t"
		STORE(0, "rax") STORE(8, "rbx") STORE(16, "rcx") STORE(24, "rdx")
		STORE(32, "rsi") STORE(40, "rdi") STORE(48, "r8") STORE(56, "r9")
		STORE(64, "r10") STORE(72, "r11") STORE(80, "r12") STORE(88, "r13")
		STORE(96, "r14") STORE(104, "r15")
		:
		:
		: "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
		  "r12", "r13", "r14", "r15", "cc", "memory");
}
/* clang-format on */

static uint64_t rol64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static void chain_c(uint64_t *r, uint64_t iters)
{
	uint64_t it;
	int i;

	for (it = 0; it < iters; it++)
		for (i = 0; i < NREGS; i++)
			r[i] = rol64(r[i] + r[(i + 1) % NREGS], 1 + 3 * i);
}

static int do_compute(long ms)
{
	const uint64_t iters = 200000;
	uint64_t want[NREGS], seed = 1;
	double end;
	long rounds = 0;
	int i;

	wl_say("ready");
	end = now_ms() + ms;
	while (now_ms() < end) {
		for (i = 0; i < NREGS; i++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			want[i] = wl_regs[i] = seed;
		}
		wl_iters = iters;
		chain_asm();
		chain_c(want, iters);
		if (memcmp(want, wl_regs, sizeof(want))) {
			for (i = 0; i < NREGS; i++)
				if (want[i] != wl_regs[i])
					wl_say("error round %ld register %d: %#llx, want %#llx",
					       rounds, i, (unsigned long long)wl_regs[i],
					       (unsigned long long)want[i]);
			return 1;
		}
		rounds++;
	}
	wl_say("rounds %ld", rounds);
	return 0;
}

/*
 * epoll_wait() is one of the calls Linux does not restart after a stop
 * (signal(7)): a ptrace interrupt makes it fail with EINTR, the same as a
 * SIGSTOP/SIGCONT would. Programs retry; this one counts.
 */
static int do_epoll(void)
{
	struct epoll_event ev = {.events = EPOLLIN}, out;
	int ep = epoll_create1(EPOLL_CLOEXEC), n, eintr = 0;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev))
		wl_die("epoll");
	wl_say("ready");
	for (;;) {
		n = epoll_wait(ep, &out, 1, 30000);
		if (n == 1)
			break;
		if (n < 0 && errno == EINTR) {
			eintr++;
			continue;
		}
		wl_say("error epoll_wait returned %d", n);
		return 1;
	}
	if (expect_hello())
		return 1;
	wl_say("eintr %d", eintr);
	return 0;
}

/* A parent waiting for its vfork child is in TASK_KILLABLE: ptrace cannot stop it. */
static int do_vfork(void)
{
	char c;
	pid_t child;
	int status;

	wl_say("ready");
	child = vfork();
	if (child == 0)
		_exit(read(0, &c, 1) == 1 ? 0 : 1);
	if (child < 0 || waitpid(child, &status, 0) != child || status != 0) {
		wl_say("error vfork child");
		return 1;
	}
	return expect_hello();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	long arg = argc > 2 ? atol(argv[2]) : 1000;

	if (!strcmp(mode, "read"))
		return do_read();
	if (!strcmp(mode, "select"))
		return do_select();
	if (!strcmp(mode, "poll"))
		return do_poll();
	if (!strcmp(mode, "futex"))
		return do_futex();
	if (!strcmp(mode, "nanosleep"))
		return do_nanosleep(arg);
	if (!strcmp(mode, "pause"))
		return do_pause();
	if (!strcmp(mode, "sigsuspend"))
		return do_sigwait(0);
	if (!strcmp(mode, "pselect"))
		return do_sigwait(1);
	if (!strcmp(mode, "compute"))
		return do_compute(arg);
	if (!strcmp(mode, "epoll"))
		return do_epoll();
	if (!strcmp(mode, "vfork"))
		return do_vfork();
	fprintf(stderr, "usage: inj_block MODE [ARG]\n");
	return 2;
}
