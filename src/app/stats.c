#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const char *const stats_refusal_names[STATS_REFUSED_COUNT] = {
    [STATS_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [STATS_REFUSED_PER_CLIENT] = "max_connections_per_client",
    [STATS_REFUSED_OUT_OF_MEMORY] = "out_of_memory",
    [STATS_REFUSED_PROXY_UNTRUSTED] = "proxy_untrusted",
    [STATS_REFUSED_PROXY_INVALID] = "proxy_invalid",
    [STATS_REFUSED_PROXY_TIMEOUT] = "proxy_timeout",
};

const double stats_latency_bounds[STATS_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5,
};

const double stats_lag_bounds[STATS_LAG_BUCKETS] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
};

void stats_refusal(struct stats *st, enum stats_refusal why)
{
	stats_lock(st);
	st->c.connections_refused++;
	st->c.refused[why]++;
	stats_unlock(st);
}

void stats_rejected(struct stats *st, unsigned code)
{
	stats_lock(st);
	st->c.messages_rejected++;
	if (code >= 500)
		st->c.rejected_5xx++;
	else
		st->c.rejected_4xx++;
	stats_unlock(st);
}

void stats_observe_accept(struct stats_counters *c, uint64_t us)
{
	size_t i = 0;
	while (i < STATS_LATENCY_BUCKETS && (double)us > stats_latency_bounds[i] * 1e6)
		i++;
	c->accept_latency[i]++;
	c->accept_latency_count++;
	c->accept_latency_sum_us += us;
}

void stats_observe_lag(struct stats *st, uint64_t us, uint64_t now_ms)
{
	size_t i = 0;
	while (i < STATS_LAG_BUCKETS && (double)us > stats_lag_bounds[i] * 1e6)
		i++;
	uint64_t slot = now_ms / STATS_LAG_SLOT_MS;
	stats_lock(st);
	/* Slots passed since the last beat (a stall may skip several) start empty. */
	for (uint64_t k = st->lag_slot + 1; k <= slot && k <= st->lag_slot + STATS_LAG_SLOTS; k++)
		st->lag_slot_max[k % STATS_LAG_SLOTS] = 0;
	if (slot > st->lag_slot)
		st->lag_slot = slot;
	uint64_t *m = &st->lag_slot_max[st->lag_slot % STATS_LAG_SLOTS];
	if (us > *m)
		*m = us;
	uint64_t max = 0;
	for (size_t k = 0; k < STATS_LAG_SLOTS; k++)
		max = st->lag_slot_max[k] > max ? st->lag_slot_max[k] : max;
	struct stats_counters *c = &st->c;
	c->loop_lag[i]++;
	c->loop_lag_count++;
	c->loop_lag_sum_us += us;
	c->loop_lag_max_us = max;
	stats_unlock(st);
}

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
	st->c.probe_ok = true;
	st->lag_slot = stats_now_ms() / STATS_LAG_SLOT_MS;
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
