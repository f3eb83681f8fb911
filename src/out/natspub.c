/* natspub: JetStream publishing off the loop (natspub.h).
 *
 * Four kinds of threads meet here, always under np->mu:
 *   - the loop: natspub_publish queues a request and signals the publisher;
 *     the async callback takes finished requests and the connection's state;
 *   - the publisher (ours): builds each natsMsg and calls js_PublishMsgAsync,
 *     and every NATSPUB_TICK_MS fails what waited past the timeout, queued or
 *     sent (a request it is building is SENDING: natspub_stop orphans it);
 *   - the checker (ours): every NATSPUB_CHECK_MS asks JetStream for the stream
 *     (js_GetStreamInfo waits for an answer, so it has a thread of its own and
 *     never holds up a publish) and checks the server's max_payload;
 *   - libnats' threads: the acknowledgement handler, the connection callbacks.
 * A request is in np->reqs from natspub_publish until it is finished; the
 * one that finishes it (ack handler, publisher, stop) moves it to np->done. */
#include "natspub.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <nats/nats.h>

#include "config.h"
#include "log.h"
#include "spool.h"
#include "stats.h"

#define NATSPUB_CHECK_MS 1000
/* A publish the library never answers is failed this long after its timeout. */
#define NATSPUB_GRACE_MS 1000
/* JetStream API requests (the stream check) wait at most this long. */
#define NATSPUB_API_WAIT_MS 2000

/* QUEUED on np->send; SENDING: the publisher is building it (stop never frees
 * it then, it orphans it: off np->reqs, answered, freed by the publisher);
 * SENT: handed to libnats, waiting for the acknowledgement. */
enum natspub_state { REQ_QUEUED, REQ_SENDING, REQ_SENT, REQ_DONE, REQ_ORPHAN };

struct natspub_req {
	struct natspub_req *prev, *next; /* np->reqs while queued or sent */
	struct natspub_req *qnext;       /* np->send or np->done */
	enum natspub_state state;
	natspub_done_fn done;
	void *ctx;
	char *id, *envelope, *mail_from;
	char **rcpt;
	size_t nrcpt;
	char *data;
	size_t len;
	uint64_t start_us; /* uv_hrtime() / 1000 at natspub_publish */
	uint64_t end_us;
	bool ok;
	char reason[192];
};

struct natspub {
	uv_loop_t *loop;
	struct stats *stats;
	char *subject, *stream, *host;
	uint32_t rand; /* natspub_new_id */
	uint64_t timeout_ms;
	uint64_t need; /* max_message_size + overhead: what max_payload must allow */
	bool sync;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	uv_async_t async;
	pthread_t publisher, checker;
	bool threads;
	bool stopped; /* loop side: natspub_stop ran */

	pthread_mutex_t mu;
	pthread_cond_t cv;       /* the publisher's wake-up */
	pthread_cond_t check_cv; /* the checker's */
	/* Guarded by mu. */
	bool quit;
	bool async_ready; /* np->async may be woken */
	struct natspub_req *reqs;
	struct natspub_req *send_head, *send_tail;
	struct natspub_req *done_head, *done_tail;
	size_t live;
	bool connected;
	char server[128];
	bool stream_seen;    /* the stream answered at least once */
	bool stream_missing; /* JetStream said it does not exist */
	bool payload_small;  /* the server connected to has a smaller max_payload */
	int64_t max_payload;
	char last_error[192];
};

static uint64_t natspub_now_us(void)
{
	return uv_hrtime() / 1000;
}

static void natspub_req_free(struct natspub_req *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nrcpt; i++)
		free(r->rcpt[i]);
	free(r->rcpt);
	free(r->id);
	free(r->envelope);
	free(r->mail_from);
	free(r->data);
	free(r);
}

/* ---- finishing (any thread, np->mu held) --------------------------------------------- */

static void natspub_wake_loop(struct natspub *np)
{
	if (!np->quit && np->async_ready)
		uv_async_send(&np->async);
}

