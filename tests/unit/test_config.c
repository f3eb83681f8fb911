/* test_config: the settings table, its parser, --help and the Markdown table.
 * Table-driven: each case says what it gives and what it wants, and a failure
 * prints got=… want=…. config_load() takes argv and envp explicitly, so no test
 * touches the real environment. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE      ((const char *const[]){NULL})
#define MAX_ITEMS 16

/* One config_load() call and everything it reported. */
struct run {
	struct config cfg;
	int rc;
	char err[1024];
	char warns[4096];
	int nwarn;
};

static void collect_warn(void *ctx, const char *msg)
{
	struct run *r = ctx;
	size_t len = strlen(r->warns);
	snprintf(r->warns + len, sizeof r->warns - len, "%s\n", msg);
	r->nwarn++;
}

/* Load with argv = "mailport" + args and envp = env (both NULL-terminated). */
static int run(struct run *r, const char *const *args, const char *const *env)
{
	char *argv[MAX_ITEMS + 2], *envp[MAX_ITEMS + 1];
	int argc = 0, n = 0;
	memset(r, 0, sizeof *r);
	argv[argc++] = "mailport";
	for (; args[argc - 1] != NULL; argc++) {
		assert_true(argc <= MAX_ITEMS);
		argv[argc] = (char *)args[argc - 1];
	}
	argv[argc] = NULL;
	for (; env[n] != NULL; n++) {
		assert_true(n < MAX_ITEMS);
		envp[n] = (char *)env[n];
	}
	envp[n] = NULL;
	r->rc = config_load(&r->cfg, argc, argv, envp, collect_warn, r, r->err, sizeof r->err);
	/* Every error is one line (SPEC 1). */
	assert_null(strchr(r->err, '\n'));
	return r->rc;
}

static const struct config_setting *setting(const char *name)
{
	const struct config_setting *s = config_setting_find(name);
	if (s == NULL)
		fail_msg("no setting %s", name);
	return s;
}

/* The value of a setting as text, whatever its kind, so that cases compare
 * strings: "1" for true, the choice for an enum, the number for the rest. */
static void field_text(const struct config *cfg, const struct config_setting *s, char *out,
                       size_t n)
{
	const char *field = (const char *)cfg + s->offset;
	int e;
	switch (s->kind) {
	case CONFIG_STRING: {
		const char *v = *(const char *const *)(const void *)field;
		snprintf(out, n, "%s", v != NULL ? v : "(null)");
		break;
	}
	case CONFIG_BOOL:
		snprintf(out, n, "%d", *(const bool *)(const void *)field ? 1 : 0);
		break;
	case CONFIG_ENUM:
		memcpy(&e, field, sizeof e);
		snprintf(out, n, "%s", s->choices[e]);
		break;
	default:
		snprintf(out, n, "%llu",
		         (unsigned long long)*(const uint64_t *)(const void *)field);
		break;
	}
}

static void assert_field(const char *what, const struct config *cfg, const char *name,
                         const char *want)
{
	char got[1024];
	field_text(cfg, setting(name), got, sizeof got);
	if (strcmp(got, want) != 0)
		fail_msg("%s: %s got=\"%s\" want=\"%s\"", what, name, got, want);
}

static char *host_name(void)
{
	static char name[HOST_NAME_MAX + 1];
	assert_int_equal(gethostname(name, sizeof name), 0);
	return name;
}

