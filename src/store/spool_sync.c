/* spool_sync: the group commit of the spool's directories (issue 8), with each
 * caller answered by the fsync that covered it (issue 12). See spool_priv.h. */
#include "spool_priv.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct spool_gwait {
	uint64_t ticket;
	int rc;
	bool done;
	struct spool_gwait *next;
};

void spool_gsync_init(struct spool_gsync *g)
{
	memset(g, 0, sizeof *g);
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->sync = fsync;
}

void spool_gsync_destroy(struct spool_gsync *g)
{
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

/* Why not keep "the result of the last fsync" for waiters to read when they
 * wake (issue 12): fsync B may fail for tickets 5..7, and fsync C, started by
 * ticket 8, may succeed before the waiter of ticket 6 runs again; that waiter
 * would read C's success although its rename was only ever covered by B. A
 * successful fsync after a failed one does not make the first one's changes
 * durable (Linux reports a writeback error once and may drop the dirty state),
 * so ticket 6 must get B's error: the runner settles every waiter it covered
 * while it still holds the lock, before anyone can start C. */
int spool_gsync(struct spool_gsync *g, int fd, uint64_t *ticket)
{
	pthread_mutex_lock(&g->mu);
	struct spool_gwait w = {.ticket = ++g->issued, .next = g->waiters};
	g->waiters = &w;
	while (!w.done) {
		if (g->running) {
			pthread_cond_wait(&g->cv, &g->mu);
			continue;
		}
		g->running = true;
		uint64_t covers = g->covers = g->issued;
		pthread_mutex_unlock(&g->mu);
		int r = g->sync(fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&g->mu);
		g->running = false;
		g->fsyncs++;
		if (r < 0)
			g->failures++;
		/* Settle the callers this fsync covered; later tickets wait on. */
		for (struct spool_gwait **p = &g->waiters; *p != NULL;) {
			if ((*p)->ticket <= covers) {
				(*p)->rc = r;
				(*p)->done = true;
				*p = (*p)->next;
			} else {
				p = &(*p)->next;
			}
		}
		pthread_cond_broadcast(&g->cv);
	}
	pthread_mutex_unlock(&g->mu);
	if (ticket)
		*ticket = w.ticket;
	return w.rc;
}

void spool_sync_stats(struct spool *s, uint64_t *renames, uint64_t *fsyncs)
{
	uint64_t r = 0, f = 0;
	struct spool_gsync *gs[] = {&s->meta_sync, &s->new_sync};
	for (size_t i = 0; i < 2; i++) {
		pthread_mutex_lock(&gs[i]->mu);
		r += gs[i]->issued;
		f += gs[i]->fsyncs;
		pthread_mutex_unlock(&gs[i]->mu);
	}
	*renames = r;
	*fsyncs = f;
}
