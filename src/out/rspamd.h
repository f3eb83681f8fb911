/* rspamd: every message checked by rspamd at the end of its data (SPEC 8),
 * through rspamd's HTTP protocol: POST <SMTPD_RSPAMD_URL>/checkv2 with the
 * envelope in request headers and the message file as the body.
 *
 * The request runs on the service's loop through libcurl's multi interface
 * (curl_loop.h, shared with the webhook), its body streamed from the message
 * file chunk by chunk (curl_loop_upload, the webhook's streaming body): the
 * loop never blocks and no message is held whole in memory. At most
 * `concurrency` requests (SMTPD_RSPAMD_CONCURRENCY) are in flight; more checks
 * wait in a FIFO queue. The queue needs no bound of its own: a session has at
 * most one message at its end, so it never holds more than
 * SMTPD_MAX_CONNECTIONS checks. Each check has a deadline of `timeout_ms`
 * (SMTPD_RSPAMD_TIMEOUT) from its submission, queue time included: a check
 * still queued at its deadline fails without being sent, and a request gets
 * what is left of it. So rspamd adds at most SMTPD_RSPAMD_TIMEOUT to the time
 * from a message's end of data to its reply.
 *
 * What the answer means for the message (the action, the milter block's
 * header edits, the verdict in the envelope) is parsed by the pure part
 * (rspamd_reply.c, rspamd_verdict_parse); deliver.c acts on it. */
#ifndef MAILPORT_RSPAMD_H
#define MAILPORT_RSPAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hdredit.h"
#include "spool.h"

/* Header fields the spool writes ahead of every message (spool_trace_headers:
 * Return-Path and Received): rspamd's edits never go above them. */
#define RSPAMD_TRACE_FIELDS 2
/* The most of rspamd's answer kept: a reply with every symbol and its
 * options is a few KiB; a larger one is taken as a failure. */
#define RSPAMD_REPLY_MAX (1u << 20)
/* rspamd's message for the client (smtp_message), cut to leave room in a
 * 512-octet reply line (RFC 5321 4.5.3.1.5) for the codes. */
#define RSPAMD_TEXT_MAX 200

/* rspamd's actions (its metric actions); RSPAMD_OTHER is any action it names
 * that is not one of these (a custom one, "discard", "quarantine"): the
 * message is then stored as it is, with the action in its verdict. */
enum rspamd_action {
	RSPAMD_NO_ACTION,
	RSPAMD_GREYLIST,
	RSPAMD_ADD_HEADER,
	RSPAMD_REWRITE_SUBJECT,
	RSPAMD_SOFT_REJECT,
	RSPAMD_REJECT,
	RSPAMD_OTHER,
	RSPAMD_ACTIONS
};
/* "no action", "greylist", "add header", "rewrite subject", "soft reject",
 * "reject", "other": rspamd's own words (the /metrics label values). */
extern const char *const rspamd_action_names[RSPAMD_ACTIONS];

/* ---- pure parts (rspamd_reply.c, unit-tested) ---- */

struct rspamd_verdict {
	enum rspamd_action action;
	/* The envelope's "verdict" (SPEC 8), compact JSON, malloc'ed:
	 * {"action","score","required_score","spf","dkim","dmarc",
	 *  "symbols":{name:score}} */
	char *json;
	char text[RSPAMD_TEXT_MAX + 1]; /* messages.smtp_message, one line; "" when none */
	/* What to do to the header block: the Authentication-Results claiming
	 * our name removed, the milter block (remove_headers, add_headers), a
	 * DKIM-Signature rspamd made, and for the action a new Subject or
	 * "X-Spam: Yes". */
	struct hdredit edits;
};

/* Parse rspamd's /checkv2 answer. authserv_id is our name (SMTPD_HOSTNAME).
 * Returns 0, -EINVAL with the reason in why (not a JSON object, no action),
 * or -ENOMEM. On failure v holds nothing to free. */
int rspamd_verdict_parse(const char *reply, size_t len, const char *authserv_id,
                         struct rspamd_verdict *v, char *why, size_t whylen);
