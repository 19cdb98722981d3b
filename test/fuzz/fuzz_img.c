// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the image readers: the input is an index file and a
 * page file, as [u32 little-endian index length][index][page file]. Both are
 * written to a private directory and read through the public API: open
 * (index, seek table), verify every frame, read pages through a page source.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img/img.h"
#include "base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64];

static void put(const char *name, const uint8_t *p, size_t len)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, p, len) != (ssize_t)len)
		abort();
	close(fd);
}

static void quiet(enum uffdwp_loglevel level, const char *msg)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = getenv("UFFDWP_FUZZ_DIR") ?: "/dev/shm";

	snprintf(dir, sizeof(dir), "%s/uffdwp-fuzz-%d", base, getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		abort();
	if (!getenv("UFFDWP_FUZZ_LOG"))
		uffdwp_log_set_sink(quiet);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct uffdwp_img_object *o;
	struct uffdwp_pagesrc *ps;
	struct uffdwp_chain *c;
	struct uffdwp_img *img;
	uint8_t buf[4 * 4096];
	size_t ilen, i, k;

	if (size < 4)
		return 0;
	ilen = data[0] | data[1] << 8 | data[2] << 16 | (size_t)data[3] << 24;
	data += 4;
	size -= 4;
	if (ilen > size)
		ilen = size;
	put("uffdwp-index.img", data, ilen);
	put("uffdwp-pages.zst", data + ilen, size - ilen);

	img = uffdwp_img__open(dir);
	if (!img)
		return 0;
	uffdwp_img__verify_data(img);
	uffdwp_img__close(img);

	/* A fuzzed image with a parent finds no "parent" link: refused. */
	c = uffdwp_chain__open(dir);
	if (!c)
		return 0;
	uffdwp_chain__verify(c);
	ps = uffdwp_pagesrc__new(c, 2);
	img = uffdwp_chain__image(c, 0);
	for (i = 0; ps && i < uffdwp_img__nr_objects(img) && i < 8; i++) {
		o = uffdwp_img__object(img, i);
		for (k = 0; k < o->nr_ranges && k < 8; k++)
			uffdwp_pagesrc__read(ps, o->kind, o->id, o->ranges[k].start << 12, buf,
					     o->ranges[k].nr_pages < 4 ? o->ranges[k].nr_pages : 4);
	}
	uffdwp_pagesrc__free(ps);
	uffdwp_chain__close(c);
	return 0;
}
