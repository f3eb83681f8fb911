/* Tests for the webhook's pure parts (SPEC 5): backoff with jitter, the
 * classification of answers, the HMAC signature, the JSON and raw request
 * bodies streamed from the message file (issue 14: byte for byte what one
 * encoding of the whole message gives, at every size around the chunk, read in
 * any piece size, rewound, driven the loop's way with reads ahead) and their
 * headers, failure reasons, and the time format of the envelope. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

/* A read-only descriptor of a file holding data, its name already gone. */
static int temp_file(const void *data, size_t len)
{
	char path[] = "/tmp/mailport-test-webhook-XXXXXX";
	int w = mkstemp(path);
	assert_true(w >= 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(path);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(w, (const char *)data + off, len - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	close(w);
	return fd;
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

/* The whole body, read through webhook_body_read at most cap bytes a call. */
static char *slurp(struct webhook_body *b, size_t cap, size_t *len)
{
	char *out = malloc(b->len + 1);
	assert_non_null(out);
	size_t n = 0;
	for (;;) {
		size_t room = b->len + 1 - n;
		int64_t k = webhook_body_read(b, out + n, cap < room ? cap : room);
		assert_true(k >= 0);
		if (k == 0)
			break;
		n += (size_t)k;
		assert_true(n <= b->len);
	}
	assert_true(webhook_body_done(b));
	*len = n;
	return out;
}

/* Base64 (RFC 4648 4) written out here, not OpenSSL's, to check ours. */
static char *b64(const unsigned char *in, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	assert_non_null(out);
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		*o++ = a[v >> 18];
		*o++ = a[v >> 12 & 63];
		*o++ = a[v >> 6 & 63];
		*o++ = a[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		*o++ = a[v >> 18];
		*o++ = a[v >> 12 & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		*o++ = a[v >> 18];
		*o++ = a[v >> 12 & 63];
		*o++ = a[v >> 6 & 63];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* The body as the SPEC writes it, built whole in memory by the test. */
static char *expected_body(enum config_webhook_format format, json_t *env, const unsigned char *msg,
                           size_t n, size_t *len)
{
	if (format == CONFIG_WEBHOOK_RAW) {
		char *out = malloc(n + 1);
		assert_non_null(out);
		memcpy(out, msg, n);
		*len = n;
		return out;
	}
	char *e = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *r = b64(msg, n);
	size_t total = strlen("{\"envelope\":") + strlen(e) + strlen(",\"raw\":\"") + strlen(r) + 2;
	char *out = malloc(total + 1);
	assert_non_null(out);
	int k = snprintf(out, total + 1, "{\"envelope\":%s,\"raw\":\"%s\"}", e, r);
	assert_int_equal(k, (int)total);
	free(e);
	free(r);
	*len = total;
	return out;
}

/* A message of n bytes that is not periodic in 3 or in the chunk. */
static unsigned char *message(size_t n)
{
	unsigned char *m = malloc(n ? n : 1);
	assert_non_null(m);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		m[i] = (unsigned char)x;
	}
	return m;
}

static json_t *test_envelope(void)
{
	json_t *env =
	    json_loads("{\"id\":\"1.M2P3Q4.h\",\"mail_from\":\"a@x\",\"rcpt_to\":[\"b@y\"],"
	               "\"subject\":\"caf\\u00e9 \\\"q\\\"\",\"size\":6}",
	               0, NULL);
	assert_non_null(env);
	return env;
}

static void test_backoff(void **state)
{
	(void)state;
	const uint64_t min = 30000, max = 3600000;
	/* d doubles from min to max; the delay is in [d/2, d]. */
	uint64_t d = min;
	for (unsigned n = 1; n <= 20; n++) {
		uint64_t lo = webhook_backoff_ms(n, min, max, 0);
		uint64_t hi = webhook_backoff_ms(n, min, max, UINT64_MAX - 1);
		assert_int_equal(lo, d / 2);
		assert_true(hi <= d && hi >= d / 2);
		for (uint64_t r = 0; r < 1000; r += 37) {
			uint64_t v = webhook_backoff_ms(n, min, max, r * 7919);
			assert_true(v >= d / 2 && v <= d);
		}
		d = d * 2 > max ? max : d * 2;
	}
	/* Exactly d is reachable. */
	assert_int_equal(webhook_backoff_ms(1, 1000, 2000, 500), 1000);
	assert_int_equal(webhook_backoff_ms(2, 1000, 2000, 1000), 2000);
	/* Capped, and never overflowing however many failures. */
	assert_true(webhook_backoff_ms(1000000, 1000, 2000, 12345) <= 2000);
	assert_true(webhook_backoff_ms(4000000000u, 1000, UINT64_MAX / 2, 3) >= 1000);
	/* Degenerate settings stay sane. */
	assert_int_equal(webhook_backoff_ms(1, 0, 0, 0), 0);
	assert_true(webhook_backoff_ms(3, 5000, 1000, 1) <= 5000);
}

static void test_classify(void **state)
{
	(void)state;
	const struct {
		long status;
		enum webhook_outcome want;
	} cases[] = {
	    {200, WEBHOOK_DELIVERED}, {201, WEBHOOK_DELIVERED}, {204, WEBHOOK_DELIVERED},
	    {299, WEBHOOK_DELIVERED}, {400, WEBHOOK_FAILED},    {401, WEBHOOK_FAILED},
	    {404, WEBHOOK_FAILED},    {410, WEBHOOK_FAILED},    {422, WEBHOOK_FAILED},
	    {499, WEBHOOK_FAILED},    {408, WEBHOOK_RETRY},     {429, WEBHOOK_RETRY},
	    {500, WEBHOOK_RETRY},     {502, WEBHOOK_RETRY},     {503, WEBHOOK_RETRY},
	    {301, WEBHOOK_RETRY},     {302, WEBHOOK_RETRY},     {100, WEBHOOK_RETRY},
	    {0, WEBHOOK_RETRY},       {600, WEBHOOK_RETRY},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (webhook_classify(cases[i].status) != cases[i].want)
			fail_msg("status=%ld got=%d want=%d", cases[i].status,
			         webhook_classify(cases[i].status), cases[i].want);
}

static void test_sign(void **state)
{
	(void)state;
	char sig[WEBHOOK_SIGNATURE_MAX];
	/* python3: hmac.new(b'key', b'1700000000.{"a":1}', hashlib.sha256).hexdigest() */
	assert_int_equal(webhook_sign("key", "1700000000", "{\"a\":1}", 7, sig), 0);
	assert_string_equal(
	    sig, "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03");
	assert_int_equal(strlen(sig), WEBHOOK_SIGNATURE_MAX - 1);
	char other[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("key", "1700000001", "{\"a\":1}", 7, other), 0);
	assert_string_not_equal(sig, other);
}

/* At every size around the chunk and the base64 group, in both formats and
 * whatever the piece size of the reads, the streamed body is exactly the body
 * built whole; a rewind gives it again. */
static void test_body_sizes(void **state)
{
	(void)state;
	const size_t sizes[] = {0,
	                        1,
	                        2,
	                        3,
	                        4,
	                        5,
	                        6,
	                        7,
	                        100,
	                        WEBHOOK_CHUNK - 2,
	                        WEBHOOK_CHUNK - 1,
	                        WEBHOOK_CHUNK,
	                        WEBHOOK_CHUNK + 1,
	                        WEBHOOK_CHUNK + 2,
	                        WEBHOOK_CHUNK + 3,
	                        2 * WEBHOOK_CHUNK,
	                        3 * WEBHOOK_CHUNK + 1};
	const size_t caps[] = {1, 7, 4096, 65536, 1u << 20};
	json_t *env = test_envelope();
	for (int f = 0; f < 2; f++) {
		enum config_webhook_format format = f ? CONFIG_WEBHOOK_RAW : CONFIG_WEBHOOK_JSON;
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			size_t n = sizes[i];
			unsigned char *msg = message(n);
			size_t wlen;
			char *want = expected_body(format, env, msg, n, &wlen);
			for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
				if (caps[c] < 4096 && n > 2 * WEBHOOK_CHUNK)
					continue; /* slow, and nothing new */
				struct webhook_body *b;
				assert_int_equal(
				    webhook_body_new(format, env, temp_file(msg, n), n, &b), 0);
				assert_int_equal(b->len, wlen);
				size_t glen;
				char *got = slurp(b, caps[c], &glen);
				if (glen != wlen || memcmp(got, want, wlen) != 0)
					fail_msg(
					    "format=%d size=%zu cap=%zu got=%zu bytes want=%zu", f,
					    n, caps[c], glen, wlen);
				free(got);
				webhook_body_rewind(b);
				got = slurp(b, caps[c], &glen);
				assert_int_equal(glen, wlen);
				assert_memory_equal(got, want, wlen);
				free(got);
				webhook_body_free(b);
			}
			free(want);
			free(msg);
		}
	}
	json_decref(env);
	webhook_body_free(NULL);
}

/* Driven as the loop drives it: webhook_body_fill gives what is ready, the
 * caller reads each chunk into `in` itself, ahead, as soon as the previous
 * one has been fed, and feeds it when the body asks; a rewind in the middle
 * (curl's seek) while a chunk is read ahead. */
static void test_body_stream(void **state)
{
	(void)state;
	json_t *env = test_envelope();
	size_t n = 5 * WEBHOOK_CHUNK + 11;
	unsigned char *msg = message(n);
	for (int f = 0; f < 2; f++) {
		enum config_webhook_format format = f ? CONFIG_WEBHOOK_RAW : CONFIG_WEBHOOK_JSON;
		size_t wlen;
		char *want = expected_body(format, env, msg, n, &wlen);
		struct webhook_body *b;
		assert_int_equal(webhook_body_new(format, env, temp_file(msg, n), n, &b), 0);
		char *got = malloc(wlen);
		assert_non_null(got);
		for (int pass = 0; pass < 2; pass++) {
			webhook_body_rewind(b);
			size_t glen = 0, steps = 0;
			bool ready = false; /* a chunk is in b->in */
			uint64_t ready_off = 0;
			while (!webhook_body_done(b)) {
				uint64_t off;
				size_t want_n = webhook_body_next(b, &off);
				if (ready && ready_off != off)
					ready = false; /* read before the rewind */
				if (!ready && want_n > 0) {
					assert_int_equal(pread(b->fd, b->in, want_n, (off_t)off),
					                 (ssize_t)want_n);
					ready = true;
					ready_off = off;
				}
				if (ready && webhook_body_can_feed(b)) {
					webhook_body_feed(b, want_n);
					ready = false;
				}
				size_t cap = 1 + (steps * 7919) % 70000;
				if (cap > wlen - glen)
					cap = wlen - glen;
				size_t k = webhook_body_fill(b, got + glen, cap);
				glen += k;
				steps++;
				/* Halfway through the first pass, curl starts over. */
				if (pass == 0 && glen > wlen / 2) {
					webhook_body_rewind(b);
					glen = 0;
					pass = 1;
				}
			}
			assert_int_equal(glen, wlen);
			assert_memory_equal(got, want, wlen);
		}
		free(got);
		free(want);
		webhook_body_free(b);
	}
	free(msg);
	json_decref(env);
}

static const char *hdr(const struct webhook_request *r, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < r->nheaders; i++)
		if (strncmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
			return r->headers[i] + n + 2;
	return NULL;
}

/* The k-th header called name (0-based), or NULL. */
static const char *hdr_nth(const struct webhook_request *r, const char *name, size_t k)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < r->nheaders; i++)
		if (strncmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':' && k-- == 0)
			return r->headers[i] + n + 2;
	return NULL;
}

static void test_build_json(void **state)
{
	(void)state;
	json_t *env =
	    json_loads("{\"id\":\"1.M2P3Q4.h\",\"mail_from\":\"a@x\",\"rcpt_to\":[\"b@y\","
	               "\"c@z\"],\"size\":6}",
	               0, NULL);
	assert_non_null(env);
	const char msg[] = "Return-Path: <a@x>\nhello\n";
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_JSON,
	                              .secret = "",
	                              .id = "1.M2P3Q4.h",
	                              .attempt = 3,
	                              .envelope = env,
	                              .fd = temp_file(msg, 25),
	                              .size = 25,
	                              .timestamp = 1700000000,
	                              .version = "9.9"};
	struct webhook_request r;
	assert_int_equal(webhook_build(&in, &r), 0);
	size_t len;
	char *raw = slurp(r.body, 1u << 16, &len);
	assert_int_equal(len, r.body->len);
	json_error_t e;
	json_t *body = json_loadb(raw, len, 0, &e);
	if (body == NULL)
		fail_msg("bad JSON %s: %.*s", e.text, (int)len, raw);
	assert_int_equal(json_object_size(body), 2);
	assert_true(json_equal(json_object_get(body, "envelope"), env));
	assert_string_equal(json_string_value(json_object_get(body, "raw")),
	                    "UmV0dXJuLVBhdGg6IDxhQHg+CmhlbGxvCg==");
	/* The envelope comes first, as the SPEC writes it. */
	assert_memory_equal(raw, "{\"envelope\":{\"id\":", 18);
	json_decref(body);
	assert_string_equal(hdr(&r, "Content-Type"), "application/json");
	assert_string_equal(hdr(&r, "X-Mailport-Id"), "1.M2P3Q4.h");
	assert_string_equal(hdr(&r, "X-Mailport-Attempt"), "3");
	assert_string_equal(hdr(&r, "User-Agent"), "mailport/9.9");
	assert_string_equal(hdr(&r, "Expect"), "");
	assert_null(hdr(&r, "X-Mailport-Signature"));
	assert_null(hdr(&r, "X-Mailport-Timestamp"));
	assert_null(hdr(&r, "X-Mailport-Mail-From"));
	/* The request owns the file: freeing it closes the descriptor. */
	webhook_request_free(&r);
	assert_true(fd_closed(in.fd));

	/* Signed: over "<timestamp>.<body>", exactly the bytes sent. */
	in.secret = "s3cret";
	in.fd = temp_file(msg, 25);
	assert_int_equal(webhook_build(&in, &r), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Timestamp"), "1700000000");
	char *raw2 = slurp(r.body, 3, &len);
	assert_int_equal(len, r.body->len);
	assert_memory_equal(raw2, raw, len);
	char want[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("s3cret", "1700000000", raw2, len, want), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Signature"), want);
	webhook_request_free(&r);
	free(raw);
	free(raw2);
	json_decref(env);
}

static void test_build_raw(void **state)
{
	(void)state;
	json_t *env =
	    json_loads("{\"id\":\"x\",\"mail_from\":\"\",\"rcpt_to\":[\"b@y\",\"c\\r\\nX: "
	               "1@z\"]}",
	               0, NULL);
	assert_non_null(env);
	const char msg[] = "Return-Path: <>\nSubject: s\n\nbody\n";
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_RAW,
	                              .secret = "k",
	                              .id = "x",
	                              .attempt = 1,
	                              .envelope = env,
	                              .fd = temp_file(msg, 33),
	                              .size = 33,
	                              .timestamp = 42,
	                              .version = "1"};
	struct webhook_request r;
	assert_int_equal(webhook_build(&in, &r), 0);
	size_t len;
	char *body = slurp(r.body, 1u << 16, &len);
	assert_int_equal(len, 33);
	assert_int_equal(r.body->len, 33);
	assert_memory_equal(body, "Return-Path: <>\nSubject: s\n\nbody\n", 33);
	assert_string_equal(hdr(&r, "Content-Type"), "message/rfc822");
	assert_string_equal(hdr(&r, "X-Mailport-Mail-From"), "");
	/* One header per recipient, and no header injection through an address. */
	assert_string_equal(hdr_nth(&r, "X-Mailport-Rcpt-To", 0), "b@y");
	assert_string_equal(hdr_nth(&r, "X-Mailport-Rcpt-To", 1), "c??X: 1@z");
	assert_null(hdr_nth(&r, "X-Mailport-Rcpt-To", 2));
	assert_string_equal(hdr(&r, "X-Mailport-Timestamp"), "42");
	char want[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("k", "42", body, len, want), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Signature"), want);
	webhook_request_free(&r);
	webhook_request_free(&r); /* twice is harmless */
	assert_true(fd_closed(in.fd));
	free(body);
	json_decref(env);
}

static char *fixture(const char *name, size_t *len)
{
	char path[4096];
	const char *src = getenv("MAILPORT_SOURCE_DIR");
	snprintf(path, sizeof path, "%s/tests/fixtures/mime/%s", src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = malloc(1u << 16);
	assert_non_null(buf);
	*len = fread(buf, 1, (1u << 16) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

/* Issue 17: SMTPD_WEBHOOK_FORMAT=parsed, the envelope, subject, text, html and
 * attachments with their decoded bytes in base64 (checked against the
 * attachment encoded here), signed over the body as sent. */
static void test_build_parsed(void **state)
{
	(void)state;
	json_t *env = test_envelope();
	size_t mlen, plen;
	char *msg = fixture("nested.eml", &mlen), *pdf = fixture("report.pdf.bin", &plen);
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_PARSED,
	                              .secret = "k",
	                              .id = "x",
	                              .attempt = 1,
	                              .envelope = env,
	                              .fd = temp_file(msg, mlen),
	                              .size = mlen,
	                              .timestamp = 42,
	                              .version = "1",
	                              .tmp_dir_fd = -1};
	struct webhook_request r;
	assert_int_equal(webhook_build(&in, &r), 0);
	assert_true(fd_closed(in.fd));
	assert_string_equal(hdr(&r, "Content-Type"), "application/json");
	size_t len;
	char *body = slurp(r.body, 1u << 20, &len);
	assert_int_equal(len, r.body->len);
	json_error_t e;
	json_t *j = json_loadb(body, len, 0, &e);
	if (j == NULL)
		fail_msg("not JSON: %s: %.300s", e.text, body);
	assert_true(json_equal(json_object_get(j, "envelope"), env));
	assert_string_equal(json_string_value(json_object_get(j, "subject")),
	                    "Nested caf\xc3\xa9 report");
	assert_non_null(strstr(json_string_value(json_object_get(j, "text")), "soft line break"));
	/* the HTML as sent: cid: left for the receiver to match with content_id */
	assert_non_null(strstr(json_string_value(json_object_get(j, "html")), "src=\"cid:logo@"));
	json_t *atts = json_object_get(j, "attachments");
	assert_int_equal(json_array_size(atts), 2);
	json_t *a = json_array_get(atts, 0);
	assert_string_equal(json_string_value(json_object_get(a, "filename")),
	                    "\xe2\x82\xac rates 2026.pdf");
	assert_int_equal(json_integer_value(json_object_get(a, "size")), (json_int_t)plen);
	char *want = malloc(plen / 3 * 4 + 8);
	assert_non_null(want);
	EVP_EncodeBlock((unsigned char *)want, (const unsigned char *)pdf, (int)plen);
	assert_string_equal(json_string_value(json_object_get(a, "content")), want);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(atts, 1), "content_id")),
	    "logo@mailport.test");
	char sig[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("k", "42", body, len, sig), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Signature"), sig);
	webhook_request_free(&r);
	json_decref(j);
	free(body);
	free(want);
	/* a message that is barely one: nulls and no attachments, still JSON */
	in.fd = temp_file("\n\n", 2);
	in.size = 2;
	assert_int_equal(webhook_build(&in, &r), 0);
	body = slurp(r.body, 1u << 16, &len);
	j = json_loadb(body, len, 0, &e);
	assert_non_null(j);
	assert_true(json_is_array(json_object_get(j, "attachments")));
	assert_int_equal(json_array_size(json_object_get(j, "attachments")), 0);
	assert_true(json_is_null(json_object_get(j, "html")));
	webhook_request_free(&r);
	json_decref(j);
	free(body);
	free(msg);
	free(pdf);
	json_decref(env);
}

/* Issue 14: a message of more than a megabyte, many chunks, streamed from its
 * file: the body is byte for byte the one built whole here, and the signature
 * is the HMAC computed here, independently, over those bytes. */
static void test_build_large(void **state)
{
	(void)state;
	json_t *env = test_envelope();
	size_t n = (1u << 20) + 1; /* not a multiple of 3 nor of the chunk */
	assert_true(n > 2 * WEBHOOK_CHUNK);
	unsigned char *msg = message(n);
	for (int f = 0; f < 2; f++) {
		enum config_webhook_format format = f ? CONFIG_WEBHOOK_RAW : CONFIG_WEBHOOK_JSON;
		size_t wlen;
		char *want = expected_body(format, env, msg, n, &wlen);
		struct webhook_build_in in = {.format = format,
		                              .secret = "wh-s3cret",
		                              .id = "1.M2P3Q4.h",
		                              .attempt = 2,
		                              .envelope = env,
		                              .fd = temp_file(msg, n),
		                              .size = n,
		                              .timestamp = 1700000123,
		                              .version = "1"};
		struct webhook_request r;
		assert_int_equal(webhook_build(&in, &r), 0);
		assert_int_equal(r.body->len, wlen);
		size_t glen;
		char *got = slurp(r.body, 65536, &glen);
		assert_int_equal(glen, wlen);
		assert_memory_equal(got, want, wlen);

		/* HMAC-SHA256(secret, "1700000123." + body), by OpenSSL's one-shot HMAC(). */
		char *signed_text = malloc(11 + wlen);
		assert_non_null(signed_text);
		memcpy(signed_text, "1700000123.", 11);
		memcpy(signed_text + 11, want, wlen);
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;
		assert_non_null(HMAC(EVP_sha256(), "wh-s3cret", 9, (unsigned char *)signed_text,
		                     11 + wlen, md, &mdlen));
		assert_int_equal(mdlen, 32);
		char hex[WEBHOOK_SIGNATURE_MAX] = "sha256=";
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(hex + 7 + 2 * i, 3, "%02x", md[i]);
		assert_string_equal(hdr(&r, "X-Mailport-Signature"), hex);
		assert_string_equal(hdr(&r, "X-Mailport-Timestamp"), "1700000123");
		assert_string_equal(hdr(&r, "Content-Type"),
		                    f ? "message/rfc822" : "application/json");
		free(signed_text);
		free(got);
		free(want);
		webhook_request_free(&r);
		assert_true(fd_closed(in.fd));
	}
	free(msg);
	json_decref(env);
}

/* A file shorter than it should be (it never is, in the spool) is an error,
 * never a short body under a longer Content-Length; the descriptor is closed
 * whatever happens. */
static void test_build_short_file(void **state)
{
	(void)state;
	json_t *env = test_envelope();
	unsigned char *msg = message(3 * WEBHOOK_CHUNK);
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_JSON,
	                              .secret = "k",
	                              .id = "x",
	                              .attempt = 1,
	                              .envelope = env,
	                              .fd = temp_file(msg, 3 * WEBHOOK_CHUNK),
	                              .size = 3 * WEBHOOK_CHUNK + 1,
	                              .timestamp = 1,
	                              .version = "1"};
	struct webhook_request r;
	/* Signed: the first pass finds it. */
	assert_int_equal(webhook_build(&in, &r), -EIO);
	assert_true(fd_closed(in.fd));
	assert_null(r.body);
	/* Unsigned: the first chunk is fine, the last one is not there. */
	in.secret = "";
	in.fd = temp_file(msg, 3 * WEBHOOK_CHUNK);
	assert_int_equal(webhook_build(&in, &r), 0);
	char *buf = malloc(1u << 20);
	assert_non_null(buf);
	int64_t k;
	while ((k = webhook_body_read(r.body, buf, 1u << 20)) > 0)
		;
	assert_int_equal(k, -EIO);
	free(buf);
	webhook_request_free(&r);
	assert_true(fd_closed(in.fd));
	/* Not even the first chunk. */
	in.fd = temp_file(msg, 10);
	in.size = 11;
	assert_int_equal(webhook_build(&in, &r), -EIO);
	assert_true(fd_closed(in.fd));
	free(msg);
	json_decref(env);
}

static void test_reason(void **state)
{
	(void)state;
	char out[256];
	webhook_reason(400, "HTTP/1.1 400 Bad Request\r\n", NULL, 0, out, sizeof out);
	assert_string_equal(out, "HTTP 400 Bad Request");
	webhook_reason(400, "HTTP/2 400\r\n", "{\"error\":\"no\"}\n", 15, out, sizeof out);
	assert_string_equal(out, "HTTP 400: {\"error\":\"no\"}");
	webhook_reason(503, "HTTP/1.0 503 Service Unavailable\r\n", "a\r\nb\x01", 5, out,
	               sizeof out);
	assert_string_equal(out, "HTTP 503 Service Unavailable: a  b?");
	webhook_reason(500, NULL, NULL, 0, out, sizeof out);
	assert_string_equal(out, "HTTP 500");
	webhook_reason(500, "HTTP/1.1 500 Internal Server Error", "xxxxxxxxxx", 10, out, 16);
	assert_int_equal(strlen(out), 15);
}

static void test_parse_time(void **state)
{
	(void)state;
	int64_t t;
	assert_int_equal(webhook_parse_time("2023-11-14T22:13:20Z", &t), 0);
	assert_int_equal(t, 1700000000);
	assert_int_equal(webhook_parse_time("2023-11-14T22:13:20.999Z", &t), 0);
	assert_int_equal(t, 1700000000);
	assert_int_equal(webhook_parse_time("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(webhook_parse_time("yesterday", &t), -1);
	assert_int_equal(webhook_parse_time("2023-11-14 22:13:20", &t), -1);
	assert_int_equal(webhook_parse_time(NULL, &t), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff),     cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_sign),        cmocka_unit_test(test_body_sizes),
	    cmocka_unit_test(test_body_stream), cmocka_unit_test(test_build_json),
	    cmocka_unit_test(test_build_raw),   cmocka_unit_test(test_build_parsed),
	    cmocka_unit_test(test_build_large), cmocka_unit_test(test_build_short_file),
	    cmocka_unit_test(test_reason),      cmocka_unit_test(test_parse_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
