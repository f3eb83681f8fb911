/* deliver: stream, filter, store, forward (SPEC 5). See deliver.h. */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "filter.h"
#include "hdredit.h"
#include "natspub.h"
#include "rspamd.h"
#include "spool_commit.h"
#include "spool_writer.h"
#include "stats.h"
#include "webhook.h"

extern char **environ;

struct deliver_env {
	uv_loop_t *loop;
	const struct config *cfg;
	struct spool *spool;
	struct stats *stats;
	struct deliver_hooks hooks;
	struct spool_commit *commit;
	struct webhook *webhook;
	struct rspamd *rspamd; /* NULL: SMTPD_RSPAMD_URL is empty */
	struct natspub *nats;  /* NULL: SMTPD_NATS_URL is empty */
	bool nats_sync;        /* SMTPD_NATS_MODE=sync: published before the 250 */
	int tmp_fd;            /* where a filter's or rspamd's input goes when nothing is stored */
	uint64_t ids;          /* ids of discarded messages */
	struct deliver_msg *ending; /* messages between their end and their verdict */
	size_t nending;
	bool stopping;
};

enum deliver_step {
	STEP_DATA,
	STEP_RSPAMD, /* the file going to disk, then rspamd's check */
	STEP_EDIT,   /* rspamd's header edits, on the thread pool */
	STEP_FILTER,
	STEP_SYNC,
	STEP_COMMIT,
	STEP_DONE
};

struct deliver_msg {
	struct deliver_env *de;
	uint64_t sid;
	char id[SPOOL_ID_MAX];
	struct spool_writer *w; /* NULL: discard without a filter (bytes only counted) */
	uint64_t len;           /* trace + message bytes */
	uint64_t size;          /* the message, as the envelope counts it */
	enum deliver_step step;
	char *mail_from;
	char *env_json; /* the envelope, for the sync webhook and the meta file */
	char *meta;     /* meta/<id>.json's bytes */
	size_t meta_len;
	bool to_cur;
	struct journal_entry entry;
	struct iovec iov[1];
	struct filter_run *filter;
	/* The final envelope (deliver_keep): its strings in env_mem, its
	 * recipients in env_rcpt; the session's own go when deliver_end returns. */
	struct spool_envelope env;
	char *env_mem;
	const char **env_rcpt;
	char *verdict;        /* rspamd's verdict JSON (SPEC 8); NULL: none */
	struct hdredit edits; /* rspamd's header edits, until they are applied */
	int fd;               /* the file after the edits (tmp/<id> again); -1: the writer's */
	uv_work_t work;       /* the edits on the thread pool */
	int work_rc;
	int new_fd;
	uint64_t new_len;
	char text[SPOOL_ID_MAX + 256];
	/* The log context, the session's strings copied: the session may be gone. */
	char log_session[24];
	char log_client[ENDPOINT_TEXT_MAX + 8];
	struct log_ctx log;
	/* SMTPD_NATS_MODE=sync: the message whole, as published (NATS has one
	 * payload). With discard and no checks it is collected here as it comes
	 * (nothing touches the disk), otherwise read back from the file. */
	bool use_mem;
	struct buf mem;
	char *nats_data;
	size_t nats_len;
	struct deliver_msg *prev, *next; /* de->ending */
};

/* ---- messages ------------------------------------------------------------------------- */

static void deliver_msg_free(struct deliver_msg *m, bool remove)
{
	spool_writer_release(m->w, remove);
	if (m->fd >= 0)
		close(m->fd);
	hdredit_free(&m->edits);
	free(m->verdict);
	free(m->env_mem);
	free(m->env_rcpt);
	free(m->mail_from);
	free(m->env_json);
	free(m->meta);
	buf_free(&m->mem);
	free(m->nats_data);
	free(m);
}

static void deliver_unlink(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	if (m->prev)
		m->prev->next = m->next;
	else if (de->ending == m)
		de->ending = m->next;
	if (m->next)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
	de->nending--;
}

/* The message file: rspamd's edited one, or the one that streamed in. */
static int deliver_fd(const struct deliver_msg *m)
{
	return m->fd >= 0 ? m->fd : spool_writer_fd(m->w);
}

/* Keep the final envelope: the session's strings go when deliver_end
 * returns, and rspamd, the filter and the meta file read it later. One block
 * holds every string. 0 or -ENOMEM. */
