/* httpd_policy: the inbound recipient policy (SPEC 8) in /status and /metrics,
 * from a stats snapshot (so, like the rest of httpd, it never touches
 * loop-owned memory). Kept apart from httpd.c. */
#ifndef MAILPORT_HTTPD_POLICY_H
#define MAILPORT_HTTPD_POLICY_H

#include <jansson.h>

#include "buf.h"
#include "stats.h"

/* Add "policy": {"domains", "recipients", "recipient_domains", "file_mtime"
 * (RFC 3339 or null without a file), "reloads", "reload_failures",
 * "reload_error" (null unless the latest reload was refused), "refused":
 * {"relay", "unknown_user"}} to the /status object v. 0, or -1 (out of
 * memory; v is left as it was). */
int httpd_policy_status(json_t *v, const struct stats_counters *c);

/* mailport_rcpt_refused_total{reason="relay"|"unknown_user"} (both always
 * present), mailport_policy_recipients, mailport_policy_reloads_total and
 * mailport_policy_reload_failures_total, in Prometheus text. */
void httpd_policy_metrics(struct buf *b, const struct stats_counters *c);

#endif
