/* smtp_proto: the SMTP server protocol as a pure state machine (SPEC section 4).
 *
 * Layout, in the OpenSMTPD shape: a command table {verb, flags, usage, proceed}
 * where the flags express the ordering rules (answered 503/501 by the
 * dispatcher) and proceed does the command-specific parsing and work; every
 * state change goes through smtp_proto_enter_state(). Input is read in three
 * modes: command lines (a fixed 511-octet buffer, an overlong line is skipped
 * to its LF without being stored), DATA content (a byte state machine that
 * streams slices of the caller's buffer to the body sink, never buffering a
 * line) and BDAT octets (counted, streamed).
 *
 * Choices made here (the adapter's documentation repeats them):
 * - Command lines may end in a bare LF (lenient, like Postfix); a trailing CR
 *   before the LF is stripped. Any other control octet (NUL, a stray CR, ...)
 *   in a command line answers 500 5.5.2.
 * - DATA ends only at <CR><LF>.<CR><LF>, the start of the content counting as
 *   just after a <CR><LF> (so a first line "." ends an empty message). A bare
 *   LF is a content line end (normalize) but never part of the terminator, so
 *   <LF>.<CR><LF>, <CR><LF>.<LF>, <LF>.<LF> and <CR>.<CR> are all content
 *   (SMTP smuggling, CVE-2023-51764/51765/51766). Dot-unstuffing applies to
 *   every line start, including one after a bare LF (RFC 5321 4.5.2).
 * - A bare CR (not followed by LF) is dropped from the content, in DATA and in
 *   BDAT; it is not counted in the size, and the octet after it does not start
 *   a line (so "<CR>." is never a line-start dot).
 * - The size (RFC 1870 measure) of a DATA message is the dot-unstuffed content
 *   with every line end counted as CRLF; of a BDAT message the raw chunk octets.
 * - At the end of a message the core itself refuses, in this order: too big
 *   (552 5.3.4), a text line over 1000 octets (500 5.5.6), a bare LF with
 *   bare_lf_reject (550 5.5.2), a failed body sink (452 4.3.1). Once one of
 *   these is known, nothing more is passed to the body sink.
 * - BDAT: the chunk whose count would pass the size limit is read, discarded
 *   and answered 552 5.3.4, which ends the transaction (RFC 3030 2: the client
 *   must consider it failed); chunks already pipelined behind it are read,
 *   discarded and answered 503 5.5.1 like any BDAT without MAIL. A BDAT with a
 *   bad sequence (no HELO, MAIL or RCPT) is also read and discarded before its
 *   503, so that the session stays in sync. A BDAT with bad syntax cannot be
 *   skipped (its length is unknown): 501 5.5.4 and its octets are read as
 *   commands, as in Postfix. The text-line limit and bare-LF rule apply to
 *   BDAT content too; their verdict is given at BDAT LAST.
 * - Every 5xx answer to a command line counts towards SMTP_PROTO_MAX_ERRORS;
 *   refusals of a message at its end do not.
 * - STARTTLS (RFC 3207) answers 454 4.7.0 when TLS is not configured, AUTH
 *   (RFC 4954) 502 5.5.1 when AUTH is not. STARTTLS needs EHLO/HELO first and no transaction (503),
 * is 503 once TLS is active, and waits for the adapter (SMTP_WAIT_STARTTLS); TLS up, everything the
 * client said is forgotten, authentication included. With tls_required, MAIL and AUTH before TLS
 * get 530 5.7.0.
 * - AUTH: refusals in this order: 503 (no EHLO/HELO, already authenticated,
 *   inside a transaction), 530 5.7.0 (TLS required first), 538 5.7.11 (no
 *   TLS, not auth_insecure), 501 5.5.4 (syntax), 504 5.5.4 (mechanism other
 *   than PLAIN/LOGIN), 501 5.5.2 (not base64, or a PLAIN message without its
 *   two NULs); "*" cancels with 501 5.7.0. A PLAIN authorization identity
 *   other than the user, or a user name over 255 octets, makes the user ""
 *   so that it fails like any wrong password. AUTH lines and responses may be
 *   12288 octets; the buffer for more than 512 exists only while one is read
 *   and is wiped after use, like the short line buffer. A 5xx verdict counts
 *   towards the error limit; with auth required, MAIL before AUTH is 530 5.7.0.
 *   Authentication survives RSET and a new EHLO, not STARTTLS. */
#include "smtp_proto.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SPEC 4 defaults, used when a config field is 0. */
#define SMTP_PROTO_DEFAULT_MAX_SIZE       26214400u
#define SMTP_PROTO_DEFAULT_MAX_RECIPIENTS 100u
/* RFC 5321 4.5.3.1.2: a domain name is at most 255 octets. */
#define SMTP_PROTO_DOMAIN_MAX 255
/* The command buffer holds a line without its LF: 512 octets on the wire
 * including the line end (RFC 5321 4.5.3.1.4), so at most 511 before the LF. */
#define SMTP_PROTO_CMD_BUF (SMTP_PROTO_COMMAND_LINE_MAX - 1)
/* RFC 5321 4.5.3.1.6: 1000 octets including CRLF, i.e. 998 of text. */
#define SMTP_PROTO_TEXT_MAX (SMTP_PROTO_TEXT_LINE_MAX - 2)
/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
#define SMTP_PROTO_REPLY_MAX 512
/* The output buffer is fixed: feed() stops once the output passes the
 * high-water mark, and one step can add at most a reply plus the 421 that
 * follows the last tolerated error; resume() and one closing reply (timeout,
 * shutdown, abort) may come on top. Eight reply lines leave a wide margin. */
#define SMTP_PROTO_OUT_CAP (SMTP_PROTO_OUTPUT_HIGH + 8 * SMTP_PROTO_REPLY_MAX)
/* Replies usually fit here (an EHLO reply is ~150 octets): an idle session
 * holds no large output buffer (issue 8). Pipelined bursts move to a heap
 * buffer of SMTP_PROTO_OUT_CAP that is released once drained. */
#define SMTP_PROTO_OUT_SMALL 1024
/* RFC 1870 / RFC 3030 sizes: 20 digits hold any uint64_t. */
#define SMTP_PROTO_NUMBER_DIGITS 20

enum smtp_proto_state {
	SMTP_ST_NEW,       /* before greet(): any input is an early talker */
	SMTP_ST_CONNECTED, /* greeted, no HELO/EHLO yet */
	SMTP_ST_HELO,      /* HELO/EHLO done: reading commands */
	SMTP_ST_DATA,      /* reading DATA content */
	SMTP_ST_BDAT,      /* reading the octets of a BDAT chunk */
	SMTP_ST_EOM,       /* a message is complete: SMTP_WAIT_EOM */
	SMTP_ST_CLOSED,    /* the last reply is queued; nothing more is read */
	SMTP_ST_STARTTLS,  /* STARTTLS accepted: SMTP_WAIT_STARTTLS */
	SMTP_ST_AUTH,      /* reading an AUTH response line (after a 334) */
	SMTP_ST_AUTH_WAIT, /* AUTH credentials complete: SMTP_WAIT_AUTH */
};

static const char *const smtp_proto_state_names[] = {
    [SMTP_ST_NEW] = "NEW",       [SMTP_ST_CONNECTED] = "CONNECTED",
    [SMTP_ST_HELO] = "HELO",     [SMTP_ST_DATA] = "DATA",
    [SMTP_ST_BDAT] = "BDAT",     [SMTP_ST_EOM] = "EOM",
    [SMTP_ST_CLOSED] = "CLOSED", [SMTP_ST_STARTTLS] = "STARTTLS",
    [SMTP_ST_AUTH] = "AUTH",     [SMTP_ST_AUTH_WAIT] = "AUTH_WAIT",
};

/* Where the DATA reader is within a line (RFC 5321 4.1.1.4 and 4.5.2). */
enum smtp_data_pos {
	SMTP_DP_TEXT,   /* inside a line, or at its start (line_start) */
	SMTP_DP_CR,     /* a CR inside a line: a line end if LF follows */
	SMTP_DP_DOT,    /* "." at a line start (already removed: RFC 5321 4.5.2) */
	SMTP_DP_DOT_CR, /* ".<CR>" at a line start: end of data if LF follows */
};

/* The message being received (DATA or a series of BDAT chunks). */
struct smtp_msg {
	uint64_t size;
	size_t line_len; /* octets of the current line on the wire, without its end */
	enum smtp_data_pos pos;
	bool raw_size;   /* BDAT: size counts the raw chunk octets */
	bool line_start; /* the next octet starts a line */
	bool after_crlf; /* ... and that line began after a CRLF (or DATA) */
	bool bare_lf;
	bool too_long;
	bool too_big;
	bool sink_failed;
};

/* RFC 4954 mechanisms. */
enum smtp_auth_mech { SMTP_AUTH_MECH_PLAIN, SMTP_AUTH_MECH_LOGIN };

/* Why a BDAT chunk is read only to be discarded: its reply at the chunk end. */
struct smtp_bdat_err {
	unsigned code;
	const char *enhanced;
	const char *text;
};

struct smtp_proto {
	struct smtp_proto_config cfg;
	struct smtp_proto_sink sink;
	enum smtp_proto_state state;
	unsigned errors;
	char hostname[SMTP_PROTO_DOMAIN_MAX + 1];

