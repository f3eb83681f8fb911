/* curl_loop: libcurl's multi-socket interface on the libuv loop, and bodies
 * streamed from files (webhook, rspamd). See curl_loop.h. */
#include "curl_loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook.h"

struct curl_loop_sock {
	uv_poll_t poll;
	struct curl_loop *cl;
	struct curl_loop_sock *prev, *next;
	curl_socket_t fd;
};

struct curl_loop {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct curl_loop_sock *socks;
	bool stopping;
	bool timer_open;
};

/* ---- the multi handle on the loop --------------------------------------------------------- */

static void curl_loop_check(struct curl_loop *cl)
{
	CURLMsg *m;
	int left;
	while (cl->multi && (m = curl_multi_info_read(cl->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode cc = m->data.result;
		struct curl_loop_xfer *x = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
		/* m is invalid once the handle is removed: read it first. */
		curl_multi_remove_handle(cl->multi, e);
		if (x && x->done)
			x->done(x, cc);
	}
}

static void curl_loop_on_poll(uv_poll_t *p, int status, int events)
{
	struct curl_loop_sock *ws = p->data;
	struct curl_loop *cl = ws->cl;
	if (cl->stopping)
		return;
	int flags = 0;
	if (status < 0)
		flags |= CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(cl->multi, ws->fd, flags, &running);
	curl_loop_check(cl);
}

static void curl_loop_on_sock_closed(uv_handle_t *h)
{
	free(h->data);
}

static void curl_loop_sock_close(struct curl_loop_sock *ws)
{
	struct curl_loop *cl = ws->cl;
	if (ws->prev)
		ws->prev->next = ws->next;
	else
		cl->socks = ws->next;
	if (ws->next)
		ws->next->prev = ws->prev;
	uv_poll_stop(&ws->poll);
	uv_close((uv_handle_t *)&ws->poll, curl_loop_on_sock_closed);
}

static int curl_loop_on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
	(void)e;
	struct curl_loop *cl = ud;
	struct curl_loop_sock *ws = sockp;
	if (cl->stopping)
		return 0;
	if (what == CURL_POLL_REMOVE) {
		if (ws) {
			curl_multi_assign(cl->multi, s, NULL);
			curl_loop_sock_close(ws);
		}
		return 0;
	}
	if (ws == NULL) {
		ws = calloc(1, sizeof *ws);
		if (ws == NULL)
			return -1;
		if (uv_poll_init_socket(cl->loop, &ws->poll, s) < 0) {
			free(ws);
			return -1;
		}
		ws->poll.data = ws;
		ws->cl = cl;
		ws->fd = s;
		ws->next = cl->socks;
		if (cl->socks)
			cl->socks->prev = ws;
		cl->socks = ws;
		curl_multi_assign(cl->multi, s, ws);
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&ws->poll, events, curl_loop_on_poll);
	return 0;
}

static void curl_loop_on_timer(uv_timer_t *t)
{
	struct curl_loop *cl = t->data;
	if (cl->stopping)
		return;
	int running;
	curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	curl_loop_check(cl);
}

static int curl_loop_on_curl_timer(CURLM *m, long timeout_ms, void *ud)
{
	(void)m;
	struct curl_loop *cl = ud;
	if (cl->stopping)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&cl->timer);
	else
		uv_timer_start(&cl->timer, curl_loop_on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

int curl_loop_new(uv_loop_t *loop, struct curl_loop **out)
{
	*out = NULL;
	struct curl_loop *cl = calloc(1, sizeof *cl);
	if (cl == NULL)
		return -ENOMEM;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(cl);
		return -EIO;
	}
	cl->loop = loop;
	cl->multi = curl_multi_init();
	if (cl->multi == NULL) {
		curl_global_cleanup();
		free(cl);
		return -EIO;
	}
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, curl_loop_on_socket);
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, curl_loop_on_curl_timer);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	uv_timer_init(loop, &cl->timer);
	cl->timer.data = cl;
	cl->timer_open = true;
	*out = cl;
	return 0;
}

bool curl_loop_async_dns(void)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	return (vi->features & CURL_VERSION_ASYNCHDNS) != 0;
}

int curl_loop_add(struct curl_loop *cl, CURL *easy, struct curl_loop_xfer *x)
{
	if (cl->stopping || cl->multi == NULL)
		return -ESHUTDOWN;
	if (curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x) != CURLE_OK)
		return -EINVAL;
	CURLMcode mc = curl_multi_add_handle(cl->multi, easy);
	if (mc == CURLM_OK)
		return 0;
	return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

void curl_loop_remove(struct curl_loop *cl, CURL *easy)
{
	if (cl != NULL && cl->multi != NULL && easy != NULL)
		curl_multi_remove_handle(cl->multi, easy);
}

