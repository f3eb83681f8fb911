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
#include "httpd_front.h"
#include "httpd_policy.h"
#include "httpd_rspamd.h"
#include "messages.h"
#include "spool.h"

/* A side port for probes and scrapes needs few connections; the limit keeps a
 * misbehaving scraper from taking file descriptors the SMTP side needs. These
 * count only clients whose request head is complete: slow ones wait in the
 * front door (httpd_front.h), and health never gets here on its first request. */
#define HTTPD_CONNECTION_LIMIT 256
#define HTTPD_PER_IP_LIMIT     64
/* Seconds an idle HTTP connection is kept (keep-alive included). */
#define HTTPD_CONNECTION_TIMEOUT 10
/* Deep enough that a burst of new connections (probes among them) is not
 * dropped at SYN time while the front door drains the queue. */
#define HTTPD_BACKLOG 1024
/* /metrics grows with the listeners: 3 series of ~120 bytes each. */
#define HTTPD_METRICS_MAX (4u << 20)

#define HTTPD_ALLOW      "GET, HEAD"
#define HTTPD_JSON       "application/json"
#define HTTPD_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

struct httpd {
	struct MHD_Daemon *daemon;
	struct httpd_front *front; /* owns the listening socket */
	struct stats *stats;
	struct spool *spool; /* the /messages API; NULL: none */
	char *version;
	char *token;         /* "" = no token */
	char *allowed_hosts; /* SMTPD_HTTP_ALLOWED_HOSTS */
	size_t token_len;
	uint16_t port;
	double process_start; /* Unix seconds, for process_start_time_seconds */
};

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
static enum MHD_Result httpd_send(struct MHD_Connection *conn, unsigned status, const char *type,
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
static enum MHD_Result httpd_send_json(struct MHD_Connection *conn, unsigned status, json_t *v,
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

static enum MHD_Result httpd_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                                   const char *hname, const char *hvalue)
{
	return httpd_send_json(conn, status, json_pack("{s:s}", "error", msg), hname, hvalue);
}

/* JSON integers are signed 64-bit; a counter past that is clamped, not wrapped. */
static json_int_t httpd_int(uint64_t v)
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

static uint64_t httpd_uptime(const struct stats *st)
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
static int httpd_snapshot(struct httpd *h, struct stats_counters *c, struct stats_listener **l,
                          size_t *n, bool *ready, char *why, size_t whylen)
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
	     httpd_policy_status(v, &c) < 0 || httpd_rspamd_status(v, &c) < 0)) {
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

static void httpd_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			buf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			buf_append(b, "\\n", 2);
		else
			buf_append(b, s, 1);
	}
}

static void httpd_metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void httpd_metric(struct buf *b, const char *name, const char *type, const char *help,
                         uint64_t v)
{
	httpd_metric_head(b, name, type, help);
	buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* One per-listener series; `field` picks the counter by offset. */
static void httpd_listener_metric(struct buf *b, const char *name, const char *type,
                                  const char *help, const struct stats_listener *l, size_t n,
                                  size_t field)
{
	httpd_metric_head(b, name, type, help);
	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		memcpy(&v, (const char *)&l[i] + field, sizeof v);
		buf_printf(b, "%s{address=\"", name);
		httpd_label(b, l[i].address);
		buf_printf(b, "\",port=\"%u\"} %" PRIu64 "\n", (unsigned)l[i].port, v);
	}
}

static uint64_t httpd_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return 0;
	uint64_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n ? n - 1 : 0; /* not counting the directory's own descriptor */
}

/* The standard process_* gauges of the Prometheus client libraries, from cheap
 * reads of /proc/self and getrusage(2). */
