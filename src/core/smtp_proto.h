/* smtp_proto: the SMTP server protocol as a pure state machine (SPEC section 4).
 *
 * Bytes in, replies and events out: no I/O, no libuv, no clock, no filesystem,
 * so that it can be unit-tested at every split point and fuzzed. The libuv
 * adapter (session.c) owns the socket, the timers and the storage.
 *
 * How the adapter drives it:
 *   p = smtp_proto_new(&cfg, &sink);
 *   smtp_proto_greet(p);                      -- queue the 220 greeting
 *   loop:
 *     n = smtp_proto_feed(p, data, len);      -- consumes up to len bytes
 *     write out smtp_proto_output(); smtp_proto_output_consume()
 *     if smtp_proto_pending(p) != SMTP_WAIT_NONE:
 *         stop reading, decide (e.g. store the message, check AUTH
 *         credentials), then smtp_proto_resume(p, code, enhanced, text), and
 *         feed the rest (data+n) -- except after SMTP_WAIT_STARTTLS answered
 *         with smtp_proto_tls_started(): the rest is dropped, never fed.
 *     if smtp_proto_closing(p): flush the output, then close.
 * feed() stops early (returns n < len) when a verdict is pending, when the
 * session is closing, or when the queued output passed SMTP_PROTO_OUTPUT_HIGH
 * (a client that pipelines without reading its replies): the adapter keeps the
 * rest and feeds it again after flushing/resuming. Replies are only appended to
 * the output; the adapter flushes whenever its input runs dry, which is what
 * RFC 2920 pipelining asks for. */
/* What the core does with the content (the details the adapter documents):
 * - DATA ends only at <CR><LF>.<CR><LF>, the start of the content counting as
 *   just after a CRLF. A bare LF is a content line end (normalize) or, with
 *   bare_lf_reject, refuses the message (550 5.5.2) at its end; it is never
 *   part of the terminator, so <LF>.<CR><LF>, <CR><LF>.<LF>, <LF>.<LF> and
 *   <CR>.<CR> are content (SMTP smuggling). Lines are dot-unstuffed.
 * - A bare CR (not followed by LF) is dropped, in DATA and in BDAT content.
 * - Command lines may end in a bare LF; control octets other than TAB in a
 *   command line (NUL, a stray CR) are answered 500 5.5.2.
 * - BDAT content is stored with CRLF turned into LF; the chunk that would pass
 *   the size limit is read, discarded and answered 552 5.3.4, which ends the
 *   transaction (RFC 3030: the client must consider it failed); a BDAT out of
 *   sequence is read and discarded before its 503.
 * - When the core refuses a message at its end (SMTP_EV_REJECTED), the body
 *   sink may already have received part of it: the adapter drops that.
 * - Zero config fields take SPEC defaults (max_message_size 26214400,
 *   max_recipients 100); a NULL hostname is "localhost". */
#ifndef MAILPORT_SMTP_PROTO_H
#define MAILPORT_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct policy;

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets including CRLF. */
#define SMTP_PROTO_COMMAND_LINE_MAX 512
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including the brackets. */
#define SMTP_PROTO_PATH_MAX 256
/* feed() stops consuming input while this much output waits to be written. */
#define SMTP_PROTO_OUTPUT_HIGH 16384
/* Bad commands tolerated before the session is dropped (421 4.7.0). */
#define SMTP_PROTO_MAX_ERRORS 20
/* RFC 4954 4: an AUTH command line (with its initial response) and each AUTH
 * response line may be up to 12288 octets including CRLF. Only those lines may
 * pass SMTP_PROTO_COMMAND_LINE_MAX; their buffer exists only while they are read. */
#define SMTP_PROTO_AUTH_LINE_MAX 12288
/* The longest AUTH user name passed on; a longer one can never authenticate. */
#define SMTP_PROTO_AUTH_USER_MAX 255

/* SMTPD_AUTH (SPEC 6). */
enum smtp_auth_mode {
	SMTP_AUTH_OFF = 0,  /* AUTH answered 502 5.5.1, not advertised */
	SMTP_AUTH_OPTIONAL, /* offered (under TLS unless auth_insecure) */
	SMTP_AUTH_REQUIRED, /* and MAIL without it gets 530 5.7.0 */
};

