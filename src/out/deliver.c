/* deliver: filter, store, forward (SPEC 5). See deliver.h. */
#include "deliver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filter.h"
#include "log.h"
#include "server.h"
#include "webhook.h"

extern char **environ;

struct deliver_state {
	struct webhook *webhook;
	struct deliver_job *filtering; /* jobs whose filter runs */
	bool stopping;
};

struct deliver_job *deliver_job_new(struct server *srv, size_t nrcpt)
{
	struct deliver_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		return NULL;
	job->rcpt = calloc(nrcpt ? nrcpt : 1, sizeof *job->rcpt);
	if (job->rcpt == NULL) {
		free(job);
		return NULL;
	}
	job->srv = srv;
	if (srv->spool)
		spool_new_id(srv->spool, job->id, sizeof job->id);
	else
		snprintf(job->id, sizeof job->id, "discard.%llu",
		         (unsigned long long)++srv->next_message_id);
	job->env.id = job->id;
	job->env.rcpt = job->rcpt;
	job->env.nrcpt = nrcpt;
	buf_init(&job->trace, 0);
	return job;
}

void deliver_job_free(struct deliver_job *job)
{
	if (job == NULL)
		return;
	buf_free(&job->trace);
	free(job->delivery_json);
	free(job->rcpt);
	free(job);
}

/* ---- verdicts ------------------------------------------------------------------- */

static void deliver_reply(struct deliver_job *job, unsigned code, const char *enhanced,
                          const char *text, bool stored, int err)
{
	struct deliver_verdict v = {
	    .code = code, .enhanced = enhanced, .text = text, .stored = stored, .err = err};
	job->done(job, &v);
}

/* 250 with the id; a filter's text, when it gave one, leads. */
static void deliver_accept(struct deliver_job *job, bool stored)
{
	if (job->text[0])
		snprintf(job->text + strlen(job->text), sizeof job->text - strlen(job->text),
		         ": queued as %s", job->id);
	else
		snprintf(job->text, sizeof job->text, "Ok: queued as %s", job->id);
	deliver_reply(job, 250, "2.0.0", job->text, stored, 0);
}

static void deliver_store_failed(struct deliver_job *job, int rc)
{
	deliver_reply(job, 451, "4.3.0", "Error: queue file write error", false, rc);
}

/* ---- store (and forward) ------------------------------------------------------------- */

static void deliver_store_work(uv_work_t *req)
{
	struct deliver_job *job = req->data;
	struct spool_store_opts opts = {
	    .to_cur = job->delivery_json != NULL,
	    .delivery_json = job->delivery_json,
	};
	job->rc = spool_store_ex(job->srv->spool, &job->env, job->body, job->len, &opts);
}

static void deliver_store_done(uv_work_t *req, int status)
{
	struct deliver_job *job = req->data;
	int rc = status < 0 ? status : job->rc;
	if (rc < 0) {
		deliver_store_failed(job, rc);
		return;
	}
	struct deliver_state *ds = job->srv->deliver;
	/* Store and forward: queued only once it is durably in new/. */
	if (ds && ds->webhook && job->delivery_json == NULL)
		webhook_enqueue(ds->webhook, job->id);
	deliver_accept(job, true);
}

static void deliver_store(struct deliver_job *job)
{
	/* fsync is slow by design: it runs on the thread pool so one slow disk
	 * never stalls the other sessions (SPEC 5). */
	job->work.data = job;
	int rc = uv_queue_work(job->srv->loop, &job->work, deliver_store_work, deliver_store_done);
	if (rc < 0)
		deliver_store_failed(job, rc);
}

/* ---- SMTPD_WEBHOOK_SYNC ------------------------------------------------------------------ */

