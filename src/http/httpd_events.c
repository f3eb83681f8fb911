/* httpd_events: GET /events (SPEC 3, issue 17). See httpd_events.h. */
#include "httpd_events.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <netinet/in.h>

#include "httpd_priv.h"
#include "log.h"
#include "messages.h"
#include "spool_index.h"

/* One change waiting for its frame. */
struct httpd_ev_change {
	enum spool_index_change ch;
	enum spool_state st;
	char id[SPOOL_ID_MAX];
};

/* A frame of the ring: the one with sequence number s is ring[s % RING]. */
struct httpd_ev_frame {
	char *text;
	size_t len;
};

struct httpd_ev_client {
	struct httpd_events *ev;
	struct MHD_Connection *conn;
	uint64_t seq;  /* the next frame it gets */
	size_t off;    /* bytes of that frame already sent */
	char note[64]; /* the greeting or a heartbeat comment, sent first */
	size_t note_len;
	size_t note_off;
	uint64_t last_ms;             /* when it was last sent anything */
	int fd;                       /* its socket, for noticing a hang-up while suspended */
	struct sockaddr_storage addr; /* its address (HTTPD_EVENTS_PER_ADDRESS) */
	socklen_t addrlen;
	bool suspended; /* by its content reader; resumed by the thread */
	bool gone;      /* the peer hung up: end the stream */
	/* The rest of a frame it was in the middle of when the ring dropped that
	 * frame (sent before anything else, so no frame is ever cut). */
	char *tail;
	size_t tail_len;
	size_t tail_off;
	struct httpd_ev_client *prev, *next;
};

struct httpd_events {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started;
	bool closing;
	struct spool *sp;
	size_t max_clients;
	size_t nclients;
	struct httpd_ev_client *clients;
	/* The changes waiting, a ring of HTTPD_EVENTS_PENDING. */
	struct httpd_ev_change *q;
	size_t qhead, qlen;
	uint64_t dropped;
	struct httpd_ev_frame ring[HTTPD_EVENTS_RING];
	uint64_t seq; /* the number the next frame gets */
};

static uint64_t httpd_ev_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- pure part ------------------------------------------------------------------- */

char *httpd_events_frame(const char *name, const char *data, size_t *len)
{
	size_t n = strlen("event: \ndata: \n\n") + strlen(name) + strlen(data);
	char *s = malloc(n + 1);
	if (s == NULL)
		return NULL;
	snprintf(s, n + 1, "event: %s\ndata: %s\n\n", name, data);
	*len = n;
	return s;
}

const char *httpd_events_name(enum spool_index_change ch)
{
	switch (ch) {
	case SPOOL_INDEX_STORED:
		return "stored";
	case SPOOL_INDEX_STATE:
		return "state";
	case SPOOL_INDEX_DELETED:
		break;
	}
	return "deleted";
}

/* ---- the observer and the thread ------------------------------------------------- */

/* Called by the index on whatever thread changed it: a copy, nothing more.
 * With no client listening nothing is queued: a client gets the changes after
 * it connected only, so a relay nobody watches reads no entry per message. */
static void httpd_ev_observe(void *ctx, enum spool_index_change ch, const char *id,
                             enum spool_state st)
{
	struct httpd_events *ev = ctx;
	pthread_mutex_lock(&ev->mu);
	if (ev->nclients == 0) {
		/* nobody to tell */
	} else if (ev->qlen == HTTPD_EVENTS_PENDING) {
		ev->dropped++;
	} else {
		struct httpd_ev_change *c = &ev->q[(ev->qhead + ev->qlen) % HTTPD_EVENTS_PENDING];
		c->ch = ch;
		c->st = st;
		snprintf(c->id, sizeof c->id, "%s", id);
		ev->qlen++;
		pthread_cond_signal(&ev->cv);
	}
	pthread_mutex_unlock(&ev->mu);
}

/* The frame of one change; file reads, so called without the mutex. */
static char *httpd_ev_build(struct httpd_events *ev, const struct httpd_ev_change *c, size_t *len)
{
	json_t *v = NULL;
	if (c->ch != SPOOL_INDEX_DELETED)
		v = messages_list_entry(ev->sp, c->id);
	char *data = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
	json_decref(v);
	if (data != NULL && strlen(data) > HTTPD_EVENTS_FRAME_MAX - 64) {
		free(data);
		data = NULL;
	}
	if (data == NULL) {
		/* Deleted, gone meanwhile (its deleted event follows), or too big. */
		json_t *m =
		    c->ch == SPOOL_INDEX_DELETED
		        ? json_pack("{s:s}", "id", c->id)
		        : json_pack("{s:s, s:s}", "id", c->id, "state", messages_state_name(c->st));
		data = m ? json_dumps(m, JSON_COMPACT) : NULL;
		json_decref(m);
	}
	if (data == NULL)
		return NULL;
	char *f = httpd_events_frame(httpd_events_name(c->ch), data, len);
	free(data);
	return f;
}

