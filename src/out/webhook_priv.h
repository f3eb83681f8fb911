/* webhook_priv: what webhook.c and webhook_curl.c share (the requests in
 * webhook_curl.c, on the curl-multi glue of curl_loop.h; the queue, the jobs
 * and the spool updates in webhook.c). Not for other modules: they see
 * webhook.h's functions only. */
#ifndef MAILPORT_WEBHOOK_PRIV_H
#define MAILPORT_WEBHOOK_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <curl/curl.h>
#include <jansson.h>

#include "curl_loop.h"
#include "natspub.h"
#include "spool.h"
#include "webhook.h"

/* Bytes of a response body kept for the failure reason; the rest is dropped. */
#define WEBHOOK_RESPONSE_KEEP 200

struct webhook_item {
	char id[SPOOL_ID_MAX];
	uint64_t due;     /* loop time (ms) */
	int64_t received; /* Unix seconds, from the id (spool_new_id starts with them) */
};

enum webhook_prep {
	WEBHOOK_PREP_POST,
	WEBHOOK_PREP_GONE,      /* deleted meanwhile (DELETE /messages/{id}) */
	WEBHOOK_PREP_NOT_DUE,   /* a restart found it waiting for a retry */
	WEBHOOK_PREP_DELIVERED, /* delivered, its move to cur/ cut short by a crash */
	WEBHOOK_PREP_FAILED,    /* the same for failed/ */
	WEBHOOK_PREP_ERROR,     /* could not read or build: retried */
};

struct webhook_job {
	struct webhook *wh;
	struct webhook_job *prev, *next; /* every live job */
	struct webhook_job *qnext;       /* the queue of synchronous posts */
	struct webhook_item *item;       /* queued delivery; NULL for a synchronous post */
	uv_work_t work;
	bool in_work;

	/* Synchronous post. */
	webhook_post_fn done;
	void *ctx;
	char sync_id[SPOOL_ID_MAX];
	char *sync_envelope;
	int sync_fd; /* our dup() of the caller's file until the request owns it; -1 */
	uint64_t sync_size;

	/* Prepared on the thread pool. */
	enum webhook_prep prep;
	int err;
	json_t *meta; /* the whole envelope file, for the result */
	unsigned attempt;
	int64_t not_before;
	struct webhook_request req;

	/* The request. */
	struct curl_loop_xfer xfer;      /* the post on curl_loop (its done finds the job) */
	struct curl_loop_upload *upload; /* req.body, once curl reads it */
	CURL *easy;
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	char status_line[128];
	char resp[WEBHOOK_RESPONSE_KEEP];
	size_t resp_len;

	/* SMTPD_NATS_URL, forward mode (webhook_nats.c): the message read whole
	 * (a NATS message is one payload), the envelope it is published with. */
	char *nats_data;
	size_t nats_len;
	json_t *nats_envelope;
	bool nats_wait; /* published, waiting for JetStream: the drain leaves it be */

	/* The outcome. */
	enum webhook_outcome outcome;
	long status;
	char reason[384];
	uint64_t delay_ms;
	bool gone;
};

struct webhook {
	uv_loop_t *loop;
	struct webhook_options opt;
	char *url, *secret, *version;
	struct spool *spool;
	struct stats *stats;
	struct curl_loop *cl; /* curl's multi handle on the loop */
	uv_timer_t wake, stats_timer;
	struct webhook_job *jobs;
	struct webhook_job *sync_head, *sync_tail;
	/* Min-heap of queued items by due time. */
	struct webhook_item **heap;
	size_t nheap, capheap;
	unsigned inflight;
	uint64_t pending; /* items queued or in a job */
	uint64_t rnd;
	bool stopping;
	struct natspub *nats; /* forward mode: publish instead of posting (borrowed) */
	char *nats_stream;
};

/* webhook.c */
void webhook_sync_end(struct webhook_job *j, bool delivered, const char *why);
void webhook_finish_item(struct webhook_job *j);
/* A job that will not finish (the drain): its item stays in new/. */
void webhook_job_abandon(struct webhook_job *j);

/* webhook_nats.c (SPEC 9, forward mode): on the thread pool, read the message
 * whole and keep its envelope (both taken: fd is closed, envelope released
 * with the job); returns 0 or -errno. On the loop, publish it; the outcome
 * goes to webhook_finish_item like a post's. */
int webhook_nats_prep(struct webhook_job *j, json_t *envelope, int fd, uint64_t size);
void webhook_nats_post(struct webhook_job *j);

/* webhook_curl.c: one easy handle per post on the webhook's curl_loop. */
void webhook_start_post(struct webhook_job *j);

#endif
