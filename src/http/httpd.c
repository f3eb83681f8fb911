/* httpd: the HTTP side port (SPEC section 3).
 *
 * libmicrohttpd runs one internal epoll thread behind a front door of our own
 * (httpd_front.c) that accepts, answers health at once and hands libmicrohttpd
 * only clients whose request head is complete. Every handler reads the
 * service's state through stats_snapshot() (one consistent copy per request)
 * or stats_alive(), plus fields that are constant once httpd_start() returns,
 * so nothing here races with the SMTP loop. */
#include "httpd.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>

#include "buf.h"
#include "httpd_events.h"
#include "httpd_front.h"
#include "httpd_priv.h"
#include "httpd_policy.h"
#include "httpd_nats.h"
#include "httpd_rspamd.h"
#include "httpd_ui.h"
#include "messages.h"
#include "messages_mime.h"
#include "spool.h"

typedef enum MHD_Result (*httpd_handler)(struct httpd *h, struct MHD_Connection *conn);

struct httpd_route {
	const char *path;
	httpd_handler fn;
	bool needs_token;
	bool health; /* never refused for its Host: probes send the pod's IP, or anything */
};

/* Marks "headers seen" in *con_cls; any non-NULL pointer would do. */
static char httpd_seen;

/* ---- responses ---------------------------------------------------------- */

/* Queue `body` (malloc'ed, ownership taken in every case) with the headers every
 * answer carries, plus one optional extra header. */
enum MHD_Result httpd_send(struct MHD_Connection *conn, unsigned status, const char *type,
                           char *body, size_t len, const char *hname, const char *hvalue)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	enum MHD_Result ok = MHD_YES;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
	    (hname && MHD_add_response_header(r, hname, hvalue) != MHD_YES))
		ok = MHD_NO;
	if (ok == MHD_YES)
		ok = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ok;
}

/* Serialise `v` (reference taken) compactly with a trailing newline. */
enum MHD_Result httpd_send_json(struct MHD_Connection *conn, unsigned status, json_t *v,
                                const char *hname, const char *hvalue)
{
	if (v == NULL)
		return MHD_NO;
	/* 15 digits: a score read from an envelope prints as it was written. */
	char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(v);
	if (s == NULL)
		return MHD_NO;
	size_t len = strlen(s);
	char *body = malloc(len + 2);
	if (body == NULL) {
		free(s);
		return MHD_NO;
	}
	memcpy(body, s, len);
	body[len] = '\n';
	body[len + 1] = '\0';
	free(s);
	return httpd_send(conn, status, HTTPD_JSON, body, len + 1, hname, hvalue);
}

enum MHD_Result httpd_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                            const char *hname, const char *hvalue)
{
	return httpd_send_json(conn, status, json_pack("{s:s}", "error", msg), hname, hvalue);
}

/* JSON integers are signed 64-bit; a counter past that is clamped, not wrapped. */
json_int_t httpd_int(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

/* ---- state shared by /status, /readyz and /metrics ----------------------- */

/* Ready means what SPEC 3 says for /readyz, and the loop must be beating too: a
 * stalled loop accepts no mail. Writes the reasons it is not, "; "-separated. */
static bool httpd_ready(struct httpd *h, const struct stats_counters *c, char *why, size_t len)
{
	bool alive = stats_alive(h->stats);
	why[0] = '\0';
	/* Issue 12: the failing check names its cause, as the readiness probe
	 * (readiness.c) or a store found it. */
	char spool[sizeof c->spool_error + 32], low[128];
	snprintf(spool, sizeof spool, "spool not writable%s%s", c->spool_error[0] ? ": " : "",
	         c->spool_error);
	snprintf(low, sizeof low,
	         "spool below SMTPD_SPOOL_MIN_FREE: %" PRIu64 " bytes free, %" PRIu64 " needed",
	         c->spool_free_bytes, c->spool_min_free);
	struct {
		bool bad;
		const char *text;
	} checks[] = {
	    {c->draining, "draining"},
	    {!alive, "SMTP loop stalled"},
	    {!c->listeners_bound, "listeners not bound"},
	    {c->listeners_bound && c->listener_error[0] != '\0', c->listener_error},
	    {!c->spool_writable, spool},
	    {c->spool_low, low},
	    {c->nats_enabled && c->nats_unready[0] != '\0', c->nats_unready}, /* SPEC 9 */
	};
	bool ready = true;
	size_t used = 0;
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		if (!checks[i].bad)
			continue;
		int n = snprintf(why + used, len - used, "%s%s", ready ? "" : "; ", checks[i].text);
		if (n > 0 && (size_t)n < len - used)
			used += (size_t)n;
		ready = false;
	}
	return ready;
}

