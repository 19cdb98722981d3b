// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel feature probes: each one tries the real thing once, in this
 * process, and the answers are kept for the life of the process. A feature
 * is missing when the kernel refuses what it does not know (EINVAL, ENOTTY,
 * ENOSYS, EOPNOTSUPP) or what it does not let us do (EPERM: seccomp,
 * vm.unprivileged_userfaultfd). Any other failure is the probe's own.
 */
#define LOG_PREFIX "probe: "

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "uapi/uffdwp-uapi.h"
#include "track/probe.h"
#include "base/log.h"

#define PROBE_PAGES 4
#define HPAGE_SIZE  (2UL << 20)

/* /proc/self/pagemap: bit 57, the page (or its PTE marker) is uffd-wp protected. */
#define PM_UFFD_WP (1ULL << 57)

struct feature {
	const char *name;
	const char *kernel;
	bool required; /* by the tracker */
	/* 1 present, 0 missing (*why: the errno that said so), -errno probe failed */
	int (*probe)(int *why);
};

static int probe_userfaultfd(int *why);
static int probe_uffd_wp(int *why);
static int probe_wp_unpopulated(int *why);
static int probe_wp_async(int *why);
static int probe_pagemap_scan(int *why);
static int probe_pte_marker(int *why);
static int probe_wp_shmem(int *why);
static int probe_pidfd_getfd(int *why);
static int probe_thp(int *why);
static int probe_madv_collapse(int *why);

static const struct feature features[UFFDWP_FEAT__MAX] = {
    [UFFDWP_FEAT_USERFAULTFD] = {"userfaultfd", "4.3", true, probe_userfaultfd},
    [UFFDWP_FEAT_UFFD_WP] = {"UFFDIO_REGISTER_MODE_WP", "5.7", true, probe_uffd_wp},
    [UFFDWP_FEAT_WP_UNPOPULATED] = {"UFFD_FEATURE_WP_UNPOPULATED", "6.4", true,
				    probe_wp_unpopulated},
    [UFFDWP_FEAT_WP_ASYNC] = {"UFFD_FEATURE_WP_ASYNC", "6.7", true, probe_wp_async},
    [UFFDWP_FEAT_PAGEMAP_SCAN] = {"PAGEMAP_SCAN", "6.7", true, probe_pagemap_scan},
    [UFFDWP_FEAT_PTE_MARKER] = {"uffd-wp PTE markers", "5.19", false, probe_pte_marker},
    [UFFDWP_FEAT_WP_SHMEM] = {"UFFD_FEATURE_WP_HUGETLBFS_SHMEM", "5.19", false, probe_wp_shmem},
    [UFFDWP_FEAT_PIDFD_GETFD] = {"pidfd_getfd", "5.6", true, probe_pidfd_getfd},
    [UFFDWP_FEAT_THP] = {"transparent huge pages", "2.6.38", false, probe_thp},
    [UFFDWP_FEAT_MADV_COLLAPSE] = {"MADV_COLLAPSE", "6.1", false, probe_madv_collapse},
};

static struct {
	int has; /* what uffdwp_feature_has() returns */
	int why; /* the errno that made it missing, or 0 */
} results[UFFDWP_FEAT__MAX];

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static bool errno_means_missing(int err)
{
	return err == EINVAL || err == ENOTTY || err == ENOSYS || err == EPERM || err == EOPNOTSUPP;
}

/* A failed step: missing (1 -> 0) or an error of the probe (-errno). */
static int missing_or_error(int err, int *why)
{
	if (errno_means_missing(err)) {
		*why = err;
		return 0;
	}
	return -err;
}

/*
 * A fresh userfaultfd: UFFDIO_API may be called once per fd, so each probe
 * takes its own. UFFD_USER_MODE_ONLY (5.11) is what the tracker uses and is
 * allowed without privileges; older kernels reject the flag (EINVAL), and
 * where the syscall is refused /dev/userfaultfd (6.1) may still hand one out.
 */
static int uffd_open(int *why)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd, dev, err;

	fd = (int)syscall(__NR_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	if (fd >= 0)
		return fd;
	err = errno;
	if (err == EINVAL) {
		fd = (int)syscall(__NR_userfaultfd, flags);
		if (fd >= 0)
			return fd;
		err = errno;
	}

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags | UFFD_USER_MODE_ONLY);
		close(dev);
		if (fd >= 0)
			return fd;
	}

	/* The syscall's answer is the one that tells why. */
	if (errno_means_missing(err)) {
		*why = err;
		return -ENOENT;
	}
	return -err;
}

/*
 * Open a userfaultfd and ask for @features.
 * Returns the fd, -ENOENT when missing (*why set), or -errno.
 */
