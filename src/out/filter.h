/* filter: SMTPD_FILTER, the content filter run before a message is accepted
 * (SPEC 5).
 *
 * `/bin/sh -c <command>` is spawned through uv_spawn for each message, in a
 * process group of its own, with the message on stdin and the envelope in
 * SMTPD_* variables. Nothing here ever blocks the loop, and the message is
 * never held in memory (issue 14):
 *   - stdin IS the stored message file: the caller's read-only descriptor is
 *     inherited as the child's fd 0, so the filter reads it at its own pace
 *     straight from the file system; the service writes nothing, and a filter
 *     that never reads it costs nothing;
 *   - stdout is read continuously: the first FILTER_STDOUT_KEEP bytes are kept
 *     (for the reply text), the rest is read and thrown away, so a filter that
 *     floods its output neither blocks on a full pipe nor grows our memory;
 *   - stderr is read the same way and logged line by line, each line cut at
 *     FILTER_STDERR_LINE bytes, at most FILTER_STDERR_LINES lines a message;
 *   - after the timeout the whole process group gets SIGKILL and the verdict is
 *     451 4.3.0 at once; the child is still reaped (uv's exit callback) before
 *     the run's memory is released.
 *
 * Exit status 0 accepts, 75 (EX_TEMPFAIL) answers 451 4.3.0, any other status
 * 554 5.7.1; a filter killed by a signal (a crash, not a verdict) gets 451 4.3.0.
 * The first stdout line, reduced to printable ASCII and FILTER_TEXT_MAX bytes,
 * becomes the reply text. */
#ifndef MAILPORT_FILTER_H
#define MAILPORT_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "spool.h"

/* Bytes of stdout kept; only its first line is used. */
#define FILTER_STDOUT_KEEP 4096
/* A reply line is at most 512 octets with its code (RFC 5321 4.5.3.1.5): the
 * filter's text is cut well below, leaving room for "554 5.7.1 ". */
#define FILTER_TEXT_MAX     200
#define FILTER_STDERR_LINE  512
#define FILTER_STDERR_LINES 20
/* After the filter exited, how long its output pipes may stay open (a
 * background child holding them) before the exit status decides without
 * waiting for the rest. */
#define FILTER_LINGER_MS 1000
/* EX_TEMPFAIL from sysexits.h. */
#define FILTER_EXIT_TEMPFAIL 75

enum filter_verdict { FILTER_ACCEPT, FILTER_TEMPFAIL, FILTER_REJECT };

struct filter_result {
	enum filter_verdict verdict;
	char text[FILTER_TEXT_MAX + 1]; /* the first stdout line, sanitized; "" when none */
	bool timed_out;                 /* killed after the timeout (verdict TEMPFAIL) */
	bool spawn_failed;              /* could not start (verdict TEMPFAIL) */
	int64_t exit_status;            /* when it exited */
	int term_signal;                /* when a signal ended it, else 0 */
};

struct filter_run;
typedef void (*filter_done_fn)(void *ctx, const struct filter_result *r);

/* ---- pure parts (unit-tested) ---- */

/* The environment of a filter: every entry of parent_env except SMTPD_*
 * variables (the service's own settings, secrets among them, are not the
 * filter's business), then the envelope:
 *   SMTPD_MAIL_FROM, SMTPD_RCPT_TO (comma-separated), SMTPD_CLIENT_ADDR,
 *   SMTPD_CLIENT_PORT, SMTPD_LOCAL_ADDR, SMTPD_LOCAL_PORT, SMTPD_HELO,
 *   SMTPD_AUTH_USER ("" without AUTH), SMTPD_TLS (the TLS version, "" without
 *   TLS), SMTPD_TLS_CIPHER, SMTPD_MESSAGE_ID (the spool id), SMTPD_SIZE,
 *   SMTPD_VERDICT_JSON (rspamd's verdict, SPEC 8: env->verdict_json, "null"
 *   without one).
 * Control characters in peer-chosen values become '?'. NULL-terminated and
 * malloc'ed; NULL on out of memory. Free with filter_env_free(). */
char **filter_env_build(const struct spool_envelope *env, char *const *parent_env);
void filter_env_free(char **envp);

/* The reply text from the filter's output: its first line, without the line
 * end, each byte outside printable ASCII made '?', blanks around it trimmed,
 * cut at FILTER_TEXT_MAX bytes. Returns the length written to out (out has room
 * for FILTER_TEXT_MAX + 1). */
size_t filter_reply_text(const char *output, size_t len, char out[FILTER_TEXT_MAX + 1]);

/* The verdict of an ended filter. */
enum filter_verdict filter_verdict_of(bool exited, int64_t exit_status, int term_signal,
                                      bool timed_out);

/* ---- the running filter ---- */

/* Spawn `command` with envp and the file input_fd as its stdin. input_fd is
 * open for reading and positioned where the filter should start (offset 0 for
 * the whole message); the child gets its own copy of the descriptor, sharing
 * the file offset with it (so the caller should not read input_fd with read(2)
 * meanwhile; pread is fine). filter_start keeps nothing of input_fd: the caller
 * may close it as soon as filter_start returns. A negative input_fd gives the
 * filter an empty stdin (/dev/null).
 * done(ctx, result) runs exactly once, from the loop, never before
 * filter_start returns; a spawn failure is reported through done as well
 * (spawn_failed). *out (may be NULL) is the handle for filter_kill(), valid
 * until done runs. id (the message id, copied) and log (the session's context,
 * may be NULL; the strings it points to must stay valid until done) label the
 * log lines.
 * Returns 0, or -ENOMEM (then done never runs). */
struct log_ctx;
int filter_start(uv_loop_t *loop, const char *command, uint64_t timeout_ms, char **envp,
                 int input_fd, const char *id, const struct log_ctx *log, filter_done_fn done,
                 void *ctx, struct filter_run **out);

/* Kill the filter now (shutdown): as a timeout, the verdict is 451. */
void filter_kill(struct filter_run *r);

#endif
