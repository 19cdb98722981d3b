// SPDX-License-Identifier: GPL-2.0
/*
 * bench_wl: the workload of scripts/bench-criu. One anonymous region that
 * is written in full, then rewritten page by page at random at a set rate;
 * it checks its own memory, so that a dump that loses pages cannot pass.
 * Driven by signals and answering through files in DIR, like criu_wl: no
 * descriptor to the benchmark stays open across a dump.
 *
 *   bench_wl [-H] [-S] [-c] [-l] [-s SEED] DIR PAGES RATE BATCH
 *
 * Maps PAGES pages (4 KiB pages, MADV_NOHUGEPAGE; -H: MADV_HUGEPAGE; -S:
 * anonymous shared memory, MAP_SHARED, instead of private), fills
 * every page, writes DIR/ready ("HOSTPID") and waits. A writer thread then
 * rewrites random pages, RATE a second (0: flat out), each write with a
 * pattern of its own sequence number:
 *   SIGUSR1  gated (default): write BATCH more pages, then answer DIR/step
 *            ("K N": K batches granted, N writes in all). With -c the writer
 *            never stops (continuous) and SIGUSR1 just answers the count.
 *   SIGUSR2  stop the writer, check every page against what writes 1..N
 *            put there (N from memory, which must not be behind what
 *            DIR/step last said), answer DIR/verify ("ok N PAGES" or
 *            "bad ...") and exit 0 or 1.
 * Write n (from 0) goes to page pick(n) and fills it with the words of
 * seed n + 1; seed 0 is the initial fill. What a page holds is recomputed
 * from N alone.
 * With -l (gated mode) each answer to SIGUSR1 is preceded by DIR/lat: how
 * long the writes of that batch took that went to a page not in memory
 * (mincore() just before), "COUNT P50 P90 P99 MAX" in ns: after a lazy
 * restore, the time a page fault took to be served, as the task sees it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include "workload.h"

#define PG 4096UL

static const char *dir;
static char *mem;
static uint64_t npages, seed = 1;
static double rate;
static uint64_t batch;
static bool continuous;
static uint64_t *lat; /* -l: ns of each write of the current batch */
static uint64_t nlat;

/* In the region's neighbourhood of memory, dumped with everything else. */
static _Atomic uint64_t nwritten; /* writes completed */
static uint64_t budget;		  /* writes still granted (gated mode) */
static uint32_t grants;
static bool stopping;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t pick(uint64_t n)
{
	return mix(seed * 0x9e3779b97f4a7c15ULL + n) % npages;
}

static uint64_t word(uint64_t s, uint64_t page, uint64_t j)
{
	uint64_t x = (s + 1) * 0x9e3779b97f4a7c15ULL ^ (page * 0xbf58476d1ce4e5b9ULL) ^
		     (j * 0x94d049bb133111ebULL) ^ seed;

	x ^= x >> 31;
	return x | 1; /* never zero: a lost page never looks written */
}

static void fill(uint64_t s, uint64_t page)
{
	uint64_t *w = (uint64_t *)(mem + page * PG);
	size_t j;

	for (j = 0; j < PG / 8; j++)
		w[j] = word(s, page, j);
}

static bool check(uint64_t s, uint64_t page)
{
	const uint64_t *w = (const uint64_t *)(mem + page * PG);
	size_t j;

	for (j = 0; j < PG / 8; j++)
		if (w[j] != word(s, page, j))
			return false;
	return true;
}

