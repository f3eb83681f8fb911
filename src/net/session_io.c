/* session_io: a session's connection types (SPEC 6, Redis' habit): plain TCP
 * and TLS (OpenSSL over memory BIOs, tlsio.c) implement the same operations,
 * so STARTTLS switches a live session and nothing above this layer knows which
 * it has. See session.c for the rest of a session's life. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_priv.h"
#include "smtp_proto.h"
#include "tlsio.h"

/* ---- I/O: the connection types (SPEC 6) --------------------------------- */

/* Scratch space for ciphertext read from and written to the socket. Used only
 * within one libuv callback on the loop thread, so one serves every session. */
static char session_tls_in[SESSION_READ_SIZE];
static char session_tls_out[SESSION_READ_SIZE];

/* Room at the end of s->in, grown by one read's worth up to its cap; 0 when
 * it is full or memory ran out. */
size_t session_in_reserve(struct session *s)
{
	if (s->in.cap - s->in.len < SESSION_READ_SIZE) {
		size_t want = s->in.len + SESSION_READ_SIZE;
		if (want > SESSION_INPUT_MAX)
			want = SESSION_INPUT_MAX;
		if (want > s->in.cap) {
			char *nd = realloc(s->in.data, want);
			if (nd == NULL)
				return 0;
			s->in.data = nd;
			s->in.cap = want;
		}
	}
	return s->in.cap - s->in.len;
}

/* Bytes to the socket: straight away when nothing is queued, and only what the
 * kernel would not take right away is copied into a write request. */
static int session_write_raw(struct session *s, const char *data, size_t len)
{
	size_t done = 0;
	if (s->writes_pending == 0) {
		uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		if (n > 0)
			done = (size_t)n;
		else if (n < 0 && n != UV_EAGAIN)
			return -1;
	}
	if (done == len)
		return 0;
	size_t rest = len - done;
	struct session_write *w = malloc(sizeof *w + rest);
	if (w == NULL)
		return -1;
	w->s = s;
	w->len = rest;
	memcpy(w->data, data + done, rest);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
	if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, session_on_write) < 0) {
		free(w);
		return -1;
	}
	s->writes_pending += rest;
	return 0;
}

/* Plain TCP: libuv reads straight into s->in. */
static void session_plain_alloc(struct session *s, uv_buf_t *out)
{
	size_t room = session_in_reserve(s);
	*out = room ? uv_buf_init(s->in.data + s->in.len, (unsigned)room) : uv_buf_init(NULL, 0);
}

static int session_plain_received(struct session *s, size_t n)
{
	s->in.len += n;
	return 0;
}

static int session_plain_fill(struct session *s)
{
	(void)s;
	return 0;
}

const struct session_conn session_conn_plain = {
    .name = "plain",
    .alloc = session_plain_alloc,
    .received = session_plain_received,
    .fill = session_plain_fill,
    .write = session_write_raw,
};

static void session_tls_established(struct session *s);

/* What OpenSSL wrote (handshake records, alerts, encrypted replies) to the socket. */
static int session_tls_send(struct session *s)
{
	size_t n;
	while ((n = tlsio_take_output(s->tls, session_tls_out, sizeof session_tls_out)) > 0)
		if (session_write_raw(s, session_tls_out, n) < 0)
			return -1;
	return 0;
}

/* Decrypt what TLS holds into s->in while there is room; this is also where
 * the handshake advances. */
static int session_tls_fill(struct session *s)
{
	int rc = 0;
	while (tlsio_input_pending(s->tls)) {
		size_t room = session_in_reserve(s);
		if (room == 0) {
			if (s->in.len < SESSION_INPUT_MAX) {
				log_event(CONFIG_LOG_ERROR, &s->log, "out of memory", NULL);
				rc = -1;
			}
			break;
		}
		ssize_t n = tlsio_read(s->tls, s->in.data + s->in.len, room);
		if (n > 0) {
			s->in.len += (size_t)n;
			continue;
		}
		if (n == TLSIO_EOF) {
			log_event(CONFIG_LOG_DEBUG, &s->log, "tls closed by the client", NULL);
			rc = -1;
		} else if (n == TLSIO_ERROR) {
			if (s->handshaking) {
				stats_lock(&s->srv->stats);
				s->srv->stats.c.tls_handshake_failures++;
				stats_unlock(&s->srv->stats);
			}
			const char *kv[] = {"reason", tlsio_error(s->tls), NULL};
			log_event(CONFIG_LOG_WARN, &s->log,
			          s->handshaking ? "tls handshake failed" : "tls error", kv);
			rc = -1;
		}
		break;
	}
	if (session_tls_send(s) < 0)
		rc = -1;
	if (rc == 0 && s->handshaking && tlsio_established(s->tls))
		session_tls_established(s);
	return rc;
}

/* TLS: libuv reads ciphertext into scratch space, fed to OpenSSL at once. */
static void session_tls_alloc(struct session *s, uv_buf_t *out)
{
	(void)s;
	*out = uv_buf_init(session_tls_in, sizeof session_tls_in);
}

static int session_tls_received(struct session *s, size_t n)
{
	if (tlsio_feed(s->tls, session_tls_in, n) < 0) {
		log_event(CONFIG_LOG_ERROR, &s->log, "out of memory", NULL);
		return -1;
	}
	return session_tls_fill(s);
}

