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
 * No message is ever held whole in memory (issue 14): the request body is
 * streamed from the stored file in chunks of WEBHOOK_CHUNK bytes (struct
 * webhook_body), so a request costs a few chunks of memory whatever the size
 * of the message. Building the request (its headers and, with a secret, a
 * first pass over the file for the HMAC) and every spool update run on the
 * thread pool; while curl sends, the next chunk is read by uv_fs_read on the
 * thread pool too, one chunk ahead, and the transfer pauses if curl catches
 * up: the loop only schedules and drives curl, and never waits on the disk.
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
struct natspub;
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
	/* SPEC 9, SMTPD_NATS_MODE=forward: the queue publishes into JetStream
	 * instead of posting (url unused); borrowed, it outlives the webhook. */
	struct natspub *nats;
	const char *nats_stream;
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

/* The message is read and sent WEBHOOK_CHUNK bytes at a time. A multiple of 3,
 * so each chunk's base64 stands alone (RFC 4648 4: padding only at the very
 * end) and the JSON body's "raw" is the chunks' encodings one after the other,
 * byte for byte what one encoding of the whole message gives. 48 KiB read make
 * 64 KiB of base64, libcurl's upload buffer. */
#define WEBHOOK_CHUNK (48u * 1024)
_Static_assert(WEBHOOK_CHUNK % 3 == 0, "whole base64 groups per chunk");

/* The body of one request, streamed from the stored message file:
 *   JSON: {"envelope":<compact envelope>,"raw":"<base64 of the file>"}
 *   raw:  the file itself.
 * Its length is known in advance (Content-Length, no chunked encoding). The
 * body holds the JSON head, one chunk of the file as read (`in`) and one as
 * sent (`out`): memory is bounded by WEBHOOK_CHUNK, never by the message.
 *
 * Two ways to drive it. Blocking (the thread pool, tests):
 * webhook_body_read() preads the file as needed. Without blocking (the
 * loop): webhook_body_fill() gives what is ready; when it gives nothing
 * before the end, the caller reads webhook_body_next()'s chunk into `in` (by
 * any means, e.g. uv_fs_read) and hands it over with webhook_body_feed(). The
 * caller may read the next chunk ahead as soon as webhook_body_feed() returns
 * (`in` is free again). Outside webhook_build.c the fields are only read,
 * but for the bytes of `in`, which the caller fills (from `fd`). */
struct webhook_body {
	enum config_webhook_format format;
	int fd;        /* the message, read with pread only; closed by webhook_body_free */
	uint64_t size; /* of the message */
	uint64_t len;  /* of the body */
	uint64_t pos;  /* body bytes given so far */
	uint64_t fed;  /* message bytes fed so far */
	char *head;    /* JSON: `{"envelope":...,"raw":"`; raw: "" */
	size_t head_len;
	unsigned char *in;  /* room for WEBHOOK_CHUNK bytes: where the next chunk is read */
	unsigned char *out; /* the last chunk fed, as it is sent */
	size_t out_len, out_off;
};

/* A body for the message file fd (size bytes; its offset is not used). The
 * body owns fd from then on, even when this fails (it is closed). envelope is
 * only read here. Returns 0, or -ENOMEM. */
int webhook_body_new(enum config_webhook_format format, struct json_t *envelope, int fd,
                     uint64_t size, struct webhook_body **out);
/* Close the file and free. NULL is a no-op. */
void webhook_body_free(struct webhook_body *b);
/* Back to the first byte (curl's rewind before sending again). */
void webhook_body_rewind(struct webhook_body *b);
/* Copy up to cap ready bytes at the position into dst and move on. Returns
 * the count; 0 at the end (webhook_body_done) or when the next chunk of the
 * file is needed first. Never reads the file. */
size_t webhook_body_fill(struct webhook_body *b, char *dst, size_t cap);
bool webhook_body_done(const struct webhook_body *b);
/* The next chunk of the file the body takes: its length (at most
 * WEBHOOK_CHUNK; 0 when the whole file has been fed) and its offset in *off. */
size_t webhook_body_next(const struct webhook_body *b, uint64_t *off);
/* Whether webhook_body_feed() may be called now: there is a next chunk and
 * the previous one has been given out entirely. */