struct smtp_proto_config {
	const char *hostname;      /* greeting and EHLO name; copied */
	uint64_t max_message_size; /* SIZE; bodies over it: read to the end, 552 5.3.4 */
	unsigned max_recipients;   /* past it: 452 4.5.3, earlier recipients kept */
	bool bare_lf_reject;       /* SMTPD_BARE_LF=reject: 550 5.5.2 at end of data */
	/* SPEC 6. STARTTLS is answered 502 5.5.1 unless tls_available. */
	bool tls_available; /* STARTTLS offered while the session is not under TLS */
	bool tls_active;    /* under TLS from the first byte (implicit TLS, RFC 8314) */
	bool tls_required;  /* SMTPD_TLS=required: MAIL and AUTH before TLS get 530 5.7.0 */
	enum smtp_auth_mode auth;
	bool auth_insecure; /* SMTPD_AUTH_INSECURE: AUTH offered without TLS too */
	/* SPEC 4, SMTPD_SPOOL_MIN_FREE: while *storage_low, MAIL is answered 452 4.3.1.
	 * The adapter owns the flag and sets it from its latest probe; NULL: never. */
	const bool *storage_low;
	/* SMTPD_MAX_LINE_LENGTH: a message with a text line longer than this many
	 * octets (CRLF included) is refused 500 5.5.6 at its end; 0: no limit. */
	uint64_t max_line_length;
	/* SPEC 8: the recipient policy (policy.h), read at every RCPT through the
	 * adapter's own pointer, so that a table the adapter swaps in on the loop
	 * applies to live sessions from their next RCPT. The core reads it only
	 * inside feed(), never keeps it. NULL, or *policy NULL: every recipient
	 * is accepted. */
	const struct policy *const *policy;
};

/* Things that happen, for the adapter's logs and counters. Informational only:
 * the adapter cannot change the reply from inside the callback. */
enum smtp_event_type {
	SMTP_EV_HELO,     /* arg: the HELO/EHLO name */
	SMTP_EV_MAIL,     /* arg: reverse path (without brackets, may be "") */
	SMTP_EV_RCPT,     /* arg: forward path accepted */
	SMTP_EV_DATA,     /* DATA accepted (354 sent) or first BDAT chunk */
	SMTP_EV_RSET,     /* transaction reset (RSET, new EHLO, after a message) */
	SMTP_EV_REJECTED, /* a message refused at the end of its data by the core
	                     itself (too big, bare LF, line too long); arg: the reply */
	SMTP_EV_QUIT,     /* QUIT received */
	SMTP_EV_PROTOCOL, /* a protocol error reply was sent; arg: the reply */
	SMTP_EV_TOO_MANY_ERRORS,
	/* SPEC 8: a RCPT refused by the recipient policy, before its reply (a
	 * SMTP_EV_PROTOCOL with the reply follows); arg: the reason, "relay"
	 * (554 5.7.1) or "unknown_user" (550 5.1.1). */
	SMTP_EV_RCPT_REFUSED,
};

struct smtp_event {
	enum smtp_event_type type;
	const char *arg; /* valid only during the callback; may be NULL */
};

struct smtp_proto_sink {
	void *ctx;
	/* Message content, dot-unstuffed, every line ending as a single LF, in order,
	 * called from within feed() for each piece. Returning non-zero (e.g. out of
	 * memory) makes the core discard the rest of the body and answer
	 * 452 4.3.1 at its end. May be NULL. */
	int (*body)(void *ctx, const char *data, size_t len);
	/* Informational events; may be NULL. */
	void (*event)(void *ctx, const struct smtp_event *ev);
};

/* What the core waits for before it consumes more input. */
enum smtp_wait {
	SMTP_WAIT_NONE = 0,
	SMTP_WAIT_EOM, /* a complete message arrived: store it, then resume() with
	                  250 (the transaction ends, the envelope is cleared by resume) or
	                  4xx/5xx */
	/* STARTTLS was accepted (RFC 3207). Either resume() with a refusal (454
	 * 4.7.0 when no TLS session can be made now), or prepare TLS and call
	 * smtp_proto_tls_started(): it queues "220 2.0.0 Ready to start TLS", which
	 * the adapter writes in plaintext, then it discards every input byte it
	 * holds beyond the STARTTLS line (CVE-2011-0411) and speaks TLS. */
	SMTP_WAIT_STARTTLS,
	/* AUTH credentials are complete (RFC 4954): verify smtp_proto_auth_username()
	 * and smtp_proto_auth_password(), then resume() with 235 2.7.0 (the session
	 * is authenticated) or 535 5.7.8 / 454 4.7.0 (it is not). */
	SMTP_WAIT_AUTH,
};

struct smtp_proto;

/* NULL on out of memory. cfg and sink are copied. */
struct smtp_proto *smtp_proto_new(const struct smtp_proto_config *cfg,
                                  const struct smtp_proto_sink *sink);
