// SPDX-License-Identifier: GPL-2.0
/* The tracker's reports: reasons, notes, freeing (tracker.h). */
#include <errno.h>
#include <stdlib.h>

#include "track/tracker_priv.h"

static const char *const reason_names[UFFDWP_R__MAX] = {
    [UFFDWP_R_NEW_TASK] = "new-task",
    [UFFDWP_R_NEW_MAPPING] = "new-mapping",
    [UFFDWP_R_FOREIGN_UFFD] = "foreign-userfaultfd",
    [UFFDWP_R_UNTRACKABLE] = "untrackable",
    [UFFDWP_R_SHMEM_SHARED] = "shmem-shared",
    [UFFDWP_R_SCAN_FAILED] = "scan-failed",
    [UFFDWP_R_LOST] = "tracking-lost",
    [UFFDWP_R_NOT_DUMPED] = "not-dumped",
    [UFFDWP_R_SHMEM_UNMAPPED] = "shmem-unmapped",
    [UFFDWP_R_SHMEM_FORKED] = "shmem-forked",
    [UFFDWP_R_SHMEM_CHANGED] = "shmem-changed",
};

const char *uffdwp_reason_name(enum uffdwp_reason r)
{
	return r > 0 && r < UFFDWP_R__MAX ? reason_names[r] : "?";
}

int trk_note_add(struct uffdwp_task_report *rep, uint64_t start, uint64_t end,
		 enum uffdwp_reason reason, int err)
{
	struct uffdwp_note *n;

	/* Neighbouring ranges with the same reason read better as one. */
	if (rep->nr_notes) {
		n = &rep->notes[rep->nr_notes - 1];
		if (n->end == start && n->reason == (uint32_t)reason && n->err == err) {
			n->end = end;
			return 0;
		}
	}
	if (!(rep->nr_notes & (rep->nr_notes - 1)) || !rep->notes) {
		size_t cap = rep->nr_notes ? rep->nr_notes * 2 : 8;

		n = realloc(rep->notes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		rep->notes = n;
	}
	n = &rep->notes[rep->nr_notes++];
	n->start = start;
	n->end = end;
	n->reason = reason;
	n->err = err;
	return 0;
}

void uffdwp_report__free(struct uffdwp_report *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nr_tasks; i++) {
		uffdwp_rangeset__fini(&r->tasks[i].dirty);
		free(r->tasks[i].notes);
	}
	free(r->tasks);
	free(r);
}

uint64_t uffdwp_report__dirty_bytes(const struct uffdwp_report *r)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < r->nr_tasks; i++)
		sum += uffdwp_rangeset__bytes(&r->tasks[i].dirty);
	return sum;
}
