/* deliver: what happens to a complete message between its end of data and its
 * reply (SPEC 5), so the session only ever sees "a message went in, a verdict
 * came out":
 *   1. SMTPD_FILTER, when set (filter.c): 451/554 end it here;
 *   2. SMTPD_DELIVER=discard: 250 without storing;
 *   3. SMTPD_WEBHOOK_SYNC=1: posted before the answer (webhook.c); 2xx stores
 *      it straight into cur/ already marked delivered (or keeps nothing with
 *      SMTPD_WEBHOOK_KEEP=0) and answers 250, anything else 451 4.3.0;
 *   4. otherwise the spool, on the thread pool; with SMTPD_WEBHOOK_URL the
 *      stored message is then queued for the webhook (store and forward).
 *
 * The session fills a job, calls deliver_start(), and gets job->done exactly
 * once with the verdict — possibly before deliver_start() returns (discard),
 * otherwise from the loop after the work is finished. The body stays the
 * session's and must stay untouched until done runs. */
#ifndef MAILPORT_DELIVER_H
#define MAILPORT_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "spool.h"

struct server;
struct deliver_job;
struct filter_run;
struct log_ctx;

struct deliver_verdict {
	unsigned code;        /* 250, 451, 554 ... */
	const char *enhanced; /* "2.0.0" */
	const char *text;     /* "Ok: queued as <id>" */
	bool stored;          /* the message is durably in the spool */
	int err;              /* negative errno of a storage failure, else 0 */
};

typedef void (*deliver_done_fn)(struct deliver_job *job, const struct deliver_verdict *v);

struct deliver_job {
	/* Filled by the caller. */
	struct server *srv;
	struct spool_envelope env; /* env.id points at job->id */
	const char *body;          /* LF line ends; borrowed until done */
	size_t len;
	deliver_done_fn done;
	void *ctx;
	const struct log_ctx *log; /* the session's, for log lines; may stay NULL */

	/* Owned by the job. */
	char id[SPOOL_ID_MAX];
	const char **rcpt; /* env.rcpt; freed by deliver_job_free */
	uv_work_t work;
	int rc;
	char text[SPOOL_ID_MAX + 256];
	struct buf trace;  /* Return-Path and Received, as they will be stored */
	uv_buf_t parts[2]; /* trace + body: what the filter and the sync webhook see */
	struct filter_run *filter;
	struct deliver_job *prev, *next; /* jobs with a filter running */
	char *delivery_json; /* SMTPD_WEBHOOK_SYNC: the "delivery" of a delivered message */
};

/* A job for the current transaction: allocates the recipient array and gives
 * the message its id. NULL on out of memory. */
struct deliver_job *deliver_job_new(struct server *srv, size_t nrcpt);
void deliver_job_free(struct deliver_job *job);

/* Start the job; job->done runs exactly once. */
void deliver_start(struct deliver_job *job);

/* server.c: set up what delivery needs (the webhook: curl on the loop, the
 * messages left in new/ queued again). Returns 0, or -1 with a message in err. */
int deliver_init(struct server *srv, char *err, size_t errlen);
/* server.c, when the grace period ends and when the loop is to end: running
 * filters are killed (451), synchronous posts fail (451), queued webhook work is
 * abandoned (it stays in new/), and every handle delivery owns is closed.
 * Idempotent. */
void deliver_stop(struct server *srv);
/* server.c, after the loop has ended. */
void deliver_free(struct server *srv);

#endif
