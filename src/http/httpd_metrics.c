/* httpd_metrics: GET /metrics in Prometheus text (SPEC 3), from one stats
 * snapshot per request, so it never touches loop-owned memory. */
#include <dirent.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "httpd_policy.h"
#include "httpd_priv.h"
#include "httpd_nats.h"
#include "httpd_rspamd.h"
#include "spool.h"

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
void httpd_histogram(struct buf *b, const char *name, const char *help, const double *bounds,
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

enum MHD_Result httpd_metrics(struct httpd *h, struct MHD_Connection *conn)
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
	httpd_nats_metrics(&b, &c);   /* SPEC 9 */
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