static int deliver_keep(struct deliver_msg *m, const struct spool_envelope *env)
{
	m->env = *env;
	m->env.id = m->id;
	m->env.verdict_json = NULL;
	const char **fields[] = {&m->env.mail_from,      &m->env.helo,          &m->env.client_addr,
	                         &m->env.local_addr,     &m->env.auth_user,     &m->env.auth_param,
	                         &m->env.tls_version,    &m->env.tls_cipher,    &m->env.hostname,
	                         &m->env.proxy_src_addr, &m->env.proxy_dst_addr};
	size_t nf = sizeof fields / sizeof fields[0], total = 1;
	for (size_t i = 0; i < nf; i++)
		total += *fields[i] ? strlen(*fields[i]) + 1 : 0;
	for (size_t i = 0; i < env->nrcpt; i++)
		total += strlen(env->rcpt[i]) + 1;
	m->env_mem = malloc(total);
	m->env_rcpt = calloc(env->nrcpt ? env->nrcpt : 1, sizeof *m->env_rcpt);
	if (m->env_mem == NULL || m->env_rcpt == NULL)
		return -ENOMEM;
	char *p = m->env_mem;
	for (size_t i = 0; i < nf; i++) {
		if (*fields[i] == NULL)
			continue;
		size_t n = strlen(*fields[i]) + 1;
		memcpy(p, *fields[i], n);
		*fields[i] = p;
		p += n;
	}
	for (size_t i = 0; i < env->nrcpt; i++) {
		size_t n = strlen(env->rcpt[i]) + 1;
		memcpy(p, env->rcpt[i], n);
		m->env_rcpt[i] = p;
		p += n;
	}
	m->env.rcpt = m->env_rcpt;
	return 0;
}

/* The verdict: to the session (found by id, or gone), then the message goes;
 * `keep` when its file is now the spool's (stored), else its name goes too. */
static void deliver_reply(struct deliver_msg *m, unsigned code, const char *enhanced,
                          const char *text, bool stored, int err)
{
	struct deliver_env *de = m->de;
	m->step = STEP_DONE;
	deliver_unlink(m);
	struct deliver_verdict v = {.code = code,
	                            .enhanced = enhanced,
	                            .text = text,
	                            .stored = stored,
	                            .err = err,
	                            .id = m->id,
	                            .mail_from = m->mail_from ? m->mail_from : "",
	                            .size = m->size};
	de->hooks.verdict(de->hooks.owner, m->sid, &v);
	deliver_msg_free(m, !stored);
}

/* 250 with the id; a filter's text, when it gave one, leads. */
static void deliver_accept(struct deliver_msg *m, bool stored)
{
	if (m->text[0])
		snprintf(m->text + strlen(m->text), sizeof m->text - strlen(m->text),
		         ": queued as %s", m->id);
	else
		snprintf(m->text, sizeof m->text, "Ok: queued as %s", m->id);
	deliver_reply(m, 250, "2.0.0", m->text, stored, 0);
}

static void deliver_store_failed(struct deliver_msg *m, int rc)
{
	deliver_reply(m, 451, "4.3.0", "Error: queue file write error", false, rc);
}

/* ---- the group commit -------------------------------------------------------------- */

static void deliver_committed(struct journal_entry *e, void *arg)
{
	struct deliver_msg *m = arg;
	(void)e;
	if (m->entry.rc < 0) {
		deliver_store_failed(m, m->entry.rc);
		return;
	}
	/* Store and forward: queued only once it is durably in new/. */
	if (m->de->webhook && !m->to_cur)
		webhook_enqueue(m->de->webhook, m->id);
	deliver_accept(m, true);
}

static void deliver_commit(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	m->step = STEP_COMMIT;
	if (m->meta == NULL) {
		m->meta = malloc(strlen(m->env_json) + 2);
		if (m->meta == NULL) {
			deliver_store_failed(m, -ENOMEM);
			return;
		}
		m->meta_len = (size_t)sprintf(m->meta, "%s\n", m->env_json);
	}
	int fd = deliver_fd(m);
	m->entry = (struct journal_entry){
	    .id = m->id,
	    .to_cur = m->to_cur,
	    .meta = m->meta,
	    .meta_len = m->meta_len,
	    .fd = fd,
	    .len = m->len,
	    .done = deliver_committed,
	    .arg = m,
	};
	if (fd < 0) {
		m->entry.iovcnt = spool_writer_iov(m->w, m->iov);
		m->entry.iov = m->iov;
	}
	spool_commit_submit(de->commit, &m->entry);
}

/* ---- SMTPD_WEBHOOK_SYNC ---------------------------------------------------------------- */

