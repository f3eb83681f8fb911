/* Tests for the webhook's pure parts (SPEC 5): backoff with jitter, the
 * classification of answers, the HMAC signature, base64 over split buffers,
 * the JSON and raw request bodies and headers, failure reasons, and the time
 * format of the envelope. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "webhook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void test_base64(void **state)
{
	(void)state;
	const char *msg = "Return-Path: <a@x>\nhello\n";
	const char *want = "UmV0dXJuLVBhdGg6IDxhQHg+CmhlbGxvCg==";
	size_t n = strlen(msg);
	char out[128];
	/* Every split into two parts, and into three, gives the same text. */
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			uv_buf_t parts[3] = {uv_buf_init((char *)msg, (unsigned)i),
			                     uv_buf_init((char *)msg + i, (unsigned)(j - i)),
			                     uv_buf_init((char *)msg + j, (unsigned)(n - j))};
			size_t len = webhook_base64(parts, 3, out);
			out[len] = '\0';
			assert_string_equal(out, want);
		}
	}
	uv_buf_t none = uv_buf_init((char *)"", 0);
	assert_int_equal(webhook_base64(&none, 1, out), 0);
	uv_buf_t one = uv_buf_init((char *)"f", 1), two = uv_buf_init((char *)"fo", 2);
	out[webhook_base64(&one, 1, out)] = '\0';
	assert_string_equal(out, "Zg==");
	out[webhook_base64(&two, 1, out)] = '\0';
	assert_string_equal(out, "Zm8=");
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
	uv_buf_t parts[2] = {uv_buf_init((char *)"Return-Path: <a@x>\n", 19),
	                     uv_buf_init((char *)"hello\n", 6)};
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_JSON,
	                              .secret = "",
	                              .id = "1.M2P3Q4.h",
	                              .attempt = 3,
	                              .envelope = env,
	                              .parts = parts,
	                              .nparts = 2,
	                              .timestamp = 1700000000,
	                              .version = "9.9"};
	struct webhook_request r;
	assert_int_equal(webhook_build(&in, &r), 0);
	json_error_t e;
	json_t *body = json_loadb(r.body, r.len, 0, &e);
	if (body == NULL)
		fail_msg("bad JSON %s: %.*s", e.text, (int)r.len, r.body);
	assert_int_equal(json_object_size(body), 2);
	assert_true(json_equal(json_object_get(body, "envelope"), env));
	assert_string_equal(json_string_value(json_object_get(body, "raw")),
	                    "UmV0dXJuLVBhdGg6IDxhQHg+CmhlbGxvCg==");
	/* The envelope comes first, as the SPEC writes it. */
	assert_memory_equal(r.body, "{\"envelope\":{\"id\":", 18);
	json_decref(body);
	assert_string_equal(hdr(&r, "Content-Type"), "application/json");
	assert_string_equal(hdr(&r, "X-Mailport-Id"), "1.M2P3Q4.h");
	assert_string_equal(hdr(&r, "X-Mailport-Attempt"), "3");
	assert_string_equal(hdr(&r, "User-Agent"), "mailport/9.9");
	assert_string_equal(hdr(&r, "Expect"), "");
	assert_null(hdr(&r, "X-Mailport-Signature"));
	assert_null(hdr(&r, "X-Mailport-Timestamp"));
	assert_null(hdr(&r, "X-Mailport-Mail-From"));
	webhook_request_free(&r);

	/* Signed: over "<timestamp>.<body>", exactly the bytes sent. */
	in.secret = "s3cret";
	assert_int_equal(webhook_build(&in, &r), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Timestamp"), "1700000000");
	char want[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("s3cret", "1700000000", r.body, r.len, want), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Signature"), want);
	webhook_request_free(&r);
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
	uv_buf_t parts[2] = {uv_buf_init((char *)"Return-Path: <>\n", 16),
	                     uv_buf_init((char *)"Subject: s\n\nbody\n", 17)};
	struct webhook_build_in in = {.format = CONFIG_WEBHOOK_RAW,
	                              .secret = "k",
	                              .id = "x",
	                              .attempt = 1,
	                              .envelope = env,
	                              .parts = parts,
	                              .nparts = 2,
	                              .timestamp = 42,
	                              .version = "1"};
	struct webhook_request r;
	assert_int_equal(webhook_build(&in, &r), 0);
	assert_int_equal(r.len, 33);
	assert_memory_equal(r.body, "Return-Path: <>\nSubject: s\n\nbody\n", 33);
	assert_string_equal(hdr(&r, "Content-Type"), "message/rfc822");
	assert_string_equal(hdr(&r, "X-Mailport-Mail-From"), "");
	/* One header per recipient, and no header injection through an address. */
	assert_string_equal(hdr_nth(&r, "X-Mailport-Rcpt-To", 0), "b@y");
	assert_string_equal(hdr_nth(&r, "X-Mailport-Rcpt-To", 1), "c??X: 1@z");
	assert_null(hdr_nth(&r, "X-Mailport-Rcpt-To", 2));
	assert_string_equal(hdr(&r, "X-Mailport-Timestamp"), "42");
	char want[WEBHOOK_SIGNATURE_MAX];
	assert_int_equal(webhook_sign("k", "42", r.body, r.len, want), 0);
	assert_string_equal(hdr(&r, "X-Mailport-Signature"), want);
	webhook_request_free(&r);
	webhook_request_free(&r); /* twice is harmless */
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
	    cmocka_unit_test(test_backoff),    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_sign),       cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_build_json), cmocka_unit_test(test_build_raw),
	    cmocka_unit_test(test_reason),     cmocka_unit_test(test_parse_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
