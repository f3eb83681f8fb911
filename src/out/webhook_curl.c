/* webhook_curl: the curl side of webhook.c (SPEC 5): one easy handle per post
 * on the shared multi handle, driven by the service's libuv loop (a uv_poll_t
 * per socket curl opens, one uv_timer_t for curl's timeouts), its body
 * streamed from the message file. A finished request goes back to webhook.c
 * (webhook_finish_item, webhook_sync_end). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook_priv.h"

/* ---- the body on the wire (issue 14) ---------------------------------------------------
 *
 * curl pulls the body through webhook_on_read. What is ready (the JSON head,
 * the chunk read last, the tail) is copied out at once; the file itself is
 * read by uv_fs_read on the thread pool, one chunk ahead of what curl sends,
 * so the loop never waits on the disk. If curl catches up with the reading,
 * the transfer pauses (CURL_READFUNC_PAUSE) and the read's callback resumes
 * it. A body holds two chunks whatever the size of the message. */

static void webhook_upload_free(struct webhook_upload *u)
{
	webhook_body_free(u->body);
	free(u);
}

void webhook_upload_release(struct webhook_upload *u)
{
	if (u == NULL)
		return;
	if (u->reading) {
		/* The thread pool is writing into u->body->in: the read's
		 * callback frees it all. */
		u->job = NULL;
		return;
	}
	webhook_upload_free(u);
}

static void webhook_on_fs_read(uv_fs_t *req);

static void webhook_upload_read(struct webhook_upload *u)
{
	uv_buf_t b =
	    uv_buf_init((char *)u->body->in + u->rd_got, (unsigned)(u->rd_len - u->rd_got));
	int rc = uv_fs_read(u->loop, &u->fs, u->body->fd, &b, 1, (int64_t)(u->rd_off + u->rd_got),
	                    webhook_on_fs_read);
	if (rc < 0)
		u->err = rc;
	else
		u->reading = true;
}

/* Move the body on: hand it the chunk read ahead once what it holds is sent,
 * and start reading the next one. */
static void webhook_upload_pump(struct webhook_upload *u)
{
	struct webhook_body *b = u->body;
	if (u->reading || u->err)
		return;
	uint64_t off;
	size_t n = webhook_body_next(b, &off);
	/* Read before a rewind: not the chunk wanted now. */
	if (u->ready && (n == 0 || u->rd_off != off))
		u->ready = false;
	if (u->ready && webhook_body_can_feed(b)) {
		webhook_body_feed(b, n);
		u->ready = false;
		n = webhook_body_next(b, &off);
	}
	if (u->ready || n == 0)
		return;
	u->rd_off = off;
	u->rd_len = n;
	u->rd_got = 0;
	webhook_upload_read(u);
}

static void webhook_on_fs_read(uv_fs_t *req)
{
	struct webhook_upload *u = req->data;
	ssize_t r = req->result;
	uv_fs_req_cleanup(req);
	u->reading = false;
	if (u->job == NULL) {
		webhook_upload_free(u);
		return;
	}
	if (r < 0) {
		u->err = (int)r;
	} else if (r == 0) {
		/* The file is shorter than its size: a Content-Length we cannot
		 * honour. Abort rather than hang the receiver. */
		u->err = -EIO;
	} else {
		u->rd_got += (size_t)r;
		if (u->rd_got < u->rd_len) {
			webhook_upload_read(u);
			if (u->err == 0)
				return;
		} else {
			u->ready = true;
			webhook_upload_pump(u);
		}
	}
	/* curl waits for these bytes (or for the error, to abort). */
	if (u->paused) {
		u->paused = false;
		curl_easy_pause(u->job->easy, CURLPAUSE_CONT);
	}
}

static size_t webhook_on_read(char *dst, size_t size, size_t nitems, void *ud)
{
	struct webhook_upload *u = ud;
	size_t cap = size * nitems, n = 0;
	for (;;) {
		webhook_upload_pump(u);
		size_t k = webhook_body_fill(u->body, dst + n, cap - n);
		n += k;
		if (k == 0 || n == cap)
			break;
	}
	/* Read ahead what comes after. */
	webhook_upload_pump(u);
	if (n > 0 || webhook_body_done(u->body))
		return n;
	if (u->err)
		return CURL_READFUNC_ABORT;
	u->paused = true;
	return CURL_READFUNC_PAUSE;
}

/* curl rewinds before it sends the body again (a kept-alive connection that
 * turned out closed, a redirect or an authentication round, though neither is
 * enabled): back to 0 is all it needs. */
static int webhook_on_seek(void *ud, curl_off_t offset, int origin)
{
	struct webhook_upload *u = ud;
	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	webhook_body_rewind(u->body);
	return CURL_SEEKFUNC_OK;
}

/* ---- curl ------------------------------------------------------------------------------ */

static size_t webhook_on_body(char *p, size_t size, size_t n, void *ud)
{
	struct webhook_job *j = ud;
	size_t len = size * n;
	size_t room = sizeof j->resp - j->resp_len;
	size_t take = len < room ? len : room;
	memcpy(j->resp + j->resp_len, p, take);
	j->resp_len += take;
	return len;
}

static size_t webhook_on_header(char *p, size_t size, size_t n, void *ud)
{
	struct webhook_job *j = ud;
	size_t len = size * n;
	/* The last status line wins (after "100 Continue"). */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		size_t take = len < sizeof j->status_line - 1 ? len : sizeof j->status_line - 1;
		memcpy(j->status_line, p, take);
		j->status_line[take] = '\0';
		j->resp_len = 0;
	}
	return len;
}

