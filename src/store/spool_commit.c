/* spool_commit: batches for the journal. See spool_commit.h. */
#include "spool_commit.h"

#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "spool.h"

#define SPOOL_COMMIT_TICK_MS 2000
/* One batch at most this many messages, so a burst is answered in slices. */
#define SPOOL_COMMIT_BATCH_MAX 1024

struct spool_commit {
	uv_loop_t *loop;
	struct spool *sp;
	struct journal *j;
	struct journal_entry *head, **tail; /* waiting */
	size_t waiting;
	struct journal_entry *batch[SPOOL_COMMIT_BATCH_MAX];
	size_t nbatch;
	uv_work_t work;
	bool busy; /* a commit is on the pool */
	/* Checkpoints run beside the commits (journal.h), one at a time. */
	uv_work_t ckpt;
	bool ckpt_busy;
	uv_timer_t tick;
	bool stopped;
	int ckpt_rc;
};

static void spool_commit_next(struct spool_commit *c);

static void spool_commit_work(uv_work_t *w)
{
	struct spool_commit *c = w->data;
	journal_commit(c->j, c->batch, c->nbatch);
}

static void spool_commit_after(uv_work_t *w, int status)
{
	struct spool_commit *c = w->data;
	c->busy = false;
	size_t n = c->nbatch;
	c->nbatch = 0;
	for (size_t i = 0; i < n; i++) {
		struct journal_entry *e = c->batch[i];
		if (status < 0 && e->rc == 0)
			e->rc = status; /* cancelled: never ran */
		e->done(e, e->arg);
	}
	spool_commit_next(c);
}

static void spool_commit_ckpt_work(uv_work_t *w)
{
	struct spool_commit *c = w->data;
	c->ckpt_rc = journal_checkpoint(c->j, false);
}

static void spool_commit_ckpt_after(uv_work_t *w, int status)
{
	struct spool_commit *c = w->data;
	(void)status;
	c->ckpt_busy = false;
}

static void spool_commit_next(struct spool_commit *c)
{
	if (c->busy || c->head == NULL)
		return;
	size_t n = 0;
	while (c->head != NULL && n < SPOOL_COMMIT_BATCH_MAX) {
		struct journal_entry *e = c->head;
		c->head = e->next;
		e->next = NULL;
		c->batch[n++] = e;
	}
	if (c->head == NULL)
		c->tail = &c->head;
	c->waiting -= n;
	c->nbatch = n;
	c->busy = true;
	c->work.data = c;
	int rc = uv_queue_work(c->loop, &c->work, spool_commit_work, spool_commit_after);
	if (rc < 0) {
		log_error("spool: cannot queue a commit: %s", uv_strerror(rc));
		for (size_t i = 0; i < n; i++)
			c->batch[i]->rc = rc;
		spool_commit_after(&c->work, rc);
	}
}

static void spool_commit_on_tick(uv_timer_t *t)
{
	struct spool_commit *c = t->data;
	if (c->ckpt_busy || !journal_checkpoint_due(c->j))
		return;
	c->ckpt_busy = true;
	c->ckpt.data = c;
	if (uv_queue_work(c->loop, &c->ckpt, spool_commit_ckpt_work, spool_commit_ckpt_after) < 0)
		c->ckpt_busy = false;
}

struct spool_commit *spool_commit_new(uv_loop_t *loop, struct spool *sp)
{
	struct spool_commit *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->sp = sp;
	c->j = spool_journal(sp);
	c->tail = &c->head;
	uv_timer_init(loop, &c->tick);
	c->tick.data = c;
	uv_timer_start(&c->tick, spool_commit_on_tick, SPOOL_COMMIT_TICK_MS, SPOOL_COMMIT_TICK_MS);
	uv_unref((uv_handle_t *)&c->tick);
	return c;
}

void spool_commit_submit(struct spool_commit *c, struct journal_entry *e)
{
	e->next = NULL;
	e->rc = 0;
	*c->tail = e;
	c->tail = &e->next;
	c->waiting++;
	spool_commit_next(c);
}

size_t spool_commit_pending(const struct spool_commit *c)
{
	return c->waiting + c->nbatch;
}

void spool_commit_stop(struct spool_commit *c)
{
	if (c == NULL || c->stopped)
		return;
	c->stopped = true;
	uv_timer_stop(&c->tick);
	uv_close((uv_handle_t *)&c->tick, NULL);
}

void spool_commit_free(struct spool_commit *c)
{
	free(c);
}
