// SPDX-License-Identifier: GPL-2.0
/*
 * `uffdwp __debug img-write`: the tests' image writer. It writes whatever it
 * is told, with no dirty tracking and no consistency (that is `uffdwp
 * snap`): pages from files, from a running process's memory, zero, fill or
 * in parent, so that the image layer can be tested on exact layouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "cli.h"
#include "base/procfs.h"
#include "base/rangeset.h"
#include "img/img.h"

#define LOG_PREFIX "img-write: "
#include "base/log.h"

#define PAGE UFFDWP_IMG_PAGE_SIZE

static const char usage[] =
    "usage: uffdwp __debug img-write --to DIR [--parent DIR] [OPTS] --spec FILE\n"
    "       uffdwp __debug img-write --to DIR [--parent DIR] [OPTS] --from-pid PID\n"
    "                                [--ranges A-B,...] [--dirty A-B,...]\n"
    "OPTS: --level N, --frame-size B (K, M suffixes), --threads N, --json\n"
    "\n"
    "The tests' image writer (a test driver), not a snapshot tool: it writes\n"
    "whatever it is told, with no dirty tracking and no consistency (that is\n"
    "'uffdwp snap').\n"
    "With --from-pid it reads the readable mappings of a process (those overlapping\n"
    "--ranges, if given) with process_vm_readv while it runs; with --parent and\n"
    "--dirty, only pages inside --dirty are read and the rest are marked in parent.\n"
    "A spec file has one line per object or range, ranges in ascending order:\n"
    "  task PID | shmem ID\n"
    "  data ADDR NPAGES FILE [OFFSET]   pages from FILE at byte OFFSET\n"
    "  mem ADDR NPAGES                  pages from the task's own memory\n"
    "  parent ADDR NPAGES | zero ADDR NPAGES | fill ADDR NPAGES BYTE\n";

struct write_args {
	const char *to, *parent, *spec, *ranges, *dirty;
	int pid;
	struct uffdwp_img_opts opts;
};

/* "A-B,C-D" into @out, each range widened to whole pages. */
static int parse_ranges(const char *s, struct uffdwp_rangeset *out)
{
	char *copy = strdup(s), *tok, *save = NULL, *dash;
	uint64_t a, b;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		dash = strchr(tok, '-');
		if (!dash)
			goto bad;
		*dash = 0;
		if (cli_num__u64(tok, CLI_NUM_SUFFIX, 0, UINT64_MAX, &a) ||
		    cli_num__u64(dash + 1, CLI_NUM_SUFFIX, 0, UINT64_MAX, &b) || a >= b ||
		    uffdwp_rangeset__add(out, a & ~(uint64_t)(PAGE - 1),
					 (b + PAGE - 1) & ~(uint64_t)(PAGE - 1)))
			goto bad;
	}
	free(copy);
	return 0;
bad:
	cli_err("img-write: bad range list '%s' (want START-END,...)\n", s);
	free(copy);
	return -1;
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

/* Whether @addr is in @rs (all of memory without @rs); lowers *@edge as rangeset__edge(). */
static bool wanted_at(const struct uffdwp_rangeset *rs, uint64_t addr, uint64_t *edge)
{
	return !rs || uffdwp_rangeset__edge(rs, addr, edge);
}

