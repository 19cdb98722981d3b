/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared bits of the test workloads: tiny, header-only, no library.
 * A workload prints "ready ..." on stdout once set up, then waits.
 */
#ifndef UFFDWP_WORKLOAD_H__
#define UFFDWP_WORKLOAD_H__

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Print a line to stdout and flush it: the test reads it as a signal. */
static inline void wl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void wl_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static inline __attribute__((noreturn)) void wl_die(const char *what)
{
	wl_say("error %s", what);
	exit(1);
}

/* The byte a page gets for a (seed, page index): what the test recomputes. */
static inline uint8_t wl_pattern(uint32_t seed, uint64_t page, uint64_t byte)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (page * 0xbf58476d1ce4e5b9ULL) ^ byte;

	x ^= x >> 29;
	return (uint8_t)(x ? x : 1);
}

#endif /* UFFDWP_WORKLOAD_H__ */
