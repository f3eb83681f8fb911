/* session: one SMTP connection, adapting libuv to the pure core (smtp_proto).
 *
 * Data flow: libuv reads into s->in; session_pump() feeds it to the core until
 * the core stops (input used up, a verdict pending, closing, or too much
 * output queued), then flushes the core's replies in one write: replies are
 * flushed whenever the input runs dry, as RFC 2920 asks. Reading stops while a
 * verdict is pending (the message is being stored), while output is queued in
 * the kernel's place, and while unconsumed input is held (backpressure), so a
 * session's memory is bounded by configuration, never by what the peer sends.
 *
 * Lifetime: one teardown path, session_close(); the memory is released in the
 * last close callback. Delivery never holds a session pointer (issue 14): the
 * message being received streams into delivery (deliver.h) and its progress and
 * verdict come back by session id (session_find), so a session that closed
 * meanwhile is simply not found.
 *
 * I/O (SPEC 6): the socket is read and written through a connection type,
 * plain TCP or TLS (OpenSSL over memory BIOs, tlsio.c), which implement the
 * same operations, so that STARTTLS switches a live session and nothing above
 * the I/O layer knows which it has (session_io.c). AUTH credentials are checked on the thread
 * pool; a failure is answered after a delay that grows with each one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "auth_limit.h"
#include "buf.h"
#include "log.h"
#include "server.h"
#include "smtp_proto.h"
#include "deliver.h"
#include "readiness.h"
#include "spool.h"

#include "session_priv.h"

static uint64_t session_client_add(struct server *srv, const char *addr, int delta);
static void session_proxy_input(struct session *s);

struct session *session_next(struct session *s)
{
	return s->next;
}

static void session_on_handle_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	if (--s->handles_open > 0)
		return;
	smtp_proto_free(s->proto);
	tlsio_free(s->tls);
	buf_free(&s->in);
	struct server *srv = s->srv;
	free(s);
	server_session_gone(srv);
}

/* The one teardown path. Safe to call more than once. */
void session_close(struct session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	log_event(CONFIG_LOG_INFO, &s->log, "disconnect", NULL);
	struct server *srv = s->srv;
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	if (s->counted) {
		session_client_add(srv, s->client_addr, -1);
		s->counted = false;
	}
	session_id_remove(s);
	/* A message still arriving goes (its tmp/ file too); one already ended is
	 * delivery's, and its verdict will not find this session. */
	deliver_abort(s->msg);
	s->msg = NULL;

	stats_lock(&srv->stats);
	srv->stats.c.connections_active--;
	srv->stats.listeners[s->l->index].connections_active--;
	stats_unlock(&srv->stats);

	/* A check still running frees itself; its answer is not wanted. */
	auth_check_cancel(s->auth_check);
	s->auth_check = NULL;
	session_tls_goodbye(s);
	if (s->auth_timer_init)
		uv_close((uv_handle_t *)&s->auth_timer, session_on_handle_closed);
	uv_close((uv_handle_t *)&s->timer, session_on_handle_closed);
	uv_close((uv_handle_t *)&s->tcp, session_on_handle_closed);
}

static void session_on_timeout(uv_timer_t *t)
{
	struct session *s = t->data;
	log_event(CONFIG_LOG_INFO, &s->log, "timeout", NULL);
	smtp_proto_timeout(s->proto);
	session_pump(s);
}

void session_set_deadline(struct session *s, uint64_t deadline)
{
	uint64_t now = uv_now(s->srv->loop);
	s->deadline = deadline;
	uv_timer_start(&s->timer, session_on_timeout, deadline > now ? deadline - now : 0, 0);
}

/* Deadlines against clients that trickle (issue 4): a command line must be
 * complete within SMTPD_COMMAND_TIMEOUT of the previous reply, however its bytes
 * are spread; in DATA/BDAT each read of N bytes moves the deadline N /
 * SMTPD_MIN_DATA_RATE seconds later, never beyond SMTPD_DATA_TIMEOUT from now
 * (Postfix's smtpd_min_data_rate). While a verdict is pending the client is not
 * the one being waited for: no deadline runs. */
