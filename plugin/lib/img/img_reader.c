// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img-head.pb-c.h"
#include "img-object.pb-c.h"
#include "img/img.h"
#include "img/img_crc.h"
#include "img/img_priv.h"
#include "img/img_zstd.h"

#define LOG_PREFIX "img: "
#include "base/log.h"

char *uffdwp_img_path_join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s/%s", dir, name) < 0) {
		errno = ENOMEM;
		return NULL;
	}
	return s;
}

char *uffdwp_img__id_str(const uint8_t *id, char *buf)
{
	int i;

	for (i = 0; i < UFFDWP_IMG_ID_LEN; i++)
		sprintf(buf + 2 * i, "%02x", id[i]);
	return buf;
}

static int obj_cmp(const void *a, const void *b)
{
	const struct uffdwp_img_object *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return 0;
}

static int check_head(struct uffdwp_img *img, const UffdwpImgHead *h, size_t off)
{
	const char *why = NULL;

	if (h->id.len != UFFDWP_IMG_ID_LEN)
		why = "id is not 16 bytes";
	else if (h->flags)
		why = "reserved flags set";
	else if (h->page_size != UFFDWP_IMG_PAGE_SIZE)
		why = "page size is not 4096";
	else if (h->frame_size < UFFDWP_IMG_PAGE_SIZE || h->frame_size > UFFDWP_IMG_MAX_FRAME ||
		 h->frame_size % UFFDWP_IMG_PAGE_SIZE)
		why = "bad frame size";
	else if (h->depth >= UFFDWP_IMG_MAX_DEPTH)
		why = "chain too deep";
	else if (!h->depth != !h->has_parent_id || h->has_parent_id != h->has_parent_crc)
		why = "parent fields do not match the depth";
	else if (h->has_parent_id && h->parent_id.len != UFFDWP_IMG_ID_LEN)
		why = "parent id is not 16 bytes";
	else if (h->data_pages > UFFDWP_IMG_MAX_PAGE)
		why = "too many data pages";
	if (why) {
		pr_err("%s: offset %zu: bad head record: %s\n", img->index_path, off, why);
		return -EBADMSG;
	}
	memcpy(img->info.id, h->id.data, UFFDWP_IMG_ID_LEN);
	if (h->has_parent_id) {
		img->info.has_parent = true;
		memcpy(img->info.parent_id, h->parent_id.data, UFFDWP_IMG_ID_LEN);
		img->info.parent_crc = h->parent_crc;
		img->info.parent_crc_known = img->info.version >= 2;
	}
	img->info.depth = h->depth;
	img->info.frame_size = h->frame_size;
	img->info.level = h->level;
	img->info.ctime_ns = h->has_ctime_ns ? h->ctime_ns : 0;
	img->info.st.data_pages = h->data_pages;
	img->info.st.pages_file = h->pages_size;
	return 0;
}

