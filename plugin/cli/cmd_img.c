// SPDX-License-Identifier: GPL-2.0
/*
 * uffdwp img: show, verify, stats, read, merge and flatten compressed images,
 * and (hidden, for tests until `uffdwp snap` exists) write one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "img/img.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

#define PAGE  UFFDWP_IMG_PAGE_SIZE
#define SHIFT UFFDWP_IMG_PAGE_SHIFT

static const char write_usage[] =
    "usage: uffdwp img write --to DIR [--parent DIR] [OPTS] --spec FILE\n"
    "       uffdwp img write --to DIR [--parent DIR] [OPTS] --from-pid PID\n"
    "                        [--ranges A-B,...] [--dirty A-B,...]\n"
    "\n"
    "A test driver, not a snapshot tool: it writes whatever it is told, with no\n"
    "dirty tracking and no consistency (`uffdwp snap` will do that). With\n"
    "--from-pid it reads the readable mappings of a process (those overlapping\n"
    "--ranges, if given) with process_vm_readv while it runs; with --parent and\n"
    "--dirty, only pages inside --dirty are read and the rest are marked in parent.\n"
    "A spec file has one line per object or range, ranges in ascending order:\n"
    "  task PID | shmem ID\n"
    "  data ADDR NPAGES FILE [OFFSET]   pages from FILE at byte OFFSET\n"
    "  mem ADDR NPAGES                  pages from the task's own memory\n"
    "  parent ADDR NPAGES | zero ADDR NPAGES | fill ADDR NPAGES BYTE\n";

/* ------------------------------------------------------------------ helpers */

static int parse_u64(const char *s, uint64_t *v)
{
	if (cli_num__u64(s, CLI_NUM_SUFFIX, 0, UINT64_MAX, v)) {
		cli_err("img: '%s' is not a number\n", s);
		return -1;
	}
	return 0;
}

static int parse_int(const char *s, int *v)
{
	return cli_num__int(s, -1000, 1000, v);
}

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case UFFDWP_IMG_R_DATA:
		return "data";
	case UFFDWP_IMG_R_PARENT:
		return "parent";
	case UFFDWP_IMG_R_ZERO:
		return "zero";
	case UFFDWP_IMG_R_FILL:
		return "fill";
	}
	return "?";
}

static const char *obj_name(uint32_t kind)
{
	return kind == UFFDWP_IMG_OBJ_TASK ? "task" : "shmem";
}

static double ratio(uint64_t raw, uint64_t stored)
{
	return stored ? (double)raw / stored : 0;
}

enum {
	OPT_TO = 0x100,
	OPT_PARENT,
	OPT_LEVEL,
	OPT_FRAME,
	OPT_THREADS,
	OPT_SPEC,
	OPT_FROM_PID,
	OPT_RANGES,
	OPT_DIRTY,
	OPT_TASK,
	OPT_SHMEM,
};

static const struct cli_sub img_subs[] = {
    {"show", "DIR", "what the image in DIR holds, per task and shared memory object",
     "Its id, version, place in the chain (depth, and the parent's id and index CRC), its "
     "frames, and each object's ranges: data (stored here), zero/fill (pages that repeat "
     "one byte: no data), parent (the parent's). Addresses are hexadecimal, as img read "
     "takes them."},
    {"verify", "DIR", "check every checksum of DIR and of all its parents",
     "Opens the chain (every index, seek table and parent link), reads every frame and "
     "checks its CRC32C and size, and checks that every page in parent is the parent's. "
     "A failure names the file, the offset and what is wrong."},
    {"stats", "DIR", "raw and stored sizes and ratios, per image, object and region",
     "Stored sizes are the page file's; the index is counted apart (it is a few hundred "
     "bytes: its share of the raw size is nearly always 0.000 %)."},
    {"read", "DIR (--task PID | --shmem ID) [ADDR NPAGES] [-o FILE]",
     "copy pages out of the chain (to stdout by default)",
     "ADDR is hexadecimal, with or without 0x (as img show and /proc/PID/maps print it), "
     "NPAGES decimal. Without them, every page the newest image lists, in order."},
    {"merge", "DIR --to OUT [--level N] [--frame-size B] [--threads N]",
     "collapse the chain ending at DIR into one base image OUT", "OUT must not exist or be empty."},
    {"flatten", "DIR --to OUT", "write the chain as plain CRIU pagemap-*.img and pages-*.img",
     "An unpatched CRIU restores them. OUT must not exist or be empty: pages images left "
     "there from before would lie next to pagemaps that do not refer to them. Progress goes "
     "to stderr when it is a terminal, never with --json."},
    {NULL, NULL, NULL, NULL},
};

