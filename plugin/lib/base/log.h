/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Logging for the core library. The same pr_* names CRIU uses, so code reads
 * alike in both places; the sink is stderr by default and CRIU's log when the
 * plugin installs its own with uffdwp_log_set_sink().
 */
#ifndef UFFDWP_LOG_H__
#define UFFDWP_LOG_H__

#include <errno.h>
#include <stdio.h>

enum uffdwp_loglevel {
	UFFDWP_LOG_ERROR = 1,
	UFFDWP_LOG_WARN = 2,
	UFFDWP_LOG_INFO = 3,
	UFFDWP_LOG_DEBUG = 4,
};

typedef void (*uffdwp_log_sink_t)(enum uffdwp_loglevel level, const char *msg);

/* Route messages to @sink (NULL: back to stderr). */
void uffdwp_log_set_sink(uffdwp_log_sink_t sink);
/* Messages above @level are dropped; the default is UFFDWP_LOG_WARN. */
void uffdwp_log_set_level(enum uffdwp_loglevel level);
enum uffdwp_loglevel uffdwp_log_get_level(void);

void uffdwp_log(enum uffdwp_loglevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

#define pr_err(fmt, ...)   uffdwp_log(UFFDWP_LOG_ERROR, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...)  uffdwp_log(UFFDWP_LOG_WARN, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...)  uffdwp_log(UFFDWP_LOG_INFO, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) uffdwp_log(UFFDWP_LOG_DEBUG, LOG_PREFIX fmt, ##__VA_ARGS__)
/* Like CRIU: no trailing \n in @fmt, errno is appended. */
#define pr_perror(fmt, ...)                                                                        \
	uffdwp_log(UFFDWP_LOG_ERROR, LOG_PREFIX fmt ": %s\n", ##__VA_ARGS__, uffdwp_strerror(errno))

const char *uffdwp_strerror(int err);

/* Write @s to @f as a JSON string, quoted and escaped, for reports we print. */
void uffdwp_json_str(FILE *f, const char *s);

#endif /* UFFDWP_LOG_H__ */
