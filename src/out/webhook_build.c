/* webhook_build: the webhook's pure parts (SPEC 5), no loop, no curl: the
 * retry delay, what an answer means, the request body and headers with their
 * HMAC signature, the failure reason. Declared in webhook.h; unit-tested by
 * tests/unit/test_webhook.c. */
#include "webhook.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* Bytes of a response body kept in a failure reason. */
#define WEBHOOK_REASON_BODY 200

uint64_t webhook_backoff_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms, uint64_t rnd)
{
	if (min_ms == 0)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	uint64_t d = min_ms;
	for (unsigned i = 1; i < failures && d < max_ms; i++)
		d = d > max_ms / 2 ? max_ms : d * 2;
	if (d > max_ms)
		d = max_ms;
	uint64_t lo = d / 2;
	return lo + rnd % (d - lo + 1);
}

enum webhook_outcome webhook_classify(long status)
{
	if (status >= 200 && status < 300)
		return WEBHOOK_DELIVERED;
	if (status >= 400 && status < 500 && status != 408 && status != 429)
		return WEBHOOK_FAILED;
	return WEBHOOK_RETRY;
}

/* HMAC-SHA256 through OpenSSL 3's EVP_MAC, fed in pieces so the body is never
 * copied next to its timestamp. */
int webhook_sign(const char *secret, const char *timestamp, const void *body, size_t len,
                 char out[WEBHOOK_SIGNATURE_MAX])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	int rc = -1;
	unsigned char md[32];
	size_t mdlen = 0;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	    OSSL_PARAM_construct_end(),
	};
	if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
	    EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) == 1 &&
	    EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
	    EVP_MAC_update(ctx, body, len) == 1 && EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 &&
	    mdlen == sizeof md) {
		static const char hex[] = "0123456789abcdef";
		memcpy(out, "sha256=", 7);
		for (size_t i = 0; i < mdlen; i++) {
			out[7 + 2 * i] = hex[md[i] >> 4];
			out[7 + 2 * i + 1] = hex[md[i] & 15];
		}
		out[7 + 2 * mdlen] = '\0';
		rc = 0;
	}
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return rc;
}

size_t webhook_base64(const uv_buf_t *parts, unsigned n, char *out)
{
	unsigned char carry[3];
	size_t nc = 0, o = 0;
	for (unsigned i = 0; i < n; i++) {
		const unsigned char *p = (const unsigned char *)parts[i].base;
		size_t len = parts[i].len;
		while (nc > 0 && nc < 3 && len > 0) {
			carry[nc++] = *p++;
			len--;
		}
		if (nc == 3) {
			o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, carry, 3);
			nc = 0;
		}
		/* EVP_EncodeBlock takes an int: whole groups, in pieces well below it. */
		while (len >= 3) {
			size_t chunk = len - len % 3;
			if (chunk > (size_t)3 << 20)
				chunk = (size_t)3 << 20;
			o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)chunk);
			p += chunk;
			len -= chunk;
		}
		while (len > 0) {
			carry[nc++] = *p++;
			len--;
		}
	}
	if (nc > 0)
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, carry, (int)nc);
	return o;
}

