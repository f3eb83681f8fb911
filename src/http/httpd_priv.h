/* httpd_priv: what the side port's route files share (httpd.c owns the
 * daemon and the dispatch; httpd_metrics.c and the other route files answer
 * through these helpers). Not for use outside src/http. */
#ifndef MAILPORT_HTTPD_PRIV_H
#define MAILPORT_HTTPD_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "stats.h"

struct spool;
struct httpd_events;

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
	double process_start;            /* Unix seconds, for process_start_time_seconds */
	struct httpd_events *events;     /* GET /events (httpd_events.h) */
	bool ui;                         /* SMTPD_HTTP_UI: GET / serves the web UI */
	uint64_t retention_max_messages; /* SMTPD_RETENTION_MAX_MESSAGES, for /status */
	uint64_t retention_max_age;      /* SMTPD_RETENTION_MAX_AGE, seconds */
};

/* Queue `body` (malloc'ed, ownership taken in every case) with the headers every
 * answer carries, plus one optional extra header. */
enum MHD_Result httpd_send(struct MHD_Connection *conn, unsigned status, const char *type,
                           char *body, size_t len, const char *hname, const char *hvalue);
/* Serialise `v` (reference taken) compactly with a trailing newline. */
enum MHD_Result httpd_send_json(struct MHD_Connection *conn, unsigned status, json_t *v,
                                const char *hname, const char *hvalue);
/* {"error": msg} with `status`. */
enum MHD_Result httpd_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                            const char *hname, const char *hvalue);
/* JSON integers are signed 64-bit; a counter past that is clamped, not wrapped. */
json_int_t httpd_int(uint64_t v);
/* One consistent copy of the counters and the readiness derived from it, for
 * /status and /metrics alike. *l is malloc'ed. Returns 0 or -ENOMEM. */
int httpd_snapshot(struct httpd *h, struct stats_counters *c, struct stats_listener **l, size_t *n,
                   bool *ready, char *why, size_t whylen);
uint64_t httpd_uptime(const struct stats *st);
/* Bearer token check (RFC 6750 section 2.1); true when no token is set. */
bool httpd_authorized(struct httpd *h, struct MHD_Connection *conn);

/* The token compare, in time that depends only on the lengths. */
bool httpd_token_equal(const char *want, size_t wlen, const char *got);

/* GET /events (httpd_events.c): token (header, or ?token= here only), then the
 * stream. */
enum MHD_Result httpd_events_route(struct httpd *h, struct MHD_Connection *conn,
                                   const char *method);
/* /status "retention" and "events" (httpd_events.c). */
int httpd_events_status(struct httpd *h, json_t *v, const struct stats_counters *c);

/* One Prometheus histogram: counts[0..n] (the last is +Inf) over bounds[0..n-1],
 * the sum in microseconds. httpd_metrics.c. */
struct buf;
void httpd_histogram(struct buf *b, const char *name, const char *help, const double *bounds,
                     size_t n, const uint64_t *counts, uint64_t sum_us, uint64_t count);
/* GET /metrics (httpd_metrics.c). */
enum MHD_Result httpd_metrics(struct httpd *h, struct MHD_Connection *conn);

#endif