/* Expand object @o (at file offset @off) into img->objects[i] and its ranges. */
static int load_object(struct uffdwp_img *img, size_t i, const UffdwpImgObject *o, size_t off,
		       uint64_t *data_next, struct uffdwp_img_range *r)
{
	struct uffdwp_img_object *obj = &img->objects[i];
	uint64_t end = 0, start;
	const char *why = NULL;
	uint32_t w, kind;
	size_t k;

	if (o->kind != UFFDWP_IMG_OBJ_TASK && o->kind != UFFDWP_IMG_OBJ_SHMEM)
		why = "unknown object kind";
	else if (o->flags)
		why = "reserved flags set";
	else if (o->n_gap != o->n_npages || o->n_gap != o->n_rkind)
		why = "range arrays differ in length";
	else if (o->data_start != *data_next)
		why = "data does not follow the previous object's";
	if (why)
		goto bad;
	obj->kind = o->kind;
	obj->id = o->id;
	obj->nr_ranges = o->n_gap;
	obj->ranges = r;
	for (k = 0; k < o->n_gap; k++, r++) {
		w = o->rkind[k];
		kind = UFFDWP_RKIND_KIND(w);
		if (UFFDWP_RKIND_RESERVED(w)) {
			why = "reserved range bits set";
		} else if (kind < UFFDWP_IMG_R_DATA || kind > UFFDWP_IMG_R_FILL) {
			why = "unknown range kind";
		} else if ((kind == UFFDWP_IMG_R_FILL) != !!UFFDWP_RKIND_FILL(w)) {
			why = "fill byte on a range that is not fill, or fill of 0";
		} else if (kind == UFFDWP_IMG_R_PARENT && !img->info.has_parent) {
			why = "range in parent, but the image has no parent";
		} else if (!o->npages[k] || o->gap[k] > UFFDWP_IMG_MAX_PAGE - end ||
			   o->npages[k] > UFFDWP_IMG_MAX_PAGE - end - o->gap[k]) {
			why = "range is empty or beyond the address space";
		}
		if (why)
			goto bad_range;
		start = end + o->gap[k];
		end = start + o->npages[k];
		r->start = start;
		r->nr_pages = o->npages[k];
		r->kind = kind;
		r->fill = UFFDWP_RKIND_FILL(w);
		r->data_page = 0;
		obj->st.pages += r->nr_pages;
		switch (kind) {
		case UFFDWP_IMG_R_DATA:
			if (r->nr_pages > img->info.st.data_pages - *data_next) {
				why = "more data pages than the head says";
				goto bad_range;
			}
			r->data_page = *data_next;
			*data_next += r->nr_pages;
			obj->st.data_pages += r->nr_pages;
			break;
		case UFFDWP_IMG_R_PARENT:
			obj->st.parent_pages += r->nr_pages;
			break;
		default:
			obj->st.fill_pages += r->nr_pages;
		}
	}
	return 0;

bad_range:
	pr_err("%s: offset %zu: object %u/%" PRIu64 " range %zu: %s\n", img->index_path, off,
	       o->kind, o->id, k, why);
	return -EBADMSG;
bad:
	pr_err("%s: offset %zu: bad object record: %s\n", img->index_path, off, why);
	return -EBADMSG;
}

