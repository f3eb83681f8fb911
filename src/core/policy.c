/* policy: SMTPD_DOMAINS and SMTPD_RECIPIENTS_FILE as hash sets, and the RCPT
 * verdict (SPEC 8). See policy.h for the matching rules. */
#include "policy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5321 4.5.3.1.2: a domain is at most 255 octets; RFC 1035 2.3.4: a
 * label at most 63 (applied to ASCII labels: a UTF-8 label's limit is that of
 * its xn-- form, which we do not compute). */
#define POLICY_DOMAIN_MAX 255
#define POLICY_LABEL_MAX  63
/* How much of a bad value an error message quotes. */
#define POLICY_QUOTE_MAX 64

/* An open-addressing set of NUL-terminated keys living in the table's arena.
 * The keys come from the operator; clients only look up, so a client cannot
 * lengthen a probe sequence: lookups stay O(1) on average whatever they send. */
struct policy_set {
	const char **slot; /* mask + 1 slots, NULL = empty */
	size_t mask;
	size_t n;
};

struct policy {
	char *arena; /* every key, NUL-terminated */
	size_t used, cap;
	bool all_domains;         /* SMTPD_DOMAINS empty: every domain is served */
	struct policy_set exact;  /* "example.org" */
	struct policy_set wild;   /* "*.example.org", stored as "example.org" */
	bool file;                /* a recipients file is in use */
	struct policy_set addrs;  /* canonical "local@domain" */
	struct policy_set at_dom; /* "@domain" lines, stored as "domain" */
	size_t outside, outside_line;
};

/* ------------------------------------------------------------- hash sets */

/* FNV-1a, 64 bits. */
static uint64_t policy_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	return h;
}

/* Room for `max` keys at a load factor of at most one half. */
static int policy_set_init(struct policy_set *s, size_t max)
{
	size_t cap = 8;
	while (cap / 2 < max) {
		if (cap > SIZE_MAX / 4 / sizeof *s->slot)
			return -1;
		cap *= 2;
	}
	s->slot = calloc(cap, sizeof *s->slot);
	if (s->slot == NULL)
		return -1;
	s->mask = cap - 1;
	s->n = 0;
	return 0;
}

static const char **policy_set_find(const struct policy_set *s, const char *k, size_t n)
{
	size_t i = (size_t)policy_hash(k, n) & s->mask;
	while (s->slot[i] != NULL) {
		if (strncmp(s->slot[i], k, n) == 0 && s->slot[i][n] == '\0')
			return &s->slot[i];
		i = (i + 1) & s->mask;
	}
	return &s->slot[i];
}

static bool policy_set_has(const struct policy_set *s, const char *k, size_t n)
{
	return s->slot != NULL && *policy_set_find(s, k, n) != NULL;
}

/* Add k (NUL-terminated, in the arena); a duplicate is not added twice. The set
 * was sized for every key, so there is always an empty slot. */
static void policy_set_add(struct policy_set *s, const char *k)
{
	const char **slot = policy_set_find(s, k, strlen(k));
	if (*slot == NULL) {
		*slot = k;
		s->n++;
	}
}

/* Copy n octets of s into the arena as a key. The arena was sized for every
 * key (each is at most as long as the text it comes from). */
static const char *policy_intern(struct policy *p, const char *s, size_t n)
{
	char *k = p->arena + p->used;
	memcpy(k, s, n);
	k[n] = '\0';
	p->used += n + 1;
	return k;
}

/* ----------------------------------------------------------------- syntax */

static char policy_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool policy_ldh(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-' || c >= 0x80;
}

/* A domain name as SMTPD_DOMAINS and the file write it: labels of ASCII
 * letters, digits and hyphens, or UTF-8 octets (the characters the SMTP core
 * accepts in a domain), separated by single dots, with an optional final dot
 * (dropped). Lowercased into out (n + 1 octets). Returns the length written, 0
 * when malformed. */
