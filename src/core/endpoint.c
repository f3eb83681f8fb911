/* endpoint: SMTPD_HOSTS / SMTPD_PORTS -> the list of listeners (SPEC section 2).
 *
 * Pure: everything that touches the system (interface list, resolver, zone
 * names) comes through struct endpoint_env, so the whole parser is tested and
 * fuzzed without a network. Only string functions, inet_pton/inet_ntop and
 * malloc are used here and in endpoint_parse.c, which holds the address
 * literals (zones, hostname syntax, port numbers, the identity and text form
 * of an address) and endpoint_parse_hostport; the types both files use are in
 * endpoint_priv.h.
 *
 * The work is done in four passes so that no error is reported half-way
 * through and the cheap checks run before any resolver query:
 *   1. split SMTPD_HOSTS into items and classify each one (literal, hostname,
 *      "*"); literals and zones are checked here;
 *   2. parse SMTPD_PORTS and match its items to host items by position;
 *   3. expand every host item to its addresses (resolver, interface list) and
 *      each address to its ports, in the order written;
 *   4. look for conflicts (the same address:port twice, or an ANY address and
 *      a specific address of its family on one port) before anything is bound.
 */
#include "endpoint.h"

#include <arpa/inet.h>
#include <assert.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint_priv.h"

#define ENDPOINT_VAR_HOSTS     "SMTPD_HOSTS"
#define ENDPOINT_VAR_PORTS     "SMTPD_PORTS"
#define ENDPOINT_DEFAULT_HOSTS "127.0.0.1"
#define ENDPOINT_DEFAULT_PORTS "2525"
/* An error message repeats at most this much of an item, so a megabyte of
 * garbage in a variable still gives a readable one-line message. */
#define ENDPOINT_QUOTE_MAX 120
#define ENDPOINT_QUOTE_BUF (4 * ENDPOINT_QUOTE_MAX + 4)

enum endpoint_host_kind {
	ENDPOINT_HOST_LITERAL, /* an IP address, in addr */
	ENDPOINT_HOST_NAME,    /* a hostname for env->resolve */
	ENDPOINT_HOST_ALL,     /* "*" */
};

struct endpoint_host {
	struct endpoint_slice text; /* as written, blanks trimmed */
	enum endpoint_host_kind kind;
	struct sockaddr_storage addr;
};

struct endpoint_ports {
	struct endpoint_slice text;
	uint16_t *v;
	size_t n;
};

/* The list being built, with the host item each endpoint came from, which the
 * conflict messages name. */
struct endpoint_build {
	struct endpoint *v;
	size_t *origin;
	size_t n, cap;
};

/* Addresses one host item yields, duplicates dropped. */
struct endpoint_addrs {
	struct sockaddr_storage *v;
	size_t n, cap;
};

static int endpoint_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int endpoint_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		/* vsnprintf truncates and terminates; every piece put in is escaped
		 * by endpoint_quote or generated here, so the message is one line. */
		if (vsnprintf(err, errlen, fmt, ap) < 0)
			err[0] = '\0';
		va_end(ap);
	}
	return code;
}

/* Split s at sep into a malloc'ed array of trimmed items (*n >= 1). NULL when
 * out of memory. */
static struct endpoint_slice *endpoint_split(struct endpoint_slice s, char sep, size_t *n)
{
	size_t count = 1;
	for (size_t i = 0; i < s.n; i++)
		count += s.p[i] == sep;
	struct endpoint_slice *v = calloc(count, sizeof *v);
	if (v == NULL)
		return NULL;
	size_t k = 0, start = 0;
	for (size_t i = 0; i <= s.n; i++) {
		if (i < s.n && s.p[i] != sep)
			continue;
		struct endpoint_slice item = {s.p + start, i - start};
		v[k++] = endpoint_trim(item);
		start = i + 1;
	}
	*n = count;
	return v;
}

/* Copy s into buf (ENDPOINT_QUOTE_BUF bytes) for use inside "..." in a
 * message: printable ASCII as it is, quotes, backslashes and anything else
 * escaped, so a newline or a control byte in a setting cannot split the
 * message or the log line it ends up in. */