static void deliver_sync_done(void *ctx, bool delivered, const char *reason)
{
	struct deliver_msg *m = ctx;
	struct deliver_env *de = m->de;
	if (!delivered) {
		const char *kv[] = {"id", m->id, "reason", reason, NULL};
		log_event(CONFIG_LOG_WARN, &m->log,
		          de->nats ? "JetStream did not acknowledge the message"
		                   : "webhook did not take the message",
		          kv);
		/* The reason may name internal hosts: the client gets a plain 451. */
		deliver_reply(m, 451, "4.3.0", "Error: the message could not be delivered now",
		              false, 0);
		return;
	}
	stats_lock(de->stats);
	de->stats->c.delivery_delivered++;
	stats_unlock(de->stats);
	const char *kv[] = {"id", m->id, "attempt", "1", NULL};
	log_event(CONFIG_LOG_INFO, &m->log,
	          de->nats ? "published to JetStream" : "webhook delivered", kv);
	if ((!de->nats && !de->cfg->webhook_keep) || de->spool == NULL ||
	    de->cfg->deliver == CONFIG_DELIVER_DISCARD) {
		deliver_accept(m, false);
		return;
	}
	char when[32];
	struct tm tm;
	time_t now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* The envelope with "delivery" added: its closing brace replaced. */
	size_t n = strlen(m->env_json);
	m->meta = malloc(n + 160);
	if (m->meta == NULL || n == 0 || m->env_json[n - 1] != '}') {
		deliver_store_failed(m, -ENOMEM);
		return;
	}
	m->meta_len = (size_t)sprintf(
	    m->meta,
	    "%.*s,\"delivery\":{\"state\":\"delivered\",\"attempts\":1,\"delivered_at\":\"%s\","
	    "\"sync\":true}}\n",
	    (int)(n - 1), m->env_json, when);
	m->to_cur = true;
	deliver_commit(m);
}

static void deliver_sync(struct deliver_msg *m)
{
	m->step = STEP_SYNC;
	int rc = webhook_post(m->de->webhook, m->id, m->env_json, deliver_fd(m), m->len,
	                      deliver_sync_done, m);
	if (rc < 0)
		deliver_reply(m, 451, "4.3.0", "Error: the message could not be delivered now",
		              false, 0);
}

/* ---- SMTPD_NATS_MODE=sync (SPEC 9) -------------------------------------------------- */

static void deliver_nats_publish(struct deliver_msg *m, char *data, size_t len)
{
	struct natspub_msg nm = {.id = m->id,
	                         .envelope_json = m->env_json,
	                         .mail_from = m->env.mail_from ? m->env.mail_from : "",
	                         .rcpt = m->env.rcpt,
	                         .nrcpt = m->env.nrcpt,
	                         .data = data,
	                         .len = len};
	if (natspub_publish(m->de->nats, &nm, deliver_sync_done, m) < 0)
		deliver_reply(m, 451, "4.3.0", "Error: the message could not be delivered now",
		              false, 0);
}

/* Thread pool: the file (trace headers, message) read whole. */
static void deliver_nats_read_work(uv_work_t *w)
{
	struct deliver_msg *m = w->data;
	int fd = deliver_fd(m);
	m->work_rc = natspub_read_file(fd, m->len, &m->nats_data);
	m->nats_len = (size_t)m->len;
}

static void deliver_nats_read_done(uv_work_t *w, int status)
{
	struct deliver_msg *m = w->data;
	if (status < 0 || m->work_rc < 0) {
		deliver_store_failed(m, status < 0 ? status : m->work_rc);
		return;
	}
	char *data = m->nats_data;
	m->nats_data = NULL;
	deliver_nats_publish(m, data, m->nats_len);
}

static void deliver_nats(struct deliver_msg *m)
{
	m->step = STEP_SYNC;
	if (m->use_mem) {
		size_t len = m->mem.len;
		char *data = malloc(len ? len : 1);
		if (data == NULL) {
			deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
			return;
		}
		memcpy(data, m->mem.data, len);
		buf_free(&m->mem);
		deliver_nats_publish(m, data, len);
		return;
	}
	m->work.data = m;
	int rc =
	    uv_queue_work(m->de->loop, &m->work, deliver_nats_read_work, deliver_nats_read_done);
	if (rc < 0)
		deliver_store_failed(m, rc);
}

/* ---- after the filter ---------------------------------------------------------------- */

