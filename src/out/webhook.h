/* webhook: store-and-forward delivery of stored messages to SMTPD_WEBHOOK_URL
 * (SPEC 5), on libcurl's multi-socket interface driven by the service's own
 * libuv loop (uv_poll_t per socket, one uv_timer_t for curl's timeouts).
 *
 * The queue is the spool. A message waiting for delivery is a file in new/; its
 * progress is in its envelope (meta/<id>.json, "delivery":{"state":"pending",
 * "attempts":N,"next_attempt":"RFC 3339","last_error":"..."}), rewritten
 * atomically after each failed attempt, so a restart or a kill -9 resumes
 * where it was: at start-up every id in new/ is queued again (at least once;
 * X-Mailport-Id lets the receiver drop duplicates).
 *   - 2xx: "delivery":{"state":"delivered",...} and new/ -> cur/ (or the message
 *     and its envelope removed with SMTPD_WEBHOOK_KEEP=0);
 *   - 4xx but 408 and 429: "delivery":{"state":"failed","reason":"HTTP 400 ..."}
 *     and new/ -> failed/;
 *   - anything else, a timeout, a refused connection: retried after a delay
 *     drawn from [d/2, d], d = SMTPD_WEBHOOK_RETRY_MIN doubled per failure up to
 *     SMTPD_WEBHOOK_RETRY_MAX, until the message is SMTPD_WEBHOOK_MAX_AGE old,
 *     then failed/.
 * Reading the message, building the request (base64, HMAC) and every spool
 * update run on the thread pool; the loop only schedules and drives curl.
 * At most SMTPD_WEBHOOK_CONCURRENCY deliveries (synchronous posts first) are in
 * progress at once, counted from reading the message to the last spool update.
 * Pending items are kept in memory (one small struct per message in new/). */
#ifndef MAILPORT_WEBHOOK_H
#define MAILPORT_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

struct spool;
struct stats;
struct webhook;
struct json_t;

struct webhook_options {
	const char *url;
	enum config_webhook_format format;
	const char *secret; /* "" = unsigned */
	uint64_t timeout_ms;
	bool keep;
	uint64_t retry_min_ms;
	uint64_t retry_max_ms;
	uint64_t max_age_s;
	unsigned concurrency;
	const char *version; /* in the User-Agent */
};

/* ---- pure parts (unit-tested) ---- */

/* The delay before retry number `failures` (1 after the first failure):
 * d = min_ms * 2^(failures-1), at most max_ms; the result is d/2 + rnd mod
 * (d - d/2 + 1), i.e. drawn from [d/2, d] by the random number rnd, so delays
 * still grow while clients that failed together spread out. */
uint64_t webhook_backoff_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms, uint64_t rnd);

enum webhook_outcome { WEBHOOK_DELIVERED, WEBHOOK_FAILED, WEBHOOK_RETRY };
/* 2xx delivered; 4xx but 408 and 429 failed; everything else (1xx, 3xx, 5xx,
 * 0 = no HTTP answer at all) retried. Redirects are not followed. */
enum webhook_outcome webhook_classify(long http_status);

/* "sha256=" and the lowercase hex HMAC-SHA256, keyed by secret, of
 * "<timestamp>.<body>". out needs WEBHOOK_SIGNATURE_MAX bytes. Returns 0 or -1. */
#define WEBHOOK_SIGNATURE_MAX (7 + 64 + 1)
int webhook_sign(const char *secret, const char *timestamp, const void *body, size_t len,
                 char out[WEBHOOK_SIGNATURE_MAX]);

/* Standard base64 (RFC 4648 4, no line breaks) of parts[0..n) as one byte
 * string, appended at out (4 * ceil(total / 3) bytes, no NUL). Returns bytes written. */
size_t webhook_base64(const uv_buf_t *parts, unsigned n, char *out);

/* One request, built off the loop. headers are "Name: value" strings. */
struct webhook_request {
	char *body;
	size_t len;
	char **headers;
	size_t nheaders;
};

struct webhook_build_in {
	enum config_webhook_format format;
	const char *secret;      /* "" = unsigned */
	const char *id;          /* X-Mailport-Id */
	unsigned attempt;        /* X-Mailport-Attempt, 1 for the first */
	struct json_t *envelope; /* SPEC 5 envelope (borrowed) */
	const uv_buf_t *parts;   /* the stored message: trace headers + content */
	unsigned nparts;
	int64_t timestamp;   /* Unix seconds, X-Mailport-Timestamp */
	const char *version; /* User-Agent: mailport/<version> */
};

/* JSON: {"envelope":{...},"raw":"<base64>"} as application/json; raw: the message
 * itself as message/rfc822 with X-Mailport-Mail-From and X-Mailport-Rcpt-To
 * (comma-separated; control characters made '?'). Both carry X-Mailport-Id,
 * X-Mailport-Attempt and, with a secret, X-Mailport-Timestamp and
 * X-Mailport-Signature. Returns 0 or -ENOMEM. */
int webhook_build(const struct webhook_build_in *in, struct webhook_request *out);
void webhook_request_free(struct webhook_request *r);

/* The failure reason for a meta file: "HTTP 400 Bad Request" from the status
 * line (whatever its HTTP version), plus ": <start of the response body>" when
 * there is one, printable ASCII only, at most `len` - 1 bytes. */
void webhook_reason(long status, const char *status_line, const char *body, size_t body_len,
                    char *out, size_t len);

/* "2026-11-27T08:40:58.123Z" -> Unix seconds (UTC). Returns 0 or -1. */
int webhook_parse_time(const char *s, int64_t *out);

/* ---- the service ---- */

/* Set up curl (multi-socket on `loop`). Returns 0, or -1 with a message in err. */
int webhook_new(uv_loop_t *loop, const struct webhook_options *opt, struct spool *spool,
                struct stats *stats, struct webhook **out, char *err, size_t errlen);
/* Queue every message in new/ (start-up: what a restart or a crash left). */
void webhook_scan(struct webhook *wh);
/* Queue a message just stored in new/. */
void webhook_enqueue(struct webhook *wh, const char *id);

/* SMTPD_WEBHOOK_SYNC: post a message that is not stored, now (before other
 * queued work), once. parts (the message as it would be stored) stay the
 * caller's until done runs; envelope_json is copied. done(ctx, delivered,
 * reason) runs exactly once from the loop, never inside webhook_post. Returns
 * 0, or a negative errno (stopping, out of memory) and done never runs. */
typedef void (*webhook_post_fn)(void *ctx, bool delivered, const char *reason);
int webhook_post(struct webhook *wh, const char *id, const char *envelope_json,
                 const uv_buf_t *parts, unsigned nparts, webhook_post_fn done, void *ctx);

/* Drain: abandon the requests in flight (a queued message stays in new/ and is
 * posted again after the restart; a synchronous post gets done(false)), close
 * every handle so the loop can end. Idempotent. Work already on the thread pool
 * finishes by itself. */
void webhook_stop(struct webhook *wh);
/* After the loop has ended. NULL is a no-op. */
void webhook_free(struct webhook *wh);

#endif
