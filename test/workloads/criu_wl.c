// SPDX-License-Identifier: GPL-2.0
/*
 * criu_wl: a process tree for checkpoint/restore tests that checks its own
 * memory. Driven by signals and answering through files in DIR, so that it
 * holds no pipe to the test and CRIU can dump and restore it anywhere.
 *
 *   criu_wl DIR [PAGES [park]]
 *
 * Sets up its regions (PAGES pages each, default 2048), forks one child,
 * then writes DIR/ready ("HOSTPID CHILDHOSTPID") and waits:
 *   SIGUSR1  one step: rewrite a quarter of the pages, populate and drop
 *            some sparse ones; answers DIR/step ("K") once parent and
 *            child are both done
 *   SIGUSR2  verify every page against what steps 0..K wrote; answers
 *            DIR/verify ("ok K" or "bad REGION PAGE K", the child's own in
 *            DIR/verify.child, written first) and exits 0 or 1
 *
 * Regions: anon (all written), thp (MADV_HUGEPAGE, all written), sparse
 * (anon with holes that steps fill and punch), shared (MAP_SHARED anon,
 * the parent writes, the child checks), file (MAP_PRIVATE of DIR/wl.data,
 * a few pages copied on write). The child writes its own copy of anon.
 * What a page should hold is recomputed from the step counter alone.
 *
 * With "park" (x86-64), the parent also starts a thread that waits in a raw
 * pause() with its stack pointer on a page boundary, inside a stack of
 * PARK_PAGES filled pages, and writes that address to DIR/park: the page
 * from it up is the thread's stack page, which CRIU restores eagerly while
 * the others can be lazy. The parent's verify checks those pages too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "workload.h"

#define PG    4096UL
#define HPAGE (2UL << 20)

enum { R_ANON, R_THP, R_SPARSE, R_SHARED, R_FILE, R__MAX };
static const char *const rname[R__MAX] = {"anon", "thp", "sparse", "shared", "file"};

static char *reg[R__MAX];
static size_t npages;
static const char *dir;
static volatile uint32_t step; /* in memory, dumped with the rest */
static bool is_child;

#define PARK_PAGES 4
#define PARK_SEED  424242
static char *park; /* the parked thread's stack, PARK_PAGES pages */

/*
 * The seed page @i of region @r holds after steps 1..@k of the parent or,
 * with @child, of the child (which starts from the parent's step 0). 0 is
 * the zero page (sparse) or the file's own page (file). Seeds differ per
 * region, process and step.
 */
static uint32_t expect(int r, size_t i, uint32_t k, bool child)
{
	uint32_t init = r * 10000 + 1, base = (child ? 1000000 : 0) + r * 10000 + 1, s = 0, t;

	switch (r) {
	case R_ANON:
	case R_THP:
		s = init;
		for (t = 1; t <= k; t++)
			if ((i + t) % 4 == 0)
				s = base + t;
		return s;
	case R_SPARSE:
		s = i % 8 == 0 ? init : 0;
		for (t = 1; t <= k; t++) {
			if ((i * 7 + t) % 16 == 0)
				s = base + t;
			else if ((i * 5 + t) % 16 == 3)
				s = 0;
		}
		return s;
	case R_SHARED:
		s = init;
		for (t = 1; t <= k; t++)
			if ((i + 2 * t) % 8 == 0)
				s = base + t;
		return s;
	case R_FILE:
		for (t = 1; t <= k; t++)
			if ((i + t) % 16 == 0)
				s = base + t;
		return s;
	}
	return 0;
}

/* Which regions a process writes; the child only writes its anon copy. */
static bool writes(int r)
{
	return is_child ? r == R_ANON : true;
}

/* What page @i of region @r must hold now, in this process. */
static uint32_t now_seed(int r, size_t i)
{
	if (r == R_SHARED)
		return expect(r, i, step, false); /* only the parent writes it */
	if (!writes(r))
		return expect(r, i, 0, false); /* the child's copy from the fork */
	return expect(r, i, step, is_child);
}

static void apply(uint32_t k)
{
	size_t i;
	int r;

	for (r = 0; r < R__MAX; r++) {
		if (!writes(r))
			continue;
		for (i = 0; i < npages; i++) {
			uint32_t now = expect(r, i, k, is_child);

			if (k && now == expect(r, i, k - 1, is_child))
				continue;
			if (r == R_SPARSE && !now)
				madvise(reg[r] + i * PG, PG, MADV_DONTNEED);
			else if (r == R_FILE && !now)
				continue;
			else
				wl_fill_page(reg[r] + i * PG, now, i);
		}
	}
}

