/* webhook_curl: the curl side of webhook.c (SPEC 5): one easy handle per post
 * on the webhook's curl_loop (curl_loop.h: curl's multi-socket interface on
 * the service's libuv loop), its body streamed from the message file by a
 * curl_loop_upload. A finished request goes back to webhook.c
 * (webhook_finish_item, webhook_sync_end). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook_priv.h"

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

/* The post ended (curl_loop took the handle off the multi handle). */
static void webhook_completed(struct curl_loop_xfer *x, CURLcode cc)
{
	struct webhook_job *j =
	    (struct webhook_job *)(void *)((char *)x - offsetof(struct webhook_job, xfer));
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
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
	int uerr = curl_loop_upload_error(j->upload);
	if (cc != CURLE_OK && uerr)
		snprintf(j->reason, sizeof j->reason, "cannot read the message: %s",
		         strerror(-uerr));
	curl_loop_upload_release(j->upload);
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

void webhook_start_post(struct webhook_job *j)
{
	struct webhook *wh = j->wh;
	if (wh->nats) { /* SPEC 9: forward mode */
		webhook_nats_post(j);
		return;
	}
	CURL *e = curl_easy_init();
	j->easy = e;
	/* The body is the upload's from now on (it may outlive the job). */
	struct curl_loop_upload *u = curl_loop_upload_new(wh->loop, j->req.body);
	j->req.body = NULL;
	j->upload = u;
	j->xfer.done = webhook_completed;
	bool ok = e != NULL && u != NULL;
	for (size_t i = 0; ok && i < j->req.nheaders; i++) {
		struct curl_slist *n = curl_slist_append(j->hdrs, j->req.headers[i]);
		if (n == NULL)
			ok = false;
		else
			j->hdrs = n;
	}
	ok = ok && curl_easy_setopt(e, CURLOPT_URL, wh->url) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	     curl_loop_upload_attach(u, e) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)wh->opt.timeout_ms) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, webhook_on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, j) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, webhook_on_header) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HEADERDATA, j) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf) == CURLE_OK &&
	     curl_loop_add(wh->cl, e, &j->xfer) == 0;
	if (ok) {
		/* The first chunk came with the request: read the second. */
		curl_loop_upload_start(u);
		return;
	}
	if (e) {
		curl_easy_cleanup(e);
		j->easy = NULL;
	}
	curl_loop_upload_release(j->upload);
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
