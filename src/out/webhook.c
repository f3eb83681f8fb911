/* webhook: store-and-forward to SMTPD_WEBHOOK_URL (SPEC 5). See webhook.h;
 * the pure parts (body, signature, backoff) are in webhook_build.c.
 *
 * Life of one delivery (a job), all of it counted against the concurrency:
 *   prep   (thread pool) read meta/<id>.json, open new/<id>, build the request
 *                        (with a secret, one pass over the file for the HMAC);
 *   post   (loop)        one curl easy handle on the webhook's curl_loop, the
 *                        body streamed from the file (read on the thread pool);
 *   result (thread pool) rewrite the envelope, move or remove the message;
 *   back on the loop: count it, requeue a retry, start the next job.
 * The post itself is in webhook_curl.c, on the curl-multi glue of curl_loop.c
 * (shared with rspamd.c); the structs both files use are in webhook_priv.h. */
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "log.h"
#include "spool.h"
#include "stats.h"
#include "webhook_priv.h"

/* A "next_attempt" at most this far in the future is due now (clock skew
 * between the loop's monotonic clock and the wall clock in the meta). */
#define WEBHOOK_DUE_SLACK_S 1
/* How often the age of the oldest pending message is recomputed for /status. */
#define WEBHOOK_STATS_MS 1000

