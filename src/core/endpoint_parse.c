/* endpoint_parse: address literals for endpoint.c (SPEC section 2): IP
 * literals with their zones, hostname syntax, port numbers, the identity of an
 * address for the duplicate and conflict checks, the text form of an address
 * and of a struct endpoint, and SMTPD_HTTP's "address:port"
 * (endpoint_parse_hostport).
 *
 * Pure, like endpoint.c: zone names come through struct endpoint_env; only
 * string functions and inet_pton/inet_ntop are used here. */
#include "endpoint_priv.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

static bool endpoint_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static bool endpoint_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool endpoint_is_alnum(char c)
{
	return endpoint_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

struct endpoint_slice endpoint_trim(struct endpoint_slice s)
{
	while (s.n > 0 && endpoint_is_blank(s.p[0])) {
		s.p++;
		s.n--;
	}
	while (s.n > 0 && endpoint_is_blank(s.p[s.n - 1]))
		s.n--;
	return s;
}

static bool endpoint_all_digits(struct endpoint_slice s)
{
	for (size_t i = 0; i < s.n; i++)
		if (!endpoint_is_digit(s.p[i]))
			return false;
	return s.n > 0;
}

/* RFC 1123 section 2.1 host name syntax: dot-separated labels of letters,
 * digits and hyphens, neither starting nor ending with a hyphen; one trailing
 * dot (the root) allowed. The last label must not be all digits (RFC 3696
 * section 2), which keeps "127.1" or "1.2.3.256" from reaching the resolver,
 * where inet_aton(3) would quietly turn them into addresses. */
bool endpoint_is_hostname(struct endpoint_slice s)
{
	if (s.n > 0 && s.p[s.n - 1] == '.')
		s.n--;
	if (s.n == 0 || s.n > ENDPOINT_NAME_MAX)
		return false;
	size_t start = 0;
	struct endpoint_slice label = {0};
	for (size_t i = 0; i <= s.n; i++) {
		if (i < s.n && s.p[i] != '.') {
			if (!endpoint_is_alnum(s.p[i]) && s.p[i] != '-')
				return false;
			continue;
		}
		label.p = s.p + start;
		label.n = i - start;
		if (label.n == 0 || label.n > ENDPOINT_LABEL_MAX)
			return false;
		if (label.p[0] == '-' || label.p[label.n - 1] == '-')
			return false;
		start = i + 1;
	}
	return !endpoint_all_digits(label);
}

/* Resolve the zone of a link-local literal to an interface index. A numeric
 * zone is taken as an index; with an env it must name an interface too, so a
 * typo fails here rather than at bind time. Returns 0 when there is no such
 * interface. */
static unsigned endpoint_zone_index(struct endpoint_slice zone, const struct endpoint_env *env)
{
	char name[IF_NAMESIZE];
	if (endpoint_all_digits(zone)) {
		unsigned long v = 0;
		for (size_t i = 0; i < zone.n; i++) {
			v = v * 10 + (unsigned long)(zone.p[i] - '0');
			if (v > UINT32_MAX)
				return 0;
		}
		if (v != 0 && env != NULL && env->ifname != NULL &&
		    env->ifname(env->ctx, (unsigned)v, name) == NULL)
			return 0;
		return (unsigned)v;
	}
	if (env == NULL || env->ifindex == NULL || zone.n >= sizeof name)
		return 0;
	memcpy(name, zone.p, zone.n);
	name[zone.n] = '\0';
	return env->ifindex(env->ctx, name);
}

static enum endpoint_lit endpoint_parse_v6(struct endpoint_slice s, const struct endpoint_env *env,
                                           struct sockaddr_storage *ss)
{
	struct endpoint_slice zone = {0};
	const char *pct = memchr(s.p, '%', s.n);
	if (pct != NULL) {
		zone.p = pct + 1;
		zone.n = s.n - (size_t)(zone.p - s.p);
		s.n = (size_t)(pct - s.p);
		if (zone.n == 0)
			return ENDPOINT_LIT_NOT_IP;
	}
	char text[INET6_ADDRSTRLEN];
	if (s.n >= sizeof text)
		return ENDPOINT_LIT_NOT_IP;
	memcpy(text, s.p, s.n);
	text[s.n] = '\0';
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	if (inet_pton(AF_INET6, text, &sin6.sin6_addr) != 1)
		return ENDPOINT_LIT_NOT_IP;
	/* Our choice for ::ffff:a.b.c.d: an error rather than a silent IPv4
	 * listener. An IPv6-only socket cannot bind it, and treating it as IPv4
	 * would hide that "::ffff:127.0.0.1" and "127.0.0.1" are the same. */
	if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
		return ENDPOINT_LIT_MAPPED;
	if (IN6_IS_ADDR_MULTICAST(&sin6.sin6_addr))
		return ENDPOINT_LIT_MULTICAST;
	bool ll = IN6_IS_ADDR_LINKLOCAL(&sin6.sin6_addr);
	/* RFC 4007 section 11: a zone only means something for a scoped address;
	 * on a global one it would make two spellings of one address look
	 * different to the conflict check. Without a zone a link-local bind(2)
	 * fails with EINVAL, so say so now. */
	if (zone.n > 0 && !ll)
		return ENDPOINT_LIT_ZONE_NOLL;
	if (zone.n == 0 && ll)
		return ENDPOINT_LIT_NEED_ZONE;
	if (zone.n > 0) {
		sin6.sin6_scope_id = endpoint_zone_index(zone, env);
		if (sin6.sin6_scope_id == 0)
			return ENDPOINT_LIT_BAD_ZONE;
	}
	memset(ss, 0, sizeof *ss);
	memcpy(ss, &sin6, sizeof sin6);
	return ENDPOINT_LIT_OK;
}

/* Parse an IP literal: "1.2.3.4", "::1", "[::1]", "fe80::1%eth0",
 * "[fe80::1%eth0]". *maybe_name is set when s is no IPv6 spelling at all, so
 * the caller may still try it as a hostname. */
enum endpoint_lit endpoint_parse_literal(struct endpoint_slice s, const struct endpoint_env *env,
                                         struct sockaddr_storage *ss, bool *maybe_name)
{
	*maybe_name = false;
	if (s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']') {
		struct endpoint_slice inner = {s.p + 1, s.n - 2};
		return endpoint_parse_v6(inner, env, ss);
	}
	if (memchr(s.p, ':', s.n) != NULL)
		return endpoint_parse_v6(s, env, ss);
	if (s.n > 0 && s.p[0] == '[')
		return ENDPOINT_LIT_NOT_IP;
	*maybe_name = true;
	char text[INET_ADDRSTRLEN];
	if (s.n >= sizeof text)
		return ENDPOINT_LIT_NOT_IP;
	memcpy(text, s.p, s.n);
	text[s.n] = '\0';
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	/* inet_pton, not inet_aton: only the dotted quad, no "127.1" or octal. */
	if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
		return ENDPOINT_LIT_NOT_IP;
	*maybe_name = false;
	if ((ntohl(sin.sin_addr.s_addr) & 0xf0000000u) == 0xe0000000u)
		return ENDPOINT_LIT_MULTICAST;
	memset(ss, 0, sizeof *ss);
	memcpy(ss, &sin, sizeof sin);
	return ENDPOINT_LIT_OK;
}

static bool endpoint_is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

void endpoint_key_of(const struct sockaddr_storage *ss, struct endpoint_key *k)
{
	memset(k, 0, sizeof *k);
	k->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, ss, sizeof sin);
		memcpy(k->a, &sin.sin_addr, 4);
	} else {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, ss, sizeof sin6);
		memcpy(k->a, &sin6.sin6_addr, 16);
		k->scope = sin6.sin6_scope_id;
	}
	k->any = endpoint_is_zero(k->a, sizeof k->a);
}

