// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"

static uffdwp_log_sink_t log_sink;
static enum uffdwp_loglevel log_level = UFFDWP_LOG_WARN;

void uffdwp_log_set_sink(uffdwp_log_sink_t sink)
{
	log_sink = sink;
}

void uffdwp_log_set_level(enum uffdwp_loglevel level)
{
	log_level = level;
}

enum uffdwp_loglevel uffdwp_log_get_level(void)
{
	return log_level;
}

const char *uffdwp_strerror(int err)
{
	/* strerror() is not thread safe; the holder logs from one thread only. */
	return strerror(err);
}

void uffdwp_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void uffdwp_log(enum uffdwp_loglevel level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int saved = errno;

	if (level > log_level && !log_sink)
		return;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (log_sink)
		log_sink(level, buf);
	else
		fprintf(stderr, "uffdwp: %s%s",
			level == UFFDWP_LOG_ERROR  ? "error: "
			: level == UFFDWP_LOG_WARN ? "warning: "
						   : "",
			buf);
	errno = saved;
}
