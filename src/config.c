/* config: every setting of mailport, from one table (see config.h, SPEC 1).
 *
 * The table below drives the parser and, through config_doc.c, --help, the
 * README's Markdown table, mailport(8) and /etc/default/mailport, so they
 * cannot drift. This module prints nothing: errors go to the caller's err
 * buffer and warnings to its callback, and main.c decides what to do. */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define F(field) offsetof(struct config, field)

/* Room for one quoted value or reason in an error message. Values are cut
 * well before that, so one setting can never flood the log. */
#define CONFIG_WHY_MAX   384
#define CONFIG_QUOTE_CUT 60
/* More than the table holds; checked below, so the per-setting arrays in
 * config_load() need no allocation. */
#define CONFIG_SETTINGS_MAX 64
/* A suggestion is offered for an unknown SMTPD_* variable this close to a real one. */
#define CONFIG_SUGGEST_DISTANCE 2
#define CONFIG_SUGGEST_NAME_MAX 64
/* "SMTPD_MAX_CONNECTIONS_PER_CLIENT_FILE" and the like, with room to spare. */
#define CONFIG_SOURCE_MAX 80
/* RFC 1035 2.3.4: a label is at most 63 octets, a name at most 255 on the wire,
 * which is 253 characters written out without the trailing dot. */
#define CONFIG_LABEL_MAX  63
#define CONFIG_DOMAIN_MAX 253

static int config_check_any(char *value, char *why, size_t whylen);
static int config_check_http(char *value, char *why, size_t whylen);
static int config_check_hostname(char *value, char *why, size_t whylen);
static int config_check_token(char *value, char *why, size_t whylen);
static int config_check_secret(char *value, char *why, size_t whylen);
static int config_check_url(char *value, char *why, size_t whylen);
static int config_check_port_list(char *value, char *why, size_t whylen);

static const char *const config_modes[] = {"off", "optional", "required", NULL};
static const char *const config_auth_modes[] = {"off", "optional", "required", "any", NULL};
static const char *const config_bare_lfs[] = {"normalize", "reject", NULL};
static const char *const config_delivers[] = {"maildir", "discard", NULL};
static const char *const config_webhook_formats[] = {"json", "raw", NULL};
static const char *const config_log_formats[] = {"text", "json", NULL};
static const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_tls_versions[] = {"TLSv1.2", "TLSv1.3", NULL};

/* ENUM settings store the index of the choice; the lists above are written in
 * the order of the enums in config.h, and the enums must be int-sized. */
_Static_assert(sizeof(enum config_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_bare_lf) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_deliver) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_webhook_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(CONFIG_MODE_REQUIRED == 2 && CONFIG_BARE_LF_REJECT == 1 &&
                   CONFIG_DELIVER_DISCARD == 1 && CONFIG_WEBHOOK_RAW == 1 && CONFIG_LOG_JSON == 1 &&
                   CONFIG_LOG_ERROR == 3,
               "choices follow the enums");

/* To ship a feature, set .implemented = true on its rows (and drop .planned):
 * nothing else here changes. Until then its settings are parsed and validated,
 * but a value other than the default is refused, so nobody believes that TLS
 * or AUTH is on when it is not. One row per setting reads better packed than
 * one field a line, hence clang-format off. */