static void deliver_continue(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	if (!de->nats_sync && (de->cfg->deliver == CONFIG_DELIVER_DISCARD || de->spool == NULL)) {
		deliver_accept(m, false);
		return;
	}
	/* The envelope as it is stored and posted, the verdict in it. */
	m->env.verdict_json = m->verdict;
	m->env_json = spool_envelope_json(&m->env);
	if (m->env_json == NULL) {
		deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
		return;
	}
	if (de->nats_sync) {
		deliver_nats(m);
		return;
	}
	if (de->webhook && de->cfg->webhook_sync) {
		deliver_sync(m);
		return;
	}
	deliver_commit(m);
}

/* ---- SMTPD_FILTER ------------------------------------------------------------------------ */

static void deliver_filter_done(void *ctx, const struct filter_result *r)
{
	struct deliver_msg *m = ctx;
	struct deliver_env *de = m->de;
	m->filter = NULL;

	stats_lock(de->stats);
	if (r->verdict == FILTER_ACCEPT)
		de->stats->c.filter_accepted++;
	else if (r->verdict == FILTER_REJECT)
		de->stats->c.filter_rejected++;
	else
		de->stats->c.filter_tempfailed++;
	if (r->timed_out)
		de->stats->c.filter_timeouts++;
	stats_unlock(de->stats);

	char status[32] = "";
	if (r->term_signal)
		snprintf(status, sizeof status, "signal %d", r->term_signal);
	else if (!r->timed_out && !r->spawn_failed)
		snprintf(status, sizeof status, "%lld", (long long)r->exit_status);
	const char *verdicts[] = {"accept", "tempfail", "reject"};
	const char *kv[] = {"id",      m->id,
	                    "verdict", verdicts[r->verdict],
	                    "status",  r->timed_out ? "timeout" : status,
	                    "text",    r->text,
	                    NULL};
	log_event(r->verdict == FILTER_ACCEPT ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO, &m->log,
	          "filter", kv);

	switch (r->verdict) {
	case FILTER_ACCEPT:
		snprintf(m->text, sizeof m->text, "%s", r->text);
		if (de->stopping) {
			deliver_reply(m, 451, "4.3.0", "Error: shutting down, try again later",
			              false, 0);
			return;
		}
		deliver_continue(m);
		return;
	case FILTER_TEMPFAIL:
		if (r->timed_out)
			deliver_reply(m, 451, "4.3.0", "Error: content filter timed out", false, 0);
		else if (r->spawn_failed)
			deliver_reply(m, 451, "4.3.0", "Error: content filter unavailable", false,
			              0);
		else {
			snprintf(m->text, sizeof m->text, "%s",
			         r->text[0] ? r->text : "Error: try again later");
			deliver_reply(m, 451, "4.3.0", m->text, false, 0);
		}
		return;
	case FILTER_REJECT:
		snprintf(m->text, sizeof m->text, "%s",
		         r->text[0] ? r->text : "Error: message content rejected");
		deliver_reply(m, 554, "5.7.1", m->text, false, 0);
		return;
	}
}

/* The filter's environment is made when it starts, from the kept envelope
 * (with rspamd's verdict); the file is on disk by then. */
static void deliver_start_filter(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	m->step = STEP_FILTER;
	m->env.verdict_json = m->verdict;
	char **envp = filter_env_build(&m->env, environ);
	if (envp == NULL) {
		deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
		return;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", deliver_fd(m));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 ? -errno : 0;
	if (rc == 0)
		rc = filter_start(de->loop, de->cfg->filter, de->cfg->filter_timeout * 1000, envp,
		                  fd, m->id, &m->log, deliver_filter_done, m, &m->filter);
	if (fd >= 0)
		close(fd);
	filter_env_free(envp);
	if (rc < 0)
		deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, rc);
}

/* ---- rspamd (SPEC 8) ------------------------------------------------------------------- */

/* After rspamd (or without it): the filter, then storing. */
static void deliver_after_rspamd(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	if (de->cfg->filter[0] != '\0') {
		if (de->stopping) {
			deliver_reply(m, 451, "4.3.0", "Error: shutting down, try again later",
			              false, 0);
			return;
		}
		deliver_start_filter(m);
		return;
	}
	deliver_continue(m);
}

static void deliver_edit_work(uv_work_t *w)
{
	struct deliver_msg *m = w->data;
	m->work_rc = rspamd_rewrite(spool_tmp_fd(m->de->spool), m->id, spool_writer_fd(m->w),
	                            m->len, &m->edits, &m->new_fd, &m->new_len);
}