static const struct cli_opt img_opts[] = {
    {"task", OPT_TASK, "PID", " read ", "the pages of task PID"},
    {"shmem", OPT_SHMEM, "ID", " read ", "the pages of shared memory object ID"},
    {"output", 'o', "FILE", " read ", "write the pages to FILE"},
    {"to", OPT_TO, "OUT", " merge flatten write ", "the directory to write"},
    {"level", OPT_LEVEL, "N", " merge write ", "zstd level (default -1)"},
    {"frame-size", OPT_FRAME, "B", " merge write ",
     "raw bytes per frame (default 64K; K, M suffixes)"},
    {"threads", OPT_THREADS, "N", " merge write ", "compression threads (default 1)"},
    /* Hidden: the test driver's (img write --help). */
    {"parent", OPT_PARENT, "DIR", " write ", NULL},
    {"spec", OPT_SPEC, "FILE", " write ", NULL},
    {"from-pid", OPT_FROM_PID, "PID", " write ", NULL},
    {"ranges", OPT_RANGES, "LIST", " write ", NULL},
    {"dirty", OPT_DIRTY, "LIST", " write ", NULL},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_cmd cli_img = {
    .name = "img",
    .summary = "inspect, verify, merge and flatten compressed images",
    .fn = cmd_img,
    .text = "The images 'uffdwp snap' and the CRIU plugin write: zstd frames of pages with a "
	    "seek table, an index of ranges per task and shared memory object, a parent "
	    "link; images/FORMAT.md has the bytes.",
    .subs = img_subs,
    .opts = img_opts,
};

struct img_args {
	const char *sub;
	const char *to, *parent, *spec, *ranges, *dirty, *out;
	int pid;
	uint32_t obj_kind;
	uint64_t obj_id;
	bool has_obj;
	struct uffdwp_img_opts opts;
	int npos;
	char **pos;
};

/* Returns -1 to go on, or the exit code (CLI_OK after --help). */
static int parse_args(int argc, char **argv, struct img_args *a)
{
	const struct cli_sub *sub;
	struct cli_parser p;
	uint64_t v;
	int c, r;

	memset(a, 0, sizeof(*a));
	uffdwp_img_opts__init(&a->opts);
	cli_parser__init(&p, &cli_img, argc, argv);
	while ((c = cli_parser__next(&p, argc, argv)) != CLI_OPT_END) {
		switch (c) {
		case OPT_TO:
			a->to = optarg;
			break;
		case OPT_PARENT:
			a->parent = optarg;
			break;
		case OPT_SPEC:
			a->spec = optarg;
			break;
		case OPT_RANGES:
			a->ranges = optarg;
			break;
		case OPT_DIRTY:
			a->dirty = optarg;
			break;
		case 'o':
			a->out = optarg;
			break;
		case OPT_LEVEL:
			if (parse_int(optarg, &a->opts.level)) {
				cli_err("img: bad --level '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		case OPT_FRAME:
			if (parse_u64(optarg, &v) || v > UINT32_MAX)
				return CLI_USAGE;
			a->opts.frame_size = v;
			break;
		case OPT_THREADS:
			if (parse_int(optarg, &a->opts.threads)) {
				cli_err("img: bad --threads '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		case OPT_FROM_PID:
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return CLI_USAGE;
			break;
		case OPT_TASK:
		case OPT_SHMEM:
			if (parse_u64(optarg, &a->obj_id))
				return CLI_USAGE;
			a->obj_kind = c == OPT_TASK ? UFFDWP_IMG_OBJ_TASK : UFFDWP_IMG_OBJ_SHMEM;
			a->has_obj = true;
			break;
		default:
			cli_usage(&cli_img, NULL);
			return CLI_USAGE;
		}
	}
	a->npos = argc - optind;
	a->pos = argv + optind;
	if (a->npos) {
		a->sub = a->pos[0];
		a->pos++;
		a->npos--;
	}
	/* The test driver has its own help; it is no command of the table. */
	if (a->sub && !strcmp(a->sub, "write")) {
		if (p.help) {
			fputs(write_usage, stdout);
			return CLI_OK;
		}
		return -1;
	}
	sub = cli_find_sub(&cli_img, a->sub);
	if (a->sub && !sub) {
		cli_err("unknown img command '%s'\n", a->sub);
		cli_usage(&cli_img, NULL);
		return CLI_USAGE;
	}
	r = cli_parser__finish(&p, a->sub);
	if (r >= 0)
		return r;
	if (!a->sub) {
		cli_err("img needs a command\n");
		cli_usage(&cli_img, NULL);
		return CLI_USAGE;
	}
	return -1;
}

/* The arguments of @a->sub must be @min to @max: say which one is missing or stray. */
static bool check_npos(const struct img_args *a, int min, int max, const char *what)
{
	const struct cli_sub *sub = cli_find_sub(&cli_img, a->sub);

	if (a->npos < min) {
		cli_err("img %s: %s missing\n", a->sub, what);
	} else if (a->npos > max) {
		cli_err("img %s: unexpected argument '%s'\n", a->sub, a->pos[max]);
	} else {
		return true;
	}
	cli_usage(&cli_img, sub);
	return false;
}

/* For a command whose one argument is an images directory. */
static bool dir_args(const struct img_args *a)
{
	return check_npos(a, 1, 1, "the image directory is");
}

/* -------------------------------------------------------------------- show */

static void show_text(struct uffdwp_img *img)
{
	const struct uffdwp_img_info *in = uffdwp_img__info(img);
	const struct uffdwp_img_object *o;
	const struct uffdwp_img_range *r;
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	size_t i, k;

	printf("image %s\n", uffdwp_img__path(img));
	printf("  id        %s\n", uffdwp_img__id_str(in->id, id));
	printf("  version   %u, index crc %08x\n", in->version, in->index_crc);
	printf("  depth     %u\n", in->depth);
	if (in->has_parent && in->parent_crc_known)
		printf("  parent    %s (index crc %08x)\n", uffdwp_img__id_str(in->parent_id, id),
		       in->parent_crc);
	else if (in->has_parent)
		printf("  parent    %s (index crc not recorded by version 1)\n",
		       uffdwp_img__id_str(in->parent_id, id));
	printf("  frames    %" PRIu64 " of up to %u KiB, zstd level %d\n", in->st.frames,
	       in->frame_size >> 10, in->level);
	printf("  pages     %" PRIu64 " listed: %" PRIu64 " data, %" PRIu64 " zero/fill, %" PRIu64
	       " in parent\n",
	       in->st.pages, in->st.data_pages, in->st.fill_pages, in->st.parent_pages);
	printf("  stored    %" PRIu64 " bytes of frames, index %" PRIu64 " bytes\n",
	       in->st.stored_bytes, in->st.index_bytes);
	for (i = 0; i < uffdwp_img__nr_objects(img); i++) {
		o = uffdwp_img__object(img, i);
		printf("%s %" PRIu64 ": %zu ranges, %" PRIu64 " pages (%" PRIu64 " data, %" PRIu64
		       " zero/fill, %" PRIu64 " in parent)\n",
		       obj_name(o->kind), o->id, o->nr_ranges, o->st.pages, o->st.data_pages,
		       o->st.fill_pages, o->st.parent_pages);
		for (k = 0; k < o->nr_ranges; k++) {
			r = &o->ranges[k];
			printf("  %012" PRIx64 "-%012" PRIx64 " %8" PRIu64 " %s", r->start << SHIFT,
			       (r->start + r->nr_pages) << SHIFT, r->nr_pages, kind_name(r->kind));
			if (r->kind == UFFDWP_IMG_R_FILL)
				printf(" %#04x", r->fill);
			putchar('\n');
		}
	}
}

static void show_json(struct uffdwp_img *img)
{
	const struct uffdwp_img_info *in = uffdwp_img__info(img);
	const struct uffdwp_img_object *o;
	const struct uffdwp_img_range *r;
	char id[2 * UFFDWP_IMG_ID_LEN + 1];
	size_t i, k;

	printf("{\"path\": ");
	uffdwp_json_str(stdout, uffdwp_img__path(img));
	printf(", \"id\": \"%s\", \"version\": %u, \"depth\": %u", uffdwp_img__id_str(in->id, id),
	       in->version, in->depth);
	if (in->has_parent) {
		printf(", \"parent_id\": \"%s\", \"parent_crc\": ",
		       uffdwp_img__id_str(in->parent_id, id));
		if (in->parent_crc_known)
			printf("%u", in->parent_crc);
		else
			printf("null");
	}
	printf(", \"index_crc\": %u, \"frame_size\": %u, \"level\": %d, \"ctime_ns\": %" PRIu64,
	       in->index_crc, in->frame_size, in->level, in->ctime_ns);
	printf(", \"frames\": %" PRIu64 ", \"pages\": %" PRIu64 ", \"data_pages\": %" PRIu64
	       ", \"fill_pages\": %" PRIu64 ", \"parent_pages\": %" PRIu64
	       ", \"stored_bytes\": %" PRIu64 ", \"pages_file\": %" PRIu64
	       ", \"index_bytes\": %" PRIu64 ", \"objects\": [",
	       in->st.frames, in->st.pages, in->st.data_pages, in->st.fill_pages,
	       in->st.parent_pages, in->st.stored_bytes, in->st.pages_file, in->st.index_bytes);
	for (i = 0; i < uffdwp_img__nr_objects(img); i++) {
		o = uffdwp_img__object(img, i);
		printf("%s{\"kind\": \"%s\", \"id\": %" PRIu64 ", \"ranges\": [", i ? ", " : "",
		       obj_name(o->kind), o->id);
		for (k = 0; k < o->nr_ranges; k++) {
			r = &o->ranges[k];
			printf("%s{\"start\": %" PRIu64 ", \"pages\": %" PRIu64
			       ", \"kind\": \"%s\"",
			       k ? ", " : "", r->start << SHIFT, r->nr_pages, kind_name(r->kind));
			if (r->kind == UFFDWP_IMG_R_FILL)
				printf(", \"fill\": %u", r->fill);
			putchar('}');
		}
		printf("]}");
	}
	printf("]}\n");
}

static int img_show(struct img_args *a)
{
	struct uffdwp_img *img;

	if (!dir_args(a))
		return CLI_USAGE;
	img = uffdwp_img__open(a->pos[0]);
	if (!img)
		return CLI_ERR;
	if (cli_json)
		show_json(img);
	else
		show_text(img);
	uffdwp_img__close(img);
	return CLI_OK;
}

/* ------------------------------------------------------------------ verify */

static int img_verify(struct img_args *a)
{
	struct uffdwp_chain *c;
	uint64_t frames = 0;
	size_t i, n;
	const char *why;
	int err;

	if (!dir_args(a))
		return CLI_USAGE;
	c = uffdwp_chain__open(a->pos[0]);
	err = c ? uffdwp_chain__verify(c) : -errno;
	/* What the reader said: the file, the offset and what is wrong there. */
	why = err ? cli_first_error() : NULL;
	if (err && !why)
		why = uffdwp_strerror(-err);
	if (cli_json) {
		printf("{\"path\": ");
		uffdwp_json_str(stdout, a->pos[0]);
		printf(", \"ok\": %s, \"error\": ", err ? "false" : "true");
		if (err)
			uffdwp_json_str(stdout, why);
		else
			printf("null");
		printf(", \"errno\": %d", -err);
		printf(", \"images\": [");
		n = c ? uffdwp_chain__length(c) : 0;
		for (i = 0; i < n; i++) {
			printf("%s", i ? ", " : "");
			uffdwp_json_str(stdout, uffdwp_img__path(uffdwp_chain__image(c, i)));
		}
		printf("]}\n");
	} else if (!err) {
		n = uffdwp_chain__length(c);
		for (i = 0; i < n; i++)
			frames += uffdwp_img__info(uffdwp_chain__image(c, i))->st.frames;
		printf("%s: ok, %zu image%s, %" PRIu64 " frames checked\n", a->pos[0], n,
		       n == 1 ? "" : "s", frames);
	} else {
		printf("%s: FAILED: %s\n", a->pos[0], why);
	}
	uffdwp_chain__close(c);
	return err ? CLI_ERR : CLI_OK;
}

/* ------------------------------------------------------------------- stats */

static void stats_object(const struct uffdwp_img_object *o, bool json, bool first)
{
	const struct uffdwp_img_range *r = o->ranges;
	uint64_t data, fill, par, start, end;
	size_t k, j;
	bool f = true;

	/* A region is a run of adjacent ranges: mappings, as far as the index knows them. */
	if (json)
		printf("%s{\"kind\": \"%s\", \"id\": %" PRIu64 ", \"raw_bytes\": %" PRIu64
		       ", \"stored_bytes\": %" PRIu64 ", \"ratio\": %.3f, \"regions\": [",
		       first ? "" : ", ", obj_name(o->kind), o->id, o->st.data_pages * PAGE,
		       o->st.stored_bytes, ratio(o->st.data_pages * PAGE, o->st.stored_bytes));
	else
		printf("  %s %" PRIu64 ": %" PRIu64 " data pages, %" PRIu64 " -> %" PRIu64
		       " bytes, ratio %.2f\n",
		       obj_name(o->kind), o->id, o->st.data_pages, o->st.data_pages * PAGE,
		       o->st.stored_bytes, ratio(o->st.data_pages * PAGE, o->st.stored_bytes));
	for (k = 0; k < o->nr_ranges; k = j) {
		start = r[k].start;
		end = start;
		data = fill = par = 0;
		for (j = k; j < o->nr_ranges && r[j].start == end; j++) {
			end += r[j].nr_pages;
			if (r[j].kind == UFFDWP_IMG_R_DATA)
				data += r[j].nr_pages;
			else if (r[j].kind == UFFDWP_IMG_R_PARENT)
				par += r[j].nr_pages;
			else
				fill += r[j].nr_pages;
		}
		if (json)
			printf("%s{\"start\": %" PRIu64 ", \"end\": %" PRIu64
			       ", \"data_pages\": %" PRIu64 ", \"fill_pages\": %" PRIu64
			       ", \"parent_pages\": %" PRIu64 "}",
			       f ? "" : ", ", start << SHIFT, end << SHIFT, data, fill, par);
		else
			printf("    %012" PRIx64 "-%012" PRIx64 " data %" PRIu64 " fill %" PRIu64
			       " parent %" PRIu64 "\n",
			       start << SHIFT, end << SHIFT, data, fill, par);
		f = false;
	}
	if (json)
		printf("]}");
}

static int img_stats(struct img_args *a)
{
	const struct uffdwp_img_info *in;
	struct uffdwp_chain *c;
	struct uffdwp_img *img;
	size_t i, k;

	if (!dir_args(a))
		return CLI_USAGE;
	c = uffdwp_chain__open(a->pos[0]);
	if (!c)
		return CLI_ERR;
	if (cli_json)
		printf("{\"images\": [");
	for (i = 0; i < uffdwp_chain__length(c); i++) {
		img = uffdwp_chain__image(c, i);
		in = uffdwp_img__info(img);
		if (cli_json) {
			printf("%s{\"path\": ", i ? ", " : "");
			uffdwp_json_str(stdout, uffdwp_img__path(img));
			printf(", \"depth\": %u, \"raw_bytes\": %" PRIu64
			       ", \"stored_bytes\": %" PRIu64 ", \"pages_file\": %" PRIu64
			       ", \"index_bytes\": %" PRIu64 ", \"bytes_written\": %" PRIu64
			       ", \"ratio\": %.3f, \"fill_pages\": %" PRIu64
			       ", \"parent_pages\": %" PRIu64 ", \"objects\": [",
			       in->depth, in->st.data_pages * PAGE, in->st.stored_bytes,
			       in->st.pages_file, in->st.index_bytes,
			       in->st.pages_file + in->st.index_bytes,
			       ratio(in->st.data_pages * PAGE, in->st.pages_file),
			       in->st.fill_pages, in->st.parent_pages);
		} else {
			double share = in->st.data_pages
					   ? 100.0 * in->st.index_bytes / (in->st.data_pages * PAGE)
					   : 0.0;

			/* Written is page file plus index, as snap reports it. */
			printf("%s (depth %u): %" PRIu64 " data pages, %" PRIu64 " -> %" PRIu64
			       " bytes in the page file, ratio %.2f; %" PRIu64
			       " zero/fill pages, %" PRIu64 " in parent; index %" PRIu64
			       " bytes (%s%.3f %% of the raw size); written %" PRIu64 " bytes\n",
			       uffdwp_img__path(img), in->depth, in->st.data_pages,
			       in->st.data_pages * PAGE, in->st.pages_file,
			       ratio(in->st.data_pages * PAGE, in->st.pages_file),
			       in->st.fill_pages, in->st.parent_pages, in->st.index_bytes,
			       share && share < 0.001 ? "under " : "",
			       share && share < 0.001 ? 0.001 : share,
			       in->st.pages_file + in->st.index_bytes);
		}
		for (k = 0; k < uffdwp_img__nr_objects(img); k++)
			stats_object(uffdwp_img__object(img, k), cli_json, k == 0);
		if (cli_json)
			printf("]}");
	}
	if (cli_json)
		printf("]}\n");
	uffdwp_chain__close(c);
	return CLI_OK;
}

/* -------------------------------------------------------------------- read */

/* Copy @nr pages at @addr out of @ps to @fd. */
static int read_out(struct uffdwp_pagesrc *ps, const struct img_args *a, int fd, uint64_t addr,
		    uint64_t nr, uint8_t *buf)
{
	uint64_t n, done;
	int err;

	for (done = 0; done < nr; done += n) {
		n = nr - done < 256 ? nr - done : 256;
		err = uffdwp_pagesrc__read(ps, a->obj_kind, a->obj_id, addr + done * PAGE, buf, n);
		if (err) {
			if (err == -ENOENT)
				pr_err("%s: %s %" PRIu64 " has no page in %#" PRIx64 "+%" PRIu64
				       " pages\n",
				       a->pos[0], obj_name(a->obj_kind), a->obj_id,
				       addr + done * PAGE, n);
			return err;
		}
		if (write(fd, buf, n * PAGE) != (ssize_t)(n * PAGE)) {
			err = -errno ?: -EIO;
			pr_perror("Can't write the pages out");
			return err;
		}
	}
	return 0;
}

/* An address as img show and /proc/PID/maps print it: hexadecimal, 0x optional. */
static int parse_addr(const char *s, uint64_t *v)
{
	if (cli_num__u64(s, CLI_NUM_HEX, 0, UINT64_MAX, v)) {
		cli_err("img read: '%s' is not an address (hexadecimal, as img show prints it)\n",
			s);
		return -1;
	}
	if (*v & (PAGE - 1)) {
		cli_err("img read: address %#" PRIx64 " is not at a page boundary\n", *v);
		return -1;
	}
	return 0;
}

static int img_read(struct img_args *a)
{
	const struct cli_sub *sub = cli_find_sub(&cli_img, "read");
	const struct uffdwp_img_object *o;
	struct uffdwp_pagesrc *ps = NULL;
	struct uffdwp_chain *c;
	uint64_t addr = 0, nr = 0;
	uint8_t *buf = NULL;
	int fd = 1, err = 0;
	size_t k;

	if (!check_npos(a, 1, 3, "the image directory is"))
		return CLI_USAGE;
	if (a->npos == 2) {
		cli_err("img read: NPAGES missing after ADDR '%s'\n", a->pos[1]);
		cli_usage(&cli_img, sub);
		return CLI_USAGE;
	}
	if (!a->has_obj) {
		cli_err("img read: --task PID or --shmem ID is required\n");
		cli_usage(&cli_img, sub);
		return CLI_USAGE;
	}
	if (a->npos == 3 && (parse_addr(a->pos[1], &addr) || parse_u64(a->pos[2], &nr)))
		return CLI_USAGE;
	c = uffdwp_chain__open(a->pos[0]);
	if (!c)
		return CLI_ERR;
	ps = uffdwp_pagesrc__new(c, 0);
	buf = malloc(256 * PAGE);
	if (!ps || !buf) {
		err = -ENOMEM;
		goto out;
	}
	if (a->out) {
		fd = open(a->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			err = -errno;
			pr_perror("Can't create %s", a->out);
			goto out;
		}
	} else {
		/* Pages on stdout: no JSON error object may follow them. */
		cli_stdout_raw = true;
	}
	if (a->npos == 3) {
		err = read_out(ps, a, fd, addr, nr, buf);
	} else {
		/* Every page the newest image lists, in address order. */
		o = uffdwp_img__find_object(uffdwp_chain__image(c, 0), a->obj_kind, a->obj_id);
		if (!o) {
			pr_err("%s: no %s %" PRIu64 "\n", a->pos[0], obj_name(a->obj_kind),
			       a->obj_id);
			err = -ENOENT;
		}
		for (k = 0; !err && k < o->nr_ranges; k++)
			err = read_out(ps, a, fd, o->ranges[k].start << SHIFT,
				       o->ranges[k].nr_pages, buf);
	}
	if (fd != 1)
		close(fd);
out:
	free(buf);
	uffdwp_pagesrc__free(ps);
	uffdwp_chain__close(c);
	return err ? CLI_ERR : CLI_OK;
}

/* ------------------------------------------------------------ merge, flatten */

static void show_progress(void *arg, uint64_t done, uint64_t total)
{
	cli_progress__show(arg, "writing", done, total);
}

/* Both read a whole chain and write it elsewhere as one image. */
static int img_chain_to(struct img_args *a, bool flatten)
{
	struct cli_progress prog;
	struct uffdwp_chain *c;
	size_t len;
	int err;

	if (!check_npos(a, 1, 1, "the image directory is"))
		return CLI_USAGE;
	if (!a->to) {
		cli_err("img %s: --to OUT is required\n", a->sub);
		cli_usage(&cli_img, cli_find_sub(&cli_img, a->sub));
		return CLI_USAGE;
	}
	c = uffdwp_chain__open(a->pos[0]);
	if (!c)
		return CLI_ERR;
	len = uffdwp_chain__length(c);
	cli_progress__init(&prog);
	err = flatten ? uffdwp_img__flatten_criu(c, a->to, show_progress, &prog)
		      : uffdwp_img__merge(c, a->to, &a->opts, show_progress, &prog);
	if (!err)
		cli_progress__end(&prog);
	if (!err && cli_json) {
		printf("{\"chain\": ");
		uffdwp_json_str(stdout, a->pos[0]);
		printf(", \"images\": %zu, \"to\": ", len);
		uffdwp_json_str(stdout, a->to);
		printf(", \"format\": \"%s\"}\n", flatten ? "criu" : "uffdwp");
	} else if (!err)
		printf("%s: %zu image%s %s into %s\n", a->pos[0], len, len == 1 ? "" : "s",
		       flatten ? "written as CRIU page images" : "merged", a->to);
	uffdwp_chain__close(c);
	return err ? CLI_ERR : CLI_OK;
}

static int img_merge(struct img_args *a)
{
	return img_chain_to(a, false);
}

static int img_flatten(struct img_args *a)
{
	return img_chain_to(a, true);
}

/* ------------------------------------------------------------------- write */

struct wranges {
	uint64_t (*r)[2]; /* [start, end) bytes */
	size_t n;
};

static int parse_ranges(const char *s, struct wranges *out)
{
	char *copy = strdup(s), *tok, *save = NULL, *dash;
	uint64_t a, b;
	void *n;

	out->r = NULL;
	out->n = 0;
	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		dash = strchr(tok, '-');
		if (!dash)
			goto bad;
		*dash = 0;
		if (parse_u64(tok, &a) || parse_u64(dash + 1, &b) || a >= b)
			goto bad;
		n = realloc(out->r, (out->n + 1) * sizeof(*out->r));
		if (!n)
			goto bad;
		out->r = n;
		out->r[out->n][0] = a & ~(uint64_t)(PAGE - 1);
		out->r[out->n][1] = (b + PAGE - 1) & ~(uint64_t)(PAGE - 1);
		out->n++;
	}
	free(copy);
	return 0;
bad:
	cli_err("img: bad range list '%s' (want START-END,...)\n", s);
	free(copy);
	free(out->r);
	out->r = NULL;
	return -1;
}

static bool in_ranges(const struct wranges *w, uint64_t addr)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		if (addr >= w->r[i][0] && addr < w->r[i][1])
			return true;
	return false;
}

/*
 * Copy @nr pages at @addr of @pid into the writer, in chunks; pages that
 * cannot be read (guard pages, beyond the end of a file) are left out.
 */
static int write_mem(struct uffdwp_img_writer *w, int pid, uint64_t addr, uint64_t nr, uint8_t *buf,
		     size_t buf_pages)
{
	struct iovec l, r;
	uint64_t n, i;
	ssize_t got;
	int err;

	while (nr) {
		n = nr < buf_pages ? nr : buf_pages;
		l.iov_base = buf;
		l.iov_len = n * PAGE;
		r.iov_base = (void *)(uintptr_t)addr;
		r.iov_len = n * PAGE;
		got = process_vm_readv(pid, &l, 1, &r, 1, 0);
		if (got == (ssize_t)(n * PAGE)) {
			err = uffdwp_img_writer__add_pages(w, addr, buf, n);
			if (err)
				return err;
		} else {
			if (got < 0 && errno != EFAULT && errno != EIO) {
				err = -errno;
				pr_perror("Can't read the memory of %d at %#" PRIx64, pid, addr);
				return err;
			}
			/* One page at a time, skipping the unreadable ones. */
			for (i = 0; i < n; i++) {
				l.iov_len = r.iov_len = PAGE;
				r.iov_base = (void *)(uintptr_t)(addr + i * PAGE);
				if (process_vm_readv(pid, &l, 1, &r, 1, 0) != PAGE)
					continue;
				err = uffdwp_img_writer__add_pages(w, addr + i * PAGE, buf, 1);
				if (err)
					return err;
			}
		}
		addr += n * PAGE;
		nr -= n;
	}
	return 0;
}

static int write_from_pid(struct uffdwp_img_writer *w, struct img_args *a)
{
	struct wranges want = {0}, dirty = {0};
	uint64_t start, end, addr, run;
	char path[64], line[4096], perms[8];
	uint8_t *buf = NULL;
	FILE *f = NULL;
	int err = -EINVAL;

	if ((a->ranges && parse_ranges(a->ranges, &want)) ||
	    (a->dirty && parse_ranges(a->dirty, &dirty)))
		goto out;
	if (a->dirty && !a->parent) {
		cli_err("img: --dirty needs --parent\n");
		goto out;
	}
	buf = malloc(256 * PAGE);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/maps", a->pid);
	f = fopen(path, "re");
	if (!f) {
		err = -errno;
		pr_perror("Can't open %s", path);
		goto out;
	}
	err = uffdwp_img_writer__begin_object(w, UFFDWP_IMG_OBJ_TASK, a->pid);
	while (!err && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s", &start, &end, perms) != 3)
			continue;
		/* vvar, vsyscall and the like are the kernel's, not the task's. */
		if (perms[0] != 'r' || strstr(line, "[vvar") || strstr(line, "[vsyscall]"))
			continue;
		for (addr = start; !err && addr < end; addr += run * PAGE) {
			bool wanted = !a->ranges || in_ranges(&want, addr);
			bool read = !a->dirty || in_ranges(&dirty, addr);

			for (run = 1; addr + run * PAGE < end; run++) {
				uint64_t x = addr + run * PAGE;

				if ((!a->ranges || in_ranges(&want, x)) != wanted ||
				    (!a->dirty || in_ranges(&dirty, x)) != read)
					break;
			}
			if (!wanted)
				continue;
			if (read)
				err = write_mem(w, a->pid, addr, run, buf, 256);
			else
				err = uffdwp_img_writer__add_parent(w, addr, run);
		}
	}
	if (!err)
		err = uffdwp_img_writer__end_object(w);
out:
	if (f)
		fclose(f);
	free(buf);
	free(want.r);
	free(dirty.r);
	return err;
}

static int spec_data(struct uffdwp_img_writer *w, uint64_t addr, uint64_t nr, const char *file,
		     uint64_t off)
{
	uint8_t *buf;
	uint64_t n;
	int fd, err = 0;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		pr_perror("Can't open %s", file);
		return err;
	}
	buf = malloc(256 * PAGE);
	if (!buf)
		err = -ENOMEM;
	while (!err && nr) {
		n = nr < 256 ? nr : 256;
		if (pread(fd, buf, n * PAGE, off) != (ssize_t)(n * PAGE)) {
			pr_err("%s: less than %" PRIu64 " pages at offset %" PRIu64 "\n", file, n,
			       off);
			err = -EIO;
			break;
		}
		err = uffdwp_img_writer__add_pages(w, addr, buf, n);
		addr += n * PAGE;
		off += n * PAGE;
		nr -= n;
	}
	free(buf);
	close(fd);
	return err;
}

static int write_spec(struct uffdwp_img_writer *w, const char *spec)
{
	char line[4096], word[16], file[4000];
	uint64_t id = 0, addr, nr, x;
	bool open_obj = false, is_task = false;
	uint8_t *buf = NULL;
	FILE *f;
	int err = 0, lineno = 0, n;

	f = fopen(spec, "re");
	if (!f) {
		err = -errno;
		pr_perror("Can't open %s", spec);
		return err;
	}
	while (!err && fgets(line, sizeof(line), f)) {
		lineno++;
		x = 0;
		if (line[0] == '#' || sscanf(line, "%15s", word) != 1)
			continue;
		if (!strcmp(word, "task") || !strcmp(word, "shmem")) {
			if (sscanf(line, "%*s %" SCNu64, &id) != 1)
				goto bad;
			if (open_obj)
				err = uffdwp_img_writer__end_object(w);
			is_task = word[0] == 't';
			if (!err)
				err = uffdwp_img_writer__begin_object(
				    w, is_task ? UFFDWP_IMG_OBJ_TASK : UFFDWP_IMG_OBJ_SHMEM, id);
			open_obj = true;
			continue;
		}
		n = sscanf(line, "%*s %" SCNi64 " %" SCNu64 " %3999s %" SCNi64, &addr, &nr, file,
			   &x);
		if (n < 2)
			goto bad;
		if (!strcmp(word, "data") && n >= 3) {
			err = spec_data(w, addr, nr, file, x);
		} else if (!strcmp(word, "mem") && is_task) {
			if (!buf)
				buf = malloc(256 * PAGE);
			err = buf ? write_mem(w, id, addr, nr, buf, 256) : -ENOMEM;
		} else if (!strcmp(word, "parent")) {
			err = uffdwp_img_writer__add_parent(w, addr, nr);
		} else if (!strcmp(word, "zero")) {
			err = uffdwp_img_writer__add_fill(w, addr, nr, 0);
		} else if (!strcmp(word, "fill") && n >= 3) {
			x = strtoul(file, NULL, 0);
			err = uffdwp_img_writer__add_fill(w, addr, nr, x);
		} else {
			goto bad;
		}
	}
	if (!err && open_obj)
		err = uffdwp_img_writer__end_object(w);
	free(buf);
	fclose(f);
	return err;
bad:
	cli_err("img: %s:%d: cannot parse: %s", spec, lineno, line);
	free(buf);
	fclose(f);
	return -EINVAL;
}

static int img_write(struct img_args *a)
{
	struct uffdwp_img_writer *w;
	struct uffdwp_img_stats st;
	int err;

	if (a->npos || !a->to || !a->spec == !a->pid) {
		if (a->npos)
			cli_err("img write: unexpected argument '%s'\n", a->pos[0]);
		fputs(write_usage, stderr);
		return CLI_USAGE;
	}
	w = uffdwp_img_writer__begin(a->to, a->parent, &a->opts);
	if (!w)
		return CLI_ERR;
	err = a->spec ? write_spec(w, a->spec) : write_from_pid(w, a);
	if (!err)
		err = uffdwp_img_writer__commit(w);
	if (!err) {
		uffdwp_img_writer__stats(w, &st);
		if (cli_json)
			printf("{\"pages\": %" PRIu64 ", \"data_pages\": %" PRIu64
			       ", \"fill_pages\": %" PRIu64 ", \"parent_pages\": %" PRIu64
			       ", \"frames\": %" PRIu64 ", \"stored_bytes\": %" PRIu64
			       ", \"pages_file\": %" PRIu64 ", \"index_bytes\": %" PRIu64 "}\n",
			       st.pages, st.data_pages, st.fill_pages, st.parent_pages, st.frames,
			       st.stored_bytes, st.pages_file, st.index_bytes);
		else
			printf("%s: %" PRIu64 " pages (%" PRIu64 " data, %" PRIu64
			       " zero/fill, %" PRIu64 " in parent), %" PRIu64 " bytes stored\n",
			       a->to, st.pages, st.data_pages, st.fill_pages, st.parent_pages,
			       st.pages_file);
	}
	uffdwp_img_writer__free(w);
	return !err ? CLI_OK : err == -EINVAL ? CLI_USAGE : CLI_ERR;
}

static const struct {
	const char *name;
	int (*fn)(struct img_args *a);
} img_cmds[] = {
    {"show", img_show},	  {"verify", img_verify},   {"stats", img_stats}, {"read", img_read},
    {"merge", img_merge}, {"flatten", img_flatten}, {"write", img_write}, /* hidden: the tests'
									     driver */
};

int cmd_img(int argc, char **argv)
{
	struct img_args a;
	size_t i;
	int r;

	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	for (i = 0; i < sizeof(img_cmds) / sizeof(img_cmds[0]); i++)
		if (!strcmp(a.sub, img_cmds[i].name))
			return img_cmds[i].fn(&a);
	return CLI_USAGE; /* parse_args() knows them all */
}
