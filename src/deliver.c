#include "deliver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct deliver_job *deliver_job_new(struct server *srv, size_t nrcpt)
{
	struct deliver_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		return NULL;
	job->rcpt = calloc(nrcpt ? nrcpt : 1, sizeof *job->rcpt);
	if (job->rcpt == NULL) {
		free(job);
		return NULL;
	}
	job->srv = srv;
	if (srv->spool)
		spool_new_id(srv->spool, job->id, sizeof job->id);
	else
		snprintf(job->id, sizeof job->id, "discard.%llu",
		         (unsigned long long)++srv->next_message_id);
	job->env.id = job->id;
	job->env.rcpt = job->rcpt;
	job->env.nrcpt = nrcpt;
	return job;
}

void deliver_job_free(struct deliver_job *job)
{
	if (job == NULL)
		return;
	free(job->rcpt);
	free(job);
}

static void deliver_finish(struct deliver_job *job, int rc)
{
	struct deliver_verdict v = {.err = rc};
	if (rc == 0) {
		snprintf(job->text, sizeof job->text, "Ok: queued as %s", job->id);
		v.code = 250;
		v.enhanced = "2.0.0";
		v.text = job->text;
		v.stored = job->srv->spool != NULL;
	} else {
		v.code = 451;
		v.enhanced = "4.3.0";
		v.text = "Error: queue file write error";
	}
	job->done(job, &v);
}

static void deliver_store_work(uv_work_t *req)
{
	struct deliver_job *job = req->data;
	job->rc = spool_store(job->srv->spool, &job->env, job->body, job->len);
}

static void deliver_store_done(uv_work_t *req, int status)
{
	struct deliver_job *job = req->data;
	deliver_finish(job, status < 0 ? status : job->rc);
}

void deliver_start(struct deliver_job *job)
{
	struct server *srv = job->srv;
	if (srv->cfg->deliver == CONFIG_DELIVER_DISCARD || srv->spool == NULL) {
		deliver_finish(job, 0);
		return;
	}
	/* fsync is slow by design: it runs on the thread pool so one slow disk
	 * never stalls the other sessions (SPEC 5). */
	job->work.data = job;
	int rc = uv_queue_work(srv->loop, &job->work, deliver_store_work, deliver_store_done);
	if (rc < 0)
		deliver_finish(job, rc);
}
