/* smtp_parse: the parsing helpers of smtp_proto, with no state of their own
 * but the error replies of MAIL parameters: UTF-8, paths and mailboxes
 * (RFC 5321 4.1.2), ESMTP parameters, numbers, xtext (RFC 3461) and the
 * arguments of MAIL and BDAT. Lines are split in place. */
#include "smtp_proto_priv.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- parsing */

/* RFC 3629: well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). */
bool smtp_proto_utf8_ok(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static bool smtp_proto_ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 5321 4.1.2, loosely: Local-part "@" ( Domain / address-literal ), the
 * local part a dot-string or a quoted string. "postmaster" alone is accepted
 * where allowed (RFC 5321 4.5.1). Control octets were refused by the caller. */
static bool smtp_proto_mailbox_ok(const char *s, size_t n, bool postmaster)
{
	size_t at = 0;
	if (s[0] == '"') {
		size_t i = 1;
		while (i < n && s[i] != '"')
			i += s[i] == '\\' ? 2 : 1;
		if (i >= n)
			return false;
		at = i + 1;
		if (at >= n || s[at] != '@')
			return false;
	} else {
		for (; at < n && s[at] != '@'; at++)
			if (strchr(" \"()<>[]\\,;:", s[at]) != NULL)
				return false;
		if (at == n)
			return postmaster && n == 10 && strncasecmp(s, "postmaster", 10) == 0;
		if (at == 0)
			return false;
	}
	const char *d = s + at + 1;
	size_t dn = n - at - 1;
	if (dn == 0 || dn > SMTP_PROTO_DOMAIN_MAX)
		return false;
	if (d[0] == '[') {
		if (dn < 3 || d[dn - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < dn; i++)
			if (strchr(" []\\", d[i]) != NULL)
				return false;
		return true;
	}
	for (size_t i = 0; i < dn; i++) {
		unsigned char c = (unsigned char)d[i];
		if (!smtp_proto_ascii_alnum(c) && c != '-' && c != '.' && c < 0x80)
			return false;
	}
	return true;
}

/* Parse "<path>" at *sp (RFC 5321 4.1.2). On success the mailbox, without
 * brackets and without a source route (accepted and ignored, RFC 5321 C), is
 * copied to out, *sp points after the '>', and *nonascii says whether it
 * needs SMTPUTF8 (RFC 6531 3.3). "<>" is accepted only when null_ok. */
bool smtp_proto_parse_path(char **sp, char out[SMTP_PROTO_PATH_MAX + 1], bool null_ok,
                           bool *nonascii)
{
	char *s = *sp;
	if (*s != '<')
		return false;
	size_t i = 1;
	bool quoted = false;
	for (;; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
		if (quoted) {
			if (c == '\\' && ((unsigned char)s[++i] < 0x20 || s[i] == 0x7f))
				return false;
			if (c == '"')
				quoted = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '<') {
			return false;
		} else if (c == '>') {
			break;
		}
	}
	/* RFC 5321 4.5.3.1.3: 256 octets including the brackets. */
	if (i + 1 > SMTP_PROTO_PATH_MAX)
		return false;
	const char *in = s + 1;
	size_t n = i - 1;
	*sp = s + i + 1;
	*nonascii = false;
	if (n == 0) {
		out[0] = '\0';
		return null_ok;
	}
	if (in[0] == '@') {
		const char *colon = memchr(in, ':', n);
		if (colon == NULL || colon + 1 == in + n)
			return false;
		n -= (size_t)(colon + 1 - in);
		in = colon + 1;
	}
	if (!smtp_proto_mailbox_ok(in, n, !null_ok))
		return false;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)in[k] >= 0x80)
			*nonascii = true;
	if (*nonascii && !smtp_proto_utf8_ok(in, n))
		return false;
	memcpy(out, in, n);
	out[n] = '\0';
	return true;
}

/* Split the next space-separated "KEY[=VALUE]" (RFC 5321 4.1.2 esmtp-param)
 * off *sp, in place. Returns false at the end of the list. */
bool smtp_proto_next_param(char **sp, char **key, char **value)
{
	char *s = *sp;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return false;
	*key = s;
	while (*s != '\0' && *s != ' ')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*sp = s;
	char *eq = strchr(*key, '=');
	*value = NULL;
	if (eq != NULL) {
		*eq = '\0';
		*value = eq + 1;
	}
	return true;
}