	/* Command line being read. An AUTH line may be longer (RFC 4954 4): it
	 * moves to auth_line, allocated while it is read and wiped after use. */
	char line[SMTP_PROTO_CMD_BUF + 1];
	size_t line_len;
	bool line_overflow;
	char *auth_line; /* SMTP_PROTO_AUTH_LINE_MAX octets, or NULL */

	/* SPEC 6: TLS and AUTH. */
	bool tls_active;
	bool authenticated;
	enum smtp_auth_mech auth_mech;
	bool auth_login_user; /* LOGIN: the user name came, the password is next */
	char auth_username[SMTP_PROTO_AUTH_USER_MAX + 1]; /* the user once authenticated */
	const char *auth_password;                        /* into the line, SMTP_WAIT_AUTH only */
	size_t auth_password_len;

	/* Session. */
	char helo[SMTP_PROTO_DOMAIN_MAX + 1];
	bool esmtp;

	/* Transaction. */
	bool in_tx;
	bool smtputf8;
	bool bdat_used; /* RFC 3030 2: no DATA in a transaction that used BDAT */
	char verb[12];  /* the command being answered, for the adapter's log ("?": unknown) */
	char mail_from[SMTP_PROTO_PATH_MAX + 1];
	/* RFC 4954 5: MAIL's AUTH= mailbox, xtext-decoded; kept only when the
	 * session authenticated, else "" (as if "<>"). */
	char auth_param[SMTP_PROTO_PATH_MAX + 1];
	char *rcpt; /* rcpt_cap slots of SMTP_PROTO_PATH_MAX + 1, grown on demand */
	size_t nrcpt;
	size_t rcpt_cap;
	struct smtp_msg msg;

	/* BDAT chunk being read. */
	uint64_t bdat_count;
	uint64_t bdat_left;
	bool bdat_last;
	struct smtp_bdat_err bdat_err; /* code 0: the chunk is content */

	char reply[SMTP_PROTO_REPLY_MAX];
	size_t out_len;
	char *out; /* out_small, or SMTP_PROTO_OUT_CAP octets on the heap */
	char out_small[SMTP_PROTO_OUT_SMALL];
};

/* ---------------------------------------------------------------- output */

static void smtp_proto_out_line(struct smtp_proto *p, const char *s)
{
	size_t n = strlen(s);
	if (p->out == p->out_small && n + 2 > SMTP_PROTO_OUT_SMALL - p->out_len) {
		char *big = malloc(SMTP_PROTO_OUT_CAP);
		if (big == NULL) {
			/* No room for a reply: the session cannot go on in sync. */
			p->state = SMTP_ST_CLOSED;
			return;
		}
		memcpy(big, p->out_small, p->out_len);
		p->out = big;
	}
	/* Unreachable by construction (see SMTP_PROTO_OUT_CAP). */
	assert(n + 2 <= SMTP_PROTO_OUT_CAP - p->out_len);
	if (n + 2 > SMTP_PROTO_OUT_CAP - p->out_len)
		return;
	memcpy(p->out + p->out_len, s, n);
	memcpy(p->out + p->out_len + n, "\r\n", 2);
	p->out_len += n + 2;
}

static void smtp_proto_event(struct smtp_proto *p, enum smtp_event_type type, const char *arg)
{
	if (p->sink.event == NULL)
		return;
	struct smtp_event ev = {.type = type, .arg = arg};
	p->sink.event(p->sink.ctx, &ev);
}

/* Format "<code> <enhanced> <text>" into p->reply and queue it. Octets that do
 * not belong in a reply line (controls, non-ASCII) become '?': the text may
 * quote the client or come from a filter. An overlong text is cut: a reply
 * line is at most 512 octets with its CRLF (RFC 5321 4.5.3.1.5). Returns
 * p->reply for event args. */