static const char *endpoint_quote(struct endpoint_slice s, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (i == ENDPOINT_QUOTE_MAX) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		unsigned char c = (unsigned char)s.p[i];
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	buf[o] = '\0';
	return buf;
}

/* Turn what a resolver or an interface list gave into our form: IPv4-mapped
 * becomes IPv4, port and flow label zeroed, the scope kept only where it
 * means something. Returns false for a family we cannot listen on. */
static bool endpoint_normalize(const struct sockaddr *sa, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin, o;
		memcpy(&sin, sa, sizeof sin);
		memset(&o, 0, sizeof o);
		o.sin_family = AF_INET;
		o.sin_addr = sin.sin_addr;
		memcpy(ss, &o, sizeof o);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	struct sockaddr_in6 sin6, o6;
	memcpy(&sin6, sa, sizeof sin6);
	if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
		struct sockaddr_in o;
		memset(&o, 0, sizeof o);
		o.sin_family = AF_INET;
		memcpy(&o.sin_addr, &sin6.sin6_addr.s6_addr[12], 4);
		memcpy(ss, &o, sizeof o);
		return true;
	}
	memset(&o6, 0, sizeof o6);
	o6.sin6_family = AF_INET6;
	o6.sin6_addr = sin6.sin6_addr;
	if (IN6_IS_ADDR_LINKLOCAL(&sin6.sin6_addr) || IN6_IS_ADDR_MC_LINKLOCAL(&sin6.sin6_addr))
		o6.sin6_scope_id = sin6.sin6_scope_id;
	memcpy(ss, &o6, sizeof o6);
	return true;
}

/* Add ss unless the item already yielded it: a name listed twice in
 * /etc/hosts, or one address on two interfaces, is one listener, not a
 * conflict the user could do nothing about. Returns 0 or -1 (no memory). */
static int endpoint_addrs_add(struct endpoint_addrs *l, const struct sockaddr_storage *ss)
{
	struct endpoint_key k, o;
	endpoint_key_of(ss, &k);
	for (size_t i = 0; i < l->n; i++) {
		endpoint_key_of(&l->v[i], &o);
		if (endpoint_key_same(&k, &o))
			return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct sockaddr_storage *v = realloc(l->v, cap * sizeof *v);
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *ss;
	return 0;
}

/* SPEC 2 "*": which interface addresses a wildcard listens on. IPv4: all but
 * multicast (and 0.0.0.0, which is no interface's address and would turn
 * into an ANY listener). IPv6: loopback, unique-local fc00::/7 (RFC 4193) and
 * global unicast 2000::/3 (RFC 4291 section 2.4); link-local, multicast,
 * v4-mapped and unspecified are left out, as midi-smtp-server does. */
static bool endpoint_wildcard_wants(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, ss, sizeof sin);
		uint32_t a = ntohl(sin.sin_addr.s_addr);
		return a != 0 && (a & 0xf0000000u) != 0xe0000000u;
	}
	struct sockaddr_in6 sin6;
	memcpy(&sin6, ss, sizeof sin6);
	const uint8_t *b = sin6.sin6_addr.s6_addr;
	return IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr) || (b[0] & 0xfe) == 0xfc ||
	       (b[0] & 0xe0) == 0x20;
}