/* Resume every suspended client that has something to send now: a frame, or
 * its heartbeat (all of them when closing, and those to end). Under ev->mu. */
static void httpd_ev_wake(struct httpd_events *ev, uint64_t now)
{
	for (struct httpd_ev_client *c = ev->clients; c; c = c->next) {
		if (!c->suspended)
			continue;
		if (ev->closing || c->gone || c->tail != NULL || c->seq < ev->seq ||
		    now - c->last_ms >= HTTPD_EVENTS_HEARTBEAT_MS) {
			c->suspended = false;
			MHD_resume_connection(c->conn);
		}
	}
}

/* libmicrohttpd does not watch a suspended connection, so a client that left
 * would keep its slot until the next frame or heartbeat. Once a second the
 * thread polls the sockets of the suspended clients (which send nothing after
 * their request: input or a hang-up means they left) and resumes those, whose
 * content reader then ends the connection. Under ev->mu; a suspended
 * connection's socket stays open until we resume it. */
static void httpd_ev_reap(struct httpd_events *ev)
{
	struct pollfd pf[64];
	struct httpd_ev_client *who[64];
	struct httpd_ev_client *c = ev->clients;
	while (c != NULL) {
		size_t n = 0;
		for (; c != NULL && n < 64; c = c->next) {
			if (!c->suspended || c->fd < 0)
				continue;
			pf[n] = (struct pollfd){.fd = c->fd, .events = POLLIN | POLLRDHUP};
			who[n++] = c;
		}
		if (n == 0 || poll(pf, (nfds_t)n, 0) <= 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (pf[i].revents == 0)
				continue;
			who[i]->gone = true;
			who[i]->suspended = false;
			MHD_resume_connection(who[i]->conn);
		}
	}
}

/* Frame `seq` (in slot) leaves the ring: a client half-way through it keeps
 * the rest (or, out of memory, loses the stream rather than get a cut frame).
 * Under ev->mu. */
static void httpd_ev_keep_tails(struct httpd_events *ev, const struct httpd_ev_frame *slot,
                                uint64_t seq)
{
	for (struct httpd_ev_client *c = ev->clients; c; c = c->next) {
		if (c->seq != seq || c->off == 0)
			continue;
		size_t n = slot->len - c->off;
		c->tail = malloc(n);
		if (c->tail == NULL) {
			c->gone = true;
		} else {
			memcpy(c->tail, slot->text + c->off, n);
			c->tail_len = n;
			c->tail_off = 0;
		}
		c->seq++;
		c->off = 0;
	}
}

static void *httpd_ev_main(void *arg)
{
	struct httpd_events *ev = arg;
	pthread_mutex_lock(&ev->mu);
	while (!ev->closing) {
		if (ev->qlen == 0) {
			/* Wake at least every second: heartbeats come due. */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&ev->cv, &ev->mu, &ts);
			httpd_ev_reap(ev);
			httpd_ev_wake(ev, httpd_ev_now_ms());
			continue;
		}
		struct httpd_ev_change c = ev->q[ev->qhead];
		ev->qhead = (ev->qhead + 1) % HTTPD_EVENTS_PENDING;
		ev->qlen--;
		pthread_mutex_unlock(&ev->mu);
		size_t len = 0;
		char *f = httpd_ev_build(ev, &c, &len);
		pthread_mutex_lock(&ev->mu);
		if (f == NULL) {
			ev->dropped++;
			continue;
		}
		struct httpd_ev_frame *slot = &ev->ring[ev->seq % HTTPD_EVENTS_RING];
		if (slot->text != NULL)
			httpd_ev_keep_tails(ev, slot, ev->seq - HTTPD_EVENTS_RING);
		free(slot->text);
		slot->text = f;
		slot->len = len;
		ev->seq++;
		httpd_ev_wake(ev, httpd_ev_now_ms());
	}
	pthread_mutex_unlock(&ev->mu);
	return NULL;
}

/* ---- start / stop -------------------------------------------------------------------- */

int httpd_events_new(struct spool *sp, size_t max_clients, struct httpd_events **out)
{
	*out = NULL;
	struct httpd_events *ev = calloc(1, sizeof *ev);
	if (ev == NULL)
		return -ENOMEM;
	ev->q = calloc(HTTPD_EVENTS_PENDING, sizeof *ev->q);
	pthread_condattr_t ca;
	if (ev->q == NULL || pthread_condattr_init(&ca) != 0) {
		free(ev->q);
		free(ev);
		return -ENOMEM;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&ev->mu, NULL);
	pthread_cond_init(&ev->cv, &ca);
	pthread_condattr_destroy(&ca);
	ev->sp = sp;
	ev->max_clients = max_clients;
	int rc = pthread_create(&ev->thread, NULL, httpd_ev_main, ev);
	if (rc != 0) {
		httpd_events_free(ev);
		return -rc;
	}
	ev->started = true;
	if (sp != NULL &&
	    (rc = spool_index_observe(spool_get_index(sp), httpd_ev_observe, ev)) < 0) {
		httpd_events_shutdown(ev);
		httpd_events_free(ev);
		return rc;
	}
	*out = ev;
	return 0;
}