__attribute__((format(printf, 4, 0))) static const char *
smtp_proto_vreply(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt,
                  va_list ap)
{
	char *r = p->reply;
	const size_t size = sizeof p->reply - 2; /* buffer for 509 octets + NUL */
	size_t len = (size_t)snprintf(r, size, "%03u", code % 1000);
	if (enhanced != NULL && enhanced[0] != '\0') {
		int n = snprintf(r + len, size - len, " %s", enhanced);
		len += n < 0 ? 0 : (size_t)n < size - len ? (size_t)n : size - len - 1;
	}
	if (len + 1 < size - 1) {
		vsnprintf(r + len + 1, size - len - 1, fmt, ap);
		r[len] = r[len + 1] != '\0' ? ' ' : '\0';
	}
	for (char *c = r; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	smtp_proto_out_line(p, r);
	return r;
}

__attribute__((format(printf, 4, 5))) static const char *
smtp_proto_reply(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	const char *r = smtp_proto_vreply(p, code, enhanced, fmt, ap);
	va_end(ap);
	return r;
}

static void smtp_proto_enter_state(struct smtp_proto *p, enum smtp_proto_state s)
{
	/* CLOSED is final: a session has one way out, its teardown. */
	if (p->state == SMTP_ST_CLOSED)
		return;
	p->state = s;
}

/* A protocol error: reply, count it, and drop a client that keeps erring. */
__attribute__((format(printf, 4, 5))) static void
smtp_proto_error(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	const char *r = smtp_proto_vreply(p, code, enhanced, fmt, ap);
	va_end(ap);
	smtp_proto_event(p, SMTP_EV_PROTOCOL, r);
	if (++p->errors < SMTP_PROTO_MAX_ERRORS || p->state == SMTP_ST_CLOSED)
		return;
	smtp_proto_reply(p, 421, "4.7.0", "%s Error: too many errors", p->hostname);
	smtp_proto_event(p, SMTP_EV_TOO_MANY_ERRORS, NULL);
	smtp_proto_enter_state(p, SMTP_ST_CLOSED);
}

/* Queue a final 421/554 and close (unless already closing). */
__attribute__((format(printf, 4, 5))) static void
smtp_proto_close(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...)
{
	if (p->state == SMTP_ST_CLOSED)
		return;
	va_list ap;
	va_start(ap, fmt);
	smtp_proto_vreply(p, code, enhanced, fmt, ap);
	va_end(ap);
	smtp_proto_enter_state(p, SMTP_ST_CLOSED);
}

/* ------------------------------------------------------------- lifecycle */

struct smtp_proto *smtp_proto_new(const struct smtp_proto_config *cfg,
                                  const struct smtp_proto_sink *sink)
{
	struct smtp_proto *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->cfg = *cfg;
	if (sink)
		p->sink = *sink;
	if (p->cfg.max_message_size == 0)
		p->cfg.max_message_size = SMTP_PROTO_DEFAULT_MAX_SIZE;
	if (p->cfg.max_recipients == 0)
		p->cfg.max_recipients = SMTP_PROTO_DEFAULT_MAX_RECIPIENTS;
	/* The hostname goes into every reply: keep it one printable token. */
	const char *h = cfg->hostname && cfg->hostname[0] ? cfg->hostname : "localhost";
	size_t n = 0;
	for (; n < SMTP_PROTO_DOMAIN_MAX && h[n]; n++)
		p->hostname[n] =
		    ((unsigned char)h[n] <= 0x20 || (unsigned char)h[n] >= 0x7f) ? '?' : h[n];
	p->hostname[n] = '\0';
	p->cfg.hostname = p->hostname;
	/* The envelope is bounded by configuration (max_recipients paths) but
	 * allocated as recipients come, so an idle session stays small. */
	p->out = p->out_small;
	p->state = SMTP_ST_NEW;
	p->tls_active = p->cfg.tls_active;
	return p;
}

/* Forget an AUTH exchange: its lines held credentials (SPEC 7: never kept,
 * never logged). */
static void smtp_proto_auth_wipe(struct smtp_proto *p)
{
	explicit_bzero(p->line, sizeof p->line);
	if (p->auth_line != NULL) {
		explicit_bzero(p->auth_line, SMTP_PROTO_AUTH_LINE_MAX);
		free(p->auth_line);
		p->auth_line = NULL;
	}
	p->auth_password = NULL;
	p->auth_password_len = 0;
}

void smtp_proto_free(struct smtp_proto *p)
{
	if (p == NULL)
		return;
	smtp_proto_auth_wipe(p);
	free(p->rcpt);
	if (p->out != p->out_small)
		free(p->out);
	free(p);
}

void smtp_proto_greet(struct smtp_proto *p)
{
	if (p->state != SMTP_ST_NEW)
		return;
	smtp_proto_reply(p, 220, NULL, "%s ESMTP mailport", p->hostname);
	smtp_proto_enter_state(p, SMTP_ST_CONNECTED);
}

/* ----------------------------------------------------------- transaction */

static void smtp_proto_tx_clear(struct smtp_proto *p)
{
	p->in_tx = false;
	p->smtputf8 = false;
	p->bdat_used = false;
	p->mail_from[0] = '\0';
	p->auth_param[0] = '\0';
	p->nrcpt = 0;
	/* One allocation per transaction at most; none held between them. */
	free(p->rcpt);
	p->rcpt = NULL;
	p->rcpt_cap = 0;
}

/* The state commands return to: HELO once a HELO/EHLO was accepted. */
static enum smtp_proto_state smtp_proto_cmd_state(const struct smtp_proto *p)
{
	return p->helo[0] ? SMTP_ST_HELO : SMTP_ST_CONNECTED;
}

static void smtp_proto_msg_start(struct smtp_proto *p, bool raw_size)
{
	memset(&p->msg, 0, sizeof p->msg);
	p->msg.raw_size = raw_size;
	p->msg.line_start = true;
	/* RFC 5321 4.1.1.4: the content starts after the CRLF of DATA, so a
	 * first line "." ends an empty message. */
	p->msg.after_crlf = true;
}

static bool smtp_proto_msg_dead(const struct smtp_proto *p)
{
	const struct smtp_msg *m = &p->msg;
	return m->too_big || m->too_long || m->sink_failed || (m->bare_lf && p->cfg.bare_lf_reject);
}

/* The message is refused by the core at its end: the transaction ends. */
static void smtp_proto_msg_reject(struct smtp_proto *p, unsigned code, const char *enhanced,
                                  const char *text)
{
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	const char *r = smtp_proto_reply(p, code, enhanced, "%s", text);
	smtp_proto_event(p, SMTP_EV_REJECTED, r);
	smtp_proto_tx_clear(p);
	smtp_proto_event(p, SMTP_EV_RSET, NULL);
}

/* End of DATA, or BDAT LAST: refuse it here or wait for the adapter's verdict. */
static void smtp_proto_msg_end(struct smtp_proto *p)
{
	const struct smtp_msg *m = &p->msg;
	if (m->too_big)
		smtp_proto_msg_reject(p, 552, "5.3.4", "Message too big");
	else if (m->too_long)
		smtp_proto_msg_reject(p, 500, "5.5.6", "Line too long");
	else if (m->bare_lf && p->cfg.bare_lf_reject)
		smtp_proto_msg_reject(p, 550, "5.5.2", "Bare <LF> received");
	else if (m->sink_failed)
		smtp_proto_msg_reject(p, 452, "4.3.1", "Insufficient system storage");
	else
		smtp_proto_enter_state(p, SMTP_ST_EOM);
}

/* ------------------------------------------------------------ body sink */

static void smtp_proto_emit(struct smtp_proto *p, const char *s, size_t n)
{
	if (n == 0 || p->sink.body == NULL || smtp_proto_msg_dead(p))
		return;
	if (p->sink.body(p->sink.ctx, s, n) != 0)
		p->msg.sink_failed = true;
}

/* Count octets of the message (DATA measure) against the limit, written so it
 * cannot overflow (the Postfix habit). */
static void smtp_proto_msg_count(struct smtp_proto *p, size_t n)
{
	struct smtp_msg *m = &p->msg;
	if (m->raw_size || m->too_big)
		return;
	if (p->cfg.max_message_size - m->size < n)
		m->too_big = true;
	else
		m->size += n;
}

/* The most text octets a line may hold (without its CRLF). */
static size_t smtp_proto_text_max(const struct smtp_proto *p)
{
	if (p->cfg.max_line_length == 0)
		return SIZE_MAX;
	return p->cfg.max_line_length > 2 ? (size_t)p->cfg.max_line_length - 2 : 0;
}

/* A run of ordinary content octets (no CR, no LF). */
static void smtp_proto_msg_text(struct smtp_proto *p, const char *s, size_t n)
{
	struct smtp_msg *m = &p->msg;
	m->line_start = false;
	/* SMTPD_MAX_LINE_LENGTH counts the CRLF, as RFC 5321's 1000 does; 0 is
	 * no limit: any line is stored as it came, streamed, never held whole. */
	size_t max = smtp_proto_text_max(p);
	if (max - m->line_len < n) {
		m->too_long = true;
		m->line_len = max;
	} else {
		m->line_len += n;
	}
	smtp_proto_msg_count(p, n);
	smtp_proto_emit(p, s, n);
}

/* A line end: CRLF, or a bare LF (normalize). Stored as LF, counted as CRLF. */
static void smtp_proto_msg_line_end(struct smtp_proto *p, bool crlf)
{
	struct smtp_msg *m = &p->msg;
	if (!crlf)
		m->bare_lf = true;
	smtp_proto_msg_count(p, 2);
	smtp_proto_emit(p, "\n", 1);
	m->pos = SMTP_DP_TEXT;
	m->line_len = 0;
	m->line_start = true;
	m->after_crlf = crlf;
}

/* A CR not followed by LF: dropped (SPEC 4: stray bare CRs are never passed
 * on). It is on the wire, so it counts towards the line length, and the octet
 * after it does not start a line: "<CR>." never opens a terminator. */
static void smtp_proto_msg_bare_cr(struct smtp_proto *p)
{
	struct smtp_msg *m = &p->msg;
	m->pos = SMTP_DP_TEXT;
	m->line_start = false;
	if (m->line_len < smtp_proto_text_max(p))
		m->line_len++;
	else
		m->too_long = true;
}

/* ----------------------------------------------------------------- DATA */

/* One octet of DATA content that is special (CR, LF) or at a line start.
 * Returns true at the end of data: only <CR><LF>.<CR><LF>. */
static bool smtp_proto_data_octet(struct smtp_proto *p, char c)
{
	struct smtp_msg *m = &p->msg;
	switch (m->pos) {
	case SMTP_DP_TEXT:
		if (c == '\r') {
			m->pos = SMTP_DP_CR;
		} else if (c == '\n') {
			smtp_proto_msg_line_end(p, false);
		} else if (c == '.' && m->line_start) {
			/* RFC 5321 4.5.2: the first dot of a line is removed. */
			m->pos = SMTP_DP_DOT;
			m->line_start = false;
			m->line_len = 1;
		} else {
			smtp_proto_msg_text(p, &c, 1);
		}
		return false;
	case SMTP_DP_CR:
		if (c == '\n') {
			smtp_proto_msg_line_end(p, true);
			return false;
		}
		smtp_proto_msg_bare_cr(p);
		return smtp_proto_data_octet(p, c);
	case SMTP_DP_DOT:
		if (c == '\r') {
			m->pos = SMTP_DP_DOT_CR;
			return false;
		}
		/* Unstuffed: c is content, or a bare LF (<CR><LF>.<LF> is
		 * not an end of data). */
		m->pos = SMTP_DP_TEXT;
		return smtp_proto_data_octet(p, c);
	case SMTP_DP_DOT_CR:
		if (c == '\n') {
			/* <LF>.<CR><LF>: the line began after a bare LF, so it
			 * is an (unstuffed, empty) content line. */
			if (m->after_crlf)
				return true;
			smtp_proto_msg_line_end(p, true);
			return false;
		}
		smtp_proto_msg_bare_cr(p);
		return smtp_proto_data_octet(p, c);
	}
	return false;
}

/* Read DATA content; returns the octets consumed (all, or up to the end of
 * data). Runs of ordinary octets go to the sink as slices of the input. */
static size_t smtp_proto_data_feed(struct smtp_proto *p, const char *d, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (p->msg.pos == SMTP_DP_TEXT && !p->msg.line_start) {
			size_t j = i;
			while (j < n && d[j] != '\r' && d[j] != '\n')
				j++;
			if (j > i) {
				smtp_proto_msg_text(p, d + i, j - i);
				i = j;
				continue;
			}
		}
		if (smtp_proto_data_octet(p, d[i++])) {
			smtp_proto_msg_end(p);
			return i;
		}
	}
	return n;
}

/* ----------------------------------------------------------------- BDAT */

/* BDAT content (RFC 3030): raw octets, stored with CRLF turned into LF and
 * bare CRs dropped, like DATA but with no dots and no terminator. A CR at the
 * end of one chunk pairs with an LF at the start of the next. */
static void smtp_proto_bdat_content(struct smtp_proto *p, const char *d, size_t n)
{
	struct smtp_msg *m = &p->msg;
	size_t i = 0;
	while (i < n) {
		if (m->pos == SMTP_DP_CR) {
			if (d[i] == '\n') {
				smtp_proto_msg_line_end(p, true);
				i++;
				continue;
			}
			smtp_proto_msg_bare_cr(p);
		}
		size_t j = i;
		while (j < n && d[j] != '\r' && d[j] != '\n')
			j++;
		if (j > i)
			smtp_proto_msg_text(p, d + i, j - i);
		if (j == n)
			break;
		if (d[j] == '\r')
			m->pos = SMTP_DP_CR;
		else
			smtp_proto_msg_line_end(p, false);
		i = j + 1;
	}
}

static void smtp_proto_bdat_chunk_end(struct smtp_proto *p, uint64_t count)
{
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	const struct smtp_bdat_err e = p->bdat_err;
	if (e.code == 552) {
		smtp_proto_msg_reject(p, e.code, e.enhanced, e.text);
	} else if (e.code) {
		smtp_proto_error(p, e.code, e.enhanced, "%s", e.text);
	} else if (p->bdat_last) {
		if (p->msg.pos == SMTP_DP_CR)
			smtp_proto_msg_bare_cr(p);
		smtp_proto_msg_end(p);
	} else {
		smtp_proto_reply(p, 250, "2.0.0", "%llu octets received",
		                 (unsigned long long)count);
	}
}