// clang-format off
const struct config_setting config_settings[] = {
	/* SPEC 2: endpoints (validated by the endpoint module). */
	{.name = "hosts", .env = "SMTPD_HOSTS", .kind = CONFIG_STRING, .offset = F(hosts),
	 .def = "127.0.0.1", .image_def = "0.0.0.0", .metavar = "LIST", .implemented = true,
	 .help = "Comma-separated IPv4 and IPv6 addresses and host names to listen on; "
		 "* is every local address, 0.0.0.0 and :: the ANY addresses."},
	{.name = "ports", .env = "SMTPD_PORTS", .kind = CONFIG_STRING, .offset = F(ports),
	 .def = "2525", .metavar = "LIST", .implemented = true,
	 .help = "Comma-separated ports, matched to the SMTPD_HOSTS items by position; "
		 "2525:3535 gives one host item two ports."},

	/* SPEC 3: HTTP side port. */
	{.name = "http", .env = "SMTPD_HTTP", .kind = CONFIG_STRING, .offset = F(http),
	 .def = "127.0.0.1:8080", .image_def = "0.0.0.0:8080", .metavar = "ADDRESS:PORT|off",
	 .check = config_check_http, .implemented = true,
	 .help = "Address and port of the HTTP side port (health, status, metrics, messages), "
		 "or off."},
	{.name = "http-token", .env = "SMTPD_HTTP_TOKEN", .kind = CONFIG_STRING,
	 .offset = F(http_token), .def = "", .metavar = "TOKEN", .secret = true,
	 .check = config_check_token, .implemented = true,
	 .help = "Bearer token that /messages and /metrics require; health and status stay open."},
	{.name = "http-allowed-hosts", .env = "SMTPD_HTTP_ALLOWED_HOSTS", .kind = CONFIG_STRING,
	 .offset = F(http_allowed_hosts), .def = "", .metavar = "LIST", .implemented = true,
	 .help = "Without SMTPD_HTTP_TOKEN, the side port answers only requests whose Host is an IP "
	         "address, localhost, or a name in this comma list (*.example.org for subdomains); "
	         "others get 403, so a web page cannot reach it by DNS rebinding. Health routes "
	         "never check."},

	/* SPEC 4: SMTP. */
	{.name = "hostname", .env = "SMTPD_HOSTNAME", .kind = CONFIG_STRING, .offset = F(hostname),
	 .def = "", .def_text = "the host's name", .metavar = "NAME",
	 .check = config_check_hostname, .implemented = true,
	 .help = "Name used in the greeting, the EHLO reply and the Received header."},
	{.name = "max-message-size", .env = "SMTPD_MAX_MESSAGE_SIZE", .kind = CONFIG_SIZE,
	 .offset = F(max_message_size), .def = "26214400", .min = 1, .implemented = true,
	 .help = "Largest message accepted, advertised in the EHLO reply as SIZE."},
	{.name = "max-recipients", .env = "SMTPD_MAX_RECIPIENTS", .kind = CONFIG_COUNT,
	 .offset = F(max_recipients), .def = "100", .min = 1, .implemented = true,
	 .help = "Most recipients of one message; more get 452 4.5.3."},
	{.name = "max-line-length", .env = "SMTPD_MAX_LINE_LENGTH", .kind = CONFIG_COUNT,
	 .offset = F(max_line_length), .def = "0", .implemented = true,
	 .help = "Longest text line of a message, in octets with its CRLF (RFC 5321 says 1000): "
	         "a longer line makes the message refused with 500 5.5.6 at its end. 0: no limit "
	         "of its own; lines of any length are stored unchanged, within "
	         "SMTPD_MAX_MESSAGE_SIZE. Command lines stay limited to 512 octets."},
	{.name = "max-connections", .env = "SMTPD_MAX_CONNECTIONS", .kind = CONFIG_COUNT,
	 .offset = F(max_connections), .def = "1000", .min = 1, .implemented = true,
	 .help = "Most simultaneous SMTP connections; more get 421 4.7.0 and are closed."},
	{.name = "max-connections-per-client", .env = "SMTPD_MAX_CONNECTIONS_PER_CLIENT",
	 .kind = CONFIG_COUNT, .offset = F(max_connections_per_client), .def = "50", .min = 1,
	 .implemented = true,
	 .help = "Most simultaneous SMTP connections from one client address."},
	{.name = "command-timeout", .env = "SMTPD_COMMAND_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(command_timeout), .def = "300", .min = 1, .implemented = true,
	 .help = "Time for one whole command line, counted from the previous reply (a client "
		 "that trickles a command byte by byte gets no more); then 421 4.4.2."},
	{.name = "data-timeout", .env = "SMTPD_DATA_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(data_timeout), .def = "600", .min = 1, .implemented = true,
	 .help = "Longest wait for message data before 421 4.4.2; the deadline only moves "
		 "as fast as SMTPD_MIN_DATA_RATE allows."},
	{.name = "min-data-rate", .env = "SMTPD_MIN_DATA_RATE", .kind = CONFIG_SIZE,
	 .offset = F(min_data_rate), .def = "500", .min = 1, .implemented = true,
	 .help = "Bytes per second a client must keep up in DATA/BDAT: each read of N bytes "
		 "moves the data deadline N/rate seconds later, never beyond "
		 "SMTPD_DATA_TIMEOUT from now (as Postfix's smtpd_min_data_rate)."},
	{.name = "greet-delay", .env = "SMTPD_GREET_DELAY", .kind = CONFIG_DURATION,
	 .offset = F(greet_delay), .def = "0", .implemented = true,
	 .help = "How long the greeting is held back; a client that talks first is "
		 "disconnected."},
	{.name = "bare-lf", .env = "SMTPD_BARE_LF", .kind = CONFIG_ENUM, .offset = F(bare_lf),
	 .def = "normalize", .choices = config_bare_lfs, .implemented = true,
	 .help = "A bare LF in message data is a line end (normalize) or makes the message "
		 "refused with 550 5.5.2 (reject)."},

	/* SPEC 5: storage and delivery. */
	{.name = "spool", .env = "SMTPD_SPOOL", .kind = CONFIG_STRING, .offset = F(spool),
	 .def = "./spool", .image_def = "/var/spool/mailport", .metavar = "DIR",
	 .implemented = true,
	 .help = "Maildir where accepted messages are stored; created when missing."},
	{.name = "spool-min-free", .env = "SMTPD_SPOOL_MIN_FREE", .kind = CONFIG_STRING,
	 .offset = F(spool_min_free), .def = "100M", .metavar = "SIZE",
	 .check = config_check_min_free, .implemented = true,
	 .help = "Free space the spool keeps (K/M/G, or a percentage of its filesystem such as "
		 "2%; 0: none): below it /readyz is 503 and MAIL gets 452 4.3.1."},
	{.name = "deliver", .env = "SMTPD_DELIVER", .kind = CONFIG_ENUM, .offset = F(deliver),
	 .def = "maildir", .choices = config_delivers, .implemented = true,
	 .help = "Store each message in the spool, or discard it (for benchmarks and sinks)."},
	{.name = "filter", .env = "SMTPD_FILTER", .kind = CONFIG_STRING, .offset = F(filter),
	 .def = "", .metavar = "COMMAND", .check = config_check_any, .implemented = true,
	 .help = "Command run by /bin/sh -c with each message on stdin before it is accepted: "
		 "exit 0 accepts, 75 defers, anything else refuses."},
	{.name = "filter-timeout", .env = "SMTPD_FILTER_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(filter_timeout), .def = "60", .min = 1, .implemented = true,
	 .help = "A filter still running after this long is killed and the message gets "
		 "451 4.3.0."},
	{.name = "webhook-url", .env = "SMTPD_WEBHOOK_URL", .kind = CONFIG_STRING,
	 .offset = F(webhook_url), .def = "", .metavar = "URL", .check = config_check_url,
	 .implemented = true,
	 .help = "http:// or https:// URL every stored message is POSTed to after its 250."},
	{.name = "webhook-format", .env = "SMTPD_WEBHOOK_FORMAT", .kind = CONFIG_ENUM,
	 .offset = F(webhook_format), .def = "json", .choices = config_webhook_formats,
	 .implemented = true,
	 .help = "Post JSON with the envelope and the base64 message, or the raw message."},
	{.name = "webhook-secret", .env = "SMTPD_WEBHOOK_SECRET", .kind = CONFIG_STRING,
	 .offset = F(webhook_secret), .def = "", .metavar = "SECRET", .secret = true,
	 .check = config_check_secret, .implemented = true,
	 .help = "Key of the X-Mailport-Signature HMAC-SHA256 header."},
	{.name = "webhook-timeout", .env = "SMTPD_WEBHOOK_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(webhook_timeout), .def = "30", .min = 1, .implemented = true,
	 .help = "How long one webhook request may take."},
	{.name = "webhook-keep", .env = "SMTPD_WEBHOOK_KEEP", .kind = CONFIG_BOOL,
	 .offset = F(webhook_keep), .def = "1", .implemented = true,
	 .help = "Keep delivered messages in cur/ (1) or remove them (0)."},
	{.name = "webhook-retry-min", .env = "SMTPD_WEBHOOK_RETRY_MIN", .kind = CONFIG_DURATION,
	 .offset = F(webhook_retry_min), .def = "30", .min = 1, .implemented = true,
	 .help = "First delay before a failed webhook request is retried; it doubles each time."},
	{.name = "webhook-retry-max", .env = "SMTPD_WEBHOOK_RETRY_MAX", .kind = CONFIG_DURATION,
	 .offset = F(webhook_retry_max), .def = "1h", .min = 1, .implemented = true,
	 .help = "Longest delay between webhook retries."},
	{.name = "webhook-max-age", .env = "SMTPD_WEBHOOK_MAX_AGE", .kind = CONFIG_DURATION,
	 .offset = F(webhook_max_age), .def = "72h", .min = 1, .implemented = true,
	 .help = "A message not delivered after this long is moved to failed/."},
	{.name = "webhook-concurrency", .env = "SMTPD_WEBHOOK_CONCURRENCY", .kind = CONFIG_COUNT,
	 .offset = F(webhook_concurrency), .def = "4", .min = 1, .implemented = true,
	 .help = "Most webhook requests in flight at once."},
	{.name = "webhook-sync", .env = "SMTPD_WEBHOOK_SYNC", .kind = CONFIG_BOOL,
	 .offset = F(webhook_sync), .def = "0", .implemented = true,
	 .help = "Post before answering the end of data: 250 only when the webhook took it."},

	/* SPEC 6: TLS and AUTH. */
	{.name = "tls", .env = "SMTPD_TLS", .kind = CONFIG_ENUM, .offset = F(tls), .def = "off",
	 .choices = config_modes, .implemented = true,
	 .help = "STARTTLS: off, offered (optional), or needed before MAIL and AUTH (required)."},
	{.name = "tls-cert", .env = "SMTPD_TLS_CERT", .kind = CONFIG_STRING, .offset = F(tls_cert),
	 .def = "", .def_text = "self-signed", .metavar = "FILE", .implemented = true,
	 .help = "PEM certificate chain (leaf first); reloaded on SIGHUP and when the file "
		 "changes. Without it, TLS uses a self-signed certificate made at start-up."},
	{.name = "tls-key", .env = "SMTPD_TLS_KEY", .kind = CONFIG_STRING, .offset = F(tls_key),
	 .def = "", .def_text = "in SMTPD_TLS_CERT", .metavar = "FILE", .implemented = true,
	 .help = "PEM private key (RSA or ECDSA, not encrypted) of the certificate."},
	{.name = "tls-ports", .env = "SMTPD_TLS_PORTS", .kind = CONFIG_STRING,
	 .offset = F(tls_ports), .def = "", .metavar = "LIST", .check = config_check_port_list,
	 .implemented = true,
	 .help = "Comma-separated ports whose listeners speak TLS from the first byte "
		 "(RFC 8314, e.g. 465); each must be a port of SMTPD_PORTS."},
	{.name = "tls-ciphers", .env = "SMTPD_TLS_CIPHERS", .kind = CONFIG_STRING,
	 .offset = F(tls_ciphers), .def = "", .def_text = "Mozilla intermediate", .metavar = "LIST",
	 .implemented = true,
	 .help = "OpenSSL cipher list for TLS 1.2; the default is Mozilla's intermediate list "
	         "(ECDHE with AES-GCM or ChaCha20-Poly1305 only). TLS 1.3 keeps OpenSSL's suites."},
	{.name = "tls-min-version", .env = "SMTPD_TLS_MIN_VERSION", .kind = CONFIG_STRING,
	 .offset = F(tls_min_version), .def = "TLSv1.2", .choices = config_tls_versions,
	 .implemented = true,
	 .help = "Oldest TLS version accepted."},
	{.name = "auth", .env = "SMTPD_AUTH", .kind = CONFIG_ENUM, .offset = F(auth), .def = "off",
	 .choices = config_auth_modes, .implemented = true,
	 .help = "SMTP AUTH PLAIN and LOGIN: off, offered (optional), needed before MAIL "
		 "(required), or offered with every credential accepted, for test catchers (any; "
		 "not with SMTPD_AUTH_USERS_FILE)."},
	{.name = "auth-users-file", .env = "SMTPD_AUTH_USERS_FILE", .kind = CONFIG_STRING,
	 .offset = F(auth_users_file), .def = "", .metavar = "FILE", .implemented = true,
	 .help = "File of user:hash lines, crypt(3) hashes (yescrypt, SHA-512, bcrypt); "
		 "reloaded on SIGHUP."},
	{.name = "auth-insecure", .env = "SMTPD_AUTH_INSECURE", .kind = CONFIG_BOOL,
	 .offset = F(auth_insecure), .def = "0", .implemented = true,
	 .help = "Offer PLAIN and LOGIN without TLS too."},
	{.name = "auth-max-failures", .env = "SMTPD_AUTH_MAX_FAILURES", .kind = CONFIG_COUNT,
	 .offset = F(auth_max_failures), .def = "5", .implemented = true,
	 .help = "Failed AUTH attempts from one client address (an IPv6 client's /64) within 15 "
	         "minutes, over all its connections, before AUTH from it is answered 454 4.7.0 for "
	         "1 minute, doubling each time up to 1 hour. 0: no limit."},

	/* SPEC 7: operations. */
	{.name = "shutdown-grace", .env = "SMTPD_SHUTDOWN_GRACE", .kind = CONFIG_DURATION,
	 .offset = F(shutdown_grace), .def = "25", .implemented = true,
	 .help = "On SIGTERM, how long a session inside a transaction may take to finish it "
		 "(0: none)."},
	{.name = "proxy-ports", .env = "SMTPD_PROXY_PORTS", .kind = CONFIG_STRING,
	 .offset = F(proxy_ports), .def = "", .metavar = "LIST",
	 .check = config_check_port_list, .implemented = true,
	 .help = "Comma-separated ports whose listeners require a PROXY protocol v1 or v2 "
		 "header (within 5 s, before the greeting) from a peer in SMTPD_PROXY_TRUSTED."},
	{.name = "proxy-trusted", .env = "SMTPD_PROXY_TRUSTED", .kind = CONFIG_STRING,
	 .offset = F(proxy_trusted), .def = "", .metavar = "CIDRS",
	 .check = config_check_cidrs, .implemented = true,
	 .help = "Comma-separated CIDR blocks (10.0.0.0/8, 2001:db8::/32) allowed to send a "
		 "PROXY header; connections from other peers to SMTPD_PROXY_PORTS are closed."},
	{.name = "log-format", .env = "SMTPD_LOG_FORMAT", .kind = CONFIG_ENUM,
	 .offset = F(log_format), .def = "text", .choices = config_log_formats, .implemented = true,
	 .help = "Log lines on stderr as text or as one JSON object each."},
	{.name = "log-level", .env = "SMTPD_LOG_LEVEL", .kind = CONFIG_ENUM, .offset = F(log_level),
	 .def = "info", .choices = config_log_levels, .implemented = true,
	 .help = "Least important events logged."},
};
// clang-format on

