/* spool: the Maildir spool (SPEC section 5).
 *
 * Layout under the spool directory: tmp/, new/, cur/ (Maildir), meta/ (one
 * <id>.json envelope per message). spool_store() is blocking by design and must
 * run off the loop (uv_queue_work); everything it touches is its arguments, so
 * several stores may run at once on the thread pool.
 *
 * Durability (SPEC 5, issue 14): a message streams into tmp/<id> while it
 * arrives (spool_writer.h); at its end a group commit (journal.h, batched by
 * spool_commit.h) appends it with its envelope to the journal, syncs the journal
 * once for the whole batch, then writes meta/<id>.json and renames tmp/<id>
 * into new/ without further syncs; only then may the caller answer 250. The
 * journal is replayed at spool_open(), so a crash at any point leaves every
 * acknowledged message in new/ exactly once, with its envelope.
 *
 * The spool also keeps an index of its messages in memory (spool_index.h): the
 * messages API lists pages from it instead of reading directories. spool_open()
 * fills it; the functions below that store, move or remove a message update it,
 * so callers need do nothing for it. A file another process puts into or takes
 * out of new/, cur/ or failed/ while mailport runs is seen at the next start
 * (a message found gone when read is dropped from the index then).
 *
 * Sources: spool.c (open, ids, envelope, store), journal.c (group commit),
 * spool_access.c (reading, moving, removing), spool_index.c; spool_priv.h is
 * what they share. */
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
	const char *auth_param;  /* MAIL's AUTH= mailbox; NULL or "": no "auth_param" key */
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
	/* rspamd's verdict on the message (SPEC 8) as JSON text, an object;
	 * NULL writes "verdict":null (rspamd off, or no answer under
	 * SMTPD_RSPAMD_FAIL=accept). */
	const char *verdict_json;
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
/* Tests: close as a crash would, the journal's segments left for the next open. */
void spool_crash(struct spool *s);

/* A new unique Maildir base name (time.MusecPpidQcounter.host, with '/' and ':'
 * in the host written as \057 and \072). Thread-safe.
 * Any other host byte outside [A-Za-z0-9._-] is written the same octal way, and
 * the host part is cut (at an escape boundary) to SPOOL_HOST_MAX bytes, so the id
 * stays a safe file name and ".<id>.json.tmp" fits NAME_MAX. len should be
 * SPOOL_ID_MAX. */
void spool_new_id(struct spool *s, char *id, size_t len);

/* Store one message whose content (LF line ends) is body[0..len) with its
 * envelope, as a group commit of its own (journal.h). Blocking: call it from
 * the thread pool, one at a time with any other commit (tests and tools; the
 * service batches through spool_commit.h). On failure nothing is left in new/
 * or meta/ (the failure is logged), and the caller must answer 451 4.3.0.
 * Returns 0 or a negative errno; -EINVAL when env->id is not a plain file name. */
int spool_store(struct spool *s, const struct spool_envelope *env, const char *body, size_t len);

/* The envelope JSON exactly as written to meta/<id>.json (SPEC 5), malloc'ed,
 * NULL on out of memory. Exposed for tests and later for the webhook.
 * One compact line without the newline the file ends with; received_at is RFC 3339
 * UTC with milliseconds ("2026-11-27T08:40:58.123Z"); bytes of a string that are
 * not valid UTF-8 become U+FFFD each, so the result is always valid JSON. */
char *spool_envelope_json(const struct spool_envelope *env);

/* ---- delivery (webhook) and the messages API ----------------------------------
 * All of these are blocking file operations, safe from any thread (they only
 * use the spool's directory descriptors, constant after spool_open): the loop
 * calls them through uv_queue_work, the HTTP thread directly. Messages may move
 * between directories or disappear at any moment (delivery, DELETE), so every
 * caller must take -ENOENT as "gone", not as an error. */

/* The directory a message is in. Its messages API name is the same word. */
enum spool_state { SPOOL_STATE_NEW, SPOOL_STATE_CUR, SPOOL_STATE_FAILED };
#define SPOOL_STATES 3
/* "new", "cur", "failed" */
const char *spool_state_name(enum spool_state st);

/* meta/<id>.json is never read past this size. */
#define SPOOL_META_MAX (4u << 20)

/* Store like spool_store(), with options. */
struct spool_store_opts {
	bool to_cur;               /* rename into cur/ instead of new/ (already delivered) */
	const char *delivery_json; /* a JSON object added to the envelope as "delivery", or NULL */
};
int spool_store_ex(struct spool *s, const struct spool_envelope *env, const char *body, size_t len,
                   const struct spool_store_opts *opts);