static void test_defaults(void **state)
{
	(void)state;
	static const struct {
		const char *name, *want;
	} cases[] = {
	    {"hosts", "127.0.0.1"},
	    {"ports", "2525"},
	    {"http", "127.0.0.1:8080"},
	    {"http-token", ""},
	    {"http-allowed-hosts", ""},
	    {"http-ui", "1"},
	    {"http-max-event-clients", "64"},
	    {"retention-max-messages", "0"},
	    {"retention-max-age", "0"},
	    {"hostname", NULL}, /* gethostname() */
	    {"max-message-size", "26214400"},
	    {"max-recipients", "100"},
	    {"max-line-length", "0"},
	    {"max-connections", "1000"},
	    {"max-connections-per-client", "50"},
	    {"command-timeout", "300"},
	    {"data-timeout", "600"},
	    {"min-data-rate", "500"},
	    {"greet-delay", "0"},
	    {"bare-lf", "normalize"},
	    {"spool", "./spool"},
	    {"deliver", "maildir"},
	    {"filter", ""},
	    {"filter-timeout", "60"},
	    {"webhook-url", ""},
	    {"webhook-format", "json"},
	    {"webhook-secret", ""},
	    {"webhook-timeout", "30"},
	    {"webhook-keep", "1"},
	    {"webhook-retry-min", "30"},
	    {"webhook-retry-max", "3600"},
	    {"webhook-max-age", "259200"},
	    {"webhook-concurrency", "4"},
	    {"webhook-sync", "0"},
	    {"tls", "off"},
	    {"tls-cert", ""},
	    {"tls-key", ""},
	    {"tls-ports", ""},
	    {"tls-ciphers", ""},
	    {"tls-min-version", "TLSv1.2"},
	    {"auth", "off"},
	    {"auth-users-file", ""},
	    {"auth-insecure", "0"},
	    {"auth-max-failures", "5"},
	    {"domains", ""},
	    {"recipients-file", ""},
	    {"rspamd-url", ""},
	    {"rspamd-timeout", "20"},
	    {"rspamd-fail", "tempfail"},
	    {"rspamd-concurrency", "16"},
	    {"nats-url", ""},
	    {"nats-subject", "mailport.messages"},
	    {"nats-stream", "MAILPORT"},
	    {"nats-mode", "forward"},
	    {"nats-creds", ""},
	    {"nats-ca", ""},
	    {"nats-timeout", "10"},
	    {"shutdown-grace", "25"},
	    {"proxy-ports", ""},
	    {"proxy-trusted", ""},
	    {"log-format", "text"},
	    {"log-level", "info"},
	    {"spool-min-free", "100M"},
	};
	struct run r;
	assert_int_equal(run(&r, NONE, NONE), 0);
	assert_int_equal(r.cfg.action, CONFIG_ACTION_RUN);
	assert_int_equal(r.nwarn, 0);
	/* Every setting the SPEC names, no more, no less: a case for each row of
	 * the table, and as many cases as rows. */
	assert_int_equal(sizeof cases / sizeof cases[0], config_settings_count);
	for (size_t i = 0; i < config_settings_count; i++) {
		bool found = false;
		for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
			found |= strcmp(cases[k].name, config_settings[i].name) == 0;
		if (!found)
			fail_msg("no default case for %s", config_settings[i].name);
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_field("default", &r.cfg, cases[i].name,
		             cases[i].want != NULL ? cases[i].want : host_name());
	/* The typed fields, as the rest of mailport reads them. */
	assert_int_equal(r.cfg.max_message_size, 26214400);
	assert_int_equal(r.cfg.tls, CONFIG_MODE_OFF);
	assert_int_equal(r.cfg.log_level, CONFIG_LOG_INFO);
	assert_int_equal(r.cfg.bare_lf, CONFIG_BARE_LF_NORMALIZE);
	assert_true(r.cfg.webhook_keep);
	assert_true(r.cfg.http_ui);
	assert_int_equal(r.cfg.http_max_event_clients, 64);
	config_free(&r.cfg);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		/* The variable is the flag, upper-cased, with _ for - (SPEC 1). */
		char want[128] = "SMTPD_";
		for (size_t k = 0; s->name[k] != '\0'; k++) {
			char c = s->name[k];
			want[6 + k] = c == '-' ? '_' : (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
			want[7 + k] = '\0';
		}
		if (strcmp(s->env, want) != 0)
			fail_msg("env of %s got=%s want=%s", s->name, s->env, want);
		assert_ptr_equal(config_setting_find(s->name), s);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(config_settings[j].name, s->name);
		assert_non_null(s->help);
		assert_int_equal(s->help[strlen(s->help) - 1], '.');
		assert_true(s->image_def == NULL || strcmp(s->image_def, s->def) != 0);
		assert_true((s->kind == CONFIG_ENUM) <= (s->choices != NULL));
	}
	assert_null(config_setting_find("nope"));
}

/* Cases that load and check one setting's resolved value. */
static void test_values(void **state)
{
	(void)state;
	const struct {
		const char *what;
		const char *const *args, *const *env;
		const char *name, *want;
	} cases[] = {
	    {"env", NONE, ARGS("SMTPD_PORTS=25"), "ports", "25"},
	    {"flag beats env", ARGS("--ports", "26"), ARGS("SMTPD_PORTS=25"), "ports", "26"},
	    {"--name=value", ARGS("--ports=27"), NONE, "ports", "27"},
	    {"--name=value with =", ARGS("--hosts=a=b"), NONE, "hosts", "a=b"},
	    {"filter flag", ARGS("--filter", "/bin/true"), NONE, "filter", "/bin/true"},
	    {"filter spans lines", NONE, ARGS("SMTPD_FILTER=a\nb"), "filter", "a\nb"},
	    {"webhook url", NONE, ARGS("SMTPD_WEBHOOK_URL=https://example.com/hook"), "webhook-url",
	     "https://example.com/hook"},
	    {"last flag wins", ARGS("--ports", "1", "--ports=2"), NONE, "ports", "2"},
	    {"value may start with one dash", ARGS("--hosts", "-x"), NONE, "hosts", "-x"},
	    {"first env entry wins", NONE, ARGS("SMTPD_PORTS=1", "SMTPD_PORTS=2"), "ports", "1"},
	    {"empty env is the default", NONE, ARGS("SMTPD_PORTS="), "ports", "2525"},
	    {"empty flag falls through", ARGS("--ports="), ARGS("SMTPD_PORTS=25"), "ports", "25"},
	    {"empty _FILE path is not given", NONE, ARGS("SMTPD_SPOOL=/x", "SMTPD_SPOOL_FILE="),
	     "spool", "/x"},
	    {"empty env beside _FILE", ARGS("--spool=/y"),
	     ARGS("SMTPD_SPOOL=", "SMTPD_SPOOL_FILE=/nonexistent"), "spool", "/y"},
	    {"tab in a list", NONE, ARGS("SMTPD_HOSTS=a,\tb"), "hosts", "a,\tb"},
	    {"size bytes", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=1"), "max-message-size", "1"},
	    {"size K", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=10K"), "max-message-size", "10240"},
	    {"size k", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=10k"), "max-message-size", "10240"},
	    {"size M", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=25M"), "max-message-size", "26214400"},
	    {"size g", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=1g"), "max-message-size", "1073741824"},
	    {"size max", NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=18446744073709551615"),
	     "max-message-size", "18446744073709551615"},
	    {"count", ARGS("--max-recipients=007"), NONE, "max-recipients", "7"},
	    {"duration plain", NONE, ARGS("SMTPD_COMMAND_TIMEOUT=90"), "command-timeout", "90"},
	    {"duration s", NONE, ARGS("SMTPD_COMMAND_TIMEOUT=90s"), "command-timeout", "90"},
	    {"duration m", NONE, ARGS("SMTPD_COMMAND_TIMEOUT=5m"), "command-timeout", "300"},
	    {"duration H", NONE, ARGS("SMTPD_DATA_TIMEOUT=2H"), "data-timeout", "7200"},
	    {"duration max", NONE, ARGS("SMTPD_DATA_TIMEOUT=315360000"), "data-timeout",
	     "315360000"},
	    {"greet-delay 0", NONE, ARGS("SMTPD_GREET_DELAY=0"), "greet-delay", "0"},
	    {"shutdown-grace 0", NONE, ARGS("SMTPD_SHUTDOWN_GRACE=0s"), "shutdown-grace", "0"},
	    {"enum any case", NONE, ARGS("SMTPD_BARE_LF=REJECT"), "bare-lf", "reject"},
	    {"enum deliver", ARGS("--deliver", "discard"), NONE, "deliver", "discard"},
	    {"log json", NONE, ARGS("SMTPD_LOG_FORMAT=json"), "log-format", "json"},
	    {"log debug", NONE, ARGS("SMTPD_LOG_LEVEL=debug"), "log-level", "debug"},
	    {"http off, any case", NONE, ARGS("SMTPD_HTTP=OFF"), "http", "off"},
	    {"http ipv6", NONE, ARGS("SMTPD_HTTP=[::1]:8081"), "http", "[::1]:8081"},
	    {"http any", NONE, ARGS("SMTPD_HTTP=0.0.0.0:65535"), "http", "0.0.0.0:65535"},
	    {"http-token", NONE, ARGS("SMTPD_HTTP_TOKEN=abc.DEF-1_~+/="), "http-token",
	     "abc.DEF-1_~+/="},
	    {"hostname domain", NONE, ARGS("SMTPD_HOSTNAME=mx-1.example.com"), "hostname",
	     "mx-1.example.com"},
	    {"hostname one label", NONE, ARGS("SMTPD_HOSTNAME=localhost"), "hostname", "localhost"},
	    {"hostname v4 literal", NONE, ARGS("SMTPD_HOSTNAME=[192.0.2.1]"), "hostname",
	     "[192.0.2.1]"},
	    {"hostname v6 literal", NONE, ARGS("SMTPD_HOSTNAME=[IPv6:2001:db8::1]"), "hostname",
	     "[IPv6:2001:db8::1]"},
	    {"spool", ARGS("--spool=/var/spool/mailport"), NONE, "spool", "/var/spool/mailport"},
	    {"min free size", NONE, ARGS("SMTPD_SPOOL_MIN_FREE=1G"), "spool-min-free", "1G"},
	    {"min free percent", ARGS("--spool-min-free=2%"), NONE, "spool-min-free", "2%"},
	    {"min free off", NONE, ARGS("SMTPD_SPOOL_MIN_FREE=0"), "spool-min-free", "0"},
	    /* The default, given explicitly. */
	    {"tls off", NONE, ARGS("SMTPD_TLS=OFF"), "tls", "off"},
	    {"auth off", ARGS("--auth=off"), NONE, "auth", "off"},
	    {"webhook-keep yes", NONE, ARGS("SMTPD_WEBHOOK_KEEP=yes"), "webhook-keep", "1"},
	    {"webhook-sync no", NONE, ARGS("SMTPD_WEBHOOK_SYNC=No"), "webhook-sync", "0"},
	    {"auth-insecure off", NONE, ARGS("SMTPD_AUTH_INSECURE=off"), "auth-insecure", "0"},
	    {"retry-max 60m", NONE, ARGS("SMTPD_WEBHOOK_RETRY_MAX=60m"), "webhook-retry-max",
	     "3600"},
	    {"max-age 3 days", NONE, ARGS("SMTPD_WEBHOOK_MAX_AGE=259200"), "webhook-max-age",
	     "259200"},
	    {"tls-min-version any case", NONE, ARGS("SMTPD_TLS_MIN_VERSION=tlsv1.2"),
	     "tls-min-version", "TLSv1.2"},
	    /* SPEC 6 */
	    {"tls required", ARGS("--tls", "required"), NONE, "tls", "required"},
	    {"tls-min-version 1.3", NONE, ARGS("SMTPD_TLS_MIN_VERSION=TLSv1.3"), "tls-min-version",
	     "TLSv1.3"},
	    {"tls-ports", NONE, ARGS("SMTPD_TLS_PORTS=465, 2465"), "tls-ports", "465, 2465"},
	    {"tls-cert alone", NONE, ARGS("SMTPD_TLS_CERT=/etc/both.pem"), "tls-cert",
	     "/etc/both.pem"},
	    {"auth required over tls", NONE,
	     ARGS("SMTPD_AUTH=required", "SMTPD_AUTH_USERS_FILE=/u", "SMTPD_TLS_PORTS=465"), "auth",
	     "required"},
	    {"auth required insecure", NONE,
	     ARGS("SMTPD_AUTH=required", "SMTPD_AUTH_USERS_FILE=/u", "SMTPD_AUTH_INSECURE=1"),
	     "auth-insecure", "1"},
	    /* SPEC 8: rspamd. */
	    {"rspamd url", NONE, ARGS("SMTPD_RSPAMD_URL=http://rspamd:11333"), "rspamd-url",
	     "http://rspamd:11333"},
	    {"rspamd-fail ACCEPT", NONE, ARGS("SMTPD_RSPAMD_FAIL=ACCEPT"), "rspamd-fail", "accept"},
	    {"rspamd-timeout 1m", NONE, ARGS("SMTPD_RSPAMD_TIMEOUT=1m"), "rspamd-timeout", "60"},
	    {"webhook-format JSON", NONE, ARGS("SMTPD_WEBHOOK_FORMAT=JSON"), "webhook-format",
	     "json"},
	    /* Issue 17: the parsed webhook body. */
	    {"webhook-format parsed", NONE, ARGS("SMTPD_WEBHOOK_FORMAT=parsed"), "webhook-format",
	     "parsed"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;
		run(&r, cases[i].args, cases[i].env);
		if (strcmp(cases[i].want, "(refused)") == 0) {
			if (r.rc == 0 || strstr(r.err, "not supported") == NULL)
				fail_msg("%s: got rc=%d err=%s", cases[i].what, r.rc, r.err);
		} else if (r.rc != 0) {
			fail_msg("%s: got error %s", cases[i].what, r.err);
		} else {
			assert_field(cases[i].what, &r.cfg, cases[i].name, cases[i].want);
		}
		config_free(&r.cfg);
	}
}

/* Cases that must fail, with the exact one-line message. */
static void test_errors(void **state)
{
	(void)state;
	const struct {
		const char *const *args, *const *env;
		const char *want;
	} cases[] = {
	    /* Kinds. */
	    {NONE, ARGS("SMTPD_SPOOL_MIN_FREE=100%"),
	     "SMTPD_SPOOL_MIN_FREE: \"100%\" is not a size (bytes, or a number with K, M or G) or "
	     "a percentage (0% to 99%)"},
	    {ARGS("--spool-min-free=1.5%"), NONE,
	     "--spool-min-free: \"1.5%\" is not a size (bytes, or a number with K, M or G) or a "
	     "percentage (0% to 99%)"},
	    {NONE, ARGS("SMTPD_SPOOL_MIN_FREE=10KB"),
	     "SMTPD_SPOOL_MIN_FREE: \"10KB\" is not a size (bytes, or a number with K, M or G) or "
	     "a percentage (0% to 99%)"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=12Q"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"12Q\" is not a size (bytes, or a number with K, M or "
	     "G)"},
	    {ARGS("--max-message-size", "12Q"), NONE,
	     "--max-message-size: \"12Q\" is not a size (bytes, or a number with K, M or G)"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=10KB"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"10KB\" is not a size (bytes, or a number with K, M or "
	     "G)"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=K"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"K\" is not a size (bytes, or a number with K, M or G)"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE= 1"),
	     "SMTPD_MAX_MESSAGE_SIZE: \" 1\" is not a size (bytes, or a number with K, M or "
	     "G)"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=17179869184G"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"17179869184G\" is too large"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=18446744073709551616"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"18446744073709551616\" is too large"},
	    {NONE, ARGS("SMTPD_MAX_MESSAGE_SIZE=0"),
	     "SMTPD_MAX_MESSAGE_SIZE: \"0\" is too small (at least 1)"},
	    {NONE, ARGS("SMTPD_MAX_RECIPIENTS=-1"),
	     "SMTPD_MAX_RECIPIENTS: \"-1\" is not a whole number"},
	    {NONE, ARGS("SMTPD_MAX_RECIPIENTS=+1"),
	     "SMTPD_MAX_RECIPIENTS: \"+1\" is not a whole number"},
	    {NONE, ARGS("SMTPD_MAX_RECIPIENTS=0"),
	     "SMTPD_MAX_RECIPIENTS: \"0\" is too small (at least 1)"},
	    {NONE, ARGS("SMTPD_MAX_CONNECTIONS=1e3"),
	     "SMTPD_MAX_CONNECTIONS: \"1e3\" is not a whole number"},
	    {NONE, ARGS("SMTPD_MAX_CONNECTIONS=0"),
	     "SMTPD_MAX_CONNECTIONS: \"0\" is too small (at least 1)"},
	    {ARGS("--max-connections-per-client=0"), NONE,
	     "--max-connections-per-client: \"0\" is too small (at least 1)"},
	    {NONE, ARGS("SMTPD_COMMAND_TIMEOUT=0"),
	     "SMTPD_COMMAND_TIMEOUT: \"0\" is too small (at least 1s)"},
	    {NONE, ARGS("SMTPD_DATA_TIMEOUT=0m"),
	     "SMTPD_DATA_TIMEOUT: \"0m\" is too small (at least 1s)"},
	    {NONE, ARGS("SMTPD_COMMAND_TIMEOUT=5x"),
	     "SMTPD_COMMAND_TIMEOUT: \"5x\" is not a duration (seconds, or a number with s, m "
	     "or h)"},
	    {NONE, ARGS("SMTPD_COMMAND_TIMEOUT=1d"),
	     "SMTPD_COMMAND_TIMEOUT: \"1d\" is not a duration (seconds, or a number with s, m "
	     "or h)"},
	    {NONE, ARGS("SMTPD_COMMAND_TIMEOUT=1.5h"),
	     "SMTPD_COMMAND_TIMEOUT: \"1.5h\" is not a duration (seconds, or a number with s, "
	     "m or h)"},
	    {NONE, ARGS("SMTPD_COMMAND_TIMEOUT=87601h"),
	     "SMTPD_COMMAND_TIMEOUT: \"87601h\" is too long (at most 315360000 seconds)"},
	    {NONE, ARGS("SMTPD_FILTER_TIMEOUT=0"),
	     "SMTPD_FILTER_TIMEOUT: \"0\" is too small (at least 1s)"},
	    {NONE, ARGS("SMTPD_BARE_LF=strip"),
	     "SMTPD_BARE_LF: \"strip\" is not normalize or reject"},
	    {NONE, ARGS("SMTPD_LOG_LEVEL=warning"),
	     "SMTPD_LOG_LEVEL: \"warning\" is not debug, info, warn or error"},
	    {ARGS("--deliver=mbox"), NONE, "--deliver: \"mbox\" is not maildir or discard"},
	    /* Validated before it is refused, so a typo is called a typo. */
	    {NONE, ARGS("SMTPD_WEBHOOK_SYNC=maybe"),
	     "SMTPD_WEBHOOK_SYNC: \"maybe\" is not a boolean (1/true/yes/on or "
	     "0/false/no/off)"},
	    {NONE, ARGS("SMTPD_TLS=on"), "SMTPD_TLS: \"on\" is not off, optional or required"},
	    {NONE, ARGS("SMTPD_TLS_MIN_VERSION=TLSv1.1"),
	     "SMTPD_TLS_MIN_VERSION: \"TLSv1.1\" is not TLSv1.2 or TLSv1.3"},
	    {NONE, ARGS("SMTPD_WEBHOOK_URL=ftp://x"),
	     "SMTPD_WEBHOOK_URL: \"ftp://x\" is not an http:// or https:// URL"},
	    {NONE, ARGS("SMTPD_RSPAMD_URL=rspamd:11333"),
	     "SMTPD_RSPAMD_URL: \"rspamd:11333\" is not an http:// or https:// URL"},
	    {NONE, ARGS("SMTPD_RSPAMD_FAIL=reject"),
	     "SMTPD_RSPAMD_FAIL: \"reject\" is not tempfail or accept"},
	    {NONE, ARGS("SMTPD_RSPAMD_CONCURRENCY=0"),
	     "SMTPD_RSPAMD_CONCURRENCY: \"0\" is too small (at least 1)"},
	    {NONE, ARGS("SMTPD_WEBHOOK_RETRY_MIN=2h"),
	     "SMTPD_WEBHOOK_RETRY_MAX (3600s) is shorter than SMTPD_WEBHOOK_RETRY_MIN (7200s)"},
	    /* Semantic checks. */
	    {NONE, ARGS("SMTPD_HTTP=localhost:8080"),
	     "SMTPD_HTTP: \"localhost:8080\" is not off or ADDRESS:PORT with an IP address "
	     "(127.0.0.1:8080, [::1]:8080)"},
	    {NONE, ARGS("SMTPD_HTTP=::1:8080"),
	     "SMTPD_HTTP: \"::1:8080\" is not off or ADDRESS:PORT with an IP address "
	     "(127.0.0.1:8080, [::1]:8080)"},
	    {NONE, ARGS("SMTPD_HTTP=[::1]8080"),
	     "SMTPD_HTTP: \"[::1]8080\" is not off or ADDRESS:PORT with an IP address "
	     "(127.0.0.1:8080, [::1]:8080)"},
	    {NONE, ARGS("SMTPD_HTTP=127.0.0.1"),
	     "SMTPD_HTTP: \"127.0.0.1\" is not off or ADDRESS:PORT with an IP address "
	     "(127.0.0.1:8080, [::1]:8080)"},
	    {NONE, ARGS("SMTPD_HTTP=127.0.0.1:0"),
	     "SMTPD_HTTP: \"127.0.0.1:0\" does not end in a port number (1-65535)"},
	    {NONE, ARGS("SMTPD_HTTP=[::]:65536"),
	     "SMTPD_HTTP: \"[::]:65536\" does not end in a port number (1-65535)"},
	    {NONE, ARGS("SMTPD_HTTP=127.0.0.1:80x"),
	     "SMTPD_HTTP: \"127.0.0.1:80x\" does not end in a port number (1-65535)"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx example"),
	     "SMTPD_HOSTNAME: \"mx example\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=-mx.example"),
	     "SMTPD_HOSTNAME: \"-mx.example\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx-.example"),
	     "SMTPD_HOSTNAME: \"mx-.example\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx_1.example"),
	     "SMTPD_HOSTNAME: \"mx_1.example\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx..example"),
	     "SMTPD_HOSTNAME: \"mx..example\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx.example."),
	     "SMTPD_HOSTNAME: \"mx.example.\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=[300.0.2.1]"),
	     "SMTPD_HOSTNAME: \"[300.0.2.1]\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=[2001:db8::1]"),
	     "SMTPD_HOSTNAME: \"[2001:db8::1]\" is not a domain name or an address literal "
	     "([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTNAME=mx\r\n.example"),
	     "SMTPD_HOSTNAME: \"mx\\x0d\\x0a.example\" is not a domain name or an address "
	     "literal ([192.0.2.1], [IPv6:2001:db8::1])"},
	    {NONE,
	     ARGS("SMTPD_HOSTNAME=a123456789012345678901234567890123456789012345678901234567890"
	          "123.example"),
	     "SMTPD_HOSTNAME: \"a12345678901234567890123456789012345678901234567890123456789"
	     "...\" is not a domain name or an address literal ([192.0.2.1], "
	     "[IPv6:2001:db8::1])"},
	    {NONE, ARGS("SMTPD_HOSTS=127.0.0.1\n::1"),
	     "SMTPD_HOSTS: \"127.0.0.1\\x0a::1\" contains a control character"},
	    {ARGS("--ports=25\r"), NONE, "--ports: \"25\\x0d\" contains a control character"},
	    {NONE, ARGS("SMTPD_SPOOL=a\"b\x01"),
	     "SMTPD_SPOOL: \"a\\\"b\\x01\" contains a control character"},
	    /* Secrets are never echoed. */
	    {NONE, ARGS("SMTPD_HTTP_TOKEN=sec ret"),
	     "SMTPD_HTTP_TOKEN: the value (not shown) may only hold visible ASCII characters, "
	     "no spaces"},
	    {NONE, ARGS("SMTPD_WEBHOOK_SECRET=sec\nret"),
	     "SMTPD_WEBHOOK_SECRET: the value (not shown) contains a control character"},
	    /* SPEC 6: TLS and AUTH settings that only work together. */
	    {NONE, ARGS("SMTPD_TLS_KEY=/etc/key.pem"),
	     "SMTPD_TLS_KEY is set but SMTPD_TLS_CERT, its certificate, is not"},
	    {ARGS("--auth", "required"), NONE,
	     "SMTPD_AUTH_USERS_FILE: must name the users file when SMTPD_AUTH is required"},
	    {NONE, ARGS("SMTPD_AUTH=optional"),
	     "SMTPD_AUTH_USERS_FILE: must name the users file when SMTPD_AUTH is optional"},
	    {NONE, ARGS("SMTPD_AUTH=required", "SMTPD_AUTH_USERS_FILE=/etc/users"),
	     "SMTPD_AUTH: required needs TLS (SMTPD_TLS or SMTPD_TLS_PORTS) or "
	     "SMTPD_AUTH_INSECURE=1, or no client could ever send mail"},
	    {NONE, ARGS("SMTPD_TLS_PORTS=465x"),
	     "SMTPD_TLS_PORTS: \"465x\" is not a comma-separated list of port numbers "
	     "(1-65535)"},
	    /* SPEC 5: the webhook posts what the spool holds. */
	    {NONE, ARGS("SMTPD_WEBHOOK_URL=http://127.0.0.1/hook", "SMTPD_DELIVER=discard"),
	     "SMTPD_WEBHOOK_URL needs the spool, but SMTPD_DELIVER is discard"},
	    /* SPEC 7: PROXY protocol. */
	    {NONE, ARGS("SMTPD_PROXY_PORTS=2526"),
	     "SMTPD_PROXY_TRUSTED: must list the load balancers' addresses (CIDR blocks) when "
	     "SMTPD_PROXY_PORTS is set"},
	    {NONE, ARGS("SMTPD_PROXY_PORTS=25x", "SMTPD_PROXY_TRUSTED=10.0.0.0/8"),
	     "SMTPD_PROXY_PORTS: \"25x\" is not a comma-separated list of port numbers "
	     "(1-65535)"},
	    {NONE, ARGS("SMTPD_PROXY_PORTS=25,,587", "SMTPD_PROXY_TRUSTED=10.0.0.0/8"),
	     "SMTPD_PROXY_PORTS: \"25,,587\" is not a comma-separated list of port numbers "
	     "(1-65535)"},
	    {NONE, ARGS("SMTPD_PROXY_PORTS=25", "SMTPD_PROXY_TRUSTED=10.1.0.0/8"),
	     "SMTPD_PROXY_TRUSTED: \"10.1.0.0/8\" has bits set past its prefix length /8"},
	    {ARGS("--proxy-trusted", "10.0.0.0/8, lb.example"), NONE,
	     "--proxy-trusted: \"lb.example\" is not an IPv4 or IPv6 address or CIDR block "
	     "(10.0.0.0/8, 2001:db8::/32)"},
	    /* The command line. */
	    {ARGS("--foo"), NONE, "unknown option --foo (see --help)"},
	    {ARGS("--foo=bar"), NONE, "unknown option --foo (see --help)"},
	    {ARGS("--Ports=1"), NONE, "unknown option --Ports (see --help)"},
	    {ARGS("--"), NONE, "unexpected argument \"--\" (see --help)"},
	    {ARGS("-h"), NONE, "unexpected argument \"-h\" (see --help)"},
	    {ARGS("serve"), NONE, "unexpected argument \"serve\" (see --help)"},
	    {ARGS("--ports"), NONE, "--ports needs a value (--ports VALUE or --ports=VALUE)"},
	    {ARGS("--ports", "--hosts", "::1"), NONE,
	     "--ports needs a value (--ports VALUE or --ports=VALUE)"},
	    {ARGS("--check-config=yes"), NONE, "--check-config takes no value"},
	    {ARGS("--check-config", "--healthcheck"), NONE,
	     "--check-config and --healthcheck cannot be combined"},
	    /* The first error is the one reported. */
	    {ARGS("--foo", "--bar"), NONE, "unknown option --foo (see --help)"},
	    {NONE, ARGS("SMTPD_TLS_KEY=/k", "SMTPD_TLS_KEY_FILE=/nonexistent"),
	     "SMTPD_TLS_KEY and SMTPD_TLS_KEY_FILE are both set"},
	    /* A flag does not excuse the conflict: the deployment is wrong either way. */
	    {ARGS("--tls-key="), ARGS("SMTPD_TLS_KEY_FILE=/nonexistent", "SMTPD_TLS_KEY=/k"),
	     "SMTPD_TLS_KEY and SMTPD_TLS_KEY_FILE are both set"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;
		run(&r, cases[i].args, cases[i].env);
		if (r.rc != -1 || strcmp(r.err, cases[i].want) != 0)
			fail_msg("case %zu: got rc=%d err=[%s] want=[%s]", i, r.rc, r.err,
			         cases[i].want);
		config_free(&r.cfg);
		config_free(&r.cfg); /* safe twice, and after a failure */
	}
}

