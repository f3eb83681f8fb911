/* auth: SMTP AUTH users (SPEC 6) from SMTPD_AUTH_USERS_FILE, checked with crypt(3).
 *
 * The file holds one "user:hash" line per user; blank lines and lines starting
 * with '#' are ignored, a trailing CR is stripped, and anything after a second
 * ':' is ignored (so /etc/shadow-style lines work). The hash is a crypt(3) hash
 * that libxcrypt supports and does not call legacy: yescrypt ($y$), SHA-512
 * ($6$), bcrypt ($2b$/$2y$/$2a$), scrypt ($7$), gost-yescrypt ($gy$); DES,
 * MD5 and SHA-256 hashes are refused as too cheap to crack.
 * User names are 1..255 octets of printable text without ':'; a user may appear
 * once.
 *
 * Checking a password is slow by design (that is what the hash is for), so it
 * runs on a small worker pool of its own (auth_pool.h), not on libuv's thread
 * pool, where it would delay every store's fsync: auth_check_start() copies
 * the credentials and calls back on the loop. The pool's queue is bounded, so
 * a flood of AUTH gets 454 4.7.0 answers instead of delaying everybody; the
 * SMTP session allows one check in flight (RFC 4954 AUTH is not pipelined),
 * so a client that floods waits for its own answers. Loading the users file
 * (no crypt) stays on libuv's pool. A table is immutable once loaded; it is reference
 * counted on the loop thread, so a reload (SIGHUP) can replace it while checks
 * that started with the old one finish with it. Nothing here logs: passwords
 * and the user names of failed attempts never reach a log (SPEC 7). */
#ifndef MAILPORT_AUTH_H
#define MAILPORT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* The most a users file may hold: it is read whole into memory. */
#define AUTH_USERS_FILE_MAX ((size_t)16 << 20)
/* Longest user name (the SMTP core passes no longer one on). */
#define AUTH_USER_MAX 255

struct auth_users;

/* Read and parse path. Blocking: call it at start-up or on the thread pool.
 * Returns 0 with *out (reference count 1), or -1 with a one-line message in
 * err that names SMTPD_AUTH_USERS_FILE, the path and, for a bad line, its
 * number (never the hash or a password). */
int auth_users_load(const char *path, struct auth_users **out, char *err, size_t errlen);
/* Parse a file's contents (data[0..len), need not be NUL-terminated); path is
 * only used in messages. Same returns as auth_users_load. */
int auth_users_parse(const char *path, const char *data, size_t len, struct auth_users **out,
                     char *err, size_t errlen);
/* Loop thread only. unref(NULL) is a no-op; the last unref frees. */
struct auth_users *auth_users_ref(struct auth_users *u);
void auth_users_unref(struct auth_users *u);
size_t auth_users_count(const struct auth_users *u);

/* The hash an unknown user is checked against: the one of the file whose
 * method and cost took longest when the file was loaded (NULL: no users). */
const char *auth_users_dummy(const struct auth_users *u);

/* True when `user` is in the table and pass[0..len) matches its hash.
 * Blocking and slow (one crypt(3) call, also for an unknown user, so that the
 * time taken does not tell whether the user exists); thread-safe. */
bool auth_users_verify(const struct auth_users *u, const char *user, const char *pass, size_t len);

/* The checks' worker pool. auth_check_start() starts it on first use with the
 * defaults (half the CPUs, 1 to AUTH_POOL_THREADS; AUTH_POOL_QUEUE);
 * auth_start() may start it before with other sizes (0: the default).
 * Returns 0, -EBUSY when it runs already, or another negative errno. */
int auth_start(uv_loop_t *loop, unsigned threads, unsigned queue_max);
/* Server stop, once the loop ran dry: the pool's threads are joined. A check
 * still outstanding (none, after the loop ran dry) would finish or get its
 * callback with ok false, and then the loop must run once more before
 * uv_loop_close(). A no-op when no pool runs; the next check starts a new
 * one. Without it the idle threads are simply left to exit with the process. */
void auth_stop(void);

/* An asynchronous check: the credentials are copied (and wiped after use),
 * verified on the pool, and cb(ctx, ok) is called on the loop exactly once
 * unless auth_check_cancel() came first. Returns NULL on out of memory or
 * when the pool's queue is full (cb is then never called): the caller answers
 * 454 4.7.0, a temporary failure (RFC 4954 section 6). */
struct auth_check;
typedef void (*auth_check_cb)(void *ctx, bool ok);
struct auth_check *auth_check_start(uv_loop_t *loop, struct auth_users *u, const char *user,
                                    const char *pass, size_t len, auth_check_cb cb, void *ctx);
/* The caller goes away: cb will not be called; a check still queued is
 * dropped at once, one running frees itself when it ends. */
void auth_check_cancel(struct auth_check *c);

/* Load path on the thread pool, then call cb on the loop with the new table
 * (the callee owns that reference) or NULL and the error message. Returns 0,
 * or a negative errno when the work could not be queued (cb not called). */
typedef void (*auth_load_cb)(void *ctx, struct auth_users *u, const char *err);
int auth_users_load_async(uv_loop_t *loop, const char *path, auth_load_cb cb, void *ctx);

#endif
