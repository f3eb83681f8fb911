/* config: every setting of mailport, from one table.
 *
 * Each setting has an environment variable SMTPD_<NAME>, a flag --<name> (written
 * "--name value" or "--name=value"; a flag wins over the environment) and may be
 * given as SMTPD_<NAME>_FILE=<path> (value read from the file, one trailing newline
 * stripped; giving both SMTPD_<NAME> and SMTPD_<NAME>_FILE is an error). --help,
 * the README's settings table and the parser all come from the same table
 * (config_settings[]), so they cannot drift. See ../shared/SPEC.md section 1. */
#ifndef MAILPORT_CONFIG_H
#define MAILPORT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum config_deliver { CONFIG_DELIVER_MAILDIR, CONFIG_DELIVER_DISCARD };
enum config_bare_lf { CONFIG_BARE_LF_NORMALIZE, CONFIG_BARE_LF_REJECT };
enum config_mode { CONFIG_MODE_OFF, CONFIG_MODE_OPTIONAL, CONFIG_MODE_REQUIRED };
/* SMTPD_AUTH only (its own list of choices): offered, and any credentials are
 * taken, for catchers in CI (Mailpit's MP_SMTP_AUTH_ACCEPT_ANY). */
#define CONFIG_AUTH_ANY ((enum config_mode)3)
enum config_log_format { CONFIG_LOG_TEXT, CONFIG_LOG_JSON };
enum config_log_level { CONFIG_LOG_DEBUG, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR };
enum config_webhook_format { CONFIG_WEBHOOK_JSON, CONFIG_WEBHOOK_RAW, CONFIG_WEBHOOK_PARSED };
/* SMTPD_RSPAMD_FAIL (SPEC 8): what a message gets when rspamd cannot answer. */
enum config_rspamd_fail { CONFIG_RSPAMD_TEMPFAIL, CONFIG_RSPAMD_ACCEPT };
/* SMTPD_NATS_MODE (SPEC 9): publish after the 250 (forward) or before it (sync). */
enum config_nats_mode { CONFIG_NATS_FORWARD, CONFIG_NATS_SYNC };

/* What the command line asked for besides running the service. */
enum config_action {
	CONFIG_ACTION_RUN,
	CONFIG_ACTION_HELP,
	CONFIG_ACTION_VERSION,
	CONFIG_ACTION_CHECK,       /* --check-config */
	CONFIG_ACTION_HEALTHCHECK, /* --healthcheck */
	/* hidden --help-markdown: print config_print_markdown() and exit 0 */
	CONFIG_ACTION_HELP_MARKDOWN,
	/* hidden --help-man: mailport(8) in roff, config_print_man() */
	CONFIG_ACTION_HELP_MAN,
	/* hidden --help-env: /etc/default/mailport, config_print_envfile() */
	CONFIG_ACTION_HELP_ENV,
};

/* The resolved configuration. Strings are owned (malloc'ed) and freed by
 * config_free(); a string setting left empty is "" (never NULL) unless noted. */
struct config {
	enum config_action action;

	/* SPEC 2: endpoints. Kept as text; endpoint_load() turns them into listeners. */
	char *hosts; /* default "127.0.0.1" */
	char *ports; /* default "2525" */

	/* SPEC 3 */
	char *http;               /* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080" or "off" */
	char *http_token;         /* "" = no token */
	char *http_allowed_hosts; /* comma list; "" = IP literals and localhost only */
	/* Issue 17 */
	bool http_ui;                    /* SMTPD_HTTP_UI */
	uint64_t http_max_event_clients; /* SMTPD_HTTP_MAX_EVENT_CLIENTS */
	uint64_t retention_max_messages; /* 0 = no limit */
	uint64_t retention_max_age;      /* seconds, 0 = forever */

	/* SPEC 4 */
	char *hostname; /* default: gethostname() */
	uint64_t max_message_size;
	uint64_t max_recipients;
	uint64_t max_line_length; /* 0 = no limit */
	uint64_t max_connections;
	uint64_t max_connections_per_client;
	uint64_t command_timeout; /* seconds */
	uint64_t data_timeout;    /* seconds */
	uint64_t min_data_rate;   /* bytes per second in DATA/BDAT */
	uint64_t greet_delay;     /* seconds */
	enum config_bare_lf bare_lf;