static void httpd_rfc3339(time_t t, char *out, size_t len)
{
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "1970-01-01T00:00:00Z");
}

uint64_t httpd_uptime(const struct stats *st)
{
	time_t now = time(NULL);
	return now > st->started_at ? (uint64_t)(now - st->started_at) : 0;
}

/* ---- handlers ------------------------------------------------------------ */

static json_t *httpd_listeners_json(const struct stats_listener *l, size_t n)
{
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_pack("{s:s, s:i, s:s, s:b, s:s, s:b, s:s, s:I, s:I, s:I}",
		                      "address", l[i].address, "port", (int)l[i].port, "family",
		                      l[i].ipv6 ? "ipv6" : "ipv4", "any", (int)l[i].any, "tls",
		                      l[i].tls ? l[i].tls : "none", "proxy", (int)l[i].proxy,
		                      "state", l[i].state ? l[i].state : "closed",
		                      "connections_active", httpd_int(l[i].connections_active),
		                      "connections_total", httpd_int(l[i].connections_total),
		                      "messages_accepted", httpd_int(l[i].messages_accepted));
		/* Issue 12: why a listener in state "error" does not accept. */
		if (o != NULL && l[i].error[0] != '\0' &&
		    json_object_set_new(o, "error", json_string(l[i].error)) < 0) {
			json_decref(o);
			o = NULL;
		}
		if (json_array_append_new(a, o) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The delivery queue (SPEC 5) and the filter's verdicts, added to /status. */
static int httpd_delivery_json(json_t *v, const struct stats_counters *c)
{
	int64_t now = (int64_t)time(NULL);
	uint64_t oldest = c->delivery_oldest > 0 && now > c->delivery_oldest
	                      ? (uint64_t)(now - c->delivery_oldest)
	                      : 0;
	json_t *d = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I}", "pending", httpd_int(c->delivery_pending), "delivered",
	    httpd_int(c->delivery_delivered), "failed", httpd_int(c->delivery_failed), "retries",
	    httpd_int(c->delivery_retries), "oldest_pending_seconds", httpd_int(oldest));
	json_t *f =
	    json_pack("{s:I, s:I, s:I, s:I}", "accepted", httpd_int(c->filter_accepted), "rejected",
	              httpd_int(c->filter_rejected), "tempfailed", httpd_int(c->filter_tempfailed),
	              "timeouts", httpd_int(c->filter_timeouts));
	if (json_object_set_new(v, "delivery", d) < 0 || json_object_set_new(v, "filter", f) < 0)
		return -1;
	return 0;
}

/* Issue 12, added to /status: "readiness" (why it is not ready, the latest
 * probe, the spool as it found it) and the largest loop lag of the last minute. */
static int httpd_readiness_json(json_t *v, const struct stats_counters *c, bool ready,
                                const char *why)
{
	json_t *spool =
	    json_pack("{s:b, s:b, s:I}", "writable", (int)c->spool_writable, "below_min_free",
	              (int)c->spool_low, "min_free_bytes", httpd_int(c->spool_min_free));
	json_t *r = json_pack("{s:b, s:I, s:o}", "probe_ok", (int)c->probe_ok, "probe_failures",
	                      httpd_int(c->probe_failures), "spool", spool);
	/* Each call takes its value's reference, whether it succeeds or not. */
	int rc = r == NULL ? -1 : 0;
	if (r != NULL && c->spool_probed)
		rc |= json_object_set_new(spool, "free_bytes",
		                          json_integer(httpd_int(c->spool_free_bytes)));
	if (r != NULL && c->spool_error[0] != '\0')
		rc |= json_object_set_new(spool, "error", json_string(c->spool_error));
	if (r != NULL && !ready)
		rc |= json_object_set_new(r, "reason", json_string(why));
	rc |= json_object_set_new(v, "readiness", r);
	rc |=
	    json_object_set_new(v, "loop_lag_ms_max", json_real((double)c->loop_lag_max_us / 1e3));
	return rc < 0 ? -1 : 0;
}

/* One consistent copy of the counters and the readiness derived from it, for
 * /status and /metrics alike. *l is malloc'ed. Returns 0 or -ENOMEM. */