static void session_update_deadline(struct session *s, bool was_data, bool replied, size_t nread)
{
	const struct config *cfg = s->srv->cfg;
	uint64_t now = uv_now(s->srv->loop);
	/* The handshake has its own deadline (session_tls_start). */
	if (s->handshaking)
		return;
	/* Also while AUTH credentials are checked: we are the slow one. */
	if (s->storing || smtp_proto_closing(s->proto) ||
	    smtp_proto_pending(s->proto) == SMTP_WAIT_AUTH) {
		uv_timer_stop(&s->timer);
		s->deadline = 0;
		return;
	}
	if (smtp_proto_in_data(s->proto)) {
		uint64_t cap = now + cfg->data_timeout * 1000;
		if (!was_data || s->deadline == 0) {
			session_set_deadline(s, cap);
		} else if (nread > 0) {
			uint64_t d = s->deadline + nread * 1000 / cfg->min_data_rate;
			session_set_deadline(s, d < cap ? d : cap);
		}
		return;
	}
	if (replied || was_data || s->deadline == 0)
		session_set_deadline(s, now + cfg->command_timeout * 1000);
}

void session_on_write(uv_write_t *req, int status)
{
	struct session_write *w = (struct session_write *)req;
	struct session *s = w->s;
	s->writes_pending -= w->len;
	free(w);
	if (s->closing)
		return;
	if (status < 0) {
		session_close(s);
		return;
	}
	session_pump(s);
}

/* ---- AUTH (SPEC 6) ------------------------------------------------------- */

static void session_on_auth_delay(uv_timer_t *t)
{
	struct session *s = t->data;
	s->auth_busy = false;
	if (s->auth_refused != NULL)
		smtp_proto_resume(s->proto, 454, "4.7.0", s->auth_refused);
	else
		smtp_proto_resume(s->proto, 535, "5.7.8", "Authentication credentials invalid");
	s->auth_refused = NULL;
	session_pump(s);
}

/* A 454 waits as long as a first failure's 535: answered at once, a refusal
 * turns a flood into a tight reconnect loop that costs more than the checks
 * it was refused (bench/auth_storm.py, RESULTS.md section 8). */
static void session_auth_refuse_later(struct session *s, const char *text)
{
	if (!s->auth_timer_init) {
		uv_timer_init(s->srv->loop, &s->auth_timer);
		s->auth_timer.data = s;
		s->auth_timer_init = true;
		s->handles_open++;
	}
	s->auth_refused = text;
	uv_timer_start(&s->auth_timer, session_on_auth_delay, SESSION_AUTH_DELAY_MS, 0);
}

/* The check came back from the thread pool. Passwords and the names of
 * failed attempts are not logged (SPEC 7). */
static void session_auth_checked(void *ctx, bool ok)
{
	struct session *s = ctx;
	s->auth_check = NULL;
	const char *mech = smtp_proto_auth_mechanism(s->proto);
	if (ok) {
		const char *kv[] = {"user", smtp_proto_auth_username(s->proto), "mechanism", mech,
		                    NULL};
		log_event(CONFIG_LOG_INFO, &s->log, "authenticated", kv);
		if (s->srv->auth_limit != NULL)
			auth_limit_success(s->srv->auth_limit, s->client_addr);
		s->auth_busy = false;
		smtp_proto_resume(s->proto, 235, "2.7.0", "Authentication successful");
		session_pump(s);
		return;
	}
	if (s->srv->auth_limit != NULL &&
	    auth_limit_failure(s->srv->auth_limit, s->client_addr, uv_now(s->srv->loop)))
		log_event(CONFIG_LOG_WARN, &s->log, "AUTH blocked for this address", NULL);
	unsigned shift = s->auth_failures < SESSION_AUTH_DELAY_SHIFTS ? s->auth_failures
	                                                              : SESSION_AUTH_DELAY_SHIFTS;
	uint64_t ms = (uint64_t)SESSION_AUTH_DELAY_MS << shift;
	s->auth_failures++;
	char n[16], d[24];
	snprintf(n, sizeof n, "%u", s->auth_failures);
	snprintf(d, sizeof d, "%llu", (unsigned long long)ms);
	const char *kv[] = {"mechanism", mech, "failures", n, "delay_ms", d, NULL};
	log_event(CONFIG_LOG_WARN, &s->log, "authentication failed", kv);
	stats_lock(&s->srv->stats);
	s->srv->stats.c.auth_failures++;
	stats_unlock(&s->srv->stats);
	if (!s->auth_timer_init) {
		uv_timer_init(s->srv->loop, &s->auth_timer);
		s->auth_timer.data = s;
		s->auth_timer_init = true;
		s->handles_open++;
	}
	uv_timer_start(&s->auth_timer, session_on_auth_delay, ms, 0);
}

