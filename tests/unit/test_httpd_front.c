/* The side port's pure parts: how the health front door classifies a request
 * head (httpd_front_classify) and which Host header a side port without a
 * token answers (httpd_host_allowed, SPEC 3). test_httpd.c runs the server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "httpd.h"
#include "httpd_front.h"

static enum httpd_front_verdict classify(const char *s, char *path, int *head)
{
	return httpd_front_classify(s, strlen(s), 64, path, head);
}

static void test_front_classify(void **state)
{
	(void)state;
	char path[16];
	int head = -1;
	assert_int_equal(classify("GET /livez HTTP/1.1\r\n", path, &head), HTTPD_FRONT_HEALTH);
	assert_string_equal(path, "/livez");
	assert_int_equal(head, 0);
	assert_int_equal(classify("HEAD /readyz HTTP/1.0\n\n", path, &head), HTTPD_FRONT_HEALTH);
	assert_string_equal(path, "/readyz");
	assert_int_equal(head, 1);
	assert_int_equal(classify("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", path, &head),
	                 HTTPD_FRONT_HEALTH);
	/* Not yet a whole request line. */
	assert_int_equal(classify("GET /livez HTTP/1.1", path, &head), HTTPD_FRONT_WAIT);
	assert_int_equal(classify("", path, &head), HTTPD_FRONT_WAIT);
	/* Other routes, methods, forms and versions wait for their whole head,
	 * then go to libmicrohttpd. */
	assert_int_equal(classify("GET /status HTTP/1.1\r\nHost: x\r\n", path, &head),
	                 HTTPD_FRONT_WAIT);
	assert_int_equal(classify("GET /status HTTP/1.1\r\nHost: x\r\n\r\n", path, &head),
	                 HTTPD_FRONT_PASS);
	assert_int_equal(classify("POST /livez HTTP/1.1\r\n\r\n", path, &head), HTTPD_FRONT_PASS);
	assert_int_equal(classify("GET /livez?x=1 HTTP/1.1\r\n\r\n", path, &head),
	                 HTTPD_FRONT_PASS);
	assert_int_equal(classify("GET /livezz HTTP/1.1\r\n\r\n", path, &head), HTTPD_FRONT_PASS);
	assert_int_equal(classify("GET /livez HTTP/2.0\r\n\r\n", path, &head), HTTPD_FRONT_PASS);
	assert_int_equal(classify("GET  /livez HTTP/1.1\r\n\r\n", path, &head), HTTPD_FRONT_PASS);
	/* A raw control octet anywhere in the request line. */
	assert_int_equal(httpd_front_classify("GET /livez\0 HTTP/1.1\r\n", 22, 64, path, &head),
	                 HTTPD_FRONT_BAD);
	assert_int_equal(classify("GET /messages/x\x01 HTTP/1.1\r\n", path, &head),
	                 HTTPD_FRONT_BAD);
	assert_int_equal(classify("GET /\x7f HTTP/1.1\n", path, &head), HTTPD_FRONT_BAD);
	assert_int_equal(classify("GET /messages/x%00.json HTTP/1.1\n", path, &head),
	                 HTTPD_FRONT_BAD);
	assert_int_equal(classify("GET /m?limit=%1f HTTP/1.1\n", path, &head), HTTPD_FRONT_BAD);
	assert_int_equal(classify("DELETE /messages/x%7F HTTP/1.1\n", path, &head),
	                 HTTPD_FRONT_BAD);
	assert_int_equal(classify("GET /m%20x%41%2f HTTP/1.1\n\n", path, &head), HTTPD_FRONT_PASS);
	/* A probe with a body is libmicrohttpd's to read, body and all. */
	assert_int_equal(
	    classify("GET /livez HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", path, &head),
	    HTTPD_FRONT_PASS);
	assert_int_equal(
	    classify("GET /livez HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", path, &head),
	    HTTPD_FRONT_PASS);
	assert_int_equal(classify("GET /livez HTTP/1.1\r\nContent-Length: 0\r\n\r\n", path, &head),
	                 HTTPD_FRONT_HEALTH);
	/* A head longer than the peek is passed on whole or not: libmicrohttpd refuses it. */
	char big[80];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memcpy(big, "GET /status HTTP/1.1\r\nX: ", 25);
	assert_int_equal(classify(big, path, &head), HTTPD_FRONT_PASS);
	memcpy(big, "GET /status", 11);
	memset(big + 11, 'a', sizeof big - 12);
	assert_int_equal(classify(big, path, &head), HTTPD_FRONT_PASS);
}

/* SPEC 3: which Host a side port without a token answers (DNS rebinding). */
static void test_host_allowed(void **state)
{
	(void)state;
	const char *list = "mail.example.org, *.svc.cluster.local ,";
	static const char *const yes[] = {NULL,
	                                  "127.0.0.1",
	                                  "127.0.0.1:8080",
	                                  "[::1]:8080",
	                                  "[::1]",
	                                  "10.1.2.3:8080",
	                                  "localhost",
	                                  "LOCALHOST:8080",
	                                  "localhost.",
	                                  "mail.example.org",
	                                  "Mail.Example.Org:80",
	                                  "mailport.ns.svc.cluster.local:8080"};
	static const char *const no[] = {"",
	                                 "evil.example",
	                                 "evil.example:8080",
	                                 "127.0.0.1.evil.example",
	                                 "localhost.evil.example",
	                                 "svc.cluster.local",
	                                 "xmail.example.org",
	                                 "[::1",
	                                 "[::1]x",
	                                 ":8080",
	                                 "example.org"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (!httpd_host_allowed(yes[i], list))
			fail_msg("refused %s", yes[i] ? yes[i] : "(none)");
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (httpd_host_allowed(no[i], list))
			fail_msg("allowed %s", no[i]);
	assert_false(httpd_host_allowed("mail.example.org", ""));
	assert_true(httpd_host_allowed("127.0.0.1", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_front_classify),
	    cmocka_unit_test(test_host_allowed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