bool webhook_body_can_feed(const struct webhook_body *b);
/* Hand over the next chunk, read into b->in: n is webhook_body_next()'s length. */
void webhook_body_feed(struct webhook_body *b, size_t n);
/* Blocking (thread pool, tests only): like webhook_body_fill, reading the file
 * with pread as needed. Returns the count (0 only at the end), or -errno
 * (-EIO when the file is shorter than its size). */
int64_t webhook_body_read(struct webhook_body *b, char *dst, size_t cap);
/* Blocking: if webhook_body_can_feed, pread the next chunk and feed it.
 * Returns 0 or -errno (-EIO for a short file). */
int webhook_body_load(struct webhook_body *b);
/* Blocking: webhook_sign over the whole body, streamed (one pass over the
 * file), then back to the first byte. Returns 0, -errno from reading, or
 * -ENOMEM. */
int webhook_body_sign(struct webhook_body *b, const char *secret, const char *timestamp,
                      char out[WEBHOOK_SIGNATURE_MAX]);

/* One request, built off the loop. headers are "Name: value" strings. */
struct webhook_request {
	struct webhook_body *body;
	char **headers;
	size_t nheaders;
};

struct webhook_build_in {
	enum config_webhook_format format;
	const char *secret;      /* "" = unsigned */
	const char *id;          /* X-Mailport-Id */
	unsigned attempt;        /* X-Mailport-Attempt, 1 for the first */
	struct json_t *envelope; /* SPEC 5 envelope (borrowed) */
	int fd;                  /* the stored message (trace headers + content), read-only */
	uint64_t size;           /* its bytes */
	int64_t timestamp;       /* Unix seconds, X-Mailport-Timestamp */
	const char *version;     /* User-Agent: mailport/<version> */
	int tmp_dir_fd;          /* parsed: where its body file goes (-1: a memfd) */
};

/* JSON: {"envelope":{...},"raw":"<base64>"} as application/json; parsed: the
 * JSON of webhook_parsed.h, written first to a temporary file; raw: the message
 * itself as message/rfc822 with X-Mailport-Mail-From and one X-Mailport-Rcpt-To
 * per recipient (control characters made '?'). Both carry X-Mailport-Id,
 * X-Mailport-Attempt and, with a secret, X-Mailport-Timestamp and
 * X-Mailport-Signature. The body streams from in->fd, which the request owns
 * from then on, even when this fails (it is closed). Blocking: with a secret
 * the whole file is read once for the signature, and the first chunk is read
 * in any case (a message of up to WEBHOOK_CHUNK bytes is then sent without
 * another read): thread pool or tests only. Returns 0, -ENOMEM, or -errno
 * from reading the file (-EIO when it is shorter than in->size). */
int webhook_build(const struct webhook_build_in *in, struct webhook_request *out);
/* Free the headers and the body (closing its file); twice is harmless. */
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

/* SMTPD_WEBHOOK_SYNC: post a message that is not in new/, now (before other
 * queued work), once. fd is the complete message file as it will be stored
 * (trace headers + message), open for reading, of size bytes; it is read with
 * pread only, so its offset does not matter and is not moved. webhook_post
 * dup()s it: the caller closes its own descriptor when webhook_post returns,
 * and may remove the file's name once done has run. envelope_json is copied.
 * done(ctx, delivered, reason) runs exactly once from the loop, never inside
 * webhook_post. Returns 0, or a negative errno (stopping, out of memory or
 * descriptors) and done never runs. */
typedef void (*webhook_post_fn)(void *ctx, bool delivered, const char *reason);
int webhook_post(struct webhook *wh, const char *id, const char *envelope_json, int fd,
                 uint64_t size, webhook_post_fn done, void *ctx);

/* Drain: abandon the requests in flight (a queued message stays in new/ and is
 * posted again after the restart; a synchronous post gets done(false)), close
 * every handle so the loop can end. Idempotent. Work already on the thread pool
 * finishes by itself. */
void webhook_stop(struct webhook *wh);
/* After the loop has ended. NULL is a no-op. */
void webhook_free(struct webhook *wh);

#endif
