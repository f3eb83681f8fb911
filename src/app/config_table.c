/* config_table: the settings table config_settings[] that drives config.c's
 * parser and config_doc.c's printers, with its lists of choices (split from
 * config.c, which passed 1,000 lines). Adding a setting means adding a row
 * here and its field in struct config (config.h). */
#include "config_priv.h"

static const char *const config_modes[] = {"off", "optional", "required", NULL};
static const char *const config_auth_modes[] = {"off", "optional", "required", "any", NULL};
static const char *const config_bare_lfs[] = {"normalize", "reject", NULL};
static const char *const config_delivers[] = {"maildir", "discard", NULL};
static const char *const config_webhook_formats[] = {"json", "raw", "parsed", NULL};
static const char *const config_log_formats[] = {"text", "json", NULL};
static const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_tls_versions[] = {"TLSv1.2", "TLSv1.3", NULL};
/* SPEC 8: rspamd unreachable. */
static const char *const config_rspamd_fails[] = {"tempfail", "accept", NULL};
_Static_assert(sizeof(enum config_rspamd_fail) == sizeof(int) && CONFIG_RSPAMD_ACCEPT == 1,
               "choices follow the enum");
/* SPEC 9: when the 250 comes. */
static const char *const config_nats_modes[] = {"forward", "sync", NULL};
_Static_assert(sizeof(enum config_nats_mode) == sizeof(int) && CONFIG_NATS_SYNC == 1,
               "choices follow the enum");

/* ENUM settings store the index of the choice; the lists above are written in
 * the order of the enums in config.h, and the enums must be int-sized. */
_Static_assert(sizeof(enum config_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_bare_lf) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_deliver) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_webhook_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(CONFIG_MODE_REQUIRED == 2 && CONFIG_BARE_LF_REJECT == 1 &&
                   CONFIG_DELIVER_DISCARD == 1 && CONFIG_WEBHOOK_RAW == 1 &&
                   CONFIG_WEBHOOK_PARSED == 2 && CONFIG_LOG_JSON == 1 && CONFIG_LOG_ERROR == 3,
               "choices follow the enums");

/* One row per setting reads better packed than one field a line, hence
 * clang-format off. */
