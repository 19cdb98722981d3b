/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Live migration of a process tree with CRIU: iterative pre-copy over
 * CRIU's page server with --uffd-wp-track, a convergence model that
 * predicts the final dump's downtime, the cut-over, and a rollback that
 * leaves the source running as it was when anything fails before the
 * destination runs. docs/migrate.md has the protocol and the model.
 *
 * The source and the destination are two invocations (two hosts); each
 * talks to its own CRIU. No transport of our own carries memory: pages go
 * through CRIU's page server on connections this room opens and hands to
 * CRIU (--ps-socket), and the control channel (wire.h) carries commands
 * and the few image files CRIU writes locally.
 */
#ifndef UFFDWP_MIGRATE_H__
#define UFFDWP_MIGRATE_H__

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* What uffdwp_migrate__source() and __dest() return (the exit codes). */
enum uffdwp_migrate_result {
	MIG_OK = 0,		 /* the tree runs on the destination */
	MIG_ROLLED_BACK = 1,	 /* failed; the source runs as before, untracked */
	MIG_USAGE = 2,		 /* bad arguments: nothing was started */
	MIG_POSTCOPY_FAILED = 3, /* failed after the cut-over: see the message */
	MIG_ROLLBACK_FAILED = 4, /* failed, and the source could not be resumed */
};

enum uffdwp_migrate_ev {
	MIG_EV_ITERATION, /* a pre-dump (or the final dump) is at the destination */
	MIG_EV_CUTOVER,	  /* the decision to stop pre-copying, and why */
	MIG_EV_RUNNING,	  /* the destination runs the tree */
	MIG_EV_ROLLBACK,  /* what failed, and what was undone */
	MIG_EV_INFO,	  /* a line for the user (message) */
};

struct uffdwp_migrate_event {
	enum uffdwp_migrate_ev kind;
	unsigned int iter;   /* 1..: pre-dumps, then the final dump */
	bool final;	     /* the frozen dump */
	uint64_t pages;	     /* pages sent by this run */
	uint64_t bytes;	     /* bytes sent by this run: pages and image files */
	double duration_ms;  /* the run, from CRIU's start to its images being there */
	double frozen_ms;    /* how long CRIU kept the tasks frozen */
	double dirty_rate;   /* pages/s written between this scan and the one before; 0: unknown */
	double bandwidth;    /* bytes/s the page transfer reached */
	double predicted_ms; /* the final dump's downtime if it ran now; < 0: unknown */
	uint64_t predicted_pages; /* what it would send */
	const char *reason;	  /* CUTOVER: why; ROLLBACK: what failed */
	const char *message;	  /* INFO, ROLLBACK: what was done */
};

typedef void (*uffdwp_migrate_cb)(void *arg, const struct uffdwp_migrate_event *ev);

struct uffdwp_migrate_opts {
	pid_t pid;		/* the root of the tree */
	const char *to;		/* the destination: ADDR:PORT */
	const char *criu;	/* CRIU binary */
	const char *libdir;	/* CRIU's -L: where our plugin is; NULL: CRIU's default */
	const char *work_dir;	/* local images; NULL: a new one under /var/tmp */
	bool keep;		/* keep the local images after a success */
	bool track;		/* --uffd-wp-track; false: stop-and-copy only */
	bool postcopy;		/* leave the final dump's pages on the source, served lazily */
	bool lazy_restore;	/* the destination restores from its images with lazy-pages */
	bool plugin_pages;	/* compressed images (--plugin-pages) */
	bool tcp_established;	/* --tcp-established on both sides */
	bool shell_job;		/* --shell-job on both sides */
	double max_downtime_ms; /* cut over once the prediction is below */
	unsigned int max_iters; /* pre-dumps at most; 0: no pre-dump */
	double restore_est_ms;	/* restore time in the prediction; < 0: by size */
	int timeout_s;		/* for one CRIU run or one answer of the destination */
	char **criu_args;	/* more arguments for every pre-dump and dump */
	int nr_criu_args;
	volatile sig_atomic_t *signals; /* SIGINT/SIGTERM count, bumped by the caller */
	uffdwp_migrate_cb cb;
	void *cb_arg;
};

struct uffdwp_migrate_report {
	unsigned int iterations; /* CRIU runs: pre-dumps and the final dump */
	double total_ms;	 /* from the start to the destination running */
	double downtime_ms;	 /* source frozen -> destination running */
	double frozen_ms;	 /* the final dump's frozen time as CRIU counts it */
	double images_ms;    /* of the downtime: from the dump's end until its images were over */
	double restore_ms;   /* of the downtime: the destination's criu restore */
	double postcopy_ms;  /* post-copy: from running until the last page was there */
	double predicted_ms; /* what the model said before the final dump */
	uint64_t pages_sent;
	uint64_t bytes_sent;
	uint64_t memory_bytes;	 /* the tree's memory as the first run found it */
	pid_t dest_pid;		 /* the restored root, as the destination numbers it */
	const char *stop_reason; /* why pre-copy stopped */
	char error[1024];	 /* what failed, when the result is not MIG_OK */
};

/* The source side. Fills @rep and returns an enum uffdwp_migrate_result. */
int uffdwp_migrate__source(const struct uffdwp_migrate_opts *o, struct uffdwp_migrate_report *rep);

struct uffdwp_migrate_dest_opts {
	const char *listen; /* ADDR:PORT */
	const char *dir;    /* where the images go; made, or empty */
	const char *criu;
	const char *libdir;
	int timeout_s; /* waiting for the source; 0: none */
	volatile sig_atomic_t *signals;
	uffdwp_migrate_cb cb;
	void *cb_arg;
};

/*
 * The destination side: serve one migration. Returns MIG_OK when the tree
 * runs here, MIG_ROLLED_BACK when it failed (everything it wrote into @dir
 * removed again), MIG_POSTCOPY_FAILED when it failed after the tree started.
 * @rep gets what is known here (dest_pid, error).
 */
int uffdwp_migrate__dest(const struct uffdwp_migrate_dest_opts *o,
			 struct uffdwp_migrate_report *rep);

#endif /* UFFDWP_MIGRATE_H__ */