static int session_tls_write(struct session *s, const char *data, size_t len)
{
	/* Nothing is said before the handshake is over: a timeout or a drain in
	 * the middle of it closes the connection instead. */
	if (!tlsio_established(s->tls) || tlsio_write(s->tls, data, len) < 0)
		return -1;
	return session_tls_send(s);
}

static const struct session_conn session_conn_tls = {
    .name = "tls",
    .alloc = session_tls_alloc,
    .received = session_tls_received,
    .fill = session_tls_fill,
    .write = session_tls_write,
};

/* A close_notify, best effort, as the connection closes. */
void session_tls_goodbye(struct session *s)
{
	if (s->tls == NULL || !tlsio_established(s->tls))
		return;
	tlsio_shutdown(s->tls);
	size_t n = tlsio_take_output(s->tls, session_tls_out, sizeof session_tls_out);
	if (n > 0 && s->writes_pending == 0) {
		uv_buf_t b = uv_buf_init(session_tls_out, (unsigned)n);
		uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
	}
}

static void session_on_handshake_timeout(uv_timer_t *t)
{
	struct session *s = t->data;
	stats_lock(&s->srv->stats);
	s->srv->stats.c.tls_handshake_failures++;
	stats_unlock(&s->srv->stats);
	log_event(CONFIG_LOG_INFO, &s->log, "tls handshake timeout", NULL);
	session_close(s);
}

/* From now on the session speaks TLS through t; the handshake must end
 * within its deadline. */
static void session_tls_start(struct session *s, struct tlsio *t)
{
	s->tls = t;
	s->conn = &session_conn_tls;
	s->handshaking = true;
	s->deadline = 0;
	uint64_t ms = s->srv->cfg->command_timeout * 1000;
	if (ms > SESSION_TLS_HANDSHAKE_MAX_MS)
		ms = SESSION_TLS_HANDSHAKE_MAX_MS;
	uv_timer_start(&s->timer, session_on_handshake_timeout, ms, 0);
}

static void session_tls_established(struct session *s)
{
	s->handshaking = false;
	stats_lock(&s->srv->stats);
	s->srv->stats.c.tls_handshakes++;
	stats_unlock(&s->srv->stats);
	uv_timer_stop(&s->timer);
	snprintf(s->tls_version, sizeof s->tls_version, "%s", tlsio_version(s->tls));
	snprintf(s->tls_cipher, sizeof s->tls_cipher, "%s", tlsio_cipher(s->tls));
	const char *kv[] = {"version", s->tls_version, "cipher", s->tls_cipher, NULL};
	log_event(CONFIG_LOG_INFO, &s->log, "tls established", kv);
	if (s->l->tls == LISTENER_TLS_IMPLICIT && !s->greeted)
		session_begin(s); /* RFC 8314: the greeting comes under TLS */
	else
		session_set_deadline(s, uv_now(s->srv->loop) + s->srv->cfg->command_timeout * 1000);
}

/* RFC 3207: the core accepted STARTTLS. The 220 goes out in plaintext, then
 * whatever the client sent behind STARTTLS is thrown away, never executed
 * (CVE-2011-0411), and the session speaks TLS. */
void session_starttls(struct session *s)
{
	struct tlsio *t = s->srv->tls ? tlsio_new(s->srv->tls) : NULL;
	if (t == NULL) {
		log_event(CONFIG_LOG_ERROR, &s->log, "starttls refused: no TLS session available",
		          NULL);
		smtp_proto_resume(s->proto, 454, "4.7.0",
		                  "TLS not available due to temporary reason");
		return;
	}
	smtp_proto_tls_started(s->proto);
	if (s->in.len > 0) {
		char n[24];
		snprintf(n, sizeof n, "%zu", s->in.len);
		const char *kv[] = {"bytes", n, NULL};
		log_event(CONFIG_LOG_WARN, &s->log, "plaintext pipelined after STARTTLS discarded",
		          kv);
		buf_reset(&s->in);
	}
	session_flush(s);
	if (s->closing) {
		tlsio_free(t);
		return;
	}
	session_tls_start(s, t);
}

/* RFC 8314: a listener on SMTPD_TLS_PORTS speaks TLS from the first byte. */
void session_implicit_tls(struct session *s)
{
	struct tlsio *t = s->srv->tls ? tlsio_new(s->srv->tls) : NULL;
	if (t == NULL) {
		log_event(CONFIG_LOG_ERROR, &s->log, "no TLS session available", NULL);
		session_close(s);
		return;
	}
	session_tls_start(s, t);
	/* What followed a PROXY header is already the client's TLS. */
	if (s->in.len > 0) {
		int rc = tlsio_feed(t, s->in.data, s->in.len);
		buf_reset(&s->in);
		if (rc < 0 || session_tls_fill(s) < 0) {
			session_close(s);
			return;
		}
	}
	if (!s->closing)
		session_update_reading(s);
}

/* Write the core's queued replies through the connection. */
void session_flush(struct session *s)
{
	const char *data;
	size_t len = smtp_proto_output(s->proto, &data);
	if (len == 0 || s->closing)
		return;
	s->replied = true;
	int rc = s->conn->write(s, data, len);
	smtp_proto_output_consume(s->proto, len);
	if (rc < 0)
		session_close(s);
}