static size_t smtp_proto_bdat_feed(struct smtp_proto *p, const char *d, size_t n)
{
	size_t k = p->bdat_left < n ? (size_t)p->bdat_left : n;
	if (p->bdat_err.code == 0)
		smtp_proto_bdat_content(p, d, k);
	p->bdat_left -= k;
	if (p->bdat_left == 0)
		smtp_proto_bdat_chunk_end(p, p->bdat_count);
	return k;
}

/* ------------------------------------------------------------- parsing */

/* RFC 3629: well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
static bool smtp_proto_utf8_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static bool smtp_proto_ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 5321 4.1.2, loosely: Local-part "@" ( Domain / address-literal ), the
 * local part a dot-string or a quoted string. "postmaster" alone is accepted
 * where allowed (RFC 5321 4.5.1). Control octets were refused by the caller. */
static bool smtp_proto_mailbox_ok(const char *s, size_t n, bool postmaster)
{
	size_t at = 0;
	if (s[0] == '"') {
		size_t i = 1;
		while (i < n && s[i] != '"')
			i += s[i] == '\\' ? 2 : 1;
		if (i >= n)
			return false;
		at = i + 1;
		if (at >= n || s[at] != '@')
			return false;
	} else {
		for (; at < n && s[at] != '@'; at++)
			if (strchr(" \"()<>[]\\,;:", s[at]) != NULL)
				return false;
		if (at == n)
			return postmaster && n == 10 && strncasecmp(s, "postmaster", 10) == 0;
		if (at == 0)
			return false;
	}
	const char *d = s + at + 1;
	size_t dn = n - at - 1;
	if (dn == 0 || dn > SMTP_PROTO_DOMAIN_MAX)
		return false;
	if (d[0] == '[') {
		if (dn < 3 || d[dn - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < dn; i++)
			if (strchr(" []\\", d[i]) != NULL)
				return false;
		return true;
	}
	for (size_t i = 0; i < dn; i++) {
		unsigned char c = (unsigned char)d[i];
		if (!smtp_proto_ascii_alnum(c) && c != '-' && c != '.' && c < 0x80)
			return false;
	}
	return true;
}

/* Parse "<path>" at *sp (RFC 5321 4.1.2). On success the mailbox, without
 * brackets and without a source route (accepted and ignored, RFC 5321 C), is
 * copied to out, *sp points after the '>', and *nonascii says whether it
 * needs SMTPUTF8 (RFC 6531 3.3). "<>" is accepted only when null_ok. */
static bool smtp_proto_parse_path(char **sp, char out[SMTP_PROTO_PATH_MAX + 1], bool null_ok,
                                  bool *nonascii)
{
	char *s = *sp;
	if (*s != '<')
		return false;
	size_t i = 1;
	bool quoted = false;
	for (;; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
		if (quoted) {
			if (c == '\\' && ((unsigned char)s[++i] < 0x20 || s[i] == 0x7f))
				return false;
			if (c == '"')
				quoted = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '<') {
			return false;
		} else if (c == '>') {
			break;
		}
	}
	/* RFC 5321 4.5.3.1.3: 256 octets including the brackets. */
	if (i + 1 > SMTP_PROTO_PATH_MAX)
		return false;
	const char *in = s + 1;
	size_t n = i - 1;
	*sp = s + i + 1;
	*nonascii = false;
	if (n == 0) {
		out[0] = '\0';
		return null_ok;
	}
	if (in[0] == '@') {
		const char *colon = memchr(in, ':', n);
		if (colon == NULL || colon + 1 == in + n)
			return false;
		n -= (size_t)(colon + 1 - in);
		in = colon + 1;
	}
	if (!smtp_proto_mailbox_ok(in, n, !null_ok))
		return false;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)in[k] >= 0x80)
			*nonascii = true;
	if (*nonascii && !smtp_proto_utf8_ok(in, n))
		return false;
	memcpy(out, in, n);
	out[n] = '\0';
	return true;
}

/* Split the next space-separated "KEY[=VALUE]" (RFC 5321 4.1.2 esmtp-param)
 * off *sp, in place. Returns false at the end of the list. */
static bool smtp_proto_next_param(char **sp, char **key, char **value)
{
	char *s = *sp;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return false;
	*key = s;
	while (*s != '\0' && *s != ' ')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*sp = s;
	char *eq = strchr(*key, '=');
	*value = NULL;
	if (eq != NULL) {
		*eq = '\0';
		*value = eq + 1;
	}
	return true;
}