static void test_actions(void **state)
{
	(void)state;
	const struct {
		const char *const *args, *const *env;
		enum config_action want;
	} cases[] = {
	    {NONE, NONE, CONFIG_ACTION_RUN},
	    {ARGS("--help"), NONE, CONFIG_ACTION_HELP},
	    {ARGS("--version"), NONE, CONFIG_ACTION_VERSION},
	    {ARGS("--check-config"), NONE, CONFIG_ACTION_CHECK},
	    {ARGS("--healthcheck"), NONE, CONFIG_ACTION_HEALTHCHECK},
	    {ARGS("--help-markdown"), NONE, CONFIG_ACTION_HELP_MARKDOWN},
	    {ARGS("--ports=25", "--check-config"), NONE, CONFIG_ACTION_CHECK},
	    {ARGS("--check-config", "--check-config"), NONE, CONFIG_ACTION_CHECK},
	    /* Help wins over everything, and works whatever else is wrong. */
	    {ARGS("--version", "--help"), NONE, CONFIG_ACTION_HELP},
	    {ARGS("--help-markdown", "--version"), NONE, CONFIG_ACTION_VERSION},
	    {ARGS("--foo", "--help"), NONE, CONFIG_ACTION_HELP},
	    {ARGS("--tls=required", "--help"), NONE, CONFIG_ACTION_HELP},
	    {ARGS("--version"), ARGS("SMTPD_PORT=1", "SMTPD_TLS=on"), CONFIG_ACTION_VERSION},
	    {ARGS("--hostname", "--help"), NONE, CONFIG_ACTION_HELP},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;
		if (run(&r, cases[i].args, cases[i].env) != 0)
			fail_msg("case %zu: got error %s", i, r.err);
		if (r.cfg.action != cases[i].want)
			fail_msg("case %zu: action got=%d want=%d", i, r.cfg.action, cases[i].want);
		assert_string_equal(r.err, "");
		assert_int_equal(r.nwarn, 0);
		/* Every string is set, even when only help was asked for. */
		assert_non_null(r.cfg.hosts);
		assert_non_null(r.cfg.proxy_trusted);
		config_free(&r.cfg);
	}
}

