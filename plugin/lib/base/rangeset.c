// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/rangeset.h"

void uffdwp_rangeset__init(struct uffdwp_rangeset *rs)
{
	rs->r = NULL;
	rs->nr = rs->cap = 0;
}

void uffdwp_rangeset__fini(struct uffdwp_rangeset *rs)
{
	if (!rs)
		return;
	free(rs->r);
	uffdwp_rangeset__init(rs);
}

void uffdwp_rangeset__clear(struct uffdwp_rangeset *rs)
{
	rs->nr = 0;
}

static int rangeset_reserve(struct uffdwp_rangeset *rs, size_t want)
{
	struct uffdwp_range *r;
	size_t cap;

	if (want <= rs->cap)
		return 0;
	cap = rs->cap ? rs->cap * 2 : 16;
	while (cap < want)
		cap *= 2;
	r = realloc(rs->r, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	rs->r = r;
	rs->cap = cap;
	return 0;
}

/* Index of the first range whose end is >= @addr (ranges touching @addr count). */
static size_t rangeset_lower(const struct uffdwp_rangeset *rs, uint64_t addr)
{
	size_t lo = 0, hi = rs->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].end < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int uffdwp_rangeset__add(struct uffdwp_rangeset *rs, uint64_t start, uint64_t end)
{
	size_t i, j;

	if (start >= end)
		return 0;

	/* The scanner reports in address order: make that the fast path. */
	if (rs->nr && rs->r[rs->nr - 1].end == start) {
		rs->r[rs->nr - 1].end = end;
		return 0;
	}
	if (!rs->nr || rs->r[rs->nr - 1].end < start) {
		if (rangeset_reserve(rs, rs->nr + 1))
			return -ENOMEM;
		rs->r[rs->nr].start = start;
		rs->r[rs->nr].end = end;
		rs->nr++;
		return 0;
	}

	i = rangeset_lower(rs, start);
	/* Ranges i..j-1 touch or overlap [start, end) and merge into one. */
	for (j = i; j < rs->nr && rs->r[j].start <= end; j++)
		;
	if (i == j) {
		if (rangeset_reserve(rs, rs->nr + 1))
			return -ENOMEM;
		memmove(&rs->r[i + 1], &rs->r[i], (rs->nr - i) * sizeof(rs->r[0]));
		rs->r[i].start = start;
		rs->r[i].end = end;
		rs->nr++;
		return 0;
	}
	if (rs->r[i].start < start)
		start = rs->r[i].start;
	if (rs->r[j - 1].end > end)
		end = rs->r[j - 1].end;
	rs->r[i].start = start;
	rs->r[i].end = end;
	memmove(&rs->r[i + 1], &rs->r[j], (rs->nr - j) * sizeof(rs->r[0]));
	rs->nr -= j - i - 1;
	return 0;
}

/*
 * One pass over both sorted lists into a new array: O(n + m) however the two
 * interleave (adding the ranges one by one moved the tail each time).
 */
int uffdwp_rangeset__add_set(struct uffdwp_rangeset *rs, const struct uffdwp_rangeset *src)
{
	const struct uffdwp_range *next;
	struct uffdwp_range *out;
	size_t i = 0, j = 0, n = 0, cap;

	if (!src->nr || rs == src)
		return 0;
	/* All of @src after all of @rs: the append path, no copy of @rs. */
	if (!rs->nr || rs->r[rs->nr - 1].end < src->r[0].start) {
		if (rangeset_reserve(rs, rs->nr + src->nr))
			return -ENOMEM;
		memcpy(&rs->r[rs->nr], src->r, src->nr * sizeof(src->r[0]));
		rs->nr += src->nr;
		return 0;
	}
	cap = rs->nr + src->nr;
	out = malloc(cap * sizeof(*out));
	if (!out)
		return -ENOMEM;
	while (i < rs->nr || j < src->nr) {
		if (j == src->nr || (i < rs->nr && rs->r[i].start <= src->r[j].start))
			next = &rs->r[i++];
		else
			next = &src->r[j++];
		if (n && out[n - 1].end >= next->start) {
			if (next->end > out[n - 1].end)
				out[n - 1].end = next->end;
		} else {
			out[n++] = *next;
		}
	}
	free(rs->r);
	rs->r = out;
	rs->nr = n;
	rs->cap = cap;
	return 0;
}

int uffdwp_rangeset__remove(struct uffdwp_rangeset *rs, uint64_t start, uint64_t end)
{
	size_t i, j, k;

	if (start >= end)
		return 0;
	i = rangeset_lower(rs, start + 1);
	if (i < rs->nr && rs->r[i].start < start && rs->r[i].end > end) {
		/* [start, end) is inside one range: split it in two. */
		if (rangeset_reserve(rs, rs->nr + 1))
			return -ENOMEM;
		memmove(&rs->r[i + 1], &rs->r[i], (rs->nr - i) * sizeof(rs->r[0]));
		rs->r[i].end = start;
		rs->r[i + 1].start = end;
		rs->nr++;
		return 0;
	}
	for (j = i, k = i; j < rs->nr && rs->r[j].start < end; j++) {
		struct uffdwp_range cur = rs->r[j];

		if (cur.start < start)
			cur.end = start;
		else if (cur.end > end)
			cur.start = end;
		else
			continue;
		rs->r[k++] = cur;
	}
	memmove(&rs->r[k], &rs->r[j], (rs->nr - j) * sizeof(rs->r[0]));
	rs->nr -= j - k;
	return 0;
}

bool uffdwp_rangeset__overlaps(const struct uffdwp_rangeset *rs, uint64_t start, uint64_t end)
{
	size_t i = rangeset_lower(rs, start + 1);

	return start < end && i < rs->nr && rs->r[i].start < end;
}

bool uffdwp_rangeset__covers(const struct uffdwp_rangeset *rs, uint64_t start, uint64_t end)
{
	size_t i = rangeset_lower(rs, start + 1);

	if (start >= end)
		return true;
	return i < rs->nr && rs->r[i].start <= start && rs->r[i].end >= end;
}

bool uffdwp_rangeset__edge(const struct uffdwp_rangeset *rs, uint64_t a, uint64_t *edge)
{
	size_t i = rangeset_lower(rs, a + 1);

	if (i == rs->nr)
		return false;
	if (rs->r[i].start <= a) {
		if (rs->r[i].end < *edge)
			*edge = rs->r[i].end;
		return true;
	}
	if (rs->r[i].start < *edge)
		*edge = rs->r[i].start;
	return false;
}

uint64_t uffdwp_rangeset__bytes(const struct uffdwp_rangeset *rs)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < rs->nr; i++)
		sum += rs->r[i].end - rs->r[i].start;
	return sum;
}