void smtp_proto_free(struct smtp_proto *p); /* NULL is a no-op */

/* Queue "220 <hostname> ESMTP mailport". Before it, any input is an early
 * talker: 554 5.5.0 and closing. */
void smtp_proto_greet(struct smtp_proto *p);

/* Consume input. Returns how many bytes of data were consumed (0..len). */
size_t smtp_proto_feed(struct smtp_proto *p, const char *data, size_t len);

/* Queued replies. smtp_proto_output returns the number of bytes at *data. */
size_t smtp_proto_output(const struct smtp_proto *p, const char **data);
void smtp_proto_output_consume(struct smtp_proto *p, size_t n);

enum smtp_wait smtp_proto_pending(const struct smtp_proto *p);
/* Answer the pending wait with "code enhanced text" (enhanced may be NULL, text
 * may contain no CR/LF). */
void smtp_proto_resume(struct smtp_proto *p, unsigned code, const char *enhanced, const char *text);

/* True once the session must end: the last reply is queued (221, 421, 554) and
 * feed() consumes nothing more. Flush the output, then close. */
bool smtp_proto_closing(const struct smtp_proto *p);

/* Inside DATA/BDAT content: the adapter uses the data timeout instead of the
 * command timeout. */
bool smtp_proto_in_data(const struct smtp_proto *p);
/* A MAIL FROM has been accepted and the transaction is not finished. */
bool smtp_proto_in_transaction(const struct smtp_proto *p);

/* The adapter's timer fired: queue "421 4.4.2 <hostname> Error: timeout
 * exceeded" and close. */
void smtp_proto_timeout(struct smtp_proto *p);
/* Service shutting down: queue "421 4.3.2 <hostname> Service shutting down"
 * and close. */
void smtp_proto_shutdown(struct smtp_proto *p);
/* Out of memory or another local failure: "421 4.3.0 ..." and close. */
void smtp_proto_abort(struct smtp_proto *p, const char *text);

/* The envelope of the current transaction (valid while it lasts, i.e. until
 * resume() after EOM, RSET, or a new HELO/EHLO). Paths without angle brackets. */
const char *smtp_proto_helo(const struct smtp_proto *p);      /* "" before HELO */
const char *smtp_proto_mail_from(const struct smtp_proto *p); /* "" = null sender */
/* The verb of the command last answered ("MAIL"; "?" when it was not one we
 * know), for logging a refusal without its arguments (an AUTH payload never). */
const char *smtp_proto_verb(const struct smtp_proto *p);
/* MAIL's AUTH= mailbox (RFC 4954 5) when the session authenticated, else "". */
const char *smtp_proto_auth_param(const struct smtp_proto *p);
size_t smtp_proto_rcpt_count(const struct smtp_proto *p);
const char *smtp_proto_rcpt(const struct smtp_proto *p, size_t i);
bool smtp_proto_esmtp(const struct smtp_proto *p); /* EHLO (not HELO) was used */
/* Size of the message as received: dot-unstuffed, counting CRLF line ends
 * (the RFC 1870 measure), i.e. what the client's message is. */
uint64_t smtp_proto_message_size(const struct smtp_proto *p);

/* TLS is up (SMTP_WAIT_STARTTLS answered): queue "220 2.0.0 Ready to start
 * TLS" and forget everything learnt before it (RFC 3207 4.2): HELO/EHLO, the
 * transaction, the authentication; the client must EHLO again. STARTTLS is no
 * longer offered. Ignored unless SMTP_WAIT_STARTTLS is pending. */
void smtp_proto_tls_started(struct smtp_proto *p);
/* The session is under TLS (implicit, or after STARTTLS). */
bool smtp_proto_tls_active(const struct smtp_proto *p);

/* During SMTP_WAIT_AUTH: the mechanism ("PLAIN" or "LOGIN"), the user name
 * (NUL-free, at most SMTP_PROTO_AUTH_USER_MAX octets; "" when the client's name
 * cannot be a user: too long, or a PLAIN authorization identity that differs
 * from it) and the password (*len octets, may hold any octet but never seen
 * by the core's events). Valid until resume(); the core wipes the password
 * then. Outside SMTP_WAIT_AUTH: "" / NULL. */
const char *smtp_proto_auth_mechanism(const struct smtp_proto *p);
const char *smtp_proto_auth_username(const struct smtp_proto *p);
const char *smtp_proto_auth_password(const struct smtp_proto *p, size_t *len);
/* The authenticated user (after 235), or NULL. */
const char *smtp_proto_auth_user(const struct smtp_proto *p);

#endif
