// SPDX-License-Identifier: GPL-2.0
/*
 * The CRIU plugin: registration and the hooks, thin over criu_track.c.
 * Needs a CRIU with the memory tracking hooks (criu-patches/, plugin ABI
 * 0.4.0, with the page-data hook); CRIU calls them only under --uffd-wp-track.
 *
 * With --plugin-pages, pages images are written compressed (criu_pages.c);
 * the plugin then records itself in the inventory and restore, lazy-pages
 * and page-server read through it. Otherwise images stay CRIU's own raw
 * format.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <criu-plugin.h>

#include "criu_track.h"
#include "base/log.h"

/* CRIU's own, reachable because the criu binary exports its symbols. */
extern void print_on_level(unsigned int loglevel, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The process whose log is CRIU's: a holder forked from it must not write
 * there. 0: any (restore, lazy-pages and page-server start no holder; their
 * page reads happen in forked tasks or after daemonizing).
 */
static pid_t log_owner;

/* uffdwp's levels are CRIU's: 1 error, 2 warning, 3 info, 4 debug. */
static void criu_log_sink(enum uffdwp_loglevel level, const char *msg)
{
	if (!log_owner || getpid() == log_owner)
		print_on_level(level, "uffdwp: %s", msg);
}

/* CRIU's own: restore refuses images whose inventory names a plugin that did not answer this. */
extern bool check_and_remove_inventory_plugin(const char *name, size_t n);

static int uffdwp_plugin_init(int stage)
{
	log_owner =
	    stage == CR_PLUGIN_STAGE__DUMP || stage == CR_PLUGIN_STAGE__PRE_DUMP ? getpid() : 0;
	uffdwp_log_set_sink(criu_log_sink);
	uffdwp_criu_track__reset();
	uffdwp_criu_pages__init(stage);
	if (stage == CR_PLUGIN_STAGE__RESTORE)
		check_and_remove_inventory_plugin(UFFDWP_CRIU_PLUGIN_NAME,
						  strlen(UFFDWP_CRIU_PLUGIN_NAME) + 1);
	return 0;
}

static void uffdwp_plugin_exit(int stage, int ret)
{
	uffdwp_criu_pages__fini();
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

#ifdef CR_MEM_TRACK_TASKS_END
static int uffdwp_mem_track_finish(int status, unsigned int flags)
{
	return uffdwp_criu_track__finish(status, flags & CR_MEM_TRACK_TASKS_END,
					 criu_get_image_dir());
}
#else
/* A series without the flags: every successful run commits. */
static int uffdwp_mem_track_finish(int status)
{
	return uffdwp_criu_track__finish(status, false, criu_get_image_dir());
}
#endif

/* The one symbol CRIU looks up; everything else stays hidden (uffdwp_plugin.map). */
extern cr_plugin_desc_t CR_PLUGIN_DESC __attribute__((visibility("default")));

/* CRIU's macros: cppcheck runs without CRIU's header in CI. */
// cppcheck-suppress unknownMacro
CR_PLUGIN_REGISTER(UFFDWP_CRIU_PLUGIN_NAME, uffdwp_plugin_init, uffdwp_plugin_exit)

CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_TRACK_TASK, uffdwp_mem_track_task)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_DIRTY_RANGES, uffdwp_mem_dirty_ranges)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__MEM_TRACK_FINISH, uffdwp_mem_track_finish)
#if CRIU_PLUGIN_VERSION >= CRIU_PLUGIN_GEN_VERSION(0, 4, 0)
CR_PLUGIN_REGISTER_HOOK(CR_PLUGIN_HOOK__PAGES_OPEN, uffdwp_criu_pages__open)
#endif