bool endpoint_key_same(const struct endpoint_key *x, const struct endpoint_key *y)
{
	return x->family == y->family && x->scope == y->scope && memcmp(x->a, y->a, 16) == 0;
}

const char *endpoint_format_addr_env(const struct sockaddr *sa, const struct endpoint_env *env,
                                     char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	char name[IF_NAMESIZE];
	if (buf == NULL || len == 0)
		return buf;
	if (sa != NULL && sa->sa_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof sin);
		inet_ntop(AF_INET, &sin.sin_addr, a, sizeof a);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof sin6);
		/* SPEC 7: IPv4 peers on a dual-stack socket are shown without the
		 * ::ffff: prefix, everywhere. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
			inet_ntop(AF_INET, &sin6.sin6_addr.s6_addr[12], a, sizeof a);
		} else {
			inet_ntop(AF_INET6, &sin6.sin6_addr, a, sizeof a);
			if (sin6.sin6_scope_id != 0) {
				const char *n = NULL;
				if (env != NULL && env->ifname != NULL)
					n = env->ifname(env->ctx, sin6.sin6_scope_id, name);
				if (n != NULL && snprintf(buf, len, "%s%%%s", a, n) >= 0)
					return buf;
				if (snprintf(buf, len, "%s%%%u", a, (unsigned)sin6.sin6_scope_id) <
				    0)
					buf[0] = '\0';
				return buf;
			}
		}
	}
	if (snprintf(buf, len, "%s", a) < 0)
		buf[0] = '\0';
	return buf;
}

/* Fill e from an address (port ignored) and a port. */
void endpoint_fill(struct endpoint *e, const struct sockaddr_storage *ss, uint16_t port,
                   const struct endpoint_env *env)
{
	struct endpoint_key k;
	endpoint_key_of(ss, &k);
	memset(e, 0, sizeof *e);
	e->family = ss->ss_family;
	e->any = k.any;
	e->port = port;
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, ss, sizeof sin);
		sin.sin_port = htons(port);
		memcpy(&e->addr, &sin, sizeof sin);
		e->addrlen = sizeof sin;
	} else {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, ss, sizeof sin6);
		sin6.sin6_port = htons(port);
		memcpy(&e->addr, &sin6, sizeof sin6);
		e->addrlen = sizeof sin6;
	}
	endpoint_format_addr_env((const struct sockaddr *)&e->addr, env, e->address,
	                         sizeof e->address);
	int r = snprintf(e->text, sizeof e->text, e->family == AF_INET6 ? "[%s]:%u" : "%s:%u",
	                 e->address, (unsigned)port);
	if (r < 0)
		e->text[0] = '\0';
}

