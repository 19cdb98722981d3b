// SPDX-License-Identifier: GPL-2.0
/*
 * rt_wl: the workload of the container runtime tests, a static binary that
 * runs as a container's init (no library in the container's root) and
 * checks its own memory.
 *
 *   rt_wl MIB HOT [RATE]
 *
 * Maps MIB MiB of anonymous private memory and writes every page, then
 * prints "ready ADDR PAGES HOT" on stdout (ADDR in hex) and rewrites the
 * first HOT pages of it, one after the other, over and over, RATE pages a
 * second (default 5000); the other pages never change after the start, so
 * a delta taken after the first must hold no page of the mapping past HOT.
 *   SIGUSR2  check every page against the record of what was last written
 *            there; print "ok WRITES" or "bad PAGE SEED" and carry on
 *   SIGTERM  exit 0
 * Page contents come from wl_fill_page() of a per-page seed kept in a
 * second mapping; a page is only checked between two page writes, never
 * halfway through one.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "workload.h"

#define PG	 4096UL
#define BATCH_NS 10000000L /* one batch of writes every 10 ms */

static volatile sig_atomic_t check_asked, stop_asked;

static void on_signal(int sig)
{
	if (sig == SIGUSR2)
		check_asked = 1;
	else
		stop_asked = 1;
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		wl_die("mmap");
	return p;
}

static void check(const char *mem, const uint32_t *seed, size_t pages, uint64_t writes)
{
	size_t i;

	for (i = 0; i < pages; i++) {
		if (!wl_check_page(mem + i * PG, seed[i], i)) {
			wl_say("bad %zu %u", i, seed[i]);
			return;
		}
	}
	wl_say("ok %llu", (unsigned long long)writes);
}

int main(int argc, char **argv)
{
	size_t pages, hot, per_batch, cursor = 0, i;
	struct timespec gap = {0, BATCH_NS};
	struct sigaction sa;
	uint64_t writes = 0;
	uint32_t *seed;
	long rate;
	char *mem;

	if (argc < 3) {
		fprintf(stderr, "usage: rt_wl MIB HOT [RATE]\n");
		return 2;
	}
	pages = strtoul(argv[1], NULL, 0) * (1UL << 20) / PG;
	hot = strtoul(argv[2], NULL, 0);
	rate = argc > 3 ? strtol(argv[3], NULL, 0) : 5000;
	if (!pages || hot > pages || rate <= 0)
		wl_die("arguments");
	per_batch = rate / (1000000000L / BATCH_NS);
	if (!per_batch)
		per_batch = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		wl_die("sigaction");

	mem = map_anon(pages * PG);
	seed = map_anon(pages * sizeof(*seed));
	for (i = 0; i < pages; i++) {
		seed[i] = 1;
		wl_fill_page(mem + i * PG, seed[i], i);
	}
	wl_say("ready %lx %zu %zu", (unsigned long)mem, pages, hot);

	while (!stop_asked) {
		for (i = 0; hot && i < per_batch; i++) {
			size_t p = cursor++ % hot;

			/* Never 0: seed 0 is the all-zero page. */
			seed[p] = seed[p] + 1 ?: 1;
			wl_fill_page(mem + p * PG, seed[p], p);
			writes++;
		}
		if (check_asked) {
			check_asked = 0;
			check(mem, seed, pages, writes);
		}
		/* EINTR: a signal to act on, the next round sees it. */
		if (nanosleep(&gap, NULL) && errno != EINTR)
			wl_die("nanosleep");
	}
	return 0;
}
