/* readiness: what /readyz says, re-probed off the loop (SPEC 3, issue 12).
 *
 * Every READINESS_PERIOD_MS a loop timer checks the listeners (listener_probe)
 * and sends one probe of the spool to the thread pool, never two at once: a
 * file created, written, fsynced and removed in tmp/, and statvfs() for
 * SMTPD_SPOOL_MIN_FREE. What it finds goes into struct stats (for the HTTP
 * thread) and into srv->spool_low (for MAIL, which the SMTP core answers 452
 * 4.3.1 while it is set). So a full or read-only spool is noticed while idle,
 * and readiness comes back by itself once the spool is fine again. A store's
 * own failure marks the spool not writable at once (readiness_store_result),
 * until the next probe or store that works. With SMTPD_DELIVER=discard there
 * is no spool: only the listeners are probed. */
#ifndef MAILPORT_READINESS_H
#define MAILPORT_READINESS_H

#include <stdbool.h>
#include <stdint.h>

#include "stats.h"

struct server;

/* Often enough that a pod is back within seconds, rarely enough that the
 * probe's fsync costs nothing. */
#define READINESS_PERIOD_MS 2000
/* A probe still on the thread pool after this long (a hung disk or mount)
 * makes the spool not writable until it answers. */
#define READINESS_STUCK_MS 10000

/* Start probing at once and then every READINESS_PERIOD_MS. Returns 0 or
 * -ENOMEM (then nothing runs and readiness_free is still safe). */
int readiness_start(struct server *srv);
/* Stop the timer; a probe in flight comes back and is ignored. */
void readiness_stop(struct server *srv);
/* Release it once the loop has ended. NULL is a no-op. */
void readiness_free(struct server *srv);

/* A store came back (caller holds the stats lock): err 0 and stored, the spool
 * is writable; a storage error counts in store_failures, and one that says the
 * spool cannot take files (EROFS, ENOSPC, EDQUOT, EACCES) marks it not writable. */
void readiness_store_result(struct stats_counters *c, int err, bool stored);

/* SMTPD_SPOOL_MIN_FREE for a filesystem of `size` bytes: bytes, or percent of
 * size (0: no minimum). */
uint64_t readiness_min_free(uint64_t bytes, unsigned percent, uint64_t size);

#endif