const size_t config_settings_count = sizeof config_settings / sizeof config_settings[0];
_Static_assert(sizeof config_settings / sizeof config_settings[0] <= CONFIG_SETTINGS_MAX,
               "raise CONFIG_SETTINGS_MAX");

/* One parsed value, whatever its kind; strings are owned. */
union config_value {
	char *s;
	bool b;
	uint64_t u;
	int e;
};

/* Where a setting's value came from, which names it in an error. */
enum config_from { CONFIG_FROM_DEFAULT, CONFIG_FROM_FLAG, CONFIG_FROM_ENV, CONFIG_FROM_FILE };

/* What the command line and the environment said about one setting. Pointers
 * into argv and envp; an empty string counts as not given. */
struct config_given {
	const char *flag;
	const char *env;
	const char *file;
};

static void config_fmt(char *dst, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_fmt(char *dst, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, n, fmt, ap);
	va_end(ap);
}

/* Write len bytes of s into dst, escaping what would break a one-line message
 * (control characters, and with `quoted` the quote and backslash) and cutting
 * what does not fit, since a variable or a file may hold anything. */
static void config_escape(char *dst, size_t n, const char *s, size_t len, bool quoted)
{
	size_t o = 0;
	assert(n >= 16);
	if (quoted)
		dst[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		/* A value may be a whole file; a name or a path is shown in full. */
		if ((quoted && i == CONFIG_QUOTE_CUT) || o + 8 >= n) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(dst + o, n - o, "\\x%02x", c);
		} else if (quoted && (c == '"' || c == '\\')) {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else {
			dst[o++] = (char)c;
		}
	}
	if (quoted)
		dst[o++] = '"';
	dst[o] = '\0';
}

