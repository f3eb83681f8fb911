/* log: one line per event on stderr, text or JSON (SPEC section 7).
 *
 * Text:  2026-11-27T08:40:58.123Z info listening on 127.0.0.1:2525
 *        2026-11-27T08:40:58.123Z info [s1a2b] client=127.0.0.1:40000 listener=127.0.0.1:2525 ...
 * JSON: {"ts":"...","level":"info","msg":"...","session":"...","client":"...","listener":"...",...}
 * Extra event fields are given as key/value string pairs. Never pass passwords or
 * AUTH payloads here. */
#ifndef MAILPORT_LOG_H
#define MAILPORT_LOG_H

#include "config.h"

void log_setup(enum config_log_format format, enum config_log_level level);
bool log_enabled(enum config_log_level level);

/* Session context for a line; all fields may be NULL. */
struct log_ctx {
	const char *session;
	const char *client;
	const char *listener;
};

/* Log msg with optional key/value pairs: kv is NULL-terminated {k1, v1, k2, v2, ..., NULL}. */
void log_event(enum config_log_level level, const struct log_ctx *ctx, const char *msg,
               const char *const *kv);
void log_msg(enum config_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(CONFIG_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(CONFIG_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(CONFIG_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(CONFIG_LOG_ERROR, __VA_ARGS__)

#endif