/* 0 if every page holds what it must; else 1, with the first bad page in DIR/verify. */
static int verify(void)
{
	size_t i;
	int r;

	/* The counter lives in tracked memory too: a stale copy would make stale pages look right.
	 */
	if (wl_step_answered(dir, is_child) != step) {
		wl_answer(dir, is_child, "verify", "bad step %u, answered %ld\n", step,
			  wl_step_answered(dir, is_child));
		return 1;
	}

	for (r = 0; r < R__MAX; r++) {
		for (i = 0; i < npages; i++) {
			uint32_t s = now_seed(r, i);

			if (r == R_FILE && !s)
				s = 7;
			if (!wl_check_page(reg[r] + i * PG, s, i)) {
				wl_answer(dir, is_child, "verify", "bad %s %zu %u\n", rname[r], i,
					  step);
				return 1;
			}
		}
	}
	for (i = 0; park && i < PARK_PAGES; i++) {
		if (!wl_check_page(park + i * PG, PARK_SEED, i)) {
			wl_answer(dir, is_child, "verify", "bad park %zu %u\n", i, step);
			return 1;
		}
	}
	wl_answer(dir, is_child, "verify", "ok %u\n", step);
	return 0;
}

#ifdef __x86_64__
static void *park_thread(void *sp)
{
	for (;;) {
		long nr = SYS_pause;

		/* No call, no push: the kernel sees exactly this stack pointer. */
		asm volatile("mov %%rsp, %%r12\n\t"
			     "mov %1, %%rsp\n\t"
			     "syscall\n\t"
			     "mov %%r12, %%rsp"
			     : "+a"(nr)
			     : "r"(sp)
			     : "rcx", "r11", "r12", "memory");
	}
	return NULL;
}

/* Start the parked thread; its stack pointer goes to DIR/park. */
static void start_park(void)
{
	sigset_t all, old;
	pthread_t t;
	size_t i;
	char *sp;

	park =
	    mmap(NULL, PARK_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (park == MAP_FAILED)
		wl_die("mmap park");
	for (i = 0; i < PARK_PAGES; i++)
		wl_fill_page(park + i * PG, PARK_SEED, i);
	sp = park + PARK_PAGES / 2 * PG;
	/* The thread takes no signal: SIGUSR1/2 stay for the main thread's sigwait. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&t, NULL, park_thread, sp))
		wl_die("pthread_create");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	wl_answer(dir, false, "park", "%#lx\n", (unsigned long)sp);
}
#else
static void start_park(void)
{
	wl_die("park: x86-64 only");
}
#endif

static char *map_file(void)
{
	char path[4096], *p, page[PG];
	size_t i;
	int fd;

	snprintf(path, sizeof(path), "%s/wl.data", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		wl_die("open wl.data");
	for (i = 0; i < npages; i++) {
		wl_fill_page(page, 7, i);
		if (write(fd, page, PG) != (ssize_t)PG)
			wl_die("write wl.data");
	}
	if (fsync(fd))
		wl_die("fsync wl.data");
	p = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd); /* the mapping is enough: no fd for CRIU to dump */
	if (p == MAP_FAILED)
		wl_die("mmap wl.data");
	for (i = 0; i < npages; i++)
		(void)*(volatile char *)(p + i * PG); /* file pages in the page tables */
	return p;
}

static void setup(void)
{
	size_t len = npages * PG;
	char *p;

	reg[R_ANON] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Huge page aligned, so that the kernel can back it with THP. */
	p = mmap(NULL, len + HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		reg[R_THP] = (char *)(((uintptr_t)p + HPAGE - 1) & ~(HPAGE - 1));
		madvise(reg[R_THP], len, MADV_HUGEPAGE);
	}
	reg[R_SPARSE] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg[R_SHARED] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (reg[R_ANON] == MAP_FAILED || p == MAP_FAILED || reg[R_SPARSE] == MAP_FAILED ||
	    reg[R_SHARED] == MAP_FAILED)
		wl_die("mmap");
	reg[R_FILE] = map_file();
	apply(0);
}

int main(int argc, char **argv)
{
	sigset_t set;
	pid_t child;

	if (argc < 2) {
		fprintf(stderr, "usage: criu_wl DIR [PAGES [park]]\n");
		return 2;
	}
	dir = argv[1];
	npages = argc > 2 ? strtoul(argv[2], NULL, 0) : 2048;
	if (!npages)
		return 2;

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
		wl_answer(dir, is_child, "ready", "%d\n", wl_host_pid());
	} else {
		if (argc > 3 && !strcmp(argv[3], "park"))
			start_park();
		wl_answer(dir, is_child, "ready", "%d %ld\n", wl_host_pid(),
			  wl_wait_child(dir, "ready", -1));
	}

	return wl_serve(dir, &set, child, &step, apply, verify);
}
