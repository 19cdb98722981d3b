// SPDX-License-Identifier: GPL-2.0
/*
 * CRIU's page data as compressed page files (PAGES_OPEN, plugin ABI 0.4.0).
 *
 * Under `criu pre-dump/dump/page-server --plugin-pages` every pages image
 * CRIU writes becomes uffdwp-pages-<id>.zst (img_criu_backend.h): the same
 * bytes in independent zstd frames with a seek table and a CRC32C per
 * frame. CRIU keeps its pagemap images and offsets, so parent links,
 * "in parent" entries and lazy restore work unchanged; a read of any
 * offset decompresses one frame (cached). Reading claims an image only
 * when its page file exists, so chains mixing CRIU's raw layers and ours
 * restore. A dump or pre-dump that wrote or stands on a compressed layer
 * records "uffdwp" in the inventory: restore then requires the plugin.
 *
 * UFFDWP_CRIU_IMAGES=raw in CRIU's environment leaves writing to CRIU
 * (for comparisons); UFFDWP_CRIU_LEVEL sets the zstd level, or "store"
 * (default 3 for pre-dumps, store for the frozen dump); UFFDWP_CRIU_VERIFY=1 makes
 * lazy-pages and a page server check every frame of an image when they
 * open it.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criu-plugin.h>

#include "criu_track.h"
#include "criu_backend/img_criu_backend.h"
#include "img/img_fcache.h"
#include "base/log.h"

#if CRIU_PLUGIN_VERSION >= CRIU_PLUGIN_GEN_VERSION(0, 4, 0)

/* CRIU's own (the criu binary exports its symbols). */
extern int add_inventory_plugin(const char *name);

/*
 * Decompressed frames of every page file this process reads, one budget
 * for all layers: lazy-pages reads a chain's layers by turns.
 */
#define READ_CACHE_FRAMES 64

static struct uffdwp_fcache *read_cache;
static unsigned int nr_readers;

static int run_stage = -1;
static bool in_inventory;
static uint64_t total_raw, total_stored;
static unsigned int nr_written;

struct pages_priv {
	uint32_t id;
	struct uffdwp_cpages_writer *w;
	struct uffdwp_cpages_reader *r;
};

static int record_in_inventory(void)
{
	if (in_inventory)
		return 0;
	if (run_stage != CR_PLUGIN_STAGE__DUMP && run_stage != CR_PLUGIN_STAGE__PRE_DUMP)
		return 0;
	if (add_inventory_plugin(UFFDWP_CRIU_PLUGIN_NAME))
		return -ENOMEM;
	in_inventory = true;
	return 0;
}

static int pages_write(void *priv, int pipe_fd, uint64_t len)
{
	struct pages_priv *p = priv;

	return uffdwp_cpages_writer__write_fd(p->w, pipe_fd, len);
}

static int pages_read(void *priv, void *buf, uint64_t len, uint64_t off)
{
	struct pages_priv *p = priv;

	return uffdwp_cpages_reader__read(p->r, buf, len, off);
}

static int pages_close(void *priv, int status)
{
	struct pages_priv *p = priv;
	uint64_t raw = 0, stored = 0;
	int err = 0;

	if (p->w && !status) {
		err = uffdwp_cpages_writer__commit(p->w, &raw, &stored);
		if (!err) {
			total_raw += raw;
			total_stored += stored;
			nr_written++;
		}
	}
	uffdwp_cpages_writer__free(p->w);
	if (p->r) {
		uffdwp_cpages_reader__free(p->r);
		nr_readers--;
	}
	free(p);
	return err;
}

static bool verify_at_open(void)
{
	const char *s = getenv("UFFDWP_CRIU_VERIFY");

	return s && *s && strcmp(s, "0");
}

