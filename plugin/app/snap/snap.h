/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory snapshots of a running process tree (`uffdwp snap`): the tracker,
 * through its holder, says which pages changed since the parent image; the
 * image writer stores them (img.h).
 *
 * Consistency without a long stop. A snapshot is the memory of the tree at
 * one instant, the moment it is frozen, though most pages are copied while
 * it runs:
 *   1. scan the tracker, held (not committed): D1, what changed since the
 *      parent;
 *   2. copy, with process_vm_readv (shared memory: pread on the object),
 *      the present pages the image will store, into an unlinked staging
 *      file next to the image, while the tree runs;
 *   3. stop the tree (freeze.h), read which pages were written since step 1
 *      (PAGEMAP_SCAN: present and not write-protected, or, in shared
 *      mappings, a written page table entry dropped), scan again (D2, held),
 *      and re-read every page whose staged copy may be stale: those, what
 *      D2 adds to D1, and ranges the tracker cannot vouch for (its notes);
 *      the layout (which pages are present) is read here too;
 *   4. continue the tree, write the image from the staging file, commit it,
 *      and only then commit the scans to the holder, tagged with the new
 *      image's id. If anything fails before, nothing is committed: the next
 *      snapshot's scans return the same pages again.
 *
 * What is stored: every task's own pages (present or swapped) of anonymous
 * and hugetlb mappings and the private copies (COW pages) of private file
 * mappings, as an object per task keyed by pid; shared memory (MAP_SHARED
 * anonymous, memfd, SysV, tmpfs files) as one object per file, keyed by its
 * inode number (CRIU's shmid for anonymous shared memory and SysV), with
 * the pages the object holds (SEEK_DATA) within the windows the tree maps.
 * Shared file mappings of regular files are the file's, not dumped; so are
 * [vdso] and the like. A delta stores a present page as "in parent" when
 * the tracker says it is clean and the parent lists it; anything else
 * present is data; what is not present is not listed (absent).
 */
#ifndef UFFDWP_SNAP_H__
#define UFFDWP_SNAP_H__

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "img/img.h"
#include "base/procfs.h"
#include "base/rangeset.h"

enum uffdwp_snap_phase {
	UFFDWP_SNAP_COPY,   /* copying while the tree runs */
	UFFDWP_SNAP_FROZEN, /* re-reading while it is stopped */
	UFFDWP_SNAP_WRITE,  /* compressing and writing the image */
};

/* Bytes of the phase done so far, of @total. */
typedef void (*uffdwp_snap_progress_fn)(void *arg, enum uffdwp_snap_phase phase, uint64_t done,
					uint64_t total);

struct uffdwp_snap_opts {
	pid_t pid;
	bool tree;	    /* the descendants too */
	const char *dir;    /* the new image */
	const char *parent; /* NULL: a full snapshot */
	struct uffdwp_img_opts img;
	unsigned int freeze_timeout_ms; /* 0: 10 s */
	uffdwp_snap_progress_fn progress;
	void *progress_arg;
};

enum uffdwp_snap_mode {
	UFFDWP_SNAP_DELTA, /* against the parent, which tracking is relative to */
	UFFDWP_SNAP_FULL,  /* no parent asked for */
	UFFDWP_SNAP_LOST,  /* a parent asked for, but no holder tracked the tree: full */
};

struct uffdwp_snap_result {
	uint8_t id[UFFDWP_IMG_ID_LEN]; /* of the new image */
	enum uffdwp_snap_mode mode;
	bool holder_started; /* a holder was started for later deltas */
	bool tracked;	     /* a holder tracked the tree through the snapshot */
	bool committed;	     /* and took the commit of its scans, tagged with id */
	uint64_t gen;	     /* the scan committed */
	uint32_t nr_tasks;
	uint32_t nr_shmem;
	struct uffdwp_img_stats st; /* of the new image */
	uint64_t copied_pages;	    /* read while the tree ran */
	uint64_t frozen_pages;	    /* read while it was stopped */
	uint64_t frozen_ns;	    /* how long it was stopped */
	uint64_t total_ns;
};

/*
 * Write a snapshot of @o->pid (and its tree) into @o->dir; see the top of
 * this file. Starts a holder when none tracks the tree. Returns 0 and fills
 * @res, or -errno with the reason logged: -ESRCH no such process (or it
 * died), -EACCES/-EPERM not allowed, -EEXIST @o->dir holds an image,
 * -ENOENT/-EBADMSG/-ELOOP the parent is no usable image chain, -ESTALE
 * tracking is not relative to the parent, -ETIMEDOUT the tree did not stop,
 * -ENOSPC and other write errors (nothing committed then), -EINVAL options.
 */
int uffdwp_snap(const struct uffdwp_snap_opts *o, struct uffdwp_snap_result *res);

/* The holder tag that names image @id: the id, then zeros. */
void uffdwp_snap_tag(const uint8_t *id, uint8_t *tag);

/*
 * Object id of the shared memory file (@dev, @ino) in an image: the inode
 * number for the kernel's internal shm mount (MAP_SHARED anonymous, memfd,
 * SysV: what CRIU calls shmid), else the inode number with bit 63 and the
 * device's minor number above bit 44 (tmpfs files).
 */
uint64_t uffdwp_snap_shmem_id(uint64_t dev, uint64_t ino);

/*
 * Pages of the mapping @v (its part [@start, @end)) that hold the task's
 * own data, with PAGEMAP_SCAN on @pagemap_fd (Linux 6.7): present or
 * swapped; in private file mappings only private copies; never a uffd-wp
 * marker, which pagemap shows as a swapped page. With @changed, also add
 * there the pages written since they were last write-protected (not
 * protected now), and in shared mappings the empty entries (a written entry
 * that was dropped). @present may be NULL. Returns 0 or -errno.
 */
int uffdwp_snap_vma_pages(int pagemap_fd, const struct uffdwp_vma *v, uint64_t start, uint64_t end,
			  struct uffdwp_rangeset *present, struct uffdwp_rangeset *changed);

#endif /* UFFDWP_SNAP_H__ */