static int parse_index(struct uffdwp_img *img, const uint8_t *buf, size_t size)
{
	UffdwpImgObject **objs = NULL;
	UffdwpImgHead *head = NULL;
	size_t off, end, len, nrec, i, nranges = 0, *offs = NULL;
	uint64_t data_next = 0;
	struct uffdwp_img_range *r;
	uint32_t version, flags;
	int err = -EBADMSG;

	if (size < UFFDWP_IDX_HDR + UFFDWP_IDX_TRAILER) {
		pr_err("%s: offset 0: %zu bytes is too short for an index\n", img->index_path,
		       size);
		return -EBADMSG;
	}
	if (uffdwp_get_le32(buf) != UFFDWP_IDX_MAGIC) {
		pr_err("%s: offset 0: not an uffdwp index (magic %#x)\n", img->index_path,
		       uffdwp_get_le32(buf));
		return -EBADMSG;
	}
	version = buf[4] | buf[5] << 8;
	flags = buf[6] | buf[7] << 8;
	if (version < UFFDWP_IDX_VERSION_MIN || version > UFFDWP_IDX_VERSION) {
		pr_err("%s: offset 4: version %u, only %u to %u are known\n", img->index_path,
		       version, UFFDWP_IDX_VERSION_MIN, UFFDWP_IDX_VERSION);
		return -EBADMSG;
	}
	img->info.version = version;
	if (flags) {
		pr_err("%s: offset 6: reserved flags set (%#x)\n", img->index_path, flags);
		return -EBADMSG;
	}
	end = UFFDWP_IDX_HDR + (size_t)uffdwp_get_le32(buf + 8);
	if (end + UFFDWP_IDX_TRAILER != size) {
		pr_err("%s: offset 8: records of %u bytes do not fill a file of %zu\n",
		       img->index_path, uffdwp_get_le32(buf + 8), size);
		return -EBADMSG;
	}
	if (uffdwp_get_le32(buf + end + 4) != UFFDWP_IDX_END) {
		pr_err("%s: offset %zu: no end magic\n", img->index_path, end + 4);
		return -EBADMSG;
	}
	/*
	 * The CRC of [0, end) is the index's name for children to check. Taken
	 * over the stored CRC and end magic too, it would be the same residue
	 * for every index (what version 1 writers recorded).
	 */
	img->info.index_crc = uffdwp_crc32c(0, buf, end);
	if (img->info.index_crc != uffdwp_get_le32(buf + end)) {
		pr_err("%s: offset %zu: index checksum mismatch\n", img->index_path, end);
		return -EBADMSG;
	}
	nrec = uffdwp_get_le32(buf + 12);
	if (!nrec || nrec > (end - UFFDWP_IDX_HDR) / 4) {
		pr_err("%s: offset 12: %zu records cannot fit\n", img->index_path, nrec);
		return -EBADMSG;
	}

	objs = calloc(nrec, sizeof(*objs));
	offs = calloc(nrec, sizeof(*offs));
	if (!objs || !offs) {
		err = -ENOMEM;
		goto out;
	}
	off = UFFDWP_IDX_HDR;
	for (i = 0; i < nrec; i++) {
		if (end - off < 4 || end - off - 4 < (len = uffdwp_get_le32(buf + off))) {
			pr_err("%s: offset %zu: record %zu runs past the end\n", img->index_path,
			       off, i);
			goto out;
		}
		offs[i] = off;
		if (i == 0)
			head = uffdwp_img_head__unpack(NULL, len, buf + off + 4);
		else
			objs[i] = uffdwp_img_object__unpack(NULL, len, buf + off + 4);
		if (i == 0 ? !head : !objs[i]) {
			pr_err("%s: offset %zu: record %zu does not decode\n", img->index_path, off,
			       i);
			goto out;
		}
		if (i)
			nranges += objs[i]->n_gap;
		off += 4 + len;
	}
	if (off != end) {
		pr_err("%s: offset %zu: %zu bytes after the last record\n", img->index_path, off,
		       end - off);
		goto out;
	}
	err = check_head(img, head, offs[0]);
	if (err)
		goto out;
	err = -EBADMSG;
	if (head->nr_objects != nrec - 1) {
		pr_err("%s: offset %zu: head says %u objects, file has %zu\n", img->index_path,
		       offs[0], head->nr_objects, nrec - 1);
		goto out;
	}
	img->nr_objects = nrec - 1;
	img->objects = calloc(nrec, sizeof(*img->objects));
	img->ranges = calloc(nranges ? nranges : 1, sizeof(*img->ranges));
	if (!img->objects || !img->ranges) {
		err = -ENOMEM;
		goto out;
	}
	r = img->ranges;
	for (i = 1; i < nrec; i++) {
		err = load_object(img, i - 1, objs[i], offs[i], &data_next, r);
		if (err)
			goto out;
		r += objs[i]->n_gap;
		img->info.st.pages += img->objects[i - 1].st.pages;
		img->info.st.parent_pages += img->objects[i - 1].st.parent_pages;
		img->info.st.fill_pages += img->objects[i - 1].st.fill_pages;
	}
	err = -EBADMSG;
	if (data_next != head->data_pages) {
		pr_err("%s: offset %zu: ranges hold %" PRIu64 " data pages, head says %" PRIu64
		       "\n",
		       img->index_path, offs[0], data_next, (uint64_t)head->data_pages);
		goto out;
	}
	qsort(img->objects, img->nr_objects, sizeof(*img->objects), obj_cmp);
	for (i = 1; i < img->nr_objects; i++)
		if (!obj_cmp(&img->objects[i - 1], &img->objects[i])) {
			pr_err("%s: object %u/%" PRIu64 " is listed twice\n", img->index_path,
			       img->objects[i].kind, img->objects[i].id);
			goto out;
		}
	img->info.st.index_bytes = size;
	img->info.st.pages_file = head->pages_size;
	/* Checked against the page file once it is open. */
	img->zt.crc = head->seek_crc;
	err = 0;
out:
	if (objs)
		for (i = 1; i < nrec; i++)
			uffdwp_img_object__free_unpacked(objs[i], NULL);
	uffdwp_img_head__free_unpacked(head, NULL);
	free(objs);
	free(offs);
	return err;
}

