// SPDX-License-Identifier: GPL-2.0
/*
 * The tracker benchmark's target (bench-track.h): one anonymous region,
 * 4 KiB pages or THP, filled, then written on command over a pipe.
 */
#define LOG_PREFIX "bench-track: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "base/log.h"
#include "bench-track.h"

/*
 * A bijection of [0, mask], mask = 2^bits - 1: multiplying by an odd number
 * and adding modulo 2^bits, and x ^= x >> s (s >= 1), can each be undone.
 */
static uint64_t shuffle_step(uint64_t x, uint64_t mask, unsigned int shift, uint64_t seed)
{
	x = (x * 0x9e3779b97f4a7c15ULL + seed) & mask;
	x ^= x >> shift;
	x = (x * (seed << 1 | 1)) & mask;
	x ^= x >> shift;
	return x;
}

/*
 * The @i-th page of a random permutation of @n pages, without memory of our
 * own to write (that would add to what the scan finds): walk the cycle of a
 * bijection of the next power of two until it lands below @n.
 */
static uint64_t shuffled(uint64_t i, uint64_t n, uint64_t seed)
{
	unsigned int bits = 64 - __builtin_clzll(n - 1);
	uint64_t mask = bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
	unsigned int shift = bits / 2 ? bits / 2 : 1;

	do
		i = shuffle_step(i, mask, shift, seed);
	while (i >= n);
	return i;
}

static bool child_io(int fd, void *buf, size_t len, bool rd)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = rd ? read(fd, (char *)buf + done, len - done)
			       : write(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += n;
	}
	return true;
}

static void __attribute__((noreturn))
child_main(int cmd_fd, int ans_fd, uint64_t size, bool thp, pid_t parent)
{
	uint64_t npages = size / PAGE_SZ, hdr[2], ans, i, t0;
	volatile uint8_t *p;
	struct child_cmd c;
	uintptr_t raw, a;

	/* Never outlive the benchmark, whatever way it ends. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(1);
	raw = (uintptr_t)mmap(NULL, size + HPAGE_SZ, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((void *)raw == MAP_FAILED) {
		pr_perror("target: mmap of %" PRIu64 " bytes", size);
		_exit(1);
	}
	a = (raw + HPAGE_SZ - 1) & ~(HPAGE_SZ - 1);
	if (a > raw)
		munmap((void *)raw, a - raw);
	if (raw + HPAGE_SZ > a)
		munmap((void *)(a + size), raw + HPAGE_SZ - a);
	if (madvise((void *)a, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
		pr_perror("target: madvise(%s)", thp ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE");
		_exit(1);
	}
	memset((void *)a, 0x5a, size);
	p = (volatile uint8_t *)a;

	hdr[0] = a;
	hdr[1] = size;
	if (!child_io(ans_fd, hdr, sizeof(hdr), false))
		_exit(1);
	while (child_io(cmd_fd, &c, sizeof(c), true)) {
		switch (c.op) {
		case OP_WRITE_RANDOM:
			ans = npages * c.arg / 10000;
			for (i = 0; i < ans; i++)
				p[shuffled(i, npages, c.seed) * PAGE_SZ + (c.seed & 0xff8)]++;
			break;
		case OP_WRITE_SEQ:
			ans = c.arg < npages ? c.arg : npages;
			t0 = now_ns();
			for (i = 0; i < ans; i++)
				p[i * PAGE_SZ]++;
			ans = now_ns() - t0;
			break;
		default:
			_exit(0);
		}
		if (!child_io(ans_fd, &ans, sizeof(ans), false))
			_exit(1);
	}
	_exit(0);
}

static int wait_readable(int fd, int timeout_s)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int n;

	do
		n = poll(&pfd, 1, timeout_s * 1000);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

void child_kill(struct child *c)
{
	struct child_cmd cmd = {.op = OP_EXIT};

	if (c->pid <= 0)
		return;
	/* Ask first, then make sure: it must be gone before the next one starts. */
	if (c->cmd_fd >= 0 && write(c->cmd_fd, &cmd, sizeof(cmd)) < 0)
		cmd.op = 0;
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	g_child_pid = -1;
	c->pid = -1;
	if (c->cmd_fd >= 0)
		close(c->cmd_fd);
	if (c->ans_fd >= 0)
		close(c->ans_fd);
	c->cmd_fd = c->ans_fd = -1;
}

int child_start(struct child *c, uint64_t size, bool thp)
{
	int to[2], from[2], err;
	pid_t parent = getpid();
	uint64_t hdr[2];

	c->pid = -1;
	c->cmd_fd = c->ans_fd = -1;
	if (pipe2(to, O_CLOEXEC))
		return -errno;
	if (pipe2(from, O_CLOEXEC)) {
		err = -errno;
		close(to[0]);
		close(to[1]);
		return err;
	}
	c->pid = fork();
	if (c->pid < 0) {
		err = -errno;
		pr_perror("fork");
		close(to[0]);
		close(to[1]);
		close(from[0]);
		close(from[1]);
		return err;
	}
	if (!c->pid) {
		close(to[1]);
		close(from[0]);
		child_main(to[0], from[1], size, thp, parent);
	}
	g_child_pid = c->pid;
	close(to[0]);
	close(from[1]);
	c->cmd_fd = to[1];
	c->ans_fd = from[0];

	err = wait_readable(c->ans_fd, CHILD_WAIT_S);
	if (!err && !child_io(c->ans_fd, hdr, sizeof(hdr), true))
		err = -EPIPE;
	if (err) {
		pr_err("the target did not start: %s\n", uffdwp_strerror(-err));
		child_kill(c);
		return err;
	}
	c->addr = hdr[0];
	c->size = hdr[1];
	return 0;
}

/* Run one command in the target; *@ans gets its answer. */
int child_cmd(struct child *c, enum child_op op, uint32_t arg, uint64_t seed, uint64_t *ans)
{
	struct child_cmd cmd = {.op = op, .arg = arg, .seed = seed};
	int err = 0;

	if (!child_io(c->cmd_fd, &cmd, sizeof(cmd), false))
		err = -EPIPE;
	if (!err)
		err = wait_readable(c->ans_fd, CHILD_WAIT_S);
	if (!err && !child_io(c->ans_fd, ans, sizeof(*ans), true))
		err = -EPIPE;
	if (err)
		pr_err("target %d did not answer: %s\n", c->pid, uffdwp_strerror(-err));
	return err;
}