/* Off np->reqs. Under np->mu. */
static void natspub_unlink_locked(struct natspub *np, struct natspub_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		np->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	np->live--;
}

static void natspub_finish_locked(struct natspub *np, struct natspub_req *r, bool ok,
                                  const char *reason)
{
	if (r->state == REQ_DONE)
		return;
	if (r->state == REQ_QUEUED) {
		/* Off the send queue (only stop finishes a queued request). */
		struct natspub_req **pp = &np->send_head;
		np->send_tail = NULL;
		while (*pp) {
			if (*pp == r)
				*pp = r->qnext;
			else {
				np->send_tail = *pp;
				pp = &(*pp)->qnext;
			}
		}
	}
	r->state = REQ_DONE;
	natspub_unlink_locked(np, r);
	r->ok = ok;
	r->end_us = natspub_now_us();
	snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
	if (!ok && reason && reason[0])
		snprintf(np->last_error, sizeof np->last_error, "%s", reason);
	r->qnext = NULL;
	if (np->done_tail)
		np->done_tail->qnext = r;
	else
		np->done_head = r;
	np->done_tail = r;
	natspub_wake_loop(np);
}

/* ---- libnats' threads ------------------------------------------------------------------ */

static void natspub_describe(natsStatus s, jsErrCode code, const char *text, char *out, size_t len)
{
	if (s == NATS_TIMEOUT)
		snprintf(out, len, "no acknowledgement from JetStream within SMTPD_NATS_TIMEOUT");
	else if (s == NATS_NO_RESPONDERS)
		snprintf(out, len, "no responders: the stream is not available");
	else if (text && text[0])
		snprintf(out, len, "JetStream: %s (%d)", text, (int)code);
	else
		snprintf(out, len, "NATS: %s", natsStatus_GetText(s));
}

static void natspub_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	struct natspub *np = closure;
	const char *id = NULL;
	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK)
		id = NULL;
	char why[192] = "";
	bool ok = pa != NULL && pae == NULL;
	if (!ok)
		natspub_describe(pae ? pae->Err : NATS_ERR, pae ? pae->ErrCode : 0,
		                 pae ? pae->ErrText : NULL, why, sizeof why);
	pthread_mutex_lock(&np->mu);
	for (struct natspub_req *r = np->reqs; id != NULL && r != NULL; r = r->next)
		if (r->state == REQ_SENT && strcmp(r->id, id) == 0) {
			natspub_finish_locked(np, r, ok, why);
			break;
		}
	pthread_mutex_unlock(&np->mu);
	natsMsg_Destroy(msg);
}

static void natspub_conn_state(struct natspub *np, natsConnection *nc, bool connected)
{
	char raw[256] = "", url[128] = "";
	if (connected && natsConnection_GetConnectedUrl(nc, raw, sizeof raw) == NATS_OK)
		natspub_url_redact(raw, url, sizeof url); /* no password in /status */
	int64_t maxp = connected ? natsConnection_GetMaxPayload(nc) : 0;
	pthread_mutex_lock(&np->mu);
	np->connected = connected;
	snprintf(np->server, sizeof np->server, "%s", url);
	if (connected) {
		np->max_payload = maxp;
		np->payload_small = maxp > 0 && (uint64_t)maxp < np->need;
		if (np->payload_small)
			snprintf(np->last_error, sizeof np->last_error,
			         "server max_payload %" PRId64
			         " is below SMTPD_MAX_MESSAGE_SIZE plus "
			         "headers (%" PRIu64 ")",
			         maxp, np->need);
	} else {
		snprintf(np->last_error, sizeof np->last_error, "disconnected from the server");
	}
	natspub_wake_loop(np);
	pthread_mutex_unlock(&np->mu);
}