/* A decimal count for SIZE= (RFC 1870) or BDAT (RFC 3030), refusing overflow. */
static bool smtp_proto_parse_number(const char *v, uint64_t *out)
{
	if (v == NULL || *v == '\0')
		return false;
	uint64_t x = 0;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return false;
		unsigned d = (unsigned)(*v - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*out = x;
	return true;
}

/* RFC 3461 4: xtext ("+" and two upper-case hex digits for what is not
 * printable ASCII, "+" or "="), decoded into out. Returns false when malformed,
 * too long, or decoding to a control octet. */
static bool smtp_proto_xtext(const char *v, char *out, size_t outlen)
{
	size_t o = 0;
	for (; *v != '\0'; v++) {
		unsigned c = (unsigned char)*v;
		if (c == '+') {
			unsigned hi, lo;
			const char *hex = "0123456789ABCDEF";
			if (v[1] == '\0' || v[2] == '\0' || strchr(hex, v[1]) == NULL ||
			    strchr(hex, v[2]) == NULL)
				return false;
			hi = (unsigned)(strchr(hex, v[1]) - hex);
			lo = (unsigned)(strchr(hex, v[2]) - hex);
			c = hi * 16 + lo;
			v += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
		if (c < 0x20 || c == 0x7f || o + 1 >= outlen)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return true;
}

/* MAIL parameters (RFC 5321 4.1.1.11): SIZE (RFC 1870), BODY (RFC 6152),
 * SMTPUTF8 (RFC 6531) and AUTH (RFC 4954 5, when AUTH is offered), only after
 * EHLO. A parameter given twice with the same meaning is taken (Python's
 * smtplib repeats SMTPUTF8); twice with different meanings is 501. Answers the
 * error itself. */
bool smtp_proto_mail_params(struct smtp_proto *p, char *s, struct smtp_mail_params *mp)
{
	char *key, *value;
	while (smtp_proto_next_param(&s, &key, &value)) {
		if (!p->esmtp) {
			smtp_proto_error(p, 555, "5.5.4", "Unsupported option: %s", key);
			return false;
		}
		if (strcasecmp(key, "SIZE") == 0) {
			uint64_t size;
			if (!smtp_proto_parse_number(value, &size) ||
			    (mp->has_size && size != mp->size)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad SIZE parameter");
				return false;
			}
			mp->has_size = true;
			mp->size = size;
		} else if (strcasecmp(key, "BODY") == 0) {
			/* RFC 3030 3: BINARYMIME is not advertised, so not supported. */
			if (value != NULL && strcasecmp(value, "BINARYMIME") == 0) {
				smtp_proto_error(p, 555, "5.5.4", "Unsupported BODY type");
				return false;
			}
			bool is8 = value != NULL && strcasecmp(value, "8BITMIME") == 0;
			if (value == NULL || (!is8 && strcasecmp(value, "7BIT") != 0) ||
			    (mp->has_body && is8 != mp->body_8bit)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad BODY parameter");
				return false;
			}
			mp->has_body = true;
			mp->body_8bit = is8;
		} else if (strcasecmp(key, "SMTPUTF8") == 0) {
			if (value != NULL) {
				smtp_proto_error(p, 501, "5.5.4", "Bad SMTPUTF8 parameter");
				return false;
			}
			mp->smtputf8 = true;
		} else if (strcasecmp(key, "AUTH") == 0 && p->cfg.auth != SMTP_AUTH_OFF) {
			char decoded[SMTP_PROTO_PATH_MAX + 1];
			if (value == NULL || !smtp_proto_xtext(value, decoded, sizeof decoded) ||
			    (mp->has_auth && strcmp(decoded, mp->auth) != 0)) {
				smtp_proto_error(p, 501, "5.5.4", "Bad AUTH parameter");
				return false;
			}
			mp->has_auth = true;
			memcpy(mp->auth, decoded, strlen(decoded) + 1);
		} else {
			smtp_proto_error(p, 555, "5.5.4", "Unsupported option: %s", key);
			return false;
		}
	}
	return true;
}

/* RFC 3030 2: "BDAT" SP chunk-size [ SP end-marker ]. */
bool smtp_proto_parse_bdat(char *arg, uint64_t *count, bool *last)
{
	char *num, *marker, *v;
	if (!smtp_proto_next_param(&arg, &num, &v) || v != NULL ||
	    strlen(num) > SMTP_PROTO_NUMBER_DIGITS || !smtp_proto_parse_number(num, count))
		return false;
	*last = false;
	if (!smtp_proto_next_param(&arg, &marker, &v))
		return true;
	if (v != NULL || strcasecmp(marker, "LAST") != 0 || smtp_proto_next_param(&arg, &num, &v))
		return false;
	*last = true;
	return true;
}