void httpd_events_shutdown(struct httpd_events *ev)
{
	if (ev == NULL)
		return;
	/* Waits for an observer call in progress, so none comes after this. */
	if (ev->sp != NULL)
		spool_index_unobserve(spool_get_index(ev->sp), httpd_ev_observe, ev);
	pthread_mutex_lock(&ev->mu);
	ev->closing = true;
	httpd_ev_wake(ev, httpd_ev_now_ms());
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
	if (ev->started) {
		pthread_join(ev->thread, NULL);
		ev->started = false;
	}
}

void httpd_events_free(struct httpd_events *ev)
{
	if (ev == NULL)
		return;
	/* Clients are gone: libmicrohttpd freed their responses when it stopped. */
	for (size_t i = 0; i < HTTPD_EVENTS_RING; i++)
		free(ev->ring[i].text);
	free(ev->q);
	pthread_cond_destroy(&ev->cv);
	pthread_mutex_destroy(&ev->mu);
	free(ev);
}

void httpd_events_counts(struct httpd_events *ev, uint64_t *clients, uint64_t *dropped)
{
	*clients = 0;
	*dropped = 0;
	if (ev == NULL)
		return;
	pthread_mutex_lock(&ev->mu);
	*clients = ev->nclients;
	*dropped = ev->dropped;
	pthread_mutex_unlock(&ev->mu);
}

/* ---- one client --------------------------------------------------------------------- */

/* libmicrohttpd's content reader, on its thread: whatever the client has not
 * had yet, as much as fits; nothing to send suspends the connection. */
static ssize_t httpd_ev_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct httpd_ev_client *c = cls;
	struct httpd_events *ev = c->ev;
	(void)pos;
	pthread_mutex_lock(&ev->mu);
	if (c->gone) {
		pthread_mutex_unlock(&ev->mu);
		return MHD_CONTENT_READER_END_WITH_ERROR; /* closes the connection */
	}
	if (ev->closing) {
		pthread_mutex_unlock(&ev->mu);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	uint64_t now = httpd_ev_now_ms();
	size_t n = 0;
	if (c->note_off == c->note_len && c->seq == ev->seq &&
	    now - c->last_ms >= HTTPD_EVENTS_HEARTBEAT_MS) {
		/* A comment line (WHATWG HTML 9.2.6): ignored by EventSource, but
		 * it keeps proxies from closing an idle stream. */
		c->note_len = (size_t)snprintf(c->note, sizeof c->note, ": heartbeat\n\n");
		c->note_off = 0;
	}
	if (c->tail != NULL) {
		size_t k = c->tail_len - c->tail_off < max ? c->tail_len - c->tail_off : max;
		memcpy(buf, c->tail + c->tail_off, k);
		c->tail_off += k;
		n += k;
		if (c->tail_off == c->tail_len) {
			free(c->tail);
			c->tail = NULL;
		}
	}
	if (c->note_off < c->note_len && n < max) {
		size_t k =
		    c->note_len - c->note_off < max - n ? c->note_len - c->note_off : max - n;
		memcpy(buf + n, c->note + c->note_off, k);
		c->note_off += k;
		n += k;
	}
	/* Fell further behind than the ring: skip to the oldest frame kept. */
	if (ev->seq > HTTPD_EVENTS_RING && c->seq < ev->seq - HTTPD_EVENTS_RING) {
		c->seq = ev->seq - HTTPD_EVENTS_RING;
		c->off = 0;
	}
	while (n < max && c->tail == NULL && c->note_off == c->note_len && c->seq < ev->seq) {
		const struct httpd_ev_frame *f = &ev->ring[c->seq % HTTPD_EVENTS_RING];
		size_t k = f->len - c->off < max - n ? f->len - c->off : max - n;
		memcpy(buf + n, f->text + c->off, k);
		c->off += k;
		n += k;
		if (c->off == f->len) {
			c->seq++;
			c->off = 0;
		}
	}
	if (n > 0) {
		c->last_ms = now;
	} else {
		/* Under ev->mu, so the thread's resume can only come after this. */
		c->suspended = true;
		MHD_suspend_connection(c->conn);
	}
	pthread_mutex_unlock(&ev->mu);
	return (ssize_t)n;
}

