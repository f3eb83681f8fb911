/* httpd_host: which Host a side port without a token answers (SPEC 3).
 *
 * A browser that visits an attacker's page can be made to send requests to
 * 127.0.0.1:8080 under the attacker's own name (DNS rebinding); such a request
 * carries that name in Host. So without SMTPD_HTTP_TOKEN only a Host that is an
 * IP literal, localhost, or a name the operator listed is answered. Kubernetes
 * probes and Prometheus send the pod's IP, which passes. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"

/* Host without its port: "[::1]:8080" -> "::1", "a.example:80" -> "a.example",
 * a trailing dot dropped. False when it does not fit or is malformed. */
static bool httpd_host_name(const char *host, char *out, size_t outlen)
{
	size_t n;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return false;
		host++;
		n = (size_t)(end - host);
	} else {
		n = strcspn(host, ":");
	}
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, host, n);
	out[n] = '\0';
	if (out[n - 1] == '.')
		out[n - 1] = '\0';
	return out[0] != '\0';
}

/* "*.example.org" matches any name ending in ".example.org"; anything else
 * matches itself, both without regard to case. */
static bool httpd_host_match(const char *name, const char *pat, size_t plen)
{
	if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
		size_t nlen = strlen(name), slen = plen - 1; /* ".example.org" */
		return nlen > slen && strncasecmp(name + nlen - slen, pat + 1, slen) == 0;
	}
	return strlen(name) == plen && strncasecmp(name, pat, plen) == 0;
}

bool httpd_host_allowed(const char *host, const char *allowed)
{
	/* No Host (HTTP/1.0): not a browser, nothing to rebind. */
	if (host == NULL)
		return true;
	char name[256];
	unsigned char addr[sizeof(struct in6_addr)];
	if (!httpd_host_name(host, name, sizeof name))
		return false;
	if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1 ||
	    strcasecmp(name, "localhost") == 0)
		return true;
	for (const char *p = allowed ? allowed : ""; *p != '\0';) {
		p += strspn(p, " ,");
		size_t len = strcspn(p, ",");
		size_t trimmed = len;
		while (trimmed > 0 && p[trimmed - 1] == ' ')
			trimmed--;
		if (trimmed > 0 && httpd_host_match(name, p, trimmed))
			return true;
		p += len;
	}
	return false;
}
