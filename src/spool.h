/* spool: the Maildir spool (SPEC section 5).
 *
 * Layout under the spool directory: tmp/, new/, cur/ (Maildir), meta/ (one
 * <id>.json envelope per message). spool_store() is blocking by design and must
 * run off the loop (uv_queue_work); everything it touches is its arguments, so
 * several stores may run at once on the thread pool.
 *
 * Durability order (SPEC 5), so a crash at any point leaves either a complete
 * message in new/ or none:
 *   1. write tmp/<id> (Return-Path, Received, then the message), fsync it;
 *   2. write meta/<id>.json (through a temporary name and rename), fsync it;
 *   3. rename tmp/<id> -> new/<id>;
 *   4. fsync meta/ and new/;
 * only then may the caller answer 250. */
#ifndef MAILPORT_SPOOL_H
#define MAILPORT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* "1732700000.M123456P1234Q42.hostname" */
#define SPOOL_ID_MAX 256

struct spool_envelope {
	const char *id;          /* from spool_new_id() */
	const char *mail_from;   /* "" for the null sender */
	const char *const *rcpt; /* nrcpt forward paths */
	size_t nrcpt;
	const char *helo;        /* "" when none */
	bool esmtp;              /* EHLO was used: "with ESMTP" else "with SMTP" */
	const char *client_addr; /* "203.0.113.7" (IPv4 never with ::ffff:) */
	uint16_t client_port;
	const char *local_addr;  /* the listener's own address */
	uint16_t local_port;
	const char *auth_user;   /* NULL: JSON null */
	const char *tls_version; /* NULL: "tls":null */
	const char *tls_cipher;
	uint64_t size;           /* message as received (CRLF-counted, dot-unstuffed) */
	struct timespec received_at; /* CLOCK_REALTIME at end of data */
	const char *hostname;    /* our name, for the Received header */
};

struct spool;

/* Create <dir> (with parents) and tmp/ new/ cur/ meta/ when missing, and check
 * the spool is writable by creating and removing a file in tmp/. Returns 0, or a
 * negative errno with a one-line message in err naming SMTPD_SPOOL and the path. */
int spool_open(const char *dir, const char *hostname, struct spool **out, char *err,
	       size_t errlen);
void spool_close(struct spool *s); /* NULL is a no-op */

/* A new unique Maildir base name (time.MusecPpidQcounter.host, with '/' and ':'
 * in the host written as \057 and \072). Thread-safe. */
void spool_new_id(struct spool *s, char *id, size_t len);

/* Store one message whose content (LF line ends) is body[0..len) with its
 * envelope, in the order above. Blocking: call it from the thread pool. On
 * failure nothing is left in new/ or meta/. Returns 0 or a negative errno. */
int spool_store(struct spool *s, const struct spool_envelope *env, const char *body, size_t len);

/* The envelope JSON exactly as written to meta/<id>.json (SPEC 5), malloc'ed,
 * NULL on out of memory. Exposed for tests and later for the webhook. */
char *spool_envelope_json(const struct spool_envelope *env);

/* The directory the spool lives in. */
const char *spool_dir(const struct spool *s);

#endif