static int endpoint_expand_all(const struct endpoint_host *h, const struct endpoint_env *env,
                               struct endpoint_addrs *out, char *err, size_t errlen)
{
	char q[ENDPOINT_QUOTE_BUF];
	struct endpoint_ifaddr *ifs = NULL;
	size_t nifs = 0;
	int rc = env->list_ifaddrs != NULL ? env->list_ifaddrs(env->ctx, &ifs, &nifs) : -1;
	if (rc < 0)
		return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                     ENDPOINT_VAR_HOSTS
		                     ": \"%s\": cannot list the interfaces (error %d)",
		                     endpoint_quote(h->text, q), -rc);
	rc = ENDPOINT_OK;
	for (size_t i = 0; i < nifs && rc == ENDPOINT_OK; i++) {
		struct sockaddr_storage ss;
		if (!ifs[i].up || ifs[i].addr == NULL || !endpoint_normalize(ifs[i].addr, &ss))
			continue;
		/* A v4-mapped interface address would have become IPv4 above;
		 * SPEC 2 leaves those out, so check the original. */
		if (ifs[i].addr->sa_family == AF_INET6 && ss.ss_family == AF_INET)
			continue;
		if (endpoint_wildcard_wants(&ss) && endpoint_addrs_add(out, &ss) < 0)
			rc = endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
			                   ENDPOINT_VAR_HOSTS ": out of memory");
	}
	if (env->free_ifaddrs != NULL)
		env->free_ifaddrs(env->ctx, ifs, nifs);
	/* No usable address at all is taken as a state of the machine (the
	 * network not up yet), not of the configuration: exit 1, so an
	 * orchestrator retries. */
	if (rc == ENDPOINT_OK && out->n == 0)
		rc = endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                   ENDPOINT_VAR_HOSTS
		                   ": \"%s\" found no usable address on any interface that is up",
		                   endpoint_quote(h->text, q));
	return rc;
}

static int endpoint_expand_name(const struct endpoint_host *h, const struct endpoint_env *env,
                                struct endpoint_addrs *out, char *err, size_t errlen)
{
	char q[ENDPOINT_QUOTE_BUF];
	char name[ENDPOINT_NAME_MAX + 2];
	assert(h->text.n < sizeof name);
	memcpy(name, h->text.p, h->text.n);
	name[h->text.n] = '\0';
	struct sockaddr_storage *res = NULL;
	size_t nres = 0;
	int r = env->resolve != NULL ? env->resolve(env->ctx, name, &res, &nres)
	                             : ENDPOINT_RESOLVE_TEMPFAIL;
	int rc = ENDPOINT_OK;
	if (r == ENDPOINT_RESOLVE_OK) {
		for (size_t i = 0; i < nres && rc == ENDPOINT_OK; i++) {
			struct sockaddr_storage ss;
			if (endpoint_normalize((const struct sockaddr *)&res[i], &ss) &&
			    endpoint_addrs_add(out, &ss) < 0)
				rc = endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
				                   ENDPOINT_VAR_HOSTS ": out of memory");
		}
		free(res);
		if (rc != ENDPOINT_OK)
			return rc;
		if (out->n > 0)
			return ENDPOINT_OK;
		r = ENDPOINT_RESOLVE_NOTFOUND;
	}
	/* SPEC 2: midi-smtp-server binds nothing for such a name; we refuse to
	 * start. Only a temporary failure is worth a retry (exit 1). */
	if (r == ENDPOINT_RESOLVE_NOTFOUND)
		return endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
		                     ENDPOINT_VAR_HOSTS ": \"%s\" does not resolve to any address",
		                     endpoint_quote(h->text, q));
	return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
	                     ENDPOINT_VAR_HOSTS
	                     ": cannot resolve \"%s\" now (temporary resolver failure)",
	                     endpoint_quote(h->text, q));
}

static int endpoint_build_add(struct endpoint_build *b, const struct sockaddr_storage *ss,
                              uint16_t port, size_t origin, const struct endpoint_env *env)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8;
		struct endpoint *v = realloc(b->v, cap * sizeof *v);
		if (v == NULL)
			return -1;
		b->v = v;
		size_t *o = realloc(b->origin, cap * sizeof *o);
		if (o == NULL)
			return -1;
		b->origin = o;
		b->cap = cap;
	}
	endpoint_fill(&b->v[b->n], ss, port, env);
	b->origin[b->n] = origin;
	b->n++;
	return 0;
}

