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
	const char *state; /* "listening", "closed", "error" (static strings) */
	char error[96];    /* state "error": why it does not accept (issue 12) */
	bool proxy;        /* SMTPD_PROXY_PORTS: clients come through a PROXY header */
	uint64_t connections_active;
	uint64_t connections_total;
	uint64_t messages_accepted;
};

/* Why a connection was closed before its greeting: /status counts them all in
 * connections.refused, /metrics by reason (issue 7). */
enum stats_refusal {
	STATS_REFUSED_MAX_CONNECTIONS, /* SMTPD_MAX_CONNECTIONS */
	STATS_REFUSED_PER_CLIENT,      /* SMTPD_MAX_CONNECTIONS_PER_CLIENT */
	STATS_REFUSED_OUT_OF_MEMORY,   /* no memory for the session */
	STATS_REFUSED_PROXY_UNTRUSTED, /* peer not in SMTPD_PROXY_TRUSTED */
	STATS_REFUSED_PROXY_INVALID,   /* malformed PROXY header */
	STATS_REFUSED_PROXY_TIMEOUT,   /* no PROXY header in time */
	STATS_REFUSED_COUNT
};
/* The Prometheus label values: "max_connections", ... */
extern const char *const stats_refusal_names[STATS_REFUSED_COUNT];

/* Upper bounds (seconds) of the buckets of the end-of-data to 250 histogram;
 * one more bucket, +Inf, follows. From a discarded message (microseconds) to
 * a slow disk or a synchronous webhook (seconds). */
#define STATS_LATENCY_BUCKETS 12
extern const double stats_latency_bounds[STATS_LATENCY_BUCKETS];

/* rspamd's actions counted apart (enum rspamd_action, rspamd.h). */
#define STATS_RSPAMD_ACTIONS 7

/* Loop lag (issue 12): how late the heartbeat fires, in seconds per bucket
 * (one more, +Inf, follows). The maximum shown in /status is over the last
 * STATS_LAG_SLOTS slots of STATS_LAG_SLOT_MS: the last minute (50 to 60 s). */
#define STATS_LAG_BUCKETS 8
extern const double stats_lag_bounds[STATS_LAG_BUCKETS];
#define STATS_LAG_SLOTS   6
#define STATS_LAG_SLOT_MS 10000