static void test_unknown_env(void **state)
{
	(void)state;
	const struct {
		const char *const *env;
		const char *want;
	} cases[] = {
	    {ARGS("SMTPD_PORT=25"),
	     "SMTPD_PORT is not a mailport setting (did you mean SMTPD_PORTS?); ignored\n"},
	    {ARGS("SMTPD_HOSTNAM=x"),
	     "SMTPD_HOSTNAM is not a mailport setting (did you mean SMTPD_HOSTNAME?); "
	     "ignored\n"},
	    {ARGS("SMTPD_TLS_CRT_FILE=/x"),
	     "SMTPD_TLS_CRT_FILE is not a mailport setting (did you mean "
	     "SMTPD_TLS_CERT_FILE?); ignored\n"},
	    {ARGS("SMTPD_MAX_MESSAGE_SIZ=1"),
	     "SMTPD_MAX_MESSAGE_SIZ is not a mailport setting (did you mean "
	     "SMTPD_MAX_MESSAGE_SIZE?); ignored\n"},
	    /* Filter variables (SPEC 5) belong to the child, not to mailport. */
	    {ARGS("SMTPD_MAIL_FROM=a@b"), "SMTPD_MAIL_FROM is not a mailport setting; ignored\n"},
	    {ARGS("SMTPD_=1"), "SMTPD_ is not a mailport setting; ignored\n"},
	    {ARGS("SMTPD_X\x01=1"), "SMTPD_X\\x01 is not a mailport setting; ignored\n"},
	    {ARGS("SMTPD_PORT=1", "SMTPD_HOST=x"),
	     "SMTPD_PORT is not a mailport setting (did you mean SMTPD_PORTS?); ignored\n"
	     "SMTPD_HOST is not a mailport setting (did you mean SMTPD_HOSTS?); ignored\n"},
	    /* Not ours, or ours and known: silent. */
	    {ARGS("PATH=/bin", "smtpd_ports=1", "SMTPDX=1", "SMTPD_PORTS=2525",
	          "SMTPD_SPOOL_FILE=", "SMTPD_NOEQUALS"),
	     ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;
		if (run(&r, NONE, cases[i].env) != 0)
			fail_msg("case %zu: got error %s", i, r.err);
		if (strcmp(r.warns, cases[i].want) != 0)
			fail_msg("case %zu: got=[%s] want=[%s]", i, r.warns, cases[i].want);
		config_free(&r.cfg);
	}
	/* No callback: still loads. */
	struct config cfg;
	char err[256];
	char *argv[] = {"mailport", NULL};
	char *envp[] = {"SMTPD_PORT=1", NULL};
	assert_int_equal(config_load(&cfg, 1, argv, envp, NULL, NULL, err, sizeof err), 0);
	config_free(&cfg);
}

/* Files for the _FILE cases live in a fresh directory. */
struct tmp {
	char dir[64];
	char path[8][128];
	int n;
};

static const char *tmp_file(struct tmp *t, const void *data, size_t len)
{
	assert_true(t->n < 8);
	char *p = t->path[t->n];
	char dir[sizeof t->dir];
	memcpy(dir, t->dir, sizeof dir);
	snprintf(p, sizeof t->path[0], "%s/f%d", dir, t->n);
	t->n++;
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return p;
}

static void tmp_remove(struct tmp *t)
{
	for (int i = 0; i < t->n; i++)
		unlink(t->path[i]);
	assert_int_equal(rmdir(t->dir), 0);
}

static void test_file(void **state)
{
	(void)state;
	static const struct {
		const char *var, *content, *name, *want; /* want NULL: error wanted */
		const char *want_err;
	} cases[] = {
	    {"SMTPD_SPOOL_FILE", "/srv/spool\n", "spool", "/srv/spool", NULL},
	    {"SMTPD_SPOOL_FILE", "/srv/spool\r\n", "spool", "/srv/spool", NULL},
	    {"SMTPD_SPOOL_FILE", "/srv/spool", "spool", "/srv/spool", NULL},
	    {"SMTPD_SPOOL_FILE", "", "spool", "./spool", NULL},
	    {"SMTPD_SPOOL_FILE", "\n", "spool", "./spool", NULL},
	    {"SMTPD_MAX_MESSAGE_SIZE_FILE", "10K\n", "max-message-size", "10240", NULL},
	    {"SMTPD_HTTP_TOKEN_FILE", "t0ken\n", "http-token", "t0ken", NULL},
	    /* Only one newline is stripped. */
	    {"SMTPD_SPOOL_FILE", "/srv/spool\n\n", "spool", NULL,
	     "SMTPD_SPOOL_FILE: \"/srv/spool\\x0a\" contains a control character"},
	    {"SMTPD_MAX_MESSAGE_SIZE_FILE", "12Q\n", "max-message-size", NULL,
	     "SMTPD_MAX_MESSAGE_SIZE_FILE: \"12Q\" is not a size (bytes, or a number with K, "
	     "M or G)"},
	    {"SMTPD_TLS_FILE", "optional\n", "tls", "optional", NULL},
	};
	struct tmp t = {.n = 0};
	snprintf(t.dir, sizeof t.dir, "/tmp/test_config.XXXXXX");
	assert_non_null(mkdtemp(t.dir));
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char env[256];
		t.n = 0;
		const char *p = tmp_file(&t, cases[i].content, strlen(cases[i].content));
		snprintf(env, sizeof env, "%s=%s", cases[i].var, p);
		struct run r;
		run(&r, NONE, ARGS(env));
		if (cases[i].want != NULL) {
			if (r.rc != 0)
				fail_msg("case %zu: got error %s", i, r.err);
			assert_field(cases[i].var, &r.cfg, cases[i].name, cases[i].want);
		} else {
			if (r.rc != -1 || strcmp(r.err, cases[i].want_err) != 0)
				fail_msg("case %zu: got rc=%d err=[%s] want=[%s]", i, r.rc, r.err,
				         cases[i].want_err);
		}
		assert_int_equal(r.nwarn, 0);
		config_free(&r.cfg);
		unlink(p);
	}

	/* Errors that name the variable, the path and the reason. */
	char env[256], want[512];
	struct run r;
	t.n = 0;
	snprintf(env, sizeof env, "SMTPD_TLS_KEY_FILE=%s/missing", t.dir);
	assert_int_equal(run(&r, NONE, ARGS(env)), -1);
	snprintf(want, sizeof want, "SMTPD_TLS_KEY_FILE: cannot read %s/missing: %s", t.dir,
	         strerror(ENOENT));
	assert_string_equal(r.err, want);
	config_free(&r.cfg);

	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s", t.dir);
	assert_int_equal(run(&r, NONE, ARGS(env)), -1);
	snprintf(want, sizeof want, "SMTPD_SPOOL_FILE: cannot read %s: %s", t.dir,
	         strerror(EISDIR));
	assert_string_equal(r.err, want);
	config_free(&r.cfg);

	const char *nul = tmp_file(&t, "a\0b", 3);
	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s", nul);
	assert_int_equal(run(&r, NONE, ARGS(env)), -1);
	snprintf(want, sizeof want, "SMTPD_SPOOL_FILE: %s contains a NUL byte", nul);
	assert_string_equal(r.err, want);
	config_free(&r.cfg);

	/* The cap: exactly CONFIG_FILE_MAX is read, one byte more is refused. */
	char *big = malloc(CONFIG_FILE_MAX + 1);
	assert_non_null(big);
	memset(big, 'a', CONFIG_FILE_MAX + 1);
	const char *fits = tmp_file(&t, big, CONFIG_FILE_MAX);
	const char *over = tmp_file(&t, big, CONFIG_FILE_MAX + 1);
	free(big);
	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s", fits);
	assert_int_equal(run(&r, NONE, ARGS(env)), 0);
	assert_int_equal(strlen(r.cfg.spool), CONFIG_FILE_MAX);
	config_free(&r.cfg);
	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s", over);
	assert_int_equal(run(&r, NONE, ARGS(env)), -1);
	snprintf(want, sizeof want, "SMTPD_SPOOL_FILE: %s is larger than 1 MiB", over);
	assert_string_equal(r.err, want);
	config_free(&r.cfg);

	/* A flag wins: the file is not even read. */
	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s/missing", t.dir);
	assert_int_equal(run(&r, ARGS("--spool=/flag"), ARGS(env)), 0);
	assert_string_equal(r.cfg.spool, "/flag");
	config_free(&r.cfg);

	/* Both set is an error even when the file is fine. */
	const char *ok = tmp_file(&t, "/file\n", 6);
	snprintf(env, sizeof env, "SMTPD_SPOOL_FILE=%s", ok);
	assert_int_equal(run(&r, NONE, ARGS("SMTPD_SPOOL=/env", env)), -1);
	assert_string_equal(r.err, "SMTPD_SPOOL and SMTPD_SPOOL_FILE are both set");
	config_free(&r.cfg);
	tmp_remove(&t);
}