/* Pass 3: host item i gets port item min(i, np - 1). */
static int endpoint_expand(const struct endpoint_host *hosts, size_t nh,
                           const struct endpoint_ports *ports, size_t np,
                           const struct endpoint_env *env, struct endpoint_build *b, char *err,
                           size_t errlen)
{
	assert(np >= 1 && ports != NULL); /* a split always yields an item */
	int rc = ENDPOINT_OK;
	struct endpoint_addrs addrs = {0};
	for (size_t i = 0; i < nh && rc == ENDPOINT_OK; i++) {
		const struct endpoint_ports *p = &ports[i < np ? i : np - 1];
		addrs.n = 0;
		switch (hosts[i].kind) {
		case ENDPOINT_HOST_LITERAL:
			rc = endpoint_addrs_add(&addrs, &hosts[i].addr) < 0 ? ENDPOINT_ERUNTIME
			                                                    : ENDPOINT_OK;
			if (rc != ENDPOINT_OK)
				endpoint_fail(err, errlen, rc,
				              ENDPOINT_VAR_HOSTS ": out of memory");
			break;
		case ENDPOINT_HOST_NAME:
			rc = endpoint_expand_name(&hosts[i], env, &addrs, err, errlen);
			break;
		case ENDPOINT_HOST_ALL:
			rc = endpoint_expand_all(&hosts[i], env, &addrs, err, errlen);
			break;
		}
		for (size_t a = 0; a < addrs.n && rc == ENDPOINT_OK; a++)
			for (size_t k = 0; k < p->n && rc == ENDPOINT_OK; k++)
				if (endpoint_build_add(b, &addrs.v[a], p->v[k], i, env) < 0)
					rc = endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
					                   ENDPOINT_VAR_HOSTS ": out of memory");
	}
	free(addrs.v);
	return rc;
}

/* Sort record for the conflict check: the key, then the position, so equal
 * keys come out in the order written. */
struct endpoint_ckey {
	struct endpoint_key k;
	uint16_t port;
	size_t idx;
};

static int endpoint_ckey_cmp(const void *x, const void *y)
{
	const struct endpoint_ckey *a = x, *b = y;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->k.family != b->k.family)
		return a->k.family < b->k.family ? -1 : 1;
	int c = memcmp(a->k.a, b->k.a, sizeof a->k.a);
	if (c != 0)
		return c;
	if (a->k.scope != b->k.scope)
		return a->k.scope < b->k.scope ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Do endpoints x and y take the same socket? The ANY address of a family
 * takes every address of that family; "::" is bound IPv6-only (SPEC 2), so it
 * never takes an IPv4 one. */
static bool endpoint_clash(const struct endpoint_key *x, uint16_t xp, const struct endpoint_key *y,
                           uint16_t yp)
{
	return xp == yp && x->family == y->family && (x->any || y->any || endpoint_key_same(x, y));
}

/* Find the first endpoint (in list order) that clashes with an earlier one.
 * Sorting keeps this O(n log n): "1:2:...:65535" on "*" must not take
 * minutes. Within one (port, family) group, sorted by address with the ANY
 * address (all zeros) first: an ANY entry clashes when anything in the group
 * comes before it, a specific one when its own address came earlier or an
 * ANY entry did. Returns the index, or b->n when there is none. */
static size_t endpoint_first_clash(const struct endpoint_build *b, struct endpoint_ckey *ck)
{
	for (size_t i = 0; i < b->n; i++) {
		endpoint_key_of(&b->v[i].addr, &ck[i].k);
		ck[i].port = b->v[i].port;
		ck[i].idx = i;
	}
	qsort(ck, b->n, sizeof *ck, endpoint_ckey_cmp);
	size_t best = b->n;
	for (size_t g = 0; g < b->n;) {
		size_t end = g, gmin = SIZE_MAX, anymin = SIZE_MAX;
		while (end < b->n && ck[end].port == ck[g].port &&
		       ck[end].k.family == ck[g].k.family) {
			gmin = ck[end].idx < gmin ? ck[end].idx : gmin;
			if (ck[end].k.any && ck[end].idx < anymin)
				anymin = ck[end].idx;
			end++;
		}
		size_t submin = SIZE_MAX;
		for (size_t i = g; i < end; i++) {
			if (i == g || !endpoint_key_same(&ck[i].k, &ck[i - 1].k))
				submin = ck[i].idx; /* first of its address: smallest idx */
			size_t x = ck[i].idx;
			bool clash = ck[i].k.any ? x != gmin : (x != submin || anymin < x);
			if (clash && x < best)
				best = x;
		}
		g = end;
	}
	return best;
}