struct stats_counters {
	bool listeners_bound;
	bool spool_writable;
	bool draining;
	uint64_t connections_active;
	uint64_t connections_total;
	uint64_t connections_refused; /* closed before the greeting by a limit */
	uint64_t max_connections;     /* effective SMTPD_MAX_CONNECTIONS (fdlimit.h) */
	uint64_t nofile_limit;        /* RLIMIT_NOFILE after raising; UINT64_MAX: none */
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
	/* /metrics (issue 7). refused[] sums to connections_refused; rejected_4xx
	 * and rejected_5xx to messages_rejected. */
	uint64_t refused[STATS_REFUSED_COUNT];
	uint64_t rejected_4xx;
	uint64_t rejected_5xx;
	uint64_t tls_handshakes;         /* completed */
	uint64_t tls_handshake_failures; /* failed or timed out */
	uint64_t auth_failures;          /* AUTH answered 535 */
	uint64_t auth_blocked;           /* AUTH answered 454: too many failures (auth_limit.h) */
	/* End of data to 250: counts per bucket (not cumulative), the last +Inf. */
	uint64_t accept_latency[STATS_LATENCY_BUCKETS + 1];
	uint64_t accept_latency_count;
	uint64_t accept_latency_sum_us;
	/* Readiness (issue 12): readiness.c's probe every few seconds, and store
	 * results (a failed store marks the spool not writable at once). */
	char spool_error[80];      /* why spool_writable is false ("": not known) */
	bool spool_low;            /* below SMTPD_SPOOL_MIN_FREE at the latest probe */
	bool spool_probed;         /* spool_free_bytes holds a measure */
	uint64_t spool_free_bytes; /* statvfs f_bavail * f_frsize */
	uint64_t spool_min_free;   /* bytes SMTPD_SPOOL_MIN_FREE asks for (0: no check) */
	bool probe_ok;             /* the latest probe passed every check */
	uint64_t probe_failures;   /* probes that found something wrong */
	/* "listener 127.0.0.1:2525 not listening: ...", or "" */
	char listener_error[ENDPOINT_TEXT_MAX + 128];
	/* Loop lag: counts per bucket (not cumulative), the last +Inf. */
	uint64_t loop_lag[STATS_LAG_BUCKETS + 1];
	uint64_t loop_lag_count;
	uint64_t loop_lag_sum_us;
	uint64_t loop_lag_max_us; /* the largest over the last minute */
	/* Inbound recipient policy (SPEC 8): the table in use (policy_load.c)
	 * and the RCPTs it refused (session.c). */
	bool policy_file;                  /* SMTPD_RECIPIENTS_FILE is set */
	uint64_t policy_domains;           /* SMTPD_DOMAINS patterns (0: every domain) */
	uint64_t policy_recipients;        /* addresses in the file */
	uint64_t policy_recipient_domains; /* @domain lines in the file */
	int64_t policy_file_mtime;         /* Unix seconds of the file in use; 0: none */
	uint64_t policy_reloads;           /* tables swapped in after start-up */
	uint64_t policy_reload_failures;   /* reloads refused: the old table stayed */
	char policy_error[192];            /* why the latest reload was refused ("": it was not) */
	uint64_t rcpt_refused_relay;       /* 554 5.7.1 Relay access denied */
	uint64_t rcpt_refused_unknown;     /* 550 5.1.1 User unknown */
	/* rspamd's checks (SPEC 8, deliver.c): those answered by action (in
	 * rspamd_action_names' order, rspamd.h), those not answered (timeouts
	 * among them), and how long each took from the end of the data (queue
	 * included), in the accept histogram's buckets. */
	bool rspamd_enabled;
	uint64_t rspamd_checks[STATS_RSPAMD_ACTIONS];
	uint64_t rspamd_failures;
	uint64_t rspamd_timeouts;
	uint64_t rspamd_latency[STATS_LATENCY_BUCKETS + 1];
	uint64_t rspamd_latency_count;
	uint64_t rspamd_latency_sum_us;
	/* NATS JetStream (SPEC 9, natspub.c): written by the loop from what the
	 * publisher thread reports. nats_unready: why /readyz fails ("": it
	 * does not, on NATS's account). */
	bool nats_enabled;
	bool nats_connected;
	char nats_server[128]; /* the URL connected to ("": none) */
	char nats_stream[64];
	char nats_last_error[192];
	char nats_unready[128];
	uint64_t nats_pending; /* publishes sent, not acknowledged yet */
	uint64_t nats_published;
	uint64_t nats_failed; /* publishes that got an error or no answer in time */
	uint64_t nats_latency[STATS_LATENCY_BUCKETS + 1];
	uint64_t nats_latency_count;
	uint64_t nats_latency_sum_us;
	/* Issue 17: messages removed by SMTPD_RETENTION_* (retention.c). */
	uint64_t retention_removed;
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
	/* Loop thread only: the largest lag of each recent slot (stats_observe_lag). */
	uint64_t lag_slot_max[STATS_LAG_SLOTS];
	uint64_t lag_slot; /* the slot number (monotonic ms / STATS_LAG_SLOT_MS) of the last */
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

/* Count a connection refused before its greeting (takes the lock). */
void stats_refusal(struct stats *st, enum stats_refusal why);
/* Count a message refused at the end of its data with this reply code (takes the lock). */
void stats_rejected(struct stats *st, unsigned code);
/* One end-of-data to 250 latency, in microseconds (caller holds the lock). */
void stats_observe_accept(struct stats_counters *c, uint64_t us);
/* One heartbeat that fired `us` microseconds late at monotonic now_ms (takes
 * the lock; loop thread only). */
void stats_observe_lag(struct stats *st, uint64_t us, uint64_t now_ms);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t stats_now_ms(void);
void stats_beat(struct stats *st);
/* True while the loop has beaten within STATS_STALL_MS. */
bool stats_alive(struct stats *st);

#endif