/* SMTP_WAIT_AUTH: verify the credentials off the loop (crypt(3) is slow by
 * design). */
static void session_auth_start(struct session *s)
{
	size_t len;
	const char *pass = smtp_proto_auth_password(s->proto, &len);
	s->auth_busy = true;
	if (s->srv->cfg->auth == CONFIG_AUTH_ANY) { /* any credentials, no check */
		session_auth_checked(s, true);
		return;
	}
	/* Too many failures from this address, over all its sessions (issue 13):
	 * refused before any password is checked. */
	uint64_t wait_ms =
	    s->srv->auth_limit != NULL
	        ? auth_limit_blocked(s->srv->auth_limit, s->client_addr, uv_now(s->srv->loop))
	        : 0;
	if (wait_ms > 0) {
		char w[24];
		snprintf(w, sizeof w, "%llu", (unsigned long long)(wait_ms + 999) / 1000);
		const char *kv[] = {"retry_after_s", w, NULL};
		log_event(CONFIG_LOG_WARN, &s->log, "AUTH refused: too many failures", kv);
		stats_lock(&s->srv->stats);
		s->srv->stats.c.auth_blocked++;
		stats_unlock(&s->srv->stats);
		session_auth_refuse_later(s, "Too many authentication failures, try again later");
		return;
	}
	if (s->srv->users != NULL)
		s->auth_check = auth_check_start(s->srv->loop, s->srv->users,
		                                 smtp_proto_auth_username(s->proto),
		                                 pass ? pass : "", len, session_auth_checked, s);
	if (s->auth_check == NULL) {
		/* The checks' queue is full (or out of memory). */
		log_event(CONFIG_LOG_WARN, &s->log, "authentication unavailable", NULL);
		session_auth_refuse_later(s, "Temporary authentication failure");
	}
}

/* One turn of the session: feed what we hold to the core (nread bytes of it
 * just arrived), act on what it asks, flush its replies, move the deadline,
 * and decide whether to read more. */
static void session_pump_read(struct session *s, size_t nread)
{
	if (s->closing || s->pumping || s->proxy_wait)
		return;
	s->pumping = true;
	bool was_data = smtp_proto_in_data(s->proto);
	bool failed = false;
	/* Draining (SPEC 7): once its transaction is over a session takes no more
	 * commands, so a client pipelining its next message behind the final dot
	 * gets 421 for it instead of starting a transaction the drain must wait for. */
	while (!s->closing && !smtp_proto_closing(s->proto) &&
	       smtp_proto_pending(s->proto) == SMTP_WAIT_NONE &&
	       !(s->draining && !smtp_proto_in_transaction(s->proto))) {
		/* TLS may hold input it could not decrypt while s->in was full. */
		if (s->conn->fill(s) < 0) {
			failed = true;
			break;
		}
		if (s->in.len == 0)
			break;
		/* A message's bytes go no faster than its writer takes them
		 * (issue 14: memory bounded by a chunk, not by the message). */
		size_t feed = s->in.len;
		if (s->msg != NULL && smtp_proto_in_data(s->proto)) {
			size_t room = deliver_room(s->msg);
			if (room == 0)
				break; /* session_on_room pumps again */
			if (room < feed)
				feed = room;
		}
		size_t n = smtp_proto_feed(s->proto, s->in.data, feed);
		buf_consume(&s->in, n);
		enum smtp_wait wait = smtp_proto_pending(s->proto);
		if (wait == SMTP_WAIT_EOM && !s->storing) {
			session_end_of_message(s);
			continue;
		}
		if (wait == SMTP_WAIT_STARTTLS) {
			session_starttls(s);
			continue;
		}
		if (wait == SMTP_WAIT_AUTH && !s->auth_busy) {
			session_auth_start(s);
			continue;
		}
		if (n == 0)
			break; /* output above the high-water mark: flush first */
		const char *unused;
		if (smtp_proto_output(s->proto, &unused) >= SMTP_PROTO_OUTPUT_HIGH)
			break;
	}
	s->pumping = false;
	if (failed)
		session_close(s);
	if (s->closing)
		return;
	if (s->draining && !smtp_proto_closing(s->proto) && !smtp_proto_in_transaction(s->proto) &&
	    smtp_proto_pending(s->proto) == SMTP_WAIT_NONE)
		smtp_proto_shutdown(s->proto);
	s->replied = false;
	session_flush(s);
	if (s->closing)
		return;
	if (smtp_proto_closing(s->proto)) {
		uv_timer_stop(&s->timer);
		/* Close once the last reply has left. */
		if (s->writes_pending == 0)
			session_close(s);
		else if (s->reading) {
			uv_read_stop((uv_stream_t *)&s->tcp);
			s->reading = false;
		}
		return;
	}
	if (s->greeted)
		session_update_deadline(s, was_data, s->replied, nread);
	session_update_reading(s);
}

