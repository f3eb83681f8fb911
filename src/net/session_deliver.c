/* session_deliver: a session's side of the delivery boundary (issue 14).
 *
 * A message's bytes stream from the SMTP core's body sink into delivery
 * (deliver.h) as they arrive; at the end of the data the message becomes
 * delivery's. Delivery never holds a session pointer: what it reports (room for
 * more bytes, the verdict) comes back here with the session's id, and a session
 * that closed meanwhile is simply not found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deliver.h"
#include "readiness.h"
#include "smtp_proto.h"

#include "session_priv.h"

/* ---- sessions by id (issue 14) ---------------------------------------------------- */

#define SESSION_ID_BUCKETS 4096

void session_id_add(struct session *s)
{
	struct server *srv = s->srv;
	if (srv->id_buckets == NULL) {
		srv->id_buckets = calloc(SESSION_ID_BUCKETS, sizeof *srv->id_buckets);
		if (srv->id_buckets == NULL)
			return; /* out of memory: its verdicts will not find it; it times out */
	}
	struct session **b = &srv->id_buckets[s->sid % SESSION_ID_BUCKETS];
	s->id_next = *b;
	*b = s;
	s->id_listed = true;
}

void session_id_remove(struct session *s)
{
	if (!s->id_listed)
		return;
	struct session **p = &s->srv->id_buckets[s->sid % SESSION_ID_BUCKETS];
	while (*p != s)
		p = &(*p)->id_next;
	*p = s->id_next;
	s->id_listed = false;
}

struct session *session_find(struct server *srv, uint64_t sid)
{
	if (srv->id_buckets == NULL)
		return NULL;
	struct session *s = srv->id_buckets[sid % SESSION_ID_BUCKETS];
	while (s != NULL && s->sid != sid)
		s = s->id_next;
	return s;
}

/* The verdict on a message (deliver.h): count it, log it, answer it. Pumps
 * only when it came back asynchronously; a synchronous verdict (discard)
 * returns into the pump loop that started it, which goes on by itself. */
static void session_on_verdict(void *owner, uint64_t sid, const struct deliver_verdict *v)
{
	struct server *srv = owner;
	struct session *s = session_find(srv, sid);

	stats_lock(&srv->stats);
	if (v->code == 250) {
		srv->stats.c.messages_accepted++;
		srv->stats.c.messages_bytes += v->size;
		if (s)
			srv->stats.listeners[s->l->index].messages_accepted++;
		if (s)
			stats_observe_accept(&srv->stats.c, (uv_hrtime() - s->eom_ns) / 1000);
	} else {
		srv->stats.c.messages_rejected++;
		if (v->code >= 500)
			srv->stats.c.rejected_5xx++;
		else
			srv->stats.c.rejected_4xx++;
	}
	readiness_store_result(&srv->stats.c, v->err, v->stored); /* issue 12 */
	stats_unlock(&srv->stats);

	static const struct log_ctx gone = {.session = NULL};
	const struct log_ctx *log = s ? &s->log : &gone;
	char size[24];
	snprintf(size, sizeof size, "%llu", (unsigned long long)v->size);
	if (v->code == 250) {
		const char *kv[] = {
		    "id",   v->id, "from", v->mail_from, "size", size, s ? NULL : "client",
		    "gone", NULL};
		log_event(CONFIG_LOG_INFO, log, v->stored ? "message stored" : "message discarded",
		          kv);
	} else {
		char reply[16];
		snprintf(reply, sizeof reply, "%u", v->code);
		const char *kv[] = {"id",
		                    v->id,
		                    "reply",
		                    reply,
		                    "text",
		                    v->text,
		                    v->err ? "error" : NULL,
		                    v->err ? strerror(-v->err) : NULL,
		                    NULL};
		log_event(v->err ? CONFIG_LOG_ERROR : CONFIG_LOG_INFO, log, "message not accepted",
		          kv);
	}
	/* The client went away (or the drain closed it) meanwhile: a 250 never
	 * sent, so the client sends the message again. */
	if (s == NULL || s->closing)
		return;
	s->storing = false;
	smtp_proto_resume(s->proto, v->code, v->enhanced, v->text);
	if (!s->pumping)
		session_pump(s);
}