static void deliver_edit_done(uv_work_t *w, int status)
{
	struct deliver_msg *m = w->data;
	hdredit_free(&m->edits);
	int rc = status < 0 ? status : m->work_rc;
	if (rc == -EFBIG) {
		/* Edited in part, a forged Authentication-Results could stay. */
		deliver_reply(m, 552, "5.3.4", "Error: message header too large", false, 0);
		return;
	}
	if (rc < 0) {
		deliver_store_failed(m, rc);
		return;
	}
	if (rc == 1) {
		/* tmp/<id> is the edited file now: the commit, the filter and
		 * the sync webhook read it. The size in the envelope stays the
		 * message's as received. */
		m->fd = m->new_fd;
		m->len = m->new_len;
	}
	deliver_after_rspamd(m);
}

/* The header edits (rspamd's milter block and action, the forged
 * Authentication-Results gone), off the loop: a new tmp/<id>. Nothing to edit
 * when nothing is stored. */
static void deliver_edit(struct deliver_msg *m)
{
	struct deliver_env *de = m->de;
	if (de->cfg->deliver == CONFIG_DELIVER_DISCARD || de->spool == NULL) {
		deliver_after_rspamd(m);
		return;
	}
	m->step = STEP_EDIT;
	m->work.data = m;
	int rc = uv_queue_work(de->loop, &m->work, deliver_edit_work, deliver_edit_done);
	if (rc < 0)
		deliver_store_failed(m, rc);
}

/* Counted for /status and /metrics: an answer by its action (action >= 0),
 * or a failure; a check abandoned by the drain is neither. */
static void deliver_rspamd_count(struct deliver_env *de, const struct rspamd_result *r, int action)
{
	if (r->stopped)
		return;
	struct stats_counters *c = &de->stats->c;
	size_t i = 0;
	while (i < STATS_LATENCY_BUCKETS && (double)r->latency_us > stats_latency_bounds[i] * 1e6)
		i++;
	stats_lock(de->stats);
	if (action >= 0) {
		c->rspamd_checks[action]++;
	} else {
		c->rspamd_failures++;
		c->rspamd_timeouts += r->timed_out;
	}
	c->rspamd_latency[i]++;
	c->rspamd_latency_count++;
	c->rspamd_latency_sum_us += r->latency_us;
	stats_unlock(de->stats);
}

/* rspamd gave no usable answer: SMTPD_RSPAMD_FAIL decides. */
static void deliver_rspamd_unanswered(struct deliver_msg *m, const struct rspamd_result *r)
{
	struct deliver_env *de = m->de;
	const char *kv[] = {"id", m->id, "error", r->error, NULL};
	if (r->stopped || de->stopping) {
		log_event(CONFIG_LOG_INFO, &m->log, "rspamd check abandoned", kv);
		deliver_reply(m, 451, "4.3.0", "Error: shutting down, try again later", false, 0);
		return;
	}
	if (de->cfg->rspamd_fail == CONFIG_RSPAMD_TEMPFAIL) {
		log_event(CONFIG_LOG_WARN, &m->log, "rspamd did not answer; message deferred", kv);
		deliver_reply(m, 451, "4.7.1", "Error: content check unavailable, try again later",
		              false, 0);
		return;
	}
	log_event(CONFIG_LOG_WARN, &m->log,
	          "rspamd did not answer; message accepted without a verdict", kv);
	/* No verdict, but what claims our name still goes (RFC 8601 5). */
	hdredit_free(&m->edits);
	hdredit_init(&m->edits, RSPAMD_TRACE_FIELDS);
	if (hdredit_drop_authres(&m->edits, de->cfg->hostname) < 0) {
		deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
		return;
	}
	deliver_edit(m);
}

