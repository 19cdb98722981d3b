// SPDX-License-Identifier: GPL-2.0
#include <stdio.h>

#include "cli.h"

int cmd_img(int argc, char **argv)
{
	fprintf(stderr, "uffdwp: img: not built yet\n");
	return 1;
}