static void writer_opts(struct uffdwp_img_opts *o)
{
	const char *s = getenv("UFFDWP_CRIU_LEVEL");
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	uffdwp_img_opts__init(o);
	/*
	 * A pre-dump writes while the tasks run, and writes most of the
	 * chain: spend more there (level 3: a third smaller than -1 on the
	 * demo). The final dump writes while they are frozen: raw blocks in
	 * zstd frames, at the cost of a copy, and no fsync() (40-90 ms for
	 * 41 MB here): under --uffd-wp-track the holder syncs the file system
	 * once the tasks run again, and CRIU never syncs its own images. A
	 * page server cannot tell the two apart and keeps the fast level.
	 */
	if (run_stage == CR_PLUGIN_STAGE__PRE_DUMP) {
		o->level = 3;
	} else if (run_stage == CR_PLUGIN_STAGE__DUMP) {
		o->level = UFFDWP_ZLEVEL_STORE;
		o->no_sync = true;
	}
	if (s && *s)
		o->level = strcmp(s, "store") ? atoi(s) : UFFDWP_ZLEVEL_STORE;
	/* Pages of a dump are written while the tasks are frozen. */
	o->threads = n > 1 ? (n < 4 ? n : 4) : 1;
}

int uffdwp_criu_pages__open(int dir_fd, uint32_t pages_id, int flags, struct cr_pages_io *io)
{
	struct uffdwp_img_opts o;
	struct pages_priv *p;
	const char *env;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->id = pages_id;
	if (flags == O_WRONLY) {
		env = getenv("UFFDWP_CRIU_IMAGES");
		if (env && !strcmp(env, "raw")) {
			free(p);
			return -ENOTSUP;
		}
		writer_opts(&o);
		p->w = uffdwp_cpages_writer__new(dir_fd, pages_id, &o);
		if (!p->w) {
			err = -errno;
			free(p);
			return err;
		}
		io->write = pages_write;
	} else {
		if (!read_cache) {
			read_cache = uffdwp_fcache__new(READ_CACHE_FRAMES);
			if (!read_cache) {
				free(p);
				return -ENOMEM;
			}
		}
		err = uffdwp_cpages_reader__open(dir_fd, pages_id, read_cache, &p->r);
		if (err) {
			free(p);
			/* No page file of ours: CRIU's own pages-<id>.img. */
			return err == -ENOENT ? -ENOTSUP : err;
		}
		nr_readers++;
		/*
		 * Every frame's CRC32C is checked when it is read. Lazy
		 * restore and a page server hand pages out long after the
		 * restore began, so a damaged frame is found then: lazy-pages
		 * poisons the pages it did not serve and the task gets
		 * SIGBUS, it never runs on wrong memory. Checking every frame
		 * at the start instead (UFFDWP_CRIU_VERIFY=1) refuses a
		 * damaged image before the tree runs, but reads the whole
		 * chain first: what lazy restore is there to avoid.
		 */
		if ((run_stage == CR_PLUGIN_STAGE__LAZY_PAGES ||
		     run_stage == CR_PLUGIN_STAGE__PAGE_SERVER) &&
		    verify_at_open()) {
			err = uffdwp_cpages_reader__verify(p->r);
			if (err) {
				pages_close(p, -1);
				return err;
			}
		}
		pr_debug("pages image %u: %s, %" PRIu64 " bytes\n", pages_id,
			 uffdwp_cpages_reader__path(p->r), uffdwp_cpages_reader__size(p->r));
	}
	/* A new layer, or one standing on a compressed parent, needs us to restore. */
	err = record_in_inventory();
	if (err) {
		pages_close(p, -1);
		return err;
	}
	io->priv = p;
	io->read = pages_read;
	io->close = pages_close;
	return 0;
}

#endif /* plugin ABI 0.4.0 */

void uffdwp_criu_pages__init(int stage)
{
#if CRIU_PLUGIN_VERSION >= CRIU_PLUGIN_GEN_VERSION(0, 4, 0)
	run_stage = stage;
	in_inventory = false;
	total_raw = total_stored = 0;
	nr_written = 0;
#endif
}

void uffdwp_criu_pages__fini(void)
{
#if CRIU_PLUGIN_VERSION >= CRIU_PLUGIN_GEN_VERSION(0, 4, 0)
	if (nr_written)
		pr_info("pages: %u images, %" PRIu64 " bytes of pages stored in %" PRIu64 "\n",
			nr_written, total_raw, total_stored);
	if (read_cache) {
		struct uffdwp_fcache_stats st;

		uffdwp_fcache__stats(read_cache, &st);
		pr_info("pages: %" PRIu64 " frames decompressed, %" PRIu64
			" reads from the cache\n",
			st.loads, st.hits);
		/* CRIU may close page reads after the plugins' fini. */
		if (!nr_readers) {
			uffdwp_fcache__free(read_cache);
			read_cache = NULL;
		}
	}
#endif
}
