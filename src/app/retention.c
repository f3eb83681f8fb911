/* retention: the spool's limits for mail catchers. See retention.h. */
#include "retention.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "spool.h"
#include "spool_index.h"
#include "stats.h"

struct retention {
	uv_loop_t *loop;
	struct spool *sp;
	struct stats *stats;
	uint64_t max_messages;
	uint64_t max_age;
	uv_timer_t timer;
	uv_async_t async;
	uv_work_t work;
	bool busy;        /* a pass is on the thread pool */
	bool again;       /* asked for while busy */
	bool stopping;    /* no more passes */
	uint64_t removed; /* by the pass in flight */
};

/* Remove one message the index placed in st; it may have moved meanwhile. */
static bool retention_remove(struct spool *sp, const char *id, enum spool_state st)
{
	int rc = spool_remove(sp, st, id);
	if (rc == -ENOENT && spool_locate(sp, id, &st) == 0)
		rc = spool_remove(sp, st, id);
	if (rc < 0 && rc != -ENOENT)
		log_warn("retention: cannot remove %s: %s", id, strerror(-rc));
	return rc == 0;
}

/* The arrival second of one of our ids, or -1. */
static int64_t retention_id_time(const char *id)
{
	unsigned long long sec, usec;
	if (sscanf(id, "%llu.M%llu", &sec, &usec) != 2)
		return -1;
	return (int64_t)sec;
}

uint64_t retention_pass(struct spool *sp, uint64_t max_messages, uint64_t max_age, int64_t now)
{
	struct spool_index *ix = spool_get_index(sp);
	struct spool_index_item *items = malloc(RETENTION_BATCH * sizeof *items);
	if (items == NULL)
		return 0;
	uint64_t removed = 0;
	/* By count: the oldest total - max. */
	while (max_messages > 0 && removed < RETENTION_PASS_MAX) {
		size_t total = spool_index_total(ix, NULL), n = 0, t;
		if (total <= max_messages)
			break;
		size_t k =
		    total - max_messages < RETENTION_BATCH ? total - max_messages : RETENTION_BATCH;
		/* The page is newest first: its last item is the oldest message. */
		if (spool_index_page(ix, NULL, total - k, k, items, &n, &t) < 0 || n == 0)
			break;
		uint64_t before = removed;
		for (size_t i = n; i-- > 0;)
			removed += retention_remove(sp, items[i].id, items[i].state);
		if (removed == before)
			break; /* nothing would go: do not spin */
	}
	/* By age: from the oldest, until one is young enough. */
	size_t skip = 0; /* ids with no age, at the old end */
	while (max_age > 0 && removed < RETENTION_PASS_MAX) {
		size_t total = spool_index_total(ix, NULL), n = 0, t;
		if (total <= skip)
			break;
		size_t k = total - skip < RETENTION_BATCH ? total - skip : RETENTION_BATCH;
		if (spool_index_page(ix, NULL, total - skip - k, k, items, &n, &t) < 0 || n == 0)
			break;
		bool young = false;
		uint64_t before = removed;
		size_t skipped = skip;
		for (size_t i = n; i-- > 0 && !young;) {
			int64_t at = retention_id_time(items[i].id);
			if (at < 0)
				skip++;
			else if (now - at >= (int64_t)max_age)
				removed += retention_remove(sp, items[i].id, items[i].state);
			else
				young = true;
		}
		if (young || (removed == before && skip == skipped))
			break; /* done, or nothing would go: do not spin */
	}
	free(items);
	return removed;
}

/* ---- on the loop ---------------------------------------------------------------------- */

static void retention_work(uv_work_t *w)
{
	struct retention *r = w->data;
	r->removed = retention_pass(r->sp, r->max_messages, r->max_age, (int64_t)time(NULL));
}

static void retention_kick(struct retention *r);

static void retention_done(uv_work_t *w, int status)
{
	struct retention *r = w->data;
	(void)status;
	r->busy = false;
	if (r->removed > 0) {
		stats_lock(r->stats);
		r->stats->c.retention_removed += r->removed;
		stats_unlock(r->stats);
		log_info("retention: removed %llu message(s)", (unsigned long long)r->removed);
	}
	if (r->again && !r->stopping) {
		r->again = false;
		retention_kick(r);
	}
}

static void retention_kick(struct retention *r)
{
	if (r->stopping)
		return;
	if (r->busy) {
		r->again = true;
		return;
	}
	r->work.data = r;
	if (uv_queue_work(r->loop, &r->work, retention_work, retention_done) == 0)
		r->busy = true;
}

static void retention_on_timer(uv_timer_t *t)
{
	retention_kick(t->data);
}

static void retention_on_async(uv_async_t *a)
{
	retention_kick(a->data);
}

/* The index's observer, on whatever thread stored: wake the loop. */
static void retention_observe(void *ctx, enum spool_index_change ch, const char *id,
                              enum spool_state st)
{
	struct retention *r = ctx;
	(void)id;
	(void)st;
	if (ch == SPOOL_INDEX_STORED)
		uv_async_send(&r->async);
}

int retention_start(uv_loop_t *loop, struct spool *sp, struct stats *stats, uint64_t max_messages,
                    uint64_t max_age, struct retention **out)
{
	*out = NULL;
	if (sp == NULL || (max_messages == 0 && max_age == 0))
		return 0;
	struct retention *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->loop = loop;
	r->sp = sp;
	r->stats = stats;
	r->max_messages = max_messages;
	r->max_age = max_age;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uv_async_init(loop, &r->async, retention_on_async);
	r->async.data = r;
	uv_timer_start(&r->timer, retention_on_timer, 0, RETENTION_INTERVAL_MS);
	if (max_messages > 0 && spool_index_observe(spool_get_index(sp), retention_observe, r) < 0)
		log_warn("retention: runs every %d ms only (no observer slot)",
		         RETENTION_INTERVAL_MS);
	*out = r;
	return 0;
}

static void retention_closed(uv_handle_t *h)
{
	(void)h;
}

void retention_stop(struct retention *r)
{
	if (r == NULL || r->stopping)
		return;
	r->stopping = true;
	/* No observer call may reach the async handle once it is closing. */
	spool_index_unobserve(spool_get_index(r->sp), retention_observe, r);
	uv_close((uv_handle_t *)&r->timer, retention_closed);
	uv_close((uv_handle_t *)&r->async, retention_closed);
}

void retention_free(struct retention *r)
{
	free(r);
}
