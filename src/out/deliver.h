/* deliver: what happens to a message from its first byte to its verdict
 * (SPEC 5), so a session only ever sees "bytes went in, a verdict came out".
 *
 * While the message arrives its bytes stream to tmp/<id> (spool_writer.h):
 * memory per message is bounded by a chunk, never by the message's size. At
 * its end:
 *   1. SMTPD_RSPAMD_URL, when set (rspamd.h, SPEC 8): the file is made
 *      complete on disk and POSTed to rspamd's /checkv2; "reject" answers
 *      554 5.7.1, "soft reject" and "greylist" 451 4.7.1, no answer
 *      SMTPD_RSPAMD_FAIL (451 4.7.1, or on without a verdict); otherwise the
 *      verdict goes into the envelope and
 *   2. the header edits (rspamd's milter block, its Subject or X-Spam: Yes,
 *      Authentication-Results claiming our name removed) are applied on the
 *      thread pool: a new tmp/<id> (rspamd_rewrite) that the next steps read;
 *   3. SMTPD_FILTER, when set (filter.c): the filter reads the message file on
 *      its stdin, the verdict in SMTPD_VERDICT_JSON; 451/554 end it here;
 *   4. SMTPD_DELIVER=discard: 250 without storing;
 *   5. SMTPD_WEBHOOK_SYNC=1: posted from the file before the answer
 *      (webhook.c); 2xx commits it straight into cur/ marked delivered (or
 *      keeps nothing with SMTPD_WEBHOOK_KEEP=0) and answers 250, anything else
 *      451 4.3.0;
 *   6. otherwise the group commit (spool_commit.h, journal.h); with
 *      SMTPD_WEBHOOK_URL the stored message is then queued for the webhook.
 *
 * The boundary (issue 14): delivery has its own environment (the loop, the
 * settings, the spool, the stats) and never sees a session. A message is
 * tagged with its session's id; progress and verdicts go back through the
 * hooks with that id, and the session layer looks the id up: a session that
 * closed meanwhile is simply not found. No session pointer crosses the thread
 * pool. Loop thread only. */
#ifndef MAILPORT_DELIVER_H
#define MAILPORT_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "spool.h"

struct stats;
struct deliver_env;
struct deliver_msg;

struct deliver_verdict {
	unsigned code;        /* 250, 451, 554 ... */
	const char *enhanced; /* "2.0.0" */
	const char *text;     /* "Ok: queued as <id>" */
	bool stored;          /* the message is durably in the spool */
	int err;              /* negative errno of a storage failure, else 0 */
	const char *id;       /* the message's id, for the log */
	const char *mail_from;
	uint64_t size;
};

/* How delivery reaches back: owner is the session layer's, sid a session id. */
struct deliver_hooks {
	void *owner;
	/* The verdict on the message the session ended with deliver_end. */
	void (*verdict)(void *owner, uint64_t sid, const struct deliver_verdict *v);
	/* deliver_room() is no longer 0: the session may feed its client again. */
	void (*room)(void *owner, uint64_t sid);
};

/* Set up what delivery needs (rspamd and the webhook: curl on the loop, the
 * messages left in new/ queued again; the group commit). spool is NULL for
 * discard.
 * Returns 0, or -1 with a message in err; -2 for a configuration error found
 * only now (SPEC 9: the NATS server's max_payload is too small; exit 2). */
int deliver_new(uv_loop_t *loop, const struct config *cfg, struct spool *spool, struct stats *stats,
                const struct deliver_hooks *hooks, struct deliver_env **out, char *err,
                size_t errlen);
/* When the grace period ends and when the loop is to end: running filters
 * are killed (451), synchronous posts and rspamd checks fail (451), queued
 * webhook work is
 * abandoned (it stays in new/), and every handle delivery owns is closed.
 * Messages already in a commit still get their verdict. Idempotent. */
void deliver_stop(struct deliver_env *de);
/* After the loop has ended. NULL is a no-op. */
void deliver_free(struct deliver_env *de);

/* The first byte of a message's data (or its end, for an empty one): env is
 * the envelope so far (its id is ignored: delivery names the message). The
 * trace headers are written ahead of the data. NULL on out of memory. */
struct deliver_msg *deliver_begin(struct deliver_env *de, uint64_t sid,
                                  const struct spool_envelope *env, const struct log_ctx *log);
const char *deliver_msg_id(const struct deliver_msg *m);
/* Message bytes (LF line ends, dot-unstuffed). 0, or -1 (out of memory: the
 * core answers 452 and the session ends the message with deliver_abort). */
int deliver_write(struct deliver_msg *m, const char *data, size_t len);
/* Bytes the session may feed before it must wait for hooks.room. */
size_t deliver_room(const struct deliver_msg *m);
/* The end of the data: env is final (size, received_at). From here the
 * message is delivery's: the session forgets m and gets hooks.verdict once,
 * possibly inside this call (discard). */
void deliver_end(struct deliver_msg *m, const struct spool_envelope *env);
/* The message is refused or the session went away before its end. */
void deliver_abort(struct deliver_msg *m);

/* Messages between their end and their verdict (for the drain and /status). */
size_t deliver_in_progress(const struct deliver_env *de);

#endif
