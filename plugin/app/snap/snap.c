// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "snap: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "snap/freeze.h"
#include "track/holder.h"
#include "base/log.h"
#include "snap/snap_priv.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ----------------------------------------------------------------- the snap */

static int start_holder(struct snap *s)
{
	struct uffdwp_holder_opts ho = {
	    .track = {.pid = s->o->pid, .tree = s->o->tree},
	    .idle_timeout_s = UFFDWP_IDLE_TIMEOUT_S,
	};
	int r = uffdwp_holder_spawn(&ho);

	if (r > 0) {
		s->tracked = true;
		s->res->holder_started = true;
		return 0;
	}
	/* Someone started one since we looked: use it. */
	if (r == -EBUSY && uffdwp_holder_running(s->o->pid) > 0) {
		s->tracked = true;
		return 0;
	}
	if (r == -ESRCH || r == -EPERM || r == -EACCES)
		return r;
	pr_warn("cannot track %d (%s): copying with the tree stopped; the next snapshot "
		"cannot be a delta\n",
		s->o->pid, uffdwp_strerror(-r));
	return 0;
}

/* No holder tracks the tree (any more): a full image without parent, and a new holder. */
static int tracking_lost(struct snap *s, const char *when)
{
	if (s->chain)
		pr_warn("tracking lost for %d (%s): writing a full snapshot, without a "
			"parent\n",
			s->o->pid, when);
	s->res->mode = s->chain ? UFFDWP_SNAP_LOST : UFFDWP_SNAP_FULL;
	s->delta = s->tracked = false;
	/* The holder must not inherit the chain's files. */
	uffdwp_chain__close(s->chain);
	s->chain = NULL;
	s->pimg = NULL;
	return start_holder(s);
}

/* Decide between delta, full and lost; start a holder if none runs. */
static int setup_tracking(struct snap *s)
{
	uint8_t want[UFFDWP_HOLDER_TAG_LEN], zero[UFFDWP_HOLDER_TAG_LEN] = {0};
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	struct uffdwp_holder_status st;
	int hp, err;

	hp = uffdwp_holder_running(s->o->pid);
	if (hp < 0) {
		pr_err("cannot tell whether %d is tracked: %s\n", s->o->pid, uffdwp_strerror(-hp));
		return hp;
	}
	if (hp > 0) {
		err = uffdwp_holder_status(s->o->pid, &st);
		if (holder_gone(err)) {
			hp = 0;
		} else if (err) {
			pr_err("cannot ask the holder of %d: %s\n", s->o->pid,
			       uffdwp_strerror(-err));
			return err;
		}
	}
	if (!hp)
		return tracking_lost(s, "no holder runs");
	if (!s->chain) {
		s->res->mode = UFFDWP_SNAP_FULL;
		s->tracked = true;
		return 0;
	}
	uffdwp_snap_tag(uffdwp_img__info(s->pimg)->id, want);
	if (!memcmp(st.tag, want, sizeof(want))) {
		s->res->mode = UFFDWP_SNAP_DELTA;
		s->delta = s->tracked = true;
		return 0;
	}
	uffdwp_img__id_str(uffdwp_img__info(s->pimg)->id, id);
	if (!memcmp(st.tag, zero, sizeof(zero)))
		pr_err("tracking of %d is not relative to %s (image %s): its holder never "
		       "committed an image; take a full snapshot (no --parent) first\n",
		       s->o->pid, s->o->parent, id);
	else
		pr_err("tracking of %d is not relative to %s (image %s) but to another image; "
		       "take a delta of that one, or a full snapshot\n",
		       s->o->pid, s->o->parent, id);
	return -ESTALE;
}

static int check_target(pid_t pid)
{
	char path[64];
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	err = -errno;
	if (err == -ENOENT)
		pr_err("no process %d\n", pid);
	else
		pr_err("cannot read the memory of %d: %s\n", pid, uffdwp_strerror(-err));
	return err == -ENOENT ? -ESRCH : err;
}

/*
 * What can be found wrong with @dir before any tracking starts: a holder
 * started for a snapshot that then cannot be written would outlive it.
 */
