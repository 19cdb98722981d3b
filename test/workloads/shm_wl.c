// SPDX-License-Identifier: GPL-2.0
/*
 * shm_wl: anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS) written by
 * several processes, every way a page of it can change between two
 * checkpoints, for incremental dumps of shared memory. The same protocol
 * as criu_wl: driven by signals, answering through files in DIR.
 *
 *   shm_wl DIR [PAGES [spin]]
 *
 * Sets up its regions (PAGES pages each, default 1024), forks one child,
 * then writes DIR/ready ("HOSTPID CHILDHOSTPID") and waits:
 *   SIGUSR1  one step (below); answers DIR/step ("K") once parent and
 *            child are both done
 *   SIGUSR2  verify every page, in parent and child, against what steps
 *            0..K wrote; answers DIR/verify ("ok K" or "bad REGION PAGE K",
 *            the child's own in DIR/verify.child, written first) and exits
 *
 * Regions, all shared between parent and child (fork), each page present
 * in both page tables after setup:
 *   main    fully written at setup. Step t rewrites 1/16 of it from the
 *           parent, 1/16 through the parent's /proc/self/mem, 1/16 from the
 *           child, 1/16 from the child followed by MADV_DONTNEED of those
 *           pages in the child (the written PTE is dropped, the data stays);
 *           at step 2 a grandchild forked by the child writes 1/16 and exits
 *           (its page table, the only one that saw the write, is gone).
 *   gone    fully written at setup. Step 1: the parent writes 1/16, the
 *           child writes another 1/16 and unmaps its whole mapping; later
 *           steps: the parent writes 1/16. Only the parent checks it.
 *   sparse  1/4 written at setup, the rest never touched (no data). Step t:
 *           the parent writes 1/32; the child reads 1/32 of the never-
 *           written pages (a read fault gives the object a zero page). Step
 *           1: the child punches holes with MADV_REMOVE in 1/32 that held
 *           data (they read as zeros from then on), then reads half of them
 *           again (a new zero page, mapped write-protected).
 * What a page should hold is recomputed from the step counter alone.
 *
 * With "spin", a thread of the child writes all the time until step 3,
 * also while a checkpoint copies memory: the first word of page n % PAGES
 * of a fourth shared region "busy" gets n = 1, 2, 3, ..., then a private
 * array gets the same n for that page. From step 3 on it writes nothing,
 * so that a later dump has to take what it wrote last from the tracker's
 * answer. The verify stops the thread, then every busy page must hold
 * what the array says: an older value is a lost write.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "workload.h"

#define PG 4096UL

enum { R_MAIN, R_GONE, R_SPARSE, R__MAX };
static const char *const rname[R__MAX] = {"main", "gone", "sparse"};

/* Who wrote a page: part of its seed, so that each writer's data differs. */
enum { W_INIT, W_PARENT, W_MEM, W_CHILD, W_DROPPED, W_GRANDCHILD, W_PUNCHED };

static char *reg[R__MAX];
static size_t npages;
static const char *dir;
static volatile uint32_t step; /* in memory, dumped with the rest */
static bool is_child;

/* "spin": the busy region, the thread's private record of it, its stop. */
static char *busy;
static uint64_t *busy_last;
static atomic_bool busy_stop;
static pthread_t busy_thread;

static uint32_t seed_of(int r, int who, uint32_t t)
{
	return (uint32_t)r * 100000 + (uint32_t)who * 1000 + t + 1;
}

/* Who writes page @i of region @r at step @t (W_INIT: nobody). */
static int writer(int r, size_t i, uint32_t t)
{
	switch (r) {
	case R_MAIN:
		switch ((i + t) % 16) {
		case 0:
			return W_PARENT;
		case 4:
			return W_DROPPED;
		case 8:
			return W_CHILD;
		case 12:
			return W_MEM;
		case 2:
			return t == 2 ? W_GRANDCHILD : W_INIT;
		}
		return W_INIT;
	case R_GONE:
		if ((i + t) % 16 == 0)
			return W_PARENT;
		if (t == 1 && (i + t) % 16 == 8)
			return W_CHILD;
		return W_INIT;
	case R_SPARSE:
		if (t == 1 && (i + t) % 32 == 9)
			return W_PUNCHED;
		return (i + t) % 32 == 0 ? W_PARENT : W_INIT;
	}
	return W_INIT;
}

/* The seed page @i of region @r holds after steps 1..@k; 0 is a zero page. */
static uint32_t expect(int r, size_t i, uint32_t k)
{
	uint32_t s, t;

	s = (r != R_SPARSE || i % 4 == 0) ? seed_of(r, W_INIT, 0) : 0;
	for (t = 1; t <= k; t++) {
		int w = writer(r, i, t);

		if (w == W_PUNCHED)
			s = 0;
		else if (w != W_INIT)
			s = seed_of(r, w, t);
	}
	return s;
}

static void write_mem(char *addr, uint32_t seed, uint64_t page)
{
	char buf[PG];
	int fd;

	wl_fill_page(buf, seed, page);
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, buf, PG, (off_t)(uintptr_t)addr) != (ssize_t)PG)
		wl_die("write /proc/self/mem");
	close(fd);
}

static void grandchild_writes(uint32_t t)
{
	pid_t p = fork();
	int status;
	size_t i;

	if (p < 0)
		wl_die("fork");
	if (!p) {
		for (i = 0; i < npages; i++)
			if (writer(R_MAIN, i, t) == W_GRANDCHILD)
				wl_fill_page(reg[R_MAIN] + i * PG, seed_of(R_MAIN, W_GRANDCHILD, t),
					     i);
		_exit(0);
	}
	if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status))
		wl_die("grandchild");
}