	/* SPEC 5 */
	char *spool; /* default "./spool" */
	/* "100M", "2%" or "0": config_parse_min_free() reads it (issue 12). */
	char *spool_min_free;
	enum config_deliver deliver;
	char *filter;            /* "" = none */
	uint64_t filter_timeout; /* seconds */
	char *webhook_url;       /* "" = none */
	enum config_webhook_format webhook_format;
	char *webhook_secret;
	uint64_t webhook_timeout;
	bool webhook_keep;
	uint64_t webhook_retry_min;
	uint64_t webhook_retry_max;
	uint64_t webhook_max_age;
	uint64_t webhook_concurrency;
	bool webhook_sync;

	/* SPEC 6 */
	enum config_mode tls;
	char *tls_cert;
	char *tls_key;
	char *tls_ports; /* comma-separated port list, "" = none */
	char *tls_ciphers;
	char *tls_min_version; /* "TLSv1.2" or "TLSv1.3" */
	enum config_mode auth;
	char *auth_users_file;
	bool auth_insecure;
	uint64_t auth_max_failures; /* per client address, 15 minutes; 0 = no limit */

	/* SPEC 8: inbound recipient policy (policy.h, policy_load.h). */
	char *domains;         /* SMTPD_DOMAINS comma list; "" = every domain */
	char *recipients_file; /* SMTPD_RECIPIENTS_FILE; "" = no recipient check */

	/* SPEC 8: rspamd's verdict at the end of the data (rspamd.h). */
	char *rspamd_url;        /* "" = off */
	uint64_t rspamd_timeout; /* seconds, per check, queue included */
	enum config_rspamd_fail rspamd_fail;
	uint64_t rspamd_concurrency; /* requests in flight at once */

	/* SPEC 9: NATS JetStream (natspub.h). */
	char *nats_url; /* comma list; "" = off */
	char *nats_subject;
	char *nats_stream;
	enum config_nats_mode nats_mode;
	char *nats_creds;      /* "" = none */
	char *nats_ca;         /* "" = the system's */
	uint64_t nats_timeout; /* seconds, one publish acknowledgement */

	/* SPEC 7 */
	uint64_t shutdown_grace; /* seconds */
	char *proxy_ports;       /* comma-separated port list */
	char *proxy_trusted;     /* CIDR list */
	enum config_log_format log_format;
	enum config_log_level log_level;
};

enum config_kind {
	CONFIG_STRING,
	CONFIG_BOOL,     /* 1/true/yes/on, 0/false/no/off, any case */
	CONFIG_SIZE,     /* bytes, or K/M/G suffix (powers of 1024) */
	CONFIG_DURATION, /* seconds, or s/m/h suffix */
	CONFIG_COUNT,    /* unsigned integer */
	CONFIG_ENUM,     /* one of `choices` */
};

/* The longest duration accepted (about ten years): a duration converted to
 * milliseconds and added to a clock can then never overflow 64 bits. */
#define CONFIG_DURATION_MAX 315360000u
/* SMTPD_X_FILE contents are capped: a secret or a path, never a data file. */
#define CONFIG_FILE_MAX ((size_t)1 << 20)

/* One row of the settings table. */
struct config_setting {
	const char *name; /* flag name without dashes: "max-message-size" */
	const char *env;  /* "SMTPD_MAX_MESSAGE_SIZE" */
	enum config_kind kind;
	const char *def;            /* embedded (native) default as text; "" = empty */
	const char *image_def;      /* default in the container image, or NULL if the same */
	const char *const *choices; /* CONFIG_ENUM: NULL-terminated */
	const char *help;           /* one sentence */
	size_t offset;              /* offsetof(struct config, field) */

	/* Added fields; zero (the designated-initializer default) means "nothing special". */
	const char *metavar;  /* word shown after the flag in --help; NULL: from the kind */
	const char *def_text; /* how --help shows an empty default: "the host's name"; NULL: none */
	uint64_t min;         /* SIZE, DURATION, COUNT: the smallest value accepted */
	bool secret;          /* never echo the value in an error */
	/* CONFIG_STRING with `choices`: the value must be one of them (any case) and is
	 * stored in the table's spelling. CONFIG_STRING without: `check` validates the
	 * malloc'ed value and may normalise it in place (never longer); it returns 0, or
	 * -1 with the reason in why (the text after "SMTPD_X: "). NULL: no control
	 * characters but tab. */
	int (*check)(char *value, char *why, size_t whylen);
};