/* Feed what we hold to the core, act on what it asks, flush its replies, and
 * decide whether to read more. */
void session_pump(struct session *s)
{
	session_pump_read(s, 0);
}

static void session_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
	(void)suggested;
	struct session *s = h->data;
	s->conn->alloc(s, out);
}

static void session_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	(void)b;
	struct session *s = stream->data;
	if (nread == UV_ENOBUFS) {
		smtp_proto_abort(s->proto, "Error: out of memory");
		session_pump(s);
		return;
	}
	if (nread < 0) {
		session_close(s);
		return;
	}
	if (nread == 0)
		return;
	size_t before = s->in.len;
	if (s->conn->received(s, (size_t)nread) < 0) {
		session_close(s);
		return;
	}
	if (s->closing)
		return;
	if (s->proxy_wait)
		session_proxy_input(s);
	else
		session_pump_read(s, s->in.len > before ? s->in.len - before : 0);
	/* An idle session keeps no read buffer (issue 8: small idle sessions). */
	if (s->in.len == 0 && s->in.cap > 0 && !s->closing) {
		buf_free(&s->in);
	}
}

void session_update_reading(struct session *s)
{
	const char *unused;
	bool want = !s->closing && !smtp_proto_closing(s->proto) &&
	            smtp_proto_pending(s->proto) == SMTP_WAIT_NONE && !s->storing &&
	            !(s->msg != NULL && deliver_room(s->msg) == 0) &&
	            s->in.len < SESSION_INPUT_MAX && s->writes_pending < SMTP_PROTO_OUTPUT_HIGH &&
	            smtp_proto_output(s->proto, &unused) < SMTP_PROTO_OUTPUT_HIGH;
	if (want && !s->reading) {
		if (uv_read_start((uv_stream_t *)&s->tcp, session_alloc, session_on_read) == 0)
			s->reading = true;
	} else if (!want && s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
}

/* Issue 13: every refused command is logged at info with its verb and reply,
 * never its arguments (an AUTH payload stays out), SESSION_REFUSALS_LOGGED per
 * session at most, so a client cannot flood the log. */
#define SESSION_REFUSALS_LOGGED 20
static void session_log_refusal(struct session *s, const char *reply)
{
	if (s->refusals_logged > SESSION_REFUSALS_LOGGED)
		return;
	if (s->refusals_logged++ == SESSION_REFUSALS_LOGGED) {
		log_event(CONFIG_LOG_INFO, &s->log, "further refused commands not logged", NULL);
		return;
	}
	char r[512];
	snprintf(r, sizeof r, "%.*s", (int)strcspn(reply ? reply : "", "\r\n"), reply ? reply : "");
	const char *kv[] = {"command", smtp_proto_verb(s->proto), "reply", r, NULL};
	log_event(CONFIG_LOG_INFO, &s->log, "command refused", kv);
}

static void session_event(void *ctx, const struct smtp_event *ev)
{
	struct session *s = ctx;
	struct server *srv = s->srv;
	switch (ev->type) {
	case SMTP_EV_REJECTED: {
		/* ev->arg is the reply: "552 5.3.4 ..." */
		stats_rejected(&srv->stats, ev->arg ? (unsigned)strtoul(ev->arg, NULL, 10) : 500);
		const char *kv[] = {"reply", ev->arg ? ev->arg : "", NULL};
		log_event(CONFIG_LOG_INFO, &s->log, "message rejected", kv);
		deliver_abort(s->msg);
		s->msg = NULL;
		break;
	}
	case SMTP_EV_RSET:
		deliver_abort(s->msg);
		s->msg = NULL;
		break;
	case SMTP_EV_RCPT_REFUSED:
		/* SPEC 8: counted by reason; the SMTP_EV_PROTOCOL that follows
		 * logs the refusal. */
		stats_lock(&srv->stats);
		if (ev->arg != NULL && strcmp(ev->arg, "relay") == 0)
			srv->stats.c.rcpt_refused_relay++;
		else
			srv->stats.c.rcpt_refused_unknown++;
		stats_unlock(&srv->stats);
		break;
	case SMTP_EV_PROTOCOL:
		session_log_refusal(s, ev->arg);
		break;
	/* Accepted commands: debug only (they were logged as "command refused"
	 * with their argument, using up the refusal budget). */
	case SMTP_EV_HELO:
	case SMTP_EV_MAIL:
	case SMTP_EV_RCPT:
	case SMTP_EV_DATA:
	case SMTP_EV_QUIT:
	case SMTP_EV_TOO_MANY_ERRORS:
		if (log_enabled(CONFIG_LOG_DEBUG)) {
			static const char *const names[] = {
			    [SMTP_EV_HELO] = "helo",
			    [SMTP_EV_MAIL] = "mail",
			    [SMTP_EV_RCPT] = "rcpt",
			    [SMTP_EV_DATA] = "data",
			    [SMTP_EV_RSET] = "rset",
			    [SMTP_EV_REJECTED] = "rejected",
			    [SMTP_EV_QUIT] = "quit",
			    [SMTP_EV_PROTOCOL] = "protocol error",
			    [SMTP_EV_TOO_MANY_ERRORS] = "too many errors",
			};
			const char *kv[] = {"arg", ev->arg ? ev->arg : "", NULL};
			log_event(CONFIG_LOG_DEBUG, &s->log, names[ev->type], kv);
		}
		break;
	}
}

static void session_on_greet_delay(uv_timer_t *t)
{
	struct session *s = t->data;
	if (!s->greeted && !smtp_proto_closing(s->proto)) {
		s->greeted = true;
		smtp_proto_greet(s->proto);
	}
	session_pump(s);
}

/* Live sessions per client address, for SMTPD_MAX_CONNECTIONS_PER_CLIENT. A
 * walk over every session per accept was 62% of the CPU while 10,000 sessions
 * connected (bench/RESULTS.md); a hash keeps the accept O(1). A session is
 * counted under s->client_addr from accept until session_close (s->counted). */
#define SESSION_CLIENT_BUCKETS 4096

struct session_client {
	struct session_client *next;
	uint64_t n;
	char addr[ENDPOINT_TEXT_MAX];
};

static size_t session_client_hash(const char *addr)
{
	/* FNV-1a */
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % SESSION_CLIENT_BUCKETS);
}