static void webhook_completed(struct webhook_job *j, CURLcode cc)
{
	struct webhook *wh = j->wh;
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
	curl_multi_remove_handle(wh->multi, j->easy);
	curl_easy_cleanup(j->easy);
	j->easy = NULL;
	if (cc != CURLE_OK) {
		j->status = 0;
		j->outcome = WEBHOOK_RETRY;
		snprintf(j->reason, sizeof j->reason, "%s",
		         j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
	} else {
		j->outcome = webhook_classify(j->status);
		webhook_reason(j->status, j->status_line, j->resp, j->resp_len, j->reason,
		               sizeof j->reason);
	}
	if (cc != CURLE_OK && j->upload && j->upload->err)
		snprintf(j->reason, sizeof j->reason, "cannot read the message: %s",
		         strerror(-j->upload->err));
	webhook_upload_release(j->upload);
	j->upload = NULL;
	webhook_request_free(&j->req);
	curl_slist_free_all(j->hdrs);
	j->hdrs = NULL;
	if (j->item == NULL) {
		webhook_sync_end(j, j->outcome == WEBHOOK_DELIVERED, j->reason);
		return;
	}
	webhook_finish_item(j);
}

static void webhook_check_multi(struct webhook *wh)
{
	CURLMsg *m;
	int left;
	while (wh->multi && (m = curl_multi_info_read(wh->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct webhook_job *j = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		if (j)
			webhook_completed(j, m->data.result);
	}
}

static void webhook_on_poll(uv_poll_t *p, int status, int events)
{
	struct webhook_sock *ws = p->data;
	struct webhook *wh = ws->wh;
	if (wh->stopping)
		return;
	int flags = 0;
	if (status < 0)
		flags |= CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(wh->multi, ws->fd, flags, &running);
	webhook_check_multi(wh);
}

static void webhook_on_sock_closed(uv_handle_t *h)
{
	free(h->data);
}

void webhook_sock_close(struct webhook_sock *ws)
{
	struct webhook *wh = ws->wh;
	if (ws->prev)
		ws->prev->next = ws->next;
	else
		wh->socks = ws->next;
	if (ws->next)
		ws->next->prev = ws->prev;
	uv_poll_stop(&ws->poll);
	uv_close((uv_handle_t *)&ws->poll, webhook_on_sock_closed);
}

int webhook_on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
	(void)e;
	struct webhook *wh = ud;
	struct webhook_sock *ws = sockp;
	if (wh->stopping)
		return 0;
	if (what == CURL_POLL_REMOVE) {
		if (ws) {
			curl_multi_assign(wh->multi, s, NULL);
			webhook_sock_close(ws);
		}
		return 0;
	}
	if (ws == NULL) {
		ws = calloc(1, sizeof *ws);
		if (ws == NULL)
			return -1;
		if (uv_poll_init_socket(wh->loop, &ws->poll, s) < 0) {
			free(ws);
			return -1;
		}
		ws->poll.data = ws;
		ws->wh = wh;
		ws->fd = s;
		ws->next = wh->socks;
		if (wh->socks)
			wh->socks->prev = ws;
		wh->socks = ws;
		curl_multi_assign(wh->multi, s, ws);
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&ws->poll, events, webhook_on_poll);
	return 0;
}

static void webhook_on_curl_timer(uv_timer_t *t)
{
	struct webhook *wh = t->data;
	if (wh->stopping)
		return;
	int running;
	curl_multi_socket_action(wh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	webhook_check_multi(wh);
}

int webhook_on_timer(CURLM *m, long timeout_ms, void *ud)
{
	(void)m;
	struct webhook *wh = ud;
	if (wh->stopping)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&wh->curl_timer);
	else
		uv_timer_start(&wh->curl_timer, webhook_on_curl_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

void webhook_start_post(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	CURL *e = curl_easy_init();
	j->easy = e;
	struct webhook_upload *u = calloc(1, sizeof *u);
	if (u) {
		/* The body is the upload's from now on (it may outlive the job). */
		u->loop = wh->loop;
		u->fs.data = u;
		u->body = j->req.body;
		u->job = j;
		j->req.body = NULL;
		j->upload = u;
	}
	bool ok = e != NULL && u != NULL;
	for (size_t i = 0; ok && i < j->req.nheaders; i++) {
		struct curl_slist *n = curl_slist_append(j->hdrs, j->req.headers[i]);
		if (n == NULL)
			ok = false;
		else
			j->hdrs = n;
	}
	ok = ok && curl_easy_setopt(e, CURLOPT_URL, wh->url) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)j) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
	     /* Streamed with an exact Content-Length: no chunked encoding. */
	     curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->body->len) ==
	         CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_READFUNCTION, webhook_on_read) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_READDATA, u) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, webhook_on_seek) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_SEEKDATA, u) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)wh->opt.timeout_ms) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, webhook_on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, j) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, webhook_on_header) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HEADERDATA, j) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf) == CURLE_OK &&
	     curl_multi_add_handle(wh->multi, e) == CURLM_OK;
	if (ok) {
		/* The first chunk came with the request: read the second. */
		webhook_upload_pump(u);
		return;
	}
	if (e) {
		curl_easy_cleanup(e);
		j->easy = NULL;
	}
	webhook_upload_release(j->upload);
	j->upload = NULL;
	/* Not a verdict on the message: try again later. */
	j->outcome = WEBHOOK_RETRY;
	snprintf(j->reason, sizeof j->reason, "cannot start the request (out of memory)");
	webhook_request_free(&j->req);
	if (j->item == NULL) {
		webhook_sync_end(j, false, j->reason);
		return;
	}
	webhook_finish_item(j);
}
