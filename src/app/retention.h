/* retention: SMTPD_RETENTION_MAX_MESSAGES and SMTPD_RETENTION_MAX_AGE (SPEC 7,
 * issue 17), for mail catchers whose spool would otherwise grow for ever.
 *
 * The oldest messages go first, in the spool index's order (arrival order, the
 * order of our Maildir ids), whatever directory they are in (new/, cur/,
 * failed/). The work runs on the thread pool, never on the loop: a timer asks
 * for a pass every RETENTION_INTERVAL_MS, and with a message limit every stored
 * message asks for one too (the index's observer wakes the loop through a
 * uv_async_t), so the spool exceeds the limit only for the moment a pass takes.
 * Messages are removed through spool_remove(), the spool's own delete path, so
 * the index and /events follow as for any other delete. A pass removes at most
 * RETENTION_PASS_MAX messages; the next one goes on.
 *
 * Age is read from the id ("<seconds>.M..."), the time the message arrived;
 * a file whose name is not one of our ids (put there by another program) has
 * no age and goes only by the count. */
#ifndef MAILPORT_RETENTION_H
#define MAILPORT_RETENTION_H

#include <stdint.h>
#include <uv.h>

struct spool;
struct stats;
struct retention;

#define RETENTION_INTERVAL_MS 1000
#define RETENTION_BATCH       256
#define RETENTION_PASS_MAX    (64 * RETENTION_BATCH)

/* Start (nothing runs when both limits are 0 or sp is NULL: *out is NULL, 0
 * returned). 0 or -ENOMEM. */
int retention_start(uv_loop_t *loop, struct spool *sp, struct stats *stats, uint64_t max_messages,
                    uint64_t max_age, struct retention **out);
/* On the loop, at the drain's end: stop asking for passes and close the
 * handles (a pass in flight finishes). NULL is a no-op. */
void retention_stop(struct retention *r);
/* After the loop has run its close callbacks and the pass in flight. */
void retention_free(struct retention *r);

/* ---- the pass itself (blocking; unit-tested) ---- */

/* Remove what the limits say from sp, oldest first, at most RETENTION_PASS_MAX;
 * now is Unix seconds. Returns the number removed. */
uint64_t retention_pass(struct spool *sp, uint64_t max_messages, uint64_t max_age, int64_t now);

#endif