/* Append to `out` the Return-Path and Received headers spool_store() writes
 * before the message, byte for byte (the same env gives the same text), so a
 * filter sees exactly what will be stored. s may be NULL (discard): env->hostname
 * is then the only name used. Returns 0 or a negative errno. */
struct buf;
int spool_trace_headers(const struct spool *s, const struct spool_envelope *env, struct buf *out);

/* A JSON string (new reference) of n bytes that need not be valid UTF-8: each
 * byte outside a valid sequence becomes U+FFFD. NULL on out of memory. */
struct json_t;
struct json_t *spool_json_text(const char *text, size_t n);

/* An id the messages API accepts: a plain file name of the characters our ids
 * use ([A-Za-z0-9._-], '\' of the host escapes, ',' '='), never starting with
 * a dot, so "../x" or "a/b" can never reach a path. */
bool spool_id_valid(const char *id);

/* Open message `id` in st's directory read-only (in cur/, also "<id>:2,..."
 * names). Returns 0 with *fd (and *size when not NULL), or -ENOENT / -errno. */
int spool_open_message(struct spool *s, enum spool_state st, const char *id, int *fd,
                       uint64_t *size);
/* Which directory holds `id`: searched new, cur, failed, the order messages
 * move in, so a move during the search is still found. -ENOENT if none. */
int spool_locate(struct spool *s, const char *id, enum spool_state *st);
/* Read at most max bytes of a message (malloc'ed, NUL-terminated). */
int spool_read_message(struct spool *s, enum spool_state st, const char *id, size_t max,
                       char **data, size_t *len);
/* Read meta/<id>.json (malloc'ed, NUL-terminated). */
int spool_meta_read(struct spool *s, const char *id, char **json);
/* Replace meta/<id>.json atomically: write a temporary file, fsync it, rename
 * it over; with durable, fsync meta/ too. Readers see the old or the new file. */
int spool_meta_write(struct spool *s, const char *id, const char *json, bool durable);
/* Rename a message from one directory to another (failed/ is created on first
 * use) and fsync the target directory. The index follows the rename (even when
 * the fsync then fails: the message is in `to`). */
int spool_move(struct spool *s, const char *id, enum spool_state from, enum spool_state to);
/* Remove a message (and from the index), then its envelope. */
int spool_remove(struct spool *s, enum spool_state st, const char *id);
/* Remove meta/<id>.json alone (after a move found the message gone). */
int spool_meta_remove(struct spool *s, const char *id);
/* The ids in st's directory, unsorted (Maildir info cut off, dot files
 * skipped; a missing directory is empty). Free with spool_ids_free(). */
int spool_list_ids(struct spool *s, enum spool_state st, char ***ids, size_t *n);
void spool_ids_free(char **ids, size_t n);

/* Group commit figures (issue 14): messages committed and journal syncs
 * (one per batch), failed syncs. Thread-safe. */
void spool_sync_stats(struct spool *s, uint64_t *messages, uint64_t *syncs, uint64_t *failures);

/* The journal (journal.h), owned by the spool. */
struct journal;
struct journal *spool_journal(struct spool *s);

/* meta/<id>.json's bytes for a new message (the envelope JSON, "delivery"
 * added when delivery_json is not NULL, and a newline), malloc'ed with its
 * length in *len; NULL on out of memory. */
char *spool_meta_file(const struct spool_envelope *env, const char *delivery_json, size_t *len);

/* tmp/'s descriptor: where messages stream while they arrive (spool_writer.h). */
int spool_tmp_fd(const struct spool *s);

/* The escaped host part of this spool's ids (tmp/ files of a previous run of
 * this host are dead at start-up). */
const char *spool_host(const struct spool *s);

/* The directory the spool lives in. */
const char *spool_dir(const struct spool *s);

/* The spool's index of its messages (spool_index.h), owned by the spool. */
struct spool_index;
struct spool_index *spool_get_index(struct spool *s);

/* What spool_open() removed as left over by a crash, for the start-up log:
 * files in tmp/ older than SPOOL_TMP_MAX_AGE, and meta/ envelopes (<id>.json and
 * .<id>.json.tmp) whose message is in none of tmp/, new/, cur/, failed/. */
void spool_open_cleaned(const struct spool *s, size_t *tmp_removed, size_t *meta_removed);

#endif
