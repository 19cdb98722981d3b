// SPDX-License-Identifier: GPL-2.0
#include <stdio.h>

#include "cli.h"

int cmd_track(int argc, char **argv)
{
	fprintf(stderr, "uffdwp: track: not built yet\n");
	return 1;
}

int cmd_holder(int argc, char **argv)
{
	return 1;
}
