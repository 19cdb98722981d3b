// SPDX-License-Identifier: GPL-2.0
/*
 * One task of the tracker: registering its mappings with our userfaultfd,
 * write-protecting them, and the scan of its written pages (tracker_priv.h).
 */
#define LOG_PREFIX "tracker: "
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "uapi/uffdwp-uapi.h"
#include "base/log.h"
#include "track/tracker_priv.h"

static int reg_range(int uffd, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
	    .range = {.start = start, .len = end - start},
	    .mode = UFFDIO_REGISTER_MODE_WP,
	};

	return ioctl(uffd, UFFDIO_REGISTER, &reg) ? -errno : 0;
}

static int protect_range(int uffd, uint64_t start, uint64_t end)
{
	struct uffdio_writeprotect wp = {
	    .range = {.start = start, .len = end - start},
	    .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/*
 * In a private file mapping, protect the pages that are there and leave
 * holes alone: with WP_UNPOPULATED a protected hole gets a PTE marker, and
 * so does a zapped page (MADV_DONTNEED, truncate). Only the second kind
 * means lost data, and they are told apart only if the first never exists.
 * A marker in a hole also reads as a swapped page to a dumper's pagemap
 * walk: CRIU, which skips the unwritten file pages of a private mapping,
 * would copy such a hole, and restore a private copy where the task saw the
 * file (zdtm memfd02-hugetlb: a later write to the file did not show).
 */
static int protect_present(struct trk_task *tk, uint64_t start, uint64_t end)
{
	struct uffdwp_rangeset present = UFFDWP_RANGESET_INIT;
	uint64_t failed_at;
	size_t i;
	int err;

	err = pm_scan(tk->pagemap_fd, start, end, 0, PAGE_IS_PRESENT, &present, &failed_at);
	for (i = 0; !err && i < present.nr; i++)
		err = protect_range(tk->uffd, present.r[i].start, present.r[i].end);
	uffdwp_rangeset__fini(&present);
	return err;
}

/*
 * Protect a freshly registered anonymous range. PAGEMAP_SCAN with
 * WP_MATCHING and no output vector takes the kernel's fast path for
 * exclusive write-protect: about half the time of UFFDIO_WRITEPROTECT over
 * 4K pages. Holes get markers either way (WP_UNPOPULATED); one missed would
 * only make a later read fault look like a write.
 */
static int protect_anon(struct trk_task *tk, uint64_t start, uint64_t end)
{
	struct uffdwp_pm_walk w = {
	    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};

	return uffdwp_pm_walk(tk->pagemap_fd, start, end, &w, NULL);
}

/*
 * Swap types this high are no swap device: the PTE marker
 * (UFFDWP_PM_MARKER_TYPE) and migration, hwpoison and device entries. The
 * tracker takes them all for markers: a page in migration then counts as
 * changed once, which is only a false positive.
 */
#define PM_SWP_NOT_DEVICE 24

/*
 * A private file page that was ours (COW) and got zapped leaves a uffd-wp
 * marker: not "written" to PAGEMAP_SCAN, yet the page now reads the file's
 * data, and pagemap calls it swapped, so a dumper would copy the file's
 * data over the old one. A marker is news once: the scan that first sees it
 * reports it; while it stays, the page keeps reading the file. Markers the
 * kernel puts on pages that never were ours (file text it remaps) cost one
 * false positive each. Clearing them instead does not work: something puts
 * them back on the next walk, and they would be reported at every scan.
 * @markers collects the markers seen now.
 */
static int scan_file_markers(struct trk_task *tk, uint64_t start, uint64_t end,
			     struct uffdwp_rangeset *dirty, struct uffdwp_rangeset *markers)
{
	struct uffdwp_rangeset swapped = UFFDWP_RANGESET_INIT;
	uint64_t failed_at, a, ent[64];
	size_t i, k, n;
	int err;

	err = pm_scan(tk->pagemap_fd, start, end, 0, PAGE_IS_SWAPPED, &swapped, &failed_at);
	if (err) {
		/* Cannot tell markers from swap: all of it is dirty. */
		err = uffdwp_rangeset__add(dirty, failed_at, end);
		goto out;
	}
	for (i = 0; !err && i < swapped.nr; i++) {
		for (a = swapped.r[i].start; !err && a < swapped.r[i].end; a += n * PAGE_SZ) {
			n = (swapped.r[i].end - a) / PAGE_SZ;
			if (n > 64)
				n = 64;
			if (pread(tk->pagemap_fd, ent, n * 8, a / PAGE_SZ * 8) != (ssize_t)(n * 8))
				for (k = 0; k < n; k++)
					ent[k] = UFFDWP_PM_SWAP | PM_SWP_NOT_DEVICE;
			for (k = 0; !err && k < n; k++) {
				uint64_t pa = a + k * PAGE_SZ;

				if (!(ent[k] & UFFDWP_PM_SWAP) ||
				    UFFDWP_PM_SWP_TYPE(ent[k]) < PM_SWP_NOT_DEVICE)
					continue;
				err = uffdwp_rangeset__add(markers, pa, pa + PAGE_SZ);
				if (!err &&
				    !uffdwp_rangeset__covers(&tk->markers, pa, pa + PAGE_SZ))
					err = uffdwp_rangeset__add(dirty, pa, pa + PAGE_SZ);
			}
		}
	}
out:
	uffdwp_rangeset__fini(&swapped);
	return err;
}

/*
 * Shared memory: protection gives every page of the mapping a PTE, a
 * marker at least (WP_UNPOPULATED). A written PTE that is dropped (reclaim,
 * MADV_DONTNEED) leaves nothing, and the write is forgotten while the data
 * stays in the object. So an empty PTE in a protected shared mapping is a
 * page written since the last scan: report it and protect it again.
 */
static int scan_shared_holes(struct trk_task *tk, uint64_t start, uint64_t end,
			     struct uffdwp_rangeset *dirty)
{
	const uint64_t cat = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	struct uffdwp_rangeset holes = UFFDWP_RANGESET_INIT;
	uint64_t failed_at;
	size_t i;
	int err;

	err = uffdwp_pm_collect(tk->pagemap_fd, start, end, 0, cat, cat, &holes, &failed_at);
	if (err && err != -ENOMEM) {
		err = uffdwp_rangeset__add(dirty, failed_at, end);
		goto out;
	}
	for (i = 0; !err && i < holes.nr; i++) {
		err = uffdwp_rangeset__add(dirty, holes.r[i].start, holes.r[i].end);
		if (!err)
			protect_range(tk->uffd, holes.r[i].start, holes.r[i].end);
	}
out:
	uffdwp_rangeset__fini(&holes);
	return err;
}

/*
 * Register and protect [start, end), a part of a mapping that no uffd of
 * ours covers. It is all dirty in this scan whatever happens; the note says
 * why. Returns -ESRCH when our uffd's mm is gone, else 0.
 */
static int task_register(struct trk_task *tk, const struct uffdwp_vma *v, uint64_t start,
			 uint64_t end, struct uffdwp_task_report *rep, enum uffdwp_reason why,
			 struct uffdwp_rangeset *newreg)
{
	int err;

	err = reg_range(tk->uffd, start, end);
	if (!err && vma_private_file(v))
		err = protect_present(tk, start, end);
	else if (!err && v->kind == UFFDWP_VMA_ANON)
		err = protect_anon(tk, start, end);
	else if (!err)
		err = protect_range(tk->uffd, start, end);
	if (err == -ESRCH)
		return err;
	if (!err) {
		if (uffdwp_rangeset__add(newreg, start, end))
			return -ENOMEM;
		return why ? trk_note_add(rep, start, end, why, 0) : 0;
	}
	/*
	 * EBUSY: another userfaultfd has the range (CRIU lazy-pages, a GC, a
	 * VM). Anything else: the kernel will not track this kind of memory.
	 * Either way it is dirty at every scan.
	 */
	return trk_note_add(rep, start, end,
			    err == -EBUSY ? UFFDWP_R_FOREIGN_UFFD : UFFDWP_R_UNTRACKABLE, -err);
}

/* The ranges of @maps that are WPALLOWED: the mappings minus what is not. */
static int list_wpallowed(struct trk_task *tk, const struct uffdwp_maps *maps, uint64_t lo,
			  uint64_t hi, struct uffdwp_rangeset *out, uint64_t *failed_at)
{
	struct uffdwp_rangeset notw = UFFDWP_RANGESET_INIT;
	size_t i;
	int err;

	err = uffdwp_pm_collect(tk->pagemap_fd, lo, hi, 0, PAGE_IS_WPALLOWED, PAGE_IS_WPALLOWED,
				&notw, failed_at);
	for (i = 0; !err && i < maps->nr; i++)
		if (maps->v[i].end <= hi)
			err = uffdwp_rangeset__add(out, maps->v[i].start, maps->v[i].end);
	for (i = 0; !err && i < notw.nr; i++)
		err = uffdwp_rangeset__remove(out, notw.r[i].start, notw.r[i].end);
	uffdwp_rangeset__fini(&notw);
	return err;
}

/* Dirty [start, end) of one mapping in the current scan. */
static int scan_add_dirty(struct uffdwp_rangeset *dirty, uint64_t start, uint64_t end)
{
	return uffdwp_rangeset__add(dirty, start, end);
}

/*
 * Scan one task. Fills @dirty with what this scan found (written pages and
 * whole ranges that cannot be proven clean) and @written with the written
 * pages alone. Returns 0, -ESRCH if our uffd's mm died under us (exec or
 * exit: the caller decides), -ENOMEM.
 */
int trk_task_scan(struct trk_task *tk, const struct uffdwp_maps *maps,
		  struct uffdwp_task_report *rep, struct uffdwp_rangeset *dirty,
		  struct uffdwp_rangeset *written)
{
	struct uffdwp_rangeset wpallowed = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset ours_now = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset newreg = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset file_priv = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset shared = UFFDWP_RANGESET_INIT;
	struct uffdwp_rangeset markers = UFFDWP_RANGESET_INIT;
	uint64_t lo, hi, failed_at;
	size_t i, j;
	int err = 0;

	if (!maps->nr)
		return 0;
	lo = maps->v[0].start;
	hi = maps_user_end(maps);

	/*
	 * Which ranges of the mm are registered for async wp, by anyone. Asked
	 * the other way round: the kernel skips a VMA that does not match
	 * without walking its page tables, and most VMAs are registered.
	 */
	err = list_wpallowed(tk, maps, lo, hi, &wpallowed, &failed_at);
	if (err) {
		pr_warn("cannot list registered ranges of %d: %s\n", tk->pid,
			uffdwp_strerror(-err));
		uffdwp_rangeset__clear(&wpallowed);
		err = 0;
	}

	for (i = 0; i < maps->nr && !err; i++) {
		const struct uffdwp_vma *v = &maps->v[i];
		uint64_t a;

		if (!vma_dumpable(v)) {
			if (v->kind == UFFDWP_VMA_FILE_SHARED)
				err = trk_note_add(rep, v->start, v->end, UFFDWP_R_NOT_DUMPED, 0);
			continue;
		}

		/*
		 * Walk the mapping in pieces: registered by us (scan it),
		 * registered by someone else (dirty), registered by nobody
		 * (dirty, then ours). A piece registered but not by our hand
		 * that our uffd can register again is ours too: mremap grew
		 * one of our mappings in place.
		 */
		for (a = v->start; a < v->end && !err;) {
			bool in_w, in_ours;
			uint64_t b = v->end;

			in_w = uffdwp_rangeset__edge(&wpallowed, a, &b);
			in_ours = uffdwp_rangeset__edge(&tk->ours, a, &b);

			if (in_w && !in_ours) {
				int r = reg_range(tk->uffd, a, b);

				if (r == -ESRCH) {
					err = r;
					break;
				}
				if (!r) {
					in_ours = true;
				} else {
					err = trk_note_add(rep, a, b, UFFDWP_R_FOREIGN_UFFD, -r);
					if (!err)
						err = scan_add_dirty(dirty, a, b);
				}
			}
			if (!err && in_w && in_ours) {
				err = uffdwp_rangeset__add(&ours_now, a, b);
				if (!err && vma_private_file(v))
					err = uffdwp_rangeset__add(&file_priv, a, b);
				if (!err && uffdwp_vma_is_shared_obj(v))
					err = uffdwp_rangeset__add(&shared, a, b);
			} else if (!err && !in_w) {
				/* Ours before, not registered now: unmapped and mapped again. */
				err = task_register(tk, v, a, b, rep,
						    tk->fresh ? 0 : UFFDWP_R_NEW_MAPPING, &newreg);
				if (!err)
					err = scan_add_dirty(dirty, a, b);
			}
			a = b;
		}
	}
	if (err)
		goto out;

	/*
	 * The scan proper: runs of our registered ranges, each on its own. In
	 * private file mappings only our own copies of pages count: a file
	 * page without protection (fault-around, reclaim and refault) holds
	 * the file's data, which no dumper takes from us.
	 */
	for (j = 0; j < ours_now.nr; j++) {
		uint64_t s = ours_now.r[j].start, e = ours_now.r[j].end;

		rep->tracked_bytes += e - s;
		while (s < e) {
			uint64_t b = e;
			bool fp = uffdwp_rangeset__edge(&file_priv, s, &b);

			err = uffdwp_pm_collect(tk->pagemap_fd, s, b,
						PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
						PAGE_IS_WRITTEN | (fp ? PAGE_IS_FILE : 0),
						fp ? PAGE_IS_FILE : 0, written, &failed_at);
			if (err == -ENOMEM)
				goto out;
			if (err) {
				/*
				 * The vector of the failed call may hold regions the
				 * kernel already re-protected: all the rest is dirty.
				 */
				pr_info("scan of %d at %" PRIx64 "-%" PRIx64 " failed: %s\n",
					tk->pid, failed_at, b, uffdwp_strerror(-err));
				err = trk_note_add(rep, failed_at, b, UFFDWP_R_SCAN_FAILED, -err);
				if (!err)
					err = scan_add_dirty(dirty, failed_at, b);
				if (err)
					goto out;
			}
			s = b;
		}
	}
	for (j = 0; j < file_priv.nr && !err; j++)
		err = scan_file_markers(tk, file_priv.r[j].start, file_priv.r[j].end, dirty,
					&markers);
	for (j = 0; j < shared.nr && !err; j++)
		err = scan_shared_holes(tk, shared.r[j].start, shared.r[j].end, dirty);
	if (!err)
		err = uffdwp_rangeset__add_set(dirty, written);
	if (err)
		goto out;
	rep->written_bytes = uffdwp_rangeset__bytes(written);

	/* Forget registrations of ranges that are gone; add the new ones. */
	err = uffdwp_rangeset__add_set(&ours_now, &newreg);
	if (err)
		goto out;
	uffdwp_rangeset__fini(&tk->ours);
	tk->ours = ours_now;
	uffdwp_rangeset__init(&ours_now);
	uffdwp_rangeset__fini(&tk->markers);
	tk->markers = markers;
	uffdwp_rangeset__init(&markers);
out:
	uffdwp_rangeset__fini(&wpallowed);
	uffdwp_rangeset__fini(&ours_now);
	uffdwp_rangeset__fini(&newreg);
	uffdwp_rangeset__fini(&file_priv);
	uffdwp_rangeset__fini(&shared);
	uffdwp_rangeset__fini(&markers);
	return err;
}

int trk_dirty_all(const struct uffdwp_maps *maps, struct uffdwp_task_report *rep,
		  struct uffdwp_rangeset *dirty, enum uffdwp_reason why, int errnum)
{
	size_t i;
	int err;

	for (i = 0; i < maps->nr; i++) {
		if (!vma_dumpable(&maps->v[i]))
			continue;
		err = scan_add_dirty(dirty, maps->v[i].start, maps->v[i].end);
		if (!err && why)
			err = trk_note_add(rep, maps->v[i].start, maps->v[i].end, why, errnum);
		if (err)
			return err;
	}
	return 0;
}
