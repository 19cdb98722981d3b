// SPDX-License-Identifier: GPL-2.0
#define LOG_PREFIX "procfs: "
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <signal.h>
#include <unistd.h>
#include <linux/magic.h>

#include "base/log.h"
#include "base/procfs.h"
#include "uapi/uffdwp-uapi.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

const char *uffdwp_vma_kind_name(enum uffdwp_vma_kind kind)
{
	static const char *const names[] = {
	    [UFFDWP_VMA_ANON] = "anon",
	    [UFFDWP_VMA_FILE_PRIVATE] = "file-private",
	    [UFFDWP_VMA_SHMEM] = "shmem",
	    [UFFDWP_VMA_HUGETLB] = "hugetlb",
	    [UFFDWP_VMA_FILE_SHARED] = "file-shared",
	    [UFFDWP_VMA_SPECIAL] = "special",
	};

	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

/* File system magic of the anonymous-device file systems met in one read. */
struct fs_cache {
	uint64_t dev[16];
	long type[16];
	int nr;
};

static long fs_type_of(const char *dir, const struct uffdwp_vma *v, struct fs_cache *c)
{
	char path[96];
	struct statfs st;
	int i;

	for (i = 0; i < c->nr; i++)
		if (c->dev[i] == v->dev)
			return c->type[i];

	/* map_files needs CAP_SYS_ADMIN, which the tracker has as root. */
	snprintf(path, sizeof(path), "%s/map_files/%" PRIx64 "-%" PRIx64, dir, v->start, v->end);
	if (statfs(path, &st))
		return 0;
	if (c->nr < (int)(sizeof(c->dev) / sizeof(c->dev[0]))) {
		c->dev[c->nr] = v->dev;
		c->type[c->nr++] = st.f_type;
	}
	return st.f_type;
}

static void vma_classify(const char *dir, struct uffdwp_vma *v, const char *path,
			 struct fs_cache *c)
{
	long fstype;

	v->kind = UFFDWP_VMA_ANON;
	v->sysv_id = -1;
	if (path[0] == '[') {
		if (strcmp(path, "[heap]") && strncmp(path, "[stack", 6) &&
		    strncmp(path, "[anon:", 6) && strncmp(path, "[anon_shmem:", 12))
			v->kind = UFFDWP_VMA_SPECIAL;
		else if (!strncmp(path, "[anon_shmem:", 12))
			v->kind = UFFDWP_VMA_SHMEM;
		return;
	}
	/*
	 * No path: anonymous. Not the inode number: a file can have inode 0,
	 * the first SysV segment of an IPC namespace (shmid 0; maps shows the
	 * shmid there), which as "anonymous" went into the task's memory.
	 */
	if (!path[0])
		return;

	if (!strncmp(path, "/SYSV", 5) && (v->prot & UFFDWP_VMA_SHARED)) {
		v->prot |= UFFDWP_VMA_SYSV;
		/* The inode number of a SysV segment's file is its shmid. */
		v->sysv_id = (int)v->ino;
	}

	/*
	 * Block-device file systems cannot hold shmem or hugetlb; only look
	 * up anonymous devices (major 0), once per device.
	 */
	fstype = major(v->dev) == 0 ? fs_type_of(dir, v, c) : 0;
	if (fstype == HUGETLBFS_MAGIC) {
		v->kind = UFFDWP_VMA_HUGETLB;
	} else if (fstype == TMPFS_MAGIC || (v->prot & UFFDWP_VMA_SYSV) ||
		   !strncmp(path, "/memfd:", 7) || !strcmp(path, "/dev/zero (deleted)")) {
		v->kind =
		    (v->prot & UFFDWP_VMA_SHARED) ? UFFDWP_VMA_SHMEM : UFFDWP_VMA_FILE_PRIVATE;
	} else {
		v->kind = (v->prot & UFFDWP_VMA_SHARED) ? UFFDWP_VMA_FILE_SHARED
							: UFFDWP_VMA_FILE_PRIVATE;
	}
}

/* The maps of @dir, /proc/PID or /proc/PID/task/TID. */
static int maps_read(const char *dir, struct uffdwp_maps *maps)
{
	struct fs_cache cache = {.nr = 0};
	size_t cap = 0;
	char path[96];
	char *line = NULL;
	size_t len = 0;
	FILE *f;
	int err = 0;

	maps->v = NULL;
	maps->nr = 0;
	snprintf(path, sizeof(path), "%s/maps", dir);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;

	while (getline(&line, &len, f) > 0) {
		unsigned long long start, end, pgoff, ino;
		unsigned int maj, mnr;
		char perms[8];
		int name_at = 0;
		struct uffdwp_vma *v;
		char *name;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &pgoff,
			   &maj, &mnr, &ino, &name_at) < 7) {
			line[strcspn(line, "\n")] = '\0';
			pr_err("cannot parse %s line: %s\n", path, line);
			err = -EINVAL;
			break;
		}
		if (maps->nr == cap) {
			struct uffdwp_vma *nv;

			cap = cap ? cap * 2 : 64;
			nv = realloc(maps->v, cap * sizeof(*nv));
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			maps->v = nv;
		}
		v = &maps->v[maps->nr++];
		memset(v, 0, sizeof(*v));
		v->start = start;
		v->end = end;
		v->pgoff = pgoff;
		v->dev = makedev(maj, mnr);
		v->ino = ino;
		v->prot = (perms[0] == 'r' ? UFFDWP_VMA_READ : 0) |
			  (perms[1] == 'w' ? UFFDWP_VMA_WRITE : 0) |
			  (perms[2] == 'x' ? UFFDWP_VMA_EXEC : 0) |
			  (perms[3] == 's' ? UFFDWP_VMA_SHARED : 0);
		name = line + name_at;
		name[strcspn(name, "\n")] = '\0';
		snprintf(v->name, sizeof(v->name), "%s", name);
		vma_classify(dir, v, name, &cache);
	}
	free(line);
	fclose(f);
	if (err) {
		uffdwp_maps__fini(maps);
		return err;
	}
	/* A process that exited between open and read shows empty maps. */
	if (!maps->nr && access(path, R_OK))
		return -ESRCH;
	return 0;
}

