/* natspub_build: the pure parts of NATS publishing (natspub.h): the server
 * list, header values, the size bound checked against max_payload. No libnats,
 * no libuv, no I/O. */
#ifndef MAILPORT_NATSPUB_BUILD_H
#define MAILPORT_NATSPUB_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most servers in SMTPD_NATS_URL. */
#define NATSPUB_MAX_URLS 32

/* "nats://a:4222, tls://b:4222": comma-separated nats:// or tls:// URLs, blanks
 * around items ignored. Fills urls[] with malloc'ed copies (at most
 * NATSPUB_MAX_URLS) and *n. Returns 0; or -1 with a message in err (nothing to
 * free): an empty item, another scheme, no host, too many. An empty list is 0
 * URLs. */
int natspub_urls_parse(const char *list, char **urls, size_t *n, char *err, size_t errlen);
void natspub_urls_free(char **urls, size_t n);
/* Whether any URL is tls:// (then SMTPD_NATS_CA applies). */
bool natspub_urls_tls(char *const *urls, size_t n);

/* The URL without its user information ("nats://u:p@h:4222" -> "nats://h:4222"),
 * for /status and the log: at most len - 1 bytes into out. */
void natspub_url_redact(const char *url, char *out, size_t len);

/* A header value: a malloc'ed copy of s with every control character (and
 * DEL) made '?', so CR/LF can never end the header early. NULL: no memory. */
char *natspub_header_value(const char *s);

/* The most bytes a message's NATS headers and mailport's trace headers can
 * add to SMTPD_MAX_MESSAGE_SIZE, with at most max_rcpt recipients: the server's
 * max_payload must be at least max_message_size + this. */
uint64_t natspub_overhead(uint64_t max_rcpt);

#endif