static void config_quote(char *dst, size_t n, const char *s)
{
	config_escape(dst, n, s, strlen(s), true);
}

/* Parse leading decimal digits. Returns -EINVAL when there are none; an
 * overflow is reported only through *overflow, so that "99...9Q" is still
 * called malformed rather than too large. */
static int config_digits(const char **p, uint64_t *out, bool *overflow)
{
	const char *s = *p;
	uint64_t n = 0;
	*overflow = false;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			*overflow = true;
		else
			n = n * 10 + d;
	}
	*p = s;
	*out = n;
	return 0;
}

/* Plain number with an optional one-letter suffix from `suffixes` (any case),
 * whose multiplier is the matching entry of `mult`. -EINVAL or -ERANGE. */
static int config_scaled(const char *s, const char *suffixes, const uint64_t *mult, uint64_t max,
                         uint64_t *out)
{
	uint64_t n, m = 1;
	bool overflow;
	if (config_digits(&s, &n, &overflow) < 0)
		return -EINVAL;
	if (*s != '\0') {
		const char *hit = strchr(suffixes, *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
		if (hit == NULL || s[1] != '\0')
			return -EINVAL;
		m = mult[hit - suffixes];
	}
	if (overflow || n > max / m)
		return -ERANGE;
	*out = n * m;
	return 0;
}

static int config_size(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = {1ull << 10, 1ull << 20, 1ull << 30};
	return config_scaled(s, "kmg", mult, UINT64_MAX, out);
}

static int config_duration(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = {1, 60, 3600};
	return config_scaled(s, "smh", mult, CONFIG_DURATION_MAX, out);
}

static int config_count(const char *s, uint64_t *out)
{
	return config_scaled(s, "", NULL, UINT64_MAX, out);
}

int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int config_parse_size(const char *s, uint64_t *out)
{
	return config_size(s, out) < 0 ? -1 : 0;
}

int config_parse_duration(const char *s, uint64_t *out_seconds)
{
	return config_duration(s, out_seconds) < 0 ? -1 : 0;
}

int config_parse_count(const char *s, uint64_t *out)
{
	return config_count(s, out) < 0 ? -1 : 0;
}

static bool config_has_control(const char *s, bool allow_tab)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f)
			return true;
	}
	return false;
}