static void deliver_sync_done(void *ctx, bool delivered, const char *reason)
{
	struct deliver_job *job = ctx;
	struct server *srv = job->srv;
	if (!delivered) {
		const char *kv[] = {"id", job->id, "reason", reason, NULL};
		log_event(CONFIG_LOG_WARN, job->log, "webhook did not take the message", kv);
		/* The reason may name internal hosts: the client gets a plain 451. */
		deliver_reply(job, 451, "4.3.0", "Error: the message could not be delivered now",
		              false, 0);
		return;
	}
	stats_lock(&srv->stats);
	srv->stats.c.delivery_delivered++;
	stats_unlock(&srv->stats);
	const char *kv[] = {"id", job->id, "attempt", "1", NULL};
	log_event(CONFIG_LOG_INFO, job->log, "webhook delivered", kv);
	if (!srv->cfg->webhook_keep) {
		deliver_accept(job, false);
		return;
	}
	char when[32];
	struct tm tm;
	time_t now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	char delivery[160];
	snprintf(delivery, sizeof delivery,
	         "{\"state\":\"delivered\",\"attempts\":1,\"delivered_at\":\"%s\",\"sync\":true}",
	         when);
	job->delivery_json = strdup(delivery);
	if (job->delivery_json == NULL) {
		deliver_store_failed(job, -ENOMEM);
		return;
	}
	deliver_store(job);
}

static void deliver_sync(struct deliver_job *job, struct webhook *wh)
{
	char *env = spool_envelope_json(&job->env);
	int rc =
	    env ? webhook_post(wh, job->id, env, job->parts, 2, deliver_sync_done, job) : -ENOMEM;
	free(env);
	if (rc < 0)
		deliver_reply(job, 451, "4.3.0", "Error: the message could not be delivered now",
		              false, 0);
}

/* ---- after the filter --------------------------------------------------------------------- */

static void deliver_continue(struct deliver_job *job)
{
	struct server *srv = job->srv;
	struct deliver_state *ds = srv->deliver;
	if (srv->cfg->deliver == CONFIG_DELIVER_DISCARD || srv->spool == NULL) {
		deliver_accept(job, false);
		return;
	}
	if (ds && ds->webhook && srv->cfg->webhook_sync) {
		deliver_sync(job, ds->webhook);
		return;
	}
	deliver_store(job);
}

/* ---- SMTPD_FILTER ---------------------------------------------------------------------------- */

static void deliver_filter_unlink(struct deliver_job *job)
{
	struct deliver_state *ds = job->srv->deliver;
	if (job->prev)
		job->prev->next = job->next;
	else if (ds->filtering == job)
		ds->filtering = job->next;
	if (job->next)
		job->next->prev = job->prev;
	job->prev = job->next = NULL;
}

static void deliver_filter_done(void *ctx, const struct filter_result *r)
{
	struct deliver_job *job = ctx;
	struct server *srv = job->srv;
	job->filter = NULL;
	deliver_filter_unlink(job);

	stats_lock(&srv->stats);
	if (r->verdict == FILTER_ACCEPT)
		srv->stats.c.filter_accepted++;
	else if (r->verdict == FILTER_REJECT)
		srv->stats.c.filter_rejected++;
	else
		srv->stats.c.filter_tempfailed++;
	if (r->timed_out)
		srv->stats.c.filter_timeouts++;
	stats_unlock(&srv->stats);

	char status[32] = "";
	if (r->term_signal)
		snprintf(status, sizeof status, "signal %d", r->term_signal);
	else if (!r->timed_out && !r->spawn_failed)
		snprintf(status, sizeof status, "%lld", (long long)r->exit_status);
	const char *verdicts[] = {"accept", "tempfail", "reject"};
	const char *kv[] = {"id",      job->id,
	                    "verdict", verdicts[r->verdict],
	                    "status",  r->timed_out ? "timeout" : status,
	                    "text",    r->text,
	                    NULL};
	log_event(r->verdict == FILTER_ACCEPT ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO, job->log,
	          "filter", kv);

	switch (r->verdict) {
	case FILTER_ACCEPT:
		snprintf(job->text, sizeof job->text, "%s", r->text);
		deliver_continue(job);
		return;
	case FILTER_TEMPFAIL:
		if (r->timed_out)
			deliver_reply(job, 451, "4.3.0", "Error: content filter timed out", false,
			              0);
		else if (r->spawn_failed)
			deliver_reply(job, 451, "4.3.0", "Error: content filter unavailable", false,
			              0);
		else {
			snprintf(job->text, sizeof job->text, "%s",
			         r->text[0] ? r->text : "Error: try again later");
			deliver_reply(job, 451, "4.3.0", job->text, false, 0);
		}
		return;
	case FILTER_REJECT:
		snprintf(job->text, sizeof job->text, "%s",
		         r->text[0] ? r->text : "Error: message content rejected");
		deliver_reply(job, 554, "5.7.1", job->text, false, 0);
		return;
	}
}

