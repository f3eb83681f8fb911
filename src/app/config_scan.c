/* config_scan: what the command line and the environment say (split from
 * config.c, which passed 1,000 lines): the actions (--help, --version, ...),
 * each setting's --flag, its SMTPD_X and SMTPD_X_FILE variables, and a
 * suggestion for an unknown SMTPD_* variable. config_load() (config.c) then
 * resolves what was found here. */
#include "config_priv.h"

#include <stdbool.h>
#include <string.h>

/* A suggestion is offered for an unknown SMTPD_* variable this close to a real one. */
#define CONFIG_SUGGEST_DISTANCE 2
#define CONFIG_SUGGEST_NAME_MAX 64

/* Index of the setting whose flag (by_env false) or variable is the first len
 * bytes of name, or -1. */
static int config_index(const char *name, size_t len, bool by_env)
{
	for (size_t i = 0; i < config_settings_count; i++) {
		const char *k = by_env ? config_settings[i].env : config_settings[i].name;
		if (strlen(k) == len && memcmp(k, name, len) == 0)
			return (int)i;
	}
	return -1;
}

const struct config_action_doc config_actions[] = {
    {"help", CONFIG_ACTION_HELP, "print this help and exit"},
    {"version", CONFIG_ACTION_VERSION, "print the version and exit"},
    {"check-config", CONFIG_ACTION_CHECK,
     "check the settings, print the listeners one per line and exit (2 on an error)"},
    {"healthcheck", CONFIG_ACTION_HEALTHCHECK,
     "ask the running service's /readyz (via SMTPD_HTTP): exit 0 when ready, 1 if not"},
    {"help-markdown", CONFIG_ACTION_HELP_MARKDOWN, NULL},
    {"help-man", CONFIG_ACTION_HELP_MAN, NULL},
    {"help-env", CONFIG_ACTION_HELP_ENV, NULL},
};
const size_t config_actions_count = sizeof config_actions / sizeof config_actions[0];

/* Help, version and the Markdown table just print; the earliest in this list wins. */
int config_info_rank(enum config_action a)
{
	switch (a) {
	case CONFIG_ACTION_HELP:
		return 3;
	case CONFIG_ACTION_VERSION:
		return 2;
	case CONFIG_ACTION_HELP_MARKDOWN:
	case CONFIG_ACTION_HELP_MAN:
	case CONFIG_ACTION_HELP_ENV:
		return 1;
	default:
		return 0;
	}
}

/* Walk argv once. Records each setting's flag value (the last one wins, so a
 * wrapper script can override) and the action. The first error is kept in err
 * but the walk goes on, so that --help still works after a typo. Returns 0 or -1. */
int config_scan_args(int argc, char **argv, struct config_given *given, enum config_action *action,
                     char *err, size_t errlen)
{
	int rc = 0;
	char e[CONFIG_WHY_MAX];
	enum config_action run = CONFIG_ACTION_RUN, info = CONFIG_ACTION_RUN;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			config_quote(e, sizeof e, a);
			if (rc == 0)
				config_fmt(err, errlen, "unexpected argument %s (see --help)", e);
			rc = -1;
			continue;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		config_escape(e, sizeof e, name, len, false);

		bool is_action = false;
		for (size_t k = 0; k < config_actions_count; k++) {
			const char *f = config_actions[k].flag;
			if (strlen(f) != len || memcmp(f, name, len) != 0)
				continue;
			is_action = true;
			enum config_action act = config_actions[k].action;
			if (eq != NULL) {
				if (rc == 0)
					config_fmt(err, errlen, "--%s takes no value", f);
				rc = -1;
			} else if (config_info_rank(act) > 0) {
				if (config_info_rank(act) > config_info_rank(info))
					info = act;
			} else if (run != CONFIG_ACTION_RUN && run != act) {
				if (rc == 0)
					config_fmt(err, errlen,
					           "--check-config and --healthcheck cannot be "
					           "combined");
				rc = -1;
			} else {
				run = act;
			}
		}
		if (is_action)
			continue;

		int idx = config_index(name, len, false);
		if (idx < 0) {
			if (rc == 0)
				config_fmt(err, errlen, "unknown option --%s (see --help)", e);
			rc = -1;
			continue;
		}
		if (eq != NULL) {
			given[idx].flag = eq + 1;
		} else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
			given[idx].flag = argv[++i];
		} else {
			if (rc == 0)
				config_fmt(err, errlen,
				           "--%s needs a value (--%s VALUE or --%s=VALUE)", e, e,
				           e);
			rc = -1;
		}
	}
	*action = info != CONFIG_ACTION_RUN ? info : run;
	return info != CONFIG_ACTION_RUN ? 0 : rc;
}

/* Levenshtein distance of two short strings (both under CONFIG_SUGGEST_NAME_MAX). */
static size_t config_distance(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t row[CONFIG_SUGGEST_NAME_MAX + 1];
	for (size_t j = 0; j <= blen; j++)
		row[j] = j;
	for (size_t i = 1; i <= alen; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= blen; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[blen];
}

/* A typo in a variable name must not pass silently (SPEC 1): name the
 * nearest real variable, or its _FILE form, when one is close. */
static void config_warn_unknown(const char *name, size_t len,
                                void (*warn)(void *ctx, const char *msg), void *ctx)
{
	char e[CONFIG_WHY_MAX], msg[2 * CONFIG_WHY_MAX];
	const char *best = NULL;
	bool best_file = false;
	size_t best_d = CONFIG_SUGGEST_DISTANCE + 1;

	if (warn == NULL)
		return;
	config_escape(e, sizeof e, name, len, false);
	bool file = len > 5 && memcmp(name + len - 5, "_FILE", 5) == 0;
	for (size_t i = 0; i < config_settings_count && len < CONFIG_SUGGEST_NAME_MAX; i++) {
		const char *env = config_settings[i].env;
		size_t d = config_distance(name, len, env, strlen(env));
		if (d < best_d) {
			best = env, best_d = d, best_file = false;
		}
		if (file && (d = config_distance(name, len - 5, env, strlen(env))) < best_d) {
			best = env, best_d = d, best_file = true;
		}
	}
	if (best != NULL)
		config_fmt(msg, sizeof msg,
		           "%s is not a mailport setting (did you mean %s%s?); ignored", e, best,
		           best_file ? "_FILE" : "");
	else
		config_fmt(msg, sizeof msg, "%s is not a mailport setting; ignored", e);
	warn(ctx, msg);
}

/* Record SMTPD_X and SMTPD_X_FILE values; the first occurrence wins, as with
 * getenv(3). Anything else named SMTPD_* is warned about. */
void config_scan_env(char **envp, struct config_given *given,
                     void (*warn)(void *ctx, const char *msg), void *ctx)
{
	for (char **ep = envp; ep != NULL && *ep != NULL; ep++) {
		const char *e = *ep, *eq = strchr(e, '=');
		if (strncmp(e, "SMTPD_", 6) != 0 || eq == NULL)
			continue;
		size_t len = (size_t)(eq - e);
		int idx = config_index(e, len, true);
		if (idx >= 0) {
			if (given[idx].env == NULL)
				given[idx].env = eq + 1;
			continue;
		}
		if (len > 5 && memcmp(e + len - 5, "_FILE", 5) == 0 &&
		    (idx = config_index(e, len - 5, true)) >= 0) {
			if (given[idx].file == NULL)
				given[idx].file = eq + 1;
			continue;
		}
		config_warn_unknown(e, len, warn, ctx);
	}
}
