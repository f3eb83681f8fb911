#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int stats_init(struct stats *st, const char *hostname, const struct endpoint_list *eps,
               const char *const *tls_modes)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_init(&st->mu, NULL);
	st->started_at = time(NULL);
	st->hostname = strdup(hostname ? hostname : "");
	if (st->hostname == NULL)
		return -ENOMEM;
	if (eps->n) {
		st->listeners = calloc(eps->n, sizeof *st->listeners);
		if (st->listeners == NULL)
			return -ENOMEM;
	}
	st->nlisteners = eps->n;
	for (size_t i = 0; i < eps->n; i++) {
		struct stats_listener *l = &st->listeners[i];
		snprintf(l->address, sizeof l->address, "%s", eps->v[i].address);
		l->port = eps->v[i].port;
		l->ipv6 = eps->v[i].family == AF_INET6;
		l->any = eps->v[i].any;
		l->tls = tls_modes ? tls_modes[i] : "none";
		l->state = "closed";
	}
	st->c.spool_writable = true;
	atomic_store(&st->heartbeat_ms, stats_now_ms());
	return 0;
}

void stats_destroy(struct stats *st)
{
	free(st->listeners);
	free(st->hostname);
	st->listeners = NULL;
	st->hostname = NULL;
	pthread_mutex_destroy(&st->mu);
}

void stats_lock(struct stats *st)
{
	pthread_mutex_lock(&st->mu);
}

void stats_unlock(struct stats *st)
{
	pthread_mutex_unlock(&st->mu);
}

int stats_snapshot(struct stats *st, struct stats_counters *c, struct stats_listener **listeners,
                   size_t *n)
{
	struct stats_listener *copy = NULL;
	/* nlisteners is constant after init, so the allocation can be sized
	 * outside the lock. */
	if (st->nlisteners) {
		copy = malloc(st->nlisteners * sizeof *copy);
		if (copy == NULL)
			return -ENOMEM;
	}
	stats_lock(st);
	*c = st->c;
	if (copy)
		memcpy(copy, st->listeners, st->nlisteners * sizeof *copy);
	stats_unlock(st);
	*listeners = copy;
	*n = st->nlisteners;
	return 0;
}

uint64_t stats_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void stats_beat(struct stats *st)
{
	atomic_store(&st->heartbeat_ms, stats_now_ms());
}

bool stats_alive(struct stats *st)
{
	uint64_t last = atomic_load(&st->heartbeat_ms);
	uint64_t now = stats_now_ms();
	return now < last || now - last <= STATS_STALL_MS;
}
