/* smtp_data: the content of a message, DATA (RFC 5321 4.1.1.4) and BDAT
 * (RFC 3030), for smtp_proto (see the choices listed at the top of
 * smtp_proto.c). The content is streamed to the body sink as slices of the
 * caller's buffer, never held whole; a refusal is known by the end of the
 * message and answered there. */
#include "smtp_proto_priv.h"

#include <stdint.h>
#include <string.h>

/* --------------------------------------------------------------- message */

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
size_t smtp_proto_data_feed(struct smtp_proto *p, const char *d, size_t n)
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

size_t smtp_proto_bdat_feed(struct smtp_proto *p, const char *d, size_t n)
{
	size_t k = p->bdat_left < n ? (size_t)p->bdat_left : n;
	if (p->bdat_err.code == 0)
		smtp_proto_bdat_content(p, d, k);
	p->bdat_left -= k;
	if (p->bdat_left == 0)
		smtp_proto_bdat_chunk_end(p, p->bdat_count);
	return k;
}

/* ------------------------------------------------------------- commands */

void smtp_proto_cmd_data(struct smtp_proto *p, char *arg)
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

void smtp_proto_cmd_bdat(struct smtp_proto *p, char *arg)
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