static void deliver_rspamd_done(void *ctx, const struct rspamd_result *r)
{
	struct deliver_msg *m = ctx;
	struct deliver_env *de = m->de;
	if (!r->answered) {
		deliver_rspamd_count(de, r, -1);
		deliver_rspamd_unanswered(m, r);
		return;
	}
	struct rspamd_verdict v;
	char why[128];
	if (rspamd_verdict_parse(r->body, r->len, de->cfg->hostname, &v, why, sizeof why) < 0) {
		struct rspamd_result bad = *r;
		bad.answered = false;
		snprintf(bad.error, sizeof bad.error, "unusable answer: %s", why);
		deliver_rspamd_count(de, &bad, -1);
		deliver_rspamd_unanswered(m, &bad);
		return;
	}
	deliver_rspamd_count(de, r, (int)v.action);
	const char *kv[] = {"id",      m->id,  "action", rspamd_action_names[v.action],
	                    "verdict", v.json, NULL};
	/* A refusal at info (with why: the verdict); a stored message's
	 * verdict is in its envelope, so debug is enough. */
	bool refused = v.action == RSPAMD_REJECT || v.action == RSPAMD_SOFT_REJECT ||
	               v.action == RSPAMD_GREYLIST;
	log_event(refused ? CONFIG_LOG_INFO : CONFIG_LOG_DEBUG, &m->log, "rspamd", kv);
	switch (v.action) {
	case RSPAMD_REJECT:
		/* rspamd's own milter default when it gives no message. */
		snprintf(m->text, sizeof m->text, "%s",
		         v.text[0] ? v.text : "Spam message rejected");
		rspamd_verdict_free(&v);
		deliver_reply(m, 554, "5.7.1", m->text, false, 0);
		return;
	case RSPAMD_SOFT_REJECT:
	case RSPAMD_GREYLIST:
		snprintf(m->text, sizeof m->text, "%s", v.text[0] ? v.text : "Try again later");
		rspamd_verdict_free(&v);
		deliver_reply(m, 451, "4.7.1", m->text, false, 0);
		return;
	default:
		break;
	}
	m->verdict = v.json;
	v.json = NULL;
	m->edits = v.edits; /* moved: v holds nothing more */
	deliver_edit(m);
}

/* The file is complete on disk: rspamd reads it. */
static void deliver_flushed_for_rspamd(void *arg, int rc)
{
	struct deliver_msg *m = arg;
	if (rc < 0) {
		deliver_store_failed(m, rc);
		return;
	}
	rc = rspamd_check(m->de->rspamd, &m->env, spool_writer_fd(m->w), m->len,
	                  deliver_rspamd_done, m);
	if (rc < 0) {
		struct rspamd_result r = {.stopped = rc == -ESHUTDOWN};
		snprintf(r.error, sizeof r.error, "cannot start the check: %s", strerror(-rc));
		deliver_rspamd_count(m->de, &r, -1);
		deliver_rspamd_unanswered(m, &r);
	}
}

/* ---- the end of the data --------------------------------------------------------------- */

/* The file is complete on disk (the sync webhook reads it). */
static void deliver_flushed(void *arg, int rc)
{
	struct deliver_msg *m = arg;
	if (rc < 0) {
		deliver_store_failed(m, rc);
		return;
	}
	deliver_continue(m);
}

static void deliver_flushed_for_filter(void *arg, int rc)
{
	struct deliver_msg *m = arg;
	if (rc < 0) {
		deliver_store_failed(m, rc);
		return;
	}
	deliver_start_filter(m);
}

/* The steps (deliver.h): rspamd, its header edits, the filter, then the
 * commit (or discard, or the sync webhook). Each needs the file complete on
 * disk first; storing alone lets a small message go to the journal from
 * memory. */
void deliver_end(struct deliver_msg *m, const struct spool_envelope *env)
{
	struct deliver_env *de = m->de;
	m->size = env->size;
	m->next = de->ending;
	if (de->ending)
		de->ending->prev = m;
	de->ending = m;
	de->nending++;
	m->mail_from = strdup(env->mail_from ? env->mail_from : "");
	if (m->mail_from == NULL || deliver_keep(m, env) < 0) {
		deliver_reply(m, 451, "4.3.0", "Error: out of memory", false, -ENOMEM);
		return;
	}
	bool filter = de->cfg->filter[0] != '\0';
	bool discard = de->cfg->deliver == CONFIG_DELIVER_DISCARD || de->spool == NULL;
	bool sync = !discard && ((de->webhook && de->cfg->webhook_sync) || de->nats_sync);
	if ((filter || de->rspamd) && de->stopping) {
		/* Pipelined input may complete a message after the drain killed the
		 * filters: it must not slip through unchecked. */
		deliver_reply(m, 451, "4.3.0", "Error: shutting down, try again later", false, 0);
		return;
	}
	if (m->w == NULL && m->use_mem) { /* discard, NATS sync, no checks */
		deliver_continue(m);
		return;
	}
	if (m->w == NULL) { /* discard, no filter, no rspamd */
		deliver_accept(m, false);
		return;
	}
	if (de->rspamd || filter) {
		m->step = de->rspamd ? STEP_RSPAMD : STEP_FILTER;
		int rc = spool_writer_finish(
		    m->w, true,
		    de->rspamd ? deliver_flushed_for_rspamd : deliver_flushed_for_filter, m);
		if (rc != 1)
			deliver_store_failed(m, rc < 0 ? rc : -EIO);
		return;
	}
	if (discard) {
		deliver_accept(m, false);
		return;
	}
	m->step = sync ? STEP_SYNC : STEP_COMMIT;
	int rc = spool_writer_finish(m->w, sync, deliver_flushed, m);
	if (rc == 1)
		return;
	if (rc < 0) {
		deliver_store_failed(m, rc);
		return;
	}
	deliver_continue(m);
}