static void httpd_process_metrics(struct httpd *h, struct buf *b)
{
	unsigned long long vsz = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE);
	if (page < 0)
		page = 4096;
	httpd_metric(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	             vsz * (uint64_t)page);
	httpd_metric(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	             rss * (uint64_t)page);
	httpd_metric(b, "process_open_fds", "gauge", "Number of open file descriptors.",
	             httpd_open_fds());
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		httpd_metric(b, "process_max_fds", "gauge",
		             "Maximum number of open file descriptors.", (uint64_t)rl.rlim_cur);
	struct rusage ru;
	double cpu = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	httpd_metric_head(b, "process_cpu_seconds_total", "counter",
	                  "Total user and system CPU time spent in seconds.");
	buf_printf(b, "process_cpu_seconds_total %.3f\n", cpu);
	httpd_metric_head(b, "process_start_time_seconds", "gauge",
	                  "Start time of the process since unix epoch in seconds.");
	buf_printf(b, "process_start_time_seconds %.2f\n", h->process_start);
}

static void httpd_delivery_metrics(struct buf *b, const struct stats_counters *c)
{
	int64_t now = (int64_t)time(NULL);
	httpd_metric(b, "mailport_delivery_pending", "gauge",
	             "Messages in new/ waiting for the webhook to take them.", c->delivery_pending);
	httpd_metric(b, "mailport_delivery_delivered_total", "counter",
	             "Messages the webhook answered 2xx.", c->delivery_delivered);
	httpd_metric(b, "mailport_delivery_failed_total", "counter", "Messages moved to failed/.",
	             c->delivery_failed);
	httpd_metric(b, "mailport_delivery_retries_total", "counter",
	             "Webhook attempts that failed and will be retried.", c->delivery_retries);
	httpd_metric(b, "mailport_delivery_oldest_pending_seconds", "gauge",
	             "Age of the oldest message waiting for the webhook.",
	             c->delivery_oldest > 0 && now > c->delivery_oldest
	                 ? (uint64_t)(now - c->delivery_oldest)
	                 : 0);
	httpd_metric(b, "mailport_filter_accepted_total", "counter",
	             "Messages the content filter accepted.", c->filter_accepted);
	httpd_metric(b, "mailport_filter_rejected_total", "counter",
	             "Messages the content filter refused (554).", c->filter_rejected);
	httpd_metric(b, "mailport_filter_tempfailed_total", "counter",
	             "Messages the content filter deferred (451), timeouts included.",
	             c->filter_tempfailed);
	httpd_metric(b, "mailport_filter_timeouts_total", "counter",
	             "Content filters killed after SMTPD_FILTER_TIMEOUT.", c->filter_timeouts);
}

/* Every reason, zeros included, so a rate() never starts from a missing series. */
static void httpd_refused_metrics(struct buf *b, const struct stats_counters *c)
{
	httpd_metric_head(b, "mailport_connections_refused_total", "counter",
	                  "SMTP connections closed before the greeting, by reason.");
	for (size_t i = 0; i < STATS_REFUSED_COUNT; i++)
		buf_printf(b, "mailport_connections_refused_total{reason=\"%s\"} %" PRIu64 "\n",
		           stats_refusal_names[i], c->refused[i]);
}

/* A Prometheus histogram: cumulative buckets (n bounds in seconds, then +Inf:
 * counts[n + 1], not cumulative), sum (seconds) and count. */
static void httpd_histogram(struct buf *b, const char *name, const char *help, const double *bounds,
                            size_t n, const uint64_t *counts, uint64_t sum_us, uint64_t count)
{
	httpd_metric_head(b, name, "histogram", help);
	uint64_t cum = 0;
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cum);
	}
	buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	buf_printf(b, "%s_sum %.6f\n", name, (double)sum_us / 1e6);
	buf_printf(b, "%s_count %" PRIu64 "\n", name, count);
}

static void httpd_latency_metrics(struct buf *b, const struct stats_counters *c)
{
	httpd_histogram(b, "mailport_message_accept_duration_seconds",
	                "Time from the end of a message's data to its 250 reply (storing, "
	                "filter, synchronous webhook).",
	                stats_latency_bounds, STATS_LATENCY_BUCKETS, c->accept_latency,
	                c->accept_latency_sum_us, c->accept_latency_count);
}