/* A shell command may legitimately span lines. */
static int config_check_any(char *value, char *why, size_t whylen)
{
	(void)value;
	(void)why;
	(void)whylen;
	return 0;
}

/* The default for strings: a CR or LF in a host list, a path or a header value
 * would split a log line or an SMTP reply. */
static int config_check_text(char *value, char *why, size_t whylen)
{
	if (!config_has_control(value, true))
		return 0;
	char q[CONFIG_WHY_MAX];
	config_quote(q, sizeof q, value);
	config_fmt(why, whylen, "%s contains a control character", q);
	return -1;
}

/* The token travels in an Authorization header (RFC 6750 2.1), so only
 * visible ASCII can ever match. The value is a secret: never echoed. */
static int config_check_token(char *value, char *why, size_t whylen)
{
	for (const char *p = value; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f) {
			config_fmt(why, whylen,
			           "the value (not shown) may only hold visible ASCII "
			           "characters, no spaces");
			return -1;
		}
	}
	return 0;
}

/* A secret's value never appears in an error: errors end up in logs. */
static int config_check_secret(char *value, char *why, size_t whylen)
{
	if (!config_has_control(value, false))
		return 0;
	config_fmt(why, whylen, "the value (not shown) contains a control character");
	return -1;
}

static int config_port(const char *s, unsigned *out)
{
	uint64_t n;
	if (config_count(s, &n) < 0 || n < 1 || n > 65535)
		return -1;
	*out = (unsigned)n;
	return 0;
}

/* "off", IPv4:port or [IPv6]:port, literals only: the side port must not
 * depend on a resolver, and httpd binds exactly what is written. */
static int config_check_http(char *value, char *why, size_t whylen)
{
	char q[CONFIG_WHY_MAX], host[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];
	const char *port;
	unsigned p;
	int family = AF_INET;

	config_quote(q, sizeof q, value);
	if (strcasecmp(value, "off") == 0) {
		strcpy(value, "off"); /* main and httpd compare with "off" */
		return 0;
	}
	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		if (close == NULL || close[1] != ':')
			goto bad;
		family = AF_INET6;
		if ((size_t)(close - value - 1) >= sizeof host)
			goto bad;
		memcpy(host, value + 1, (size_t)(close - value - 1));
		host[close - value - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(value, ':');
		if (colon == NULL || (size_t)(colon - value) >= sizeof host)
			goto bad;
		memcpy(host, value, (size_t)(colon - value));
		host[colon - value] = '\0';
		port = colon + 1;
	}
	if (inet_pton(family, host, addr) != 1)
		goto bad;
	if (config_port(port, &p) < 0) {
		config_fmt(why, whylen, "%s does not end in a port number (1-65535)", q);
		return -1;
	}
	return 0;
bad:
	config_fmt(why, whylen,
	           "%s is not off or ADDRESS:PORT with an IP address (127.0.0.1:8080, "
	           "[::1]:8080)",
	           q);
	return -1;
}

static bool config_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5321 4.1.2 Domain: dot-separated labels of letters, digits and inner
 * hyphens (RFC 1035 lengths), no trailing dot. */
static bool config_is_domain(const char *s)
{
	size_t len = strlen(s), label = 0;
	if (len == 0 || len > CONFIG_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (config_is_alnum(c) || c == '-') {
			if ((label == 0 && c == '-') || ++label > CONFIG_LABEL_MAX)
				return false;
		} else {
			return false;
		}
	}
	return true;
}

/* RFC 5321 4.1.3 address literals: [192.0.2.1] or [IPv6:2001:db8::1]. */
static bool config_is_address_literal(const char *s)
{
	char inner[INET6_ADDRSTRLEN + 8];
	unsigned char addr[sizeof(struct in6_addr)];
	size_t len = strlen(s);
	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof inner)
		return false;
	memcpy(inner, s + 1, len - 2);
	inner[len - 2] = '\0';
	if (strncasecmp(inner, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, inner + 5, addr) == 1;
	return inet_pton(AF_INET, inner, addr) == 1;
}

/* The name goes into every greeting and Received header: a space or a line
 * break there would corrupt the protocol (RFC 5321 4.1.1.1). */
static int config_check_hostname(char *value, char *why, size_t whylen)
{
	if (value[0] == '\0' || config_is_domain(value) || config_is_address_literal(value))
		return 0;
	char q[CONFIG_WHY_MAX];
	config_quote(q, sizeof q, value);
	config_fmt(why, whylen,
	           "%s is not a domain name or an address literal ([192.0.2.1], "
	           "[IPv6:2001:db8::1])",
	           q);
	return -1;
}

static int config_check_url(char *value, char *why, size_t whylen)
{
	if (config_check_text(value, why, whylen) < 0)
		return -1;
	if (value[0] == '\0' || strncasecmp(value, "http://", 7) == 0 ||
	    strncasecmp(value, "https://", 8) == 0)
		return 0;
	char q[CONFIG_WHY_MAX];
	config_quote(q, sizeof q, value);
	config_fmt(why, whylen, "%s is not an http:// or https:// URL", q);
	return -1;
}