/* ---- the data --------------------------------------------------------------------------- */

static void deliver_on_room(void *arg)
{
	struct deliver_msg *m = arg;
	m->de->hooks.room(m->de->hooks.owner, m->sid);
}

struct deliver_msg *deliver_begin(struct deliver_env *de, uint64_t sid,
                                  const struct spool_envelope *env, const struct log_ctx *log)
{
	struct deliver_msg *m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	m->de = de;
	m->fd = -1;
	hdredit_init(&m->edits, RSPAMD_TRACE_FIELDS);
	m->sid = sid;
	if (de->spool) {
		spool_new_id(de->spool, m->id, sizeof m->id);
	} else if (de->nats_sync) {
		natspub_new_id(de->nats, ++de->ids, m->id, sizeof m->id);
	} else {
		snprintf(m->id, sizeof m->id, "discard.%llu", (unsigned long long)++de->ids);
	}
	if (log) {
		snprintf(m->log_session, sizeof m->log_session, "%s",
		         log->session ? log->session : "");
		snprintf(m->log_client, sizeof m->log_client, "%s", log->client ? log->client : "");
		m->log = (struct log_ctx){log->session ? m->log_session : NULL,
		                          log->client ? m->log_client : NULL, log->listener};
	}
	bool checked = de->cfg->filter[0] != '\0' || de->rspamd != NULL;
	bool discard = de->cfg->deliver == CONFIG_DELIVER_DISCARD || de->spool == NULL;
	if (discard && !checked && de->nats_sync) {
		/* Collected in memory for the publish: the trace headers first. */
		m->use_mem = true;
		buf_init(&m->mem, de->cfg->max_message_size + 64 * 1024);
		struct spool_envelope e = *env;
		e.id = m->id;
		clock_gettime(CLOCK_REALTIME, &e.received_at);
		if (spool_trace_headers(NULL, &e, &m->mem) < 0) {
			deliver_msg_free(m, true);
			return NULL;
		}
		m->len = m->mem.len;
		return m;
	}
	if (discard && !checked)
		return m; /* counted, never kept */
	if (discard && de->tmp_fd < 0) {
		free(m);
		return NULL;
	}
	m->w = spool_writer_new(de->loop, discard ? de->tmp_fd : spool_tmp_fd(de->spool),
	                        discard ? NULL : m->id);
	if (m->w == NULL) {
		free(m);
		return NULL;
	}
	spool_writer_on_room(m->w, deliver_on_room, m);
	/* The trace headers (Return-Path, Received) ahead of the data. */
	struct spool_envelope e = *env;
	e.id = m->id;
	clock_gettime(CLOCK_REALTIME, &e.received_at);
	struct buf trace;
	buf_init(&trace, 0);
	int rc = spool_trace_headers(de->spool, &e, &trace);
	if (rc == 0)
		rc = spool_writer_write(m->w, trace.data, trace.len);
	m->len = trace.len;
	buf_free(&trace);
	if (rc < 0) {
		deliver_msg_free(m, true);
		return NULL;
	}
	return m;
}

const char *deliver_msg_id(const struct deliver_msg *m)
{
	return m->id;
}

int deliver_write(struct deliver_msg *m, const char *data, size_t len)
{
	if (m->use_mem) {
		m->len += len;
		return buf_append(&m->mem, data, len) == 0 ? 0 : -1;
	}
	if (m->w == NULL)
		return 0;
	m->len += len;
	return spool_writer_write(m->w, data, len) == 0 ? 0 : -1;
}

size_t deliver_room(const struct deliver_msg *m)
{
	return m->w ? spool_writer_room(m->w) : SIZE_MAX;
}

void deliver_abort(struct deliver_msg *m)
{
	if (m != NULL)
		deliver_msg_free(m, true);
}

size_t deliver_in_progress(const struct deliver_env *de)
{
	return de ? de->nending : 0;
}

/* ---- set-up and drain ----------------------------------------------------------------- */