/* Pass 4. SPEC 2: found before anything is bound, so nothing is left
 * half-open (midi-smtp-server only fails at bind time, with EADDRINUSE). */
static int endpoint_check_conflicts(const struct endpoint_build *b,
                                    const struct endpoint_host *hosts, char *err, size_t errlen)
{
	if (b->n < 2)
		return ENDPOINT_OK;
	assert(hosts != NULL && b->origin != NULL);
	struct endpoint_ckey *ck = malloc(b->n * sizeof *ck);
	if (ck == NULL)
		return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                     ENDPOINT_VAR_HOSTS ": out of memory");
	size_t later = endpoint_first_clash(b, ck);
	free(ck);
	if (later == b->n)
		return ENDPOINT_OK;
	struct endpoint_key kl, ke;
	memset(&ke, 0, sizeof ke); /* set in the loop below; gcc -O3 cannot see it */
	endpoint_key_of(&b->v[later].addr, &kl);
	size_t early = 0;
	for (; early < later; early++) {
		endpoint_key_of(&b->v[early].addr, &ke);
		if (endpoint_clash(&ke, b->v[early].port, &kl, b->v[later].port))
			break;
	}
	assert(early < later);
	char q1[ENDPOINT_QUOTE_BUF], q2[ENDPOINT_QUOTE_BUF];
	const struct endpoint *e = &b->v[early], *l = &b->v[later];
	const char *te = endpoint_quote(hosts[b->origin[early]].text, q1);
	const char *tl = endpoint_quote(hosts[b->origin[later]].text, q2);
	if (endpoint_key_same(&ke, &kl))
		return endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
		                     ENDPOINT_VAR_HOSTS
		                     ": %s is already in use (given twice: \"%s\" and \"%s\")",
		                     l->text, te, tl);
	/* One of the two is the ANY address: name the specific endpoint, the
	 * one the user will recognise, and say what covers it. */
	const struct endpoint *any = e->any ? e : l, *spec = e->any ? l : e;
	return endpoint_fail(
	    err, errlen, ENDPOINT_ECONFIG,
	    ENDPOINT_VAR_HOSTS ": %s is already in use (%s from \"%s\" serves every "
	                       "%s address; %s is from \"%s\")",
	    spec->text, any->text, e->any ? te : tl, any->family == AF_INET6 ? "IPv6" : "IPv4",
	    spec->text, e->any ? tl : te);
}

/* Say why host item t is refused. The message tails are kept in one table,
 * passed as "%s" arguments so the format strings stay literal. */
static int endpoint_host_error(enum endpoint_lit why, struct endpoint_slice t, char *err,
                               size_t errlen)
{
	static const char *const tail[] = {
	    [ENDPOINT_LIT_NOT_IP] = "is not an IP address or hostname",
	    [ENDPOINT_LIT_ZONE_NOLL] = "has a zone but only a link-local address (fe80::/10) may",
	    [ENDPOINT_LIT_MAPPED] = "is an IPv4-mapped IPv6 address; write the IPv4 address",
	    [ENDPOINT_LIT_MULTICAST] = "is a multicast address",
	};
	char q[ENDPOINT_QUOTE_BUF], q2[ENDPOINT_QUOTE_BUF];
	struct endpoint_slice bare = t;
	if (bare.n >= 2 && bare.p[0] == '[' && bare.p[bare.n - 1] == ']') {
		bare.p++;
		bare.n -= 2;
	}
	const char *qt = endpoint_quote(t, q);
	if (why == ENDPOINT_LIT_BAD_ZONE) {
		const char *pct = memchr(bare.p, '%', bare.n);
		assert(pct != NULL);
		struct endpoint_slice z = {pct + 1, bare.n - (size_t)(pct + 1 - bare.p)};
		return endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
		                     ENDPOINT_VAR_HOSTS
		                     ": \"%s\": there is no interface \"%s\" for its zone",
		                     qt, endpoint_quote(z, q2));
	}
	if (why == ENDPOINT_LIT_NEED_ZONE)
		return endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
		                     ENDPOINT_VAR_HOSTS
		                     ": \"%s\" is link-local and needs a zone, as in \"%s%%eth0\"",
		                     qt, endpoint_quote(bare, q2));
	assert(why < sizeof tail / sizeof tail[0] && tail[why] != NULL);
	return endpoint_fail(err, errlen, ENDPOINT_ECONFIG, ENDPOINT_VAR_HOSTS ": \"%s\" %s", qt,
	                     tail[why]);
}