int uffdwp_rangeset__add_clipped(struct uffdwp_rangeset *dst, const struct uffdwp_rangeset *src,
				 uint64_t start, uint64_t end, int64_t delta)
{
	size_t i = rangeset_lower(src, start + 1);
	int err;

	for (; i < src->nr && src->r[i].start < end; i++) {
		uint64_t s = src->r[i].start > start ? src->r[i].start : start;
		uint64_t e = src->r[i].end < end ? src->r[i].end : end;

		err = uffdwp_rangeset__add(dst, s + delta, e + delta);
		if (err)
			return err;
	}
	return 0;
}

int uffdwp_rangeset__subtract(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
			      const struct uffdwp_rangeset *b)
{
	size_t i, j = 0;
	int err;

	uffdwp_rangeset__clear(out);
	for (i = 0; i < a->nr; i++) {
		uint64_t s = a->r[i].start, e = a->r[i].end;

		while (j < b->nr && b->r[j].end <= s)
			j++;
		for (size_t k = j; k < b->nr && b->r[k].start < e && s < e; k++) {
			if (b->r[k].start > s) {
				err = uffdwp_rangeset__add(out, s, b->r[k].start);
				if (err)
					return err;
			}
			if (b->r[k].end > s)
				s = b->r[k].end;
		}
		if (s < e) {
			err = uffdwp_rangeset__add(out, s, e);
			if (err)
				return err;
		}
	}
	return 0;
}

int uffdwp_rangeset__intersect(struct uffdwp_rangeset *out, const struct uffdwp_rangeset *a,
			       const struct uffdwp_rangeset *b)
{
	size_t i = 0, j = 0;
	int err;

	uffdwp_rangeset__clear(out);
	while (i < a->nr && j < b->nr) {
		uint64_t s = a->r[i].start > b->r[j].start ? a->r[i].start : b->r[j].start;
		uint64_t e = a->r[i].end < b->r[j].end ? a->r[i].end : b->r[j].end;

		if (s < e) {
			err = uffdwp_rangeset__add(out, s, e);
			if (err)
				return err;
		}
		if (a->r[i].end < b->r[j].end)
			i++;
		else
			j++;
	}
	return 0;
}

int uffdwp_rangeset__remove_set(struct uffdwp_rangeset *a, const struct uffdwp_rangeset *b)
{
	struct uffdwp_rangeset t = UFFDWP_RANGESET_INIT;
	int err = uffdwp_rangeset__subtract(&t, a, b);

	if (!err) {
		uffdwp_rangeset__fini(a);
		*a = t;
	} else {
		uffdwp_rangeset__fini(&t);
	}
	return err;
}
