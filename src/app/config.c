/* config: every setting of mailport, from one table (see config.h, SPEC 1).
 *
 * The table (config_table.c) drives the parser and, through config_doc.c,
 * --help, the README's Markdown table, mailport(8) and /etc/default/mailport,
 * so they cannot drift. This module prints nothing: errors go to the caller's
 * err buffer and warnings to its callback, and main.c decides what to do.
 *
 * The module's files (what they share is in config_priv.h):
 *   config.c        error text helpers, parsing of values, the string checkers
 *                   of the table, SMTPD_X_FILE, config_load() and config_free()
 *   config_table.c  the settings table config_settings[] and its choices
 *   config_scan.c   argv and the environment: actions, flags, SMTPD_* variables,
 *                   suggestions for a mistyped variable
 *   config_check.c  checkers and parsers that need none of config.c's helpers
 *   config_doc.c    --help, the Markdown table, mailport(8), the env file */
#include "config_priv.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "natspub_build.h"

/* Values are cut well before CONFIG_WHY_MAX (config_priv.h), so one setting
 * can never flood the log. */
#define CONFIG_QUOTE_CUT 60
/* RFC 1035 2.3.4: a label is at most 63 octets, a name at most 255 on the wire,
 * which is 253 characters written out without the trailing dot. */
#define CONFIG_LABEL_MAX  63
#define CONFIG_DOMAIN_MAX 253

/* One parsed value, whatever its kind; strings are owned. */
union config_value {
	char *s;
	bool b;
	uint64_t u;
	int e;
};

/* Where a setting's value came from, which names it in an error. */
enum config_from { CONFIG_FROM_DEFAULT, CONFIG_FROM_FLAG, CONFIG_FROM_ENV, CONFIG_FROM_FILE };

void config_fmt(char *dst, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, n, fmt, ap);
	va_end(ap);
}

/* Write len bytes of s into dst, escaping what would break a one-line message
 * (control characters, and with `quoted` the quote and backslash) and cutting
 * what does not fit, since a variable or a file may hold anything. */
void config_escape(char *dst, size_t n, const char *s, size_t len, bool quoted)
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

void config_quote(char *dst, size_t n, const char *s)
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
int config_check_any(char *value, char *why, size_t whylen)
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
int config_check_token(char *value, char *why, size_t whylen)
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
int config_check_secret(char *value, char *why, size_t whylen)
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
int config_check_http(char *value, char *why, size_t whylen)
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
int config_check_hostname(char *value, char *why, size_t whylen)
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

int config_check_url(char *value, char *why, size_t whylen)
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

/* SPEC 9: comma-separated nats:// and tls:// URLs (natspub_build.c parses). */
int config_check_nats_urls(char *value, char *why, size_t whylen)
{
	if (config_check_text(value, why, whylen) < 0)
		return -1;
	char *urls[NATSPUB_MAX_URLS];
	size_t n;
	char e[CONFIG_WHY_MAX];
	if (natspub_urls_parse(value, urls, &n, e, sizeof e) < 0) {
		config_fmt(why, whylen, "%s", e);
		return -1;
	}
	natspub_urls_free(urls, n);
	return 0;
}

/* "25, 587": comma-separated ports (1-65535), blanks around items ignored. */
int config_check_port_list(char *value, char *why, size_t whylen)
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
 * came from. */
static int config_resolve(struct config *cfg, const struct config_setting *s,
                          const struct config_given *g, enum config_from *from, char *err,
                          size_t errlen)
{
	const char *text = s->def;
	char *owned = NULL, src[CONFIG_SOURCE_MAX], why[CONFIG_WHY_MAX];
	union config_value v;

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
		if (config_resolve(cfg, &config_settings[i], &given[i], &from[i], err, errlen) < 0)
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

	/* SPEC 9: forward mode publishes what the spool holds, through the
	 * webhook's queue: one or the other. */
	if (cfg->nats_url[0] != '\0' && cfg->webhook_url[0] != '\0') {
		config_fmt(err, errlen,
		           "SMTPD_NATS_URL and SMTPD_WEBHOOK_URL: set one or the other (both "
		           "deliver through the same queue)");
		return -1;
	}
	if (cfg->nats_url[0] != '\0' && cfg->nats_mode == CONFIG_NATS_FORWARD &&
	    cfg->deliver == CONFIG_DELIVER_DISCARD) {
		config_fmt(err, errlen,
		           "SMTPD_NATS_MODE: forward needs the spool, but SMTPD_DELIVER is discard "
		           "(use sync)");
		return -1;
	}
	if (cfg->nats_url[0] != '\0' && cfg->nats_stream[0] == '\0') {
		config_fmt(err, errlen, "SMTPD_NATS_STREAM: must name the stream");
		return -1;
	}
	/* The webhook posts what the spool holds: nothing to post without it. */
	if (cfg->webhook_url[0] != '\0' && cfg->deliver == CONFIG_DELIVER_DISCARD) {
		config_fmt(err, errlen,
		           "SMTPD_WEBHOOK_URL needs the spool, but SMTPD_DELIVER is discard");
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