/* "25, 587": comma-separated ports (1-65535), blanks around items ignored. */
static int config_check_port_list(char *value, char *why, size_t whylen)
{
	char q[CONFIG_WHY_MAX];
	config_quote(q, sizeof q, value);
	const char *p = value;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		char item[8];
		size_t n = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t') {
			if (n + 1 < sizeof item)
				item[n] = *p;
			n++;
			p++;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		unsigned port;
		if (n == 0 || n >= sizeof item || (item[n] = '\0', config_port(item, &port) < 0) ||
		    (*p != ',' && *p != '\0')) {
			config_fmt(why, whylen,
			           "%s is not a comma-separated list of port numbers (1-65535)", q);
			return -1;
		}
		if (*p == '\0')
			return 0;
		p++;
	}
}

/* "a, b or c" for errors, "a|b|c" for --help. */
void config_join_choices(char *dst, size_t n, const char *const *choices, const char *sep,
                         const char *last_sep)
{
	size_t o = 0;
	dst[0] = '\0';
	for (size_t i = 0; choices[i] != NULL && o < n; i++) {
		const char *before = i == 0 ? "" : choices[i + 1] == NULL ? last_sep : sep;
		int w = snprintf(dst + o, n - o, "%s%s", before, choices[i]);
		if (w < 0)
			break;
		o += (size_t)w;
	}
}

static int config_choice(const struct config_setting *s, const char *text, char *why, size_t whylen)
{
	for (int i = 0; s->choices[i] != NULL; i++) {
		if (strcasecmp(text, s->choices[i]) == 0)
			return i;
	}
	char q[CONFIG_WHY_MAX], list[CONFIG_WHY_MAX];
	config_quote(q, sizeof q, text);
	config_join_choices(list, sizeof list, s->choices, ", ", " or ");
	config_fmt(why, whylen, "%s is not %s", q, list);
	return -1;
}

static int config_parse_number(const struct config_setting *s, const char *text, uint64_t *out,
                               char *why, size_t whylen)
{
	char q[CONFIG_WHY_MAX];
	int r;
	config_quote(q, sizeof q, text);
	switch (s->kind) {
	case CONFIG_SIZE:
		r = config_size(text, out);
		if (r == -EINVAL)
			config_fmt(why, whylen,
			           "%s is not a size (bytes, or a number with K, M or G)", q);
		else if (r < 0)
			config_fmt(why, whylen, "%s is too large", q);
		break;
	case CONFIG_DURATION:
		r = config_duration(text, out);
		if (r == -EINVAL)
			config_fmt(why, whylen,
			           "%s is not a duration (seconds, or a number with s, m or h)", q);
		else if (r < 0)
			config_fmt(why, whylen, "%s is too long (at most %u seconds)", q,
			           CONFIG_DURATION_MAX);
		break;
	default:
		r = config_count(text, out);
		if (r == -EINVAL)
			config_fmt(why, whylen, "%s is not a whole number", q);
		else if (r < 0)
			config_fmt(why, whylen, "%s is too large", q);
		break;
	}
	if (r == 0 && *out < s->min) {
		config_fmt(why, whylen, "%s is too small (at least %llu%s)", q,
		           (unsigned long long)s->min, s->kind == CONFIG_DURATION ? "s" : "");
		r = -ERANGE;
	}
	return r < 0 ? -1 : 0;
}

/* Parse and validate text (never empty) for setting s. Returns 0, or -1 with
 * the reason in why. On success a string value is owned by *v. */
static int config_parse_value(const struct config_setting *s, const char *text,
                              union config_value *v, char *why, size_t whylen)
{
	char q[CONFIG_WHY_MAX];
	memset(v, 0, sizeof *v);
	switch (s->kind) {
	case CONFIG_STRING:
		if (s->choices != NULL) {
			int i = config_choice(s, text, why, whylen);
			if (i < 0)
				return -1;
			text = s->choices[i];
		}
		if ((v->s = strdup(text)) == NULL) {
			config_fmt(why, whylen, "out of memory");
			return -1;
		}
		if ((s->check ? s->check : config_check_text)(v->s, why, whylen) < 0) {
			free(v->s);
			v->s = NULL;
			return -1;
		}
		return 0;
	case CONFIG_BOOL:
		if (config_parse_bool(text, &v->b) == 0)
			return 0;
		config_quote(q, sizeof q, text);
		config_fmt(why, whylen, "%s is not a boolean (1/true/yes/on or 0/false/no/off)", q);
		return -1;
	case CONFIG_SIZE:
	case CONFIG_DURATION:
	case CONFIG_COUNT:
		return config_parse_number(s, text, &v->u, why, whylen);
	case CONFIG_ENUM:
		if ((v->e = config_choice(s, text, why, whylen)) < 0)
			return -1;
		return 0;
	}
	assert(!"unknown kind");
	return -1;
}

static bool config_value_equal(const struct config_setting *s, const union config_value *a,
                               const union config_value *b)
{
	switch (s->kind) {
	case CONFIG_STRING:
		return strcmp(a->s, b->s) == 0;
	case CONFIG_BOOL:
		return a->b == b->b;
	case CONFIG_ENUM:
		return a->e == b->e;
	default:
		return a->u == b->u;
	}
}

static void config_value_free(const struct config_setting *s, union config_value *v)
{
	if (s->kind == CONFIG_STRING) {
		free(v->s);
		v->s = NULL;
	}
}

