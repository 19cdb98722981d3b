// SPDX-License-Identifier: GPL-2.0
/*
 * uffdwp img: show, verify, stats, read, merge and flatten compressed images.
 * The tests' writer of exact images is `uffdwp __debug img-write` (debug_img.c).
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

/* ------------------------------------------------------------------ helpers */

static int parse_u64(const char *s, uint64_t *v)
{
	if (cli_num__u64(s, CLI_NUM_SUFFIX, 0, UINT64_MAX, v)) {
		cli_err("img: '%s' is not a number\n", s);
		return -1;
	}
	return 0;
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
	OPT_LEVEL,
	OPT_FRAME,
	OPT_THREADS,
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
     "bytes, nearly always under 0.001 % of the raw size)."},
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
    {"to", OPT_TO, "OUT", " merge flatten ", "the directory to write"},
    {"level", OPT_LEVEL, "N", " merge ", "zstd level (default -1)"},
    {"frame-size", OPT_FRAME, "B", " merge ", "raw bytes per frame (default 64K; K, M suffixes)"},
    {"threads", OPT_THREADS, "N", " merge ", "compression threads (default 1)"},
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
	const char *to, *out;
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
	int c, r;

	memset(a, 0, sizeof(*a));
	uffdwp_img_opts__init(&a->opts);
	cli_parser__init(&p, &cli_img, argc, argv);
	while ((c = cli_parser__next(&p, argc, argv)) != CLI_OPT_END) {
		switch (c) {
		case OPT_TO:
			a->to = optarg;
			break;
		case 'o':
			a->out = optarg;
			break;
		case OPT_LEVEL:
		case OPT_FRAME:
		case OPT_THREADS:
			if (cli_img_opts__set(&a->opts, "img", cli_opt_name(&cli_img, c), optarg))
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
	return cli_img_opts__check(&a->opts) ?: -1;
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
			char of_raw[48];

			/* An index has no share of data that is not there. */
			if (!in->st.data_pages)
				snprintf(of_raw, sizeof(of_raw), "no data pages");
			else
				snprintf(of_raw, sizeof(of_raw), "%s%.3f %% of the raw size",
					 share < 0.001 ? "under " : "",
					 share < 0.001 ? 0.001 : share);
			/* Written is page file plus index, as snap reports it. */
			printf("%s (depth %u): %" PRIu64 " data pages, %" PRIu64 " -> %" PRIu64
			       " bytes in the page file, ratio %.2f; %" PRIu64
			       " zero/fill pages, %" PRIu64 " in parent; index %" PRIu64
			       " bytes (%s); written %" PRIu64 " bytes\n",
			       uffdwp_img__path(img), in->depth, in->st.data_pages,
			       in->st.data_pages * PAGE, in->st.pages_file,
			       ratio(in->st.data_pages * PAGE, in->st.pages_file),
			       in->st.fill_pages, in->st.parent_pages, in->st.index_bytes, of_raw,
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

static const struct {
	const char *name;
	int (*fn)(struct img_args *a);
} img_cmds[] = {
    {"show", img_show}, {"verify", img_verify}, {"stats", img_stats},
    {"read", img_read}, {"merge", img_merge},	{"flatten", img_flatten},
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