/* Add delta (+1 or -1) to addr's count and return the new count. Out of
 * memory: 0, i.e. the limit is not enforced for that client (a session is never
 * refused for our own shortage). */
static uint64_t session_client_add(struct server *srv, const char *addr, int delta)
{
	if (srv->client_buckets == NULL) {
		if (delta < 0)
			return 0;
		srv->client_buckets = calloc(SESSION_CLIENT_BUCKETS, sizeof *srv->client_buckets);
		if (srv->client_buckets == NULL)
			return 0;
	}
	struct session_client **link = &srv->client_buckets[session_client_hash(addr)];
	while (*link && strcmp((*link)->addr, addr) != 0)
		link = &(*link)->next;
	struct session_client *c = *link;
	if (c == NULL) {
		if (delta < 0)
			return 0;
		c = calloc(1, sizeof *c);
		if (c == NULL)
			return 0;
		snprintf(c->addr, sizeof c->addr, "%s", addr);
		*link = c;
	}
	if (delta < 0) {
		if (--c->n == 0) {
			*link = c->next;
			free(c);
			return 0;
		}
		return c->n;
	}
	return ++c->n;
}

static uint64_t session_client_count(struct server *srv, const char *addr)
{
	if (srv->client_buckets == NULL)
		return 0;
	for (struct session_client *c = srv->client_buckets[session_client_hash(addr)]; c;
	     c = c->next)
		if (strcmp(c->addr, addr) == 0)
			return c->n;
	return 0;
}