int deliver_new(uv_loop_t *loop, const struct config *cfg, struct spool *spool, struct stats *stats,
                const struct deliver_hooks *hooks, struct deliver_env **out, char *err,
                size_t errlen)
{
	*out = NULL;
	struct deliver_env *de = calloc(1, sizeof *de);
	if (de == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	de->loop = loop;
	de->cfg = cfg;
	de->spool = spool;
	de->stats = stats;
	de->hooks = *hooks;
	de->tmp_fd = -1;
	*out = de;
	if (spool != NULL && (de->commit = spool_commit_new(loop, spool)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cfg->rspamd_url[0] != '\0') {
		struct rspamd_options ro = {
		    .url = cfg->rspamd_url,
		    .timeout_ms = cfg->rspamd_timeout * 1000,
		    .concurrency =
		        cfg->rspamd_concurrency > 1000 ? 1000u : (unsigned)cfg->rspamd_concurrency,
		    .mta_name = cfg->hostname,
		    .version = MAILPORT_VERSION,
		};
		if (rspamd_new(loop, &ro, &de->rspamd, err, errlen) < 0)
			return -1;
		stats_lock(stats);
		stats->c.rspamd_enabled = true;
		stats_unlock(stats);
		/* Not the URL: it may carry credentials. */
		log_info(
		    "rspamd checks on: concurrency %u, timeout %llus, %s when it cannot answer",
		    ro.concurrency, (unsigned long long)cfg->rspamd_timeout,
		    cfg->rspamd_fail == CONFIG_RSPAMD_ACCEPT ? "accept" : "tempfail");
	}
	if (spool == NULL && (cfg->filter[0] != '\0' || de->rspamd != NULL)) {
		/* Discard with a filter or rspamd: their input goes to an unnamed
		 * file, nothing is kept. */
		const char *dir = getenv("TMPDIR");
		de->tmp_fd = open(dir && dir[0] ? dir : "/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (de->tmp_fd < 0) {
			snprintf(err, errlen, "%s: cannot open %s for the checks' input: %s",
			         cfg->filter[0] ? "SMTPD_FILTER" : "SMTPD_RSPAMD_URL",
			         dir && dir[0] ? dir : "/tmp", strerror(errno));
			return -1;
		}
	}
	if (cfg->nats_url[0] != '\0') {
		int rc = natspub_setup(loop, cfg, stats, &de->nats, err, errlen);
		if (rc < 0)
			return rc; /* -2: max_payload too small (exit 2) */
		de->nats_sync = cfg->nats_mode == CONFIG_NATS_SYNC;
	}
	bool nats_forward = de->nats != NULL && !de->nats_sync;
	if ((cfg->webhook_url[0] == '\0' && !nats_forward) || spool == NULL)
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
	    .nats = nats_forward ? de->nats : NULL,
	    .nats_stream = cfg->nats_stream,
	};
	if (webhook_new(loop, &opt, spool, stats, &de->webhook, err, errlen) < 0)
		return -1;
	webhook_scan(de->webhook);
	if (nats_forward)
		return 0;
	/* Not the URL: it may carry credentials. */
	log_info("webhook delivery on: format %s%s, concurrency %u",
	         cfg->webhook_format == CONFIG_WEBHOOK_RAW      ? "raw"
	         : cfg->webhook_format == CONFIG_WEBHOOK_PARSED ? "parsed"
	                                                        : "json",
	         cfg->webhook_sync ? ", sync" : "", opt.concurrency);
	return 0;
}

void deliver_stop(struct deliver_env *de)
{
	if (de == NULL || de->stopping)
		return;
	de->stopping = true;
	/* filter_kill finishes the message from the loop later (451). */
	for (struct deliver_msg *m = de->ending, *next; m != NULL; m = next) {
		next = m->next;
		if (m->filter)
			filter_kill(m->filter);
	}
	webhook_stop(de->webhook);
	/* After the webhook: publishes in flight fail (forward mode: they stay
	 * in new/; sync mode: 451). */
	natspub_stop(de->nats);
	/* Checks in flight end now (451); edits on the pool finish by themselves. */
	rspamd_stop(de->rspamd);
	spool_commit_stop(de->commit);
}

void deliver_free(struct deliver_env *de)
{
	if (de == NULL)
		return;
	webhook_free(de->webhook);
	natspub_free(de->nats);
	rspamd_free(de->rspamd);
	spool_commit_free(de->commit);
	if (de->tmp_fd >= 0)
		close(de->tmp_fd);
	free(de);
}