static size_t policy_domain_norm(const char *s, size_t n, char *out)
{
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > POLICY_DOMAIN_MAX)
		return 0;
	size_t label = 0;
	bool ascii = true;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (label == 0 || (ascii && label > POLICY_LABEL_MAX))
				return 0;
			label = 0;
			ascii = true;
			if (i < n)
				out[i] = '.';
			continue;
		}
		unsigned char c = (unsigned char)s[i];
		if (!policy_ldh(c))
			return 0;
		ascii &= c < 0x80;
		label++;
		out[i] = policy_lower(s[i]);
	}
	out[n] = '\0';
	return n;
}

/* Octets never allowed in an unquoted local part (RFC 5321 4.1.2 specials,
 * which the SMTP core refuses there too), besides controls and space. */
static bool policy_local_special(unsigned char c)
{
	return c <= 0x20 || c == 0x7f || strchr("\"(),:;<>@[\\]", c) != NULL;
}

/* The canonical form of a mailbox for comparison, into out (at least n + 1
 * octets): the local part with the quotes of a quoted string and its
 * backslashes removed, ASCII-lowercased; '@'; the domain ASCII-lowercased
 * without a final dot. *at is the offset of that '@' in out. Returns the
 * length, 0 when s is not local@domain. `strict` (the file): the local part
 * must be non-empty and free of controls, the domain a domain name (no
 * address literal). Otherwise (a path the SMTP core already checked) the
 * domain is only lowercased. */
static size_t policy_mailbox_canon(const char *s, size_t n, char *out, size_t *at, bool strict)
{
	size_t i = 0, o = 0;
	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < n)
				i++;
			if (strict && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f))
				return 0;
			out[o++] = policy_lower(s[i]);
		}
		if (i >= n)
			return 0;
		i++; /* the closing quote */
	} else {
		for (; i < n && s[i] != '@'; i++) {
			if (strict && policy_local_special((unsigned char)s[i]))
				return 0;
			out[o++] = policy_lower(s[i]);
		}
	}
	if (i >= n || s[i] != '@' || (strict && o == 0))
		return 0;
	*at = o;
	out[o++] = '@';
	const char *d = s + i + 1;
	size_t dn = n - i - 1;
	if (strict) {
		size_t w = policy_domain_norm(d, dn, out + o);
		return w == 0 ? 0 : o + w;
	}
	if (dn > 0 && d[dn - 1] == '.')
		dn--;
	if (dn == 0)
		return 0;
	for (size_t k = 0; k < dn; k++)
		out[o++] = policy_lower(d[k]);
	out[o] = '\0';
	return o;
}

/* `"text"` for an error message: printable ASCII kept, other octets as '?',
 * cut at POLICY_QUOTE_MAX with "...". */
static void policy_quote(char *dst, size_t size, const char *s, size_t n)
{
	char q[POLICY_QUOTE_MAX + 4];
	size_t k = 0;
	for (size_t i = 0; i < n && k < POLICY_QUOTE_MAX; i++)
		q[k++] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
	if (n > POLICY_QUOTE_MAX) {
		memcpy(q + k, "...", 3);
		k += 3;
	}
	q[k] = '\0';
	snprintf(dst, size, "\"%s\"", q);
}

/* --------------------------------------------------------- SMTPD_DOMAINS */

static bool policy_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Walk the comma list: each item, trimmed and lowercased, goes into p's exact
 * or wildcard set; the first bad item is described in err. With p NULL, only
 * checks. Nothing but blanks: every domain. */
