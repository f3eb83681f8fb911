/* rspamd: the /checkv2 client on the loop (SPEC 8). See rspamd.h; the
 * request glue (curl's multi handle on the loop, the body streamed from the
 * file) is curl_loop.c's, shared with the webhook. */
#include "rspamd.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "buf.h"
#include "curl_loop.h"
#include "log.h"
#include "webhook.h"

struct rspamd_check {
	struct rspamd *rs;
	struct rspamd_check *prev, *next; /* rs->queue or rs->active */
	struct curl_loop_xfer xfer;
	rspamd_done_fn done;
	void *ctx;
	char **headers; /* the envelope's, until the request takes them */
	int fd;         /* our dup() of the message file until the upload owns it; -1 */
	uint64_t size;
	uint64_t deadline_ms; /* loop time */
	uint64_t start_ns;
	CURL *easy;
	struct curl_slist *hdrs;
	struct curl_loop_upload *upload;
	struct buf resp;
	bool too_big;
	char errbuf[CURL_ERROR_SIZE];
};

struct rspamd {
	uv_loop_t *loop;
	struct rspamd_options opt;
	char *url, *mta_name, *version;
	struct curl_loop *cl;
	uv_timer_t expire; /* the queue's head reaching its deadline */
	struct rspamd_check *queue, *queue_tail;
	struct rspamd_check *active;
	unsigned inflight;
	bool stopping;
};

/* ---- checks ------------------------------------------------------------------------------ */