/* Pass 1: split and classify the host items. Only env->ifindex/ifname are
 * used (zones); nothing is resolved yet. */
static int endpoint_parse_hosts(struct endpoint_slice value, const struct endpoint_env *env,
                                struct endpoint_host **out, size_t *n, char *err, size_t errlen)
{
	char q[ENDPOINT_QUOTE_BUF];
	size_t ni;
	struct endpoint_slice *items = endpoint_split(value, ',', &ni);
	struct endpoint_host *h = items ? calloc(ni, sizeof *h) : NULL;
	if (h == NULL) {
		free(items);
		return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                     ENDPOINT_VAR_HOSTS ": out of memory");
	}
	int rc = ENDPOINT_OK;
	for (size_t i = 0; i < ni && rc == ENDPOINT_OK; i++) {
		struct endpoint_slice t = items[i];
		h[i].text = t;
		bool maybe_name;
		if (t.n == 0) {
			rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
			                   ENDPOINT_VAR_HOSTS ": item %zu of \"%s\" is empty",
			                   i + 1, endpoint_quote(value, q));
			break;
		}
		if (t.n == 1 && t.p[0] == '*') {
			h[i].kind = ENDPOINT_HOST_ALL;
			continue;
		}
		enum endpoint_lit why = endpoint_parse_literal(t, env, &h[i].addr, &maybe_name);
		if (why == ENDPOINT_LIT_OK)
			h[i].kind = ENDPOINT_HOST_LITERAL;
		else if (why == ENDPOINT_LIT_NOT_IP && maybe_name && endpoint_is_hostname(t))
			h[i].kind = ENDPOINT_HOST_NAME;
		else
			rc = endpoint_host_error(why, t, err, errlen);
	}
	free(items);
	if (rc != ENDPOINT_OK) {
		free(h);
		return rc;
	}
	*out = h;
	*n = ni;
	return ENDPOINT_OK;
}

static void endpoint_ports_free(struct endpoint_ports *p, size_t n)
{
	for (size_t i = 0; p != NULL && i < n; i++)
		free(p[i].v);
	free(p);
}

/* Parse one port item ("2525" or "2525:3535") into p. seen is a 65536-bit
 * map, all clear on entry and on return. */
static int endpoint_parse_port_item(struct endpoint_ports *p, uint8_t *seen, char *err,
                                    size_t errlen)
{
	char q[ENDPOINT_QUOTE_BUF], qi[ENDPOINT_QUOTE_BUF];
	struct endpoint_slice *parts = endpoint_split(p->text, ':', &p->n);
	p->v = parts ? calloc(p->n, sizeof *p->v) : NULL;
	if (p->v == NULL) {
		free(parts);
		return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                     ENDPOINT_VAR_PORTS ": out of memory");
	}
	int rc = ENDPOINT_OK;
	size_t k = 0;
	for (; k < p->n; k++) {
		if (!endpoint_parse_port(parts[k], &p->v[k])) {
			if (p->n == 1)
				rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
				                   ENDPOINT_VAR_PORTS
				                   ": \"%s\" is not a port number (1-65535)",
				                   endpoint_quote(parts[k], q));
			else
				rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
				                   ENDPOINT_VAR_PORTS ": \"%s\" in \"%s\" is not a "
				                                      "port number (1-65535)",
				                   endpoint_quote(parts[k], q),
				                   endpoint_quote(p->text, qi));
			break;
		}
		uint16_t v = p->v[k];
		if (seen[v >> 3] & (1u << (v & 7))) {
			/* Every address of the host item would get this port
			 * twice; say so in terms of the port item, the thing to
			 * fix. */
			rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
			                   ENDPOINT_VAR_PORTS
			                   ": port %u is already in use (given twice in \"%s\")",
			                   (unsigned)v, endpoint_quote(p->text, q));
			break;
		}
		seen[v >> 3] |= (uint8_t)(1u << (v & 7));
	}
	/* Clear only what was set: cheaper than 8 KiB per item. */
	for (size_t i = 0; i < k; i++)
		seen[p->v[i] >> 3] = 0;
	free(parts);
	return rc;
}