static int write_from_pid(struct uffdwp_img_writer *w, const struct write_args *a)
{
	struct uffdwp_rangeset want, dirty;
	struct uffdwp_maps maps = {0};
	uint64_t addr, edge;
	uint8_t *buf = NULL;
	size_t i;
	int err = -EINVAL;

	uffdwp_rangeset__init(&want);
	uffdwp_rangeset__init(&dirty);
	if ((a->ranges && parse_ranges(a->ranges, &want)) ||
	    (a->dirty && parse_ranges(a->dirty, &dirty)))
		goto out;
	if (a->dirty && !a->parent) {
		cli_err("img-write: --dirty needs --parent\n");
		goto out;
	}
	buf = malloc(256 * PAGE);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	err = uffdwp_maps__read(a->pid, &maps);
	if (err) {
		cli_err("img-write: cannot read the mappings of %d: %s\n", a->pid,
			uffdwp_strerror(-err));
		goto out;
	}
	err = uffdwp_img_writer__begin_object(w, UFFDWP_IMG_OBJ_TASK, a->pid);
	for (i = 0; !err && i < maps.nr; i++) {
		const struct uffdwp_vma *v = &maps.v[i];

		/* vvar, vsyscall and the like are the kernel's, not the task's. */
		if (!(v->prot & UFFDWP_VMA_READ) || !strncmp(v->name, "[vvar", 5) ||
		    !strcmp(v->name, "[vsyscall]"))
			continue;
		for (addr = v->start; !err && addr < v->end; addr = edge) {
			bool wanted, read;

			edge = v->end;
			wanted = wanted_at(a->ranges ? &want : NULL, addr, &edge);
			read = wanted_at(a->dirty ? &dirty : NULL, addr, &edge);
			if (!wanted)
				continue;
			if (read)
				err = write_mem(w, a->pid, addr, (edge - addr) / PAGE, buf, 256);
			else
				err = uffdwp_img_writer__add_parent(w, addr, (edge - addr) / PAGE);
		}
	}
	if (!err)
		err = uffdwp_img_writer__end_object(w);
out:
	uffdwp_maps__fini(&maps);
	free(buf);
	uffdwp_rangeset__fini(&want);
	uffdwp_rangeset__fini(&dirty);
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
	cli_err("img-write: %s:%d: cannot parse: %s", spec, lineno, line);
	free(buf);
	fclose(f);
	return -EINVAL;
}

enum {
	OPT_TO = 256,
	OPT_PARENT,
	OPT_SPEC,
	OPT_FROM_PID,
	OPT_RANGES,
	OPT_DIRTY,
	OPT_LEVEL,
	OPT_FRAME,
	OPT_THREADS,
	OPT_JSON
};

static const struct option write_opts[] = {
    {"to", required_argument, NULL, OPT_TO},
    {"parent", required_argument, NULL, OPT_PARENT},
    {"spec", required_argument, NULL, OPT_SPEC},
    {"from-pid", required_argument, NULL, OPT_FROM_PID},
    {"ranges", required_argument, NULL, OPT_RANGES},
    {"dirty", required_argument, NULL, OPT_DIRTY},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"frame-size", required_argument, NULL, OPT_FRAME},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, or the exit code (CLI_OK after --help). */
static int parse_write_args(int argc, char **argv, struct write_args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	uffdwp_img_opts__init(&a->opts);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", write_opts, NULL)) != -1) {
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
		case OPT_FROM_PID:
			a->pid = cli_parse_pid(optarg);
			if (a->pid < 0)
				return CLI_USAGE;
			break;
		case OPT_LEVEL:
		case OPT_THREADS:
		case OPT_FRAME:
			if (cli_img_opts__set(&a->opts, "img-write",
					      c == OPT_LEVEL   ? "level"
					      : c == OPT_FRAME ? "frame-size"
							       : "threads",
					      optarg))
				return CLI_USAGE;
			break;
		case OPT_JSON:
			cli_json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return CLI_OK;
		default:
			fputs(usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind < argc || !a->to || !a->spec == !a->pid) {
		if (optind < argc)
			cli_err("img-write: unexpected argument '%s'\n", argv[optind]);
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	return -1;
}

int debug_img_write(int argc, char **argv)
{
	struct uffdwp_img_writer *w;
	struct uffdwp_img_stats st;
	struct write_args a;
	int err;

	err = parse_write_args(argc, argv, &a);
	if (err >= 0)
		return err;
	w = uffdwp_img_writer__begin(a.to, a.parent, &a.opts);
	if (!w)
		return CLI_ERR;
	err = a.spec ? write_spec(w, a.spec) : write_from_pid(w, &a);
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
			       a.to, st.pages, st.data_pages, st.fill_pages, st.parent_pages,
			       st.pages_file);
	}
	uffdwp_img_writer__free(w);
	return !err ? CLI_OK : err == -EINVAL ? CLI_USAGE : CLI_ERR;
}
