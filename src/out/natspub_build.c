/* natspub_build: the pure parts of NATS publishing (natspub.h): the server
 * list, header values and the size bound checked against max_payload. No
 * libnats, no I/O. */
#include "natspub_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a NATS message adds to the stored bytes, bounded from above:
 *   - "NATS/1.0\r\n" and the final "\r\n", Nats-Msg-Id (an id of at most 255
 *     bytes), Mailport-Mail-From (a path of at most 256 octets, RFC 5321
 *     4.5.3.1.3, each maybe escaped to two), the envelope's fixed fields (HELO,
 *     addresses, TLS, PROXY, AUTH, rspamd's verdict): NATSPUB_FIXED;
 *   - per recipient, its address in the envelope and in a Mailport-Rcpt-To
 *     header, each at most 2 x 256 bytes with quoting: NATSPUB_PER_RCPT.
 * The trace headers (Return-Path, Received) mailport writes ahead of the
 * message count in NATSPUB_FIXED too. */
#define NATSPUB_FIXED    (16u * 1024)
#define NATSPUB_PER_RCPT 1024u

uint64_t natspub_overhead(uint64_t max_rcpt)
{
	if (max_rcpt > (UINT64_MAX - NATSPUB_FIXED) / NATSPUB_PER_RCPT)
		return UINT64_MAX;
	return NATSPUB_FIXED + max_rcpt * NATSPUB_PER_RCPT;
}

void natspub_urls_free(char **urls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(urls[i]);
		urls[i] = NULL;
	}
}

static bool natspub_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

int natspub_urls_parse(const char *list, char **urls, size_t *n, char *err, size_t errlen)
{
	*n = 0;
	const char *p = list ? list : "";
	while (natspub_is_blank(*p))
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		while (natspub_is_blank(*p))
			p++;
		const char *start = p;
		while (*p != '\0' && *p != ',')
			p++;
		const char *end = p;
		while (end > start && natspub_is_blank(end[-1]))
			end--;
		size_t len = (size_t)(end - start);
		const char *why = NULL;
		size_t scheme = 0;
		if (len == 0)
			why = "an empty item";
		else if (len >= 7 && strncasecmp(start, "nats://", 7) == 0)
			scheme = 7;
		else if (len >= 6 && strncasecmp(start, "tls://", 6) == 0)
			scheme = 6;
		else
			why = "not a nats:// or tls:// URL";
		if (why == NULL && (len == scheme || start[scheme] == ':' || start[scheme] == '/'))
			why = "no host";
		for (size_t i = 0; why == NULL && i < len; i++)
			if ((unsigned char)start[i] <= ' ' || start[i] == 0x7f)
				why = "a blank or control character inside a URL";
		if (why == NULL && *n == NATSPUB_MAX_URLS)
			why = "too many URLs";
		if (why != NULL) {
			/* Not the item itself: it may carry a password. */
			snprintf(err, errlen, "item %zu: %s", *n + 1, why);
			natspub_urls_free(urls, *n);
			*n = 0;
			return -1;
		}
		urls[*n] = strndup(start, len);
		if (urls[*n] == NULL) {
			snprintf(err, errlen, "out of memory");
			natspub_urls_free(urls, *n);
			*n = 0;
			return -1;
		}
		(*n)++;
		if (*p == '\0')
			return 0;
		p++; /* the comma */
	}
}

bool natspub_urls_tls(char *const *urls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(urls[i], "tls://", 6) == 0)
			return true;
	return false;
}

void natspub_url_redact(const char *url, char *out, size_t len)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	/* The user information ends at the last '@' before the path. */
	const char *end = host + strcspn(host, "/?#");
	const char *at = NULL;
	for (const char *p = host; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL) {
		snprintf(out, len, "%s", url);
		return;
	}
	snprintf(out, len, "%.*s%s", (int)(host - url), url, at + 1);
}

char *natspub_header_value(const char *s)
{
	char *v = strdup(s ? s : "");
	if (v == NULL)
		return NULL;
	for (char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return v;
}