static void natspub_on_connected(natsConnection *nc, void *closure)
{
	natspub_conn_state(closure, nc, true);
	pthread_mutex_lock(&((struct natspub *)closure)->mu);
	pthread_cond_signal(&((struct natspub *)closure)->check_cv);
	pthread_mutex_unlock(&((struct natspub *)closure)->mu);
}

static void natspub_on_disconnected(natsConnection *nc, void *closure)
{
	natspub_conn_state(closure, nc, false);
}

/* ---- the publisher --------------------------------------------------------------------- */

static natsStatus natspub_build(struct natspub *np, struct natspub_req *r, natsMsg **out)
{
	natsMsg *msg = NULL;
	natsStatus s = natsMsg_Create(&msg, np->subject, NULL, r->data, (int)r->len);
	free(r->data);
	r->data = NULL;
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "Mailport-Envelope", r->envelope);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "Mailport-Mail-From", r->mail_from);
	for (size_t i = 0; s == NATS_OK && i < r->nrcpt; i++)
		s = natsMsgHeader_Add(msg, "Mailport-Rcpt-To", r->rcpt[i]);
	if (s != NATS_OK) {
		natsMsg_Destroy(msg);
		msg = NULL;
	}
	*out = msg;
	return s;
}

/* Finish r after a failed publish, if it is still the request it was (stop
 * or the sweep may have finished and freed it meanwhile). Under np->mu. */
static void natspub_fail_sent_locked(struct natspub *np, const struct natspub_req *r,
                                     const char *id, const char *why)
{
	for (struct natspub_req *q = np->reqs; q; q = q->next)
		if (q == r && q->state == REQ_SENT && strcmp(q->id, id) == 0) {
			natspub_finish_locked(np, q, false, why);
			return;
		}
}

/* The publisher, with r SENDING (so nobody frees it until it is SENT). */
static void natspub_send(struct natspub *np, struct natspub_req *r)
{
	char why[192] = "", id[SPOOL_ID_MAX];
	snprintf(id, sizeof id, "%s", r->id);
	pthread_mutex_lock(&np->mu);
	bool small = np->payload_small;
	if (small)
		snprintf(why, sizeof why, "%s", np->last_error);
	pthread_mutex_unlock(&np->mu);
	natsMsg *msg = NULL;
	natsStatus s = small ? NATS_ERR : natspub_build(np, r, &msg);
	if (s != NATS_OK && !small)
		natspub_describe(s, 0, NULL, why, sizeof why);
	pthread_mutex_lock(&np->mu);
	if (r->state == REQ_ORPHAN) { /* stop answered it meanwhile */
		pthread_mutex_unlock(&np->mu);
		natsMsg_Destroy(msg);
		natspub_req_free(r);
		return;
	}
	if (s != NATS_OK) {
		natspub_finish_locked(np, r, false, why);
		pthread_mutex_unlock(&np->mu);
		return;
	}
	/* Sent before the call: the acknowledgement may come before it returns,
	 * and from here on r may be finished and freed by others: only `id`. */
	r->state = REQ_SENT;
	pthread_mutex_unlock(&np->mu);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.ExpectStream = np->stream;
	po.MaxWait = (int64_t)np->timeout_ms;
	s = js_PublishMsgAsync(np->js, &msg, &po);
	natsMsg_Destroy(msg); /* NULL when the library took it */
	if (s == NATS_OK)
		return;
	natspub_describe(s, 0, NULL, why, sizeof why);
	pthread_mutex_lock(&np->mu);
	natspub_fail_sent_locked(np, r, id, why);
	pthread_mutex_unlock(&np->mu);
}

/* Fail what waited too long, queued or sent (the library's own MaxWait is the
 * same timeout; the grace covers a publish it never answers). Under np->mu. */
static void natspub_sweep_locked(struct natspub *np, uint64_t now)
{
	uint64_t limit = (np->timeout_ms + NATSPUB_GRACE_MS) * 1000;
	for (struct natspub_req *q = np->reqs, *next; q; q = next) {
		next = q->next;
		if ((q->state == REQ_SENT || q->state == REQ_QUEUED) && now - q->start_us > limit)
			natspub_finish_locked(
			    np, q, false,
			    "no acknowledgement from JetStream within SMTPD_NATS_TIMEOUT");
	}
}