/* The response is freed: the connection is over. */
static void httpd_ev_gone(void *cls)
{
	struct httpd_ev_client *c = cls;
	struct httpd_events *ev = c->ev;
	pthread_mutex_lock(&ev->mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		ev->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ev->nclients--;
	pthread_mutex_unlock(&ev->mu);
	free(c->tail);
	free(c);
}

/* Streams open from c's address (port aside). Under ev->mu. */
static size_t httpd_ev_same_address(struct httpd_events *ev, const struct httpd_ev_client *c)
{
	size_t n = 0;
	for (const struct httpd_ev_client *o = ev->clients; o; o = o->next) {
		if (o->addrlen != c->addrlen || c->addrlen == 0)
			continue;
		const struct sockaddr *a = (const struct sockaddr *)&o->addr;
		const struct sockaddr *b = (const struct sockaddr *)&c->addr;
		if (a->sa_family != b->sa_family)
			continue;
		if (a->sa_family == AF_INET)
			n += ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
			     ((const struct sockaddr_in *)b)->sin_addr.s_addr;
		else if (a->sa_family == AF_INET6)
			n += memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			            &((const struct sockaddr_in6 *)b)->sin6_addr,
			            sizeof(struct in6_addr)) == 0;
	}
	return n;
}

enum MHD_Result httpd_events_serve(struct httpd_events *ev, struct MHD_Connection *conn)
{
	struct httpd_ev_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	const union MHD_ConnectionInfo *ai =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ai != NULL && ai->client_addr != NULL) {
		c->addrlen = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                                    : sizeof(struct sockaddr_in);
		memcpy(&c->addr, ai->client_addr, c->addrlen);
	}
	pthread_mutex_lock(&ev->mu);
	const char *full = NULL;
	if (ev->closing || ev->nclients >= ev->max_clients)
		full = "too many event clients (SMTPD_HTTP_MAX_EVENT_CLIENTS)";
	else if (httpd_ev_same_address(ev, c) >= HTTPD_EVENTS_PER_ADDRESS)
		full = "too many event clients from this address";
	if (full != NULL) {
		pthread_mutex_unlock(&ev->mu);
		free(c);
		return httpd_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, full, NULL, NULL);
	}
	c->ev = ev;
	c->conn = conn;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	c->fd = ci ? ci->connect_fd : -1;
	c->seq = ev->seq; /* from now on */
	c->last_ms = httpd_ev_now_ms();
	/* The first bytes flush the headers, so EventSource opens at once. */
	c->note_len = (size_t)snprintf(c->note, sizeof c->note, "retry: %d\n: connected\n\n",
	                               HTTPD_EVENTS_RETRY_MS);
	c->next = ev->clients;
	if (ev->clients)
		ev->clients->prev = c;
	ev->clients = c;
	ev->nclients++;
	pthread_mutex_unlock(&ev->mu);

	/* From here on the response owns c (httpd_ev_gone frees it). */
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
	                                                           httpd_ev_read, c, httpd_ev_gone);
	if (r == NULL) {
		httpd_ev_gone(c);
		return MHD_NO;
	}
	/* An idle stream is not a dead one: no connection timeout for it. */
	MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	enum MHD_Result ok = MHD_YES;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
	        MHD_YES ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
	    /* nginx would buffer the stream otherwise. */
	    MHD_add_response_header(r, "X-Accel-Buffering", "no") != MHD_YES)
		ok = MHD_NO;
	if (ok == MHD_YES)
		ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ok;
}

/* ---- the route and /status ---------------------------------------------------------- */

enum MHD_Result httpd_events_route(struct httpd *h, struct MHD_Connection *conn, const char *method)
{
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return httpd_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		                   MHD_HTTP_HEADER_ALLOW, HTTPD_ALLOW);
	/* EventSource cannot send an Authorization header: here, and only here,
	 * the token may come as ?token= (README says so: it can end up in logs). */
	const char *qt = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
	if (!httpd_authorized(h, conn) &&
	    (qt == NULL || !httpd_token_equal(h->token, h->token_len, qt)))
		return httpd_error(conn, MHD_HTTP_UNAUTHORIZED, "unauthorized",
		                   MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"mailport\"");
	return httpd_events_serve(h->events, conn);
}

int httpd_events_status(struct httpd *h, json_t *v, const struct stats_counters *c)
{
	uint64_t clients, dropped;
	httpd_events_counts(h->events, &clients, &dropped);
	json_t *r =
	    json_pack("{s:I, s:I, s:I}", "max_messages", httpd_int(h->retention_max_messages),
	              "max_age_seconds", httpd_int(h->retention_max_age), "removed",
	              httpd_int(c->retention_removed));
	json_t *e =
	    json_pack("{s:I, s:I}", "clients", httpd_int(clients), "dropped", httpd_int(dropped));
	int rc = json_object_set_new(v, "retention", r);
	rc |= json_object_set_new(v, "events", e);
	return rc < 0 ? -1 : 0;
}
