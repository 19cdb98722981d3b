/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sets of [start, end) ranges kept sorted and merged: the dirty sets of the
 * tracker. Addresses are whatever the caller says (virtual addresses of a
 * task, or byte offsets in a shared memory object).
 */
#ifndef UFFDWP_RANGESET_H__
#define UFFDWP_RANGESET_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uffdwp_range {
	uint64_t start;
	uint64_t end;
};

struct uffdwp_rangeset {
	struct uffdwp_range *r;
	size_t nr;
	size_t cap;
};

#define UFFDWP_RANGESET_INIT                                                                       \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

void uffdwp_rangeset__init(struct uffdwp_rangeset *rs);
/* Frees the ranges; @rs may be reused after. Accepts NULL. */
void uffdwp_rangeset__fini(struct uffdwp_rangeset *rs);
void uffdwp_rangeset__clear(struct uffdwp_rangeset *rs);

/*
 * Add [start, end), merging with what touches or overlaps it. Appending in
 * address order is O(1). Returns 0 or -ENOMEM (the set is unchanged then).
 */
int uffdwp_rangeset__add(struct uffdwp_rangeset *rs, uint64_t start, uint64_t end);
/* Add every range of @src, in O(n + m). Returns 0 or -ENOMEM (@rs unchanged). */
int uffdwp_rangeset__add_set(struct uffdwp_rangeset *rs, const struct uffdwp_rangeset *src);
/* Remove [start, end). Returns 0 or -ENOMEM (splitting a range needs room). */
int uffdwp_rangeset__remove(struct uffdwp_rangeset *rs, uint64_t start, uint64_t end);

/* @out = @a minus @b (@out is cleared first). Returns 0 or -ENOMEM. */
int uffdwp_rangeset__subtract(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
			      const struct uffdwp_rangeset *b);
/* @out = what @a and @b both hold (@out is cleared first). Returns 0 or -ENOMEM. */
int uffdwp_rangeset__intersect(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
			       const struct uffdwp_rangeset *b);
/* @a = @a minus @b; unchanged on failure. Returns 0 or -ENOMEM. */
int uffdwp_rangeset__remove_set(struct uffdwp_rangeset *a, const struct uffdwp_rangeset *b);

/* Whether any byte of [start, end) is in the set. */
bool uffdwp_rangeset__overlaps(const struct uffdwp_rangeset *rs, uint64_t start, uint64_t end);
/* Whether every byte of [start, end) is in the set. */
bool uffdwp_rangeset__covers(const struct uffdwp_rangeset *rs, uint64_t start, uint64_t end);
/*
 * Whether @a is in the set; lowers *@edge to the next address where that
 * answer changes, if that comes before it. Walking [a, end) with
 * edge = end steps from one such boundary to the next.
 */
bool uffdwp_rangeset__edge(const struct uffdwp_rangeset *rs, uint64_t a, uint64_t *edge);
/* Total bytes in the set. */
uint64_t uffdwp_rangeset__bytes(const struct uffdwp_rangeset *rs);

/*
 * Add to @dst the part of @src that lies in [start, end), shifted by
 * @delta (dst = src + delta). Returns 0 or -ENOMEM.
 */
int uffdwp_rangeset__add_clipped(struct uffdwp_rangeset *dst, const struct uffdwp_rangeset *src,
				 uint64_t start, uint64_t end, int64_t delta);

#endif /* UFFDWP_RANGESET_H__ */