static void apply(uint32_t t)
{
	volatile char sink = 0;
	size_t i;
	int r;

	for (r = 0; r < R__MAX; r++) {
		if (!reg[r])
			continue;
		for (i = 0; i < npages; i++) {
			int w = writer(r, i, t);
			char *p = reg[r] + i * PG;
			uint32_t s = seed_of(r, w, t);

			if (!is_child && w == W_PARENT)
				wl_fill_page(p, s, i);
			else if (!is_child && w == W_MEM)
				write_mem(p, s, i);
			else if (is_child && w == W_CHILD)
				wl_fill_page(p, s, i);
			else if (is_child && w == W_DROPPED) {
				wl_fill_page(p, s, i);
				if (madvise(p, PG, MADV_DONTNEED))
					wl_die("madvise");
			} else if (is_child && w == W_PUNCHED) {
				if (madvise(p, PG, MADV_REMOVE))
					wl_die("madvise");
				if (i % 64 == 8)
					sink += *(volatile char *)p;
			} else if (is_child && r == R_SPARSE && (i + t) % 32 == 16 &&
				   !expect(r, i, t))
				sink += *(volatile char *)p;
		}
	}
	(void)sink;
	if (is_child && t == 2)
		grandchild_writes(t);
	if (is_child && t == 1) {
		if (munmap(reg[R_GONE], npages * PG))
			wl_die("munmap");
		reg[R_GONE] = NULL;
	}
}

static void *spin(void *arg)
{
	uint64_t n;

	(void)arg;
	for (n = 1; !atomic_load_explicit(&busy_stop, memory_order_relaxed); n++) {
		size_t i = n % npages;

		if (step >= 3) {
			usleep(1000);
			continue;
		}

		*(volatile uint64_t *)(busy + i * PG) = n;
		/* Not before the shared store: the thread sees its own order. */
		atomic_signal_fence(memory_order_seq_cst);
		((volatile uint64_t *)busy_last)[i] = n;
	}
	return NULL;
}

static int verify_busy(void)
{
	size_t i;

	atomic_store(&busy_stop, true);
	pthread_join(busy_thread, NULL);
	for (i = 0; i < npages; i++) {
		uint64_t have = *(uint64_t *)(busy + i * PG);

		if (have != busy_last[i]) {
			wl_answer(dir, is_child, "verify", "bad busy %zu %u (%llu, wrote %llu)\n",
				  i, step, (unsigned long long)have,
				  (unsigned long long)busy_last[i]);
			return 1;
		}
	}
	return 0;
}

static int verify(void)
{
	size_t i;
	int r;

	if (wl_step_answered(dir, is_child) != step) {
		wl_answer(dir, is_child, "verify", "bad step %u, answered %ld\n", step,
			  wl_step_answered(dir, is_child));
		return 1;
	}
	for (r = 0; r < R__MAX; r++) {
		if (!reg[r])
			continue;
		for (i = 0; i < npages; i++) {
			if (!wl_check_page(reg[r] + i * PG, expect(r, i, step), i)) {
				wl_answer(dir, is_child, "verify", "bad %s %zu %u\n", rname[r], i,
					  step);
				return 1;
			}
		}
	}
	if (busy_last && verify_busy())
		return 1;
	wl_answer(dir, is_child, "verify", "ok %u\n", step);
	return 0;
}

static void setup(void)
{
	size_t i;
	int r;

	for (r = 0; r < R__MAX; r++) {
		reg[r] = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			      -1, 0);
		if (reg[r] == MAP_FAILED)
			wl_die("mmap");
		for (i = 0; i < npages; i++)
			if (expect(r, i, 0))
				wl_fill_page(reg[r] + i * PG, expect(r, i, 0), i);
	}
}

/* Fault in every page that has data: present in this page table too. */
static void touch_written(void)
{
	volatile char sink = 0;
	size_t i;
	int r;

	for (r = 0; r < R__MAX; r++)
		for (i = 0; i < npages; i++)
			if (expect(r, i, 0))
				sink += *(volatile char *)(reg[r] + i * PG);
	(void)sink;
}

int main(int argc, char **argv)
{
	sigset_t set;
	pid_t child;

	if (argc < 2) {
		fprintf(stderr, "usage: shm_wl DIR [PAGES [spin]]\n");
		return 2;
	}
	dir = argv[1];
	npages = argc > 2 ? strtoul(argv[2], NULL, 0) : 1024;
	if (!npages || (argc > 3 && strcmp(argv[3], "spin")))
		return 2;
	if (argc > 3) {
		busy = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			    -1, 0);
		if (busy == MAP_FAILED)
			wl_die("mmap");
	}

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);

	setup();
	child = fork();
	if (child < 0)
		wl_die("fork");
	if (!child) {
		is_child = true;
		touch_written();
		if (busy) {
			busy_last = calloc(npages, sizeof(*busy_last));
			if (!busy_last)
				wl_die("calloc");
			/* The thread keeps SIGUSR1/2 blocked: sigwait() gets them. */
			if (pthread_create(&busy_thread, NULL, spin, NULL))
				wl_die("pthread_create");
		}
		wl_answer(dir, is_child, "ready", "%d\n", wl_host_pid());
	} else {
		wl_answer(dir, is_child, "ready", "%d %ld\n", wl_host_pid(),
			  wl_wait_child(dir, "ready", -1));
	}

	return wl_serve(dir, &set, child, &step, apply, verify);
}
