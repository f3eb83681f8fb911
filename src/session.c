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
 * last close callback, and not before a storage job that still points at the
 * session has come back (s->storing). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "server.h"
#include "smtp_proto.h"
#include "deliver.h"
#include "spool.h"

/* Bytes read per read call, and the most unconsumed input a session holds. */
#define SESSION_READ_SIZE 16384
#define SESSION_INPUT_MAX 65536

struct session_write {
	uv_write_t req;
	struct session *s;
	size_t len;
	char data[];
};

struct session {
	struct server *srv;
	struct listener *l;
	struct session *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	int handles_open; /* tcp and timer: freed when both are closed */

	struct smtp_proto *proto;
	struct buf in;   /* received, not yet consumed by the core */
	struct buf body; /* the message being received, LF line ends */

	char id[16];
	char client_addr[ENDPOINT_TEXT_MAX];
	uint16_t client_port;
	char client_text[ENDPOINT_TEXT_MAX + 8];
	/* Where the connection arrived: the listener's address, or for an ANY
	 * listener the address the client actually connected to (SPEC 2: usable as
	 * a condition). */
	char local_addr[ENDPOINT_TEXT_MAX];
	uint16_t local_port;
	struct log_ctx log;

	size_t writes_pending; /* bytes handed to uv_write, not yet written */
	bool reading;
	bool closing;      /* session_close called */
	bool storing;      /* a delivery job points at this session */
	bool pumping;      /* inside session_pump (no re-entry) */
	bool replied;      /* output was flushed since the deadline was last set */
	uint64_t deadline; /* loop time (ms) the timer fires at; 0 = none */
	bool greeted;
	bool draining; /* tell 421 at the end of the transaction */
};

static void session_pump(struct session *s);
static void session_close(struct session *s);
static void session_update_reading(struct session *s);

struct session *session_next(struct session *s)
{
	return s->next;
}

static void session_on_handle_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	if (--s->handles_open > 0 || s->storing)
		return;
	smtp_proto_free(s->proto);
	buf_free(&s->in);
	buf_free(&s->body);
	struct server *srv = s->srv;
	free(s);
	server_session_gone(srv);
}

/* The one teardown path. Safe to call more than once. */
static void session_close(struct session *s)
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

	stats_lock(&srv->stats);
	srv->stats.c.connections_active--;
	srv->stats.listeners[s->l->index].connections_active--;
	stats_unlock(&srv->stats);

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

static void session_set_deadline(struct session *s, uint64_t deadline)
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
	if (s->storing || smtp_proto_closing(s->proto)) {
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

static void session_on_write(uv_write_t *req, int status)
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

/* Write the core's queued replies: first straight to the socket, and only what
 * the kernel would not take right away is copied into a write request. */
static void session_flush(struct session *s)
{
	const char *data;
	size_t len = smtp_proto_output(s->proto, &data);
	if (len == 0 || s->closing)
		return;
	s->replied = true;
	size_t done = 0;
	if (s->writes_pending == 0) {
		uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		if (n > 0)
			done = (size_t)n;
		else if (n < 0 && n != UV_EAGAIN) {
			smtp_proto_output_consume(s->proto, len);
			session_close(s);
			return;
		}
	}
	if (done < len) {
		size_t rest = len - done;
		struct session_write *w = malloc(sizeof *w + rest);
		if (w == NULL) {
			smtp_proto_output_consume(s->proto, len);
			session_close(s);
			return;
		}
		w->s = s;
		w->len = rest;
		memcpy(w->data, data + done, rest);
		uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
		if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, session_on_write) < 0) {
			free(w);
			smtp_proto_output_consume(s->proto, len);
			session_close(s);
			return;
		}
		s->writes_pending += rest;
	}
	smtp_proto_output_consume(s->proto, len);
}

/* The verdict on a message: count it, log it, answer it. Pumps only when it
 * came back asynchronously; a synchronous verdict (discard) returns into the
 * pump loop that started it, which goes on by itself. */