void rspamd_verdict_free(struct rspamd_verdict *v);

/* The RFC 8601 result word rspamd's symbols (a JSON object keyed by symbol
 * name) give for "spf", "dkim" or "dmarc": pass, fail, softfail, neutral,
 * none, temperror or permerror; "none" when no symbol of it is there (rspamd
 * did not check, e.g. a local or authenticated client). */
struct json_t;
const char *rspamd_auth_result(struct json_t *symbols, const char *method);

/* The request's envelope headers, "Name: value" each (NULL-terminated,
 * malloc'ed; NULL on out of memory): IP, Helo (when given), From ("<>" for
 * the null sender), one Rcpt per recipient, Queue-Id, User (when
 * authenticated), MTA-Name (our name: the authserv-id of the
 * Authentication-Results rspamd makes), TLS-Version and TLS-Cipher (with
 * TLS), User-Agent. No Hostname: mailport does no reverse lookup, so the
 * client's name is never known. Control bytes in peer-chosen values are '?'. */
char **rspamd_request_headers(const struct spool_envelope *env, const char *mta_name,
                              const char *version);
void rspamd_headers_free(char **h);

/* ---- the client (rspamd.c) ---- */

struct rspamd;

struct rspamd_options {
	const char *url;     /* the base URL; "/checkv2" is added (unless it ends with it) */
	uint64_t timeout_ms; /* per check, from its submission */
	unsigned concurrency;
	const char *mta_name; /* MTA-Name: SMTPD_HOSTNAME */
	const char *version;  /* User-Agent: mailport/<version> */
};

struct rspamd_result {
	bool answered;    /* HTTP 200 with a body: `body` holds it */
	const char *body; /* valid during the callback only */
	size_t len;
	bool timed_out;      /* no answer within the deadline */
	bool stopped;        /* abandoned by rspamd_stop */
	char error[256];     /* why not answered: printable, for the log */
	uint64_t latency_us; /* from the submission (queue included) to the end */
};
typedef void (*rspamd_done_fn)(void *ctx, const struct rspamd_result *r);

/* Set up (curl on `loop`). Returns 0, or -1 with a message in err. */
int rspamd_new(uv_loop_t *loop, const struct rspamd_options *opt, struct rspamd **out, char *err,
               size_t errlen);
/* Check the message file fd (size bytes: trace headers and message; read with
 * pread only, and dup()ed: the caller closes its own descriptor when this
 * returns, and keeps the file's name until done has run). env gives the
 * request headers (read here only). done(ctx, result) runs exactly once, from
 * the loop, never inside rspamd_check. Returns 0, or a negative errno
 * (stopping, out of memory or descriptors) and done never runs. */
int rspamd_check(struct rspamd *rs, const struct spool_envelope *env, int fd, uint64_t size,
                 rspamd_done_fn done, void *ctx);
/* Drain: every check queued or in flight gets done() with `stopped`; every
 * handle is closed so the loop can end. Idempotent. */
void rspamd_stop(struct rspamd *rs);
/* After the loop has ended. NULL is a no-op. */
void rspamd_free(struct rspamd *rs);

/* ---- off the loop (rspamd_rewrite.c) ---- */

/* Blocking (thread pool): apply e to the header block of the message file fd
 * (size bytes, read with pread) in directory dir_fd, where it is named
 * `name`: the edited header block and then the body, copied in chunks, are
 * written to a new file in dir_fd ("hdr." ahead of the name: it ends with
 * our host part like the message, so start-up removes what a crash left), which is renamed over
 * `name`. Nothing is synced (the group commit copies the file into the
 * journal). Returns 1 with *out_fd (the new file, read-write) and *out_size,
 * 0 when the edits change nothing (no file is written), -EFBIG when the
 * header block is longer than HDREDIT_HEADER_MAX, or -errno. */
int rspamd_rewrite(int dir_fd, const char *name, int fd, uint64_t size, const struct hdredit *e,
                   int *out_fd, uint64_t *out_size);

#endif
