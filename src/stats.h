/* stats: the service's counters and state, shared with the HTTP thread.
 *
 * The loop thread owns every counter and changes them only between
 * stats_lock()/stats_unlock(); the HTTP thread takes a consistent copy with
 * stats_snapshot() under the same mutex, so a /status answer never mixes two
 * moments. The loop's heartbeat is a lone atomic written by a timer on the loop:
 * /livez compares it with the clock, which notices a stalled loop even while the
 * HTTP thread itself is fine. */
#ifndef MAILPORT_STATS_H
#define MAILPORT_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "endpoint.h"

/* The loop beats every STATS_HEARTBEAT_MS; /livez fails past STATS_STALL_MS. */
#define STATS_HEARTBEAT_MS 200
#define STATS_STALL_MS     2000

struct stats_listener {
	char address[ENDPOINT_TEXT_MAX]; /* "127.0.0.1", "::1" */
	uint16_t port;
	bool ipv6;
	bool any;
	const char *tls;   /* "none", "starttls", "implicit" (static strings) */
	const char *state; /* "listening", "closed" (static strings) */
	bool proxy;        /* SMTPD_PROXY_PORTS: clients come through a PROXY header */
	uint64_t connections_active;
	uint64_t connections_total;
	uint64_t messages_accepted;
};

struct stats_counters {
	bool listeners_bound;
	bool spool_writable;
	bool draining;
	uint64_t connections_active;
	uint64_t connections_total;
	uint64_t connections_refused; /* closed before the greeting by a limit */
	uint64_t messages_accepted;
	uint64_t messages_rejected; /* refused at the end of their data */
	uint64_t messages_bytes;    /* sum of accepted message sizes */
	uint64_t store_failures;    /* storage errors (answered 451) */
	/* The webhook delivery queue (SPEC 5), written by webhook.c. */
	uint64_t delivery_pending;   /* messages in new/ waiting for a 2xx */
	uint64_t delivery_delivered; /* since start: answered 2xx */
	uint64_t delivery_failed;    /* since start: moved to failed/ */
	uint64_t delivery_retries;   /* since start: attempts that will be retried */
	int64_t delivery_oldest;     /* Unix seconds the oldest pending message arrived, 0 = none */
	/* SMTPD_FILTER verdicts (deliver.c). */
	uint64_t filter_accepted;
	uint64_t filter_rejected;   /* 554 */
	uint64_t filter_tempfailed; /* 451: exit 75, a crash, a timeout */
	uint64_t filter_timeouts;   /* killed after SMTPD_FILTER_TIMEOUT */
};

struct stats {
	pthread_mutex_t mu;
	/* Constant after stats_init. */
	time_t started_at;
	char *hostname;
	/* Guarded by mu. */
	struct stats_counters c;
	size_t nlisteners;
	struct stats_listener *listeners;
	/* Monotonic milliseconds of the loop's last beat. */
	_Atomic uint64_t heartbeat_ms;
};

/* Returns 0 or -ENOMEM. One stats_listener per endpoint, in order. */
int stats_init(struct stats *st, const char *hostname, const struct endpoint_list *eps,
               const char *const *tls_modes);
void stats_destroy(struct stats *st);

void stats_lock(struct stats *st);
void stats_unlock(struct stats *st);

/* A consistent copy for another thread. *listeners is malloc'ed (free() it).
 * Returns 0 or -ENOMEM. */
int stats_snapshot(struct stats *st, struct stats_counters *c, struct stats_listener **listeners,
                   size_t *n);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t stats_now_ms(void);
void stats_beat(struct stats *st);
/* True while the loop has beaten within STATS_STALL_MS. */
bool stats_alive(struct stats *st);

#endif
