/* config_priv: what the files of the config module share (config.c,
 * config_table.c, config_scan.c; see config.c's top comment for which holds
 * what). Not for other modules: they see config.h only. */
#ifndef MAILPORT_CONFIG_PRIV_H
#define MAILPORT_CONFIG_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* A field of struct config, as the table's .offset holds it. */
#define F(field) offsetof(struct config, field)

/* Room for one quoted value or reason in an error message. Values are cut
 * well before that, so one setting can never flood the log. */
#define CONFIG_WHY_MAX 384
/* "SMTPD_MAX_CONNECTIONS_PER_CLIENT_FILE" and the like, with room to spare. */
#define CONFIG_SOURCE_MAX 80
/* More than the table holds; checked in config_table.c, so the per-setting
 * arrays in config_load() need no allocation. */
#define CONFIG_SETTINGS_MAX 64

/* What the command line and the environment said about one setting. Pointers
 * into argv and envp; an empty string counts as not given. */
struct config_given {
	const char *flag;
	const char *env;
	const char *file;
};

/* config.c: error text. snprintf into dst; len bytes of s escaped for a
 * one-line message (with `quoted`, in quotes and cut); a whole string quoted. */
void config_fmt(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void config_escape(char *dst, size_t n, const char *s, size_t len, bool quoted);
void config_quote(char *dst, size_t n, const char *s);

/* config.c: the table's checkers of string values (see struct config_setting's
 * `check`); the others are config_check.c's, declared in config.h. */
int config_check_any(char *value, char *why, size_t whylen);
int config_check_http(char *value, char *why, size_t whylen);
int config_check_hostname(char *value, char *why, size_t whylen);
int config_check_token(char *value, char *why, size_t whylen);
int config_check_secret(char *value, char *why, size_t whylen);
int config_check_url(char *value, char *why, size_t whylen);
int config_check_nats_urls(char *value, char *why, size_t whylen);
int config_check_port_list(char *value, char *why, size_t whylen);

/* config_scan.c: how an action just prints (> 0: help, version and the
 * hidden printers; the highest wins), or 0 for the actions that run. */
int config_info_rank(enum config_action a);
/* config_scan.c: each setting's flag value into given[] (indexed as
 * config_settings[]) and the action; 0, or -1 with the first error in err. */
int config_scan_args(int argc, char **argv, struct config_given *given, enum config_action *action,
                     char *err, size_t errlen);
/* config_scan.c: SMTPD_X and SMTPD_X_FILE into given[]; warn about the rest. */
void config_scan_env(char **envp, struct config_given *given,
                     void (*warn)(void *ctx, const char *msg), void *ctx);

#endif