/* Refuse a connection over a limit: 421 4.7.0 then close, before any greeting. */
static void session_refuse(struct session *s, enum stats_refusal reason, const char *why)
{
	char line[300];
	int n =
	    snprintf(line, sizeof line, "421 4.7.0 %s Error: %s\r\n", s->srv->cfg->hostname, why);
	uv_buf_t b = uv_buf_init(line, (unsigned)n);
	/* A TLS port's client would read plaintext as a broken TLS record. */
	if (s->l->tls != LISTENER_TLS_IMPLICIT)
		uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
	stats_refusal(&s->srv->stats, reason);
	const char *kv[] = {"reason", why, NULL};
	log_event(CONFIG_LOG_WARN, &s->log, "connection refused", kv);
}

/* Has the client sent anything yet? A non-blocking peek, consuming nothing. */
static bool session_input_waiting(struct session *s)
{
	uv_os_fd_t fd;
	char c;
	if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0)
		return false;
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* The SMTP conversation starts: greet now, or after SMTPD_GREET_DELAY. On a
 * TLS port the handshake comes first, and then this again. */
void session_begin(struct session *s)
{
	struct server *srv = s->srv;
	if (s->l->tls == LISTENER_TLS_IMPLICIT && s->tls == NULL) {
		session_implicit_tls(s);
		return;
	}
	if (srv->draining) {
		smtp_proto_shutdown(s->proto);
		session_pump(s);
		return;
	}
	if (srv->cfg->greet_delay > 0) {
		/* Read during the delay: a client that talks first is an early
		 * talker and the core answers it 554 5.5.0 (Postfix's pregreet).
		 * Input already held (what followed a PROXY header) is judged now. */
		uv_timer_start(&s->timer, session_on_greet_delay, srv->cfg->greet_delay * 1000, 0);
		session_pump(s);
		return;
	}
	/* No delay, but input already here before our greeting (held after a
	 * PROXY header, or waiting in the socket): an early talker all the same
	 * (SPEC 4, issue 13); the core, still before greet(), answers 554 5.5.0. */
	if (s->in.len > 0 || (s->tls == NULL && session_input_waiting(s))) {
		session_pump(s);
		return;
	}
	s->greeted = true;
	smtp_proto_greet(s->proto);
	session_pump(s);
}

/* ---- PROXY protocol (SPEC 7) -------------------------------------------- */

/* A connection that never became an SMTP session: no reply (the peer has not
 * shown it is a load balancer we trust, or has failed to speak its protocol),
 * counted as refused, logged with the reason. */
static void session_proxy_fail(struct session *s, enum stats_refusal reason, const char *why)
{
	stats_refusal(&s->srv->stats, reason);
	const char *kv[] = {"reason", why, NULL};
	log_event(CONFIG_LOG_WARN, &s->log, "connection refused", kv);
	session_close(s);
}

static void session_on_proxy_timeout(uv_timer_t *t)
{
	session_proxy_fail(t->data, STATS_REFUSED_PROXY_TIMEOUT, "no PROXY header within 5 s");
}

/* A PROXY listener: only SMTPD_PROXY_TRUSTED peers may speak, and they must
 * send the header within PROXY_PROTO_TIMEOUT_MS; nothing is sent before it. */
static void session_proxy_begin(struct session *s)
{
	struct server *srv = s->srv;
	struct sockaddr_storage peer;
	int plen = sizeof peer;
	snprintf(s->peer_text, sizeof s->peer_text, "%s", s->client_text);
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&peer, &plen) != 0 ||
	    !proxy_proto_cidr_match(srv->proxy_trusted, srv->nproxy_trusted,
	                            (struct sockaddr *)&peer)) {
		session_proxy_fail(s, STATS_REFUSED_PROXY_UNTRUSTED,
		                   "peer not in SMTPD_PROXY_TRUSTED");
		return;
	}
	s->proxy_wait = true;
	uv_timer_start(&s->timer, session_on_proxy_timeout, PROXY_PROTO_TIMEOUT_MS, 0);
	session_update_reading(s);
}