int httpd_snapshot(struct httpd *h, struct stats_counters *c, struct stats_listener **l, size_t *n,
                   bool *ready, char *why, size_t whylen)
{
	if (stats_snapshot(h->stats, c, l, n) < 0)
		return -ENOMEM;
	*ready = httpd_ready(h, c, why, whylen);
	return 0;
}

static enum MHD_Result httpd_status(struct httpd *h, struct MHD_Connection *conn)
{
	struct stats_counters c;
	struct stats_listener *l;
	size_t n;
	char why[512];
	bool ready;
	if (httpd_snapshot(h, &c, &l, &n, &ready, why, sizeof why) < 0)
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	char started[32];
	httpd_rfc3339(h->stats->started_at, started, sizeof started);
	json_t *listeners = httpd_listeners_json(l, n);
	free(l);
	if (listeners == NULL)
		return MHD_NO;
	/* "O" takes its own reference, so `listeners` is released the same way
	 * whether json_pack succeeds or not. */
	json_t *v =
	    json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:b, s:O,"
	              " s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}}",
	              "service", "mailport", "version", h->version, "hostname", h->stats->hostname,
	              "started_at", started, "uptime_seconds", httpd_int(httpd_uptime(h->stats)),
	              "ready", (int)ready, "draining", (int)c.draining, "listeners", listeners,
	              "connections", "active", httpd_int(c.connections_active), "total",
	              httpd_int(c.connections_total), "refused", httpd_int(c.connections_refused),
	              "messages", "accepted", httpd_int(c.messages_accepted), "rejected",
	              httpd_int(c.messages_rejected), "bytes", httpd_int(c.messages_bytes));
	json_decref(listeners);
	/* The effective connection limit, after RLIMIT_NOFILE (SPEC 7). */
	json_t *limits = json_pack(
	    "{s:I, s:o}", "max_connections", httpd_int(c.max_connections), "open_files",
	    c.nofile_limit == UINT64_MAX ? json_null() : json_integer(httpd_int(c.nofile_limit)));
	if (v != NULL && (limits == NULL || json_object_set_new(v, "limits", limits) < 0)) {
		json_decref(v);
		v = NULL;
	} else if (v == NULL) {
		json_decref(limits);
	}
	if (v != NULL &&
	    (httpd_delivery_json(v, &c) < 0 || httpd_readiness_json(v, &c, ready, why) < 0 ||
	     httpd_policy_status(v, &c) < 0 || httpd_rspamd_status(v, &c) < 0 ||
	     httpd_nats_status(v, &c) < 0 || httpd_events_status(h, v, &c) < 0)) {
		json_decref(v);
		v = NULL;
	}
	return httpd_send_json(conn, MHD_HTTP_OK, v, NULL, NULL);
}

/* Liveness is the SMTP loop's heartbeat, not this thread's: a loop stuck in a
 * blocking call must fail the probe so the orchestrator restarts us. Returns the
 * status and the body (NULL when out of memory). */
static unsigned httpd_livez_json(struct httpd *h, json_t **out)
{
	if (stats_alive(h->stats)) {
		*out = json_pack("{s:s}", "status", "ok");
		return MHD_HTTP_OK;
	}
	uint64_t last = atomic_load(&h->stats->heartbeat_ms);
	uint64_t now = stats_now_ms();
	char why[96];
	snprintf(why, sizeof why, "SMTP loop has not run for %" PRIu64 " ms",
	         now > last ? now - last : 0);
	*out = json_pack("{s:s, s:s}", "status", "stalled", "reason", why);
	return MHD_HTTP_SERVICE_UNAVAILABLE;
}

static unsigned httpd_readyz_json(struct httpd *h, json_t **out)
{
	struct stats_counters c;
	struct stats_listener *l;
	size_t n;
	*out = NULL;
	if (stats_snapshot(h->stats, &c, &l, &n) < 0)
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	free(l);
	char why[512];
	if (httpd_ready(h, &c, why, sizeof why)) {
		*out = json_pack("{s:s}", "status", "ready");
		return MHD_HTTP_OK;
	}
	*out =
	    json_pack("{s:s, s:s}", "status", c.draining ? "draining" : "not ready", "reason", why);
	return MHD_HTTP_SERVICE_UNAVAILABLE;
}

