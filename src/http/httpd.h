/* httpd: the HTTP side port (SPEC section 3) on libmicrohttpd, JSON by jansson.
 *
 * libmicrohttpd answers on its own thread. Everything it reports comes from
 * stats_snapshot() (consistent, under the stats mutex) and stats_alive() (the
 * loop's heartbeat), so the HTTP thread never touches loop-owned memory. */
#ifndef MAILPORT_HTTPD_H
#define MAILPORT_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"
#include "stats.h"

struct spool;
struct httpd;

struct httpd_options {
	const struct endpoint *bind; /* address:port to listen on */
	const char *version;         /* MAILPORT_VERSION */
	const char *token;           /* SMTPD_HTTP_TOKEN, "" = none (protects /metrics) */
	const char *allowed_hosts;   /* SMTPD_HTTP_ALLOWED_HOSTS, checked when there is no token */
	struct stats *stats;         /* outlives the httpd */
	struct spool *spool;         /* the /messages API (outlives the httpd); NULL: empty */
	size_t max_event_clients;    /* SMTPD_HTTP_MAX_EVENT_CLIENTS: /events streams at once */
	bool ui;                     /* SMTPD_HTTP_UI: GET / serves the web UI */
	uint64_t retention_max_messages; /* SMTPD_RETENTION_*: shown in /status */
	uint64_t retention_max_age;
};

/* Start listening. Returns 0, or a negative errno with a one-line message in err
 * ("cannot listen on 127.0.0.1:8080: Address already in use"). */
int httpd_start(const struct httpd_options *opt, struct httpd **out, char *err, size_t errlen);
/* Stop answering and free; NULL is a no-op. */
void httpd_stop(struct httpd *h);

/* The port actually bound (the one asked for, or the kernel's pick for port 0). */
uint16_t httpd_port(const struct httpd *h);

/* --healthcheck: GET /readyz from the service described by the SMTPD_HTTP value
 * `http` (an ANY address is probed on 127.0.0.1 or ::1), with a short timeout.
 * Returns 0 when it answered 200, 1 otherwise (and "off" is 1). Blocking; used
 * only by the separate --healthcheck process. */
int httpd_healthcheck(const char *http);

/* The Host check of a side port without a token (SPEC 3): true when host
 * (a Host header value, port and all; NULL when absent) is an IP literal,
 * localhost, or matches the comma list `allowed` ("a.example, *.b.example"). */
bool httpd_host_allowed(const char *host, const char *allowed);

#endif