static void session_set_client_text(struct session *s)
{
	if (strchr(s->client_addr, ':'))
		snprintf(s->client_text, sizeof s->client_text, "[%s]:%u", s->client_addr,
		         s->client_port);
	else
		snprintf(s->client_text, sizeof s->client_text, "%s:%u", s->client_addr,
		         s->client_port);
}

static uint16_t session_port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
	                                       : ((const struct sockaddr_in *)ss)->sin_port);
}

/* Bytes arrived while waiting for the header. Whatever follows a complete
 * header stays in s->in for the SMTP core. */
static void session_proxy_input(struct session *s)
{
	struct server *srv = s->srv;
	struct proxy_proto_header h;
	int n = proxy_proto_parse(s->in.data, s->in.len, &h);
	if (n == PROXY_PROTO_NEED_MORE)
		return;
	if (n < 0) {
		session_proxy_fail(s, STATS_REFUSED_PROXY_INVALID, "invalid PROXY header");
		return;
	}
	buf_consume(&s->in, (size_t)n);
	s->proxy_wait = false;
	uv_timer_stop(&s->timer);
	/* LOCAL (a load balancer's own health check) and UNKNOWN carry no client:
	 * the connection's own addresses stay, as the specification says. */
	if (!h.local) {
		s->proxied = true;
		endpoint_format_addr((struct sockaddr *)&h.src, s->proxy_src, sizeof s->proxy_src);
		s->proxy_src_port = session_port_of(&h.src);
		endpoint_format_addr((struct sockaddr *)&h.dst, s->proxy_dst, sizeof s->proxy_dst);
		s->proxy_dst_port = session_port_of(&h.dst);
		if (s->counted)
			session_client_add(srv, s->client_addr, -1);
		snprintf(s->client_addr, sizeof s->client_addr, "%s", s->proxy_src);
		if (s->counted)
			session_client_add(srv, s->client_addr, +1);
		s->client_port = s->proxy_src_port;
		session_set_client_text(s);
	}
	const char *kv[] = {"proxy",      h.version == 1 ? "v1" : "v2",   "proxy_peer",
	                    s->peer_text, h.local ? "proxy_local" : NULL, "true",
	                    NULL};
	log_event(CONFIG_LOG_INFO, &s->log, "connect", kv);
	/* The per-client limit of session_accept, now that the client is known;
	 * the count includes this session. */
	if (session_client_count(srv, s->client_addr) > srv->cfg->max_connections_per_client) {
		session_refuse(s, STATS_REFUSED_PER_CLIENT,
		               "too many connections from your address");
		session_close(s);
		return;
	}
	session_begin(s);
}