static enum MHD_Result httpd_livez(struct httpd *h, struct MHD_Connection *conn)
{
	json_t *v;
	unsigned st = httpd_livez_json(h, &v);
	return httpd_send_json(conn, st, v, NULL, NULL);
}

static enum MHD_Result httpd_readyz(struct httpd *h, struct MHD_Connection *conn)
{
	json_t *v;
	unsigned st = httpd_readyz_json(h, &v);
	if (v == NULL)
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	return httpd_send_json(conn, st, v, NULL, NULL);
}

/* The front door's answer to a health route (httpd_front.h): the same JSON
 * as above, built on the front thread from the same snapshot. */
static int httpd_front_health(void *ctx, const char *path, char **body, size_t *len)
{
	struct httpd *h = ctx;
	json_t *v;
	unsigned st =
	    strcmp(path, "/readyz") == 0 ? httpd_readyz_json(h, &v) : httpd_livez_json(h, &v);
	*body = NULL;
	if (v == NULL)
		return -1;
	char *s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (s == NULL)
		return -1;
	size_t n = strlen(s);
	char *b = realloc(s, n + 2);
	if (b == NULL) {
		free(s);
		return -1;
	}
	b[n] = '\n';
	b[n + 1] = '\0';
	*body = b;
	*len = n + 1;
	return (int)st;
}

static const struct httpd_route httpd_routes[] = {
    {"/status", httpd_status, false, false},  {"/livez", httpd_livez, false, true},
    {"/healthz", httpd_livez, false, true},   {"/readyz", httpd_readyz, false, true},
    {"/metrics", httpd_metrics, true, false},
};

/* ---- dispatch ------------------------------------------------------------ */

bool httpd_authorized(struct httpd *h, struct MHD_Connection *conn);

/* /messages (SPEC 3): token first, then messages.c decides. */
static enum MHD_Result httpd_messages(struct httpd *h, struct MHD_Connection *conn, const char *url,
                                      size_t plen, const char *method)
{
	if (!httpd_authorized(h, conn))
		return httpd_error(conn, MHD_HTTP_UNAUTHORIZED, "unauthorized",
		                   MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"mailport\"");
	char *path = strndup(url + 9, plen - 9);
	if (path == NULL)
		return MHD_NO;
	int mime_res; /* parts, html, DELETE all: messages_mime.c (issue 17) */
	if (messages_mime_route(h, conn, path, method, &mime_res)) {
		free(path);
		return (enum MHD_Result)mime_res;
	}
	struct messages_reply r;
	struct messages_query q = {
	    .limit = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit"),
	    .offset = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset"),
	    .before = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "before"),
	    .q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "q"),
	};
	messages_handle(h->spool, method, path, &q, &r);
	free(path);
	if (r.fd >= 0) {
		/* libmicrohttpd owns the descriptor from here and sends the file. */
		struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)r.size, r.fd);
		if (resp == NULL) {
			close(r.fd);
			return MHD_NO;
		}
		enum MHD_Result ok = MHD_YES;
		if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "message/rfc822") !=
		        MHD_YES ||
		    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") !=
		        MHD_YES ||
		    /* a browser never sniffs the stored bytes into HTML */
		    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES)
			ok = MHD_NO;
		if (ok == MHD_YES)
			ok = MHD_queue_response(conn, MHD_HTTP_OK, resp);
		MHD_destroy_response(resp);
		return ok;
	}
	if (r.status == MHD_HTTP_NO_CONTENT) {
		char *empty = malloc(1);
		if (empty == NULL)
			return MHD_NO;
		return httpd_send(conn, MHD_HTTP_NO_CONTENT, HTTPD_JSON, empty, 0, NULL, NULL);
	}
	if (r.json == NULL)
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	return httpd_send_json(conn, r.status, r.json, r.allow ? MHD_HTTP_HEADER_ALLOW : NULL,
	                       r.allow);
}

/* Compares in time that depends only on the lengths, so a remote client cannot
 * find the token byte by byte from response times. */
bool httpd_token_equal(const char *want, size_t wlen, const char *got)
{
	size_t glen = strlen(got);
	unsigned char diff = wlen != glen;
	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? got[i] : 0);
	return diff == 0;
}