static void rspamd_list_add(struct rspamd_check **head, struct rspamd_check *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

static void rspamd_list_del(struct rspamd_check **head, struct rspamd_check *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (*head == c)
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void rspamd_check_free(struct rspamd_check *c)
{
	if (c->easy) {
		curl_loop_remove(c->rs->cl, c->easy);
		curl_easy_cleanup(c->easy);
	}
	curl_slist_free_all(c->hdrs);
	curl_loop_upload_release(c->upload);
	rspamd_headers_free(c->headers);
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->resp);
	free(c);
}

/* The end of a check, whatever it was: the caller hears it, then it goes. */
static void rspamd_finish(struct rspamd_check *c, struct rspamd_result *r)
{
	r->latency_us = (uv_hrtime() - c->start_ns) / 1000;
	rspamd_done_fn done = c->done;
	void *ctx = c->ctx;
	/* Free first: done may submit the next message's check. The body
	 * stays valid: it is moved out of the check. */
	struct buf resp = c->resp;
	buf_init(&c->resp, 0);
	rspamd_check_free(c);
	r->body = resp.data;
	done(ctx, r);
	buf_free(&resp);
}

static void rspamd_fail(struct rspamd_check *c, bool timed_out, const char *why, int err)
{
	struct rspamd_result r = {.timed_out = timed_out};
	snprintf(r.error, sizeof r.error, "%s%s%s", why, err ? ": " : "",
	         err ? strerror(-err) : "");
	rspamd_finish(c, &r);
}

static void rspamd_dispatch(struct rspamd *rs);

/* ---- the request ------------------------------------------------------------------------ */

static size_t rspamd_on_body(char *p, size_t size, size_t n, void *ud)
{
	struct rspamd_check *c = ud;
	size_t len = size * n;
	if (buf_append(&c->resp, p, len) < 0) {
		c->too_big = true;
		return 0; /* curl aborts: CURLE_WRITE_ERROR */
	}
	return len;
}

/* A failed answer's first line, for the log: "HTTP 500: {"error":"..."}". */
static void rspamd_http_error(struct rspamd_result *r, long status, const struct buf *b)
{
	int n = snprintf(r->error, sizeof r->error, "HTTP %ld", status);
	if (b->len > 0 && n > 0 && (size_t)n + 3 < sizeof r->error) {
		size_t o = (size_t)n;
		memcpy(r->error + o, ": ", 2);
		o += 2;
		for (size_t i = 0; i < b->len && o + 1 < sizeof r->error && i < 160; i++) {
			unsigned char ch = (unsigned char)b->data[i];
			r->error[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
		}
		r->error[o] = '\0';
	}
}

static void rspamd_completed(struct curl_loop_xfer *x, CURLcode cc)
{
	struct rspamd_check *c =
	    (struct rspamd_check *)(void *)((char *)x - offsetof(struct rspamd_check, xfer));
	struct rspamd *rs = c->rs;
	long status = 0;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	rspamd_list_del(&rs->active, c);
	rs->inflight--;
	struct rspamd_result r = {0};
	int uerr = curl_loop_upload_error(c->upload);
	if (cc == CURLE_OK && status == 200 && c->resp.len > 0) {
		r.answered = true;
		r.len = c->resp.len;
	} else if (cc == CURLE_OK) {
		rspamd_http_error(&r, status, &c->resp);
	} else if (c->too_big) {
		snprintf(r.error, sizeof r.error, "the answer is larger than %u bytes",
		         RSPAMD_REPLY_MAX);
	} else if (uerr) {
		snprintf(r.error, sizeof r.error, "cannot read the message: %s", strerror(-uerr));
	} else {
		r.timed_out = cc == CURLE_OPERATION_TIMEDOUT;
		snprintf(r.error, sizeof r.error, "%s",
		         c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
	}
	rspamd_finish(c, &r);
	rspamd_dispatch(rs);
}

/* Start c's request with what is left of its deadline. 0, or -errno (c is
 * untouched but for what it holds: the caller fails or frees it). */
static int rspamd_start(struct rspamd_check *c, uint64_t left_ms)
{
	struct rspamd *rs = c->rs;
	int dup = c->fd;
	struct webhook_body *body = NULL;
	/* The body owns the descriptor from here, even when this fails. */
	c->fd = -1;
	int rc = webhook_body_new(CONFIG_WEBHOOK_RAW, NULL, dup, c->size, &body);
	if (rc < 0)
		return rc;
	c->upload = curl_loop_upload_new(rs->loop, body);
	c->easy = curl_easy_init();
	if (c->upload == NULL || c->easy == NULL)
		return -ENOMEM;
	bool ok = true;
	for (size_t i = 0; ok && c->headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(c->hdrs, c->headers[i]);
		ok = n != NULL;
		if (ok)
			c->hdrs = n;
	}
	/* curl's defaults that are not ours to send: a form Content-Type, and
	 * "Expect: 100-continue" (a second's wait on a large body). */
	static const char *const drop[] = {"Content-Type:", "Expect:"};
	for (size_t i = 0; ok && i < sizeof drop / sizeof drop[0]; i++) {
		struct curl_slist *n = curl_slist_append(c->hdrs, drop[i]);
		ok = n != NULL;
		if (ok)
			c->hdrs = n;
	}
	CURL *e = c->easy;
	ok = ok && curl_easy_setopt(e, CURLOPT_URL, rs->url) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	     curl_loop_upload_attach(c->upload, e) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left_ms) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rspamd_on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, c) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
	if (!ok)
		return -ENOMEM;
	c->xfer.done = rspamd_completed;
	rc = curl_loop_add(rs->cl, e, &c->xfer);
	if (rc < 0)
		return rc;
	rspamd_headers_free(c->headers);
	c->headers = NULL;
	rspamd_list_add(&rs->active, c);
	rs->inflight++;
	curl_loop_upload_start(c->upload);
	return 0;
}

/* ---- the queue ---------------------------------------------------------------------------- */

static void rspamd_on_expire(uv_timer_t *t);

static void rspamd_queue_pop(struct rspamd *rs, struct rspamd_check *c)
{
	rs->queue = c->next;
	if (rs->queue)
		rs->queue->prev = NULL;
	else
		rs->queue_tail = NULL;
	c->prev = c->next = NULL;
}

/* Start what the concurrency allows; fail what waited past its deadline.
 * The queue is FIFO and every check has the same timeout, so the head has
 * the earliest deadline: one timer watches it. */
static void rspamd_dispatch(struct rspamd *rs)
{
	while (!rs->stopping && rs->queue) {
		struct rspamd_check *c = rs->queue;
		uint64_t now = uv_now(rs->loop);
		if (now >= c->deadline_ms) {
			rspamd_queue_pop(rs, c);
			rspamd_fail(c, true, "no free connection to rspamd before the timeout", 0);
			continue;
		}
		if (rs->inflight >= rs->opt.concurrency)
			break;
		rspamd_queue_pop(rs, c);
		int rc = rspamd_start(c, c->deadline_ms - now);
		if (rc < 0)
			rspamd_fail(c, false, "cannot start the request", rc);
	}
	if (rs->stopping)
		return;
	if (rs->queue) {
		uint64_t now = uv_now(rs->loop);
		uint64_t d = rs->queue->deadline_ms;
		uv_timer_start(&rs->expire, rspamd_on_expire, d > now ? d - now : 0, 0);
	} else {
		uv_timer_stop(&rs->expire);
	}
}

static void rspamd_on_expire(uv_timer_t *t)
{
	rspamd_dispatch(t->data);
}

int rspamd_check(struct rspamd *rs, const struct spool_envelope *env, int fd, uint64_t size,
                 rspamd_done_fn done, void *ctx)
{
	if (rs == NULL || rs->stopping)
		return -ESHUTDOWN;
	struct rspamd_check *c = calloc(1, sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	c->rs = rs;
	c->fd = -1;
	c->done = done;
	c->ctx = ctx;
	c->size = size;
	c->start_ns = uv_hrtime();
	c->deadline_ms = uv_now(rs->loop) + rs->opt.timeout_ms;
	buf_init(&c->resp, RSPAMD_REPLY_MAX);
	c->headers = rspamd_request_headers(env, rs->mta_name, rs->version);
	/* Our own descriptor, read with pread only: the caller closes theirs. */
	c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	int rc = c->headers == NULL ? -ENOMEM : c->fd < 0 ? -errno : 0;
	/* Straight on when there is room: the queue is empty then (it is only
	 * ever non-empty with every slot taken). */
	if (rc == 0 && rs->inflight < rs->opt.concurrency && rs->queue == NULL)
		rc = rspamd_start(c, rs->opt.timeout_ms);
	else if (rc == 0) {
		c->prev = rs->queue_tail;
		if (rs->queue_tail)
			rs->queue_tail->next = c;
		else
			rs->queue = c;
		rs->queue_tail = c;
		/* Its own deadline, when it is the head; later ones wait their
		 * turn (dispatching here could end other checks inside this call). */
		if (rs->queue == c)
			uv_timer_start(&rs->expire, rspamd_on_expire, rs->opt.timeout_ms, 0);
		return 0;
	}
	if (rc < 0) {
		rspamd_check_free(c);
		return rc;
	}
	return 0;
}

/* ---- the service ---------------------------------------------------------------------------- */

/* "<base>/checkv2", the base's trailing slashes dropped. */
static char *rspamd_url(const char *base)
{
	static const char path[] = "/checkv2";
	size_t n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	bool has = n >= sizeof path - 1 &&
	           strncmp(base + n - (sizeof path - 1), path, sizeof path - 1) == 0;
	char *u = malloc(n + sizeof path);
	if (u)
		snprintf(u, n + sizeof path, "%.*s%s", (int)n, base, has ? "" : path);
	return u;
}

int rspamd_new(uv_loop_t *loop, const struct rspamd_options *opt, struct rspamd **out, char *err,
               size_t errlen)
{
	*out = NULL;
	struct rspamd *rs = calloc(1, sizeof *rs);
	if (rs == NULL) {
		snprintf(err, errlen, "rspamd: out of memory");
		return -1;
	}
	rs->loop = loop;
	rs->opt = *opt;
	if (rs->opt.concurrency == 0)
		rs->opt.concurrency = 1;
	rs->url = rspamd_url(opt->url ? opt->url : "");
	rs->mta_name = strdup(opt->mta_name ? opt->mta_name : "");
	rs->version = strdup(opt->version ? opt->version : "");
	if (rs->url == NULL || rs->mta_name == NULL || rs->version == NULL) {
		snprintf(err, errlen, "rspamd: out of memory");
		goto fail;
	}
	/* Last: nothing that can fail comes after it (its timer is open). */
	int rc = curl_loop_new(loop, &rs->cl);
	if (rc < 0) {
		snprintf(err, errlen, "SMTPD_RSPAMD_URL: cannot initialise libcurl: %s",
		         strerror(-rc));
		goto fail;
	}
	if (!curl_loop_async_dns())
		log_warn("rspamd: libcurl resolves names synchronously; use an address in "
		         "SMTPD_RSPAMD_URL or a libcurl with the threaded resolver");
	uv_timer_init(loop, &rs->expire);
	rs->expire.data = rs;
	rs->opt.url = rs->url;
	rs->opt.mta_name = rs->mta_name;
	rs->opt.version = rs->version;
	*out = rs;
	return 0;
fail:
	free(rs->url);
	free(rs->mta_name);
	free(rs->version);
	free(rs);
	return -1;
}

void rspamd_stop(struct rspamd *rs)
{
	if (rs == NULL || rs->stopping)
		return;
	rs->stopping = true;
	uv_close((uv_handle_t *)&rs->expire, NULL);
	/* Off curl first, then every handle closed, then the owners told. */
	struct rspamd_check *gone = NULL;
	while (rs->active) {
		struct rspamd_check *c = rs->active;
		rspamd_list_del(&rs->active, c);
		rs->inflight--;
		rspamd_list_add(&gone, c);
	}
	while (rs->queue) {
		struct rspamd_check *c = rs->queue;
		rspamd_queue_pop(rs, c);
		rspamd_list_add(&gone, c);
	}
	for (struct rspamd_check *c = gone; c; c = c->next)
		if (c->easy) {
			curl_loop_remove(rs->cl, c->easy);
			curl_easy_cleanup(c->easy);
			c->easy = NULL;
		}
	curl_loop_stop(rs->cl);
	while (gone) {
		struct rspamd_check *c = gone;
		rspamd_list_del(&gone, c);
		struct rspamd_result r = {.stopped = true};
		snprintf(r.error, sizeof r.error, "shutting down");
		rspamd_finish(c, &r);
	}
}

void rspamd_free(struct rspamd *rs)
{
	if (rs == NULL)
		return;
	rspamd_stop(rs);
	curl_loop_free(rs->cl);
	free(rs->url);
	free(rs->mta_name);
	free(rs->version);
	free(rs);
}