/* Capture what a printer writes. The caller frees the text. */
static char *capture(void (*print)(FILE *))
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	print(f);
	assert_int_equal(fclose(f), 0);
	return text;
}

static void test_help(void **state)
{
	(void)state;
	char *help = capture(config_print_help);
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		char want[256];
		const char *def = s->def[0] != '\0'     ? s->def
		                  : s->def_text != NULL ? s->def_text
		                                        : "none";
		snprintf(want, sizeof want, "\n  --%s ", s->name);
		if (strstr(help, want) == NULL)
			fail_msg("help lacks the flag %s", want);
		snprintf(want, sizeof want, "(%s, default %s", s->env, def);
		if (strstr(help, want) == NULL)
			fail_msg("help lacks \"%s\"", want);
		if (s->image_def != NULL) {
			snprintf(want, sizeof want, "(%s, default %s, image %s)", s->env, def,
			         s->image_def);
			if (strstr(help, want) == NULL)
				fail_msg("help lacks \"%s\"", want);
		}
	}
	assert_non_null(strstr(help, "Usage: mailport"));
	assert_non_null(strstr(help, "SMTPD_NAME_FILE"));
	/* The rules, wherever the wrapping broke their lines. */
	char *flat = strdup(help);
	assert_non_null(flat);
	size_t o = 0;
	for (const char *p = help; *p != '\0'; p++) {
		if ((*p == ' ' || *p == '\n') && o > 0 && flat[o - 1] == ' ')
			continue;
		flat[o++] = *p == '\n' ? ' ' : *p;
	}
	flat[o] = '\0';
	assert_non_null(strstr(flat, "a flag wins over the environment"));
	assert_non_null(strstr(flat, "setting both SMTPD_NAME and SMTPD_NAME_FILE is an error"));
	assert_non_null(strstr(flat, "An empty value counts as not given"));
	free(flat);
	static const char *const actions[] = {"--help ", "--version ", "--check-config ",
	                                      "--healthcheck "};
	for (size_t k = 0; k < sizeof actions / sizeof actions[0]; k++)
		assert_non_null(strstr(help, actions[k]));
	assert_null(strstr(help, "--help-markdown")); /* hidden */
	/* Readable in an 100-column terminal. */
	for (const char *line = help; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		if (len > 100)
			fail_msg("help line of %zu columns: %.*s", len, (int)len, line);
		line += len + (line[len] == '\n');
	}
	free(help);
}

