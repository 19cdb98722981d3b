// SPDX-License-Identifier: GPL-2.0
/*
 * seccomp_deny ERRNO NR[,NR...] PROG [ARG...]: run PROG with a seccomp
 * filter that fails the listed system calls with ERRNO, the way container
 * runtimes refuse userfaultfd or pidfd_getfd. For probing "missing" paths
 * on a kernel that has everything.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#define MAX_NR 16

int main(int argc, char **argv)
{
	struct sock_filter f[4 + 2 * MAX_NR];
	struct sock_fprog prog;
	int err, nrs[MAX_NR], n = 0, i, k = 0;
	char *s, *tok;

	if (argc < 4) {
		fprintf(stderr, "usage: seccomp_deny ERRNO NR[,NR...] PROG [ARG...]\n");
		return 2;
	}
	err = atoi(argv[1]);
	for (s = argv[2]; (tok = strtok(s, ",")) && n < MAX_NR; s = NULL)
		nrs[n++] = atoi(tok);

	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, arch));
	f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, nr));
	for (i = 0; i < n; i++) {
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], 0, 1);
		f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
						      SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA));
	}
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	prog.len = k;
	prog.filter = f;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("seccomp_deny: seccomp");
		return 1;
	}
	execv(argv[3], argv + 3);
	perror("seccomp_deny: exec");
	return 1;
}
