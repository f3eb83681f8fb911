/* httpd_policy: /status "policy" and its /metrics families (SPEC 8). */
#include "httpd_policy.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "httpd_priv.h"

int httpd_policy_status(json_t *v, const struct stats_counters *c)
{
	json_t *mtime = json_null();
	if (c->policy_file) {
		char t[32];
		struct tm tm;
		time_t s = (time_t)c->policy_file_mtime;
		if (gmtime_r(&s, &tm) == NULL ||
		    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
			snprintf(t, sizeof t, "1970-01-01T00:00:00Z");
		mtime = json_string(t);
	}
	json_t *p = json_pack(
	    "{s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:{s:I, s:I}}", "domains",
	    httpd_int(c->policy_domains), "recipients", httpd_int(c->policy_recipients),
	    "recipient_domains", httpd_int(c->policy_recipient_domains), "file_mtime", mtime,
	    "reloads", httpd_int(c->policy_reloads), "reload_failures",
	    httpd_int(c->policy_reload_failures), "reload_error",
	    c->policy_error[0] ? json_string(c->policy_error) : json_null(), "refused", "relay",
	    httpd_int(c->rcpt_refused_relay), "unknown_user", httpd_int(c->rcpt_refused_unknown));
	if (p == NULL || json_object_set_new(v, "policy", p) < 0)
		return -1;
	return 0;
}

static void httpd_policy_metric(struct buf *b, const char *name, const char *type, const char *help,
                                uint64_t v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name,
	           v);
}

void httpd_policy_metrics(struct buf *b, const struct stats_counters *c)
{
	/* Both reasons always, so a rate() never starts from a missing series. */
	buf_printf(b,
	           "# HELP mailport_rcpt_refused_total Recipients refused at RCPT by the inbound "
	           "policy, by reason (relay: 554 5.7.1, unknown_user: 550 5.1.1).\n"
	           "# TYPE mailport_rcpt_refused_total counter\n"
	           "mailport_rcpt_refused_total{reason=\"relay\"} %" PRIu64 "\n"
	           "mailport_rcpt_refused_total{reason=\"unknown_user\"} %" PRIu64 "\n",
	           c->rcpt_refused_relay, c->rcpt_refused_unknown);
	httpd_policy_metric(b, "mailport_policy_recipients", "gauge",
	                    "Addresses in SMTPD_RECIPIENTS_FILE as loaded.", c->policy_recipients);
	httpd_policy_metric(b, "mailport_policy_reloads_total", "counter",
	                    "Recipient tables swapped in after start-up (SIGHUP, file change).",
	                    c->policy_reloads);
	httpd_policy_metric(b, "mailport_policy_reload_failures_total", "counter",
	                    "Reloads of SMTPD_RECIPIENTS_FILE refused (the old table stayed).",
	                    c->policy_reload_failures);
}
