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
 * runs on the libuv thread pool: auth_check_start() copies the credentials and
 * calls back on the loop. A table is immutable once loaded; it is reference
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

/* True when `user` is in the table and pass[0..len) matches its hash.
 * Blocking and slow (one crypt(3) call, also for an unknown user, so that the
 * time taken does not tell whether the user exists); thread-safe. */
bool auth_users_verify(const struct auth_users *u, const char *user, const char *pass, size_t len);

/* An asynchronous check: the credentials are copied (and wiped after use),
 * verified on the thread pool, and cb(ctx, ok) is called on the loop exactly
 * once unless auth_check_cancel() came first. Returns NULL on out of memory
 * (cb is then never called). */
struct auth_check;
typedef void (*auth_check_cb)(void *ctx, bool ok);
struct auth_check *auth_check_start(uv_loop_t *loop, struct auth_users *u, const char *user,
                                    const char *pass, size_t len, auth_check_cb cb, void *ctx);
/* The caller goes away: cb will not be called; the check frees itself. */
void auth_check_cancel(struct auth_check *c);

/* Load path on the thread pool, then call cb on the loop with the new table
 * (the callee owns that reference) or NULL and the error message. Returns 0,
 * or a negative errno when the work could not be queued (cb not called). */
typedef void (*auth_load_cb)(void *ctx, struct auth_users *u, const char *err);
int auth_users_load_async(uv_loop_t *loop, const char *path, auth_load_cb cb, void *ctx);

#endif
