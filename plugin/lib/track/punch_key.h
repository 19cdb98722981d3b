/* SPDX-License-Identifier: GPL-2.0 */
/* The key of punch.bpf.c's map, shared with punchwatch.c. */
#ifndef UFFDWP_PUNCH_KEY_H__
#define UFFDWP_PUNCH_KEY_H__

#include <linux/types.h>

#define UFFDWP_PUNCH_MAX_OBJS 4096

struct uffdwp_punch_key {
	__u64 dev; /* the kernel's dev_t: major << 20 | minor */
	__u64 ino;
};

#endif /* UFFDWP_PUNCH_KEY_H__ */