static void test_markdown(void **state)
{
	(void)state;
	char *md = capture(config_print_markdown);
	const char *line = md;
	size_t row = 0;
	/* Nothing but the table: header, separator, one row per setting. */
	assert_true(strncmp(md,
	                    "| Variable | Flag | Default | Image default | Description |\n"
	                    "| --- | --- | --- | --- | --- |\n",
	                    strlen("| Variable | Flag | Default | Image default | "
	                           "Description |\n| --- | --- | --- | --- | --- |\n")) == 0);
	for (int skip = 0; skip < 2; skip++)
		line = strchr(line, '\n') + 1;
	for (; *line != '\0'; row++) {
		const char *end = strchr(line, '\n');
		assert_non_null(end);
		assert_true(row < config_settings_count);
		const struct config_setting *s = &config_settings[row];
		char want[256];
		snprintf(want, sizeof want, "| `%s` | `--%s` | ", s->env, s->name);
		if (strncmp(line, want, strlen(want)) != 0)
			fail_msg("row %zu got=%.*s want prefix=%s", row, (int)(end - line), line,
			         want);
		/* Five cells: six pipes that are not escaped. */
		int pipes = 0;
		for (const char *p = line; p < end; p++)
			pipes += *p == '|' && p[-1] != '\\';
		assert_int_equal(pipes, 6);
		assert_true(end[-1] == '|');
		line = end + 1;
	}
	assert_int_equal(row, config_settings_count);
	free(md);
}

static void test_free_safe(void **state)
{
	(void)state;
	struct config cfg;
	memset(&cfg, 0, sizeof cfg);
	config_free(&cfg);
	config_free(&cfg);
	config_free(NULL);
	/* A half-filled config after each kind of failure (ASan checks for leaks). */
	static const char *const envs[][2] = {
	    {"SMTPD_LOG_LEVEL=loud", NULL}, /* the last setting */
	    {"SMTPD_HOSTNAME=a b", NULL},
	    {"SMTPD_AUTH=required", NULL},
	    {"SMTPD_WEBHOOK_RETRY_MIN=2h", NULL},
	};
	for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
		struct run r;
		assert_int_equal(run(&r, NONE, envs[i]), -1);
		config_free(&r.cfg);
		assert_null(r.cfg.hosts);
		assert_null(r.cfg.spool);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults), cmocka_unit_test(test_table),
	    cmocka_unit_test(test_values),   cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_actions),  cmocka_unit_test(test_unknown_env),
	    cmocka_unit_test(test_file),     cmocka_unit_test(test_help),
	    cmocka_unit_test(test_markdown), cmocka_unit_test(test_free_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