/* RFC 6750 section 2.1: "Authorization: Bearer <token>", scheme case-insensitive. */
bool httpd_authorized(struct httpd *h, struct MHD_Connection *conn)
{
	if (h->token_len == 0)
		return true;
	const char *v =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (v == NULL || strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
		return false;
	v += 6;
	while (*v == ' ' || *v == '\t')
		v++;
	return httpd_token_equal(h->token, h->token_len, v);
}

/* %HH decoding of the path and the query arguments, as libmicrohttpd's own,
 * except that a control octet, raw or decoded (%00 above all), makes the whole
 * value HTTPD_BAD_URL: a NUL would otherwise cut a path short, so that
 * "/messages/<id>%00/../x" reached <id> (issue 13). httpd_access answers 400. */
#define HTTPD_BAD_URL "\x01"
static size_t httpd_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	size_t o = 0;
	for (size_t i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%' && isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = {s[i + 1], s[i + 2], '\0'};
			c = (unsigned char)strtoul(hex, NULL, 16);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f) {
			strcpy(s, HTTPD_BAD_URL);
			return 1;
		}
		s[o++] = (char)c;
	}
	s[o] = '\0';
	return o;
}

static enum MHD_Result httpd_access(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
	struct httpd *h = cls;
	(void)version;
	(void)upload_data;
	/* libmicrohttpd 0.9.75 marks a response queued on the first call (headers
	 * just parsed) "Connection: close"; answering on the second keeps
	 * keep-alive (TOOLS.md). */
	if (*con_cls == NULL) {
		*con_cls = &httpd_seen;
		return MHD_YES;
	}
	/* A body is read and dropped, so the connection stays in step. */
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (strcmp(url, HTTPD_BAD_URL) == 0)
		return httpd_error(conn, MHD_HTTP_BAD_REQUEST,
		                   "bad request: control octet in the path", NULL, NULL);
	/* libmicrohttpd has already cut the query string off; be sure anyway. */
	size_t plen = strcspn(url, "?");
	const struct httpd_route *route = NULL;
	for (size_t i = 0; i < sizeof httpd_routes / sizeof httpd_routes[0]; i++) {
		if (strlen(httpd_routes[i].path) == plen &&
		    memcmp(httpd_routes[i].path, url, plen) == 0) {
			route = &httpd_routes[i];
			break;
		}
	}
	/* Without a token, DNS rebinding is stopped by the Host check (SPEC 3);
	 * health routes are never refused. */
	if (h->token_len == 0 && (route == NULL || !route->health) &&
	    !httpd_host_allowed(
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
	        h->allowed_hosts))
		return httpd_error(
		    conn, MHD_HTTP_FORBIDDEN,
		    "host not allowed: set SMTPD_HTTP_ALLOWED_HOSTS or SMTPD_HTTP_TOKEN", NULL,
		    NULL);
	if (plen >= 9 && memcmp(url, "/messages", 9) == 0 && (plen == 9 || url[9] == '/'))
		return httpd_messages(h, conn, url, plen, method);
	/* Issue 17: the live events and the web UI. */
	if (plen == 7 && memcmp(url, "/events", 7) == 0)
		return httpd_events_route(h, conn, method);
	if (httpd_ui_path(url, plen))
		return httpd_ui_serve(conn, h->ui, url, plen, method);
	if (route == NULL)
		return httpd_error(conn, MHD_HTTP_NOT_FOUND, "not found", NULL, NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return httpd_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		                   MHD_HTTP_HEADER_ALLOW, HTTPD_ALLOW);
	if (route->needs_token && !httpd_authorized(h, conn))
		return httpd_error(conn, MHD_HTTP_UNAUTHORIZED, "unauthorized",
		                   MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"mailport\"");
	/* For HEAD, libmicrohttpd sends the headers (Content-Length included) and
	 * leaves the body out. */
	return route->fn(h, conn);
}

/* ---- start / stop -------------------------------------------------------- */

/* Unix time the process started: /proc/self/stat field 22 (clock ticks after
 * boot) plus btime from /proc/stat. Falls back to `fallback`. */
static double httpd_process_start(time_t fallback)
{
	double start = (double)fallback;
	char line[1024];
	unsigned long long ticks = 0, btime = 0;
	FILE *f = fopen("/proc/self/stat", "re");
	if (f == NULL)
		return start;
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = '\0';
	/* The command name (field 2) may hold spaces and parentheses: skip to
	 * the last ')' and count from field 3. */
	char *p = strrchr(line, ')');
	if (p == NULL)
		return start;
	p++;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu", &ticks) != 1)
		return start;
	f = fopen("/proc/stat", "re");
	if (f == NULL)
		return start;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	long hz = sysconf(_SC_CLK_TCK);
	if (btime == 0 || hz <= 0)
		return start;
	return (double)btime + (double)ticks / (double)hz;
}

