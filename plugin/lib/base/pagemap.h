/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one PAGEMAP_SCAN walker. The kernel may end a call short of the
 * range with its vector not full (more regions in one walk chunk than the
 * vector holds), so a walk goes on from walk_end until it reaches the end;
 * a call that makes no progress, or a region outside the walk, is an error
 * (-EIO), never a silent end.
 */
#ifndef UFFDWP_PAGEMAP_H__
#define UFFDWP_PAGEMAP_H__

#include <stdint.h>

#include "base/rangeset.h"

struct uffdwp_pm_walk {
	uint64_t flags; /* PM_SCAN_WP_MATCHING, PM_SCAN_CHECK_WPASYNC */
	uint64_t category_mask, category_inverted, category_anyof_mask, return_mask;
	/*
	 * Each region found, in address order; a non-zero return ends the walk
	 * with it. NULL: no output vector at all (the kernel's fast path for
	 * write-protecting a whole range).
	 */
	int (*region)(void *arg, uint64_t start, uint64_t end, uint64_t categories);
	void *arg;
};

/*
 * Walk [@start, @end) of the pagemap @fd. Returns 0 or -errno; on failure
 * *@failed_at (if not NULL) says where the walk stopped: the regions given
 * before it are valid, what follows is unknown.
 */
int uffdwp_pm_walk(int fd, uint64_t start, uint64_t end, const struct uffdwp_pm_walk *w,
		   uint64_t *failed_at);

/*
 * The pages of [@start, @end) whose categories in @mask, after @inverted
 * flips them, are all set, added to @out. As uffdwp_pm_walk().
 */
int uffdwp_pm_collect(int fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
		      uint64_t inverted, struct uffdwp_rangeset *out, uint64_t *failed_at);

#endif /* UFFDWP_PAGEMAP_H__ */