static void webhook_rfc3339(int64_t t, char *out, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- the queue -------------------------------------------------------------------- */

static void webhook_dispatch(struct webhook *wh);

static uint64_t webhook_random(struct webhook *wh)
{
	/* xorshift64*: jitter needs spread, not secrecy. */
	uint64_t x = wh->rnd;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	wh->rnd = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static bool webhook_heap_less(struct webhook *wh, size_t a, size_t b)
{
	return wh->heap[a]->due < wh->heap[b]->due;
}

static void webhook_heap_swap(struct webhook *wh, size_t a, size_t b)
{
	struct webhook_item *t = wh->heap[a];
	wh->heap[a] = wh->heap[b];
	wh->heap[b] = t;
}

static int webhook_heap_push(struct webhook *wh, struct webhook_item *it)
{
	if (wh->nheap == wh->capheap) {
		size_t ncap = wh->capheap ? wh->capheap * 2 : 256;
		struct webhook_item **nh = realloc(wh->heap, ncap * sizeof *nh);
		if (nh == NULL)
			return -ENOMEM;
		wh->heap = nh;
		wh->capheap = ncap;
	}
	size_t i = wh->nheap++;
	wh->heap[i] = it;
	while (i > 0 && webhook_heap_less(wh, i, (i - 1) / 2)) {
		webhook_heap_swap(wh, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static struct webhook_item *webhook_heap_pop(struct webhook *wh)
{
	if (wh->nheap == 0)
		return NULL;
	struct webhook_item *top = wh->heap[0];
	wh->heap[0] = wh->heap[--wh->nheap];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < wh->nheap && webhook_heap_less(wh, l, m))
			m = l;
		if (r < wh->nheap && webhook_heap_less(wh, r, m))
			m = r;
		if (m == i)
			break;
		webhook_heap_swap(wh, i, m);
		i = m;
	}
	return top;
}

/* ---- stats -------------------------------------------------------------------------- */

static void webhook_stats_pending(struct webhook *wh)
{
	stats_lock(wh->stats);
	wh->stats->c.delivery_pending = wh->pending;
	if (wh->pending == 0)
		wh->stats->c.delivery_oldest = 0;
	stats_unlock(wh->stats);
}

/* The oldest pending message, over the heap and the jobs: O(n) once a second. */
static void webhook_on_stats(uv_timer_t *t)
{
	struct webhook *wh = t->data;
	int64_t oldest = 0;
	for (size_t i = 0; i < wh->nheap; i++)
		if (oldest == 0 || wh->heap[i]->received < oldest)
			oldest = wh->heap[i]->received;
	for (struct webhook_job *j = wh->jobs; j; j = j->next)
		if (j->item && (oldest == 0 || j->item->received < oldest))
			oldest = j->item->received;
	stats_lock(wh->stats);
	wh->stats->c.delivery_oldest = oldest;
	wh->stats->c.delivery_pending = wh->pending;
	stats_unlock(wh->stats);
}

/* ---- jobs ------------------------------------------------------------------------------ */

static struct webhook_job *webhook_job_new(struct webhook *wh)
{
	struct webhook_job *j = calloc(1, sizeof *j);
	if (j == NULL)
		return NULL;
	j->wh = wh;
	j->work.data = j;
	j->sync_fd = -1;
	j->next = wh->jobs;
	if (wh->jobs)
		wh->jobs->prev = j;
	wh->jobs = j;
	return j;
}

static void webhook_job_unlink(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	if (j->prev)
		j->prev->next = j->next;
	else if (wh->jobs == j)
		wh->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->prev = j->next = NULL;
}

/* Free a job that is off the list. */
static void webhook_job_release(struct webhook_job *j)
{
	if (j->easy) {
		curl_loop_remove(j->wh->cl, j->easy);
		curl_easy_cleanup(j->easy);
	}
	curl_slist_free_all(j->hdrs);
	curl_loop_upload_release(j->upload);
	webhook_request_free(&j->req);
	free(j->nats_data);
	json_decref(j->nats_envelope);
	if (j->sync_fd >= 0)
		close(j->sync_fd);
	json_decref(j->meta);
	free(j->sync_envelope);
	free(j->item);
	free(j);
}

static void webhook_job_free(struct webhook_job *j)
{
	webhook_job_unlink(j);
	webhook_job_release(j);
}

/* A job that will not finish: its item stays in new/ for the next start; a
 * synchronous post is told it failed. */
void webhook_job_abandon(struct webhook_job *j)
{
	webhook_post_fn done = j->done;
	void *ctx = j->ctx;
	webhook_job_free(j);
	if (done)
		done(ctx, false, "delivery stopped: shutting down");
}

/* The job is over (any outcome): free its slot and start what waits. */
static void webhook_job_end(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	wh->inflight--;
	webhook_job_free(j);
	webhook_dispatch(wh);
}

/* A synchronous post is over: end the job, then tell its owner. */
void webhook_sync_end(struct webhook_job *j, bool delivered, const char *why)
{
	webhook_post_fn done = j->done;
	void *ctx = j->ctx;
	char reason[sizeof j->reason];
	snprintf(reason, sizeof reason, "%s", why);
	webhook_job_end(j);
	done(ctx, delivered, reason);
}

/* ---- prep (thread pool) --------------------------------------------------------------- */

static json_t *webhook_envelope_of(json_t *meta)
{
	json_t *env = json_deep_copy(meta);
	if (env)
		json_object_del(env, "delivery");
	return env;
}

static void webhook_prep_sync(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	json_t *env = json_loads(j->sync_envelope, 0, NULL);
	if (env == NULL) {
		j->prep = WEBHOOK_PREP_ERROR;
		j->err = -ENOMEM;
		return;
	}
	struct webhook_build_in in = {
	    .format = wh->opt.format,
	    .secret = wh->secret,
	    .id = j->sync_id,
	    .attempt = 1,
	    .envelope = env,
	    .fd = j->sync_fd,
	    .size = j->sync_size,
	    .timestamp = (int64_t)time(NULL),
	    .version = wh->version,
	    .tmp_dir_fd = wh->spool ? spool_tmp_fd(wh->spool) : -1,
	};
	j->sync_fd = -1; /* the request's now */
	j->attempt = 1;
	j->err = webhook_build(&in, &j->req);
	j->prep = j->err ? WEBHOOK_PREP_ERROR : WEBHOOK_PREP_POST;
	json_decref(env);
}

static void webhook_prep_work(uv_work_t *w)
{
	struct webhook_job *j = w->data;
	struct webhook *wh = j->wh;
	if (j->item == NULL) {
		webhook_prep_sync(j);
		return;
	}
	const char *id = j->item->id;
	char *text = NULL;
	int rc = spool_meta_read(wh->spool, id, &text);
	json_t *meta = rc == 0 ? json_loads(text, 0, NULL) : NULL;
	free(text);
	/* A lost or damaged envelope must not lose the message: post it with
	 * its id alone. */
	if (meta == NULL || !json_is_object(meta)) {
		json_decref(meta);
		meta = json_pack("{s:s}", "id", id);
	}
	j->meta = meta;
	json_t *d = json_object_get(meta, "delivery");
	const char *state = json_string_value(json_object_get(d, "state"));
	json_int_t attempts = json_integer_value(json_object_get(d, "attempts"));
	j->attempt = attempts > 0 && attempts < 1000000 ? (unsigned)attempts + 1 : 1;
	if (state && strcmp(state, "delivered") == 0) {
		j->prep = WEBHOOK_PREP_DELIVERED;
		return;
	}
	if (state && strcmp(state, "failed") == 0) {
		j->prep = WEBHOOK_PREP_FAILED;
		return;
	}
	int64_t next;
	if (webhook_parse_time(json_string_value(json_object_get(d, "next_attempt")), &next) == 0 &&
	    next > (int64_t)time(NULL) + WEBHOOK_DUE_SLACK_S) {
		j->prep = WEBHOOK_PREP_NOT_DUE;
		j->not_before = next;
		return;
	}
	/* Opened, not read: the body streams from it (issue 14). */
	int fd = -1;
	uint64_t size = 0;
	rc = spool_open_message(wh->spool, SPOOL_STATE_NEW, id, &fd, &size);
	if (rc == -ENOENT) {
		j->prep = WEBHOOK_PREP_GONE;
		return;
	}
	if (rc < 0) {
		j->prep = WEBHOOK_PREP_ERROR;
		j->err = rc;
		return;
	}
	json_t *env = webhook_envelope_of(meta);
	struct webhook_build_in in = {
	    .format = wh->opt.format,
	    .secret = wh->secret,
	    .id = id,
	    .attempt = j->attempt,
	    .envelope = env,
	    .fd = fd,
	    .size = size,
	    .timestamp = (int64_t)time(NULL),
	    .version = wh->version,
	    .tmp_dir_fd = wh->spool ? spool_tmp_fd(wh->spool) : -1,
	};
	/* webhook_build owns fd, whatever it returns. */
	if (env && wh->nats) {
		rc = webhook_nats_prep(j, env, fd, size);
		env = NULL;
	} else if (env)
		rc = webhook_build(&in, &j->req);
	else {
		close(fd);
		rc = -ENOMEM;
	}
	json_decref(env);
	j->prep = rc ? WEBHOOK_PREP_ERROR : WEBHOOK_PREP_POST;
	j->err = rc;
}

/* ---- result (thread pool) ------------------------------------------------------------- */

static int webhook_set_delivery(struct webhook_job *j, json_t *delivery)
{
	if (delivery == NULL || json_object_set_new(j->meta, "delivery", delivery) < 0)
		return -ENOMEM;
	char *text =
	    json_dumps(j->meta, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	if (text == NULL)
		return -ENOMEM;
	int rc = spool_meta_write(j->wh->spool, j->item->id, text, false);
	free(text);
	return rc;
}

static void webhook_result_work(uv_work_t *w)
{
	struct webhook_job *j = w->data;
	struct webhook *wh = j->wh;
	struct spool *sp = wh->spool;
	const char *id = j->item->id;
	char when[32];
	webhook_rfc3339((int64_t)time(NULL), when, sizeof when);
	int rc = 0;
	switch (j->outcome) {
	case WEBHOOK_DELIVERED:
		if (!wh->opt.keep) {
			rc = spool_remove(sp, SPOOL_STATE_NEW, id);
			break;
		}
		/* The envelope first: a crash before the move leaves a message
		 * marked delivered in new/, which the next start moves on without
		 * posting it again. */
		if (j->prep != WEBHOOK_PREP_DELIVERED && wh->nats)
			rc = webhook_set_delivery(j, json_pack("{s:s, s:i, s:s, s:s}", "state",
			                                       "delivered", "attempts",
			                                       (int)j->attempt, "delivered_at",
			                                       when, "stream", wh->nats_stream));
		else if (j->prep != WEBHOOK_PREP_DELIVERED)
			rc = webhook_set_delivery(j, json_pack("{s:s, s:i, s:s, s:i}", "state",
			                                       "delivered", "attempts",
			                                       (int)j->attempt, "delivered_at",
			                                       when, "status", (int)j->status));
		if (rc == 0)
			rc = spool_move(sp, id, SPOOL_STATE_NEW, SPOOL_STATE_CUR);
		break;
	case WEBHOOK_FAILED:
		if (j->prep != WEBHOOK_PREP_FAILED)
			rc = webhook_set_delivery(j, json_pack("{s:s, s:s, s:i, s:s}", "state",
			                                       "failed", "reason", j->reason,
			                                       "attempts", (int)j->attempt,
			                                       "failed_at", when));
		if (rc == 0)
			rc = spool_move(sp, id, SPOOL_STATE_NEW, SPOOL_STATE_FAILED);
		break;
	case WEBHOOK_RETRY: {
		char next[32];
		webhook_rfc3339((int64_t)time(NULL) + (int64_t)((j->delay_ms + 999) / 1000), next,
		                sizeof next);
		rc = webhook_set_delivery(j, json_pack("{s:s, s:i, s:s, s:s}", "state", "pending",
		                                       "attempts", (int)j->attempt, "next_attempt",
		                                       next, "last_error", j->reason));
		/* Deleted while we posted: the envelope just written is an orphan. */
		int fd;
		if (rc == 0 && spool_open_message(sp, SPOOL_STATE_NEW, id, &fd, NULL) == 0)
			close(fd);
		else if (rc == 0)
			rc = -ENOENT;
		break;
	}
	}
	if (rc == -ENOENT) {
		spool_meta_remove(sp, id);
		j->gone = true;
	} else if (rc < 0) {
		/* The spool is failing: the message stays in new/ and is retried
		 * after the next start at the latest. */
		char why[64];
		snprintf(why, sizeof why, "%s", strerror(-rc));
		const char *kv[] = {"id", id, "error", why, NULL};
		log_event(CONFIG_LOG_ERROR, NULL, "webhook: cannot update the spool", kv);
	}
}

static void webhook_result_done(uv_work_t *w, int status)
{
	(void)status;
	struct webhook_job *j = w->data;
	struct webhook *wh = j->wh;
	j->in_work = false;
	if (wh->stopping) {
		webhook_job_abandon(j);
		return;
	}
	if (j->outcome == WEBHOOK_RETRY && !j->gone) {
		j->item->due = uv_now(wh->loop) + j->delay_ms;
		if (webhook_heap_push(wh, j->item) == 0)
			j->item = NULL;
	}
	if (j->item) /* delivered, failed, gone (or no memory to requeue: next start) */
		wh->pending--;
	/* One lock for all: /status never shows a message both pending and done. */
	stats_lock(wh->stats);
	if (!j->gone && j->outcome == WEBHOOK_DELIVERED)
		wh->stats->c.delivery_delivered++;
	else if (!j->gone && j->outcome == WEBHOOK_FAILED)
		wh->stats->c.delivery_failed++;
	else if (!j->gone)
		wh->stats->c.delivery_retries++;
	wh->stats->c.delivery_pending = wh->pending;
	if (wh->pending == 0)
		wh->stats->c.delivery_oldest = 0;
	stats_unlock(wh->stats);
	webhook_job_end(j);
}

/* Decide what a finished attempt means for a queued message, then update the
 * spool off the loop. */
void webhook_finish_item(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	if (j->outcome == WEBHOOK_RETRY) {
		int64_t age = (int64_t)time(NULL) - j->item->received;
		if (age >= (int64_t)wh->opt.max_age_s) {
			size_t n = strlen(j->reason);
			snprintf(j->reason + n, sizeof j->reason - n,
			         "; not delivered within SMTPD_WEBHOOK_MAX_AGE (%u attempts)",
			         j->attempt);
			j->outcome = WEBHOOK_FAILED;
		} else {
			j->delay_ms = webhook_backoff_ms(j->attempt, wh->opt.retry_min_ms,
			                                 wh->opt.retry_max_ms, webhook_random(wh));
		}
	}
	char attempt[16], delay[24];
	snprintf(attempt, sizeof attempt, "%u", j->attempt);
	snprintf(delay, sizeof delay, "%llus", (unsigned long long)(j->delay_ms + 999) / 1000);
	if (j->outcome == WEBHOOK_DELIVERED) {
		const char *kv[] = {"id", j->item->id, "attempt", attempt, NULL};
		log_event(CONFIG_LOG_INFO, NULL,
		          wh->nats ? "published to JetStream" : "webhook delivered", kv);
	} else if (j->outcome == WEBHOOK_FAILED) {
		const char *kv[] = {"id",     j->item->id, "attempt", attempt,
		                    "reason", j->reason,   NULL};
		log_event(CONFIG_LOG_WARN, NULL,
		          wh->nats ? "NATS publish failed, moved to failed/"
		                   : "webhook failed, moved to failed/",
		          kv);
	} else {
		const char *kv[] = {"id",      j->item->id, "attempt", attempt, "error",
		                    j->reason, "retry_in",  delay,     NULL};
		log_event(CONFIG_LOG_INFO, NULL,
		          wh->nats ? "NATS publish failed, will retry"
		                   : "webhook attempt failed, will retry",
		          kv);
	}
	j->in_work = true;
	if (uv_queue_work(wh->loop, &j->work, webhook_result_work, webhook_result_done) < 0) {
		j->in_work = false;
		webhook_job_end(j);
	}
}

/* ---- after prep (loop); the request itself is in webhook_curl.c ------------------- */

static void webhook_prep_done(uv_work_t *w, int status)
{
	struct webhook_job *j = w->data;
	struct webhook *wh = j->wh;
	j->in_work = false;
	if (wh->stopping) {
		webhook_job_abandon(j);
		return;
	}
	if (status < 0) {
		j->prep = WEBHOOK_PREP_ERROR;
		j->err = status;
	}
	switch (j->prep) {
	case WEBHOOK_PREP_POST:
		webhook_start_post(j);
		return;
	case WEBHOOK_PREP_GONE:
		wh->pending--;
		webhook_stats_pending(wh);
		webhook_job_end(j);
		return;
	case WEBHOOK_PREP_NOT_DUE: {
		int64_t wait = j->not_before - (int64_t)time(NULL);
		j->item->due = uv_now(wh->loop) + (uint64_t)(wait > 0 ? wait : 0) * 1000;
		if (webhook_heap_push(wh, j->item) == 0)
			j->item = NULL;
		else
			wh->pending--;
		webhook_job_end(j);
		return;
	}
	case WEBHOOK_PREP_DELIVERED:
		j->outcome = WEBHOOK_DELIVERED;
		webhook_finish_item(j);
		return;
	case WEBHOOK_PREP_FAILED:
		j->outcome = WEBHOOK_FAILED;
		const char *why = json_string_value(
		    json_object_get(json_object_get(j->meta, "delivery"), "reason"));
		snprintf(j->reason, sizeof j->reason, "%s", why ? why : "failed");
		webhook_finish_item(j);
		return;
	case WEBHOOK_PREP_ERROR:
		break;
	}
	snprintf(j->reason, sizeof j->reason, "cannot prepare the request: %s", strerror(-j->err));
	j->outcome = WEBHOOK_RETRY;
	if (j->item == NULL) {
		webhook_sync_end(j, false, j->reason);
		return;
	}
	webhook_finish_item(j);
}

/* ---- scheduling -------------------------------------------------------------------------- */

static void webhook_on_wake(uv_timer_t *t)
{
	webhook_dispatch(t->data);
}

static void webhook_start_job(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	wh->inflight++;
	j->in_work = true;
	if (uv_queue_work(wh->loop, &j->work, webhook_prep_work, webhook_prep_done) < 0) {
		j->in_work = false;
		j->prep = WEBHOOK_PREP_ERROR;
		j->err = -EAGAIN;
		webhook_prep_done(&j->work, 0);
	}
}

static void webhook_dispatch(struct webhook *wh)
{
	if (wh->stopping)
		return;
	uint64_t now = uv_now(wh->loop);
	while (wh->inflight < wh->opt.concurrency) {
		if (wh->sync_head) {
			struct webhook_job *j = wh->sync_head;
			wh->sync_head = j->qnext;
			if (wh->sync_head == NULL)
				wh->sync_tail = NULL;
			webhook_start_job(j);
			continue;
		}
		if (wh->nheap == 0 || wh->heap[0]->due > now)
			break;
		struct webhook_job *j = webhook_job_new(wh);
		if (j == NULL)
			break;
		j->item = webhook_heap_pop(wh);
		webhook_start_job(j);
	}
	if (wh->stopping)
		return;
	if (wh->nheap > 0 && wh->inflight < wh->opt.concurrency) {
		uint64_t due = wh->heap[0]->due;
		uv_timer_start(&wh->wake, webhook_on_wake, due > now ? due - now : 0, 0);
	} else {
		uv_timer_stop(&wh->wake);
	}
}

/* ---- the service --------------------------------------------------------------------------- */

int webhook_new(uv_loop_t *loop, const struct webhook_options *opt, struct spool *spool,
                struct stats *stats, struct webhook **out, char *err, size_t errlen)
{
	*out = NULL;
	struct webhook *wh = calloc(1, sizeof *wh);
	if (wh == NULL) {
		snprintf(err, errlen, "webhook: out of memory");
		return -1;
	}
	wh->loop = loop;
	wh->opt = *opt;
	if (wh->opt.concurrency == 0)
		wh->opt.concurrency = 1;
	wh->spool = spool;
	wh->stats = stats;
	wh->url = strdup(opt->url ? opt->url : "");
	wh->secret = strdup(opt->secret ? opt->secret : "");
	wh->version = strdup(opt->version ? opt->version : "");
	wh->nats = opt->nats;
	wh->nats_stream = strdup(opt->nats_stream ? opt->nats_stream : "");
	wh->rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
	if (wh->url == NULL || wh->secret == NULL || wh->version == NULL ||
	    wh->nats_stream == NULL) {
		snprintf(err, errlen, "webhook: out of memory");
		goto fail;
	}
	/* Last: nothing that can fail comes after it (its timer is open). */
	int rc = curl_loop_new(loop, &wh->cl);
	if (rc < 0) {
		snprintf(err, errlen, "SMTPD_WEBHOOK_URL: cannot initialise libcurl: %s",
		         strerror(-rc));
		goto fail;
	}
	if (!curl_loop_async_dns())
		log_warn("webhook: libcurl resolves names synchronously; use an address in "
		         "SMTPD_WEBHOOK_URL or a libcurl with the threaded resolver");
	uv_timer_init(loop, &wh->wake);
	uv_timer_init(loop, &wh->stats_timer);
	wh->wake.data = wh->stats_timer.data = wh;
	uv_timer_start(&wh->stats_timer, webhook_on_stats, WEBHOOK_STATS_MS, WEBHOOK_STATS_MS);
	*out = wh;
	return 0;
fail:
	free(wh->nats_stream);
	free(wh->url);
	free(wh->secret);
	free(wh->version);
	free(wh);
	return -1;
}

static int64_t webhook_id_time(const char *id)
{
	char *end;
	long long t = strtoll(id, &end, 10);
	if (end == id || *end != '.' || t <= 0)
		return (int64_t)time(NULL);
	return (int64_t)t;
}

static void webhook_queue(struct webhook *wh, const char *id, uint64_t due)
{
	struct webhook_item *it = calloc(1, sizeof *it);
	if (it == NULL) {
		log_error("webhook: out of memory queueing %s (it is posted after a restart)", id);
		return;
	}
	snprintf(it->id, sizeof it->id, "%s", id);
	it->due = due;
	it->received = webhook_id_time(id);
	if (webhook_heap_push(wh, it) < 0) {
		free(it);
		log_error("webhook: out of memory queueing %s (it is posted after a restart)", id);
		return;
	}
	wh->pending++;
}

void webhook_scan(struct webhook *wh)
{
	char **ids;
	size_t n;
	int rc = spool_list_ids(wh->spool, SPOOL_STATE_NEW, &ids, &n);
	if (rc < 0) {
		log_error("webhook: cannot list %s/new: %s", spool_dir(wh->spool), strerror(-rc));
		return;
	}
	uint64_t now = uv_now(wh->loop);
	for (size_t i = 0; i < n; i++)
		webhook_queue(wh, ids[i], now);
	spool_ids_free(ids, n);
	if (n > 0)
		log_info("%s: %zu message(s) waiting in new/ queued for delivery",
		         wh->nats != NULL ? "nats" : "webhook", n);
	webhook_on_stats(&wh->stats_timer);
	webhook_dispatch(wh);
}

void webhook_enqueue(struct webhook *wh, const char *id)
{
	if (wh == NULL || wh->stopping)
		return; /* it stays in new/: posted after the restart */
	webhook_queue(wh, id, uv_now(wh->loop));
	webhook_stats_pending(wh);
	if (wh->pending == 1)
		webhook_on_stats(&wh->stats_timer);
	webhook_dispatch(wh);
}

int webhook_post(struct webhook *wh, const char *id, const char *envelope_json, int fd,
                 uint64_t size, webhook_post_fn done, void *ctx)
{
	if (wh == NULL || wh->stopping)
		return -ESHUTDOWN;
	struct webhook_job *j = webhook_job_new(wh);
	if (j == NULL)
		return -ENOMEM;
	j->sync_envelope = strdup(envelope_json);
	if (j->sync_envelope == NULL) {
		webhook_job_free(j);
		return -ENOMEM;
	}
	/* Our own descriptor: the caller closes theirs when we return. Read
	 * with pread only, so the shared offset is never moved. */
	j->sync_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (j->sync_fd < 0) {
		int rc = -errno;
		webhook_job_free(j);
		return rc;
	}
	snprintf(j->sync_id, sizeof j->sync_id, "%s", id);
	j->sync_size = size;
	j->done = done;
	j->ctx = ctx;
	if (wh->sync_tail)
		wh->sync_tail->qnext = j;
	else
		wh->sync_head = j;
	wh->sync_tail = j;
	webhook_dispatch(wh);
	return 0;
}

static void webhook_on_closed(uv_handle_t *h)
{
	(void)h;
}

void webhook_stop(struct webhook *wh)
{
	if (wh == NULL || wh->stopping)
		return;
	wh->stopping = true;
	uv_close((uv_handle_t *)&wh->wake, webhook_on_closed);
	uv_close((uv_handle_t *)&wh->stats_timer, webhook_on_closed);
	/* Requests on the wire: taken off curl. Jobs on the thread pool end
	 * themselves in their after-work callbacks (they see `stopping`). */
	struct webhook_job *abandon = NULL;
	for (struct webhook_job *j = wh->jobs, *next; j; j = next) {
		next = j->next;
		if (j->in_work || j->nats_wait)
			continue; /* they end themselves (natspub_stop answers the latter) */
		if (j->easy) {
			curl_loop_remove(wh->cl, j->easy);
			curl_easy_cleanup(j->easy);
			j->easy = NULL;
		}
		/* Unlink now, report after every handle is closed. */
		webhook_job_unlink(j);
		j->qnext = abandon;
		abandon = j;
	}
	curl_loop_stop(wh->cl);
	wh->sync_head = wh->sync_tail = NULL;
	size_t n = 0;
	while (abandon) {
		struct webhook_job *j = abandon;
		abandon = j->qnext;
		webhook_post_fn done = j->done;
		void *ctx = j->ctx;
		webhook_job_release(j);
		n++;
		if (done)
			done(ctx, false, "delivery stopped: shutting down");
	}
	if (n > 0 || wh->pending > 0)
		log_info("webhook: stopped; %llu message(s) stay in new/ for the next start",
		         (unsigned long long)wh->pending);
}

void webhook_free(struct webhook *wh)
{
	if (wh == NULL)
		return;
	webhook_stop(wh);
	/* Jobs still listed were on the thread pool; the loop has ended, so their
	 * callbacks ran: nothing should be left. */
	while (wh->jobs)
		webhook_job_free(wh->jobs);
	for (size_t i = 0; i < wh->nheap; i++)
		free(wh->heap[i]);
	free(wh->heap);
	curl_loop_free(wh->cl);
	free(wh->url);
	free(wh->secret);
	free(wh->version);
	free(wh->nats_stream);
	free(wh);
}