/* A port: decimal digits only (no sign, no blanks inside), 1-65535. */
bool endpoint_parse_port(struct endpoint_slice s, uint16_t *port)
{
	if (!endpoint_all_digits(s))
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < s.n; i++) {
		v = v * 10 + (uint32_t)(s.p[i] - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}

int endpoint_parse_hostport(const char *s, struct endpoint *out)
{
	if (s == NULL || out == NULL)
		return -1;
	struct endpoint_slice t = endpoint_trim((struct endpoint_slice){s, strlen(s)});
	const char *colon = NULL;
	if (t.n > 0 && t.p[0] == '[') {
		const char *rb = memchr(t.p, ']', t.n);
		if (rb == NULL || rb + 1 == t.p + t.n || rb[1] != ':')
			return -1;
		colon = rb + 1;
	} else {
		colon = memchr(t.p, ':', t.n);
		/* A bare IPv6 address has more than one colon: "::1:8080" is
		 * ambiguous, so it must be bracketed. */
		if (colon == NULL || memchr(colon + 1, ':', t.n - (size_t)(colon + 1 - t.p)))
			return -1;
	}
	struct endpoint_slice host = {t.p, (size_t)(colon - t.p)};
	struct endpoint_slice port = {colon + 1, t.n - (size_t)(colon + 1 - t.p)};
	uint16_t pn;
	struct sockaddr_storage ss;
	bool maybe_name;
	/* No env here: only numeric zones ("[fe80::1%2]:8080") can be taken. */
	if (host.n == 0 || !endpoint_parse_port(port, &pn) ||
	    endpoint_parse_literal(host, NULL, &ss, &maybe_name) != ENDPOINT_LIT_OK)
		return -1;
	endpoint_fill(out, &ss, pn, NULL);
	return 0;
}
