// SPDX-License-Identifier: GPL-2.0
/* The one number parser of the uffdwp command, and of its image options (cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "img/img.h"

int cli_num__u64(const char *s, unsigned int flags, uint64_t min, uint64_t max, uint64_t *v)
{
	const char *p = s;
	unsigned int shift = 0;
	char *end;
	uint64_t x;

	if (!*p || *p == '-' || *p == '+' || *p == ' ')
		return -EINVAL;
	if ((flags & CLI_NUM_HEX) && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	errno = 0;
	x = strtoull(p, &end, flags & CLI_NUM_HEX ? 16 : 0);
	if (errno || end == p)
		return -EINVAL;
	if (flags & CLI_NUM_SUFFIX) {
		switch (*end) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		}
		if (shift) {
			end++;
			if (x > (UINT64_MAX >> shift))
				return -ERANGE;
			x <<= shift;
		}
	}
	if (*end)
		return -EINVAL;
	if (x < min || x > max)
		return -ERANGE;
	*v = x;
	return 0;
}

int cli_num__int(const char *s, long min, long max, int *v)
{
	char *end;
	long x;

	if (!*s || *s == ' ')
		return -EINVAL;
	errno = 0;
	x = strtol(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	if (x < min || x > max || x < INT32_MIN || x > INT32_MAX)
		return -ERANGE;
	*v = (int)x;
	return 0;
}

int cli_num__double(const char *s, double min, double max, double *v)
{
	char *end;
	double x;

	if (!*s || *s == ' ')
		return -EINVAL;
	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || *end || isnan(x))
		return -EINVAL;
	if (x < min || x > max)
		return -ERANGE;
	*v = x;
	return 0;
}

int cli_parse_pid(const char *arg)
{
	int v;

	if (cli_num__int(arg, 1, INT_MAX, &v)) {
		cli_err("'%s' is not a process id\n", arg);
		return -1;
	}
	return v;
}

int cli_img_opts__set(struct uffdwp_img_opts *o, const char *cmd, const char *name, const char *arg)
{
	uint64_t v;
	int err;

	if (!strcmp(name, "frame-size")) {
		err = cli_num__u64(arg, CLI_NUM_SUFFIX, 0, UINT32_MAX, &v);
		if (!err)
			o->frame_size = (uint32_t)v;
	} else {
		err = cli_num__int(arg, INT_MIN, INT_MAX,
				   !strcmp(name, "level") ? &o->level : &o->threads);
	}
	if (err) {
		cli_err("%s: bad --%s '%s'\n", cmd, name, arg);
		return CLI_USAGE;
	}
	return 0;
}

int cli_img_opts__check(const struct uffdwp_img_opts *o)
{
	return uffdwp_img_opts__check(o) ? CLI_USAGE : 0;
}
