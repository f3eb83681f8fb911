/* natspub: publishing messages into a NATS JetStream stream (SPEC 9), with
 * Debian's libnats (the C client, 3.4).
 *
 * The loop never calls a libnats function that may wait. Every publish goes
 * to a thread of our own (the publisher), which builds the NATS message and
 * hands it to js_PublishMsgAsync; a second thread of ours asks JetStream
 * every second whether the stream exists. JetStream's acknowledgements arrive
 * on libnats' own threads; they, the publisher and the connection callbacks put results on a
 * list under a mutex and wake the loop with a uv_async_t. The loop then calls
 * each publish's done callback and updates the stats: the HTTP side reads
 * only those.
 *
 * The message: payload = the stored message bytes; headers Nats-Msg-Id (the
 * message id: JetStream drops a second copy within the stream's duplicate
 * window), Mailport-Envelope (the compact SPEC 5 envelope), Mailport-Mail-From
 * and one Mailport-Rcpt-To per recipient (control characters made '?').
 *
 * Bounds: at most NATSPUB_MAX_INFLIGHT publishes are unacknowledged at once
 * (libnats' MaxPending: the publisher thread, not the loop, waits beyond it);
 * a publish not acknowledged within the timeout fails (NATS_TIMEOUT), and one
 * the library never answers is failed by the publisher one second later. The
 * callers bound the publishes they start (one per session in sync mode,
 * SMTPD_WEBHOOK_CONCURRENCY in forward mode), each holding one message. */
#ifndef MAILPORT_NATSPUB_H
#define MAILPORT_NATSPUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "natspub_build.h"

struct stats;
struct natspub;

#define NATSPUB_MAX_INFLIGHT 1024
#define NATSPUB_TICK_MS      250
/* ---- the service ---- */

struct natspub_options {
	const char *urls; /* SMTPD_NATS_URL */
	const char *subject;
	const char *stream;
	const char *creds; /* "" = none */
	const char *ca;    /* "" = the system's */
	uint64_t timeout_ms;
	uint64_t max_message_size;
	uint64_t max_rcpt;
	bool sync; /* SMTPD_NATS_MODE=sync: /readyz needs a connection */
};

/* What one publish carries. The strings and rcpt are copied; data is taken
 * (malloc'ed, freed by natspub whatever happens). */
struct natspub_msg {
	const char *id;
	const char *envelope_json;
	const char *mail_from;
	const char *const *rcpt;
	size_t nrcpt;
	char *data;
	size_t len;
};

/* ok: JetStream acknowledged it (stored, or already stored: a duplicate).
 * Otherwise reason says why (for the log and the delivery state). */
typedef void (*natspub_done_fn)(void *ctx, bool ok, const char *reason);

/* Connect (at most the timeout, blocking: start-up only). A server that
 * answers is asked its max_payload: when max_message_size plus
 * natspub_overhead() can exceed it, returns -2 with the message in err (a
 * configuration error, exit 2), as for an unreadable SMTPD_NATS_CREDS or
 * SMTPD_NATS_CA. Unreachable servers are retried in the background (a warning
 * is logged). Returns 0, -2, or -1 with a message in err. */
int natspub_new(uv_loop_t *loop, const struct natspub_options *opt, struct stats *stats,
                struct natspub **out, char *err, size_t errlen);
/* Publish (loop thread). done runs once, from the loop, never inside this
 * call. Returns 0, or a negative errno (stopping, out of memory) and done
 * never runs; m->data is freed in every case. */
int natspub_publish(struct natspub *np, struct natspub_msg *m, natspub_done_fn done, void *ctx);
/* Drain: every publish not yet answered gets done(false, "shutting down"),
 * the publisher thread ends, the connection closes, the async handle closes.
 * Idempotent. */
void natspub_stop(struct natspub *np);
/* After the loop has ended. NULL is a no-op. */
void natspub_free(struct natspub *np);

/* natspub_new from the settings (SMTPD_NATS_*, SMTPD_MAX_MESSAGE_SIZE,
 * SMTPD_MAX_RECIPIENTS), logging what is on. Returns natspub_new's result. */
struct config;
int natspub_setup(uv_loop_t *loop, const struct config *cfg, struct stats *stats,
                  struct natspub **out, char *err, size_t errlen);
/* An id for a message that has no spool (discard): Maildir-like, with the
 * host name and a random number drawn at start, because JetStream drops a
 * second message with the same id across restarts and replicas. */
void natspub_new_id(const struct natspub *np, uint64_t n, char *out, size_t len);
/* Blocking (thread pool): the file's first size bytes into a malloc'ed *out.
 * Returns 0, -ENOMEM, -errno, or -EIO when the file is shorter. */
int natspub_read_file(int fd, uint64_t size, char **out);

#endif
