/* httpd_rspamd: rspamd's checks (SPEC 8) in /status and /metrics, from a
 * stats snapshot (so, like the rest of httpd, it never touches loop-owned
 * memory). Kept apart from httpd.c, which is near its size limit. */
#ifndef MAILPORT_HTTPD_RSPAMD_H
#define MAILPORT_HTTPD_RSPAMD_H

#include <jansson.h>

#include "buf.h"
#include "stats.h"

/* Add "rspamd": {"enabled", "checks": {"<action>": N, ...} (every action,
 * zeros included), "failures", "timeouts", "latency_ms_avg"} to the /status
 * object v. 0, or -1 (out of memory; v is left as it was). */
int httpd_rspamd_status(json_t *v, const struct stats_counters *c);

/* mailport_rspamd_checks_total{action="..."} (every action always present),
 * mailport_rspamd_failures_total{reason="timeout"|"error"} and the
 * mailport_rspamd_check_duration_seconds histogram, in Prometheus text. */
void httpd_rspamd_metrics(struct buf *b, const struct stats_counters *c);

#endif