/* Share of the compressed bytes that each object's data pages take. */
static void apportion(struct uffdwp_img *img)
{
	const struct uffdwp_ztable *t = &img->zt;
	struct uffdwp_img_object *o;
	uint64_t lo, hi, a, b, f;
	size_t i, k;
	long first;

	img->info.st.frames = t->nframes;
	img->info.st.stored_bytes = t->nframes ? t->coff[t->nframes] : 0;
	for (i = 0; i < img->nr_objects; i++) {
		o = &img->objects[i];
		for (k = 0; k < o->nr_ranges; k++) {
			if (o->ranges[k].kind != UFFDWP_IMG_R_DATA)
				continue;
			lo = o->ranges[k].data_page;
			hi = lo + o->ranges[k].nr_pages;
			first = uffdwp_ztable__find(t, lo);
			for (f = first < 0 ? t->nframes : (uint64_t)first;
			     f < t->nframes && t->rpage[f] < hi; f++) {
				a = t->rpage[f] > lo ? t->rpage[f] : lo;
				b = t->rpage[f + 1] < hi ? t->rpage[f + 1] : hi;
				o->st.stored_bytes += (t->coff[f + 1] - t->coff[f]) * (b - a) /
						      (t->rpage[f + 1] - t->rpage[f]);
			}
		}
		o->st.frames = 0;
	}
}

static void report_missing(const char *dir, int dirfd)
{
	if (!faccessat(dirfd, UFFDWP_IMG_PAGES, F_OK, AT_SYMLINK_NOFOLLOW) ||
	    !faccessat(dirfd, UFFDWP_IMG_PAGES_TMP, F_OK, AT_SYMLINK_NOFOLLOW) ||
	    !faccessat(dirfd, UFFDWP_IMG_INDEX_TMP, F_OK, AT_SYMLINK_NOFOLLOW))
		pr_err("%s: incomplete image: no %s, only the files of an interrupted write\n", dir,
		       UFFDWP_IMG_INDEX);
	else
		pr_err("%s: no image (no %s)\n", dir, UFFDWP_IMG_INDEX);
}

struct uffdwp_img *uffdwp_img__open(const char *dir)
{
	struct uffdwp_img *img;
	uint8_t *buf = NULL;
	struct stat st;
	int fd = -1, err;
	uint32_t seek_crc;

	img = calloc(1, sizeof(*img));
	if (!img)
		return NULL;
	img->dirfd = img->pages_fd = -1;
	img->path = strdup(dir);
	img->index_path = uffdwp_img_path_join(dir, UFFDWP_IMG_INDEX);
	img->pages_path = uffdwp_img_path_join(dir, UFFDWP_IMG_PAGES);
	if (!img->path || !img->index_path || !img->pages_path) {
		err = -ENOMEM;
		goto err_free;
	}
	img->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (img->dirfd < 0) {
		err = -errno;
		pr_perror("Can't open %s", dir);
		goto err_free;
	}
	fd = openat(img->dirfd, UFFDWP_IMG_INDEX, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ENOENT)
			report_missing(dir, img->dirfd);
		else
			pr_perror("Can't open %s", img->index_path);
		goto err_free;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		pr_perror("Can't stat %s", img->index_path);
		goto err_close;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > UFFDWP_IDX_MAX) {
		pr_err("%s: offset 0: not a regular file of a sane size\n", img->index_path);
		err = -EBADMSG;
		goto err_close;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		err = -ENOMEM;
		goto err_close;
	}
	err = uffdwp_pread_full(fd, buf, st.st_size, 0);
	if (err) {
		errno = -err;
		pr_perror("Can't read %s", img->index_path);
		goto err_close;
	}
	close(fd);
	fd = -1;
	err = parse_index(img, buf, st.st_size);
	free(buf);
	buf = NULL;
	if (err)
		goto err_free;

	seek_crc = img->zt.crc;
	img->pages_fd = openat(img->dirfd, UFFDWP_IMG_PAGES, O_RDONLY | O_CLOEXEC);
	if (img->pages_fd < 0) {
		err = -errno;
		if (err == -ENOENT) {
			pr_err("%s: missing, and the index %s needs it\n", img->pages_path,
			       img->index_path);
			err = -EBADMSG;
		} else {
			pr_perror("Can't open %s", img->pages_path);
		}
		goto err_free;
	}
	err = uffdwp_ztable__load(&img->zt, img->pages_fd, img->pages_path, img->info.frame_size);
	if (err)
		goto err_free;
	err = -EBADMSG;
	if (img->zt.file_size != img->info.st.pages_file || img->zt.crc != seek_crc) {
		pr_err("%s: %" PRIu64 " bytes with seek table CRC %#x, the index wants %" PRIu64
		       " and %#x: not this image's page file\n",
		       img->pages_path, img->zt.file_size, img->zt.crc, img->info.st.pages_file,
		       seek_crc);
		goto err_free;
	}
	if (img->zt.rpage[img->zt.nframes] != img->info.st.data_pages) {
		pr_err("%s: frames hold %" PRIu64 " pages, the index wants %" PRIu64 "\n",
		       img->pages_path, img->zt.rpage[img->zt.nframes], img->info.st.data_pages);
		goto err_free;
	}
	apportion(img);
	return img;

