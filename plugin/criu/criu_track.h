/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory change tracking for CRIU: what the plugin's MEM_* hooks do, over
 * the holder of the core library. Knows CRIU only through the plugin
 * header's types; the hooks themselves are in criu_plugin.c.
 *
 * One CRIU run (a pre-dump or a dump) is one transaction:
 *   - the first hook of the run names the root task (CRIU handles the root
 *     first) and, if a holder tracks it, scans once while the tasks are
 *     frozen: the report answers every dirty query of the run;
 *   - a task the holder does not track yet gets a userfaultfd created in it
 *     and handed to the holder, then the holder scans again, so that the
 *     task is protected before CRIU lets it run;
 *   - after the images are written the last scan is committed, tagged with
 *     a random id also written into the images directory; a later run only
 *     trusts the holder if its parent images carry that same id.
 */
#ifndef UFFDWP_CRIU_TRACK_H__
#define UFFDWP_CRIU_TRACK_H__

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <criu-plugin.h>

/* The file in an images directory naming the tracker state it matches. */
#define UFFDWP_TRACK_ID_FILE "uffdwp-track.id"

/*
 * Start (or refresh) tracking of @r's task, which CRIU holds frozen.
 * Returns 0, -ENOTSUP when the task cannot be tracked (it is then dumped
 * whole every time), or -errno on failure.
 */
int uffdwp_criu_track__task(struct cr_plugin_remote *r);

/*
 * Pages of [@start, @end) of @pid written since the parent images:
 * sorted, page-aligned, disjoint ranges in *@ranges (ours until the next
 * call). Returns 0, -ENOTSUP when there is no trusted answer (no holder,
 * unknown task, parent images that are not the ones tracking is relative
 * to), or -errno.
 */
int uffdwp_criu_track__dirty(pid_t pid, uint64_t start, uint64_t end,
			     const struct cr_mem_range **ranges, size_t *nr);

/*
 * The run is over. @status 0: the images in @img_dir are written; make
 * them durable and commit the run's last scan. Otherwise the scan stays
 * pending in the holder and comes back in the next one. Returns 0 or
 * -errno; a commit that cannot be made only costs a fuller next dump and is
 * logged, not returned.
 */
int uffdwp_criu_track__finish(int status, bool tasks_end, int img_dir);

/* CRIU's own: its log descriptor, for a holder's messages while it starts. */
extern int log_get_fd(void);

/* Forget the run's state (also done by finish). */
void uffdwp_criu_track__reset(void);

/* The plugin's name, in the inventory of images that need it. */
#define UFFDWP_CRIU_PLUGIN_NAME "uffdwp"

/* Page data as compressed page files (criu_pages.c, PAGES_OPEN). */
void uffdwp_criu_pages__init(int stage);
void uffdwp_criu_pages__fini(void);
#if CRIU_PLUGIN_VERSION >= CRIU_PLUGIN_GEN_VERSION(0, 4, 0)
int uffdwp_criu_pages__open(int dir_fd, uint32_t pages_id, int flags, struct cr_pages_io *io);
#endif

#endif /* UFFDWP_CRIU_TRACK_H__ */