int uffdwp_maps__read(pid_t pid, struct uffdwp_maps *maps)
{
	char dir[32];

	snprintf(dir, sizeof(dir), "/proc/%d", pid);
	return maps_read(dir, maps);
}

int uffdwp_maps__read_thread(pid_t pid, pid_t tid, struct uffdwp_maps *maps)
{
	char dir[64];

	snprintf(dir, sizeof(dir), "/proc/%d/task/%d", pid, tid);
	return maps_read(dir, maps);
}

void uffdwp_maps__fini(struct uffdwp_maps *maps)
{
	if (!maps)
		return;
	free(maps->v);
	maps->v = NULL;
	maps->nr = 0;
}

static int read_stat(pid_t pid, pid_t *ppid, uint64_t *start_time, char *state)
{
	char path[64], buf[1024], *p;
	unsigned long long st = 0;
	int fd, n, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p += 2; /* state */
	if (state)
		*state = *p;
	for (field = 3; field < 22 && p; field++) {
		if (field == 4 && ppid)
			*ppid = atoi(p);
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		st = strtoull(p, NULL, 10);
	if (start_time)
		*start_time = st;
	return 0;
}

bool uffdwp_proc_is_zombie(pid_t pid)
{
	char state = 0;

	return !read_stat(pid, NULL, NULL, &state) && (state == 'Z' || state == 'X');
}

uint64_t uffdwp_proc_start_time(pid_t pid)
{
	uint64_t t = 0;

	return read_stat(pid, NULL, &t, NULL) ? 0 : t;
}

struct pid_ppid {
	pid_t pid;
	pid_t ppid;
};

static int pid_is_numeric(const char *s)
{
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

int uffdwp_proc_tree(pid_t pid, bool tree, pid_t **pids)
{
	struct pid_ppid *all = NULL;
	size_t nall = 0, cap = 0, i, head;
	pid_t *out = NULL;
	size_t nout = 0, outcap = 16;
	struct dirent *de;
	char state;
	DIR *d;
	int err;

	if (read_stat(pid, NULL, NULL, &state) || state == 'Z' || state == 'X')
		return -ESRCH;
	out = malloc(outcap * sizeof(*out));
	if (!out)
		return -ENOMEM;
	out[nout++] = pid;
	if (!tree)
		goto done;

	/*
	 * /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN and misses
	 * children of non-leader threads' exits; one pass over the stat file
	 * of every process does not.
	 */
	d = opendir("/proc");
	if (!d) {
		err = -errno;
		goto err_free;
	}
	while ((de = readdir(d))) {
		pid_t p, pp = 0;

		if (!pid_is_numeric(de->d_name))
			continue;
		p = atoi(de->d_name);
		if (read_stat(p, &pp, NULL, &state) || state == 'Z' || state == 'X')
			continue; /* zombies have no memory left to track */
		if (nall == cap) {
			struct pid_ppid *na;

			cap = cap ? cap * 2 : 256;
			na = realloc(all, cap * sizeof(*na));
			if (!na) {
				closedir(d);
				err = -ENOMEM;
				goto err_free;
			}
			all = na;
		}
		all[nall].pid = p;
		all[nall++].ppid = pp;
	}
	closedir(d);

	/* Breadth first, so parents come before their children. */
	for (head = 0; head < nout; head++) {
		for (i = 0; i < nall; i++) {
			if (all[i].ppid != out[head])
				continue;
			if (nout == outcap) {
				pid_t *no;

				outcap *= 2;
				no = realloc(out, outcap * sizeof(*no));
				if (!no) {
					err = -ENOMEM;
					goto err_free;
				}
				out = no;
			}
			out[nout++] = all[i].pid;
		}
	}
	free(all);
done:
	*pids = out;
	return (int)nout;

err_free:
	free(all);
	free(out);
	return err;
}

static int pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

static int obj_index(const struct uffdwp_obj_id *objs, size_t nr, uint64_t dev, uint64_t ino)
{
	size_t i;

	for (i = 0; i < nr; i++)
		if (objs[i].dev == dev && objs[i].ino == ino)
			return (int)i;
	return -1;
}

static void scan_fds(pid_t pid, const struct uffdwp_obj_id *objs, size_t nr, bool *seen)
{
	char path[64];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		/* stat() follows the magic link to the object itself. */
		if (fstatat(dirfd(d), de->d_name, &st, 0))
			continue;
		/*
		 * Read-only and O_PATH descriptors count as well: reopening
		 * /proc/PID/fd/N for writing, writing and closing again between
		 * two scans leaves nothing to see.
		 */
		i = obj_index(objs, nr, st.st_dev, st.st_ino);
		if (i >= 0)
			seen[i] = true;
	}
	closedir(d);
}

/*
 * The file-backed mappings of the process behind @fd (its /proc/PID/maps)
 * through PROCMAP_QUERY: no text, no path names, anonymous mappings
 * skipped in the kernel. 0, or -ENOTTY where the kernel has no
 * PROCMAP_QUERY, or another -errno after which the text is read instead.
 */
static int query_maps(int fd, const struct uffdwp_obj_id *objs, size_t nr, bool *seen)
{
	struct procmap_query q;
	uint64_t addr = 0;
	int i;

	for (;;) {
		memset(&q, 0, sizeof(q));
		q.size = sizeof(q);
		q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_FILE_BACKED_VMA;
		q.query_addr = addr;
		if (ioctl(fd, PROCMAP_QUERY, &q))
			return errno == ENOENT ? 0 : -errno;
		/* A VMA ending at or before where we asked: the kernel went back. */
		if (q.vma_end <= addr)
			return -EIO;
		i = obj_index(objs, nr, makedev(q.dev_major, q.dev_minor), q.inode);
		if (i >= 0)
			seen[i] = true;
		addr = q.vma_end;
	}
}

static void scan_maps(pid_t pid, const struct uffdwp_obj_id *objs, size_t nr, bool *seen)
{
	static bool no_query;
	char path[64], *line = NULL;
	size_t len = 0;
	FILE *f;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (!no_query) {
		err = query_maps(fd, objs, nr, seen);
		if (!err) {
			close(fd);
			return;
		}
		if (err == -ENOTTY || err == -EINVAL)
			no_query = true;
	}
	f = fdopen(fd, "re");
	if (!f) {
		close(fd);
		return;
	}
	while (getline(&line, &len, f) > 0) {
		unsigned int maj, mnr;
		unsigned long long ino;
		int i;

		if (sscanf(line, "%*x-%*x %*s %*x %x:%x %llu", &maj, &mnr, &ino) != 3 || !ino)
			continue;
		i = obj_index(objs, nr, makedev(maj, mnr), ino);
		if (i >= 0)
			seen[i] = true;
	}
	free(line);
	fclose(f);
}

int uffdwp_proc_find_outside_users(const struct uffdwp_obj_id *objs, size_t nr,
				   const pid_t *tracked, size_t ntracked, pid_t trusted, bool *seen)
{
	struct dirent *de;
	pid_t self = getpid();
	DIR *d;

	if (!nr)
		return 0;
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t p;

		if (!pid_is_numeric(de->d_name))
			continue;
		p = atoi(de->d_name);
		/*
		 * Our own mappings of the objects do not exist; our fds are for
		 * pagemap. The process asking for the scan (a dumper reading the
		 * objects while it asks) does not write them.
		 */
		if (p == self || (trusted > 0 && p == trusted))
			continue;
		scan_fds(p, objs, nr, seen);
		if (!bsearch(&p, tracked, ntracked, sizeof(*tracked), pid_cmp))
			scan_maps(p, objs, nr, seen);
	}
	closedir(d);
	return 0;
}