static int policy_parse_domains(struct policy *p, const char *list, char *err, size_t errlen)
{
	const char *s = list;
	while (policy_blank(*s))
		s++;
	if (*s == '\0') {
		if (p != NULL)
			p->all_domains = true;
		return 0;
	}
	char q[POLICY_QUOTE_MAX + 8], norm[POLICY_DOMAIN_MAX + 2];
	for (;;) {
		const char *end = strchr(s, ',');
		size_t n = end ? (size_t)(end - s) : strlen(s);
		const char *b = s;
		while (n > 0 && policy_blank(*b))
			b++, n--;
		while (n > 0 && policy_blank(b[n - 1]))
			n--;
		policy_quote(q, sizeof q, b, n);
		bool wild = n >= 2 && b[0] == '*' && b[1] == '.';
		const char *d = wild ? b + 2 : b;
		size_t dn = wild ? n - 2 : n;
		size_t w = policy_domain_norm(d, dn, norm); /* 0 when over the maximum */
		if (n == 0) {
			snprintf(err, errlen, "an empty item in the list");
			return -1;
		} else if (b[0] == '@') {
			snprintf(err, errlen, "%s: write the domain without @", q);
			return -1;
		} else if (memchr(d, '*', dn) != NULL) {
			snprintf(err, errlen,
			         "%s: * is only allowed as a whole first label (*.example.org)", q);
			return -1;
		} else if (w == 0) {
			snprintf(err, errlen, "%s is not a domain name%s", q,
			         b[0] == '[' ? " (address literals are not served)" : "");
			return -1;
		}
		if (p != NULL)
			policy_set_add(wild ? &p->wild : &p->exact, policy_intern(p, norm, w));
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

int policy_domains_check(const char *domains, char *err, size_t errlen)
{
	return policy_parse_domains(NULL, domains, err, errlen);
}

/* Whether SMTPD_DOMAINS serves the (canonical) domain d: listed exactly, or
 * one of its parents is listed as *.parent. */
static bool policy_served(const struct policy *p, const char *d, size_t n)
{
	if (p->all_domains || policy_set_has(&p->exact, d, n))
		return true;
	if (p->wild.n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (d[i] == '.' && policy_set_has(&p->wild, d + i + 1, n - i - 1))
			return true;
	return false;
}

/* ------------------------------------------------- SMTPD_RECIPIENTS_FILE */

/* One line's token (trimmed, no comment), at line number ln. */
static int policy_file_entry(struct policy *p, const char *t, size_t n, size_t ln, char *err,
                             size_t errlen)
{
	char q[POLICY_QUOTE_MAX + 8], key[POLICY_ADDRESS_MAX + 2];
	policy_quote(q, sizeof q, t, n);
	const char *dom;
	size_t dn, w, at;
	if (n > POLICY_ADDRESS_MAX) {
		snprintf(err, errlen, "line %zu: %s is longer than %d octets", ln, q,
		         POLICY_ADDRESS_MAX);
		return -1;
	}
	if (t[0] == '@') {
		if (n > 1 && t[1] == '*') {
			snprintf(err, errlen,
			         "line %zu: %s: wildcards belong in SMTPD_DOMAINS; write one "
			         "@domain line per domain",
			         ln, q);
			return -1;
		}
		w = policy_domain_norm(t + 1, n - 1, key);
		if (w == 0) {
			snprintf(err, errlen, "line %zu: %s: not a domain name after @", ln, q);
			return -1;
		}
		dom = policy_intern(p, key, w);
		dn = w;
		policy_set_add(&p->at_dom, dom);
	} else {
		if (n >= 2 && t[0] == '*' && t[1] == '@') {
			snprintf(err, errlen, "line %zu: %s: write %.*s for a whole domain", ln, q,
			         (int)(n - 1 > 80 ? 80 : n - 1), t + 1);
			return -1;
		}
		w = policy_mailbox_canon(t, n, key, &at, true);
		if (w == 0) {
			snprintf(err, errlen,
			         "line %zu: %s is not an address (local@domain) or @domain", ln, q);
			return -1;
		}
		const char *k = policy_intern(p, key, w);
		policy_set_add(&p->addrs, k);
		dom = k + at + 1;
		dn = w - at - 1;
	}
	if (!policy_served(p, dom, dn) && p->outside++ == 0)
		p->outside_line = ln;
	return 0;
}

/* Whitespace, then the token (up to whitespace outside a quoted string), then
 * optional whitespace and a # comment. */
static int policy_parse_file(struct policy *p, const char *text, size_t len, char *err,
                             size_t errlen)
{
	size_t ln = 0, pos = 0;
	/* A UTF-8 byte order mark, as some editors write, is not part of line 1. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		pos = 3;
	while (pos < len) {
		ln++;
		const char *l = text + pos;
		const char *nl = memchr(l, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - l) : len - pos;
		pos += n + (nl != NULL);
		if (memchr(l, '\0', n) != NULL) {
			snprintf(err, errlen, "line %zu: contains a NUL octet", ln);
			return -1;
		}
		size_t i = 0;
		while (i < n && policy_blank(l[i]))
			i++;
		if (i == n || l[i] == '#')
			continue;
		size_t start = i;
		bool quoted = false;
		for (; i < n && (quoted || !policy_blank(l[i])); i++) {
			if (quoted && l[i] == '\\' && i + 1 < n)
				i++;
			else if (l[i] == '"')
				quoted = !quoted;
		}
		size_t end = i;
		while (i < n && policy_blank(l[i]))
			i++;
		if (i < n && l[i] != '#') {
			char q[POLICY_QUOTE_MAX + 8];
			policy_quote(q, sizeof q, l + start, n - start);
			snprintf(err, errlen,
			         "line %zu: %s: one address a line (a comment starts with #)", ln,
			         q);
			return -1;
		}
		if (policy_file_entry(p, l + start, end - start, ln, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- the table */

int policy_new(const char *domains, const char *recipients, size_t len, struct policy **out,
               char *err, size_t errlen)
{
	*out = NULL;
	size_t dlen = strlen(domains);
	/* Keys are never longer than the text they come from, plus a NUL each;
	 * the sets are sized for the lines that may hold one (not for blank or
	 * comment lines, so a file of empty lines allocates no slots for them). */
	size_t items = 1, lines = 0;
	for (size_t i = 0; i < dlen; i++)
		items += domains[i] == ',';
	for (size_t i = 0; recipients != NULL && i < len; i++) {
		bool start = i == 0 || recipients[i - 1] == '\n';
		while (start && i < len && recipients[i] != '\n' && policy_blank(recipients[i]))
			i++;
		if (start && i < len && recipients[i] != '\n' && recipients[i] != '#')
			lines++;
	}
	struct policy *p = calloc(1, sizeof *p);
	if (p == NULL || dlen > SIZE_MAX / 2 - len || len > SIZE_MAX / 2)
		goto oom;
	p->cap = dlen + len + items + lines + 1;
	p->arena = malloc(p->cap);
	if (p->arena == NULL || policy_set_init(&p->exact, items) < 0 ||
	    policy_set_init(&p->wild, items) < 0 || policy_set_init(&p->addrs, lines) < 0 ||
	    policy_set_init(&p->at_dom, lines) < 0)
		goto oom;
	if (policy_parse_domains(p, domains, err, errlen) < 0)
		goto fail;
	p->file = recipients != NULL;
	if (p->file && policy_parse_file(p, recipients, len, err, errlen) < 0)
		goto fail;
	*out = p;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	policy_free(p);
	return -1;
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	free(p->exact.slot);
	free(p->wild.slot);
	free(p->addrs.slot);
	free(p->at_dom.slot);
	free(p->arena);
	free(p);
}

enum policy_verdict policy_check(const struct policy *p, const char *path, bool authenticated)
{
	if (p == NULL)
		return POLICY_ACCEPT;
	size_t n = strlen(path);
	/* RFC 5321 4.5.1: <postmaster> without a domain is always taken. */
	if (memchr(path, '@', n) == NULL)
		return POLICY_ACCEPT;
	char key[POLICY_ADDRESS_MAX + 3];
	size_t at = 0;
	size_t w = n <= POLICY_ADDRESS_MAX + 1 ? policy_mailbox_canon(path, n, key, &at, false) : 0;
	/* A path the core let through but we cannot read matches nothing. */
	const char *dom = w ? key + at + 1 : "";
	size_t dn = w ? w - at - 1 : 0;
	if (!policy_served(p, dom, dn))
		return authenticated ? POLICY_ACCEPT : POLICY_RELAY_DENIED;
	if (!p->file)
		return POLICY_ACCEPT;
	if (w != 0 && (policy_set_has(&p->at_dom, dom, dn) || policy_set_has(&p->addrs, key, w)))
		return POLICY_ACCEPT;
	return POLICY_UNKNOWN_USER;
}

void policy_counts(const struct policy *p, struct policy_counts *out)
{
	memset(out, 0, sizeof *out);
	if (p == NULL)
		return;
	out->domains = p->exact.n + p->wild.n;
	out->file = p->file;
	out->addresses = p->addrs.n;
	out->at_domains = p->at_dom.n;
	out->outside = p->outside;
	out->outside_first_line = p->outside_line;
}