static int check_dir(const char *dir)
{
	char path[4096], *slash;
	struct stat st;
	int err;

	if (!stat(dir, &st)) {
		if (!S_ISDIR(st.st_mode)) {
			pr_err("%s is not a directory\n", dir);
			return -ENOTDIR;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, UFFDWP_IMG_INDEX);
		if (!access(path, F_OK)) {
			pr_err("%s already holds an image\n", dir);
			return -EEXIST;
		}
		snprintf(path, sizeof(path), "%s", dir);
	} else if (errno == ENOENT) {
		/* Created by the writer: its parent must take it. */
		snprintf(path, sizeof(path), "%s", dir);
		slash = strrchr(path, '/');
		if (slash == path)
			path[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			snprintf(path, sizeof(path), ".");
	} else {
		err = -errno;
		pr_perror("Can't stat %s", dir);
		return err;
	}
	if (access(path, W_OK | X_OK)) {
		err = -errno;
		pr_perror("Can't write into %s", path);
		return err;
	}
	return 0;
}

/*
 * A snapshot that failed after starting a holder stops it again: the
 * process is left as it was found. Says so if it cannot.
 */
static void undo_holder(struct snap *s)
{
	struct uffdwp_stop_stats st;
	int i, err;

	if (!s->res->holder_started)
		return;
	err = uffdwp_holder_stop(s->o->pid, 0, &st);
	for (i = 0; !err && i < 500 && uffdwp_holder_running(s->o->pid) > 0; i++)
		usleep(10000);
	if (err || uffdwp_holder_running(s->o->pid) > 0)
		pr_warn("the holder started for %d is still running ('uffdwp track stop -t %d' "
			"ends it): %s\n",
			s->o->pid, s->o->pid, err ? uffdwp_strerror(-err) : "did not exit");
	else
		s->res->holder_started = false;
}

static void snap_free(struct snap *s)
{
	size_t i;

	snap_pass_reset(s);
	for (i = 0; i < s->nr_objs; i++)
		snap_obj_fini(&s->objs[i]);
	free(s->objs);
	free(s->maps);
	free(s->tasks);
	free(s->buf);
	if (s->stage_fd >= 0)
		close(s->stage_fd);
	uffdwp_img_writer__free(s->w);
	uffdwp_report__free(s->rep1);
	uffdwp_report__free(s->rep2);
	uffdwp_chain__close(s->chain);
}

static int scan(struct snap *s, struct uffdwp_report **rep)
{
	int err = uffdwp_holder_scan(s->o->pid, rep);

	if (err && !holder_gone(err))
		pr_err("scan of %d failed: %s\n", s->o->pid, uffdwp_strerror(-err));
	return err;
}

/* Steps 3: frozen. The tree is stopped only inside; thawed on every path. */
static int frozen_part(struct snap *s)
{
	struct uffdwp_freezer fz;
	uint64_t t0;
	unsigned int tmo = s->o->freeze_timeout_ms ? s->o->freeze_timeout_ms : DEF_FREEZE_MS;
	int err;

	/* Counted from the first SIGSTOP: the wait for the tree to stop is part of it. */
	t0 = now_ns();
	err = uffdwp_freeze(s->o->pid, s->o->tree, tmo, &fz);
	if (err)
		return err;
	err = snap_pass_tasks(s, true);
	if (!err && s->tracked) {
		err = scan(s, &s->rep2);
		if (holder_gone(err)) {
			if (s->delta) {
				pr_err("tracking of %d was lost during the snapshot; the next one "
				       "will be full\n",
				       s->o->pid);
				err = -ECONNRESET;
			} else {
				pr_warn("tracking of %d was lost during the snapshot\n", s->o->pid);
				s->tracked = false;
				err = 0;
			}
		}
	}
	if (!err)
		err = snap_dirty_pass2(s);
	/* Files of shared memory opened only now, after the scan: see snap.h. */
	if (!err)
		err = snap_pass_shmem(s);
	if (!err)
		err = snap_read_frozen(s);
	snap_pass_close_files(s);
	uffdwp_thaw(&fz);
	s->res->frozen_ns = now_ns() - t0;
	return err;
}

int uffdwp_snap(const struct uffdwp_snap_opts *o, struct uffdwp_snap_result *res)
{
	uint8_t tag[UFFDWP_HOLDER_TAG_LEN];
	struct snap s = {.o = o, .res = res, .stage_fd = -1};
	uint64_t t0 = now_ns();
	int err;

	memset(res, 0, sizeof(*res));
	err = check_target(o->pid);
	if (!err)
		err = check_dir(o->dir);
	if (!err)
		err = uffdwp_img_opts__check(&o->img);
	if (err)
		return err;
	if (o->parent) {
		s.chain = uffdwp_chain__open(o->parent);
		if (!s.chain) {
			err = -errno;
			pr_err("parent %s: not a usable image chain (%s)\n", o->parent,
			       uffdwp_strerror(-err));
			return err;
		}
		s.pimg = uffdwp_chain__image(s.chain, 0);
	}
	/* Before any file of ours is open: a holder we start inherits them all. */
	err = setup_tracking(&s);
	if (!err && s.tracked) {
		err = scan(&s, &s.rep1);
		if (holder_gone(err) && !res->holder_started) {
			/* It went away since we asked: start over, with a holder of ours. */
			err = tracking_lost(&s, "its holder exited");
			if (!err && s.tracked)
				err = scan(&s, &s.rep1);
		}
		if (holder_gone(err)) {
			pr_warn("tracking of %d is lost: copying with the tree stopped\n", o->pid);
			s.tracked = false;
			err = 0;
		}
	}
	if (err)
		goto out;

	s.w = uffdwp_img_writer__begin(o->dir, s.delta ? o->parent : NULL, &o->img);
	if (!s.w) {
		err = -errno;
		goto out;
	}
	s.buf = malloc(CHUNK_PAGES * PG);
	if (!s.buf) {
		err = -ENOMEM;
		goto out;
	}
	err = snap_stage_open(&s);
	if (err)
		goto out;

	/* 1, 2: while the tree runs. Untracked, nothing copied now could be trusted. */
	if (s.tracked) {
		err = snap_pass_tasks(&s, false);
		if (!err)
			err = snap_dirty_pass1(&s);
		if (!err)
			err = snap_pass_shmem(&s);
		if (!err)
			err = snap_copy_running(&s);
		snap_pass_close_files(&s);
		if (err)
			goto out;
	}
	err = frozen_part(&s);
	if (err)
		goto out;

	/* 4: the image, then the commit. */
	err = snap_write_image(&s);
	if (err)
		goto out;
	res->tracked = s.tracked;
	if (s.tracked && s.rep2) {
		uffdwp_snap_tag(res->id, tag);
		err = uffdwp_holder_commit_tag(o->pid, s.rep2->gen, tag);
		if (err) {
			pr_warn("the image is written, but the holder of %d did not take the "
				"commit (%s): no delta can be taken against it\n",
				o->pid, uffdwp_strerror(-err));
			err = 0;
		} else {
			res->committed = true;
			res->gen = s.rep2->gen;
		}
	}
out:
	/* Files closed first: the holder must not wait on ours. */
	snap_free(&s);
	if (err)
		undo_holder(&s);
	res->total_ns = now_ns() - t0;
	return err;
}
