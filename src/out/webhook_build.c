/* webhook_build: the webhook's pure parts (SPEC 5), no loop, no curl: the
 * retry delay, what an answer means, the request body streamed from the
 * message file and the headers with their HMAC signature, the failure reason.
 * Declared in webhook.h; unit-tested by tests/unit/test_webhook.c. */
#include "webhook.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "webhook_parsed.h"

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

/* HMAC-SHA256 through OpenSSL 3's EVP_MAC, fed in pieces: the body is never
 * copied next to its timestamp, nor held whole. */
static EVP_MAC_CTX *webhook_hmac_new(const char *secret, const char *timestamp)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	/* The context holds its own reference to mac. */
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac);
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	    OSSL_PARAM_construct_end(),
	};
	if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
	    EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) == 1 &&
	    EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1)
		return ctx;
	EVP_MAC_CTX_free(ctx);
	return NULL;
}

/* "sha256=<hex>" into out, and the context freed. Returns 0 or -1. */
static int webhook_hmac_end(EVP_MAC_CTX *ctx, char out[WEBHOOK_SIGNATURE_MAX])
{
	unsigned char md[32];
	size_t mdlen = 0;
	int rc = -1;
	if (EVP_MAC_final(ctx, md, &mdlen, sizeof md) == 1 && mdlen == sizeof md) {
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
	return rc;
}

int webhook_sign(const char *secret, const char *timestamp, const void *body, size_t len,
                 char out[WEBHOOK_SIGNATURE_MAX])
{
	EVP_MAC_CTX *ctx = webhook_hmac_new(secret, timestamp);
	if (ctx == NULL)
		return -1;
	if (EVP_MAC_update(ctx, body, len) != 1) {
		EVP_MAC_CTX_free(ctx);
		return -1;
	}
	return webhook_hmac_end(ctx, out);
}

/* ---- the body, streamed from the message file (issue 14) ---------------------------------- */

static const char webhook_json_head[] = "{\"envelope\":", webhook_json_raw[] = ",\"raw\":\"",
                  webhook_json_tail[] = "\"}";

static size_t webhook_body_tail_len(const struct webhook_body *b)
{
	return b->format == CONFIG_WEBHOOK_RAW ? 0 : sizeof webhook_json_tail - 1;
}

int webhook_body_new(enum config_webhook_format format, json_t *envelope, int fd, uint64_t size,
                     struct webhook_body **out)
{
	*out = NULL;
	struct webhook_body *b = calloc(1, sizeof *b);
	if (b == NULL) {
		close(fd);
		return -ENOMEM;
	}
	b->format = format;
	b->fd = fd;
	b->size = size;
	char *env = NULL;
	if (format == CONFIG_WEBHOOK_RAW) {
		b->head = strdup("");
		b->len = size;
	} else {
		env = json_dumps(envelope,
		                 JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
		size_t el = env ? strlen(env) : 0;
		b->head_len = sizeof webhook_json_head - 1 + el + sizeof webhook_json_raw - 1;
		b->head = env ? malloc(b->head_len + 1) : NULL;
		if (b->head) {
			char *p = b->head;
			memcpy(p, webhook_json_head, sizeof webhook_json_head - 1);
			p += sizeof webhook_json_head - 1;
			memcpy(p, env, el);
			p += el;
			memcpy(p, webhook_json_raw, sizeof webhook_json_raw);
		}
		b->len = b->head_len + (size + 2) / 3 * 4 + webhook_body_tail_len(b);
	}
	free(env);
	/* The raw format swaps the two buffers instead of copying (feed); the
	 * JSON one encodes `in` into `out`, with room for EVP_EncodeBlock's NUL. */
	b->in = malloc(WEBHOOK_CHUNK / 3 * 4 + 1);
	b->out = malloc(WEBHOOK_CHUNK / 3 * 4 + 1);
	if (b->head == NULL || b->in == NULL || b->out == NULL) {
		webhook_body_free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

void webhook_body_free(struct webhook_body *b)
{
	if (b == NULL)
		return;
	if (b->fd >= 0)
		close(b->fd);
	free(b->head);
	free(b->in);
	free(b->out);
	free(b);
}

void webhook_body_rewind(struct webhook_body *b)
{
	b->pos = 0;
	b->fed = 0;
	b->out_len = b->out_off = 0;
}

bool webhook_body_done(const struct webhook_body *b)
{
	return b->pos == b->len;
}

size_t webhook_body_next(const struct webhook_body *b, uint64_t *off)
{
	*off = b->fed;
	uint64_t left = b->size - b->fed;
	return left < WEBHOOK_CHUNK ? (size_t)left : WEBHOOK_CHUNK;
}

bool webhook_body_can_feed(const struct webhook_body *b)
{
	return b->fed < b->size && b->out_off == b->out_len;
}

void webhook_body_feed(struct webhook_body *b, size_t n)
{
	uint64_t off;
	size_t want = webhook_body_next(b, &off);
	assert(webhook_body_can_feed(b) && n == want);
	(void)want;
	if (b->format == CONFIG_WEBHOOK_RAW) {
		unsigned char *t = b->out;
		b->out = b->in;
		b->in = t;
		b->out_len = n;
	} else {
		/* Whole groups of 3 but for the file's last chunk: these encodings
		 * put end to end are the encoding of the whole file. */
		b->out_len = (size_t)EVP_EncodeBlock(b->out, b->in, (int)n);
	}
	b->out_off = 0;
	b->fed += n;
}

/* The body's ready bytes at its position: the head, the chunk fed last, or
 * the tail. 0 at the end or when the next chunk is needed. */
static size_t webhook_body_peek(const struct webhook_body *b, const char **p)
{
	uint64_t data_end = b->len - webhook_body_tail_len(b);
	if (b->pos < b->head_len) {
		*p = b->head + b->pos;
		return b->head_len - (size_t)b->pos;
	}
	if (b->pos < data_end) {
		*p = (const char *)b->out + b->out_off;
		return b->out_len - b->out_off;
	}
	*p = webhook_json_tail + (b->pos - data_end);
	return (size_t)(b->len - b->pos);
}

static void webhook_body_skip(struct webhook_body *b, size_t n)
{
	if (b->pos >= b->head_len && b->pos < b->len - webhook_body_tail_len(b))
		b->out_off += n;
	b->pos += n;
}

size_t webhook_body_fill(struct webhook_body *b, char *dst, size_t cap)
{
	size_t n = 0;
	while (n < cap) {
		const char *p;
		size_t k = webhook_body_peek(b, &p);
		if (k == 0)
			break;
		if (k > cap - n)
			k = cap - n;
		memcpy(dst + n, p, k);
		webhook_body_skip(b, k);
		n += k;
	}
	return n;
}

int webhook_body_load(struct webhook_body *b)
{
	uint64_t off;
	size_t n = webhook_body_next(b, &off);
	if (!webhook_body_can_feed(b))
		return 0;
	for (size_t got = 0; got < n;) {
		ssize_t r = pread(b->fd, b->in + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		/* Shorter than when it was opened: a stored message never changes,
		 * so something is wrong; sending a body shorter than its
		 * Content-Length would only hang the receiver. */
		if (r == 0)
			return -EIO;
		got += (size_t)r;
	}
	webhook_body_feed(b, n);
	return 0;
}

int64_t webhook_body_read(struct webhook_body *b, char *dst, size_t cap)
{
	size_t n = 0;
	while (cap > 0 && (n = webhook_body_fill(b, dst, cap)) == 0 && !webhook_body_done(b)) {
		int rc = webhook_body_load(b);
		if (rc < 0)
			return rc;
	}
	return (int64_t)n;
}

int webhook_body_sign(struct webhook_body *b, const char *secret, const char *timestamp,
                      char out[WEBHOOK_SIGNATURE_MAX])
{
	EVP_MAC_CTX *ctx = webhook_hmac_new(secret, timestamp);
	if (ctx == NULL)
		return -ENOMEM;
	webhook_body_rewind(b);
	int rc = 0;
	while (rc == 0 && !webhook_body_done(b)) {
		const char *p;
		size_t k = webhook_body_peek(b, &p);
		if (k == 0) {
			rc = webhook_body_load(b);
			continue;
		}
		if (EVP_MAC_update(ctx, (const unsigned char *)p, k) != 1)
			rc = -ENOMEM;
		webhook_body_skip(b, k);
	}
	webhook_body_rewind(b);
	if (rc < 0) {
		EVP_MAC_CTX_free(ctx);
		return rc;
	}
	return webhook_hmac_end(ctx, out) == 0 ? 0 : -ENOMEM;
}

/* ---- the request ------------------------------------------------------------------------- */

void webhook_request_free(struct webhook_request *r)
{
	if (r == NULL)
		return;
	webhook_body_free(r->body);
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
	int rc;
	if (in->format == CONFIG_WEBHOOK_PARSED) {
		/* The JSON is made into a file first, then streamed as is. */
		int fd = -1;
		uint64_t size = 0;
		rc = webhook_parsed_body(in->fd, in->envelope, in->tmp_dir_fd, &fd, &size);
		if (rc == 0)
			rc = webhook_body_new(CONFIG_WEBHOOK_RAW, NULL, fd, size, &out->body);
	} else {
		rc = webhook_body_new(in->format, in->envelope, in->fd, in->size, &out->body);
	}
	if (rc < 0)
		return rc;
	if (in->format == CONFIG_WEBHOOK_RAW) {
		rc = webhook_header(out, "Content-Type", "message/rfc822");
		if (rc == 0)
			rc = webhook_raw_headers(out, in->envelope);
	} else {
		rc = webhook_header(out, "Content-Type", "application/json");
	}
	char num[32], ua[64];
	if (rc == 0)
		rc = webhook_header(out, "X-Mailport-Id", in->id);
	snprintf(num, sizeof num, "%u", in->attempt);
	if (rc == 0)
		rc = webhook_header(out, "X-Mailport-Attempt", num);
	if (rc == 0 && in->secret && in->secret[0]) {
		/* A first pass over the file: the signature goes in a header, before
		 * the body it covers. */
		char sig[WEBHOOK_SIGNATURE_MAX];
		snprintf(num, sizeof num, "%" PRId64, in->timestamp);
		rc = webhook_body_sign(out->body, in->secret, num, sig);
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
	/* The first chunk now, off the loop: most messages fit in one, and are
	 * then sent without a file read during the request. */
	if (rc == 0)
		rc = webhook_body_load(out->body);
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