/* Move v into its field of cfg (a string's ownership moves too). */
static void config_store(struct config *cfg, const struct config_setting *s, union config_value *v)
{
	char *field = (char *)cfg + s->offset;
	switch (s->kind) {
	case CONFIG_STRING:
		free(*(char **)(void *)field);
		*(char **)(void *)field = v->s;
		v->s = NULL;
		break;
	case CONFIG_BOOL:
		*(bool *)(void *)field = v->b;
		break;
	case CONFIG_ENUM:
		memcpy(field, &v->e, sizeof v->e);
		break;
	default:
		*(uint64_t *)(void *)field = v->u;
		break;
	}
}

static void config_source_name(const struct config_setting *s, enum config_from from, char *dst,
                               size_t n)
{
	switch (from) {
	case CONFIG_FROM_FLAG:
		config_fmt(dst, n, "--%s", s->name);
		break;
	case CONFIG_FROM_FILE:
		config_fmt(dst, n, "%s_FILE", s->env);
		break;
	default:
		config_fmt(dst, n, "%s", s->env);
		break;
	}
}

/* Read SMTPD_X_FILE's file: the whole of it, capped, one trailing "\n" or
 * "\r\n" stripped (editors and `echo` add one; a secret never ends in one). */
static int config_read_file(const struct config_setting *s, const char *path, char **out, char *err,
                            size_t errlen)
{
	char p[CONFIG_WHY_MAX];
	config_escape(p, sizeof p, path, strlen(path), false);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		config_fmt(err, errlen, "%s_FILE: cannot read %s: %s", s->env, p, strerror(errno));
		return -1;
	}
	char *buf = malloc(CONFIG_FILE_MAX + 1);
	size_t len = 0;
	if (buf == NULL) {
		close(fd);
		config_fmt(err, errlen, "%s_FILE: out of memory", s->env);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			config_fmt(err, errlen, "%s_FILE: cannot read %s: %s", s->env, p,
			           strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONFIG_FILE_MAX) {
			config_fmt(err, errlen, "%s_FILE: %s is larger than %zu MiB", s->env, p,
			           CONFIG_FILE_MAX >> 20);
			goto fail;
		}
	}
	close(fd);
	if (memchr(buf, '\0', len) != NULL) {
		config_fmt(err, errlen, "%s_FILE: %s contains a NUL byte", s->env, p);
		free(buf);
		return -1;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
fail:
	close(fd);
	free(buf);
	return -1;
}

