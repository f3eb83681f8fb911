/* curl_loop: libcurl's multi-socket interface driven by the service's libuv
 * loop, and request bodies streamed from a file on that loop. What the webhook
 * (webhook_curl.c) and rspamd (rspamd.c) share; each owns a curl_loop of its
 * own, so stopping one never touches the other's transfers.
 *
 * A curl_loop is one multi handle: a uv_poll_t per socket curl opens (made and
 * closed as curl asks through CURLMOPT_SOCKETFUNCTION) and one uv_timer_t for
 * curl's timeouts (CURLMOPT_TIMERFUNCTION). A finished transfer is taken off
 * the multi handle and reported through its curl_loop_xfer.
 *
 * A curl_loop_upload is a request body (struct webhook_body, webhook.h) that
 * curl pulls through its read callback: what is ready is copied out at once;
 * the file itself is read by uv_fs_read on the thread pool, one chunk ahead
 * of what curl sends, and the transfer pauses (CURL_READFUNC_PAUSE) if curl
 * catches up, until the read's callback resumes it. The loop never waits on
 * the disk, and a body holds two chunks whatever the size of its file.
 *
 * Loop thread only. */
#ifndef MAILPORT_CURL_LOOP_H
#define MAILPORT_CURL_LOOP_H

#include <stdbool.h>
#include <uv.h>

#include <curl/curl.h>

struct curl_loop;
struct webhook_body;

/* Embedded by the owner of a transfer; CURLOPT_PRIVATE of its easy handle is
 * set to it by curl_loop_add. done runs once, from the loop, when the
 * transfer ended (result CURLE_OK or curl's error), after the easy handle was
 * removed from the multi handle: the owner reads what it wants with
 * curl_easy_getinfo and cleans the handle up. */
struct curl_loop_xfer {
	void (*done)(struct curl_loop_xfer *x, CURLcode result);
};

/* A multi handle on `loop` (curl_global_init is counted per curl_loop).
 * Returns 0, -ENOMEM, or -EIO when libcurl cannot be initialised. */
int curl_loop_new(uv_loop_t *loop, struct curl_loop **out);
/* Whether this libcurl resolves names without blocking (the threaded or
 * c-ares resolver): without it a host name in a URL blocks the loop. */
bool curl_loop_async_dns(void);
/* Start a configured easy handle. Returns 0, or -ENOMEM / -EINVAL (curl
 * refused it; nothing runs, the caller still owns `easy`), or -ESHUTDOWN
 * after curl_loop_stop. */
int curl_loop_add(struct curl_loop *cl, CURL *easy, struct curl_loop_xfer *x);
/* Take a transfer off before it ended: x->done will not run. The caller
 * still cleans `easy` up. Harmless for a handle not added, or after stop. */
void curl_loop_remove(struct curl_loop *cl, CURL *easy);
/* Drain: every socket is no longer watched, the timer and the multi handle
 * go. Transfers not removed first are dropped without their done. Idempotent;
 * the handles are closed by the loop, so free only after it has run. */
void curl_loop_stop(struct curl_loop *cl);
/* After the loop has ended. NULL is a no-op. */
void curl_loop_free(struct curl_loop *cl);

struct curl_loop_upload;

/* An upload of body (taken over: freed with the upload, and on failure).
 * NULL on out of memory. */
struct curl_loop_upload *curl_loop_upload_new(uv_loop_t *loop, struct webhook_body *body);
/* Make `easy` POST the body: an exact Content-Length (no chunked encoding),
 * the read and seek callbacks. CURLE_OK or curl's error. */
CURLcode curl_loop_upload_attach(struct curl_loop_upload *u, CURL *easy);
/* Read ahead the next chunk the body takes (call once the handle is added). */
void curl_loop_upload_start(struct curl_loop_upload *u);
/* The -errno of a read that failed (the transfer was aborted), else 0. */
int curl_loop_upload_error(const struct curl_loop_upload *u);
/* The transfer no longer needs it: freed now, or by its read in flight.
 * NULL is a no-op. */
void curl_loop_upload_release(struct curl_loop_upload *u);

#endif
