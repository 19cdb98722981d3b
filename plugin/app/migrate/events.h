/* SPDX-License-Identifier: GPL-2.0 */
/* The events both sides of a migration report to their caller (migrate.h). */
#ifndef UFFDWP_MIG_EVENTS_H__
#define UFFDWP_MIG_EVENTS_H__

#include "migrate.h"

/* Hand @ev to @cb, if there is one. */
void mig_event__emit(uffdwp_migrate_cb cb, void *arg, const struct uffdwp_migrate_event *ev);
/* An MIG_EV_INFO event with the formatted message (at most 511 bytes). */
void mig_event__info(uffdwp_migrate_cb cb, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* UFFDWP_MIG_EVENTS_H__ */