static void session_delivered(struct deliver_job *job, const struct deliver_verdict *v)
{
	struct session *s = job->ctx;
	struct server *srv = s->srv;
	s->storing = false;

	stats_lock(&srv->stats);
	if (v->code == 250) {
		srv->stats.c.messages_accepted++;
		srv->stats.c.messages_bytes += job->env.size;
		srv->stats.listeners[s->l->index].messages_accepted++;
	} else {
		srv->stats.c.messages_rejected++;
	}
	if (v->err == 0 && v->stored)
		srv->stats.c.spool_writable = true;
	if (v->err != 0) {
		srv->stats.c.store_failures++;
		if (v->err == -EROFS || v->err == -ENOSPC || v->err == -EACCES || v->err == -EDQUOT)
			srv->stats.c.spool_writable = false;
	}
	stats_unlock(&srv->stats);

	char size[24];
	snprintf(size, sizeof size, "%llu", (unsigned long long)job->env.size);
	if (v->code == 250) {
		const char *kv[] = {"id", job->id, "from", job->env.mail_from, "size", size, NULL};
		log_event(CONFIG_LOG_INFO, &s->log,
		          v->stored ? "message stored" : "message discarded", kv);
	} else {
		char reply[16];
		snprintf(reply, sizeof reply, "%u", v->code);
		const char *kv[] = {"id",
		                    job->id,
		                    "reply",
		                    reply,
		                    "text",
		                    v->text,
		                    v->err ? "error" : NULL,
		                    v->err ? strerror(-v->err) : NULL,
		                    NULL};
		log_event(v->err ? CONFIG_LOG_ERROR : CONFIG_LOG_INFO, &s->log,
		          "message not accepted", kv);
	}

	if (!s->closing) {
		smtp_proto_resume(s->proto, v->code, v->enhanced, v->text);
		buf_reset(&s->body);
	}
	deliver_job_free(job);

	if (s->closing) {
		/* The client went away (or the drain closed it) while we stored: the
		 * 250 was never sent, so the client retries. Finish the teardown that
		 * waited for this job. */
		if (s->handles_open == 0) {
			s->handles_open = 1;
			session_on_handle_closed((uv_handle_t *)&s->tcp);
		}
		return;
	}
	if (!s->pumping)
		session_pump(s);
}

