/* SPDX-License-Identifier: GPL-2.0 */
/* What /proc says about processes: mappings, the process tree, open files. */
#ifndef UFFDWP_PROCFS_H__
#define UFFDWP_PROCFS_H__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum uffdwp_vma_kind {
	UFFDWP_VMA_ANON,	 /* private anonymous, heap, stack */
	UFFDWP_VMA_FILE_PRIVATE, /* private file mapping: written pages are anon copies */
	UFFDWP_VMA_SHMEM,	 /* MAP_SHARED|MAP_ANONYMOUS, memfd, tmpfs file, SysV shm */
	UFFDWP_VMA_HUGETLB,	 /* hugetlbfs, private or shared */
	UFFDWP_VMA_FILE_SHARED,	 /* shared mapping of a regular file: the content is the file's */
	UFFDWP_VMA_SPECIAL,	 /* [vdso], [vvar], [vsyscall] and the like: never dumped */
};

#define UFFDWP_VMA_READ	  (1u << 0)
#define UFFDWP_VMA_WRITE  (1u << 1)
#define UFFDWP_VMA_EXEC	  (1u << 2)
#define UFFDWP_VMA_SHARED (1u << 3)
#define UFFDWP_VMA_SYSV	  (1u << 4) /* SysV shm segment; pgoff is 0, shmid in ->sysv_id */

struct uffdwp_vma {
	uint64_t start;
	uint64_t end;
	uint64_t pgoff; /* byte offset in the object */
	uint64_t dev;	/* of the mapped object, as stat(2) gives it */
	uint64_t ino;
	unsigned int prot; /* UFFDWP_VMA_* */
	enum uffdwp_vma_kind kind;
	int sysv_id;
	char name[64]; /* the path or [name] from maps, shortened */
};

/*
 * A shared memory object several page tables may map (shmem, memfd, SysV,
 * shared hugetlb): a write through one of them shows in that one only.
 */
static inline bool uffdwp_vma_is_shared_obj(const struct uffdwp_vma *v)
{
	return (v->prot & UFFDWP_VMA_SHARED) &&
	       (v->kind == UFFDWP_VMA_SHMEM || v->kind == UFFDWP_VMA_HUGETLB);
}

/* /proc/PID/pagemap entries. */
#define UFFDWP_PM_PRESENT     (1ULL << 63)
#define UFFDWP_PM_SWAP	      (1ULL << 62)
#define UFFDWP_PM_SWP_TYPE(e) ((e)&0x1f)
/*
 * A uffd-wp PTE marker (Linux 5.19) is a swap entry of type SWP_PTE_MARKER,
 * the last of the 32 types (MAX_SWAPFILES_SHIFT is 5): pagemap and
 * PAGEMAP_SCAN call it swapped. The types between the swap devices and it
 * are migration, hwpoison and device entries: a page is there.
 */
#define UFFDWP_PM_MARKER_TYPE 31

struct uffdwp_maps {
	struct uffdwp_vma *v;
	size_t nr;
};

/*
 * Read /proc/@pid/maps and classify each mapping. File-backed mappings are
 * told apart by the file system they live on (tmpfs/shm: SHMEM, hugetlbfs).
 * Returns 0, or -errno: -ESRCH the process is gone.
 */
int uffdwp_maps__read(pid_t pid, struct uffdwp_maps *maps);
/* The same, through thread @tid (a zombie leader's maps are empty). */
int uffdwp_maps__read_thread(pid_t pid, pid_t tid, struct uffdwp_maps *maps);
void uffdwp_maps__fini(struct uffdwp_maps *maps);
const char *uffdwp_vma_kind_name(enum uffdwp_vma_kind kind);

/*
 * Collect @pid and, with @tree, all its descendants (processes, not
 * threads), in parent-before-child order. *@pids is malloc'ed.
 * Returns the count (>= 1), or -errno: -ESRCH no such process.
 */
int uffdwp_proc_tree(pid_t pid, bool tree, pid_t **pids);

/* Identity of a shared memory object. */
struct uffdwp_obj_id {
	uint64_t dev;
	uint64_t ino;
};

/*
 * For each of @nr objects, set @seen[i] when any process other than those
 * in @tracked (sorted ascending) maps it, or when any process at all
 * (tracked ones included) has it open as a file descriptor, read-only ones
 * too. The writes of both go past the page tables we scan. Process
 * @trusted (the one asking, if > 0) and the caller itself are skipped.
 * Returns 0 or -errno.
 */
int uffdwp_proc_find_outside_users(const struct uffdwp_obj_id *objs, size_t nr,
				   const pid_t *tracked, size_t ntracked, pid_t trusted,
				   bool *seen);

/*
 * Change time (ns) of the object @pid maps at [@start, @end), through
 * /proc/PID/map_files (which needs CAP_SYS_ADMIN). Returns 0, -ESTALE if
 * what is mapped there now is not @id, or -errno.
 */
int uffdwp_map_file_ctime(pid_t pid, uint64_t start, uint64_t end, const struct uffdwp_obj_id *id,
			  uint64_t *ctime_ns);

/* Whether @pid is a zombie (or dead); false if it does not exist at all. */
bool uffdwp_proc_is_zombie(pid_t pid);

/* Start time of @pid in clock ticks since boot (field 22 of stat), or 0. */
uint64_t uffdwp_proc_start_time(pid_t pid);

/*
 * SysV shm segment @shmid: attach count and the last attach/detach times.
 * Returns 0, -ENOENT if the segment is gone, or -errno.
 */
int uffdwp_sysv_shm_info(int shmid, unsigned long *nattch, uint64_t *atime, uint64_t *dtime);

/* The few fields of /proc/PID/task/TID/status that injection needs. */
struct uffdwp_thread_status {
	char state; /* 0: not read */
	pid_t tgid;
	pid_t tracer;
	int seccomp;
};

/* Read them: 0, or -errno (-ESRCH: no such thread). */
int uffdwp_proc_thread_status(pid_t pid, pid_t tid, struct uffdwp_thread_status *st);

/* A state of a thread that will never run again (or was never read). */
static inline bool uffdwp_state_is_dead(char state)
{
	return state == 'Z' || state == 'X' || state == 0;
}

#endif /* UFFDWP_PROCFS_H__ */