// clang-format off
const struct config_setting config_settings[] = {
	/* SPEC 2: endpoints (validated by the endpoint module). */
	{.name = "hosts", .env = "SMTPD_HOSTS", .kind = CONFIG_STRING, .offset = F(hosts),
	 .def = "127.0.0.1", .image_def = "0.0.0.0", .metavar = "LIST",
	 .help = "Comma-separated IPv4 and IPv6 addresses and host names to listen on; "
		 "* is every local address, 0.0.0.0 and :: the ANY addresses."},
	{.name = "ports", .env = "SMTPD_PORTS", .kind = CONFIG_STRING, .offset = F(ports),
	 .def = "2525", .metavar = "LIST",
	 .help = "Comma-separated ports, matched to the SMTPD_HOSTS items by position; "
		 "2525:3535 gives one host item two ports."},

	/* SPEC 3: HTTP side port. */
	{.name = "http", .env = "SMTPD_HTTP", .kind = CONFIG_STRING, .offset = F(http),
	 .def = "127.0.0.1:8080", .image_def = "0.0.0.0:8080", .metavar = "ADDRESS:PORT|off",
	 .check = config_check_http,
	 .help = "Address and port of the HTTP side port (health, status, metrics, messages), "
		 "or off."},
	{.name = "http-token", .env = "SMTPD_HTTP_TOKEN", .kind = CONFIG_STRING,
	 .offset = F(http_token), .def = "", .metavar = "TOKEN", .secret = true,
	 .check = config_check_token,
	 .help = "Bearer token that /messages and /metrics require; health and status stay open."},
	{.name = "http-allowed-hosts", .env = "SMTPD_HTTP_ALLOWED_HOSTS", .kind = CONFIG_STRING,
	 .offset = F(http_allowed_hosts), .def = "", .metavar = "LIST",
	 .help = "Without SMTPD_HTTP_TOKEN, the side port answers only requests whose Host is an IP "
	         "address, localhost, or a name in this comma list (*.example.org for subdomains); "
	         "others get 403, so a web page cannot reach it by DNS rebinding. Health routes "
	         "never check."},

	/* Issue 17: the web UI, live events, retention. */
	{.name = "http-ui", .env = "SMTPD_HTTP_UI", .kind = CONFIG_BOOL, .offset = F(http_ui),
	 .def = "on",
	 .help = "Serve the web UI (a mail catcher's inbox) at / of the HTTP side port; off: "
	         "404. /messages/{id}/html loads no remote image unless asked with ?remote=1."},
	{.name = "http-max-event-clients", .env = "SMTPD_HTTP_MAX_EVENT_CLIENTS",
	 .kind = CONFIG_COUNT, .offset = F(http_max_event_clients), .def = "64", .min = 1,
	 .help = "Most /events (Server-Sent Events) streams at once (10000 at most); more "
	         "get 503."},
	{.name = "retention-max-messages", .env = "SMTPD_RETENTION_MAX_MESSAGES",
	 .kind = CONFIG_COUNT, .offset = F(retention_max_messages), .def = "0",
	 .help = "Keep at most this many messages in the spool, removing the oldest first "
	         "(0: no limit)."},
	{.name = "retention-max-age", .env = "SMTPD_RETENTION_MAX_AGE", .kind = CONFIG_DURATION,
	 .offset = F(retention_max_age), .def = "0",
	 .help = "Remove messages older than this from the spool, oldest first (0: keep forever)."},

	/* SPEC 4: SMTP. */
	{.name = "hostname", .env = "SMTPD_HOSTNAME", .kind = CONFIG_STRING, .offset = F(hostname),
	 .def = "", .def_text = "the host's name", .metavar = "NAME",
	 .check = config_check_hostname,
	 .help = "Name used in the greeting, the EHLO reply and the Received header."},
	{.name = "max-message-size", .env = "SMTPD_MAX_MESSAGE_SIZE", .kind = CONFIG_SIZE,
	 .offset = F(max_message_size), .def = "26214400", .min = 1,
	 .help = "Largest message accepted, advertised in the EHLO reply as SIZE."},
	{.name = "max-recipients", .env = "SMTPD_MAX_RECIPIENTS", .kind = CONFIG_COUNT,
	 .offset = F(max_recipients), .def = "100", .min = 1,
	 .help = "Most recipients of one message; more get 452 4.5.3."},
	{.name = "max-line-length", .env = "SMTPD_MAX_LINE_LENGTH", .kind = CONFIG_COUNT,
	 .offset = F(max_line_length), .def = "0",
	 .help = "Longest text line of a message, in octets with its CRLF (RFC 5321 says 1000): "
	         "a longer line makes the message refused with 500 5.5.6 at its end. 0: no limit "
	         "of its own; lines of any length are stored unchanged, within "
	         "SMTPD_MAX_MESSAGE_SIZE. Command lines stay limited to 512 octets."},
	{.name = "max-connections", .env = "SMTPD_MAX_CONNECTIONS", .kind = CONFIG_COUNT,
	 .offset = F(max_connections), .def = "1000", .min = 1,
	 .help = "Most simultaneous SMTP connections; more get 421 4.7.0 and are closed."},
	{.name = "max-connections-per-client", .env = "SMTPD_MAX_CONNECTIONS_PER_CLIENT",
	 .kind = CONFIG_COUNT, .offset = F(max_connections_per_client), .def = "50", .min = 1,
	 .help = "Most simultaneous SMTP connections from one client address."},
	{.name = "command-timeout", .env = "SMTPD_COMMAND_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(command_timeout), .def = "300", .min = 1,
	 .help = "Time for one whole command line, counted from the previous reply (a client "
		 "that trickles a command byte by byte gets no more); then 421 4.4.2."},
	{.name = "data-timeout", .env = "SMTPD_DATA_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(data_timeout), .def = "600", .min = 1,
	 .help = "Longest wait for message data before 421 4.4.2; the deadline only moves "
		 "as fast as SMTPD_MIN_DATA_RATE allows."},
	{.name = "min-data-rate", .env = "SMTPD_MIN_DATA_RATE", .kind = CONFIG_SIZE,
	 .offset = F(min_data_rate), .def = "500", .min = 1,
	 .help = "Bytes per second a client must keep up in DATA/BDAT: each read of N bytes "
		 "moves the data deadline N/rate seconds later, never beyond "
		 "SMTPD_DATA_TIMEOUT from now (as Postfix's smtpd_min_data_rate)."},
	{.name = "greet-delay", .env = "SMTPD_GREET_DELAY", .kind = CONFIG_DURATION,
	 .offset = F(greet_delay), .def = "0",
	 .help = "How long the greeting is held back; a client that talks first is "
		 "disconnected."},
	{.name = "bare-lf", .env = "SMTPD_BARE_LF", .kind = CONFIG_ENUM, .offset = F(bare_lf),
	 .def = "normalize", .choices = config_bare_lfs,
	 .help = "A bare LF in message data is a line end (normalize) or makes the message "
		 "refused with 550 5.5.2 (reject)."},

	/* SPEC 5: storage and delivery. */
	{.name = "spool", .env = "SMTPD_SPOOL", .kind = CONFIG_STRING, .offset = F(spool),
	 .def = "./spool", .image_def = "/var/spool/mailport", .metavar = "DIR",
	 .help = "Maildir where accepted messages are stored; created when missing."},
	{.name = "spool-min-free", .env = "SMTPD_SPOOL_MIN_FREE", .kind = CONFIG_STRING,
	 .offset = F(spool_min_free), .def = "100M", .metavar = "SIZE",
	 .check = config_check_min_free,
	 .help = "Free space the spool keeps (K/M/G, or a percentage of its filesystem such as "
		 "2%; 0: none): below it /readyz is 503 and MAIL gets 452 4.3.1."},
	{.name = "deliver", .env = "SMTPD_DELIVER", .kind = CONFIG_ENUM, .offset = F(deliver),
	 .def = "maildir", .choices = config_delivers,
	 .help = "Store each message in the spool, or discard it (for benchmarks and sinks)."},
	{.name = "filter", .env = "SMTPD_FILTER", .kind = CONFIG_STRING, .offset = F(filter),
	 .def = "", .metavar = "COMMAND", .check = config_check_any,
	 .help = "Command run by /bin/sh -c with each message on stdin before it is accepted: "
		 "exit 0 accepts, 75 defers, anything else refuses."},
	{.name = "filter-timeout", .env = "SMTPD_FILTER_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(filter_timeout), .def = "60", .min = 1,
	 .help = "A filter still running after this long is killed and the message gets "
		 "451 4.3.0."},
	{.name = "webhook-url", .env = "SMTPD_WEBHOOK_URL", .kind = CONFIG_STRING,
	 .offset = F(webhook_url), .def = "", .metavar = "URL", .check = config_check_url,
	 .help = "http:// or https:// URL every stored message is POSTed to after its 250 "
	         "(not with SMTPD_NATS_URL: they share one queue)."},
	{.name = "webhook-format", .env = "SMTPD_WEBHOOK_FORMAT", .kind = CONFIG_ENUM,
	 .offset = F(webhook_format), .def = "json", .choices = config_webhook_formats,
	 .help = "Post JSON with the envelope and the base64 message, the raw message, or parsed JSON (text, html, attachments)."},
	{.name = "webhook-secret", .env = "SMTPD_WEBHOOK_SECRET", .kind = CONFIG_STRING,
	 .offset = F(webhook_secret), .def = "", .metavar = "SECRET", .secret = true,
	 .check = config_check_secret,
	 .help = "Key of the X-Mailport-Signature HMAC-SHA256 header."},
	{.name = "webhook-timeout", .env = "SMTPD_WEBHOOK_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(webhook_timeout), .def = "30", .min = 1,
	 .help = "How long one webhook request may take."},
	{.name = "webhook-keep", .env = "SMTPD_WEBHOOK_KEEP", .kind = CONFIG_BOOL,
	 .offset = F(webhook_keep), .def = "1",
	 .help = "Keep delivered messages in cur/ (1) or remove them (0)."},
	{.name = "webhook-retry-min", .env = "SMTPD_WEBHOOK_RETRY_MIN", .kind = CONFIG_DURATION,
	 .offset = F(webhook_retry_min), .def = "30", .min = 1,
	 .help = "First delay before a failed webhook request is retried; it doubles each time."},
	{.name = "webhook-retry-max", .env = "SMTPD_WEBHOOK_RETRY_MAX", .kind = CONFIG_DURATION,
	 .offset = F(webhook_retry_max), .def = "1h", .min = 1,
	 .help = "Longest delay between webhook retries."},
	{.name = "webhook-max-age", .env = "SMTPD_WEBHOOK_MAX_AGE", .kind = CONFIG_DURATION,
	 .offset = F(webhook_max_age), .def = "72h", .min = 1,
	 .help = "A message not delivered after this long is moved to failed/."},
	{.name = "webhook-concurrency", .env = "SMTPD_WEBHOOK_CONCURRENCY", .kind = CONFIG_COUNT,
	 .offset = F(webhook_concurrency), .def = "4", .min = 1,
	 .help = "Most webhook requests in flight at once."},
	{.name = "webhook-sync", .env = "SMTPD_WEBHOOK_SYNC", .kind = CONFIG_BOOL,
	 .offset = F(webhook_sync), .def = "0",
	 .help = "Post before answering the end of data: 250 only when the webhook took it."},

	/* SPEC 6: TLS and AUTH. */
	{.name = "tls", .env = "SMTPD_TLS", .kind = CONFIG_ENUM, .offset = F(tls), .def = "off",
	 .choices = config_modes,
	 .help = "STARTTLS: off, offered (optional), or needed before MAIL and AUTH (required)."},
	{.name = "tls-cert", .env = "SMTPD_TLS_CERT", .kind = CONFIG_STRING, .offset = F(tls_cert),
	 .def = "", .def_text = "self-signed", .metavar = "FILE",
	 .help = "PEM certificate chain (leaf first); reloaded on SIGHUP and when the file "
		 "changes. Without it, TLS uses a self-signed certificate made at start-up."},
	{.name = "tls-key", .env = "SMTPD_TLS_KEY", .kind = CONFIG_STRING, .offset = F(tls_key),
	 .def = "", .def_text = "in SMTPD_TLS_CERT", .metavar = "FILE",
	 .help = "PEM private key (RSA or ECDSA, not encrypted) of the certificate."},
	{.name = "tls-ports", .env = "SMTPD_TLS_PORTS", .kind = CONFIG_STRING,
	 .offset = F(tls_ports), .def = "", .metavar = "LIST", .check = config_check_port_list,
	 .help = "Comma-separated ports whose listeners speak TLS from the first byte "
		 "(RFC 8314, e.g. 465); each must be a port of SMTPD_PORTS."},
	{.name = "tls-ciphers", .env = "SMTPD_TLS_CIPHERS", .kind = CONFIG_STRING,
	 .offset = F(tls_ciphers), .def = "", .def_text = "Mozilla intermediate", .metavar = "LIST",
	 .help = "OpenSSL cipher list for TLS 1.2; the default is Mozilla's intermediate list "
	         "(ECDHE with AES-GCM or ChaCha20-Poly1305 only). TLS 1.3 keeps OpenSSL's suites."},
	{.name = "tls-min-version", .env = "SMTPD_TLS_MIN_VERSION", .kind = CONFIG_STRING,
	 .offset = F(tls_min_version), .def = "TLSv1.2", .choices = config_tls_versions,
	 .help = "Oldest TLS version accepted."},
	{.name = "auth", .env = "SMTPD_AUTH", .kind = CONFIG_ENUM, .offset = F(auth), .def = "off",
	 .choices = config_auth_modes,
	 .help = "SMTP AUTH PLAIN and LOGIN: off, offered (optional), needed before MAIL "
		 "(required), or offered with every credential accepted, for test catchers (any; "
		 "not with SMTPD_AUTH_USERS_FILE)."},
	{.name = "auth-users-file", .env = "SMTPD_AUTH_USERS_FILE", .kind = CONFIG_STRING,
	 .offset = F(auth_users_file), .def = "", .metavar = "FILE",
	 .help = "File of user:hash lines, crypt(3) hashes (yescrypt, SHA-512, bcrypt); "
		 "reloaded on SIGHUP."},
	{.name = "auth-insecure", .env = "SMTPD_AUTH_INSECURE", .kind = CONFIG_BOOL,
	 .offset = F(auth_insecure), .def = "0",
	 .help = "Offer PLAIN and LOGIN without TLS too."},
	{.name = "auth-max-failures", .env = "SMTPD_AUTH_MAX_FAILURES", .kind = CONFIG_COUNT,
	 .offset = F(auth_max_failures), .def = "5",
	 .help = "Failed AUTH attempts from one client address (an IPv6 client's /64) within 15 "
	         "minutes, over all its connections, before AUTH from it is answered 454 4.7.0 for "
	         "1 minute, doubling each time up to 1 hour. 0: no limit."},

	/* SPEC 8: inbound recipient policy (policy.h, policy_load.h). */
	{.name = "domains", .env = "SMTPD_DOMAINS", .kind = CONFIG_STRING, .offset = F(domains),
	 .def = "", .def_text = "every domain", .metavar = "LIST", .check = config_check_domains,
	 .help = "Comma-separated domains mail is accepted for; *.example.org is every subdomain "
	         "of example.org but not example.org itself (list both). A recipient in another "
	         "domain gets 554 5.7.1 Relay access denied unless the session authenticated."},
	{.name = "recipients-file", .env = "SMTPD_RECIPIENTS_FILE", .kind = CONFIG_STRING,
	 .offset = F(recipients_file), .def = "", .metavar = "FILE",
	 .help = "File of the recipients that exist: one address or @domain a line, # comments, "
	         "case-insensitive. Any other recipient in a served domain gets 550 5.1.1 User "
	         "unknown, from authenticated sessions too. Reloaded on SIGHUP and when the file "
	         "changes; a bad file keeps the old list."},

	/* SPEC 8: rspamd's verdict on every message (rspamd.h). */
	{.name = "rspamd-url", .env = "SMTPD_RSPAMD_URL", .kind = CONFIG_STRING,
	 .offset = F(rspamd_url), .def = "", .metavar = "URL", .check = config_check_url,
	 .help = "rspamd's normal worker (http://rspamd:11333): every message is checked at "
	         "/checkv2 at the end of its data and acted on (reject 554 5.7.1, soft reject and "
	         "greylist 451 4.7.1, headers), its verdict stored in the envelope. Off when empty."},
	{.name = "rspamd-timeout", .env = "SMTPD_RSPAMD_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(rspamd_timeout), .def = "20", .min = 1,
	 .help = "Longest rspamd check of one message, waiting for a free connection included; "
	         "then SMTPD_RSPAMD_FAIL decides."},
	{.name = "rspamd-fail", .env = "SMTPD_RSPAMD_FAIL", .kind = CONFIG_ENUM,
	 .offset = F(rspamd_fail), .def = "tempfail", .choices = config_rspamd_fails,
	 .help = "When rspamd cannot answer: 451 4.7.1 (tempfail), or store the message with "
	         "\"verdict\": null and log a warning (accept)."},
	{.name = "rspamd-concurrency", .env = "SMTPD_RSPAMD_CONCURRENCY", .kind = CONFIG_COUNT,
	 .offset = F(rspamd_concurrency), .def = "16", .min = 1,
	 .help = "Most rspamd checks in flight at once; more messages wait in a queue (at most "
	         "one per connection, so SMTPD_MAX_CONNECTIONS bounds it)."},

	/* SPEC 9: NATS JetStream (natspub.h). */
	{.name = "nats-url", .env = "SMTPD_NATS_URL", .kind = CONFIG_STRING,
	 .offset = F(nats_url), .def = "", .metavar = "LIST", .check = config_check_nats_urls,
	 .help = "Comma-separated nats:// or tls:// server URLs (user:password@ or a token in "
	         "them; the client learns the rest of the cluster): every message is published "
	         "into a JetStream stream. Off when empty; not with SMTPD_WEBHOOK_URL (exit 2). A "
	         "server max_payload below SMTPD_MAX_MESSAGE_SIZE plus headers: exit 2 at start, "
	         "/readyz 503 when found later."},
	{.name = "nats-subject", .env = "SMTPD_NATS_SUBJECT", .kind = CONFIG_STRING,
	 .offset = F(nats_subject), .def = "mailport.messages", .metavar = "SUBJECT",
	 .help = "Subject the messages are published on."},
	{.name = "nats-stream", .env = "SMTPD_NATS_STREAM", .kind = CONFIG_STRING,
	 .offset = F(nats_stream), .def = "MAILPORT", .metavar = "NAME",
	 .help = "The JetStream stream that must capture SMTPD_NATS_SUBJECT; mailport never "
	         "creates or changes it, and /readyz is 503 naming it until it exists."},
	{.name = "nats-mode", .env = "SMTPD_NATS_MODE", .kind = CONFIG_ENUM,
	 .offset = F(nats_mode), .def = "forward", .choices = config_nats_modes,
	 .help = "forward: stored in the spool and answered 250, then published with the "
	         "webhook's retries and marked delivered; sync: 250 only after JetStream's "
	         "acknowledgement, else 451 4.3.0 (a late acknowledgement can still have "
	         "stored it)."},
	{.name = "nats-creds", .env = "SMTPD_NATS_CREDS", .kind = CONFIG_STRING,
	 .offset = F(nats_creds), .def = "", .metavar = "FILE",
	 .help = "NATS .creds file (user JWT and NKey seed)."},
	{.name = "nats-ca", .env = "SMTPD_NATS_CA", .kind = CONFIG_STRING,
	 .offset = F(nats_ca), .def = "", .metavar = "FILE",
	 .help = "PEM CA certificates that verify tls:// servers (default: the system's)."},
	{.name = "nats-timeout", .env = "SMTPD_NATS_TIMEOUT", .kind = CONFIG_DURATION,
	 .offset = F(nats_timeout), .def = "10", .min = 1,
	 .help = "Longest wait for JetStream's acknowledgement of one publish; in sync mode the "
	         "message then gets 451 4.3.0."},

	/* SPEC 7: operations. */
	{.name = "shutdown-grace", .env = "SMTPD_SHUTDOWN_GRACE", .kind = CONFIG_DURATION,
	 .offset = F(shutdown_grace), .def = "25",
	 .help = "On SIGTERM, how long a session inside a transaction may take to finish it "
		 "(0: none)."},
	{.name = "proxy-ports", .env = "SMTPD_PROXY_PORTS", .kind = CONFIG_STRING,
	 .offset = F(proxy_ports), .def = "", .metavar = "LIST",
	 .check = config_check_port_list,
	 .help = "Comma-separated ports whose listeners require a PROXY protocol v1 or v2 "
		 "header (within 5 s, before the greeting) from a peer in SMTPD_PROXY_TRUSTED."},
	{.name = "proxy-trusted", .env = "SMTPD_PROXY_TRUSTED", .kind = CONFIG_STRING,
	 .offset = F(proxy_trusted), .def = "", .metavar = "CIDRS",
	 .check = config_check_cidrs,
	 .help = "Comma-separated CIDR blocks (10.0.0.0/8, 2001:db8::/32) allowed to send a "
		 "PROXY header; connections from other peers to SMTPD_PROXY_PORTS are closed."},
	{.name = "log-format", .env = "SMTPD_LOG_FORMAT", .kind = CONFIG_ENUM,
	 .offset = F(log_format), .def = "text", .choices = config_log_formats,
	 .help = "Log lines on stderr as text or as one JSON object each."},
	{.name = "log-level", .env = "SMTPD_LOG_LEVEL", .kind = CONFIG_ENUM, .offset = F(log_level),
	 .def = "info", .choices = config_log_levels,
	 .help = "Least important events logged."},
};
// clang-format on

const size_t config_settings_count = sizeof config_settings / sizeof config_settings[0];
_Static_assert(sizeof config_settings / sizeof config_settings[0] <= CONFIG_SETTINGS_MAX,
               "raise CONFIG_SETTINGS_MAX");