void curl_loop_stop(struct curl_loop *cl)
{
	if (cl == NULL || cl->stopping)
		return;
	cl->stopping = true;
	if (cl->timer_open) {
		uv_close((uv_handle_t *)&cl->timer, NULL);
		cl->timer_open = false;
	}
	/* Stop watching curl's sockets before curl closes them. */
	while (cl->socks)
		curl_loop_sock_close(cl->socks);
	curl_multi_cleanup(cl->multi);
	cl->multi = NULL;
}

void curl_loop_free(struct curl_loop *cl)
{
	if (cl == NULL)
		return;
	curl_loop_stop(cl);
	curl_global_cleanup();
	free(cl);
}

/* ---- the body on the wire (issue 14) ------------------------------------------------------ */

struct curl_loop_upload {
	uv_loop_t *loop;
	uv_fs_t fs;
	struct webhook_body *body;
	CURL *easy;      /* while a transfer reads it */
	uint64_t rd_off; /* the chunk in body->in, or being read into it */
	size_t rd_len, rd_got;
	int err; /* a read failed: -errno */
	bool reading, ready, paused;
	bool released; /* with a read in flight: its callback frees the upload */
};

static void curl_loop_upload_free(struct curl_loop_upload *u)
{
	webhook_body_free(u->body);
	free(u);
}

struct curl_loop_upload *curl_loop_upload_new(uv_loop_t *loop, struct webhook_body *body)
{
	struct curl_loop_upload *u = calloc(1, sizeof *u);
	if (u == NULL) {
		webhook_body_free(body);
		return NULL;
	}
	u->loop = loop;
	u->fs.data = u;
	u->body = body;
	return u;
}

void curl_loop_upload_release(struct curl_loop_upload *u)
{
	if (u == NULL)
		return;
	u->easy = NULL;
	if (u->reading) {
		/* The thread pool is writing into u->body->in: the read's
		 * callback frees it all. */
		u->released = true;
		return;
	}
	curl_loop_upload_free(u);
}

int curl_loop_upload_error(const struct curl_loop_upload *u)
{
	return u ? u->err : 0;
}

static void curl_loop_on_fs_read(uv_fs_t *req);

static void curl_loop_upload_read(struct curl_loop_upload *u)
{
	uv_buf_t b =
	    uv_buf_init((char *)u->body->in + u->rd_got, (unsigned)(u->rd_len - u->rd_got));
	int rc = uv_fs_read(u->loop, &u->fs, u->body->fd, &b, 1, (int64_t)(u->rd_off + u->rd_got),
	                    curl_loop_on_fs_read);
	if (rc < 0)
		u->err = rc;
	else
		u->reading = true;
}

/* Move the body on: hand it the chunk read ahead once what it holds is sent,
 * and start reading the next one. */
static void curl_loop_upload_pump(struct curl_loop_upload *u)
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
	curl_loop_upload_read(u);
}

void curl_loop_upload_start(struct curl_loop_upload *u)
{
	curl_loop_upload_pump(u);
}

static void curl_loop_on_fs_read(uv_fs_t *req)
{
	struct curl_loop_upload *u = req->data;
	ssize_t r = req->result;
	uv_fs_req_cleanup(req);
	u->reading = false;
	if (u->released) {
		curl_loop_upload_free(u);
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
			curl_loop_upload_read(u);
			if (u->err == 0)
				return;
		} else {
			u->ready = true;
			curl_loop_upload_pump(u);
		}
	}
	/* curl waits for these bytes (or for the error, to abort). */
	if (u->paused && u->easy) {
		u->paused = false;
		curl_easy_pause(u->easy, CURLPAUSE_CONT);
	}
}

static size_t curl_loop_on_read(char *dst, size_t size, size_t nitems, void *ud)
{
	struct curl_loop_upload *u = ud;
	size_t cap = size * nitems, n = 0;
	for (;;) {
		curl_loop_upload_pump(u);
		size_t k = webhook_body_fill(u->body, dst + n, cap - n);
		n += k;
		if (k == 0 || n == cap)
			break;
	}
	/* Read ahead what comes after. */
	curl_loop_upload_pump(u);
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
static int curl_loop_on_seek(void *ud, curl_off_t offset, int origin)
{
	struct curl_loop_upload *u = ud;
	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	webhook_body_rewind(u->body);
	return CURL_SEEKFUNC_OK;
}

CURLcode curl_loop_upload_attach(struct curl_loop_upload *u, CURL *e)
{
	u->easy = e;
	CURLcode cc = curl_easy_setopt(e, CURLOPT_POST, 1L);
	/* Streamed with an exact Content-Length: no chunked encoding. */
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->body->len);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(e, CURLOPT_READFUNCTION, curl_loop_on_read);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(e, CURLOPT_READDATA, u);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, curl_loop_on_seek);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(e, CURLOPT_SEEKDATA, u);
	return cc;
}
