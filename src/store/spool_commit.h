/* spool_commit: the loop's side of the group commit (journal.h).
 *
 * Messages whose data is complete are submitted here; at most one journal
 * commit runs on the thread pool at a time, and it takes every message
 * submitted before it started. While it syncs, the next batch gathers, so the
 * batch grows with the load by itself: no timer, no fixed window, one message
 * alone is committed at once. A checkpoint (journal_checkpoint) is considered
 * every 2 s and runs beside the commits (its syncfs holds no lock).
 *
 * Loop thread only. Each entry's done(e, arg) runs exactly once from the
 * loop, with e->rc set (0: in new/ or cur/, answer 250; else 451 4.3.0). */
#ifndef MAILPORT_SPOOL_COMMIT_H
#define MAILPORT_SPOOL_COMMIT_H

#include <uv.h>

#include "journal.h"

struct spool;
struct spool_commit;

/* Returns NULL on out of memory. */
struct spool_commit *spool_commit_new(uv_loop_t *loop, struct spool *sp);
/* e->done and e->arg set by the caller; e stays the caller's, untouched
 * until done runs. */
void spool_commit_submit(struct spool_commit *c, struct journal_entry *e);
/* The drain: entries already submitted are still committed and answered,
 * the timer stops. Then free after the loop ended. */
void spool_commit_stop(struct spool_commit *c);
void spool_commit_free(struct spool_commit *c); /* NULL is a no-op */

/* Messages waiting for a commit and in the running one (for /status). */
size_t spool_commit_pending(const struct spool_commit *c);

#endif
