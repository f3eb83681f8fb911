/* httpd_rspamd: /status "rspamd" and its /metrics families (SPEC 8). */
#include "httpd_rspamd.h"

#include <inttypes.h>
#include <stdint.h>

#include "httpd_priv.h"

#include "rspamd.h"

_Static_assert(RSPAMD_ACTIONS == STATS_RSPAMD_ACTIONS, "a counter per rspamd action");

int httpd_rspamd_status(json_t *v, const struct stats_counters *c)
{
	json_t *checks = json_object();
	for (size_t i = 0; checks != NULL && i < RSPAMD_ACTIONS; i++)
		if (json_object_set_new(checks, rspamd_action_names[i],
		                        json_integer(httpd_int(c->rspamd_checks[i]))) < 0) {
			json_decref(checks);
			checks = NULL;
		}
	if (checks == NULL)
		return -1;
	double avg = c->rspamd_latency_count
	                 ? (double)c->rspamd_latency_sum_us / 1e3 / (double)c->rspamd_latency_count
	                 : 0.0;
	json_t *r = json_pack("{s:b, s:o, s:I, s:I, s:f}", "enabled", (int)c->rspamd_enabled,
	                      "checks", checks, "failures", httpd_int(c->rspamd_failures),
	                      "timeouts", httpd_int(c->rspamd_timeouts), "latency_ms_avg", avg);
	if (r == NULL || json_object_set_new(v, "rspamd", r) < 0)
		return -1;
	return 0;
}

void httpd_rspamd_metrics(struct buf *b, const struct stats_counters *c)
{
	/* Every label value always, so a rate() never starts from a missing series. */
	buf_printf(b,
	           "# HELP mailport_rspamd_checks_total Messages rspamd answered, by its action.\n"
	           "# TYPE mailport_rspamd_checks_total counter\n");
	for (size_t i = 0; i < RSPAMD_ACTIONS; i++)
		buf_printf(b, "mailport_rspamd_checks_total{action=\"%s\"} %" PRIu64 "\n",
		           rspamd_action_names[i], c->rspamd_checks[i]);
	uint64_t timeouts = c->rspamd_timeouts;
	uint64_t errors = c->rspamd_failures > timeouts ? c->rspamd_failures - timeouts : 0;
	buf_printf(b,
	           "# HELP mailport_rspamd_failures_total Checks rspamd did not answer "
	           "(SMTPD_RSPAMD_FAIL decided), by reason.\n"
	           "# TYPE mailport_rspamd_failures_total counter\n"
	           "mailport_rspamd_failures_total{reason=\"timeout\"} %" PRIu64 "\n"
	           "mailport_rspamd_failures_total{reason=\"error\"} %" PRIu64 "\n",
	           timeouts, errors);
	httpd_histogram(b, "mailport_rspamd_check_duration_seconds",
	                "Time from the end of a message's data to rspamd's answer (or its "
	                "failure), waiting for a connection included.",
	                stats_latency_bounds, STATS_LATENCY_BUCKETS, c->rspamd_latency,
	                c->rspamd_latency_sum_us, c->rspamd_latency_count);
}
