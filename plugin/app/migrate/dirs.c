// SPDX-License-Identifier: GPL-2.0
/* Image directories: emptying and removing them, and telling they are empty. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dirs.h"

static bool dot(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

void mig_empty_dir(int dirfd)
{
	struct dirent *de;
	DIR *d;
	int fd, sub;

	fd = dup(dirfd);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (dot(de->d_name))
			continue;
		if (!unlinkat(dirfd, de->d_name, 0) || errno != EISDIR)
			continue;
		sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			mig_empty_dir(sub);
			close(sub);
		}
		unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

void mig_remove_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0) {
		mig_empty_dir(fd);
		close(fd);
	}
	rmdir(path);
}

int mig_dir_is_empty(const char *path)
{
	struct dirent *de;
	int empty = 1;
	DIR *d;

	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (!dot(de->d_name)) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}
