// SPDX-License-Identifier: GPL-2.0
/*
 * memwl: a memory workload the tests drive line by line on stdin.
 * Each command answers one line on stdout, "ok ..." or "error ...", once
 * its effect is complete, so the test knows exactly what memory holds.
 *
 *   map ID KIND PAGES      anon|thp|shmem|memfd|memfd-closed|sysv|file|hugetlb|hugetlb-file
 *   write ID PAGE N SEED   fill pages with the pattern of SEED
 *   touch ID PAGE N        read pages (fault them in, no write)
 *   pwrite ID PAGE N SEED  write through the memfd's file descriptor
 *   dontneed ID PAGE N     madvise(MADV_DONTNEED)
 *   remove ID PAGE N       madvise(MADV_REMOVE): a hole punched in a shared object
 *   pageout ID PAGE N      madvise(MADV_PAGEOUT): to swap, if there is any
 *   mprotect ID r|rw|none
 *   collapse ID            madvise(MADV_COLLAPSE); answers "ok RET ERRNO"
 *   remap ID PAGES         mremap(MAYMOVE) to a new size; answers the address
 *   move ID                mremap to another place; answers the address
 *   shrinkgrow ID N        mremap shrink by N pages, then grow back in place
 *   replace ID             munmap, then mmap anon at the same address
 *   unmap ID
 *   fork                   child that just waits; answers its pid
 *   forkwrite ID PAGE N SEED  child writes its copy, then waits
 *   forkexit ID PAGE N SEED [DEPTH]  a child (DEPTH 2: a grandchild forked by
 *                          a child) writes, then exits; answers once reaped
 *   memwrite ID PAGE N SEED  write through /proc/self/mem
 *   dupwrite ID PAGE N SEED  mremap(old_size 0) a second mapping of shared
 *                          ID, write through it, unmap it
 *   threads ID N SEED      N threads each write their share of ID, joined
 *   spin ID N [RATE]       N threads write random pages until "unspin",
 *                          each RATE pages a second (default: flat out)
 *   count ID N             N threads, each owning an equal slice of ID, store
 *                          1, 2, 3, ... into the first word of the slice's
 *                          pages in turn, until "unspin": at any instant a
 *                          slice of P pages holds P consecutive values
 *   unspin
 *   exec                   execve itself: answers "ready" again
 *   quit
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#include "workload.h"

#define PG    4096UL
#define HPAGE (2UL << 20)
#define MAXID 64

struct region {
	char *addr;
	size_t len;
	int fd;
	char kind[16];
};

static struct region reg[MAXID];
static char self_path[4096];

static void fill_page(char *p, uint32_t seed, uint64_t page)
{
	uint64_t *w = (uint64_t *)p;
	size_t i;

	for (i = 0; i < PG / 8; i++)
		w[i] = ((uint64_t)wl_pattern(seed, page, i) << 56) | (page << 16) |
		       (seed & 0xffff) | ((uint64_t)i << 40);
}

static char *map_aligned(size_t len, size_t align, int prot, int flags, int fd)
{
	char *p = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + align - 1) & ~(align - 1));
	if (mmap(a, len, prot, flags | MAP_FIXED, fd, 0) == MAP_FAILED)
		return NULL;
	if (a > p)
		munmap(p, a - p);
	munmap(a + len, p + len + align - (a + len));
	return a;
}

static int do_map(int id, const char *kind, size_t pages)
{
	struct region *r = &reg[id];
	size_t len = pages * PG;
	int rw = PROT_READ | PROT_WRITE;

	r->fd = -1;
	snprintf(r->kind, sizeof(r->kind), "%s", kind);
	if (!strcmp(kind, "anon")) {
		r->addr = mmap(NULL, len, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else if (!strcmp(kind, "thp")) {
		r->addr = map_aligned(len, HPAGE, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1);
		if (r->addr && madvise(r->addr, len, MADV_HUGEPAGE))
			return -1;
	} else if (!strcmp(kind, "shmem")) {
		r->addr = mmap(NULL, len, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	} else if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd-closed")) {
		r->fd = memfd_create("memwl", MFD_CLOEXEC);
		if (r->fd < 0 || ftruncate(r->fd, len))
			return -1;
		r->addr = mmap(NULL, len, rw, MAP_SHARED, r->fd, 0);
		if (!strcmp(kind, "memfd-closed")) {
			close(r->fd);
			r->fd = -1;
		}
	} else if (!strcmp(kind, "sysv")) {
		int shmid = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);

		if (shmid < 0)
			return -1;
		r->addr = shmat(shmid, NULL, 0);
		/* Gone with the last detach: nothing left behind by a failed test. */
		shmctl(shmid, IPC_RMID, NULL);
		if (r->addr == (void *)-1)
			r->addr = NULL;
	} else if (!strcmp(kind, "file")) {
		char path[] = "/tmp/memwl-XXXXXX";
		char page[PG];
		size_t i;
		int fd = mkstemp(path);

		if (fd < 0)
			return -1;
		unlink(path);
		for (i = 0; i < pages; i++) {
			fill_page(page, 0xf11e, i);
			if (write(fd, page, PG) != (ssize_t)PG)
				return -1;
		}
		r->addr = mmap(NULL, len, rw, MAP_PRIVATE, fd, 0);
		close(fd);
	} else if (!strcmp(kind, "hugetlb")) {
		len = (len + HPAGE - 1) & ~(HPAGE - 1);
		r->addr = mmap(NULL, len, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else if (!strcmp(kind, "hugetlb-file")) {
		/* A private mapping of a hugetlb memfd the test filled, untouched. */
		char *fill;

		len = (len + HPAGE - 1) & ~(HPAGE - 1);
		r->fd = memfd_create("memwl-huge", MFD_CLOEXEC | MFD_HUGETLB);
		if (r->fd < 0 || ftruncate(r->fd, len))
			return -1;
		fill = mmap(NULL, len, rw, MAP_SHARED, r->fd, 0);
		if (fill == MAP_FAILED)
			return -1;
		memset(fill, 0x5a, len);
		munmap(fill, len);
		r->addr = mmap(NULL, len, rw, MAP_PRIVATE, r->fd, 0);
	} else {
		errno = EINVAL;
		return -1;
	}
	if (!r->addr || r->addr == MAP_FAILED) {
		r->addr = NULL;
		return -1;
	}
	r->len = len;
	return 0;
}

static atomic_int spinning;
static pthread_t spinners[16];
static int nspin;

struct spin_arg {
	int id;
	unsigned int seed;
	long rate;
};

static void *spin_fn(void *p)
{
	struct spin_arg *a = p;
	struct region *r = &reg[a->id];
	size_t pages = r->len / PG;
	unsigned int s = a->seed;

	while (atomic_load(&spinning)) {
		size_t pg;

		s = s * 1103515245 + 12345;
		pg = (s >> 8) % pages;
		((volatile uint64_t *)(r->addr + pg * PG))[(s >> 4) % (PG / 8)] = s;
		if (a->rate)
			usleep(1000000 / a->rate);
	}
	free(a);
	return NULL;
}

struct count_arg {
	char *base;
	size_t pages;
};

static void *count_fn(void *p)
{
	struct count_arg *a = p;
	uint64_t c = 0;

	while (atomic_load_explicit(&spinning, memory_order_relaxed)) {
		c++;
		*(volatile uint64_t *)(a->base + (c % a->pages) * PG) = c;
	}
	free(a);
	return NULL;
}

struct thr_arg {
	int id;
	size_t first;
	size_t n;
	uint32_t seed;
};

static void *thr_fn(void *p)
{
	struct thr_arg *a = p;
	size_t i;

	for (i = a->first; i < a->first + a->n; i++)
		fill_page(reg[a->id].addr + i * PG, a->seed, i);
	return NULL;
}

static bool valid(int id)
{
	return id >= 0 && id < MAXID && reg[id].addr;
}

static void command(char *line)
{
	char op[32] = "", arg[32] = "";
	long a = 0, b = 0, c = 0, d = 0;
	int id;

	if (sscanf(line, "%31s", op) != 1)
		return;
	if (!strcmp(op, "map")) {
		if (sscanf(line, "%*s %ld %31s %ld", &a, arg, &b) != 3 || a < 0 || a >= MAXID)
			return wl_say("error usage");
		if (do_map(a, arg, b))
			return wl_say("error map %s: %s", arg, strerror(errno));
		return wl_say("ok %lx %zu", (unsigned long)reg[a].addr, reg[a].len);
	}
	if (!strcmp(op, "quit")) {
		wl_say("ok");
		exit(0);
	}
	if (!strcmp(op, "fork")) {
		pid_t p = fork();

		if (!p) {
			for (;;)
				pause();
		}
		return wl_say("ok %d", p);
	}
	if (!strcmp(op, "unspin")) {
		int i;

		atomic_store(&spinning, 0);
		for (i = 0; i < nspin; i++)
			pthread_join(spinners[i], NULL);
		nspin = 0;
		return wl_say("ok");
	}
	if (!strcmp(op, "exec")) {
		char *argv[] = {self_path, NULL};

		fflush(stdout);
		execv(self_path, argv);
		return wl_say("error exec: %s", strerror(errno));
	}

	if (sscanf(line, "%*s %d %ld %ld %ld %ld", &id, &a, &b, &c, &d) < 1 || !valid(id))
		return wl_say("error bad id");
	if (!strcmp(op, "mprotect"))
		goto mprotect;
	if (!strcmp(op, "write")) {
		long i;

		if ((size_t)(a + b) * PG > reg[id].len)
			return wl_say("error range");
		for (i = a; i < a + b; i++)
			fill_page(reg[id].addr + i * PG, c, i);
		return wl_say("ok");
	}
	if (!strcmp(op, "touch")) {
		volatile char sink = 0;
		long i;

		if ((size_t)(a + b) * PG > reg[id].len)
			return wl_say("error range");
		for (i = a; i < a + b; i++)
			sink += ((volatile char *)reg[id].addr)[i * PG];
		(void)sink;
		return wl_say("ok");
	}
	if (!strcmp(op, "pwrite")) {
		char page[PG];
		long i;

		if (reg[id].fd < 0)
			return wl_say("error no fd");
		for (i = a; i < a + b; i++) {
			fill_page(page, c, i);
			if (pwrite(reg[id].fd, page, PG, i * PG) != (ssize_t)PG)
				return wl_say("error pwrite: %s", strerror(errno));
		}
		return wl_say("ok");
	}
	if (!strcmp(op, "dontneed")) {
		if (madvise(reg[id].addr + a * PG, b * PG, MADV_DONTNEED))
			return wl_say("error madvise: %s", strerror(errno));
		return wl_say("ok");
	}
	if (!strcmp(op, "remove")) {
		if (madvise(reg[id].addr + a * PG, b * PG, MADV_REMOVE))
			return wl_say("error madvise: %s", strerror(errno));
		return wl_say("ok");
	}
	if (!strcmp(op, "pageout")) {
		if (madvise(reg[id].addr + a * PG, b * PG, 21 /* MADV_PAGEOUT */))
			return wl_say("error madvise: %s", strerror(errno));
		return wl_say("ok");
	}
	if (!strcmp(op, "collapse")) {
		int rc = madvise(reg[id].addr, reg[id].len, 25 /* MADV_COLLAPSE */);

		return wl_say("ok %d %d", rc, rc ? errno : 0);
	}
	if (!strcmp(op, "remap") || !strcmp(op, "move")) {
		size_t nlen = !strcmp(op, "move") ? reg[id].len : (size_t)a * PG;
		char *n;

		if (!strcmp(op, "move")) {
			/* Reserve a spot elsewhere, then move there. */
			char *dst = mmap(NULL, nlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (dst == MAP_FAILED)
				return wl_say("error mmap: %s", strerror(errno));
			n = mremap(reg[id].addr, reg[id].len, nlen, MREMAP_MAYMOVE | MREMAP_FIXED,
				   dst);
		} else {
			n = mremap(reg[id].addr, reg[id].len, nlen, MREMAP_MAYMOVE);
		}
		if (n == MAP_FAILED)
			return wl_say("error mremap: %s", strerror(errno));
		reg[id].addr = n;
		reg[id].len = nlen;
		return wl_say("ok %lx %zu", (unsigned long)n, nlen);
	}
	if (!strcmp(op, "shrinkgrow")) {
		size_t small = reg[id].len - a * PG;

		if (mremap(reg[id].addr, reg[id].len, small, 0) == MAP_FAILED ||
		    mremap(reg[id].addr, small, reg[id].len, 0) == MAP_FAILED)
			return wl_say("error mremap: %s", strerror(errno));
		return wl_say("ok");
	}
	if (!strcmp(op, "replace")) {
		if (munmap(reg[id].addr, reg[id].len) ||
		    mmap(reg[id].addr, reg[id].len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
			return wl_say("error replace: %s", strerror(errno));
		return wl_say("ok");
	}
	if (!strcmp(op, "unmap")) {
		munmap(reg[id].addr, reg[id].len);
		reg[id].addr = NULL;
		return wl_say("ok");
	}
	if (!strcmp(op, "forkwrite")) {
		int p[2];
		pid_t pid;
		char x;

		if (pipe(p))
			return wl_say("error pipe");
		pid = fork();
		if (!pid) {
			long i;

			for (i = a; i < a + b; i++)
				fill_page(reg[id].addr + i * PG, c, i);
			if (write(p[1], "x", 1) != 1)
				_exit(1);
			for (;;)
				pause();
		}
		close(p[1]);
		if (read(p[0], &x, 1) != 1)
			return wl_say("error child");
		close(p[0]);
		return wl_say("ok %d", pid);
	}
	if (!strcmp(op, "forkexit")) {
		int depth = d > 1 ? 2 : 1, status;
		pid_t pid;

		if ((size_t)(a + b) * PG > reg[id].len)
			return wl_say("error range");
		pid = fork();
		if (!pid) {
			long i;

			if (depth == 2) {
				pid = fork();
				if (pid > 0)
					_exit(waitpid(pid, &status, 0) == pid &&
						      WIFEXITED(status) && !WEXITSTATUS(status)
						  ? 0
						  : 1);
				if (pid < 0)
					_exit(1);
			}
			for (i = a; i < a + b; i++)
				fill_page(reg[id].addr + i * PG, c, i);
			_exit(0);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			return wl_say("error child");
		return wl_say("ok");
	}
	if (!strcmp(op, "memwrite")) {
		char page[PG];
		long i;
		int fd;

		if ((size_t)(a + b) * PG > reg[id].len)
			return wl_say("error range");
		fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return wl_say("error open /proc/self/mem: %s", strerror(errno));
		for (i = a; i < a + b; i++) {
			fill_page(page, c, i);
			if (pwrite(fd, page, PG, (off_t)(uintptr_t)(reg[id].addr + i * PG)) !=
			    (ssize_t)PG) {
				close(fd);
				return wl_say("error pwrite /proc/self/mem: %s", strerror(errno));
			}
		}
		close(fd);
		return wl_say("ok");
	}
	if (!strcmp(op, "dupwrite")) {
		char *dup;
		long i;

		if ((size_t)(a + b) * PG > reg[id].len)
			return wl_say("error range");
		dup = mremap(reg[id].addr, 0, reg[id].len, MREMAP_MAYMOVE);
		if (dup == MAP_FAILED)
			return wl_say("error mremap: %s", strerror(errno));
		for (i = a; i < a + b; i++)
			fill_page(dup + i * PG, c, i);
		munmap(dup, reg[id].len);
		return wl_say("ok");
	}
	if (!strcmp(op, "threads")) {
		pthread_t t[16];
		struct thr_arg ta[16];
		size_t pages = reg[id].len / PG;
		long i;

		if (a < 1 || a > 16)
			return wl_say("error threads");
		for (i = 0; i < a; i++) {
			ta[i].id = id;
			ta[i].first = pages * i / a;
			ta[i].n = pages * (i + 1) / a - ta[i].first;
			ta[i].seed = b;
			pthread_create(&t[i], NULL, thr_fn, &ta[i]);
		}
		for (i = 0; i < a; i++)
			pthread_join(t[i], NULL);
		return wl_say("ok");
	}
	if (!strcmp(op, "spin")) {
		long i;

		atomic_store(&spinning, 1);
		for (i = 0; i < a && nspin < 16; i++) {
			struct spin_arg *sa = malloc(sizeof(*sa));

			sa->id = id;
			sa->seed = 12345 + i;
			sa->rate = b;
			pthread_create(&spinners[nspin++], NULL, spin_fn, sa);
		}
		return wl_say("ok");
	}
	if (!strcmp(op, "count")) {
		size_t pages = reg[id].len / PG;
		long i;

		if (a < 1 || a > 16 || (size_t)a > pages)
			return wl_say("error threads");
		atomic_store(&spinning, 1);
		for (i = 0; i < a && nspin < 16; i++) {
			struct count_arg *ca = malloc(sizeof(*ca));
			size_t first = pages * i / a;

			ca->base = reg[id].addr + first * PG;
			ca->pages = pages * (i + 1) / a - first;
			pthread_create(&spinners[nspin++], NULL, count_fn, ca);
		}
		return wl_say("ok");
	}
	return wl_say("error unknown command %s", op);

mprotect:
	if (sscanf(line, "%*s %*d %31s", arg) != 1)
		return wl_say("error usage");
	if (mprotect(reg[id].addr, reg[id].len,
		     !strcmp(arg, "none") ? PROT_NONE
		     : !strcmp(arg, "r")  ? PROT_READ
					  : PROT_READ | PROT_WRITE))
		return wl_say("error mprotect: %s", strerror(errno));
	return wl_say("ok");
}

int main(int argc, char **argv)
{
	char line[256];
	ssize_t n;

	n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (n < 0)
		wl_die("readlink");
	self_path[n] = '\0';
	/* A child we fork must not outlive a test that forgot it. */
	signal(SIGPIPE, SIG_DFL);
	wl_say("ready %d", getpid());
	while (fgets(line, sizeof(line), stdin))
		command(line);
	return 0;
}