extern const struct config_setting config_settings[];
extern const size_t config_settings_count;

/* The row whose flag name is `name` ("max-message-size"), or NULL. */
const struct config_setting *config_setting_find(const char *name);

/* Fill *cfg from argv (argv[0] is the program name) and envp (NULL-terminated
 * "NAME=value" strings; pass `environ`). Precedence: flag > SMTPD_X > SMTPD_X_FILE
 * (the last two together are an error) > embedded default. Every value is
 * validated. Returns 0, or -1 with a one-line message in err that names the
 * variable (or flag), e.g. `SMTPD_PORTS: "25x" is not a port number (1-65535)`.
 * Unknown SMTPD_* variables are not errors: for each, warn(ctx, msg) is called
 * with a one-line message. On error the config is left in a state config_free()
 * accepts. *cfg is overwritten, not freed: pass a zeroed or freed config.
 * An empty value, from a flag, SMTPD_X or SMTPD_X_FILE's path, counts as not
 * given, so the next source or the default applies (as midi-smtp-server does).
 * For --help, --version and --help-markdown the environment is not read and
 * *cfg holds the defaults (hostname ""), so help works whatever the
 * environment holds; an invalid setting or a conflicting flag is then ignored. */
int config_load(struct config *cfg, int argc, char **argv, char **envp,
                void (*warn)(void *ctx, const char *msg), void *warn_ctx, char *err, size_t errlen);

void config_free(struct config *cfg);

/* The command-line actions (--help, --version, ...); help NULL = hidden. */
struct config_action_doc {
	const char *flag;
	enum config_action action;
	const char *help;
};
extern const struct config_action_doc config_actions[];
extern const size_t config_actions_count;

/* "a, b or c" for errors, "a|b|c" for --help: the choices joined into dst. */
void config_join_choices(char *dst, size_t n, const char *const *choices, const char *sep,
                         const char *last_sep);

/* The printers below live in config_doc.c; each walks the same table. */

/* --help text: usage line, the actions, then every setting with its flag,
 * variable, default (and image default) and help sentence. */
void config_print_help(FILE *out);

/* The README's settings table (Markdown), from the same table: columns
 * variable, flag, default, image default, description. Printed by the hidden
 * flag --help-markdown; a test checks README.md contains exactly this. */
void config_print_markdown(FILE *out);

/* mailport(8) in man(7) roff: name, synopsis, actions, every setting, files,
 * signals, exit status. Printed by the hidden --help-man; the build makes the
 * installed man page from it, and a test compares it with --help. */
void config_print_man(FILE *out, const char *version);

/* /etc/default/mailport: every setting as a commented-out VAR=default line
 * under its help sentence (systemd's EnvironmentFile syntax). Hidden --help-env. */
void config_print_envfile(FILE *out);

/* Parse helpers shared with other modules. Return 0 or -1. */
int config_parse_bool(const char *s, bool *out);
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, uint64_t *out_seconds); /* <= CONFIG_DURATION_MAX */
int config_parse_count(const char *s, uint64_t *out);            /* plain unsigned decimal */

/* SMTPD_SPOOL_MIN_FREE: a size ("100M": *bytes, *percent 0) or a percentage of
 * the spool's filesystem ("2%": *percent 1-99, *bytes 0); "0" is no minimum.
 * Returns 0 or -1. (config_check.c) */
int config_parse_min_free(const char *s, uint64_t *bytes, unsigned *percent);

/* Value checkers of the settings table that live in config_check.c (see
 * struct config_setting's `check`). */
int config_check_min_free(char *value, char *why, size_t whylen);
int config_check_cidrs(char *value, char *why, size_t whylen);
int config_check_domains(char *value, char *why, size_t whylen); /* SMTPD_DOMAINS (SPEC 8) */

/* Walk a port list that passed the table's check ("25, 587", as SMTPD_PROXY_PORTS
 * holds it): returns the next port and moves *cursor past it, 0 at the end. */
unsigned config_port_list_next(const char **cursor);

#endif
