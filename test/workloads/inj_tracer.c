// SPDX-License-Identifier: GPL-2.0
/*
 * Another tracer: seize PID (without stopping it), say "ready", and hold on
 * until stdin closes. Exiting detaches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>

#include "workload.h"

int main(int argc, char **argv)
{
	char buf[64];
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: inj_tracer PID\n");
		return 2;
	}
	pid = atoi(argv[1]);
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL))
		wl_die("seize");
	wl_say("ready");
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