static int uffd_open_api(uint64_t want, int *why)
{
	struct uffdio_api api = {.api = UFFD_API, .features = want};
	int fd, err;

	fd = uffd_open(why);
	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		err = errno;
		close(fd);
		if (errno_means_missing(err)) {
			*why = err;
			return -ENOENT;
		}
		return -err;
	}
	return fd;
}

/* Turn what uffd_open_api() said into a probe result. */
static int uffd_api_result(int fd)
{
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	return fd == -ENOENT ? 0 : fd;
}

static int probe_userfaultfd(int *why)
{
	int fd = uffd_open(why);

	return uffd_api_result(fd);
}

static int probe_wp_unpopulated(int *why)
{
	return uffd_api_result(uffd_open_api(UFFD_FEATURE_WP_UNPOPULATED, why));
}

static int probe_wp_async(int *why)
{
	return uffd_api_result(uffd_open_api(UFFD_FEATURE_WP_ASYNC, why));
}

/*
 * Register @addr..+@len for write-protect. Returns 1 and the ioctls the
 * kernel offers for it, 0 missing, -errno.
 */
static int uffd_register_wp(int fd, void *addr, size_t len, uint64_t *ioctls, int *why)
{
	struct uffdio_register reg = {
	    .range = {.start = (uintptr_t)addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		return missing_or_error(errno, why);
	*ioctls = reg.ioctls;
	return 1;
}

static int probe_uffd_wp(int *why)
{
	size_t len = PROBE_PAGES * (size_t)getpagesize();
	uint64_t ioctls = 0;
	void *p;
	int fd, ret;

	fd = uffd_open_api(0, why);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto out_close;
	}
	ret = uffd_register_wp(fd, p, len, &ioctls, why);
	/* Registering alone is not enough: 5.7 also added the ioctl that protects. */
	if (ret == 1 && !(ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) {
		*why = EOPNOTSUPP;
		ret = 0;
	}
	munmap(p, len);
out_close:
	close(fd);
	return ret;
}

static int probe_pagemap_scan(int *why)
{
	size_t psz = (size_t)getpagesize(), len = PROBE_PAGES * psz;
	struct page_region vec[PROBE_PAGES];
	struct pm_scan_arg arg;
	char *p;
	int fd, ret;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	p[0] = 1;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out_unmap;
	}
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = (uintptr_t)p;
	arg.end = (uintptr_t)p + len;
	arg.vec = (uintptr_t)vec;
	arg.vec_len = PROBE_PAGES;
	arg.category_mask = PAGE_IS_PRESENT;
	arg.return_mask = PAGE_IS_PRESENT;
	/* Returns the number of regions filled: the one present page. */
	ret = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (ret < 0)
		ret = missing_or_error(errno, why);
	else if (ret != 1 || vec[0].start != (uintptr_t)p || !(vec[0].categories & PAGE_IS_PRESENT))
		ret = -EPROTO;
	else
		ret = 1;
	close(fd);
out_unmap:
	munmap(p, len);
	return ret;
}

/*
 * Register a memfd mapping (shmem) for write-protect. Returns 1 with the
 * uffd in *@fdp and the mapping in *@mapp, 0 missing, -errno.
 */
static int shmem_wp_setup(int *fdp, char **mapp, size_t len, int *why)
{
	uint64_t ioctls;
	int fd, memfd, ret;
	char *p;

	fd = uffd_open_api(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, why);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	memfd = memfd_create("uffdwp-probe", MFD_CLOEXEC);
	if (memfd < 0) {
		ret = -errno;
		goto err_close;
	}
	if (ftruncate(memfd, (off_t)len)) {
		ret = -errno;
		close(memfd);
		goto err_close;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	ret = p == MAP_FAILED ? -errno : 0;
	close(memfd);
	if (ret)
		goto err_close;
	ret = uffd_register_wp(fd, p, len, &ioctls, why);
	if (ret != 1) {
		munmap(p, len);
		goto err_close;
	}
	*fdp = fd;
	*mapp = p;
	return 1;

err_close:
	close(fd);
	return ret;
}

static int probe_wp_shmem(int *why)
{
	size_t len = PROBE_PAGES * (size_t)getpagesize();
	char *p;
	int fd, ret;

	ret = shmem_wp_setup(&fd, &p, len, why);
	if (ret != 1)
		return ret;
	munmap(p, len);
	close(fd);
	return 1;
}

/*
 * Protecting a shmem page that is not mapped leaves a PTE marker, which
 * /proc/self/pagemap shows as uffd-wp on a page that is not present. Without
 * markers (no CONFIG_PTE_MARKER_UFFD_WP) there is nothing to show.
 */
static int probe_pte_marker(int *why)
{
	size_t psz = (size_t)getpagesize(), len = PROBE_PAGES * psz;
	struct uffdio_writeprotect wp;
	uint64_t ent;
	char *p;
	int fd, pm, ret;

	ret = shmem_wp_setup(&fd, &p, len, why);
	if (ret != 1)
		return ret;
	wp.range.start = (uintptr_t)p;
	wp.range.len = len;
	wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
		ret = missing_or_error(errno, why);
		goto out;
	}
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		ret = -errno;
		goto out;
	}
	if (pread(pm, &ent, sizeof(ent), (off_t)((uintptr_t)p / psz * sizeof(ent))) !=
	    sizeof(ent)) {
		ret = -EIO;
	} else if (ent & PM_UFFD_WP) {
		ret = 1;
	} else {
		*why = EOPNOTSUPP;
		ret = 0;
	}
	close(pm);
out:
	munmap(p, len);
	close(fd);
	return ret;
}