int uffdwp_map_file_ctime(pid_t pid, uint64_t start, uint64_t end, const struct uffdwp_obj_id *id,
			  uint64_t *ctime_ns)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, start, end);
	if (stat(path, &st))
		return -errno;
	if (st.st_dev != id->dev || st.st_ino != id->ino)
		return -ESTALE;
	*ctime_ns = (uint64_t)st.st_ctim.tv_sec * 1000000000ull + (uint64_t)st.st_ctim.tv_nsec;
	return 0;
}

int uffdwp_sysv_shm_info(int shmid, unsigned long *nattch, uint64_t *atime, uint64_t *dtime)
{
	char *line = NULL;
	size_t len = 0;
	int err = -ENOENT;
	FILE *f;

	f = fopen("/proc/sysvipc/shm", "re");
	if (!f)
		return -errno;
	while (getline(&line, &len, f) > 0) {
		unsigned long long at, dt;
		unsigned long na;
		int id;

		/* key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ... */
		if (sscanf(line, "%*d %d %*o %*u %*d %*d %lu %*u %*u %*u %*u %llu %llu", &id, &na,
			   &at, &dt) != 4)
			continue;
		if (id != shmid)
			continue;
		*nattch = na;
		*atime = at;
		*dtime = dt;
		err = 0;
		break;
	}
	free(line);
	fclose(f);
	return err;
}

int uffdwp_proc_thread_status(pid_t pid, pid_t tid, struct uffdwp_thread_status *st)
{
	char path[64], line[256];
	FILE *f;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	f = fopen(path, "re");
	if (!f) {
		err = -errno;
		return err == -ENOENT ? -ESRCH : err;
	}
	memset(st, 0, sizeof(*st));
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "State:", 6))
			sscanf(line + 6, " %c", &st->state);
		else if (!strncmp(line, "Tgid:", 5))
			st->tgid = atoi(line + 5);
		else if (!strncmp(line, "TracerPid:", 10))
			st->tracer = atoi(line + 10);
		else if (!strncmp(line, "Seccomp:", 8))
			st->seccomp = atoi(line + 8);
	}
	fclose(f);
	return 0;
}
