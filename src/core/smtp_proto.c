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
 * Files: this one holds the output, lifecycle, transaction, the commands from
 * EHLO to HELP but DATA and BDAT, the command table and line reader, and the
 * interface; smtp_data.c the message content (DATA and BDAT, the body sink,
 * their commands); smtp_parse.c the parsing helpers (UTF-8, paths, parameters,
 * numbers, xtext, MAIL parameters, BDAT arguments); smtp_auth.c STARTTLS and
 * AUTH (commands, the 334 exchange, the verdict, wiping credentials);
 * smtp_proto_priv.h struct smtp_proto and what the files share.
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
 * - RCPT (SPEC 8): after its syntax and SMTPUTF8 checks, before the recipient
 *   limit, the recipient policy (policy.h) may refuse it: 554 5.7.1 (a domain
 *   not served, unauthenticated) or 550 5.1.1 (not in the recipients file).
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
#include "smtp_proto_priv.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

/* SPEC 4 defaults, used when a config field is 0. */
#define SMTP_PROTO_DEFAULT_MAX_SIZE       26214400u
#define SMTP_PROTO_DEFAULT_MAX_RECIPIENTS 100u

/* ---------------------------------------------------------------- output */

void smtp_proto_out_line(struct smtp_proto *p, const char *s)
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

void smtp_proto_event(struct smtp_proto *p, enum smtp_event_type type, const char *arg)
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

__attribute__((format(printf, 4, 5))) const char *
smtp_proto_reply(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	const char *r = smtp_proto_vreply(p, code, enhanced, fmt, ap);
	va_end(ap);
	return r;
}

void smtp_proto_enter_state(struct smtp_proto *p, enum smtp_proto_state s)
{
	/* CLOSED is final: a session has one way out, its teardown. */
	if (p->state == SMTP_ST_CLOSED)
		return;
	p->state = s;
}

/* A protocol error: reply, count it, and drop a client that keeps erring. */
__attribute__((format(printf, 4, 5))) void
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

void smtp_proto_tx_clear(struct smtp_proto *p)
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
enum smtp_proto_state smtp_proto_cmd_state(const struct smtp_proto *p)
{
	return p->helo[0] ? SMTP_ST_HELO : SMTP_ST_CONNECTED;
}

/* ------------------------------------------------------------- commands */

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
	/* SPEC 8: refused recipients count towards SMTP_PROTO_MAX_ERRORS, as
	 * Postfix counts them, so guessing addresses costs a harvester the
	 * session after 20 misses. */
	switch (policy_check(p->cfg.policy ? *p->cfg.policy : NULL, path, p->authenticated)) {
	case POLICY_RELAY_DENIED:
		smtp_proto_event(p, SMTP_EV_RCPT_REFUSED, "relay");
		smtp_proto_error(p, 554, "5.7.1", "Relay access denied");
		return;
	case POLICY_UNKNOWN_USER:
		smtp_proto_event(p, SMTP_EV_RCPT_REFUSED, "unknown_user");
		smtp_proto_error(p, 550, "5.1.1", "User unknown");
		return;
	case POLICY_ACCEPT:
		break;
	}
	/* RFC 5321 4.5.3.1.10: 452 past the limit; the client sends the rest
	 * in another transaction. Not a protocol error. */
	if (p->nrcpt >= p->cfg.max_recipients) {
		/* Refused, so logged (SPEC 4), but not counted as an error. */
		smtp_proto_event(p, SMTP_EV_PROTOCOL,
		                 smtp_proto_reply(p, 452, "4.5.3", "Too many recipients"));
		return;
	}
	if (p->nrcpt == p->rcpt_cap) {
		size_t ncap = p->rcpt_cap ? p->rcpt_cap * 2 : 4;
		if (ncap > p->cfg.max_recipients)
			ncap = p->cfg.max_recipients;
		char *nr = realloc(p->rcpt, ncap * (SMTP_PROTO_PATH_MAX + 1));
		if (nr == NULL) {
			smtp_proto_event(
			    p, SMTP_EV_PROTOCOL,
			    smtp_proto_reply(p, 452, "4.3.1", "Insufficient system storage"));
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

/* Ordering and argument rules, checked by the dispatcher before proceed(). */
#define SMTP_CMD_NEED_HELO (1u << 0) /* 503 before HELO/EHLO (RFC 5321 4.1.4) */
#define SMTP_CMD_NEED_MAIL (1u << 1) /* 503 outside a transaction */
#define SMTP_CMD_NEED_RCPT (1u << 2) /* 503 before an accepted recipient */
#define SMTP_CMD_NO_TX     (1u << 3) /* 503 inside a transaction */
#define SMTP_CMD_ARG       (1u << 4) /* 501 without an argument */
#define SMTP_CMD_NO_ARG    (1u << 5) /* 501 with an argument */
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

/* p->verb (for the adapter's log): the known command v[0..n) names, else "?". */
static const struct smtp_cmd *smtp_proto_name_verb(struct smtp_proto *p, const char *v, size_t n)
{
	const struct smtp_cmd *cmd = NULL;
	for (size_t i = 0; i < sizeof smtp_proto_cmds / sizeof smtp_proto_cmds[0]; i++)
		if (strlen(smtp_proto_cmds[i].verb) == n &&
		    strncasecmp(v, smtp_proto_cmds[i].verb, n) == 0)
			cmd = &smtp_proto_cmds[i];
	snprintf(p->verb, sizeof p->verb, "%s", cmd != NULL ? cmd->verb : "?");
	return cmd;
}

/* Answer 502/503/501 for a command that may not run now; true if it may. */
static bool smtp_proto_cmd_allowed(struct smtp_proto *p, const struct smtp_cmd *cmd,
                                   const char *arg)
{
	unsigned f = cmd->flags;
	if ((f & SMTP_CMD_IF_TLS) && !p->cfg.tls_available && !p->cfg.tls_active)
		/* Issue 5 / RFC 3207: a server without TLS answers STARTTLS 454. */
		smtp_proto_error(p, 454, "4.7.0", "TLS not available");
	else if ((f & SMTP_CMD_IF_AUTH) && p->cfg.auth == SMTP_AUTH_OFF)
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
	const struct smtp_cmd *cmd = smtp_proto_name_verb(p, verb, strlen(verb));
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
		/* Talking before the greeting (Postfix postscreen's pregreet test).
		 * The log names the verb when the bytes start with a known one. */
		if (len > 0) {
			size_t vn = 0;
			while (vn < len && vn < sizeof p->verb - 1 &&
			       (unsigned)(((unsigned char)data[vn] | 32) - 'a') < 26)
				vn++;
			smtp_proto_name_verb(p, data, vn);
		}
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
