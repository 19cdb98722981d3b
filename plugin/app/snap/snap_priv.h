/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The insides of `uffdwp snap`, shared by its files: snap.c (the sequence:
 * tracking, the running copy, the freeze, the frozen part), snap_pass.c
 * (the objects, the passes over each task's mappings and shared memory,
 * the tracker's answers), snap_copy.c (staging the pages and writing the
 * image).
 */
#ifndef UFFDWP_SNAP_PRIV_H__
#define UFFDWP_SNAP_PRIV_H__

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "snap/snap.h"
#include "track/tracker.h"

#define PG	      4096ULL
#define CHUNK_PAGES   256 /* pages per read, per staging write, per add_pages */
#define PROGRESS_GAP  (16ULL << 20)
#define DEF_FREEZE_MS 10000

/* Where pages of an object sit in the staging file: [start, end) at @off. */
struct srun {
	uint64_t start;
	uint64_t end;
	uint64_t off;
};

struct sruns {
	struct srun *r;
	size_t nr, cap;
};

enum { STAGE_COPY, STAGE_FROZEN };

struct sobj {
	uint32_t kind; /* UFFDWP_IMG_OBJ_* */
	uint64_t id;
	uint64_t dev, ino; /* SHMEM: the file */
	bool live;	   /* seen in the current pass */
	int fd;		   /* SHMEM: the file, during a pass; TASK: /proc/PID/mem */
	bool has_listed;
	struct uffdwp_rangeset listed;	/* what the parent image lists */
	struct uffdwp_rangeset win;	/* SHMEM: offsets the tree maps */
	struct uffdwp_rangeset present; /* holds data now */
	struct uffdwp_rangeset dirty;	/* changed since the parent */
	struct uffdwp_rangeset changed; /* may differ from its staged copy */
	struct uffdwp_rangeset staged;	/* copied while the tree ran */
	struct uffdwp_rangeset data;	/* to store as data */
	struct uffdwp_rangeset fresh;	/* of those, read while frozen */
	struct sruns runs[2];		/* STAGE_COPY, STAGE_FROZEN */
};

/* One dumpable mapping of a task in the current pass. */
struct smap {
	pid_t pid;
	size_t obj;	/* index in snap.objs of the object it shows */
	uint64_t start; /* [start, end) virtual */
	uint64_t end;
	uint64_t pgoff; /* where start lies in the object (tasks: start) */
};

struct stask {
	pid_t pid;
	struct uffdwp_rangeset changed; /* virtual: written since protected */
};

struct snap {
	const struct uffdwp_snap_opts *o;
	struct uffdwp_snap_result *res;
	bool delta, tracked;
	struct uffdwp_chain *chain;
	struct uffdwp_img *pimg; /* the parent image, in chain */
	struct uffdwp_img_writer *w;
	struct uffdwp_report *rep1, *rep2;
	struct sobj *objs;
	size_t nr_objs, cap_objs;
	struct smap *maps;
	size_t nr_maps, cap_maps;
	struct stask *tasks;
	size_t nr_tasks, cap_tasks;
	int stage_fd;
	uint64_t stage_off;
	uint8_t *buf;
	enum uffdwp_snap_phase phase;
	uint64_t prog_done, prog_total, prog_last;
};

enum sfield { F_DIRTY, F_CHANGED };

static inline bool holder_gone(int err)
{
	return err == -ENOENT || err == -ECONNREFUSED || err == -ECONNRESET;
}

/* snap_copy.c: progress of the current phase, reported every PROGRESS_GAP bytes. */
void snap_progress(struct snap *s, uint64_t bytes);
void snap_progress_start(struct snap *s, enum uffdwp_snap_phase phase, uint64_t total);

/* snap_pass.c: objects, and the passes over the tree that fill them. */
void snap_obj_fini(struct sobj *ob);
/* Forget the previous pass: tasks, mappings, open files, what was present. */
void snap_pass_reset(struct snap *s);
/* Close the files a pass opened; what it found stays. */
void snap_pass_close_files(struct snap *s);
/* Each task's mappings, and what is present (@frozen: the final pass). */
int snap_pass_tasks(struct snap *s, bool frozen);
/* Each shared memory object's pages, through the object itself. */
int snap_pass_shmem(struct snap *s);
/* D1, projected: what the first scan found, for the copy while running. */
int snap_dirty_pass1(struct snap *s);
/* D2 and all that may differ from the staged copies, for the frozen pass. */
int snap_dirty_pass2(struct snap *s);

/* snap_copy.c: the staging file, the copies into it, the image out of it. */
int snap_stage_open(struct snap *s);
/* While the tree runs: copy what the image will most likely store. */
int snap_copy_running(struct snap *s);
/* While it is stopped: read what the staging file lacks or may hold stale. */
int snap_read_frozen(struct snap *s);
/* Write the image from the staging file and the frozen reads. */
int snap_write_image(struct snap *s);

#endif /* UFFDWP_SNAP_PRIV_H__ */