/* Bound here rather than by libmicrohttpd so that a failure reports the real
 * errno ("Address already in use"), which MHD_start_daemon() does not. */
static int httpd_listen(const struct endpoint *ep, uint16_t *port)
{
	int fd = socket(ep->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		goto fail;
	/* "::" serves IPv6 only, like the SMTP listeners (SPEC 2). */
	if (ep->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0 ||
	    listen(fd, HTTPD_BACKLOG) < 0)
		goto fail;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                       : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
fail:;
	int e = errno;
	close(fd);
	return -e;
}

int httpd_start(const struct httpd_options *opt, struct httpd **out, char *err, size_t errlen)
{
	*out = NULL;
	struct httpd *h = calloc(1, sizeof *h);
	if (h == NULL) {
		snprintf(err, errlen, "HTTP side port: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	h->stats = opt->stats;
	h->spool = opt->spool;
	h->version = strdup(opt->version ? opt->version : "");
	h->token = strdup(opt->token ? opt->token : "");
	h->allowed_hosts = strdup(opt->allowed_hosts ? opt->allowed_hosts : "");
	if (h->version == NULL || h->token == NULL || h->allowed_hosts == NULL) {
		httpd_stop(h);
		snprintf(err, errlen, "HTTP side port: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	h->token_len = strlen(h->token);
	h->ui = opt->ui;
	h->retention_max_messages = opt->retention_max_messages;
	h->retention_max_age = opt->retention_max_age;
	h->process_start = httpd_process_start(opt->stats->started_at);

	int fd = httpd_listen(opt->bind, &h->port);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", opt->bind->text, strerror(-fd));
		httpd_stop(h);
		return fd;
	}
	/* No MHD_USE_ERROR_LOG: libmicrohttpd stays silent on stderr. It listens
	 * on nothing: the front door accepts and hands it whole request heads
	 * (MHD_add_connection, which needs MHD_USE_ITC to wake its thread). */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                 MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
	/* Issue 17: /events streams suspend their connections between events;
	 * the limit grows by as many, and one address holds at most
	 * HTTPD_EVENTS_PER_ADDRESS of them, so streams never take the slots the
	 * other routes have. */
	size_t nev = opt->max_event_clients < HTTPD_EVENTS_CLIENTS_MAX ? opt->max_event_clients
	                                                               : HTTPD_EVENTS_CLIENTS_MAX;
	if (httpd_events_new(opt->spool, nev, &h->events) < 0) {
		close(fd);
		snprintf(err, errlen, "HTTP side port: %s", strerror(ENOMEM));
		httpd_stop(h);
		return -ENOMEM;
	}
	errno = 0;
	h->daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, httpd_access, h, MHD_OPTION_CONNECTION_LIMIT,
	                     (unsigned)(HTTPD_CONNECTION_LIMIT + nev),
	                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTPD_PER_IP_LIMIT,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_CONNECTION_TIMEOUT,
	                     MHD_OPTION_UNESCAPE_CALLBACK, httpd_unescape, NULL, MHD_OPTION_END);
	int e = errno ? errno : EIO;
	if (h->daemon == NULL) {
		close(fd);
		snprintf(err, errlen, "cannot start the HTTP server on %s: %s", opt->bind->text,
		         strerror(e));
		httpd_stop(h);
		return -e;
	}
	e = -httpd_front_start(fd, h->daemon, httpd_front_health, h, &h->front);
	if (e != 0) {
		snprintf(err, errlen, "cannot start the HTTP server on %s: %s", opt->bind->text,
		         strerror(e));
		httpd_stop(h);
		return -e;
	}
	*out = h;
	return 0;
}

void httpd_stop(struct httpd *h)
{
	if (h == NULL)
		return;
	/* The front door first: it hands connections to the daemon. */
	httpd_front_stop(h->front);
	/* Streams end and suspended connections resume, as MHD_stop_daemon needs. */
	httpd_events_shutdown(h->events);
	/* Joins the thread and closes every connection. */
	if (h->daemon)
		MHD_stop_daemon(h->daemon);
	httpd_events_free(h->events);
	free(h->version);
	free(h->token);
	free(h->allowed_hosts);
	free(h);
}

uint16_t httpd_port(const struct httpd *h)
{
	return h->port;
}
