/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The page data of one CRIU pages image (pages-<id>.img) kept as a uffdwp
 * page file instead: the same bytes, cut into independent zstd frames with
 * a seek table and a CRC32C per frame (img_zstd.h), so any offset is read
 * by decompressing one frame. CRIU keeps its pagemap-*.img and the offsets
 * into the raw pages image; only the data lives here, in
 * uffdwp-pages-<id>.zst next to where pages-<id>.img would be.
 *
 * Writing: __writer_new(), __write()/__write_fd() any number of times,
 * __commit() (seek table, fsync, rename into place) and __free(). Until
 * the commit only a temporary name exists; __free() without a commit
 * removes it.
 * Reading: __reader_open(), then __read() at any offset; __verify() checks
 * every frame's CRC without decompressing.
 */
#ifndef UFFDWP_IMG_CRIU_BACKEND_H__
#define UFFDWP_IMG_CRIU_BACKEND_H__

#include <stddef.h>
#include <stdint.h>

#include "img/img.h"

#define UFFDWP_CPAGES_NAME     "uffdwp-pages-%u.zst"
#define UFFDWP_CPAGES_TMP_NAME UFFDWP_IMG_TMP_PREFIX "pages-%u.zst"

struct uffdwp_cpages_writer;

/*
 * Start the page file of pages image @id in directory @dir_fd. @opts may be
 * NULL (defaults). Returns the writer or NULL with errno.
 */
struct uffdwp_cpages_writer *uffdwp_cpages_writer__new(int dir_fd, uint32_t id,
						       const struct uffdwp_img_opts *opts);
/* Append @len bytes. Returns 0 or -errno. */
int uffdwp_cpages_writer__write(struct uffdwp_cpages_writer *w, const void *buf, size_t len);
/* Append @len bytes read from @fd (a pipe). Returns 0 or -errno (-EPIPE: it ended early). */
int uffdwp_cpages_writer__write_fd(struct uffdwp_cpages_writer *w, int fd, uint64_t len);
/*
 * Finish: seek table, fsync, rename to the final name. The raw length must
 * be whole pages. Sets *@raw and *@stored (may be NULL). Returns 0 or -errno.
 */
int uffdwp_cpages_writer__commit(struct uffdwp_cpages_writer *w, uint64_t *raw, uint64_t *stored);
/* Free @w; an uncommitted file is removed. NULL is fine. */
void uffdwp_cpages_writer__free(struct uffdwp_cpages_writer *w);

struct uffdwp_cpages_reader;

struct uffdwp_fcache;

/*
 * Open the page file of pages image @id in @dir_fd and check its seek
 * table. Decompressed frames are kept in @fc, shared with other readers,
 * or, if NULL, in a cache of the reader's own (16 frames). Returns 0 and
 * *@out, -ENOENT when there is no such file (the image is CRIU's own),
 * -EBADMSG (corrupt; the message names the file and offset), or -errno.
 */
int uffdwp_cpages_reader__open(int dir_fd, uint32_t id, struct uffdwp_fcache *fc,
			       struct uffdwp_cpages_reader **out);
/* Raw bytes the file holds. */
uint64_t uffdwp_cpages_reader__size(const struct uffdwp_cpages_reader *r);
/* The file's path, for messages. */
const char *uffdwp_cpages_reader__path(const struct uffdwp_cpages_reader *r);
/*
 * Copy @len raw bytes at @off into @buf. Returns 0, -ERANGE (past the end),
 * -EBADMSG (corrupt frame), -EIO, -ENOMEM. Thread safe.
 */
int uffdwp_cpages_reader__read(struct uffdwp_cpages_reader *r, void *buf, uint64_t len,
			       uint64_t off);
/* Check the CRC32C of every frame. Returns 0, -EBADMSG or -errno. */
int uffdwp_cpages_reader__verify(struct uffdwp_cpages_reader *r);
void uffdwp_cpages_reader__free(struct uffdwp_cpages_reader *r);

#endif /* UFFDWP_IMG_CRIU_BACKEND_H__ */