/* Issue 12: the readiness probe's findings and the loop's lag (a histogram of
 * how late the heartbeat fires, the same shape as the one above). */
static void httpd_readiness_metrics(struct buf *b, const struct stats_counters *c)
{
	if (c->spool_probed)
		httpd_metric(b, "mailport_spool_free_bytes", "gauge",
		             "Bytes free for mailport on the spool's filesystem (latest probe).",
		             c->spool_free_bytes);
	httpd_metric(b, "mailport_spool_min_free_bytes", "gauge",
	             "Free bytes SMTPD_SPOOL_MIN_FREE asks for (0: none).", c->spool_min_free);
	httpd_metric(b, "mailport_readiness_probe_ok", "gauge",
	             "1 when the latest readiness probe found the spool and listeners fine.",
	             c->probe_ok);
	httpd_metric(b, "mailport_readiness_probe_failures_total", "counter",
	             "Readiness probes that found the spool or a listener failing.",
	             c->probe_failures);
	httpd_histogram(b, "mailport_loop_lag_seconds",
	                "How late the SMTP loop's own heartbeat timer fires.", stats_lag_bounds,
	                STATS_LAG_BUCKETS, c->loop_lag, c->loop_lag_sum_us, c->loop_lag_count);
}

static enum MHD_Result httpd_metrics(struct httpd *h, struct MHD_Connection *conn)
{
	struct stats_counters c;
	struct stats_listener *l;
	size_t n;
	char why[512];
	bool ready;
	if (httpd_snapshot(h, &c, &l, &n, &ready, why, sizeof why) < 0)
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	struct buf b;
	buf_init(&b, HTTPD_METRICS_MAX);

	httpd_metric_head(&b, "mailport_info", "gauge", "Version of mailport, always 1.");
	buf_printf(&b, "mailport_info{version=\"");
	httpd_label(&b, h->version);
	buf_printf(&b, "\"} 1\n");
	httpd_metric(&b, "mailport_ready", "gauge", "1 when /readyz answers 200.", ready);
	httpd_metric(&b, "mailport_draining", "gauge", "1 while shutting down.", c.draining);
	httpd_metric(&b, "mailport_uptime_seconds", "gauge", "Seconds since mailport started.",
	             httpd_uptime(h->stats));
	httpd_metric(&b, "mailport_connections_active", "gauge", "Open SMTP connections.",
	             c.connections_active);
	httpd_metric(&b, "mailport_connections_total", "counter", "SMTP connections accepted.",
	             c.connections_total);
	httpd_refused_metrics(&b, &c);
	httpd_metric(&b, "mailport_messages_accepted_total", "counter",
	             "Messages accepted (answered 250 at end of data).", c.messages_accepted);
	httpd_metric_head(&b, "mailport_messages_rejected_total", "counter",
	                  "Messages refused at the end of their data, by reply code class.");
	buf_printf(&b, "mailport_messages_rejected_total{class=\"4xx\"} %" PRIu64 "\n",
	           c.rejected_4xx);
	buf_printf(&b, "mailport_messages_rejected_total{class=\"5xx\"} %" PRIu64 "\n",
	           c.rejected_5xx);
	httpd_metric(&b, "mailport_message_bytes_total", "counter", "Bytes of accepted messages.",
	             c.messages_bytes);
	if (h->spool != NULL) {
		/* Group commit (issue 14): messages per journal sync is the batch size. */
		uint64_t messages, syncs, failures;
		spool_sync_stats(h->spool, &messages, &syncs, &failures);
		httpd_metric(&b, "mailport_journal_messages_total", "counter",
		             "Messages committed through the journal before their 250.", messages);
		httpd_metric(&b, "mailport_journal_syncs_total", "counter",
		             "Journal syncs (one per batch of messages).", syncs);
		httpd_metric(&b, "mailport_journal_sync_failures_total", "counter",
		             "Journal syncs that failed (their messages got 451 4.3.0).", failures);
	}
	httpd_metric(&b, "mailport_store_failures_total", "counter",
	             "Messages not stored because of a storage error.", c.store_failures);
	httpd_readiness_metrics(&b, &c);
	httpd_delivery_metrics(&b, &c);
	httpd_metric(&b, "mailport_tls_handshakes_total", "counter", "TLS handshakes completed.",
	             c.tls_handshakes);
	httpd_metric(&b, "mailport_tls_handshake_failures_total", "counter",
	             "TLS handshakes that failed or timed out.", c.tls_handshake_failures);
	httpd_metric(&b, "mailport_auth_failures_total", "counter",
	             "AUTH attempts answered 535 (wrong user or password).", c.auth_failures);
	httpd_metric(&b, "mailport_auth_blocked_total", "counter",
	             "AUTH attempts answered 454 4.7.0: too many failures from the address.",
	             c.auth_blocked);
	httpd_latency_metrics(&b, &c);
	httpd_policy_metrics(&b, &c); /* SPEC 8 */
	httpd_rspamd_metrics(&b, &c); /* SPEC 8 */
	httpd_listener_metric(&b, "mailport_listener_connections_active", "gauge",
	                      "Open SMTP connections per listener.", l, n,
	                      offsetof(struct stats_listener, connections_active));
	httpd_listener_metric(&b, "mailport_listener_connections_total", "counter",
	                      "SMTP connections accepted per listener.", l, n,
	                      offsetof(struct stats_listener, connections_total));
	httpd_listener_metric(&b, "mailport_listener_messages_accepted_total", "counter",
	                      "Messages accepted per listener.", l, n,
	                      offsetof(struct stats_listener, messages_accepted));
	free(l);
	httpd_process_metrics(h, &b);