/* N of the last DIR/step answer (0: none). */
static uint64_t answered(void)
{
	unsigned long long n = 0;
	char buf[64];
	unsigned k;

	wl_read_answer(dir, false, "step", buf, sizeof(buf));
	if (sscanf(buf, "%u %llu", &k, &n) != 2)
		return 0;
	return n;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Writes in 10 ms slices of RATE/100 pages; never catches up after a stall. */
static void *writer(void *arg)
{
	const uint64_t slice = 10000000ULL;
	uint64_t next = now_ns();
	double quota = 0;

	(void)arg;
	for (;;) {
		uint64_t todo, i;

		pthread_mutex_lock(&lock);
		while (!stopping && !continuous && !budget) {
			pthread_cond_wait(&cond, &lock);
			next = now_ns();
			quota = 0;
		}
		if (stopping) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		pthread_mutex_unlock(&lock);

		if (rate > 0) {
			uint64_t t = now_ns();
			struct timespec ts;

			if (t > next + 1000000000ULL)
				next = t; /* frozen or starved: resume the rate from now */
			if (t < next) {
				ts.tv_sec = next / 1000000000ULL;
				ts.tv_nsec = next % 1000000000ULL;
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
				       EINTR)
					;
			}
			next += slice;
			quota += rate * slice / 1e9;
			todo = (uint64_t)quota;
			quota -= todo;
		} else {
			todo = 256;
		}
		if (!continuous) {
			pthread_mutex_lock(&lock);
			if (todo > budget)
				todo = budget;
			pthread_mutex_unlock(&lock);
		}
		for (i = 0; i < todo; i++) {
			uint64_t n = atomic_load(&nwritten), page = pick(n), t0 = 0;
			unsigned char in = 1;

			if (lat && !mincore(mem + page * PG, PG, &in) && !(in & 1))
				t0 = now_ns();
			fill(n + 1, page);
			atomic_store(&nwritten, n + 1);
			if (t0 && nlat < batch)
				lat[nlat++] = now_ns() - t0;
		}
		if (!continuous && todo) {
			pthread_mutex_lock(&lock);
			budget -= todo;
			if (!budget)
				pthread_cond_broadcast(&cond);
			pthread_mutex_unlock(&lock);
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* DIR/lat for the batch just written (the writer waits for the next grant). */
static void answer_latency(void)
{
	uint64_t n = nlat;

	qsort(lat, n, sizeof(*lat), cmp_u64);
	wl_answer(dir, false, "lat", "%llu %llu %llu %llu %llu\n", (unsigned long long)n,
		  (unsigned long long)(n ? lat[n / 2] : 0),
		  (unsigned long long)(n ? lat[n * 9 / 10] : 0),
		  (unsigned long long)(n ? lat[n * 99 / 100] : 0),
		  (unsigned long long)(n ? lat[n - 1] : 0));
	nlat = 0;
}

static int verify(pthread_t th)
{
	uint64_t n, i, want = answered(), *last;

	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(th, NULL);

	/* The count lives in dumped memory too: a stale copy would make stale pages look right. */
	n = atomic_load(&nwritten);
	if (n < want || (!continuous && n != want)) {
		wl_answer(dir, false, "verify", "bad count %llu, answered %llu\n",
			  (unsigned long long)n, (unsigned long long)want);
		return 1;
	}
	last = calloc(npages, sizeof(*last));
	if (!last) {
		wl_answer(dir, false, "verify", "bad calloc\n");
		return 1;
	}
	for (i = 0; i < n; i++)
		last[pick(i)] = i + 1;
	for (i = 0; i < npages; i++) {
		if (!check(last[i], i)) {
			wl_answer(dir, false, "verify", "bad page %llu seed %llu of %llu writes\n",
				  (unsigned long long)i, (unsigned long long)last[i],
				  (unsigned long long)n);
			return 1;
		}
	}
	wl_answer(dir, false, "verify", "ok %llu %llu\n", (unsigned long long)n,
		  (unsigned long long)npages);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_wl [-H] [-S] [-c] [-l] [-s SEED] DIR PAGES RATE BATCH\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int opt, sig, advice = MADV_NOHUGEPAGE, share = MAP_PRIVATE;
	pthread_t th;
	sigset_t set;
	uint64_t i;

	bool measure = false;

	while ((opt = getopt(argc, argv, "HScls:")) != -1) {
		switch (opt) {
		case 'l':
			measure = true;
			break;
		case 'H':
			advice = MADV_HUGEPAGE;
			break;
		case 'S':
			share = MAP_SHARED;
			break;
		case 'c':
			continuous = true;
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 4)
		usage();
	dir = argv[optind];
	npages = strtoull(argv[optind + 1], NULL, 0);
	rate = strtod(argv[optind + 2], NULL);
	batch = strtoull(argv[optind + 3], NULL, 0);
	if (!npages || rate < 0 || (measure && continuous))
		usage();
	if (measure) {
		lat = calloc(batch ? batch : 1, sizeof(*lat));
		if (!lat)
			wl_die("calloc");
	}

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL); /* the writer inherits the mask */

	mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, share | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED)
		wl_die("mmap");
	madvise(mem, npages * PG, advice);
	for (i = 0; i < npages; i++)
		fill(0, i);
	if (pthread_create(&th, NULL, writer, NULL))
		wl_die("pthread_create");
	wl_answer(dir, false, "ready", "%d\n", wl_host_pid());

	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		if (sig == SIGUSR1) {
			pthread_mutex_lock(&lock);
			grants++;
			if (!continuous) {
				budget += batch;
				pthread_cond_broadcast(&cond);
				while (budget)
					pthread_cond_wait(&cond, &lock);
				if (lat)
					answer_latency();
			}
			pthread_mutex_unlock(&lock);
			wl_answer(dir, false, "step", "%u %llu\n", grants,
				  (unsigned long long)atomic_load(&nwritten));
		} else if (sig == SIGUSR2) {
			return verify(th);
		}
	}
}