/* A decimal count for SIZE= (RFC 1870) or BDAT (RFC 3030), refusing overflow. */
static bool smtp_proto_parse_number(const char *v, uint64_t *out)
{
	if (v == NULL || *v == '\0')
		return false;
	uint64_t x = 0;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return false;
		unsigned d = (unsigned)(*v - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

/* ------------------------------------------------------------- commands */

/* AUTH is offered (EHLO) and usable now: configured, not done yet, and
 * under TLS unless SMTPD_AUTH_INSECURE (SPEC 6); never before a STARTTLS that
 * SMTPD_TLS=required asks for. */
static bool smtp_proto_auth_offered(const struct smtp_proto *p)
{
	return p->cfg.auth != SMTP_AUTH_OFF && !p->authenticated &&
	       (p->tls_active || (p->cfg.auth_insecure && !p->cfg.tls_required));
}

static void smtp_proto_cmd_helo_ehlo(struct smtp_proto *p, char *arg, bool esmtp)
{
	size_t n = strlen(arg);
	if (n > SMTP_PROTO_DOMAIN_MAX || !smtp_proto_utf8_ok(arg, n)) {
		smtp_proto_error(p, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	/* RFC 5321 4.1.4: a new HELO/EHLO resets the transaction, like RSET. */
	if (p->in_tx) {
		smtp_proto_tx_clear(p);
		smtp_proto_event(p, SMTP_EV_RSET, NULL);
	}
	memcpy(p->helo, arg, n + 1);
	p->esmtp = esmtp;
	smtp_proto_enter_state(p, SMTP_ST_HELO);
	smtp_proto_event(p, SMTP_EV_HELO, p->helo);
	if (!esmtp) {
		smtp_proto_reply(p, 250, NULL, "%s", p->hostname);
		return;
	}
	char l[SMTP_PROTO_REPLY_MAX];
	snprintf(l, sizeof l, "250-%s", p->hostname);
	smtp_proto_out_line(p, l);
	smtp_proto_out_line(p, "250-PIPELINING"); /* RFC 2920 */
	snprintf(l, sizeof l, "250-SIZE %llu", (unsigned long long)p->cfg.max_message_size);
	smtp_proto_out_line(p, l);                         /* RFC 1870 */
	smtp_proto_out_line(p, "250-8BITMIME");            /* RFC 6152 */
	smtp_proto_out_line(p, "250-SMTPUTF8");            /* RFC 6531 */
	smtp_proto_out_line(p, "250-ENHANCEDSTATUSCODES"); /* RFC 2034 */
	if (p->cfg.tls_available && !p->tls_active)
		smtp_proto_out_line(p, "250-STARTTLS"); /* RFC 3207 */
	if (smtp_proto_auth_offered(p))
		smtp_proto_out_line(p, "250-AUTH PLAIN LOGIN"); /* RFC 4954, 4616 */
	smtp_proto_out_line(p, "250 CHUNKING");                 /* RFC 3030 */
}

static void smtp_proto_cmd_ehlo(struct smtp_proto *p, char *arg)
{
	smtp_proto_cmd_helo_ehlo(p, arg, true);
}

static void smtp_proto_cmd_helo(struct smtp_proto *p, char *arg)
{
	smtp_proto_cmd_helo_ehlo(p, arg, false);
}

struct smtp_mail_params {
	bool has_size, has_body, smtputf8, has_auth;
	uint64_t size;
	bool body_8bit;
	char auth[SMTP_PROTO_PATH_MAX + 1];
};

/* RFC 3461 4: xtext ("+" and two upper-case hex digits for what is not
 * printable ASCII, "+" or "="), decoded into out. Returns false when malformed,
 * too long, or decoding to a control octet. */
static bool smtp_proto_xtext(const char *v, char *out, size_t outlen)
{
	size_t o = 0;
	for (; *v != '\0'; v++) {
		unsigned c = (unsigned char)*v;
		if (c == '+') {
			unsigned hi, lo;
			const char *hex = "0123456789ABCDEF";
			if (v[1] == '\0' || v[2] == '\0' || strchr(hex, v[1]) == NULL ||
			    strchr(hex, v[2]) == NULL)
				return false;
			hi = (unsigned)(strchr(hex, v[1]) - hex);
			lo = (unsigned)(strchr(hex, v[2]) - hex);
			c = hi * 16 + lo;
			v += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
		if (c < 0x20 || c == 0x7f || o + 1 >= outlen)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

/* MAIL parameters (RFC 5321 4.1.1.11): SIZE (RFC 1870), BODY (RFC 6152),
 * SMTPUTF8 (RFC 6531) and AUTH (RFC 4954 5, when AUTH is offered), only after
 * EHLO. A parameter given twice with the same meaning is taken (Python's
 * smtplib repeats SMTPUTF8); twice with different meanings is 501. Answers the
 * error itself. */
static bool smtp_proto_mail_params(struct smtp_proto *p, char *s, struct smtp_mail_params *mp)
{
	char *key, *value;
	while (smtp_proto_next_param(&s, &key, &value)) {
		if (!p->esmtp) {
			smtp_proto_error(p, 555, "5.5.4", "Unsupported option: %s", key);
			return false;
		}
		if (strcasecmp(key, "SIZE") == 0) {
			uint64_t size;
			if (!smtp_proto_parse_number(value, &size) ||
			    (mp->has_size && size != mp->size)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad SIZE parameter");
				return false;
			}
			mp->has_size = true;
			mp->size = size;
		} else if (strcasecmp(key, "BODY") == 0) {
			/* RFC 3030 3: BINARYMIME is not advertised, so not supported. */
			if (value != NULL && strcasecmp(value, "BINARYMIME") == 0) {
				smtp_proto_error(p, 555, "5.5.4", "Unsupported BODY type");
				return false;
			}
			bool is8 = value != NULL && strcasecmp(value, "8BITMIME") == 0;
			if (value == NULL || (!is8 && strcasecmp(value, "7BIT") != 0) ||
			    (mp->has_body && is8 != mp->body_8bit)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad BODY parameter");
				return false;
			}
			mp->has_body = true;
			mp->body_8bit = is8;
		} else if (strcasecmp(key, "SMTPUTF8") == 0) {
			if (value != NULL) {
				smtp_proto_error(p, 501, "5.5.4", "Bad SMTPUTF8 parameter");
				return false;
			}
			mp->smtputf8 = true;
		} else if (strcasecmp(key, "AUTH") == 0 && p->cfg.auth != SMTP_AUTH_OFF) {
			char decoded[SMTP_PROTO_PATH_MAX + 1];
			if (value == NULL || !smtp_proto_xtext(value, decoded, sizeof decoded) ||
			    (mp->has_auth && strcmp(decoded, mp->auth) != 0)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad AUTH parameter");
				return false;
			}
			mp->has_auth = true;
			memcpy(mp->auth, decoded, strlen(decoded) + 1);
		} else {
			smtp_proto_error(p, 555, "5.5.4", "Unsupported option: %s", key);
			return false;
		}
	}
	return true;
}

static void smtp_proto_cmd_mail(struct smtp_proto *p, char *arg)
{
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		smtp_proto_error(p, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	/* "MAIL FROM: <a@b>": the space is not RFC 5321 but common. */
	char *s = arg + 5;
	while (*s == ' ')
		s++;
	char path[SMTP_PROTO_PATH_MAX + 1];
	bool nonascii;
	if (!smtp_proto_parse_path(&s, path, true, &nonascii) || (*s != '\0' && *s != ' ')) {
		smtp_proto_error(p, 501, "5.5.4", "Bad sender address syntax");
		return;
	}
	struct smtp_mail_params mp = {0};
	if (!smtp_proto_mail_params(p, s, &mp))
		return;
	/* RFC 1870 6.1: refuse a declared size over the limit at once. */
	if (mp.has_size && mp.size > p->cfg.max_message_size) {
		smtp_proto_error(p, 552, "5.3.4", "Message size exceeds fixed limit");
		return;
	}
	/* RFC 6531: a non-ASCII address needs the SMTPUTF8 parameter (553 5.6.7). */
	if (nonascii && !mp.smtputf8) {
		smtp_proto_error(p, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
		return;
	}
	/* Postfix's queue_minfree: refuse a message that could not be stored. */
	if (p->cfg.storage_low != NULL && *p->cfg.storage_low) {
		smtp_proto_error(p, 452, "4.3.1", "Insufficient system storage");
		return;
	}
	p->in_tx = true;
	p->smtputf8 = mp.smtputf8;
	memcpy(p->mail_from, path, strlen(path) + 1);
	/* RFC 4954 5: trust the AUTH= mailbox only from an authenticated client;
	 * otherwise it means "<>". "<>" itself is kept as "". */
	if (mp.has_auth && p->authenticated && strcmp(mp.auth, "<>") != 0)
		memcpy(p->auth_param, mp.auth, strlen(mp.auth) + 1);
	smtp_proto_event(p, SMTP_EV_MAIL, p->mail_from);
	smtp_proto_reply(p, 250, "2.1.0", "Ok");
}

static void smtp_proto_cmd_rcpt(struct smtp_proto *p, char *arg)
{
	if (strncasecmp(arg, "TO:", 3) != 0) {
		smtp_proto_error(p, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	char *s = arg + 3;
	while (*s == ' ')
		s++;
	char path[SMTP_PROTO_PATH_MAX + 1];
	bool nonascii;
	if (!smtp_proto_parse_path(&s, path, false, &nonascii) || (*s != '\0' && *s != ' ')) {
		smtp_proto_error(p, 501, "5.5.4", "Bad recipient address syntax");
		return;
	}
	/* No RCPT parameter is advertised (no DSN). */
	char *key, *value;
	if (smtp_proto_next_param(&s, &key, &value)) {
		smtp_proto_error(p, 555, "5.5.4", "Unsupported option: %s", key);
		return;
	}
	if (nonascii && !p->smtputf8) {
		smtp_proto_error(p, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
		return;
	}
	/* RFC 5321 4.5.3.1.10: 452 past the limit; the client sends the rest
	 * in another transaction. Not a protocol error. */
	if (p->nrcpt >= p->cfg.max_recipients) {
		smtp_proto_reply(p, 452, "4.5.3", "Too many recipients");
		return;
	}
	if (p->nrcpt == p->rcpt_cap) {
		size_t ncap = p->rcpt_cap ? p->rcpt_cap * 2 : 4;
		if (ncap > p->cfg.max_recipients)
			ncap = p->cfg.max_recipients;
		char *nr = realloc(p->rcpt, ncap * (SMTP_PROTO_PATH_MAX + 1));
		if (nr == NULL) {
			smtp_proto_reply(p, 452, "4.3.1", "Insufficient system storage");
			return;
		}
		p->rcpt = nr;
		p->rcpt_cap = ncap;
	}
	char *slot = p->rcpt + p->nrcpt * (SMTP_PROTO_PATH_MAX + 1);
	memcpy(slot, path, strlen(path) + 1);
	p->nrcpt++;
	smtp_proto_event(p, SMTP_EV_RCPT, slot);
	smtp_proto_reply(p, 250, "2.1.5", "Ok");
}

static void smtp_proto_cmd_data(struct smtp_proto *p, char *arg)
{
	(void)arg;
	/* RFC 3030 2: DATA and BDAT do not mix in one transaction. */
	if (p->bdat_used) {
		smtp_proto_error(p, 503, "5.5.1", "Error: DATA not allowed after BDAT");
		return;
	}
	smtp_proto_msg_start(p, false);
	smtp_proto_enter_state(p, SMTP_ST_DATA);
	smtp_proto_event(p, SMTP_EV_DATA, NULL);
	smtp_proto_reply(p, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* RFC 3030 2: "BDAT" SP chunk-size [ SP end-marker ]. */
static bool smtp_proto_parse_bdat(char *arg, uint64_t *count, bool *last)
{
	char *num, *marker, *v;
	if (!smtp_proto_next_param(&arg, &num, &v) || v != NULL ||
	    strlen(num) > SMTP_PROTO_NUMBER_DIGITS || !smtp_proto_parse_number(num, count))
		return false;
	*last = false;
	if (!smtp_proto_next_param(&arg, &marker, &v))
		return true;
	if (v != NULL || strcasecmp(marker, "LAST") != 0 || smtp_proto_next_param(&arg, &num, &v))
		return false;
	*last = true;
	return true;
}

static void smtp_proto_cmd_bdat(struct smtp_proto *p, char *arg)
{
	uint64_t n;
	bool last;
	if (!smtp_proto_parse_bdat(arg, &n, &last)) {
		smtp_proto_error(p, 501, "5.5.4", "Syntax: BDAT count [LAST]");
		return;
	}
	p->bdat_count = p->bdat_left = n;
	p->bdat_last = last;
	p->bdat_err = (struct smtp_bdat_err){0};
	/* The chunk's octets follow whatever we think of it: read them all
	 * (discarding them on error) so the next command is found. */
	if (p->state == SMTP_ST_CONNECTED) {
		p->bdat_err = (struct smtp_bdat_err){503, "5.5.1", "Error: send HELO/EHLO first"};
	} else if (!p->in_tx) {
		p->bdat_err = (struct smtp_bdat_err){503, "5.5.1", "Error: need MAIL command"};
	} else if (p->nrcpt == 0) {
		p->bdat_err = (struct smtp_bdat_err){503, "5.5.1", "Error: need RCPT command"};
	} else {
		if (!p->bdat_used) {
			p->bdat_used = true;
			smtp_proto_msg_start(p, true);
			smtp_proto_event(p, SMTP_EV_DATA, NULL);
		}
		/* RFC 3030 2 / RFC 1870: the size is known before the octets. */
		if (p->cfg.max_message_size - p->msg.size < n) {
			p->msg.too_big = true;
			p->bdat_err = (struct smtp_bdat_err){552, "5.3.4", "Message too big"};
		} else {
			p->msg.size += n;
		}
	}
	if (n == 0)
		smtp_proto_bdat_chunk_end(p, 0);
	else
		smtp_proto_enter_state(p, SMTP_ST_BDAT);
}

static void smtp_proto_cmd_rset(struct smtp_proto *p, char *arg)
{
	(void)arg;
	smtp_proto_tx_clear(p);
	smtp_proto_event(p, SMTP_EV_RSET, NULL);
	smtp_proto_reply(p, 250, "2.0.0", "Ok");
}

static void smtp_proto_cmd_noop(struct smtp_proto *p, char *arg)
{
	(void)arg; /* RFC 5321 4.1.1.9: a NOOP argument is ignored. */
	smtp_proto_reply(p, 250, "2.0.0", "Ok");
}

static void smtp_proto_cmd_quit(struct smtp_proto *p, char *arg)
{
	(void)arg;
	smtp_proto_reply(p, 221, "2.0.0", "Bye");
	smtp_proto_event(p, SMTP_EV_QUIT, NULL);
	smtp_proto_enter_state(p, SMTP_ST_CLOSED);
}

static void smtp_proto_cmd_vrfy(struct smtp_proto *p, char *arg)
{
	(void)arg; /* RFC 5321 3.5.3: 252 when we will not verify. */
	smtp_proto_reply(p, 252, "2.5.2",
	                 "Cannot VRFY user, but will accept message and attempt delivery");
}

static void smtp_proto_cmd_help(struct smtp_proto *p, char *arg)
{
	(void)arg;
	smtp_proto_reply(p, 214, "2.0.0",
	                 "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}

/* ------------------------------------------------------ STARTTLS and AUTH */

/* RFC 3207 4: the adapter answers SMTP_WAIT_STARTTLS with a TLS session
 * (smtp_proto_tls_started) or a 454. */
static void smtp_proto_cmd_starttls(struct smtp_proto *p, char *arg)
{
	(void)arg;
	if (p->tls_active) {
		smtp_proto_error(p, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	/* A transaction would be forgotten by the TLS reset (RFC 3207 4.2):
	 * refuse, as OpenSMTPD does, rather than drop it silently. */
	if (p->in_tx) {
		smtp_proto_error(p, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	smtp_proto_enter_state(p, SMTP_ST_STARTTLS);
}

static int smtp_proto_base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* RFC 4648 4 base64, strictly: whole quanta, '=' padding only at the very end
 * (RFC 4954 4: a response that is not base64 is refused). Decodes s[0..n) in
 * place (the output is never longer than what was read); false if invalid. */
static bool smtp_proto_base64_decode(char *s, size_t n, size_t *out)
{
	if (n % 4 != 0)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		unsigned pad = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = 0;
			if (s[i + k] == '=') {
				if (i + 4 != n || k < 2)
					return false;
				pad++;
			} else if (pad > 0 || (d = smtp_proto_base64_value(s[i + k])) < 0) {
				return false;
			}
			v = v << 6 | (uint32_t)d;
		}
		s[o++] = (char)(v >> 16);
		if (pad < 2)
			s[o++] = (char)(v >> 8 & 0xff);
		if (pad < 1)
			s[o++] = (char)(v & 0xff);
	}
	*out = o;
	return true;
}

/* The name the client wants to authenticate as. One that no user can have
 * (too long, or holding a NUL) becomes "", which never verifies, so that every
 * failure costs the same delay in the adapter. */
static void smtp_proto_auth_set_user(struct smtp_proto *p, const char *u, size_t n)
{
	if (n > SMTP_PROTO_AUTH_USER_MAX || memchr(u, '\0', n) != NULL)
		n = 0;
	memcpy(p->auth_username, u, n);
	p->auth_username[n] = '\0';
}

static void smtp_proto_auth_abort(struct smtp_proto *p, unsigned code, const char *enhanced,
                                  const char *text)
{
	p->auth_username[0] = '\0';
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	smtp_proto_error(p, code, enhanced, "%s", text);
}

/* Credentials complete: the adapter verifies them (SMTP_WAIT_AUTH). */
static void smtp_proto_auth_ready(struct smtp_proto *p, const char *pass, size_t len)
{
	p->auth_password = pass;
	p->auth_password_len = len;
	smtp_proto_enter_state(p, SMTP_ST_AUTH_WAIT);
}

/* One decoded client response, data[0..n), of the current mechanism. */
static void smtp_proto_auth_step(struct smtp_proto *p, char *data, size_t n)
{
	if (p->auth_mech == SMTP_AUTH_MECH_LOGIN) {
		/* draft-murchison-sasl-login: a user name, then a password. */
		if (!p->auth_login_user) {
			smtp_proto_auth_set_user(p, data, n);
			p->auth_login_user = true;
			smtp_proto_enter_state(p, SMTP_ST_AUTH);
			smtp_proto_out_line(p, "334 UGFzc3dvcmQ6"); /* "Password:" */
			return;
		}
		smtp_proto_auth_ready(p, data, n);
		return;
	}
	/* RFC 4616 2: [authzid] NUL authcid NUL passwd, no other NUL. */
	char *z1 = memchr(data, '\0', n);
	char *z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - data)) : NULL;
	if (z2 == NULL || memchr(z2 + 1, '\0', n - (size_t)(z2 + 1 - data)) != NULL) {
		smtp_proto_auth_abort(p, 501, "5.5.2", "Invalid PLAIN response");
		return;
	}
	size_t zlen = (size_t)(z1 - data), ulen = (size_t)(z2 - z1 - 1);
	smtp_proto_auth_set_user(p, z1 + 1, ulen);
	/* Acting as someone else (an authorization identity other than the
	 * user's own) is not supported: such a request cannot succeed. */
	if (zlen > 0 && (zlen != ulen || memcmp(data, z1 + 1, ulen) != 0))
		p->auth_username[0] = '\0';
	smtp_proto_auth_ready(p, z2 + 1, n - (size_t)(z2 + 1 - data));
}

/* A line after a 334 (RFC 4954 4): base64, or "*" to cancel. */
static void smtp_proto_auth_response(struct smtp_proto *p, char *line, size_t n, bool overflow)
{
	if (overflow) {
		smtp_proto_auth_abort(p, 500, "5.5.6", "Line too long");
		return;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n == 1 && line[0] == '*') {
		smtp_proto_auth_abort(p, 501, "5.7.0", "Authentication aborted");
		return;
	}
	size_t len = 0;
	if (!(n == 1 && line[0] == '=') && !smtp_proto_base64_decode(line, n, &len)) {
		smtp_proto_auth_abort(p, 501, "5.5.2", "Cannot decode response");
		return;
	}
	smtp_proto_auth_step(p, line, len);
}

/* RFC 4954 4: AUTH mechanism [initial-response]. */
static void smtp_proto_cmd_auth(struct smtp_proto *p, char *arg)
{
	if (p->authenticated) {
		smtp_proto_error(p, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (p->in_tx) {
		smtp_proto_error(p, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	if (!p->tls_active && p->cfg.tls_required) {
		smtp_proto_error(p, 530, "5.7.0", "Must issue a STARTTLS command first");
		return;
	}
	/* RFC 4954 6: 538 for a plaintext mechanism over an unencrypted link. */
	if (!p->tls_active && !p->cfg.auth_insecure) {
		smtp_proto_error(p, 538, "5.7.11",
		                 "Encryption required for requested authentication mechanism");
		return;
	}
	char *ir = strchr(arg, ' ');
	if (ir != NULL) {
		*ir++ = '\0';
		while (*ir == ' ')
			ir++;
		if (strchr(ir, ' ') != NULL) {
			smtp_proto_error(p, 501, "5.5.4",
			                 "Syntax: AUTH mechanism [initial-response]");
			return;
		}
	}
	if (strcasecmp(arg, "PLAIN") == 0) {
		p->auth_mech = SMTP_AUTH_MECH_PLAIN;
	} else if (strcasecmp(arg, "LOGIN") == 0) {
		p->auth_mech = SMTP_AUTH_MECH_LOGIN;
	} else {
		smtp_proto_error(p, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	p->auth_username[0] = '\0';
	p->auth_login_user = false;
	if (ir == NULL || *ir == '\0') {
		smtp_proto_enter_state(p, SMTP_ST_AUTH);
		/* PLAIN: an empty challenge; LOGIN: "Username:". */
		smtp_proto_out_line(p, p->auth_mech == SMTP_AUTH_MECH_PLAIN ? "334 "
		                                                            : "334 VXNlcm5hbWU6");
		return;
	}
	/* RFC 4954 4: "=" is an empty initial response. */
	size_t len = 0;
	if (strcmp(ir, "=") != 0 && !smtp_proto_base64_decode(ir, strlen(ir), &len)) {
		smtp_proto_error(p, 501, "5.5.2", "Cannot decode response");
		return;
	}
	smtp_proto_auth_step(p, ir, len);
}

/* Ordering and argument rules, checked by the dispatcher before proceed(). */
#define SMTP_CMD_NEED_HELO (1u << 0) /* 503 before HELO/EHLO (RFC 5321 4.1.4) */
#define SMTP_CMD_NEED_MAIL (1u << 1) /* 503 outside a transaction */
#define SMTP_CMD_NEED_RCPT (1u << 2) /* 503 before an accepted recipient */
#define SMTP_CMD_NO_TX     (1u << 3) /* 503 inside a transaction */
#define SMTP_CMD_ARG       (1u << 4) /* 501 without an argument */
#define SMTP_CMD_NO_ARG    (1u << 5) /* 501 with an argument */
#define SMTP_CMD_NOT_IMPL  (1u << 6) /* 502: recognised, not offered yet */
/* RFC 2920 3.1: must end a pipelined group. Input already behind it, before
 * PIPELINING was offered, is answered 554 5.5.0 and the session closes. */
#define SMTP_CMD_GROUP_END (1u << 7)
#define SMTP_CMD_IF_TLS    (1u << 8)  /* 502 unless STARTTLS is configured (SPEC 6) */
#define SMTP_CMD_IF_AUTH   (1u << 9)  /* 502 unless AUTH is configured */
#define SMTP_CMD_NEED_TLS  (1u << 10) /* 530 before STARTTLS with SMTPD_TLS=required */
#define SMTP_CMD_NEED_AUTH (1u << 11) /* 530 before AUTH with SMTPD_AUTH=required */

struct smtp_cmd {
	const char *verb;
	unsigned flags;
	const char *usage; /* the 501 text */
	void (*proceed)(struct smtp_proto *p, char *arg);
};

static const struct smtp_cmd smtp_proto_cmds[] = {
    {"EHLO", SMTP_CMD_ARG | SMTP_CMD_GROUP_END, "EHLO hostname", smtp_proto_cmd_ehlo},
    {"HELO", SMTP_CMD_ARG | SMTP_CMD_GROUP_END, "HELO hostname", smtp_proto_cmd_helo},
    {"MAIL",
     SMTP_CMD_NEED_HELO | SMTP_CMD_NO_TX | SMTP_CMD_NEED_TLS | SMTP_CMD_NEED_AUTH | SMTP_CMD_ARG,
     "MAIL FROM:<address>", smtp_proto_cmd_mail},
    {"RCPT", SMTP_CMD_NEED_HELO | SMTP_CMD_NEED_MAIL | SMTP_CMD_ARG, "RCPT TO:<address>",
     smtp_proto_cmd_rcpt},
    {"DATA", SMTP_CMD_NEED_HELO | SMTP_CMD_NEED_MAIL | SMTP_CMD_NEED_RCPT | SMTP_CMD_NO_ARG, "DATA",
     smtp_proto_cmd_data},
    /* BDAT checks its own order: its octets must be read in any case. */
    {"BDAT", SMTP_CMD_ARG, "BDAT count [LAST]", smtp_proto_cmd_bdat},
    {"RSET", SMTP_CMD_NO_ARG, "RSET", smtp_proto_cmd_rset},
    {"NOOP", 0, "NOOP", smtp_proto_cmd_noop},
    {"QUIT", SMTP_CMD_NO_ARG, "QUIT", smtp_proto_cmd_quit},
    {"VRFY", SMTP_CMD_ARG, "VRFY address", smtp_proto_cmd_vrfy},
    {"HELP", 0, "HELP", smtp_proto_cmd_help},
    {"STARTTLS", SMTP_CMD_IF_TLS | SMTP_CMD_NEED_HELO | SMTP_CMD_NO_ARG, "STARTTLS",
     smtp_proto_cmd_starttls},
    {"AUTH", SMTP_CMD_IF_AUTH | SMTP_CMD_NEED_HELO | SMTP_CMD_ARG, "AUTH mechanism",
     smtp_proto_cmd_auth},
};

/* Answer 502/503/501 for a command that may not run now; true if it may. */
static bool smtp_proto_cmd_allowed(struct smtp_proto *p, const struct smtp_cmd *cmd,
                                   const char *arg)
{
	unsigned f = cmd->flags;
	if ((f & SMTP_CMD_IF_TLS) && !p->cfg.tls_available && !p->cfg.tls_active)
		/* Issue 5 / RFC 3207: a server without TLS answers STARTTLS 454. */
		smtp_proto_error(p, 454, "4.7.0", "TLS not available");
	else if ((f & SMTP_CMD_NOT_IMPL) ||
	         ((f & SMTP_CMD_IF_AUTH) && p->cfg.auth == SMTP_AUTH_OFF))
		smtp_proto_error(p, 502, "5.5.1", "Command not implemented");
	else if ((f & SMTP_CMD_NEED_HELO) && p->state == SMTP_ST_CONNECTED)
		smtp_proto_error(p, 503, "5.5.1", "Error: send HELO/EHLO first");
	else if ((f & SMTP_CMD_NEED_MAIL) && !p->in_tx)
		smtp_proto_error(p, 503, "5.5.1", "Error: need MAIL command");
	else if ((f & SMTP_CMD_NEED_RCPT) && p->nrcpt == 0)
		smtp_proto_error(p, 503, "5.5.1", "Error: need RCPT command");
	else if ((f & SMTP_CMD_NO_TX) && p->in_tx)
		smtp_proto_error(p, 503, "5.5.1", "Error: nested MAIL command");
	else if ((f & SMTP_CMD_NEED_TLS) && p->cfg.tls_required && !p->tls_active)
		smtp_proto_error(p, 530, "5.7.0", "Must issue a STARTTLS command first");
	else if ((f & SMTP_CMD_NEED_AUTH) && p->cfg.auth == SMTP_AUTH_REQUIRED && !p->authenticated)
		smtp_proto_error(p, 530, "5.7.0", "Authentication required");
	else if (((f & SMTP_CMD_ARG) && arg[0] == '\0') ||
	         ((f & SMTP_CMD_NO_ARG) && arg[0] != '\0'))
		smtp_proto_error(p, 501, "5.5.4", "Syntax: %s", cmd->usage);
	else
		return true;
	return false;
}

/* The buffer the current line goes to, and how much it holds before its LF. */
static char *smtp_proto_linebuf(struct smtp_proto *p)
{
	return p->auth_line != NULL ? p->auth_line : p->line;
}

static size_t smtp_proto_linecap(const struct smtp_proto *p)
{
	return p->auth_line != NULL ? SMTP_PROTO_AUTH_LINE_MAX - 1 : SMTP_PROTO_CMD_BUF;
}

/* A line about to pass 512 octets goes on only when it is an AUTH line (RFC
 * 4954 4): a response after a 334, or an AUTH command while AUTH is
 * configured. d[0..n) is the input that follows what the line holds. Then the
 * line moves to a buffer of SMTP_PROTO_AUTH_LINE_MAX, which exists only until
 * the line is used: an idle session keeps none. */
static bool smtp_proto_line_grow(struct smtp_proto *p, const char *d, size_t n)
{
	if (p->auth_line != NULL)
		return false;
	if (p->state != SMTP_ST_AUTH) {
		char verb[5];
		size_t k = 0;
		for (; k < sizeof verb && k < p->line_len; k++)
			verb[k] = p->line[k];
		for (size_t i = 0; k < sizeof verb && i < n; i++)
			verb[k++] = d[i];
		if (p->cfg.auth == SMTP_AUTH_OFF || k < sizeof verb ||
		    strncasecmp(verb, "AUTH ", sizeof verb) != 0)
			return false;
	}
	p->auth_line = malloc(SMTP_PROTO_AUTH_LINE_MAX);
	if (p->auth_line == NULL)
		return false;
	memcpy(p->auth_line, p->line, p->line_len);
	return true;
}

/* A complete command line of n octets is in line (overflow: it was too long
 * and not stored); rest is how much input follows it in this feed() call. */
static void smtp_proto_command_line(struct smtp_proto *p, char *line, size_t n, bool overflow,
                                    size_t rest)
{
	snprintf(p->verb, sizeof p->verb, "?");
	if (overflow) {
		smtp_proto_error(p, 500, "5.5.6", "Line too long");
		return;
	}
	/* CRLF, or a bare LF: lenient in commands, like Postfix. */
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			smtp_proto_error(p, 500, "5.5.2", "Error: invalid character in command");
			return;
		}
	}
	char *verb = line;
	char *arg = strchr(verb, ' ');
	if (arg != NULL) {
		*arg++ = '\0';
		while (*arg == ' ')
			arg++;
	} else {
		arg = verb + n;
	}
	size_t alen = strlen(arg);
	while (alen > 0 && (arg[alen - 1] == ' ' || arg[alen - 1] == '\t'))
		arg[--alen] = '\0';
	const struct smtp_cmd *cmd = NULL;
	for (size_t i = 0; i < sizeof smtp_proto_cmds / sizeof smtp_proto_cmds[0]; i++)
		if (strcasecmp(verb, smtp_proto_cmds[i].verb) == 0)
			cmd = &smtp_proto_cmds[i];
	snprintf(p->verb, sizeof p->verb, "%s", cmd != NULL ? cmd->verb : "?");
	if (cmd == NULL) {
		smtp_proto_error(p, 500, "5.5.2", "Error: %s",
		                 verb[0] ? "command not recognized" : "bad syntax");
		return;
	}
	if ((cmd->flags & SMTP_CMD_GROUP_END) && rest > 0) {
		const char *r = smtp_proto_reply(
		    p, 554, "5.5.0", "%s Error: SMTP protocol synchronization", p->hostname);
		smtp_proto_event(p, SMTP_EV_PROTOCOL, r);
		smtp_proto_enter_state(p, SMTP_ST_CLOSED);
		return;
	}
	if (smtp_proto_cmd_allowed(p, cmd, arg))
		cmd->proceed(p, arg);
}

/* A complete line is in the line buffer: a command, or a response to a 334. */
static void smtp_proto_command(struct smtp_proto *p, size_t rest)
{
	char *line = smtp_proto_linebuf(p);
	size_t n = p->line_len;
	bool overflow = p->line_overflow;
	bool auth = p->state == SMTP_ST_AUTH || p->auth_line != NULL ||
	            (n >= 4 && strncasecmp(line, "AUTH", 4) == 0);
	p->line_len = 0;
	p->line_overflow = false;
	if (p->state == SMTP_ST_AUTH)
		smtp_proto_auth_response(p, line, n, overflow);
	else
		smtp_proto_command_line(p, line, n, overflow, rest);
	/* The credentials stay in the line until their verdict (resume). */
	if (auth && p->state != SMTP_ST_AUTH_WAIT)
		smtp_proto_auth_wipe(p);
}

/* Read command input up to and including one LF. An overlong line is not
 * stored: the rest of it is skipped and answered at its LF (Postfix). */
static size_t smtp_proto_command_feed(struct smtp_proto *p, const char *d, size_t n)
{
	const char *lf = memchr(d, '\n', n);
	size_t take = lf ? (size_t)(lf - d) : n;
	if (!p->line_overflow) {
		if (take > smtp_proto_linecap(p) - p->line_len &&
		    (!smtp_proto_line_grow(p, d, take) ||
		     take > smtp_proto_linecap(p) - p->line_len)) {
			p->line_overflow = true;
		} else {
			memcpy(smtp_proto_linebuf(p) + p->line_len, d, take);
			p->line_len += take;
		}
	}
	if (lf == NULL)
		return n;
	smtp_proto_command(p, n - take - 1);
	return take + 1;
}

/* ------------------------------------------------------------ interface */

size_t smtp_proto_feed(struct smtp_proto *p, const char *data, size_t len)
{
	if (p->state == SMTP_ST_NEW) {
		/* Talking before the greeting (Postfix postscreen's pregreet test). */
		if (len > 0)
			smtp_proto_close(p, 554, "5.5.0", "%s Error: SMTP protocol synchronization",
			                 p->hostname);
		if (p->state == SMTP_ST_CLOSED)
			smtp_proto_event(p, SMTP_EV_PROTOCOL, p->reply);
		return 0;
	}
	size_t off = 0;
	while (off < len && p->state != SMTP_ST_CLOSED && smtp_proto_pending(p) == SMTP_WAIT_NONE &&
	       p->out_len <= SMTP_PROTO_OUTPUT_HIGH) {
		if (p->state == SMTP_ST_DATA)
			off += smtp_proto_data_feed(p, data + off, len - off);
		else if (p->state == SMTP_ST_BDAT)
			off += smtp_proto_bdat_feed(p, data + off, len - off);
		else
			off += smtp_proto_command_feed(p, data + off, len - off);
	}
	return off;
}

size_t smtp_proto_output(const struct smtp_proto *p, const char **data)
{
	*data = p->out;
	return p->out_len;
}

void smtp_proto_output_consume(struct smtp_proto *p, size_t n)
{
	if (n >= p->out_len) {
		p->out_len = 0;
		if (p->out != p->out_small) {
			free(p->out);
			p->out = p->out_small;
		}
		return;
	}
	memmove(p->out, p->out + n, p->out_len - n);
	p->out_len -= n;
}

enum smtp_wait smtp_proto_pending(const struct smtp_proto *p)
{
	switch (p->state) {
	case SMTP_ST_EOM:
		return SMTP_WAIT_EOM;
	case SMTP_ST_STARTTLS:
		return SMTP_WAIT_STARTTLS;
	case SMTP_ST_AUTH_WAIT:
		return SMTP_WAIT_AUTH;
	default:
		return SMTP_WAIT_NONE;
	}
}

/* The verdict on AUTH credentials: 2xx authenticates the session. */
static void smtp_proto_auth_resume(struct smtp_proto *p, unsigned code, const char *enhanced,
                                   const char *text)
{
	smtp_proto_auth_wipe(p);
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	if (code < 200 || code > 599 || (code >= 300 && code < 400)) {
		code = 454;
		enhanced = "4.7.0";
		text = "Temporary authentication failure";
	}
	if (code < 300) {
		p->authenticated = true;
		smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
		return;
	}
	p->auth_username[0] = '\0';
	/* A failed AUTH counts towards the error limit (a guessing client). */
	if (code >= 500)
		smtp_proto_error(p, code, enhanced, "%s", text ? text : "");
	else
		smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
}

void smtp_proto_resume(struct smtp_proto *p, unsigned code, const char *enhanced, const char *text)
{
	if (p->state == SMTP_ST_STARTTLS) {
		/* Only a refusal comes through here (smtp_proto_tls_started says yes). */
		if (code < 400 || code > 599) {
			code = 454;
			enhanced = "4.7.0";
			text = "TLS not available due to temporary reason";
		}
		smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
		smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
		return;
	}
	if (p->state == SMTP_ST_AUTH_WAIT) {
		smtp_proto_auth_resume(p, code, enhanced, text);
		return;
	}
	/* Nothing pending (e.g. the session timed out meanwhile): ignored. */
	if (p->state != SMTP_ST_EOM)
		return;
	if (code < 200 || code > 599) {
		code = 451;
		enhanced = "4.3.0";
		text = "Error: internal error";
	}
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
	/* RFC 5321 4.1.1.4: the end-of-data reply ends the transaction. */
	smtp_proto_tx_clear(p);
	smtp_proto_event(p, SMTP_EV_RSET, NULL);
}

bool smtp_proto_closing(const struct smtp_proto *p)
{
	return p->state == SMTP_ST_CLOSED;
}

bool smtp_proto_in_data(const struct smtp_proto *p)
{
	return p->state == SMTP_ST_DATA || p->state == SMTP_ST_BDAT;
}

bool smtp_proto_in_transaction(const struct smtp_proto *p)
{
	return p->in_tx;
}

void smtp_proto_timeout(struct smtp_proto *p)
{
	smtp_proto_close(p, 421, "4.4.2", "%s Error: timeout exceeded", p->hostname);
}

void smtp_proto_shutdown(struct smtp_proto *p)
{
	smtp_proto_close(p, 421, "4.3.2", "%s Service shutting down", p->hostname);
}

void smtp_proto_abort(struct smtp_proto *p, const char *text)
{
	smtp_proto_close(p, 421, "4.3.0", "%s %s", p->hostname,
	                 text && text[0] ? text : "Error: local error");
}

const char *smtp_proto_helo(const struct smtp_proto *p)
{
	return p->helo;
}

const char *smtp_proto_verb(const struct smtp_proto *p)
{
	return p->verb[0] != '\0' ? p->verb : "?";
}

const char *smtp_proto_auth_param(const struct smtp_proto *p)
{
	return p->auth_param;
}

const char *smtp_proto_mail_from(const struct smtp_proto *p)
{
	return p->mail_from;
}

size_t smtp_proto_rcpt_count(const struct smtp_proto *p)
{
	return p->nrcpt;
}

const char *smtp_proto_rcpt(const struct smtp_proto *p, size_t i)
{
	if (i >= p->nrcpt)
		return NULL;
	return p->rcpt + i * (SMTP_PROTO_PATH_MAX + 1);
}

bool smtp_proto_esmtp(const struct smtp_proto *p)
{
	return p->esmtp;
}

uint64_t smtp_proto_message_size(const struct smtp_proto *p)
{
	return p->msg.size;
}

void smtp_proto_tls_started(struct smtp_proto *p)
{
	if (p->state != SMTP_ST_STARTTLS)
		return;
	smtp_proto_reply(p, 220, "2.0.0", "Ready to start TLS");
	/* RFC 3207 4.2: the server MUST discard any knowledge obtained from the
	 * client, such as the argument to EHLO, which was not obtained from the
	 * TLS negotiation itself. (The adapter discards the input it holds.) */
	p->tls_active = true;
	p->helo[0] = '\0';
	p->esmtp = false;
	smtp_proto_tx_clear(p);
	p->authenticated = false;
	p->auth_username[0] = '\0';
	p->line_len = 0;
	p->line_overflow = false;
	smtp_proto_enter_state(p, SMTP_ST_CONNECTED);
}

bool smtp_proto_tls_active(const struct smtp_proto *p)
{
	return p->tls_active;
}

const char *smtp_proto_auth_mechanism(const struct smtp_proto *p)
{
	if (p->state != SMTP_ST_AUTH_WAIT)
		return "";
	return p->auth_mech == SMTP_AUTH_MECH_PLAIN ? "PLAIN" : "LOGIN";
}

const char *smtp_proto_auth_username(const struct smtp_proto *p)
{
	return p->state == SMTP_ST_AUTH_WAIT ? p->auth_username : "";
}

const char *smtp_proto_auth_password(const struct smtp_proto *p, size_t *len)
{
	if (p->state != SMTP_ST_AUTH_WAIT || p->auth_password == NULL) {
		*len = 0;
		return NULL;
	}
	*len = p->auth_password_len;
	return p->auth_password;
}

const char *smtp_proto_auth_user(const struct smtp_proto *p)
{
	return p->authenticated ? p->auth_username : NULL;
}

const char *smtp_proto_state_name(const struct smtp_proto *p)
{
	return smtp_proto_state_names[p->state];
}
