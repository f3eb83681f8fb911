/* session_priv: what session.c and session_io.c share (the connection types
 * live in session_io.c, the rest of a session's life in session.c). Not for
 * other modules: they see session.h's functions only. */
#ifndef MAILPORT_SESSION_PRIV_H
#define MAILPORT_SESSION_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "log.h"
#include "server.h"

/* Bytes read per read call, and the most unconsumed input a session holds. */
#define SESSION_READ_SIZE 16384
#define SESSION_INPUT_MAX 65536
/* A TLS handshake must be over within the command timeout, and never takes
 * longer than this: one round trip, a silent client is dropped. */
#define SESSION_TLS_HANDSHAKE_MAX_MS 30000
/* A failed AUTH is answered after 1 s, doubling with each failure of the
 * session up to 16 s (a uv timer: nothing sleeps). */
#define SESSION_AUTH_DELAY_MS     1000u
#define SESSION_AUTH_DELAY_SHIFTS 4u

/* What plain TCP and TLS both implement (Redis' connection types). */
struct session_conn {
	const char *name;
	/* libuv asks for a buffer to read into. */
	void (*alloc)(struct session *s, uv_buf_t *out);
	/* n bytes were read into that buffer: make them input in s->in.
	 * 0, or -1 when the session must close (logged already). */
	int (*received)(struct session *s, size_t n);
	/* Move input the layer still holds into s->in (TLS: what it has not
	 * decrypted yet because s->in was full). 0 or -1. */
	int (*fill)(struct session *s);
	/* Send plaintext. 0, or -1 when the session must close. */
	int (*write)(struct session *s, const char *data, size_t len);
};

struct session_write {
	uv_write_t req;
	struct session *s;
	size_t len;
	char data[];
};

struct session {
	struct server *srv;
	struct listener *l;
	struct session *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	int handles_open; /* tcp and timer: freed when both are closed */

	struct smtp_proto *proto;
	struct buf in;           /* received, not yet consumed by the core */
	struct deliver_msg *msg; /* the message arriving (deliver.h), until its end */

	uint64_t sid; /* delivery finds the session by this (session_find) */
	struct session *id_next;
	bool id_listed;
	char id[16];
	char client_addr[ENDPOINT_TEXT_MAX];
	uint16_t client_port;
	char client_text[ENDPOINT_TEXT_MAX + 8];
	/* Where the connection arrived: the listener's address, or for an ANY
	 * listener the address the client actually connected to (SPEC 2: usable as
	 * a condition). */
	char local_addr[ENDPOINT_TEXT_MAX];
	uint16_t local_port;
	struct log_ctx log;

	/* PROXY protocol (SPEC 7). On a PROXY listener nothing reaches the SMTP core
	 * before the header (proxy_wait); then client_* hold the client it carried,
	 * proxy_* what the envelope records, and peer_text the load balancer. */
	bool proxy_wait;
	bool proxied; /* the header carried addresses (not LOCAL / UNKNOWN) */
	char proxy_src[ENDPOINT_TEXT_MAX];
	uint16_t proxy_src_port;
	char proxy_dst[ENDPOINT_TEXT_MAX];
	uint16_t proxy_dst_port;
	char peer_text[ENDPOINT_TEXT_MAX + 8];

	size_t writes_pending; /* bytes handed to uv_write, not yet written */
	bool reading;
	bool closing;      /* session_close called */
	bool storing;      /* a message of this session waits for its verdict */
	bool counted;      /* counted in srv->client_buckets under client_addr */
	bool pumping;      /* inside session_pump (no re-entry) */
	bool replied;      /* output was flushed since the deadline was last set */
	uint64_t deadline; /* loop time (ms) the timer fires at; 0 = none */
	bool greeted;
	bool draining; /* tell 421 at the end of the transaction */
	unsigned refusals_logged;
	uint64_t eom_ns; /* uv_hrtime() at the end of the message's data (/metrics) */

	/* I/O (SPEC 6): plain, or TLS after STARTTLS / on a TLS port. */
	const struct session_conn *conn;
	struct tlsio *tls;
	bool handshaking;
	char tls_version[16]; /* "TLSv1.3" once the handshake is done */
	char tls_cipher[64];
	/* AUTH (SPEC 6): a check on the thread pool, then a failure's delay. */
	struct auth_check *auth_check;
	uv_timer_t auth_timer; /* initialised at the first failure */
	bool auth_timer_init;
	bool auth_busy;           /* SMTP_WAIT_AUTH is being answered */
	const char *auth_refused; /* the delay ends in 454 with this text, not 535 */
	unsigned auth_failures;
};

/* session.c */
struct deliver_msg;
void session_pump(struct session *s);
void session_close(struct session *s);
void session_begin(struct session *s);
void session_update_reading(struct session *s);
void session_set_deadline(struct session *s, uint64_t deadline);
void session_on_write(uv_write_t *req, int status);

/* session_deliver.c: the delivery boundary (sessions by id, the message). */
void session_id_add(struct session *s);
void session_id_remove(struct session *s);
int session_body(void *ctx, const char *data, size_t len);
void session_end_of_message(struct session *s);

/* session_io.c: the connection types, STARTTLS and implicit TLS. */
extern const struct session_conn session_conn_plain;
size_t session_in_reserve(struct session *s);
void session_tls_goodbye(struct session *s);
void session_starttls(struct session *s);
void session_implicit_tls(struct session *s);
void session_flush(struct session *s);

#endif
