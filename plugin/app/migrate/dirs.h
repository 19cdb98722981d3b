/* SPDX-License-Identifier: GPL-2.0 */
/* The directories a migration writes images into, on either side. */
#ifndef UFFDWP_MIG_DIRS_H__
#define UFFDWP_MIG_DIRS_H__

#include <stdbool.h>

/* Remove @path and everything below it; errors are ignored (best effort). */
void mig_remove_dir(const char *path);
/* Remove what @dirfd's directory holds, leaving it; best effort. */
void mig_empty_dir(int dirfd);
/* Whether @path is a directory with nothing in it: 1, 0, or -errno. */
int mig_dir_is_empty(const char *path);

#endif /* UFFDWP_MIG_DIRS_H__ */
