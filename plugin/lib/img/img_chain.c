// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "img/img.h"
#include "img/img_priv.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

struct uffdwp_chain {
	size_t n;
	struct uffdwp_img **imgs; /* [0] newest .. [n - 1] base */
};

/* Refuse @p as the parent of @c, for the reason it gives. */
static int check_parent(const struct uffdwp_img *c, const struct uffdwp_img *p)
{
	char want[2 * UFFDWP_IMG_ID_LEN + 1], have[2 * UFFDWP_IMG_ID_LEN + 1];

	if (memcmp(c->info.parent_id, p->info.id, UFFDWP_IMG_ID_LEN)) {
		pr_err("%s: parent %s is image %s, but this image was written against %s\n",
		       c->path, p->path, uffdwp_img__id_str(p->info.id, have),
		       uffdwp_img__id_str(c->info.parent_id, want));
		return -EBADMSG;
	}
	if (c->info.parent_crc_known && c->info.parent_crc != p->info.index_crc) {
		pr_err("%s: parent %s was rewritten since (index CRC %#x, expected %#x)\n", c->path,
		       p->path, p->info.index_crc, c->info.parent_crc);
		return -EBADMSG;
	}
	if (p->info.depth + 1 != c->info.depth) {
		pr_err("%s: parent %s has depth %u, expected %u\n", c->path, p->path, p->info.depth,
		       c->info.depth - 1);
		return -EBADMSG;
	}
	return 0;
}

struct uffdwp_chain *uffdwp_chain__open(const char *dir)
{
	struct uffdwp_chain *c;
	struct uffdwp_img *img, **n;
	struct stat *seen = NULL, st, *ns;
	char *link = NULL, *next = NULL;
	size_t i;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	next = realpath(dir, NULL);
	if (!next) {
		err = -errno;
		pr_perror("Can't find %s", dir);
		goto err_free;
	}
	for (;;) {
		if (stat(next, &st) < 0) {
			err = -errno;
			pr_perror("Can't stat %s", next);
			goto err_free;
		}
		for (i = 0; i < c->n; i++)
			if (seen[i].st_dev == st.st_dev && seen[i].st_ino == st.st_ino) {
				pr_err("%s: parent links loop back to %s\n", dir, next);
				err = -ELOOP;
				goto err_free;
			}
		if (c->n >= UFFDWP_IMG_MAX_DEPTH) {
			pr_err("%s: chain longer than %d images\n", dir, UFFDWP_IMG_MAX_DEPTH);
			err = -ELOOP;
			goto err_free;
		}
		img = uffdwp_img__open(next);
		if (!img) {
			err = -errno;
			if (c->n)
				pr_err("%s: the parent of %s is not usable\n", dir,
				       c->imgs[c->n - 1]->path);
			goto err_free;
		}
		n = realloc(c->imgs, (c->n + 1) * sizeof(*n));
		ns = realloc(seen, (c->n + 1) * sizeof(*ns));
		if (n)
			c->imgs = n;
		if (ns)
			seen = ns;
		if (!n || !ns) {
			uffdwp_img__close(img);
			err = -ENOMEM;
			goto err_free;
		}
		c->imgs[c->n] = img;
		seen[c->n++] = st;
		if (c->n > 1) {
			err = check_parent(c->imgs[c->n - 2], img);
			if (err)
				goto err_free;
		}
		if (!img->info.has_parent)
			break;

		free(link);
		link = uffdwp_img_path_join(next, UFFDWP_IMG_PARENT);
		free(next);
		next = link ? realpath(link, NULL) : NULL;
		if (!next) {
			err = link ? -errno : -ENOMEM;
			pr_err("%s: image %s has depth %u but its parent link %s leads nowhere\n",
			       dir, img->path, img->info.depth, link ? link : "?");
			if (err == -ENOENT)
				err = -EBADMSG;
			goto err_free;
		}
	}
	free(link);
	free(next);
	free(seen);
	return c;

err_free:
	free(link);
	free(next);
	free(seen);
	uffdwp_chain__close(c);
	errno = -err;
	return NULL;
}

void uffdwp_chain__close(struct uffdwp_chain *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n; i++)
		uffdwp_img__close(c->imgs[i]);
	free(c->imgs);
	free(c);
}

size_t uffdwp_chain__length(const struct uffdwp_chain *c)
{
	return c->n;
}

struct uffdwp_img *uffdwp_chain__image(const struct uffdwp_chain *c, size_t i)
{
	return i < c->n ? c->imgs[i] : NULL;
}

/* Every "in parent" page of @img must be listed by @parent. */
static int check_coverage(const struct uffdwp_img *img, const struct uffdwp_img *parent)
{
	const struct uffdwp_img_object *o, *po;
	const struct uffdwp_img_range *r, *pr;
	uint64_t page, end;
	size_t i, k;

	for (i = 0; i < img->nr_objects; i++) {
		o = &img->objects[i];
		po = NULL;
		for (k = 0; k < o->nr_ranges; k++) {
			r = &o->ranges[k];
			if (r->kind != UFFDWP_IMG_R_PARENT)
				continue;
			if (!po)
				po = uffdwp_img__find_object(parent, o->kind, o->id);
			end = r->start + r->nr_pages;
			for (page = r->start; page < end; page = pr->start + pr->nr_pages) {
				pr = po ? uffdwp_img__find_range(po, page, NULL) : NULL;
				if (!pr) {
					pr_err("%s: object %u/%" PRIu64 " page %#" PRIx64
					       " is in parent, but parent %s does not have it\n",
					       img->index_path, o->kind, o->id,
					       page << UFFDWP_IMG_PAGE_SHIFT, parent->path);
					return -EBADMSG;
				}
			}
		}
	}
	return 0;
}

int uffdwp_chain__verify(struct uffdwp_chain *c)
{
	size_t i;
	int err;

	for (i = 0; i < c->n; i++) {
		err = uffdwp_img__verify_data(c->imgs[i]);
		if (err)
			return err;
		if (i + 1 < c->n) {
			err = check_coverage(c->imgs[i], c->imgs[i + 1]);
			if (err)
				return err;
		}
	}
	return 0;
}