static void deliver_filter(struct deliver_job *job)
{
	struct server *srv = job->srv;
	struct deliver_state *ds = srv->deliver;
	char **envp = filter_env_build(&job->env, environ);
	int rc = envp ? 0 : -ENOMEM;
	if (rc == 0)
		rc = filter_start(srv->loop, srv->cfg->filter, srv->cfg->filter_timeout * 1000,
		                  envp, job->parts, 2, job->id, job->log, deliver_filter_done, job,
		                  &job->filter);
	/* The child has its own copy by now. */
	filter_env_free(envp);
	if (rc < 0) {
		deliver_reply(job, 451, "4.3.0", "Error: out of memory", false, rc);
		return;
	}
	job->next = ds->filtering;
	if (ds->filtering)
		ds->filtering->prev = job;
	ds->filtering = job;
}

/* ---- entry points
 * -------------------------------------------------------------------------------- */

void deliver_start(struct deliver_job *job)
{
	struct server *srv = job->srv;
	struct deliver_state *ds = srv->deliver;
	bool filter = srv->cfg->filter[0] != '\0';
	bool sync = ds && ds->webhook && srv->cfg->webhook_sync && srv->spool;
	if (filter && (ds == NULL || ds->stopping)) {
		/* Pipelined input may complete a message after the drain killed the
		 * filters: it must not slip through unfiltered. */
		deliver_reply(job, 451, "4.3.0", "Error: shutting down, try again later", false, 0);
		return;
	}
	if (filter || sync) {
		/* What the filter and the webhook see is the stored file, its trace
		 * headers included: SpamAssassin and friends want the Received line. */
		if (spool_trace_headers(srv->spool, &job->env, &job->trace) < 0) {
			deliver_reply(job, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
			return;
		}
		job->parts[0] = uv_buf_init(job->trace.data, (unsigned)job->trace.len);
		job->parts[1] = uv_buf_init((char *)job->body, (unsigned)job->len);
	}
	if (filter) {
		deliver_filter(job);
		return;
	}
	deliver_continue(job);
}

int deliver_init(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct deliver_state *ds = calloc(1, sizeof *ds);
	if (ds == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	srv->deliver = ds;
	if (cfg->webhook_url[0] == '\0' || srv->spool == NULL)
		return 0;
	struct webhook_options opt = {
	    .url = cfg->webhook_url,
	    .format = cfg->webhook_format,
	    .secret = cfg->webhook_secret,
	    .timeout_ms = cfg->webhook_timeout * 1000,
	    .keep = cfg->webhook_keep,
	    .retry_min_ms = cfg->webhook_retry_min * 1000,
	    .retry_max_ms = cfg->webhook_retry_max * 1000,
	    .max_age_s = cfg->webhook_max_age,
	    .concurrency =
	        cfg->webhook_concurrency > 1000 ? 1000u : (unsigned)cfg->webhook_concurrency,
	    .version = MAILPORT_VERSION,
	};
	if (webhook_new(srv->loop, &opt, srv->spool, &srv->stats, &ds->webhook, err, errlen) < 0)
		return -1;
	webhook_scan(ds->webhook);
	/* Not the URL: it may carry credentials. */
	log_info("webhook delivery on: format %s%s, concurrency %u",
	         cfg->webhook_format == CONFIG_WEBHOOK_RAW ? "raw" : "json",
	         cfg->webhook_sync ? ", sync" : "", opt.concurrency);
	return 0;
}

void deliver_stop(struct server *srv)
{
	struct deliver_state *ds = srv->deliver;
	if (ds == NULL || ds->stopping)
		return;
	ds->stopping = true;
	/* filter_kill may finish the job at once, which unlinks it. */
	while (ds->filtering) {
		struct deliver_job *job = ds->filtering;
		deliver_filter_unlink(job);
		filter_kill(job->filter);
	}
	webhook_stop(ds->webhook);
}

void deliver_free(struct server *srv)
{
	struct deliver_state *ds = srv->deliver;
	if (ds == NULL)
		return;
	webhook_free(ds->webhook);
	free(ds);
	srv->deliver = NULL;
}
