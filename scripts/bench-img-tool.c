// SPDX-License-Identifier: GPL-2.0
/*
 * The measuring half of scripts/bench-img: given a file of raw pages, write
 * it as an uffdwp image (1 and 2 threads), read every frame back, time random
 * 4 KiB reads from cold frames, and do the same block by block with lz4 and
 * with plain copies. Prints one JSON object. Built by scripts/bench-img,
 * which links lz4 here only.
 *
 * usage: bench-img-tool RAW DIR FRAME_SIZE LEVEL SAMPLES
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "img/img.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void rm_image(const char *dir)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/%s", dir, UFFDWP_IMG_INDEX);
	unlink(p);
	snprintf(p, sizeof(p), "%s/%s", dir, UFFDWP_IMG_PAGES);
	unlink(p);
	rmdir(dir);
}

/* Write @raw as one task; returns seconds, fills @st. */
static double write_image(const char *dir, const uint8_t *raw, size_t pages,
			  const struct uffdwp_img_opts *o, struct uffdwp_img_stats *st)
{
	struct uffdwp_img_writer *w;
	double t0 = now(), t;

	rm_image(dir);
	w = uffdwp_img_writer__begin(dir, NULL, o);
	if (!w || uffdwp_img_writer__begin_object(w, UFFDWP_IMG_OBJ_TASK, 1) ||
	    uffdwp_img_writer__add_pages(w, 0x10000000, raw, pages) ||
	    uffdwp_img_writer__end_object(w) || uffdwp_img_writer__commit(w)) {
		fprintf(stderr, "bench-img-tool: writing %s failed\n", dir);
		exit(1);
	}
	t = now() - t0;
	uffdwp_img_writer__stats(w, st);
	uffdwp_img_writer__free(w);
	return t;
}

