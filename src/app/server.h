/* server: the one libuv loop and what hangs off it.
 *
 * listener.c binds one uv_tcp_t per endpoint; session.c adapts one connection
 * to the pure protocol core; server.c owns the loop, the signals, the heartbeat,
 * the drain on SIGTERM and the storage work sent to the thread pool. */
#ifndef MAILPORT_SERVER_H
#define MAILPORT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "endpoint.h"
#include "proxy_proto.h"
#include "stats.h"
#include "tlsio.h"

struct server;
struct session;
struct spool;
struct httpd;
struct auth_users;
struct readiness;
struct policy;
struct policy_load;

/* SPEC 6: how a listener speaks TLS (the "tls" of /status). */
enum listener_tls {
	LISTENER_TLS_NONE,     /* SMTPD_TLS=off and not a TLS port */
	LISTENER_TLS_STARTTLS, /* SMTPD_TLS optional or required: STARTTLS offered */
	LISTENER_TLS_IMPLICIT, /* on SMTPD_TLS_PORTS: TLS from the first byte (RFC 8314) */
};

struct listener {
	uv_tcp_t tcp;
	struct server *srv;
	const struct endpoint *ep;
	size_t index; /* in srv->listeners and stats.listeners */
	bool open;    /* tcp handle initialised and not yet closed */
	bool proxy;   /* on SMTPD_PROXY_PORTS: a PROXY header comes before the greeting */
	enum listener_tls tls;
	/* Issue 12: an accept error marks the listener not ready (err, err_new:
	 * since the last probe); one that leaves the socket dead closes the handle
	 * (closing until its close callback), and the readiness probe listens anew. */
	int err;
	bool err_new;
	bool closing;
	unsigned errors_in_row; /* accept errors since the last connection */
	/* Out of memory at accept: the connection goes into `spare` and is closed at
	 * once, so libuv keeps polling the listener (it stops until uv_accept). */
	uv_tcp_t spare;
	bool spare_busy;     /* spare is closing */
	bool accept_waiting; /* a connection waits for the spare's close callback */
};

struct server {
	uv_loop_t *loop;
	const struct config *cfg;
	const struct endpoint_list *eps;
	struct listener *listeners;
	size_t nlisteners;
	struct stats stats;
	struct spool *spool;
	struct httpd *httpd;
	struct deliver_env *deliver; /* deliver.h: streaming, filter, commit, webhook */

	uv_timer_t heartbeat;
	uint64_t beat_last_ns; /* uv_hrtime() of the last beat: loop lag (issue 12) */
	uv_timer_t grace;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_signal_t sighup;

	/* Every live session, for the drain and the per-client limit. */
	struct session *sessions;
	/* Live sessions per client address (SMTPD_MAX_CONNECTIONS_PER_CLIENT):
	 * a hash of SESSION_CLIENT_BUCKETS chains, allocated on first use. */
	struct session_client **client_buckets;
	/* Live sessions by id (session_find), SESSION_ID_BUCKETS chains. */
	struct session **id_buckets;
	uint64_t nsessions;
	uint64_t max_connections;      /* SMTPD_MAX_CONNECTIONS, lowered to fit RLIMIT_NOFILE */
	struct auth_limit *auth_limit; /* failed AUTH per address; NULL: AUTH off or no limit */
	uint64_t next_session_id;

	bool draining;
	bool grace_over;

	/* Issue 12 (readiness.c): the periodic probe, and what its latest run found
	 * about SMTPD_SPOOL_MIN_FREE, which the SMTP core reads at MAIL. */
	struct readiness *readiness;
	bool spool_low;

	/* SMTPD_PROXY_TRUSTED: the peers allowed to send a PROXY header. */
	struct proxy_proto_cidr proxy_trusted[PROXY_PROTO_CIDRS_MAX];
	size_t nproxy_trusted;

	/* SPEC 6 (server.c): the TLS context new handshakes use, replaced by a
	 * reload while sessions keep the one they started with, and the AUTH users
	 * (reference counted: a reload does not pull them from a running check). */
	struct tlsio_ctx *tls; /* NULL when no listener speaks TLS */
	struct tlsio_settings tls_settings;
	const char **tls_addresses;     /* listener addresses, for a self-signed cert */
	uv_timer_t tls_watch;           /* stats the certificate files now and then */
	struct tlsio_stamp tls_attempt; /* the files as a reload in flight found them */
	struct tlsio_stamp tls_refused; /* ... and as the last refused reload did */
	bool tls_watching;
	bool tls_stating; /* a stat of the files is on the thread pool */
	uv_work_t tls_stat_work;
	struct tlsio_stamp tls_stat; /* what that stat found */
	bool tls_reloading;
	bool tls_reload_again;
	bool tls_has_refused;
	struct auth_users *users; /* NULL when SMTPD_AUTH=off */
	bool users_reloading;

	/* SPEC 8 (policy_load.c): the recipient policy table every session's core
	 * reads at RCPT through a pointer to this field (NULL: no policy), and
	 * its loader, which swaps a reloaded table in here on the loop. */
	const struct policy *policy;
	struct policy_load *policy_load;

	/* Issue 17: SMTPD_RETENTION_* (retention.h); NULL when off. */
	struct retention *retention;
};

/* Run the service until it has drained after SIGTERM/SIGINT. Returns the exit
 * code (0 clean; 1 start-up failure with a one-line message in err; 2 for a
 * setting only OpenSSL can judge, SMTPD_TLS_CIPHERS). */
int server_run(const struct config *cfg, const struct endpoint_list *eps, char *err, size_t errlen);

/* listener.c */
int listener_open_all(struct server *srv, char *err, size_t errlen);
void listener_close_all(struct server *srv);
/* The readiness probe's turn (loop thread): a listener whose socket stopped
 * listening is closed, a closed failed one listens anew, an error older than
 * one probe is forgotten; /status and /readyz are told. */
void listener_probe(struct server *srv);
/* Memory for a new session: calloc, or NULL. In test builds (sanitizers or
 * MAILPORT_TEST_HOOKS) MAILPORT_TEST_FAIL_ACCEPT_ALLOC=N makes the first N fail. */
void *listener_session_alloc(size_t size);
/* session_accept found no memory for the session: take the connection into the
 * listener's spare handle and close it (connections.refused, out_of_memory). */
void listener_refuse_oom(struct listener *l);

/* session.c */
/* A new connection is waiting on l: accept it (or refuse it over a limit). */
void session_accept(struct listener *l);
/* Draining: idle sessions get 421 4.3.2 now, the others when their transaction
 * ends; with `force`, every session is told and closed now. */
void session_drain(struct session *s, bool force);
/* The live session with this id, or NULL (issue 14: delivery's way back). */
struct session *session_find(struct server *srv, uint64_t sid);
/* What delivery calls back (deliver.h), with the server as owner. */
extern const struct deliver_hooks session_deliver_hooks;
struct session *session_next(struct session *s);

/* server.c, for sessions */
void server_session_gone(struct server *srv);

#endif
