/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel feature probes. Each runs once; the results are cached.
 * A probe treats EINVAL/ENOTTY/ENOSYS/EPERM/EOPNOTSUPP as "missing"; any
 * other failure is an error of the probe itself.
 */
#ifndef UFFDWP_PROBE_H__
#define UFFDWP_PROBE_H__

#include <stdbool.h>

enum uffdwp_feature {
	UFFDWP_FEAT_USERFAULTFD,    /* userfaultfd(2), Linux 4.3 */
	UFFDWP_FEAT_UFFD_WP,	    /* UFFDIO_REGISTER_MODE_WP on anon, Linux 5.7 */
	UFFDWP_FEAT_WP_UNPOPULATED, /* UFFD_FEATURE_WP_UNPOPULATED, Linux 6.4 */
	UFFDWP_FEAT_WP_ASYNC,	    /* UFFD_FEATURE_WP_ASYNC, Linux 6.7 */
	UFFDWP_FEAT_PAGEMAP_SCAN,   /* PAGEMAP_SCAN ioctl, Linux 6.7 */
	UFFDWP_FEAT_PTE_MARKER,	    /* uffd-wp PTE markers (shmem, hugetlb), Linux 5.19 */
	UFFDWP_FEAT_WP_SHMEM,	    /* UFFD_FEATURE_WP_HUGETLBFS_SHMEM, Linux 5.19 */
	UFFDWP_FEAT_PIDFD_GETFD,    /* pidfd_getfd(2), Linux 5.6 */
	UFFDWP_FEAT_THP,	    /* transparent huge pages enabled (not "never") */
	UFFDWP_FEAT_MADV_COLLAPSE,  /* MADV_COLLAPSE, Linux 6.1 */
	UFFDWP_FEAT__MAX,
};

/* Name, first kernel, and whether the tracker cannot work without it. */
const char *uffdwp_feature_name(enum uffdwp_feature f);
const char *uffdwp_feature_kernel(enum uffdwp_feature f);
bool uffdwp_feature_required(enum uffdwp_feature f);

/*
 * Whether the running kernel has @f. Probes on first use.
 * Returns 1 present, 0 missing, -errno if the probe itself failed.
 */
int uffdwp_feature_has(enum uffdwp_feature f);

/*
 * Why @f was found missing: the errno the kernel answered the probe with
 * (EPERM points at a seccomp filter or a sysctl rather than an old kernel;
 * ENOENT/EOPNOTSUPP at a kernel built without it). 0 if @f is not missing.
 */
int uffdwp_feature_why(enum uffdwp_feature f);

/*
 * Check every feature the tracker cannot work without. On the first one
 * missing, log "<name> is missing: it needs Linux <version>" and return
 * -EOPNOTSUPP. Returns 0 when all are there.
 */
int uffdwp_probe_tracker(void);

#endif /* UFFDWP_PROBE_H__ */
