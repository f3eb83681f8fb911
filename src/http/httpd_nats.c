/* httpd_nats: /status "nats" and its /metrics families (SPEC 9). */
#include "httpd_nats.h"

#include <inttypes.h>
#include <stdint.h>

#include "httpd_priv.h"

static json_t *httpd_nats_str(bool on, const char *s)
{
	return on && s[0] ? json_string(s) : json_null();
}

int httpd_nats_status(json_t *v, const struct stats_counters *c)
{
	bool on = c->nats_enabled;
	json_t *r = json_pack(
	    "{s:b, s:o, s:o, s:I, s:I, s:I, s:o}", "connected", (int)(on && c->nats_connected),
	    "server", httpd_nats_str(on && c->nats_connected, c->nats_server), "stream",
	    httpd_nats_str(on, c->nats_stream), "pending", httpd_int(c->nats_pending), "published",
	    httpd_int(c->nats_published), "failed", httpd_int(c->nats_failed), "last_error",
	    httpd_nats_str(on, c->nats_last_error));
	if (r == NULL || json_object_set_new(v, "nats", r) < 0)
		return -1;
	return 0;
}

void httpd_nats_metrics(struct buf *b, const struct stats_counters *c)
{
	buf_printf(b,
	           "# HELP mailport_nats_connected Whether the NATS connection is up (1) or not "
	           "(0; also when SMTPD_NATS_URL is empty).\n"
	           "# TYPE mailport_nats_connected gauge\n"
	           "mailport_nats_connected %d\n"
	           "# HELP mailport_nats_pending Publishes sent to JetStream and not acknowledged "
	           "yet.\n"
	           "# TYPE mailport_nats_pending gauge\n"
	           "mailport_nats_pending %" PRIu64 "\n"
	           "# HELP mailport_nats_published_total Messages JetStream acknowledged.\n"
	           "# TYPE mailport_nats_published_total counter\n"
	           "mailport_nats_published_total %" PRIu64 "\n"
	           "# HELP mailport_nats_failed_total Publishes that failed or were not "
	           "acknowledged within SMTPD_NATS_TIMEOUT.\n"
	           "# TYPE mailport_nats_failed_total counter\n"
	           "mailport_nats_failed_total %" PRIu64 "\n",
	           c->nats_enabled && c->nats_connected ? 1 : 0, c->nats_pending, c->nats_published,
	           c->nats_failed);
	httpd_histogram(b, "mailport_nats_publish_ack_duration_seconds",
	                "Time from handing a message to the publisher to JetStream's "
	                "acknowledgement.",
	                stats_latency_bounds, STATS_LATENCY_BUCKETS, c->nats_latency,
	                c->nats_latency_sum_us, c->nats_latency_count);
}
