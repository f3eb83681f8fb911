/* deliver: what happens to a complete message between its end of data and its
 * reply. Today: the spool (SPEC 5), on the thread pool, or nothing for
 * SMTPD_DELIVER=discard. This is the one place where later steps belong (the
 * content filter, the synchronous webhook), so the session only ever sees "a
 * message went in, a verdict came out".
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

#include "spool.h"

struct server;
struct deliver_job;

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

	/* Owned by the job. */
	char id[SPOOL_ID_MAX];
	const char **rcpt; /* env.rcpt; freed by deliver_job_free */
	uv_work_t work;
	int rc;
	char text[SPOOL_ID_MAX + 64];
};

/* A job for the current transaction: allocates the recipient array and gives
 * the message its id. NULL on out of memory. */
struct deliver_job *deliver_job_new(struct server *srv, size_t nrcpt);
void deliver_job_free(struct deliver_job *job);

/* Start the job; job->done runs exactly once. */
void deliver_start(struct deliver_job *job);

#endif