static int probe_pidfd_getfd(int *why)
{
	int pidfd, fd, ret;

	pidfd = (int)syscall(__NR_pidfd_open, getpid(), 0);
	if (pidfd < 0)
		return missing_or_error(errno, why);
	fd = (int)syscall(__NR_pidfd_getfd, pidfd, pidfd, 0);
	if (fd < 0) {
		ret = missing_or_error(errno, why);
	} else {
		close(fd);
		ret = 1;
	}
	close(pidfd);
	return ret;
}

/* "always [madvise] never": the bracketed one is in force. */
static int probe_thp(int *why)
{
	char buf[128];
	ssize_t n;
	int fd;

	fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) { /* CONFIG_TRANSPARENT_HUGEPAGE=n */
			*why = ENOENT;
			return 0;
		}
		return -errno;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (strstr(buf, "[never]")) {
		*why = EOPNOTSUPP;
		return 0;
	}
	return 1;
}

/*
 * madvise() says EINVAL for an advice it does not know, but also for a
 * range it does not like, so ask on a populated, 2 MiB aligned anon range.
 * A collapse that fails for want of memory or a lock (ENOMEM, EAGAIN,
 * EBUSY) still shows the kernel knows the advice.
 */
static int probe_madv_collapse(int *why)
{
	size_t len = 2 * HPAGE_SIZE;
	uintptr_t aligned;
	int ret = 1, err;
	char *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	aligned = ((uintptr_t)p + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1);
	memset((void *)aligned, 1, HPAGE_SIZE);
	if (madvise((void *)aligned, HPAGE_SIZE, MADV_COLLAPSE)) {
		err = errno;
		if (err == ENOMEM || err == EAGAIN || err == EBUSY)
			ret = 1;
		else
			ret = missing_or_error(err, why);
	}
	munmap(p, len);
	return ret;
}

static void probe_all(void)
{
	int f, why;

	for (f = 0; f < UFFDWP_FEAT__MAX; f++) {
		why = 0;
		results[f].has = features[f].probe(&why);
		results[f].why = results[f].has == 0 ? why : 0;
		if (results[f].has < 0)
			pr_warn("probing %s failed: %s\n", features[f].name,
				uffdwp_strerror(-results[f].has));
		else
			pr_debug("%s: %s%s%s\n", features[f].name,
				 results[f].has ? "present" : "missing", results[f].why ? ", " : "",
				 results[f].why ? uffdwp_strerror(results[f].why) : "");
	}
}

static bool feature_valid(enum uffdwp_feature f)
{
	return (unsigned int)f < UFFDWP_FEAT__MAX;
}

const char *uffdwp_feature_name(enum uffdwp_feature f)
{
	return feature_valid(f) ? features[f].name : "?";
}

const char *uffdwp_feature_kernel(enum uffdwp_feature f)
{
	return feature_valid(f) ? features[f].kernel : "?";
}

bool uffdwp_feature_required(enum uffdwp_feature f)
{
	return feature_valid(f) && features[f].required;
}

int uffdwp_feature_has(enum uffdwp_feature f)
{
	if (!feature_valid(f))
		return -EINVAL;
	pthread_once(&probe_once, probe_all);
	return results[f].has;
}

int uffdwp_feature_why(enum uffdwp_feature f)
{
	if (uffdwp_feature_has(f) != 0)
		return 0;
	return results[f].why;
}

int uffdwp_probe_tracker(void)
{
	int f, has;

	for (f = 0; f < UFFDWP_FEAT__MAX; f++) {
		if (!features[f].required)
			continue;
		has = uffdwp_feature_has(f);
		if (has < 0) {
			pr_err("cannot tell whether the kernel has %s: %s\n", features[f].name,
			       uffdwp_strerror(-has));
			return has;
		}
		if (has)
			continue;
		pr_err("%s is missing: it needs Linux %s\n", features[f].name, features[f].kernel);
		if (results[f].why == EPERM)
			pr_err("(the probe was refused with EPERM: a seccomp filter or "
			       "vm.unprivileged_userfaultfd may be in the way)\n");
		return -EOPNOTSUPP;
	}
	return 0;
}