/* Wait on cv (under np->mu) for at most ms: the clock is the condition
 * variables' own, monotonic, so a wall clock stepped back never holds up the
 * timeout sweep or the stream check. */
static void natspub_wait_locked(struct natspub *np, pthread_cond_t *cv, uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, &np->mu, &ts);
}

static void *natspub_publisher(void *arg)
{
	struct natspub *np = arg;
	uint64_t swept = natspub_now_us();
	pthread_mutex_lock(&np->mu);
	while (!np->quit) {
		/* Every tick, busy or not: a steady load must not hold the timeout off. */
		uint64_t now = natspub_now_us();
		if (now - swept >= NATSPUB_TICK_MS * 1000) {
			natspub_sweep_locked(np, now);
			swept = now;
		}
		struct natspub_req *r = np->send_head;
		if (r != NULL) {
			np->send_head = r->qnext;
			if (np->send_head == NULL)
				np->send_tail = NULL;
			r->qnext = NULL;
			r->state = REQ_SENDING;
			pthread_mutex_unlock(&np->mu);
			natspub_send(np, r);
			pthread_mutex_lock(&np->mu);
			continue;
		}
		natspub_wait_locked(np, &np->cv, NATSPUB_TICK_MS);
	}
	pthread_mutex_unlock(&np->mu);
	return NULL;
}

/* ---- the checker -------------------------------------------------------------------------- */

static void natspub_check_stream(struct natspub *np)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, np->js, np->stream, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	pthread_mutex_lock(&np->mu);
	if (s == NATS_OK) {
		np->stream_seen = true;
		np->stream_missing = false;
	} else if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		np->stream_missing = true;
		snprintf(np->last_error, sizeof np->last_error, "stream %s not found", np->stream);
	}
	natspub_wake_loop(np);
	pthread_mutex_unlock(&np->mu);
}

static void *natspub_checker(void *arg)
{
	struct natspub *np = arg;
	pthread_mutex_lock(&np->mu);
	while (!np->quit) {
		bool connected = np->connected;
		pthread_mutex_unlock(&np->mu);
		if (connected)
			natspub_check_stream(np);
		pthread_mutex_lock(&np->mu);
		if (np->quit)
			break;
		natspub_wait_locked(np, &np->check_cv, NATSPUB_CHECK_MS);
	}
	pthread_mutex_unlock(&np->mu);
	return NULL;
}

/* ---- the loop --------------------------------------------------------------------------- */

static void natspub_observe(struct stats_counters *c, uint64_t us)
{
	size_t i = 0;
	while (i < STATS_LATENCY_BUCKETS && (double)us > stats_latency_bounds[i] * 1e6)
		i++;
	c->nats_latency[i]++;
	c->nats_latency_count++;
	c->nats_latency_sum_us += us;
}

/* What /status and /readyz show, from the shared state (np->mu held). */
static void natspub_state_to_stats(struct natspub *np, struct stats_counters *c)
{
	c->nats_connected = np->connected;
	snprintf(c->nats_server, sizeof c->nats_server, "%s", np->connected ? np->server : "");
	snprintf(c->nats_last_error, sizeof c->nats_last_error, "%s", np->last_error);
	c->nats_pending = np->live;
	if (np->sync && !np->connected)
		snprintf(c->nats_unready, sizeof c->nats_unready, "NATS not connected (stream %s)",
		         np->stream);
	else if (np->stream_missing || !np->stream_seen)
		snprintf(c->nats_unready, sizeof c->nats_unready, "NATS stream %s %s", np->stream,
		         np->stream_missing ? "does not exist" : "not confirmed yet");
	else if (np->payload_small)
		snprintf(c->nats_unready, sizeof c->nats_unready,
		         "NATS max_payload below SMTPD_MAX_MESSAGE_SIZE plus headers");
	else
		c->nats_unready[0] = '\0';
}