/* The core has a complete message: hand it to delivery, resume on its verdict. */
static void session_end_of_message(struct session *s)
{
	struct server *srv = s->srv;
	size_t n = smtp_proto_rcpt_count(s->proto);
	struct deliver_job *job = deliver_job_new(srv, n);
	if (job == NULL) {
		smtp_proto_resume(s->proto, 451, "4.3.0", "Error: out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++)
		job->rcpt[i] = smtp_proto_rcpt(s->proto, i);
	struct spool_envelope *e = &job->env;
	e->mail_from = smtp_proto_mail_from(s->proto);
	e->helo = smtp_proto_helo(s->proto);
	e->esmtp = smtp_proto_esmtp(s->proto);
	e->client_addr = s->client_addr;
	e->client_port = s->client_port;
	e->local_addr = s->local_addr;
	e->local_port = s->local_port;
	e->size = smtp_proto_message_size(s->proto);
	clock_gettime(CLOCK_REALTIME, &e->received_at);
	e->hostname = srv->cfg->hostname;
	job->body = s->body.data;
	job->len = s->body.len;
	job->done = session_delivered;
	job->ctx = s;
	s->storing = true;
	deliver_start(job);
}

/* One turn of the session: feed what we hold to the core (nread bytes of it
 * just arrived), act on what it asks, flush its replies, move the deadline,
 * and decide whether to read more. */
static void session_pump_read(struct session *s, size_t nread)
{
	if (s->closing || s->pumping)
		return;
	s->pumping = true;
	bool was_data = smtp_proto_in_data(s->proto);
	while (!smtp_proto_closing(s->proto) && smtp_proto_pending(s->proto) == SMTP_WAIT_NONE &&
	       s->in.len > 0) {
		size_t n = smtp_proto_feed(s->proto, s->in.data, s->in.len);
		buf_consume(&s->in, n);
		if (smtp_proto_pending(s->proto) == SMTP_WAIT_EOM && !s->storing) {
			session_end_of_message(s);
			continue;
		}
		if (n == 0)
			break; /* output above the high-water mark: flush first */
		const char *unused;
		if (smtp_proto_output(s->proto, &unused) >= SMTP_PROTO_OUTPUT_HIGH)
			break;
	}
	s->pumping = false;
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
static void session_pump(struct session *s)
{
	session_pump_read(s, 0);
}

static void session_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
	(void)suggested;
	struct session *s = h->data;
	/* Grow the input buffer by one read's worth, never past its cap. */
	if (s->in.cap - s->in.len < SESSION_READ_SIZE) {
		size_t want = s->in.len + SESSION_READ_SIZE;
		if (want > SESSION_INPUT_MAX)
			want = SESSION_INPUT_MAX;
		char *nd = want > s->in.cap ? realloc(s->in.data, want) : s->in.data;
		if (nd == NULL) {
			*out = uv_buf_init(NULL, 0);
			return;
		}
		s->in.data = nd;
		if (want > s->in.cap)
			s->in.cap = want;
	}
	*out = uv_buf_init(s->in.data + s->in.len, (unsigned)(s->in.cap - s->in.len));
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
	s->in.len += (size_t)nread;
	session_pump_read(s, (size_t)nread);
	/* An idle session keeps no read buffer (issue 8: small idle sessions). */
	if (s->in.len == 0 && s->in.cap > 0 && !s->closing) {
		buf_free(&s->in);
	}
}

static void session_update_reading(struct session *s)
{
	const char *unused;
	bool want = !s->closing && !smtp_proto_closing(s->proto) &&
	            smtp_proto_pending(s->proto) == SMTP_WAIT_NONE && !s->storing &&
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

static int session_body(void *ctx, const char *data, size_t len)
{
	struct session *s = ctx;
	return buf_append(&s->body, data, len) == 0 ? 0 : -1;
}

static void session_event(void *ctx, const struct smtp_event *ev)
{
	struct session *s = ctx;
	struct server *srv = s->srv;
	switch (ev->type) {
	case SMTP_EV_REJECTED: {
		stats_lock(&srv->stats);
		srv->stats.c.messages_rejected++;
		stats_unlock(&srv->stats);
		const char *kv[] = {"reply", ev->arg ? ev->arg : "", NULL};
		log_event(CONFIG_LOG_INFO, &s->log, "message rejected", kv);
		buf_reset(&s->body);
		break;
	}
	case SMTP_EV_RSET:
		buf_reset(&s->body);
		break;
	case SMTP_EV_HELO:
	case SMTP_EV_MAIL:
	case SMTP_EV_RCPT:
	case SMTP_EV_DATA:
	case SMTP_EV_QUIT:
	case SMTP_EV_PROTOCOL:
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

/* Count this client's live sessions (the per-client limit). */
static uint64_t session_count_client(struct server *srv, const char *addr)
{
	uint64_t n = 0;
	for (struct session *o = srv->sessions; o; o = o->next)
		if (strcmp(o->client_addr, addr) == 0)
			n++;
	return n;
}

/* Refuse a connection over a limit: 421 4.7.0 then close, before any greeting. */
static void session_refuse(struct session *s, const char *why)
{
	char line[300];
	int n =
	    snprintf(line, sizeof line, "421 4.7.0 %s Error: %s\r\n", s->srv->cfg->hostname, why);
	uv_buf_t b = uv_buf_init(line, (unsigned)n);
	uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
	stats_lock(&s->srv->stats);
	s->srv->stats.c.connections_refused++;
	stats_unlock(&s->srv->stats);
	const char *kv[] = {"reason", why, NULL};
	log_event(CONFIG_LOG_WARN, &s->log, "connection refused", kv);
}

void session_accept(struct listener *l)
{
	struct server *srv = l->srv;
	struct session *s = calloc(1, sizeof *s);
	if (s == NULL)
		return;
	s->srv = srv;
	s->l = l;
	buf_init(&s->in, SESSION_INPUT_MAX);
	buf_init(&s->body, srv->cfg->max_message_size);
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
	snprintf(s->id, sizeof s->id, "%08llx", (unsigned long long)++srv->next_session_id);
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
	if (strchr(s->client_addr, ':'))
		snprintf(s->client_text, sizeof s->client_text, "[%s]:%u", s->client_addr,
		         s->client_port);
	else
		snprintf(s->client_text, sizeof s->client_text, "%s:%u", s->client_addr,
		         s->client_port);
	s->log.session = s->id;
	s->log.client = s->client_text;
	s->log.listener = l->ep->text;

	uint64_t same_client = session_count_client(srv, s->client_addr);
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
	log_event(CONFIG_LOG_INFO, &s->log, "connect", NULL);

	struct smtp_proto_config pc = {
	    .hostname = srv->cfg->hostname,
	    .max_message_size = srv->cfg->max_message_size,
	    .max_recipients = (unsigned)srv->cfg->max_recipients,
	    .bare_lf_reject = srv->cfg->bare_lf == CONFIG_BARE_LF_REJECT,
	};
	struct smtp_proto_sink sink = {.ctx = s, .body = session_body, .event = session_event};
	s->proto = smtp_proto_new(&pc, &sink);
	if (s->proto == NULL) {
		session_refuse(s, "out of memory");
		session_close(s);
		return;
	}
	if (srv->nsessions > srv->cfg->max_connections) {
		session_refuse(s, "too many connections");
		session_close(s);
		return;
	}
	if (same_client >= srv->cfg->max_connections_per_client) {
		session_refuse(s, "too many connections from your address");
		session_close(s);
		return;
	}
	if (srv->draining) {
		smtp_proto_shutdown(s->proto);
		session_pump(s);
		return;
	}
	if (srv->cfg->greet_delay > 0) {
		/* Read during the delay: a client that talks first is an early
		 * talker and the core answers it 554 5.5.0 (Postfix's pregreet). */
		uv_timer_start(&s->timer, session_on_greet_delay, srv->cfg->greet_delay * 1000, 0);
		session_update_reading(s);
		return;
	}
	s->greeted = true;
	smtp_proto_greet(s->proto);
	session_pump(s);
}

void session_drain(struct session *s, bool force)
{
	if (s->closing)
		return;
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
