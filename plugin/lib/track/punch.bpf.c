// SPDX-License-Identifier: GPL-2.0
/*
 * Counts the holes punched in the shared objects in @watched: each
 * madvise(MADV_REMOVE) and fallocate() on one, counted as the system call
 * returns. A hole punched in a shared object leaves no trace in its
 * mappers' page tables that the tracker could see (punchwatch.h).
 *
 * What cannot be told apart here counts in @lost, which makes every
 * watched object dirty: a MADV_REMOVE range over more VMAs than the loop
 * follows or over a gap, a 32-bit task's madvise() and fallocate(), and
 * io_uring's.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/unistd.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "track/punch_key.h"

#define MADV_REMOVE	  9
#define MAX_VMAS	  16
#define TS_COMPAT	  0x0002 /* x86 thread_info.status: a 32-bit system call */
#define IA32_MADVISE	  219
#define IA32_FALLOCATE	  324
#define IORING_OP_FALLOC  17
#define IORING_OP_MADVISE 25

/* The fields read, relocated against the running kernel's BTF. */
struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	struct file *vm_file;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct io_kiocb {
	__u8 opcode;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UFFDWP_PUNCH_MAX_OBJS);
	__type(key, struct uffdwp_punch_key);
	__type(value, __u64);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static void count_file(struct file *f)
{
	struct uffdwp_punch_key k = {};
	__u64 *n;

	if (!f)
		return;
	k.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	k.ino = BPF_CORE_READ(f, f_inode, i_ino);
	n = bpf_map_lookup_elem(&watched, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
}

struct vma_walk {
	unsigned long next;
};

static long on_vma(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_walk *w = data;

	count_file(BPF_CORE_READ(vma, vm_file));
	w->next = BPF_CORE_READ(vma, vm_end);
	return 0;
}

static void count_range(struct task_struct *task, unsigned long start, unsigned long len)
{
	unsigned long end = start + len;
	struct vma_walk w = {};
	int i;

	for (i = 0; i < MAX_VMAS; i++) {
		if (start >= end)
			return;
		w.next = 0;
		if (bpf_find_vma(task, start, on_vma, &w, 0) || w.next <= start) {
			count_lost();
			return;
		}
		start = w.next;
	}
	if (start < end)
		count_lost();
}

static void count_fd(struct task_struct *task, unsigned long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds)) {
		count_lost();
		return;
	}
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), fds + fd))
		count_lost();
	else
		count_file(f);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	long nr = BPF_CORE_READ(regs, orig_ax);

	if (!bpf_core_field_exists(task->thread_info.status) ||
	    (BPF_CORE_READ(task, thread_info.status) & TS_COMPAT)) {
		if (nr == IA32_MADVISE || nr == IA32_FALLOCATE)
			count_lost();
		return 0;
	}
	if (nr == __NR_madvise) {
		if (BPF_CORE_READ(regs, dx) == MADV_REMOVE)
			count_range(task, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si));
	} else if (nr == __NR_fallocate) {
		count_fd(task, BPF_CORE_READ(regs, di));
	}
	return 0;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(io_uring_submit, struct io_kiocb *req)
{
	__u8 op = BPF_CORE_READ(req, opcode);

	if (op == IORING_OP_FALLOC || op == IORING_OP_MADVISE)
		count_lost();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
