// SPDX-License-Identifier: GPL-2.0
/*
 * Multi-threaded targets for syscall injection. Exit 0 when all went well.
 *
 *   threads    the leader blocks in read(0) for "hello\n"; one thread spins,
 *              one sleeps in short nanosleeps, one blocks in read() on a
 *              pipe; all must have made progress and see their data
 *   zombie     the leader calls pthread_exit() and stays a zombie; a thread
 *              says "ready TID" and waits in read(0) for "hello\n"
 *   rtsig N    a thread queues N real-time signals (value 0..N-1) at the
 *              process while the leader sleeps; each must arrive exactly
 *              once with its siginfo intact
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "workload.h"

static volatile int stop;
static int pipefd[2];
static pthread_barrier_t started;

static int read_hello(int fd)
{
	char buf[64];
	ssize_t n;

	n = read(fd, buf, sizeof(buf) - 1);
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

static void *spinner(void *arg)
{
	uint64_t *count = arg, x = 0;

	pthread_barrier_wait(&started);
	do {
		x = x * 6364136223846793005ULL + 1;
		(*count)++;
	} while (!stop);
	return (void *)(uintptr_t)(x == 42);
}

static void *sleeper(void *arg)
{
	struct timespec ts = {.tv_nsec = 5 * 1000000};
	uint64_t *count = arg;

	pthread_barrier_wait(&started);
	do {
		if (nanosleep(&ts, NULL) && errno != EINTR)
			return (void *)1;
		(*count)++;
	} while (!stop);
	return NULL;
}

static void *piper(void *arg)
{
	pthread_barrier_wait(&started);
	return (void *)(uintptr_t)read_hello(pipefd[0]);
}

static int do_threads(void)
{
	uint64_t spins = 0, sleeps = 0;
	pthread_t t[3];
	void *res;
	int i, bad = 0;

	if (pipe(pipefd) || pthread_barrier_init(&started, NULL, 4))
		wl_die("pipe");
	if (pthread_create(&t[0], NULL, spinner, &spins) ||
	    pthread_create(&t[1], NULL, sleeper, &sleeps) ||
	    pthread_create(&t[2], NULL, piper, NULL))
		wl_die("pthread_create");
	/* All running before the test stops or injects anything. */
	pthread_barrier_wait(&started);
	wl_say("ready");
	if (read_hello(0))
		return 1;
	if (write(pipefd[1], "hello\n", 6) != 6)
		wl_die("write");
	stop = 1;
	for (i = 0; i < 3; i++) {
		pthread_join(t[i], &res);
		bad |= res != NULL;
	}
	if (bad || !spins || !sleeps) {
		wl_say("error threads: bad %d spins %llu sleeps %llu", bad,
		       (unsigned long long)spins, (unsigned long long)sleeps);
		return 1;
	}
	return 0;
}

static void *zombie_thread(void *arg)
{
	wl_say("ready %ld", (long)syscall(SYS_gettid));
	exit(read_hello(0));
}

static int do_zombie(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, zombie_thread, NULL))
		wl_die("pthread_create");
	pthread_exit(NULL);
}

static unsigned char *seen;
static volatile int received, bad_info;
static int rt_count;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	int v = si->si_value.sival_int;

	/* A duplicate, or a siginfo that lost its sender or value. */
	if (si->si_code != SI_QUEUE || si->si_pid != getpid() || v < 0 || v >= rt_count ||
	    seen[v]) {
		bad_info++;
		return;
	}
	seen[v] = 1;
	received++;
}

static void *rt_sender(void *arg)
{
	struct timespec gap = {.tv_nsec = 300 * 1000};
	union sigval val;
	sigset_t set;
	int i;

	/* Blocked here, so that the process-wide signals go to the leader. */
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < rt_count; i++) {
		val.sival_int = i;
		while (sigqueue(getpid(), SIGRTMIN, val)) {
			if (errno != EAGAIN)
				return (void *)1;
			nanosleep(&gap, NULL);
		}
		nanosleep(&gap, NULL);
	}
	stop = 1;
	return NULL;
}

static int do_rtsig(int n)
{
	struct sigaction sa = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART};
	struct timespec ms = {.tv_nsec = 1000000};
	pthread_t t;
	void *res;
	int i, waited = 0;

	rt_count = n;
	seen = calloc(n, 1);
	if (!seen)
		wl_die("calloc");
	sigaction(SIGRTMIN, &sa, NULL);
	if (pthread_create(&t, NULL, rt_sender, NULL))
		wl_die("pthread_create");
	wl_say("ready");
	while (!stop || (received < n && waited++ < 5000))
		nanosleep(&ms, NULL);
	pthread_join(t, &res);
	for (i = 0; i < n && seen[i]; i++)
		;
	if (res || bad_info || received != n || i != n) {
		wl_say(
		    "error rtsig: sender %p, bad siginfo %d, received %d of %d, first missing %d",
		    res, bad_info, received, n, i);
		return 1;
	}
	wl_say("received %d", received);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "threads"))
		return do_threads();
	if (!strcmp(mode, "zombie"))
		return do_zombie();
	if (!strcmp(mode, "rtsig"))
		return do_rtsig(argc > 2 ? atoi(argv[2]) : 2000);
	fprintf(stderr, "usage: inj_threads threads|zombie|rtsig [N]\n");
	return 2;
}
