/* natspub_build (SPEC 9): SMTPD_NATS_URL lists, header values, the bound on
 * what headers add to a message (checked against the server's max_payload). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natspub_build.h"

static void test_urls_good(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t n;
		const char *first, *last;
		bool tls;
	} cases[] = {
	    {"nats://127.0.0.1:4222", 1, "nats://127.0.0.1:4222", "nats://127.0.0.1:4222", false},
	    {" nats://a:1 , tls://b:2,NATS://c ", 3, "nats://a:1", "NATS://c", true},
	    {"tls://user:pw@nats.example:4443", 1, "tls://user:pw@nats.example:4443",
	     "tls://user:pw@nats.example:4443", true},
	    {"nats://[::1]:4222", 1, "nats://[::1]:4222", "nats://[::1]:4222", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *urls[NATSPUB_MAX_URLS];
		size_t n = 99;
		char err[128] = "";
		int rc = natspub_urls_parse(cases[i].in, urls, &n, err, sizeof err);
		if (rc != 0 || n != cases[i].n)
			fail_msg("in=%s got rc=%d n=%zu err=%s want n=%zu", cases[i].in, rc, n, err,
			         cases[i].n);
		assert_string_equal(urls[0], cases[i].first);
		assert_string_equal(urls[n - 1], cases[i].last);
		assert_int_equal(natspub_urls_tls(urls, n), cases[i].tls);
		natspub_urls_free(urls, n);
	}
}

static void test_urls_empty(void **state)
{
	(void)state;
	char *urls[NATSPUB_MAX_URLS];
	size_t n = 5;
	char err[64];
	assert_int_equal(natspub_urls_parse("", urls, &n, err, sizeof err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(natspub_urls_parse("   ", urls, &n, err, sizeof err), 0);
	assert_int_equal(n, 0);
}

static void test_urls_bad(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *why;
	} cases[] = {
	    {"http://a:4222", "item 1: not a nats:// or tls:// URL"},
	    {"nats://a,,nats://b", "item 2: an empty item"},
	    {"nats://a,", "item 2: an empty item"},
	    {"nats://", "item 1: no host"},
	    {"nats://:4222", "item 1: no host"},
	    {"nats://a b", "item 1: a blank or control character inside a URL"},
	    {"a:4222", "item 1: not a nats:// or tls:// URL"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *urls[NATSPUB_MAX_URLS];
		size_t n = 7;
		char err[128] = "";
		int rc = natspub_urls_parse(cases[i].in, urls, &n, err, sizeof err);
		if (rc != -1 || strcmp(err, cases[i].why) != 0 || n != 0)
			fail_msg("in=%s got rc=%d err=%s want %s", cases[i].in, rc, err,
			         cases[i].why);
	}
	/* The password in a bad list never reaches the message. */
	char *urls[NATSPUB_MAX_URLS];
	size_t n;
	char err[128];
	assert_int_equal(natspub_urls_parse("nats://u:secret@a,ftp://x", urls, &n, err, sizeof err),
	                 -1);
	assert_null(strstr(err, "secret"));
}

static void test_urls_too_many(void **state)
{
	(void)state;
	char list[NATSPUB_MAX_URLS * 16 + 32] = "";
	for (int i = 0; i <= NATSPUB_MAX_URLS; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%snats://h%d",
		         i ? "," : "", i);
	char *urls[NATSPUB_MAX_URLS];
	size_t n;
	char err[128];
	assert_int_equal(natspub_urls_parse(list, urls, &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "too many"));
	/* Exactly the maximum is fine. */
	*strrchr(list, ',') = '\0';
	assert_int_equal(natspub_urls_parse(list, urls, &n, err, sizeof err), 0);
	assert_int_equal(n, NATSPUB_MAX_URLS);
	natspub_urls_free(urls, n);
}

static void test_header_value(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"a@example.org", "a@example.org"},
	    {"", ""},
	    {"x\r\nBcc: evil@x", "x??Bcc: evil@x"},
	    {"tab\there\x7f", "tab?here?"},
	    {"\xc3\xa9@\xc3\xa9.example", "\xc3\xa9@\xc3\xa9.example"}, /* UTF-8 kept */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *v = natspub_header_value(cases[i].in);
		assert_non_null(v);
		if (strcmp(v, cases[i].want) != 0)
			fail_msg("in=%s got=%s want=%s", cases[i].in, v, cases[i].want);
		free(v);
	}
	char *v = natspub_header_value(NULL);
	assert_string_equal(v, "");
	free(v);
}

static void test_url_redact(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
	    {"nats://u:p@127.0.0.1:4222", "nats://127.0.0.1:4222"},
	    {"tls://token@nats.example:4443", "tls://nats.example:4443"},
	    {"nats://u:p@ss@h:1", "nats://h:1"},
	    {"nats://h:1/x@y", "nats://h:1/x@y"},
	    {"h:1", "h:1"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[64];
		natspub_url_redact(cases[i].in, out, sizeof out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("in=%s got=%s want=%s", cases[i].in, out, cases[i].want);
	}
}

static void test_overhead(void **state)
{
	(void)state;
	/* Grows with the recipients, never overflows. */
	assert_true(natspub_overhead(1) < natspub_overhead(100));
	assert_int_equal(natspub_overhead(100) - natspub_overhead(99), 1024);
	assert_true(natspub_overhead(0) >= 4096);
	assert_int_equal(natspub_overhead(UINT64_MAX), UINT64_MAX);
	/* 100 recipients of 256 bytes, each twice, fit. */
	assert_true(natspub_overhead(100) >= 100 * 2 * 256 + 2048);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_urls_good),    cmocka_unit_test(test_urls_empty),
	    cmocka_unit_test(test_urls_bad),     cmocka_unit_test(test_urls_too_many),
	    cmocka_unit_test(test_header_value), cmocka_unit_test(test_overhead),
	    cmocka_unit_test(test_url_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