err_close:
	if (fd >= 0)
		close(fd);
err_free:
	free(buf);
	uffdwp_img__close(img);
	errno = -err;
	return NULL;
}

void uffdwp_img__close(struct uffdwp_img *img)
{
	if (!img)
		return;
	if (img->pages_fd >= 0)
		close(img->pages_fd);
	if (img->dirfd >= 0)
		close(img->dirfd);
	uffdwp_ztable__fini(&img->zt);
	free(img->objects);
	free(img->ranges);
	free(img->path);
	free(img->index_path);
	free(img->pages_path);
	free(img);
}

const struct uffdwp_img_info *uffdwp_img__info(const struct uffdwp_img *img)
{
	return &img->info;
}

const char *uffdwp_img__path(const struct uffdwp_img *img)
{
	return img->path;
}

size_t uffdwp_img__nr_objects(const struct uffdwp_img *img)
{
	return img->nr_objects;
}

const struct uffdwp_img_object *uffdwp_img__object(const struct uffdwp_img *img, size_t i)
{
	return i < img->nr_objects ? &img->objects[i] : NULL;
}

const struct uffdwp_img_object *uffdwp_img__find_object(const struct uffdwp_img *img, uint32_t kind,
							uint64_t id)
{
	struct uffdwp_img_object key = {.kind = kind, .id = id};

	return bsearch(&key, img->objects, img->nr_objects, sizeof(key), obj_cmp);
}

const struct uffdwp_img_range *uffdwp_img__find_range(const struct uffdwp_img_object *obj,
						      uint64_t page, uint64_t *next)
{
	size_t lo = 0, hi = obj->nr_ranges, mid;
	const struct uffdwp_img_range *r;

	/* First range that ends after @page. */
	while (lo < hi) {
		mid = (lo + hi) / 2;
		r = &obj->ranges[mid];
		if (r->start + r->nr_pages <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == obj->nr_ranges) {
		if (next)
			*next = UINT64_MAX;
		return NULL;
	}
	r = &obj->ranges[lo];
	if (r->start <= page)
		return r;
	if (next)
		*next = r->start;
	return NULL;
}

int uffdwp_img__verify_data(struct uffdwp_img *img)
{
	const struct uffdwp_ztable *t = &img->zt;
	void *cbuf, *out;
	ZSTD_DCtx *dctx;
	int err = 0;
	uint32_t i;
	long r;

	cbuf = malloc(t->max_csize ? t->max_csize : 1);
	out = malloc(t->max_rsize ? t->max_rsize : 1);
	dctx = ZSTD_createDCtx();
	if (!cbuf || !out || !dctx) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < t->nframes; i++) {
		r = uffdwp_zframe__load(t, img->pages_fd, img->pages_path, i, dctx, cbuf, out);
		if (r < 0) {
			err = r;
			break;
		}
	}
out:
	ZSTD_freeDCtx(dctx);
	free(cbuf);
	free(out);
	return err;
}