/* Take the finished requests, count them (plus `failed` more) and copy the
 * state into the stats. Under np->mu. */
static struct natspub_req *natspub_take_done_locked(struct natspub *np, uint64_t failed)
{
	struct natspub_req *list = np->done_head;
	np->done_head = np->done_tail = NULL;
	stats_lock(np->stats);
	natspub_state_to_stats(np, &np->stats->c);
	np->stats->c.nats_failed += failed;
	for (struct natspub_req *r = list; r; r = r->qnext) {
		if (r->ok) {
			np->stats->c.nats_published++;
			natspub_observe(&np->stats->c, r->end_us - r->start_us);
		} else {
			np->stats->c.nats_failed++;
		}
	}
	stats_unlock(np->stats);
	return list;
}

/* Answer and free what natspub_take_done_locked took. On the loop. */
static void natspub_answer(struct natspub_req *list)
{
	while (list) {
		struct natspub_req *r = list;
		list = r->qnext;
		r->done(r->ctx, r->ok, r->reason);
		natspub_req_free(r);
	}
}

static void natspub_on_async(uv_async_t *a)
{
	struct natspub *np = a->data;
	pthread_mutex_lock(&np->mu);
	struct natspub_req *list = natspub_take_done_locked(np, 0);
	pthread_mutex_unlock(&np->mu);
	natspub_answer(list);
}

static char *natspub_copy(const char *s, bool *ok)
{
	char *v = natspub_header_value(s);
	if (v == NULL)
		*ok = false;
	return v;
}

int natspub_publish(struct natspub *np, struct natspub_msg *m, natspub_done_fn done, void *ctx)
{
	char *data = m->data;
	m->data = NULL;
	if (np == NULL || np->stopped) {
		free(data);
		return -ESHUTDOWN;
	}
	struct natspub_req *r = calloc(1, sizeof *r);
	if (r == NULL) {
		free(data);
		return -ENOMEM;
	}
	r->data = data;
	r->len = m->len;
	bool ok = true;
	r->id = natspub_copy(m->id, &ok);
	r->envelope = natspub_copy(m->envelope_json, &ok);
	r->mail_from = natspub_copy(m->mail_from, &ok);
	r->rcpt = calloc(m->nrcpt ? m->nrcpt : 1, sizeof *r->rcpt);
	if (r->rcpt == NULL)
		ok = false;
	for (size_t i = 0; ok && i < m->nrcpt; i++) {
		r->rcpt[i] = natspub_copy(m->rcpt[i], &ok);
		r->nrcpt = i + 1;
	}
	if (!ok) {
		natspub_req_free(r);
		return -ENOMEM;
	}
	r->done = done;
	r->ctx = ctx;
	r->start_us = natspub_now_us();
	pthread_mutex_lock(&np->mu);
	r->state = REQ_QUEUED;
	r->next = np->reqs;
	if (np->reqs)
		np->reqs->prev = r;
	np->reqs = r;
	np->live++;
	if (np->send_tail)
		np->send_tail->qnext = r;
	else
		np->send_head = r;
	np->send_tail = r;
	pthread_cond_signal(&np->cv);
	size_t live = np->live;
	pthread_mutex_unlock(&np->mu);
	stats_lock(np->stats);
	np->stats->c.nats_pending = live;
	stats_unlock(np->stats);
	return 0;
}

/* ---- set-up and drain ------------------------------------------------------------------ */

