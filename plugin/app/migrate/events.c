// SPDX-License-Identifier: GPL-2.0
/* The events both sides of a migration report to their caller. */
#include <stdarg.h>
#include <stdio.h>

#include "events.h"

void mig_event__emit(uffdwp_migrate_cb cb, void *arg, const struct uffdwp_migrate_event *ev)
{
	if (cb)
		cb(arg, ev);
}

void mig_event__info(uffdwp_migrate_cb cb, void *arg, const char *fmt, ...)
{
	struct uffdwp_migrate_event ev = {.kind = MIG_EV_INFO};
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ev.message = msg;
	mig_event__emit(cb, arg, &ev);
}
