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
#define SPOOL_ID_MAX   256
#define SPOOL_HOST_MAX 128

struct spool_envelope {
	const char *id;          /* from spool_new_id() */
	const char *mail_from;   /* "" for the null sender */
	const char *const *rcpt; /* nrcpt forward paths */
	size_t nrcpt;
	const char *helo;        /* "" when none */
	bool esmtp;              /* EHLO was used: "with ESMTP" else "with SMTP" */
	const char *client_addr; /* "203.0.113.7" (IPv4 never with ::ffff:) */
	uint16_t client_port;
	const char *local_addr; /* the listener's own address */
	uint16_t local_port;
	const char *auth_user;   /* NULL: JSON null */
	const char *tls_version; /* NULL: "tls":null */
	const char *tls_cipher;
	uint64_t size;               /* message as received (CRLF-counted, dot-unstuffed) */
	struct timespec received_at; /* CLOCK_REALTIME at end of data */
	const char *hostname;        /* our name, for the Received header */
	/* The PROXY header's addresses (SPEC 7), when the listener takes one.
	 * proxy_src_addr NULL writes "proxy":null. */
	const char *proxy_src_addr;
	uint16_t proxy_src_port;
	const char *proxy_dst_addr;
	uint16_t proxy_dst_port;
};

/* Modes of what the spool creates (before the umask): group may read, so a
 * delivery agent in the service's group can pick messages up; others may not. */
#define SPOOL_DIR_MODE  0750
#define SPOOL_FILE_MODE 0640
/* A file in tmp/ older than this is left over by a crash and removed at open:
 * Maildir's rule, safe even when another deliverer shares the directory. */
#define SPOOL_TMP_MAX_AGE (36 * 3600)

struct spool;

/* Create <dir> (with parents) and tmp/ new/ cur/ meta/ when missing, and check
 * the spool is writable by creating and removing a file in tmp/. Returns 0, or a
 * negative errno with a one-line message in err naming SMTPD_SPOOL and the path.
 * Directories it creates get SPOOL_DIR_MODE. Before returning it removes what a
 * crash left behind (see spool_open_cleaned()), so call it before the service
 * accepts anything; failures of that cleanup are not errors. */
int spool_open(const char *dir, const char *hostname, struct spool **out, char *err, size_t errlen);
void spool_close(struct spool *s); /* NULL is a no-op */

/* A new unique Maildir base name (time.MusecPpidQcounter.host, with '/' and ':'
 * in the host written as \057 and \072). Thread-safe.
 * Any other host byte outside [A-Za-z0-9._-] is written the same octal way, and
 * the host part is cut (at an escape boundary) to SPOOL_HOST_MAX bytes, so the id
 * stays a safe file name and ".<id>.json.tmp" fits NAME_MAX. len should be
 * SPOOL_ID_MAX. */
void spool_new_id(struct spool *s, char *id, size_t len);

/* Store one message whose content (LF line ends) is body[0..len) with its
 * envelope, in the order above. Blocking: call it from the thread pool. On
 * failure nothing is left in new/ or meta/. Returns 0 or a negative errno.
 * The meta/ directory is fsynced right after the envelope's rename, before the
 * rename into new/ (step 4 moved earlier, same number of fsyncs), so that even a
 * filesystem that does not order metadata updates cannot keep the message
 * without its envelope. -EINVAL when env->id is not a plain file name. */
int spool_store(struct spool *s, const struct spool_envelope *env, const char *body, size_t len);

/* The envelope JSON exactly as written to meta/<id>.json (SPEC 5), malloc'ed,
 * NULL on out of memory. Exposed for tests and later for the webhook.
 * One compact line without the newline the file ends with; received_at is RFC 3339
 * UTC with milliseconds ("2026-11-27T08:40:58.123Z"); bytes of a string that are
 * not valid UTF-8 become U+FFFD each, so the result is always valid JSON. */
char *spool_envelope_json(const struct spool_envelope *env);

/* The directory the spool lives in. */
const char *spool_dir(const struct spool *s);

/* What spool_open() removed as left over by a crash, for the start-up log:
 * files in tmp/ older than SPOOL_TMP_MAX_AGE, and meta/ envelopes (<id>.json and
 * .<id>.json.tmp) whose message is in none of tmp/, new/, cur/, failed/. */
void spool_open_cleaned(const struct spool *s, size_t *tmp_removed, size_t *meta_removed);

#endif
