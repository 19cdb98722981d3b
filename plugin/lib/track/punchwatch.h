/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Holes punched in shared objects, seen as they happen: a BPF program on
 * the system call exit counts each madvise(MADV_REMOVE) and fallocate() on
 * a watched object (punch.bpf.c), and the calls it cannot place. A punched page reads as zeros, yet
 * its mappers' page tables keep their write protection (as PTE markers, and on the page a later
 * fault maps), so the tracker cannot see the change there.
 *
 * Needs libbpf at build time and CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN)
 * and kernel BTF at run time; uffdwp_punchwatch__new() says why not.
 */
#ifndef UFFDWP_PUNCHWATCH_H__
#define UFFDWP_PUNCHWATCH_H__

#include <stdint.h>

#include "base/procfs.h"

struct uffdwp_punchwatch;

/* Load and attach the program. 0, or -errno (-EOPNOTSUPP: built without libbpf). */
int uffdwp_punchwatch__new(struct uffdwp_punchwatch **out);
void uffdwp_punchwatch__free(struct uffdwp_punchwatch *pw);

/*
 * Start counting for @id (from 0; a watched object keeps its count).
 * Returns 0, -E2BIG when the map is full, or -errno.
 */
int uffdwp_punchwatch__watch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id);
void uffdwp_punchwatch__unwatch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id);

/* The calls counted for @id since it was watched. 0, -ENOENT, or -errno. */
int uffdwp_punchwatch__count(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id,
			     uint64_t *n);

/* Calls that may have punched a hole in any object, counted from the start. */
int uffdwp_punchwatch__lost(struct uffdwp_punchwatch *pw, uint64_t *n);

#endif /* UFFDWP_PUNCHWATCH_H__ */