static bool config_given_text(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* Resolve, parse, validate and store one setting. *from says where the value
 * came from; *non_default whether it differs from the embedded default. */
static int config_resolve(struct config *cfg, const struct config_setting *s,
                          const struct config_given *g, enum config_from *from, bool *non_default,
                          char *err, size_t errlen)
{
	const char *text = s->def;
	char *owned = NULL, src[CONFIG_SOURCE_MAX], why[CONFIG_WHY_MAX];
	union config_value v, d;

	/* SPEC 1: giving both is an error, even when a flag makes both moot, since
	 * it is a mistake in the deployment either way. */
	if (config_given_text(g->env) && config_given_text(g->file)) {
		config_fmt(err, errlen, "%s and %s_FILE are both set", s->env, s->env);
		return -1;
	}
	*from = CONFIG_FROM_DEFAULT;
	if (config_given_text(g->flag)) {
		text = g->flag;
		*from = CONFIG_FROM_FLAG;
	} else if (config_given_text(g->env)) {
		text = g->env;
		*from = CONFIG_FROM_ENV;
	} else if (config_given_text(g->file)) {
		if (config_read_file(s, g->file, &owned, err, errlen) < 0)
			return -1;
		if (owned[0] != '\0') {
			text = owned;
			*from = CONFIG_FROM_FILE;
		}
	}
	if (text[0] == '\0')
		text = s->def;

	int rc = -1;
	if (config_parse_value(s, text, &v, why, sizeof why) < 0) {
		config_source_name(s, *from, src, sizeof src);
		config_fmt(err, errlen, "%s: %s", src, why);
		goto out;
	}
	if (s->def[0] == '\0' && s->kind == CONFIG_STRING) {
		*non_default = v.s[0] != '\0';
	} else {
		/* The table's own defaults are valid; test_config checks every one. */
		int dr = config_parse_value(s, s->def, &d, why, sizeof why);
		assert(dr == 0);
		(void)dr;
		*non_default = !config_value_equal(s, &v, &d);
		config_value_free(s, &d);
	}
	config_store(cfg, s, &v);
	rc = 0;
out:
	free(owned);
	return rc;
}

const struct config_setting *config_setting_find(const char *name)
{
	for (size_t i = 0; i < config_settings_count; i++) {
		if (strcmp(config_settings[i].name, name) == 0)
			return &config_settings[i];
	}
	return NULL;
}

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
static int config_info_rank(enum config_action a)
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
static int config_scan_args(int argc, char **argv, struct config_given *given,
                            enum config_action *action, char *err, size_t errlen)
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
static void config_scan_env(char **envp, struct config_given *given,
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

/* SPEC 4: the greeting names the host unless SMTPD_HOSTNAME says otherwise. */
static int config_default_hostname(struct config *cfg, char *err, size_t errlen)
{
	char name[CONFIG_DOMAIN_MAX + 2] = "", why[CONFIG_WHY_MAX];
	if (gethostname(name, sizeof name - 1) < 0) {
		config_fmt(err, errlen, "SMTPD_HOSTNAME: cannot get the host's name (%s); set it",
		           strerror(errno));
		return -1;
	}
	if (name[0] == '\0' || config_check_hostname(name, why, sizeof why) < 0) {
		config_fmt(err, errlen,
		           "SMTPD_HOSTNAME: the host's name is not usable in a greeting (%s); "
		           "set it",
		           name[0] == '\0' ? "it is empty" : why);
		return -1;
	}
	char *copy = strdup(name);
	if (copy == NULL) {
		config_fmt(err, errlen, "SMTPD_HOSTNAME: out of memory");
		return -1;
	}
	free(cfg->hostname);
	cfg->hostname = copy;
	return 0;
}

static const struct config_setting *config_find_field(size_t offset)
{
	for (size_t i = 0; i < config_settings_count; i++) {
		if (config_settings[i].offset == offset)
			return &config_settings[i];
	}
	assert(!"no such field");
	return NULL;
}

int config_load(struct config *cfg, int argc, char **argv, char **envp,
                void (*warn)(void *ctx, const char *msg), void *warn_ctx, char *err, size_t errlen)
{
	struct config_given given[CONFIG_SETTINGS_MAX];
	enum config_from from[CONFIG_SETTINGS_MAX];
	bool non_default[CONFIG_SETTINGS_MAX];
	enum config_action action;

	memset(cfg, 0, sizeof *cfg);
	memset(given, 0, sizeof given);
	if (errlen > 0)
		err[0] = '\0';
	int rc = config_scan_args(argc, argv, given, &action, err, errlen);
	cfg->action = action;
	if (config_info_rank(action) > 0) {
		/* Help and version must work whatever the environment holds. */
		memset(given, 0, sizeof given);
		if (errlen > 0)
			err[0] = '\0';
	} else {
		if (rc < 0)
			return -1;
		config_scan_env(envp, given, warn, warn_ctx);
	}

	for (size_t i = 0; i < config_settings_count; i++) {
		if (config_resolve(cfg, &config_settings[i], &given[i], &from[i], &non_default[i],
		                   err, errlen) < 0)
			return -1;
	}
	if (config_info_rank(action) > 0)
		return 0;
	if (cfg->hostname[0] == '\0' && config_default_hostname(cfg, err, errlen) < 0)
		return -1;

	if (cfg->webhook_retry_max < cfg->webhook_retry_min) {
		const struct config_setting *lo = config_find_field(F(webhook_retry_min));
		const struct config_setting *hi = config_find_field(F(webhook_retry_max));
		char lo_src[CONFIG_SOURCE_MAX], hi_src[CONFIG_SOURCE_MAX];
		config_source_name(lo, from[lo - config_settings], lo_src, sizeof lo_src);
		config_source_name(hi, from[hi - config_settings], hi_src, sizeof hi_src);
		config_fmt(err, errlen, "%s (%llus) is shorter than %s (%llus)", hi_src,
		           (unsigned long long)cfg->webhook_retry_max, lo_src,
		           (unsigned long long)cfg->webhook_retry_min);
		return -1;
	}

	/* SPEC 7: a PROXY listener takes headers from trusted peers only; with no
	 * trusted peer it could never be used, which is surely a mistake. */
	if (cfg->proxy_ports[0] != '\0' && cfg->proxy_trusted[0] == '\0') {
		config_fmt(err, errlen,
		           "SMTPD_PROXY_TRUSTED: must list the load balancers' addresses (CIDR "
		           "blocks) when SMTPD_PROXY_PORTS is set");
		return -1;
	}

	/* SPEC 6: settings that only make sense together. */
	if (cfg->tls_key[0] != '\0' && cfg->tls_cert[0] == '\0') {
		config_fmt(err, errlen,
		           "SMTPD_TLS_KEY is set but SMTPD_TLS_CERT, its certificate, "
		           "is not");
		return -1;
	}
	if (cfg->auth == CONFIG_AUTH_ANY && cfg->auth_users_file[0] != '\0') {
		config_fmt(err, errlen,
		           "SMTPD_AUTH: any accepts every credential, so SMTPD_AUTH_USERS_FILE "
		           "would never be read; set one or the other");
		return -1;
	}
	if (cfg->auth != CONFIG_MODE_OFF && cfg->auth != CONFIG_AUTH_ANY &&
	    cfg->auth_users_file[0] == '\0') {
		config_fmt(err, errlen,
		           "SMTPD_AUTH_USERS_FILE: must name the users file when SMTPD_AUTH is %s",
		           cfg->auth == CONFIG_MODE_REQUIRED ? "required" : "optional");
		return -1;
	}
	/* AUTH is only offered under TLS: required without any TLS would refuse
	 * every message. */
	if (cfg->auth == CONFIG_MODE_REQUIRED && !cfg->auth_insecure &&
	    cfg->tls == CONFIG_MODE_OFF && cfg->tls_ports[0] == '\0') {
		config_fmt(err, errlen,
		           "SMTPD_AUTH: required needs TLS (SMTPD_TLS or SMTPD_TLS_PORTS) or "
		           "SMTPD_AUTH_INSECURE=1, or no client could ever send mail");
		return -1;
	}

	/* The webhook posts what the spool holds: nothing to post without it. */
	if (cfg->webhook_url[0] != '\0' && cfg->deliver == CONFIG_DELIVER_DISCARD) {
		config_fmt(err, errlen,
		           "SMTPD_WEBHOOK_URL needs the spool, but SMTPD_DELIVER is discard");
		return -1;
	}

	/* Only now, once everything is known to be well-formed, refuse what this
	 * build cannot do: a typo is reported as a typo first. */
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		if (s->implemented || !non_default[i])
			continue;
		char src[CONFIG_SOURCE_MAX];
		config_source_name(s, from[i], src, sizeof src);
		config_fmt(err, errlen, "%s: not supported by this build yet (%s is planned)", src,
		           s->planned != NULL ? s->planned : "it");
		return -1;
	}
	return 0;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < config_settings_count; i++) {
		if (config_settings[i].kind != CONFIG_STRING)
			continue;
		char **p = (char **)(void *)((char *)cfg + config_settings[i].offset);
		free(*p);
		*p = NULL;
	}
}
