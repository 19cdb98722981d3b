// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "img/img.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

/* Pages copied through the page source at a time, and between progress reports. */
#define MERGE_CHUNK    256
#define PROGRESS_PAGES 4096

struct merge_progress {
	uffdwp_img_progress_fn fn;
	void *arg;
	uint64_t done, total, last; /* pages */
};

static void report(struct merge_progress *p, uint64_t pages, bool end)
{
	p->done += pages;
	if (!p->fn || (!end && p->done - p->last < PROGRESS_PAGES))
		return;
	p->last = p->done;
	p->fn(p->arg, p->done * UFFDWP_IMG_PAGE_SIZE, p->total * UFFDWP_IMG_PAGE_SIZE);
}

/* Copy @nr pages of @o at @page into @w, resolving each through the chain. */
static int merge_run(struct uffdwp_pagesrc *ps, struct uffdwp_img_writer *w,
		     const struct uffdwp_img_object *o, uint64_t page, uint64_t nr, uint8_t *buf,
		     struct merge_progress *prog)
{
	struct uffdwp_page_loc loc;
	uint64_t n;
	int err;

	while (nr) {
		err = uffdwp_pagesrc__locate(ps, o->kind, o->id, page, &loc);
		if (err)
			return err;
		n = loc.nr_pages < nr ? loc.nr_pages : nr;
		if (loc.kind != UFFDWP_IMG_R_DATA) {
			err = uffdwp_img_writer__add_fill(w, page << UFFDWP_IMG_PAGE_SHIFT, n,
							  loc.fill);
			if (err)
				return err;
		} else {
			if (n > MERGE_CHUNK)
				n = MERGE_CHUNK;
			err = uffdwp_pagesrc__read(ps, o->kind, o->id,
						   page << UFFDWP_IMG_PAGE_SHIFT, buf, n);
			if (!err)
				err = uffdwp_img_writer__add_pages(w, page << UFFDWP_IMG_PAGE_SHIFT,
								   buf, n);
			if (err)
				return err;
		}
		page += n;
		nr -= n;
		report(prog, n, false);
	}
	return 0;
}

int uffdwp_img__merge(struct uffdwp_chain *c, const char *out, const struct uffdwp_img_opts *opts,
		      uffdwp_img_progress_fn progress, void *arg)
{
	struct merge_progress prog = {.fn = progress, .arg = arg};
	struct uffdwp_img *top = uffdwp_chain__image(c, 0);
	const struct uffdwp_img_object *o;
	struct uffdwp_img_writer *w;
	struct uffdwp_pagesrc *ps;
	uint8_t *buf;
	size_t i, k;
	int err;

	buf = malloc(MERGE_CHUNK * UFFDWP_IMG_PAGE_SIZE);
	if (!buf)
		return -ENOMEM;
	ps = uffdwp_pagesrc__new(c, 0);
	if (!ps) {
		err = -errno;
		goto err_buf;
	}
	w = uffdwp_img_writer__begin(out, NULL, opts);
	if (!w) {
		err = -errno;
		goto err_ps;
	}
	for (i = 0; i < uffdwp_img__nr_objects(top); i++)
		prog.total += uffdwp_img__object(top, i)->st.pages;
	for (i = 0; i < uffdwp_img__nr_objects(top); i++) {
		o = uffdwp_img__object(top, i);
		err = uffdwp_img_writer__begin_object(w, o->kind, o->id);
		for (k = 0; !err && k < o->nr_ranges; k++)
			err = merge_run(ps, w, o, o->ranges[k].start, o->ranges[k].nr_pages, buf,
					&prog);
		if (!err)
			err = uffdwp_img_writer__end_object(w);
		if (err)
			goto err_w;
	}
	err = uffdwp_img_writer__commit(w);
	if (!err)
		report(&prog, 0, true);
err_w:
	uffdwp_img_writer__free(w);
err_ps:
	uffdwp_pagesrc__free(ps);
err_buf:
	free(buf);
	return err;
}