/* Pass 2: parse the port items. */
static int endpoint_parse_ports(struct endpoint_slice value, struct endpoint_ports **out, size_t *n,
                                char *err, size_t errlen)
{
	char q[ENDPOINT_QUOTE_BUF];
	size_t ni;
	struct endpoint_slice *items = endpoint_split(value, ',', &ni);
	struct endpoint_ports *p = items ? calloc(ni, sizeof *p) : NULL;
	uint8_t *seen = p ? calloc(65536 / 8, 1) : NULL;
	if (seen == NULL) {
		free(items);
		free(p);
		return endpoint_fail(err, errlen, ENDPOINT_ERUNTIME,
		                     ENDPOINT_VAR_PORTS ": out of memory");
	}
	int rc = ENDPOINT_OK;
	for (size_t i = 0; i < ni && rc == ENDPOINT_OK; i++) {
		p[i].text = items[i];
		if (items[i].n == 0)
			rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
			                   ENDPOINT_VAR_PORTS ": item %zu of \"%s\" is empty",
			                   i + 1, endpoint_quote(value, q));
		else
			rc = endpoint_parse_port_item(&p[i], seen, err, errlen);
	}
	free(seen);
	free(items);
	if (rc != ENDPOINT_OK) {
		endpoint_ports_free(p, ni);
		return rc;
	}
	*out = p;
	*n = ni;
	return ENDPOINT_OK;
}

/* NULL or blank means the default (SPEC 2). */
static struct endpoint_slice endpoint_value(const char *s, const char *def)
{
	struct endpoint_slice v = {s, s ? strlen(s) : 0};
	v = endpoint_trim(v);
	if (v.n == 0) {
		v.p = def;
		v.n = strlen(def);
	}
	return v;
}

int endpoint_load(const char *hosts, const char *ports, const struct endpoint_env *env,
                  struct endpoint_list *out, char *err, size_t errlen)
{
	assert(env != NULL && out != NULL);
	out->v = NULL;
	out->n = 0;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	struct endpoint_slice hv = endpoint_value(hosts, ENDPOINT_DEFAULT_HOSTS);
	struct endpoint_slice pv = endpoint_value(ports, ENDPOINT_DEFAULT_PORTS);
	struct endpoint_host *h = NULL;
	struct endpoint_ports *p = NULL;
	size_t nh = 0, np = 0;
	struct endpoint_build b = {0};

	int rc = endpoint_parse_hosts(hv, env, &h, &nh, err, errlen);
	if (rc == ENDPOINT_OK)
		rc = endpoint_parse_ports(pv, &p, &np, err, errlen);
	/* SPEC 2: midi-smtp-server ignores extra port items; we refuse them,
	 * since they are almost always a host item gone missing. */
	if (rc == ENDPOINT_OK && np > nh)
		rc = endpoint_fail(err, errlen, ENDPOINT_ECONFIG,
		                   ENDPOINT_VAR_PORTS ": %zu port items but " ENDPOINT_VAR_HOSTS
		                                      " has only %zu host item%s (at most one port "
		                                      "item per host item)",
		                   np, nh, nh == 1 ? "" : "s");
	if (rc == ENDPOINT_OK)
		rc = endpoint_expand(h, nh, p, np, env, &b, err, errlen);
	if (rc == ENDPOINT_OK)
		rc = endpoint_check_conflicts(&b, h, err, errlen);
	free(h);
	endpoint_ports_free(p, np);
	free(b.origin);
	if (rc != ENDPOINT_OK) {
		free(b.v);
		return rc;
	}
	out->v = b.v;
	out->n = b.n;
	return ENDPOINT_OK;
}

void endpoint_list_free(struct endpoint_list *l)
{
	if (l == NULL)
		return;
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