void session_accept(struct listener *l)
{
	struct server *srv = l->srv;
	struct session *s = listener_session_alloc(sizeof *s);
	if (s == NULL) {
		listener_refuse_oom(l); /* libuv polls the listener again only after uv_accept */
		return;
	}
	s->srv = srv;
	s->l = l;
	s->conn = &session_conn_plain;
	buf_init(&s->in, SESSION_INPUT_MAX);
	uv_tcp_init(srv->loop, &s->tcp);
	uv_timer_init(srv->loop, &s->timer);
	s->handles_open = 2;
	s->tcp.data = s;
	s->timer.data = s;
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&s->tcp) < 0) {
		s->closing = true;
		uv_close((uv_handle_t *)&s->timer, session_on_handle_closed);
		uv_close((uv_handle_t *)&s->tcp, session_on_handle_closed);
		srv->nsessions++; /* balanced by server_session_gone */
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);
	s->sid = ++srv->next_session_id;
	snprintf(s->id, sizeof s->id, "%08llx", (unsigned long long)s->sid);
	session_id_add(s);
	struct sockaddr_storage peer;
	int plen = sizeof peer;
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&peer, &plen) == 0) {
		endpoint_format_addr((struct sockaddr *)&peer, s->client_addr,
		                     sizeof s->client_addr);
		s->client_port =
		    ntohs(peer.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&peer)->sin6_port
		                                     : ((struct sockaddr_in *)&peer)->sin_port);
	} else {
		snprintf(s->client_addr, sizeof s->client_addr, "unknown");
	}
	snprintf(s->local_addr, sizeof s->local_addr, "%s", l->ep->address);
	s->local_port = l->ep->port;
	if (l->ep->any) {
		struct sockaddr_storage self;
		int slen = sizeof self;
		if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&self, &slen) == 0)
			endpoint_format_addr((struct sockaddr *)&self, s->local_addr,
			                     sizeof s->local_addr);
	}
	session_set_client_text(s);
	s->log.session = s->id;
	s->log.client = s->client_text;
	s->log.listener = l->ep->text;

	/* Sessions of this client before this one. */
	uint64_t same_client = session_client_add(srv, s->client_addr, +1);
	same_client = same_client ? same_client - 1 : 0;
	s->counted = true;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	stats_lock(&srv->stats);
	srv->stats.c.connections_active++;
	srv->stats.c.connections_total++;
	srv->stats.listeners[l->index].connections_active++;
	srv->stats.listeners[l->index].connections_total++;
	stats_unlock(&srv->stats);
	/* Behind a load balancer the connect line waits for the client's address. */
	if (!l->proxy)
		log_event(CONFIG_LOG_INFO, &s->log, "connect", NULL);

	struct smtp_proto_config pc = {
	    .hostname = srv->cfg->hostname,
	    .max_message_size = srv->cfg->max_message_size,
	    .max_recipients = (unsigned)srv->cfg->max_recipients,
	    .max_line_length = srv->cfg->max_line_length,
	    .bare_lf_reject = srv->cfg->bare_lf == CONFIG_BARE_LF_REJECT,
	    /* SPEC 6 */
	    .tls_available = l->tls == LISTENER_TLS_STARTTLS,
	    .tls_active = l->tls == LISTENER_TLS_IMPLICIT,
	    .tls_required =
	        l->tls == LISTENER_TLS_STARTTLS && srv->cfg->tls == CONFIG_MODE_REQUIRED,
	    .auth = srv->cfg->auth == CONFIG_MODE_REQUIRED   ? SMTP_AUTH_REQUIRED
	            : srv->cfg->auth == CONFIG_MODE_OPTIONAL ? SMTP_AUTH_OPTIONAL
	            : srv->cfg->auth == CONFIG_AUTH_ANY      ? SMTP_AUTH_OPTIONAL
	                                                     : SMTP_AUTH_OFF,
	    .auth_insecure = srv->cfg->auth_insecure,
	    .storage_low = &srv->spool_low, /* SMTPD_SPOOL_MIN_FREE: 452 4.3.1 at MAIL */
	    .policy = &srv->policy,         /* SPEC 8: recipients, swapped by a reload */
	};
	struct smtp_proto_sink sink = {.ctx = s, .body = session_body, .event = session_event};
	s->proto = smtp_proto_new(&pc, &sink);
	if (s->proto == NULL) {
		session_refuse(s, STATS_REFUSED_OUT_OF_MEMORY, "out of memory");
		session_close(s);
		return;
	}
	if (srv->nsessions > srv->max_connections) {
		session_refuse(s, STATS_REFUSED_MAX_CONNECTIONS, "too many connections");
		session_close(s);
		return;
	}
	/* On a PROXY listener the peer is the load balancer: the client is known,
	 * and limited, once its header has arrived (session_proxy_input). */
	if (!l->proxy && same_client >= srv->cfg->max_connections_per_client) {
		session_refuse(s, STATS_REFUSED_PER_CLIENT,
		               "too many connections from your address");
		session_close(s);
		return;
	}
	if (l->proxy) {
		session_proxy_begin(s);
		return;
	}
	session_begin(s);
}

void session_drain(struct session *s, bool force)
{
	if (s->closing)
		return;
	/* Still waiting for its PROXY header: no SMTP session to end yet. */
	if (s->proxy_wait) {
		session_close(s);
		return;
	}
	s->draining = true;
	if (force) {
		if (!smtp_proto_closing(s->proto))
			smtp_proto_shutdown(s->proto);
		session_flush(s);
		session_close(s);
		return;
	}
	session_pump(s);
}