static int natspub_options(struct natspub *np, const struct natspub_options *opt, char *err,
                           size_t errlen)
{
	char *urls[NATSPUB_MAX_URLS];
	size_t n = 0;
	char why[128];
	if (natspub_urls_parse(opt->urls, urls, &n, why, sizeof why) < 0 || n == 0) {
		snprintf(err, errlen, "SMTPD_NATS_URL: %s", n == 0 ? "no URL" : why);
		return -1;
	}
	bool tls = natspub_urls_tls(urls, n);
	int64_t connect_ms = opt->timeout_ms < 5000 ? (int64_t)opt->timeout_ms : 5000;
	natsStatus s = natsOptions_Create(&np->opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(np->opts, (const char **)urls, (int)n);
	natspub_urls_free(urls, n);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(np->opts, connect_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(np->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(np->opts, 500);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(np->opts, true, natspub_on_connected, np);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(np->opts, natspub_on_connected, np);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(np->opts, natspub_on_disconnected, np);
	if (s == NATS_OK)
		s = natsOptions_SetName(np->opts, "mailport");
	if (s != NATS_OK) {
		snprintf(err, errlen, "SMTPD_NATS_URL: %s", natsStatus_GetText(s));
		return -1;
	}
	/* Files named by settings that cannot be used are configuration errors
	 * (exit 2); libnats reads the .creds file only when it connects, so it is
	 * checked here first. */
	if (opt->creds[0] != '\0' && access(opt->creds, R_OK) < 0) {
		snprintf(err, errlen, "SMTPD_NATS_CREDS: cannot read %s: %s", opt->creds,
		         strerror(errno));
		return -2;
	}
	if (opt->creds[0] != '\0' &&
	    (s = natsOptions_SetUserCredentialsFromFiles(np->opts, opt->creds, NULL)) != NATS_OK) {
		snprintf(err, errlen, "SMTPD_NATS_CREDS: %s: %s", opt->creds,
		         natsStatus_GetText(s));
		return -2;
	}
	if (opt->ca[0] != '\0' && !tls) {
		snprintf(err, errlen, "SMTPD_NATS_CA: set, but no SMTPD_NATS_URL is tls://");
		return -2;
	}
	if (opt->ca[0] != '\0' &&
	    (s = natsOptions_LoadCATrustedCertificates(np->opts, opt->ca)) != NATS_OK) {
		snprintf(err, errlen, "SMTPD_NATS_CA: cannot load %s: %s", opt->ca,
		         natsStatus_GetText(s));
		return -2;
	}
	return 0;
}

int natspub_new(uv_loop_t *loop, const struct natspub_options *opt, struct stats *stats,
                struct natspub **out, char *err, size_t errlen)
{
	*out = NULL;
	struct natspub *np = calloc(1, sizeof *np);
	if (np == NULL) {
		snprintf(err, errlen, "NATS: out of memory");
		return -1;
	}
	*out = np; /* natspub_free undoes a partial set-up */
	np->loop = loop;
	np->stats = stats;
	np->timeout_ms = opt->timeout_ms;
	np->sync = opt->sync;
	uint64_t over = natspub_overhead(opt->max_rcpt);
	np->need =
	    opt->max_message_size > UINT64_MAX - over ? UINT64_MAX : opt->max_message_size + over;
	np->subject = strdup(opt->subject);
	np->stream = strdup(opt->stream);
	pthread_mutex_init(&np->mu, NULL);
	/* Timed waits on the monotonic clock (natspub_wait_locked). */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&np->cv, &ca);
	pthread_cond_init(&np->check_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (np->subject == NULL || np->stream == NULL) {
		snprintf(err, errlen, "NATS: out of memory");
		return -1;
	}
	if (nats_Open(-1) != NATS_OK) {
		snprintf(err, errlen, "NATS: cannot initialise libnats");
		return -1;
	}
	int orc = natspub_options(np, opt, err, errlen);
	if (orc < 0)
		return orc;
	natsStatus s = natsConnection_Connect(&np->nc, np->opts);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		snprintf(err, errlen, "SMTPD_NATS_URL: cannot connect: %s", natsStatus_GetText(s));
		return -1;
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = NATSPUB_API_WAIT_MS;
	jo.PublishAsync.MaxPending = NATSPUB_MAX_INFLIGHT;
	jo.PublishAsync.AckHandler = natspub_on_ack;
	jo.PublishAsync.AckHandlerClosure = np;
	jo.PublishAsync.StallWait = (int64_t)opt->timeout_ms;
	if (natsConnection_JetStream(&np->js, np->nc, &jo) != NATS_OK) {
		snprintf(err, errlen, "NATS: cannot set up JetStream");
		return -1;
	}
	if (s == NATS_OK) {
		int64_t maxp = natsConnection_GetMaxPayload(np->nc);
		if (maxp > 0 && (uint64_t)maxp < np->need) {
			snprintf(
			    err, errlen,
			    "SMTPD_MAX_MESSAGE_SIZE: the NATS server's max_payload is %" PRId64
			    " bytes, below SMTPD_MAX_MESSAGE_SIZE %" PRIu64 " plus %" PRIu64
			    " bytes of headers; raise max_payload in nats-server's configuration "
			    "or lower SMTPD_MAX_MESSAGE_SIZE",
			    maxp, opt->max_message_size, over);
			return -2;
		}
		natspub_conn_state(np, np->nc, true);
		natspub_check_stream(np);
	} else {
		log_warn("NATS: no server reachable yet; retrying in the background");
	}
	uv_async_init(loop, &np->async, natspub_on_async);
	np->async.data = np;
	pthread_mutex_lock(&np->mu);
	np->async_ready = true;
	pthread_mutex_unlock(&np->mu);
	bool pub = pthread_create(&np->publisher, NULL, natspub_publisher, np) == 0;
	if (!pub || pthread_create(&np->checker, NULL, natspub_checker, np) != 0) {
		pthread_mutex_lock(&np->mu);
		np->quit = true;
		np->async_ready = false; /* libnats' callbacks read it */
		pthread_cond_signal(&np->cv);
		pthread_mutex_unlock(&np->mu);
		if (pub)
			pthread_join(np->publisher, NULL);
		uv_close((uv_handle_t *)&np->async, NULL);
		np->stopped = true;
		snprintf(err, errlen, "NATS: cannot start a thread");
		return -1;
	}
	np->threads = true;
	/* np->mu before the stats' lock, always (natspub_on_async). */
	pthread_mutex_lock(&np->mu);
	stats_lock(stats);
	stats->c.nats_enabled = true;
	snprintf(stats->c.nats_stream, sizeof stats->c.nats_stream, "%s", np->stream);
	natspub_state_to_stats(np, &stats->c);
	stats_unlock(stats);
	pthread_mutex_unlock(&np->mu);
	return 0;
}

void natspub_stop(struct natspub *np)
{
	if (np == NULL || np->stopped)
		return;
	np->stopped = true;
	/* Everything unanswered fails now; the async handle closes (quit keeps
	 * other threads from waking it). */
	pthread_mutex_lock(&np->mu);
	/* The one the publisher is building is orphaned, not freed: it frees it. */
	natspub_done_fn odone = NULL;
	void *octx = NULL;
	for (struct natspub_req *r = np->reqs, *next; r; r = next) {
		next = r->next;
		if (r->state != REQ_SENDING) {
			natspub_finish_locked(np, r, false, "delivery stopped: shutting down");
			continue;
		}
		natspub_unlink_locked(np, r);
		r->state = REQ_ORPHAN;
		odone = r->done;
		octx = r->ctx;
	}
	np->quit = true;
	/* What finished before stop keeps its result (a publish JetStream
	 * acknowledged whose answer had not reached the loop yet is a 250, not a
	 * 451 that would make the client send it again); the counters and the
	 * state in /status are brought up to date one last time. */
	struct natspub_req *list = natspub_take_done_locked(np, odone != NULL);
	pthread_cond_broadcast(&np->cv);
	pthread_cond_broadcast(&np->check_cv);
	bool opened = np->async_ready;
	pthread_mutex_unlock(&np->mu);
	if (opened) /* else natspub_new failed before it */
		uv_close((uv_handle_t *)&np->async, NULL);
	if (odone != NULL)
		odone(octx, false, "delivery stopped: shutting down");
	natspub_answer(list);
}

void natspub_free(struct natspub *np)
{
	if (np == NULL)
		return;
	if (np->threads) {
		pthread_mutex_lock(&np->mu);
		np->quit = true;
		pthread_cond_broadcast(&np->cv);
		pthread_cond_broadcast(&np->check_cv);
		pthread_mutex_unlock(&np->mu);
		pthread_join(np->publisher, NULL);
		pthread_join(np->checker, NULL);
	}
	if (np->nc)
		natsConnection_Close(np->nc);
	jsCtx_Destroy(np->js);
	natsConnection_Destroy(np->nc);
	natsOptions_Destroy(np->opts);
	/* The connection's callbacks (closed, disconnected) still run on libnats'
	 * threads after Destroy: wait for every one of them before np goes. */
	if (nats_CloseAndWait(5000) != NATS_OK) {
		log_warn("NATS: the library did not stop within 5 s");
		return; /* np stays: a late callback must not find it freed */
	}
	/* Nothing else reaches np now: what is left was never handed back. */
	while (np->reqs) {
		struct natspub_req *r = np->reqs;
		np->reqs = r->next;
		natspub_req_free(r);
	}
	while (np->done_head) {
		struct natspub_req *r = np->done_head;
		np->done_head = r->qnext;
		natspub_req_free(r);
	}
	pthread_cond_destroy(&np->cv);
	pthread_cond_destroy(&np->check_cv);
	pthread_mutex_destroy(&np->mu);
	free(np->subject);
	free(np->stream);
	free(np->host);
	free(np);
}

int natspub_setup(uv_loop_t *loop, const struct config *cfg, struct stats *stats,
                  struct natspub **out, char *err, size_t errlen)
{
	struct natspub_options no = {
	    .urls = cfg->nats_url,
	    .subject = cfg->nats_subject,
	    .stream = cfg->nats_stream,
	    .creds = cfg->nats_creds,
	    .ca = cfg->nats_ca,
	    .timeout_ms = cfg->nats_timeout * 1000,
	    .max_message_size = cfg->max_message_size,
	    .max_rcpt = cfg->max_recipients,
	    .sync = cfg->nats_mode == CONFIG_NATS_SYNC,
	};
	int rc = natspub_new(loop, &no, stats, out, err, errlen);
	if (rc < 0)
		return rc;
	struct natspub *np = *out;
	np->host = strdup(cfg->hostname);
	uint32_t r = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &r, sizeof r) != (ssize_t)sizeof r)
			r ^= (uint32_t)clock();
		close(fd);
	}
	np->rand = r;
	/* Not the URLs: they may carry credentials. */
	log_info("NATS JetStream on: stream %s, subject %s, %s mode, timeout %llus",
	         cfg->nats_stream, cfg->nats_subject, no.sync ? "sync" : "forward",
	         (unsigned long long)cfg->nats_timeout);
	return 0;
}

void natspub_new_id(const struct natspub *np, uint64_t n, char *out, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, len, "%lld.M%06ldP%ldQ%lluR%08x.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
	         (long)getpid(), (unsigned long long)n, (unsigned)np->rand,
	         np->host ? np->host : "localhost");
}

int natspub_read_file(int fd, uint64_t size, char **out)
{
	*out = NULL;
	char *data = size > SIZE_MAX - 1 ? NULL : malloc(size ? size : 1);
	if (data == NULL)
		return -ENOMEM;
	uint64_t got = 0;
	while (got < size) {
		ssize_t n = pread(fd, data + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;
			free(data);
			return rc;
		}
		got += (uint64_t)n;
	}
	*out = data;
	return 0;
}
