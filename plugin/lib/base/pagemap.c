// SPDX-License-Identifier: GPL-2.0
/* The one PAGEMAP_SCAN walker (base/pagemap.h). */
#define LOG_PREFIX "pagemap: "
#include <errno.h>
#include <sys/ioctl.h>

#include "uapi/uffdwp-uapi.h"
#include "base/log.h"
#include "base/pagemap.h"

#define WALK_VEC 512

int uffdwp_pm_walk(int fd, uint64_t start, uint64_t end, const struct uffdwp_pm_walk *w,
		   uint64_t *failed_at)
{
	struct page_region vec[WALK_VEC];
	struct pm_scan_arg arg = {
	    .size = sizeof(arg),
	    .flags = w->flags,
	    .start = start,
	    .end = end,
	    .vec = w->region ? (uintptr_t)vec : 0,
	    .vec_len = w->region ? WALK_VEC : 0,
	    .category_inverted = w->category_inverted,
	    .category_mask = w->category_mask,
	    .category_anyof_mask = w->category_anyof_mask,
	    .return_mask = w->return_mask,
	};
	int err = 0;

	while (arg.start < end) {
		long i, n;

		arg.walk_end = 0;
		n = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			err = -errno;
			break;
		}
		for (i = 0; i < n && w->region; i++) {
			/* Trust nothing: a region outside the walk is a kernel bug we survive. */
			if (vec[i].start >= vec[i].end || vec[i].start < arg.start ||
			    vec[i].end > end) {
				pr_err("PAGEMAP_SCAN returned region %llx-%llx outside %llx-%llx\n",
				       (unsigned long long)vec[i].start,
				       (unsigned long long)vec[i].end,
				       (unsigned long long)arg.start, (unsigned long long)end);
				err = -EIO;
				break;
			}
			err = w->region(w->arg, vec[i].start, vec[i].end, vec[i].categories);
			if (err)
				break;
		}
		if (err)
			break;
		if (arg.walk_end <= arg.start || arg.walk_end > end) {
			pr_err("PAGEMAP_SCAN made no progress at %llx\n",
			       (unsigned long long)arg.start);
			err = -EIO;
			break;
		}
		arg.start = arg.walk_end;
	}
	if (err && failed_at)
		*failed_at = arg.start;
	return err;
}

static int collect_region(void *arg, uint64_t start, uint64_t end, uint64_t categories)
{
	return uffdwp_rangeset__add(arg, start, end);
}

int uffdwp_pm_collect(int fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t mask,
		      uint64_t inverted, struct uffdwp_rangeset *out, uint64_t *failed_at)
{
	struct uffdwp_pm_walk w = {
	    .flags = flags,
	    .category_mask = mask,
	    .category_inverted = inverted,
	    .return_mask = mask,
	    .region = collect_region,
	    .arg = out,
	};

	return uffdwp_pm_walk(fd, start, end, &w, failed_at);
}