int main(int argc, char **argv)
{
	struct uffdwp_img_opts o;
	struct uffdwp_img_stats st1, st2;
	struct uffdwp_pagesrc_stats pst;
	struct uffdwp_pagesrc *ps;
	struct uffdwp_chain *c;
	size_t size, pages, block, nblk, i, samples, lz4_stored = 0;
	double t_w1, t_w2, t_d, t_lz4c, t_lz4d, t_copy, t0, *lat;
	uint8_t *raw, *lbuf, *out, page[4096];
	int fd, *lsz, bound, r;
	struct stat sb;
	unsigned int seed = 1;
	uint64_t frame_pages, last_frame = UINT64_MAX;

	if (argc != 6) {
		fprintf(stderr, "usage: bench-img-tool RAW DIR FRAME_SIZE LEVEL SAMPLES\n");
		return 2;
	}
	uffdwp_img_opts__init(&o);
	o.frame_size = strtoul(argv[3], NULL, 0);
	o.level = atoi(argv[4]);
	samples = strtoul(argv[5], NULL, 0);
	block = o.frame_size;
	frame_pages = block / 4096;

	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		perror(argv[1]);
		return 1;
	}
	pages = sb.st_size / 4096;
	size = pages * 4096;
	raw = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 1;
	}

	/* zstd through the image writer, one and two threads. */
	o.threads = 1;
	t_w1 = write_image(argv[2], raw, pages, &o, &st1);
	o.threads = 2;
	t_w2 = write_image(argv[2], raw, pages, &o, &st2);

	c = uffdwp_chain__open(argv[2]);
	if (!c)
		return 1;
	t0 = now();
	if (uffdwp_img__verify_data(uffdwp_chain__image(c, 0)))
		return 1;
	t_d = now() - t0;

	/*
	 * Random 4 KiB reads, each from a frame that is not in the cache: one
	 * long-lived page source (as lazy restore keeps one) with a one-frame
	 * cache, and never the frame read just before. The page file is in the
	 * page cache: this times our work, not the disk.
	 */
	lat = calloc(samples, sizeof(*lat));
	ps = uffdwp_pagesrc__new(c, 1);
	for (i = 0; i < samples; i++) {
		uint64_t p, before;

		do
			p = rand_r(&seed) % pages;
		while (frame_pages && p / frame_pages == last_frame && pages > frame_pages);
		last_frame = frame_pages ? p / frame_pages : 0;
		uffdwp_pagesrc__stats(ps, &pst);
		before = pst.frame_loads;
		t0 = now();
		r = uffdwp_pagesrc__read(ps, UFFDWP_IMG_OBJ_TASK, 1, 0x10000000 + p * 4096, page,
					 1);
		lat[i] = (now() - t0) * 1e6;
		uffdwp_pagesrc__stats(ps, &pst);
		if (r || memcmp(page, raw + p * 4096, 4096)) {
			fprintf(stderr, "bench-img-tool: page %" PRIu64 " reads back wrong\n", p);
			return 1;
		}
		/* Zero and fill pages load no frame: time them all the same, they count. */
		(void)before;
	}
	uffdwp_pagesrc__free(ps);
	qsort(lat, samples, sizeof(*lat), cmp_double);

	/* lz4 over the same blocks, every page included. */
	nblk = (size + block - 1) / block;
	bound = LZ4_compressBound(block);
	lbuf = malloc((size_t)bound * nblk);
	lsz = calloc(nblk, sizeof(*lsz));
	out = malloc(size);
	/* Touch the buffers first: page faults are not what is measured. */
	memset(lbuf, 0, (size_t)bound * nblk);
	memset(out, 0, size);
	t0 = now();
	for (i = 0; i < nblk; i++) {
		size_t len = size - i * block < block ? size - i * block : block;

		lsz[i] = LZ4_compress_default((const char *)raw + i * block,
					      (char *)lbuf + i * (size_t)bound, len, bound);
		lz4_stored += lsz[i];
	}
	t_lz4c = now() - t0;
	t0 = now();
	for (i = 0; i < nblk; i++) {
		size_t len = size - i * block < block ? size - i * block : block;

		if (LZ4_decompress_safe((char *)lbuf + i * (size_t)bound, (char *)out + i * block,
					lsz[i], len) != (int)len)
			return 1;
	}
	t_lz4d = now() - t0;
	if (memcmp(out, raw, size))
		return 1;
	t0 = now();
	memcpy(out, raw, size);
	t_copy = now() - t0;

	printf("{\"raw_bytes\": %zu, \"frame_size\": %u, \"level\": %d, "
	       "\"data_pages\": %" PRIu64 ", \"fill_pages\": %" PRIu64 ", "
	       "\"zstd_stored\": %" PRIu64 ", \"index_bytes\": %" PRIu64 ", "
	       "\"zstd_ratio\": %.3f, \"zstd_comp_gbs_1t\": %.3f, \"zstd_comp_gbs_2t\": %.3f, "
	       "\"zstd_decomp_gbs\": %.3f, \"read4k_p50_us\": %.1f, \"read4k_p99_us\": %.1f, "
	       "\"lz4_stored\": %zu, \"lz4_ratio\": %.3f, \"lz4_comp_gbs\": %.3f, "
	       "\"lz4_decomp_gbs\": %.3f, \"zstd_vs_lz4\": %.3f, \"copy_gbs\": %.3f, "
	       "\"index_pct\": %.4f}\n",
	       size, o.frame_size, o.level, st1.data_pages, st1.fill_pages, st1.pages_file,
	       st1.index_bytes, (double)size / st1.pages_file, size / t_w1 / 1e9, size / t_w2 / 1e9,
	       st1.data_pages * 4096.0 / t_d / 1e9, lat[samples / 2], lat[samples * 99 / 100],
	       lz4_stored, (double)size / lz4_stored, size / t_lz4c / 1e9, size / t_lz4d / 1e9,
	       (double)lz4_stored / st1.pages_file, size / t_copy / 1e9,
	       100.0 * st1.index_bytes / size);
	(void)st2;
	uffdwp_chain__close(c);
	rm_image(argv[2]);
	return 0;
}
