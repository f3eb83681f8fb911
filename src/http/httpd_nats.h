/* httpd_nats: NATS JetStream publishing (SPEC 9) in /status and /metrics,
 * from a stats snapshot (never loop-owned memory), beside httpd_rspamd. */
#ifndef MAILPORT_HTTPD_NATS_H
#define MAILPORT_HTTPD_NATS_H

#include <jansson.h>

#include "buf.h"
#include "stats.h"

/* Add "nats": {"connected", "server", "stream", "pending", "published",
 * "failed", "last_error"} to v; with SMTPD_NATS_URL empty, connected false and
 * the strings null. Returns 0 or -1 (out of memory). */
int httpd_nats_status(json_t *v, const struct stats_counters *c);

/* mailport_nats_connected and mailport_nats_pending (gauges),
 * mailport_nats_published_total and mailport_nats_failed_total (counters), the
 * mailport_nats_publish_ack_duration_seconds histogram, in Prometheus text. */
void httpd_nats_metrics(struct buf *b, const struct stats_counters *c);

#endif