/* Room again for a message's bytes (its writer caught up with the disk). */
static void session_on_room(void *owner, uint64_t sid)
{
	struct session *s = session_find(owner, sid);
	if (s != NULL && !s->closing && !s->pumping)
		session_pump(s);
}

const struct deliver_hooks session_deliver_hooks = {
    .verdict = session_on_verdict,
    .room = session_on_room,
};

/* The envelope as the core has it now. */
static void session_envelope(struct session *s, struct spool_envelope *e, const char **rcpt,
                             size_t n)
{
	for (size_t i = 0; i < n; i++)
		rcpt[i] = smtp_proto_rcpt(s->proto, i);
	*e = (struct spool_envelope){
	    .rcpt = rcpt,
	    .nrcpt = n,
	    .mail_from = smtp_proto_mail_from(s->proto),
	    .helo = smtp_proto_helo(s->proto),
	    .esmtp = smtp_proto_esmtp(s->proto),
	    .client_addr = s->client_addr,
	    .client_port = s->client_port,
	    .local_addr = s->local_addr,
	    .local_port = s->local_port,
	    .auth_user = smtp_proto_auth_user(s->proto),
	    .auth_param = smtp_proto_auth_param(s->proto),
	    .size = smtp_proto_message_size(s->proto),
	    .hostname = s->srv->cfg->hostname,
	};
	if (s->tls_version[0] != '\0') {
		e->tls_version = s->tls_version;
		e->tls_cipher = s->tls_cipher;
	}
	if (s->proxied) {
		e->proxy_src_addr = s->proxy_src;
		e->proxy_src_port = s->proxy_src_port;
		e->proxy_dst_addr = s->proxy_dst;
		e->proxy_dst_port = s->proxy_dst_port;
	}
	clock_gettime(CLOCK_REALTIME, &e->received_at);
}

/* The first bytes of a message's data: delivery takes them from here on. */
static int session_message_begin(struct session *s)
{
	size_t n = smtp_proto_rcpt_count(s->proto);
	const char **rcpt = calloc(n ? n : 1, sizeof *rcpt);
	if (rcpt == NULL)
		return -1;
	struct spool_envelope e;
	session_envelope(s, &e, rcpt, n);
	s->msg = deliver_begin(s->srv->deliver, s->sid, &e, &s->log);
	free(rcpt);
	return s->msg ? 0 : -1;
}

/* The core has a complete message: hand it to delivery, resume on its verdict. */
void session_end_of_message(struct session *s)
{
	if (s->msg == NULL && session_message_begin(s) < 0) {
		smtp_proto_resume(s->proto, 451, "4.3.0", "Error: out of memory");
		return;
	}
	size_t n = smtp_proto_rcpt_count(s->proto);
	const char **rcpt = calloc(n ? n : 1, sizeof *rcpt);
	if (rcpt == NULL) {
		deliver_abort(s->msg);
		s->msg = NULL;
		smtp_proto_resume(s->proto, 451, "4.3.0", "Error: out of memory");
		return;
	}
	struct spool_envelope e;
	session_envelope(s, &e, rcpt, n);
	struct deliver_msg *m = s->msg;
	s->msg = NULL;
	s->eom_ns = uv_hrtime();
	s->storing = true;
	deliver_end(m, &e); /* the verdict may come back inside (discard) */
	free(rcpt);
}

/* The core's body sink: the message's bytes, LF line ends, dot-unstuffed. */
int session_body(void *ctx, const char *data, size_t len)
{
	struct session *s = ctx;
	if (s->msg == NULL && session_message_begin(s) < 0)
		return -1;
	return deliver_write(s->msg, data, len);
}