void webhook_request_free(struct webhook_request *r)
{
	if (r == NULL)
		return;
	free(r->body);
	for (size_t i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	free(r->headers);
	memset(r, 0, sizeof *r);
}

static int webhook_header(struct webhook_request *r, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	char *h = malloc(nl + 2 + vl + 1);
	if (h == NULL)
		return -ENOMEM;
	memcpy(h, name, nl);
	memcpy(h + nl, ": ", 2);
	/* A CR or LF from an address would split the header: made '?'. */
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		h[nl + 2 + i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	h[nl + 2 + vl] = '\0';
	char **nv = realloc(r->headers, (r->nheaders + 1) * sizeof *nv);
	if (nv == NULL) {
		free(h);
		return -ENOMEM;
	}
	r->headers = nv;
	r->headers[r->nheaders++] = h;
	return 0;
}

/* The raw format's envelope headers, from the envelope JSON (SPEC 5): the sender, and one
 * X-Mailport-Rcpt-To header per recipient (a comma list is ambiguous when a quoted local part holds
 * a comma). */
static int webhook_raw_headers(struct webhook_request *r, json_t *env)
{
	const char *from = json_string_value(json_object_get(env, "mail_from"));
	int rc = webhook_header(r, "X-Mailport-Mail-From", from ? from : "");
	json_t *rcpt = json_object_get(env, "rcpt_to");
	for (size_t i = 0; rc == 0 && i < json_array_size(rcpt); i++) {
		const char *s = json_string_value(json_array_get(rcpt, i));
		rc = webhook_header(r, "X-Mailport-Rcpt-To", s ? s : "");
	}
	return rc;
}

int webhook_build(const struct webhook_build_in *in, struct webhook_request *out)
{
	memset(out, 0, sizeof *out);
	size_t total = 0;
	for (unsigned i = 0; i < in->nparts; i++)
		total += in->parts[i].len;
	int rc = 0;
	if (in->format == CONFIG_WEBHOOK_RAW) {
		out->body = malloc(total ? total : 1);
		if (out->body == NULL)
			return -ENOMEM;
		for (unsigned i = 0; i < in->nparts; i++) {
			memcpy(out->body + out->len, in->parts[i].base, in->parts[i].len);
			out->len += in->parts[i].len;
		}
		rc = webhook_header(out, "Content-Type", "message/rfc822");
		if (rc == 0)
			rc = webhook_raw_headers(out, in->envelope);
	} else {
		char *env = json_dumps(in->envelope, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (env == NULL)
			return -ENOMEM;
		static const char a[] = "{\"envelope\":", b[] = ",\"raw\":\"", c[] = "\"}";
		size_t el = strlen(env), b64 = (total + 2) / 3 * 4;
		out->body = malloc(sizeof a + el + sizeof b + b64 + sizeof c);
		if (out->body == NULL) {
			free(env);
			return -ENOMEM;
		}
		char *p = out->body;
		memcpy(p, a, sizeof a - 1);
		p += sizeof a - 1;
		memcpy(p, env, el);
		p += el;
		memcpy(p, b, sizeof b - 1);
		p += sizeof b - 1;
		p += webhook_base64(in->parts, in->nparts, p);
		memcpy(p, c, sizeof c - 1);
		p += sizeof c - 1;
		out->len = (size_t)(p - out->body);
		free(env);
		rc = webhook_header(out, "Content-Type", "application/json");
	}
	char num[32], ua[64];
	if (rc == 0)
		rc = webhook_header(out, "X-Mailport-Id", in->id);
	snprintf(num, sizeof num, "%u", in->attempt);
	if (rc == 0)
		rc = webhook_header(out, "X-Mailport-Attempt", num);
	if (rc == 0 && in->secret && in->secret[0]) {
		char sig[WEBHOOK_SIGNATURE_MAX];
		snprintf(num, sizeof num, "%" PRId64, in->timestamp);
		rc = webhook_sign(in->secret, num, out->body, out->len, sig) == 0 ? 0 : -ENOMEM;
		if (rc == 0)
			rc = webhook_header(out, "X-Mailport-Timestamp", num);
		if (rc == 0)
			rc = webhook_header(out, "X-Mailport-Signature", sig);
	}
	snprintf(ua, sizeof ua, "mailport/%s", in->version ? in->version : "");
	if (rc == 0)
		rc = webhook_header(out, "User-Agent", ua);
	/* No "Expect: 100-continue" round trip (curl adds it to large bodies). */
	if (rc == 0)
		rc = webhook_header(out, "Expect", "");
	if (rc < 0)
		webhook_request_free(out);
	return rc;
}

static void webhook_printable(const char *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\r' || c == '\n' || c == '\t')
			c = ' ';
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

void webhook_reason(long status, const char *status_line, const char *body, size_t body_len,
                    char *out, size_t len)
{
	/* "HTTP/1.1 400 Bad Request": the phrase after the code, if any. */
	char phrase[96] = "";
	const char *p = status_line ? strchr(status_line, ' ') : NULL;
	if (p) {
		while (*p == ' ')
			p++;
		while (*p >= '0' && *p <= '9')
			p++;
		while (*p == ' ')
			p++;
		webhook_printable(p, strcspn(p, "\r\n"), phrase, sizeof phrase);
	}
	char snippet[WEBHOOK_REASON_BODY + 1] = "";
	if (body && body_len)
		webhook_printable(body, body_len, snippet, sizeof snippet);
	snprintf(out, len, "HTTP %ld%s%s%s%s", status, phrase[0] ? " " : "", phrase,
	         snippet[0] ? ": " : "", snippet);
}

int webhook_parse_time(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, n = 0;
	if (s == NULL ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mo - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = mi,
	                .tm_sec = sec};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}