	/* A failed append leaves a truncated text, which a scraper would take as
	 * missing series; answer 500 instead. */
	if (buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL,
		                   NULL);
	}
	size_t len = b.len - 1;
	return httpd_send(conn, MHD_HTTP_OK, HTTPD_PROMETHEUS, b.data, len, NULL, NULL);
}

static const struct httpd_route httpd_routes[] = {
    {"/status", httpd_status, false, false},  {"/livez", httpd_livez, false, true},
    {"/healthz", httpd_livez, false, true},   {"/readyz", httpd_readyz, false, true},
    {"/metrics", httpd_metrics, true, false},
};

/* ---- dispatch ------------------------------------------------------------ */

static bool httpd_authorized(struct httpd *h, struct MHD_Connection *conn);

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
	struct messages_reply r;
	struct messages_query q = {
	    .limit = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit"),
	    .offset = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset"),
	    .before = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "before"),
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
		        MHD_YES)
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
static bool httpd_token_equal(const char *want, size_t wlen, const char *got)
{
	size_t glen = strlen(got);
	unsigned char diff = wlen != glen;
	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? got[i] : 0);
	return diff == 0;
}

/* RFC 6750 section 2.1: "Authorization: Bearer <token>", scheme case-insensitive. */
static bool httpd_authorized(struct httpd *h, struct MHD_Connection *conn)
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
	                 MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
	errno = 0;
	h->daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, httpd_access, h, MHD_OPTION_CONNECTION_LIMIT,
	                     (unsigned)HTTPD_CONNECTION_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	                     (unsigned)HTTPD_PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
	                     (unsigned)HTTPD_CONNECTION_TIMEOUT, MHD_OPTION_UNESCAPE_CALLBACK,
	                     httpd_unescape, NULL, MHD_OPTION_END);
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
	/* Joins the thread and closes every connection. */
	if (h->daemon)
		MHD_stop_daemon(h->daemon);
	free(h->version);
	free(h->token);
	free(h->allowed_hosts);
	free(h);
}

uint16_t httpd_port(const struct httpd *h)
{
	return h->port;
}
