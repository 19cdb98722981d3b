// SPDX-License-Identifier: GPL-2.0
/*
 * The CRIU plugin: registration and the hooks, thin over criu_track.c.
 * Needs a CRIU with the memory tracking hooks (plugin ABI 0.3.0, see
 * criu-patches/); CRIU calls them only under --uffd-wp-track.
 *
 * Images stay CRIU's own raw format, so restore needs no plugin and the
 * plugin records nothing in the inventory.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <unistd.h>

#include <criu-plugin.h>

#include "criu_track.h"
#include "log.h"

/* CRIU's own, reachable because the criu binary exports its symbols. */
extern void print_on_level(unsigned int loglevel, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
extern int log_get_fd(void);

/* The process whose log is CRIU's: a holder forked from it must not write there. */
static pid_t log_owner;

/* uffdwp's levels are CRIU's: 1 error, 2 warning, 3 info, 4 debug. */
static void criu_log_sink(enum uffdwp_loglevel level, const char *msg)
{
	if (getpid() == log_owner)
		print_on_level(level, "uffdwp: %s", msg);
}

int uffdwp_criu_log_fd(void)
{
	return log_get_fd();
}

static int uffdwp_plugin_init(int stage)
{
	log_owner = getpid();
	uffdwp_log_set_sink(criu_log_sink);
	uffdwp_criu_track__reset();
	return 0;
}

static void uffdwp_plugin_exit(int stage, int ret)
{
	uffdwp_criu_track__reset();
	uffdwp_log_set_sink(NULL);
}

static int uffdwp_mem_track_task(struct cr_plugin_remote *r)
{
	return uffdwp_criu_track__task(r);
}

static int uffdwp_mem_dirty_ranges(pid_t pid, uint64_t start, uint64_t end,
				   const struct cr_mem_range **ranges, size_t *nr)
{
	return uffdwp_criu_track__dirty(pid, start, end, ranges, nr);
}

static int uffdwp_mem_track_finish(int status)
{
	return uffdwp_criu_track__finish(status, criu_get_image_dir());
}

/* The one symbol CRIU looks up; everything else stays hidden (uffdwp_plugin.map). */
extern cr_plugin_desc_t CR_PLUGIN_DESC __attribute__((visibility("default")));

/* CRIU's macros: cppcheck runs without CRIU's header in CI. */
// cppcheck-suppress unknownMacro
CR_PLUGIN_REGISTER("uffdwp", uffdwp_plugin_init, uffdwp_plugin_exit)

CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_TRACK_TASK, uffdwp_mem_track_task)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_DIRTY_RANGES, uffdwp_mem_dirty_ranges)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_TRACK_FINISH, uffdwp_mem_track_finish)
