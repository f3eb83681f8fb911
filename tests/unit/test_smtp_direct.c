/* Direct tests of the pure SMTP core for what golden transcripts cannot
 * express (test_smtp_proto.c replays the transcripts): output backpressure,
 * resume semantics, huge BDAT chunks streamed, NUL bytes, real clients' MAIL
 * parameters, line limits, a failing body sink, the core's life cycle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "smtp_proto.h"

/* ----------------------------------------------------------- direct tests */

struct direct {
	struct smtp_proto *p;
	struct buf out;
	uint64_t body_len;
	struct buf body;
	bool keep_body;
	int fail_body; /* the body sink fails from this call on (0: never) */
	int body_calls;
};

static int direct_body(void *ctx, const char *data, size_t len)
{
	struct direct *d = ctx;
	d->body_calls++;
	if (d->fail_body && d->body_calls >= d->fail_body)
		return -1;
	d->body_len += len;
	if (d->keep_body)
		assert_int_equal(buf_append(&d->body, data, len), 0);
	return 0;
}

static void direct_init_ex(struct direct *d, uint64_t max_size, unsigned max_rcpt,
                           uint64_t line_max)
{
	memset(d, 0, sizeof *d);
	buf_init(&d->out, 0);
	buf_init(&d->body, 0);
	d->keep_body = true;
	/* The direct tests check RFC 5321's 1000-octet line limit
	 * (SMTPD_MAX_LINE_LENGTH=1000); test_long_line_unlimited the default. */
	struct smtp_proto_config cfg = {.hostname = "mx.example",
	                                .max_message_size = max_size,
	                                .max_recipients = max_rcpt,
	                                .max_line_length = line_max};
	struct smtp_proto_sink sink = {.ctx = d, .body = direct_body};
	d->p = smtp_proto_new(&cfg, &sink);
	assert_non_null(d->p);
	smtp_proto_greet(d->p);
}

static void direct_init(struct direct *d, uint64_t max_size, unsigned max_rcpt)
{
	direct_init_ex(d, max_size, max_rcpt, 1000);
}

static void direct_drain(struct direct *d)
{
	const char *o;
	size_t n = smtp_proto_output(d->p, &o);
	assert_int_equal(buf_append(&d->out, o, n), 0);
	smtp_proto_output_consume(d->p, n);
}

/* Feed a string whole; returns what feed() consumed. Output is collected. */
static size_t direct_feed(struct direct *d, const char *s)
{
	size_t n = smtp_proto_feed(d->p, s, strlen(s));
	direct_drain(d);
	return n;
}

static void direct_expect(struct direct *d, const char *want)
{
	assert_int_equal(buf_append(&d->out, "", 1), 0);
	assert_string_equal(d->out.data, want);
	buf_reset(&d->out);
}

static void direct_free(struct direct *d)
{
	smtp_proto_free(d->p);
	buf_free(&d->out);
	buf_free(&d->body);
}

#define GREETING "220 mx.example ESMTP mailport\r\n"
#define EHLO_REPLY                                                                                 \
	"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"                   \
	"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"

static void direct_ehlo(struct direct *d)
{
	direct_feed(d, "EHLO client.example\r\n");
	direct_expect(d, GREETING EHLO_REPLY);
}

/* A client that pipelines without reading its replies: feed() stops once the
 * output passes the high-water mark, and goes on after it is flushed. */
static void test_backpressure(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	const size_t count = 5000;
	struct buf in;
	buf_init(&in, 0);
	for (size_t i = 0; i < count; i++)
		assert_int_equal(buf_append(&in, "NOOP\r\n", 6), 0);
	size_t n = smtp_proto_feed(d.p, in.data, in.len);
	assert_true(n < in.len);
	assert_true(n > 0);
	const char *o;
	assert_true(smtp_proto_output(d.p, &o) > SMTP_PROTO_OUTPUT_HIGH);
	/* Without a flush nothing more is taken. */
	assert_int_equal(smtp_proto_feed(d.p, in.data + n, in.len - n), 0);
	size_t off = n;
	while (off < in.len) {
		direct_drain(&d);
		size_t k = smtp_proto_feed(d.p, in.data + off, in.len - off);
		assert_true(k > 0);
		off += k;
	}
	direct_drain(&d);
	assert_int_equal(d.out.len, count * strlen("250 2.0.0 Ok\r\n"));
	buf_free(&in);
	direct_free(&d);
}

static void test_resume_semantics(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	/* Greeted and EHLO done: reading commands, no transaction yet. */
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_NONE);
	assert_string_equal(smtp_proto_helo(d.p), "client.example");
	assert_true(smtp_proto_esmtp(d.p));
	assert_false(smtp_proto_in_transaction(d.p));
	assert_false(smtp_proto_in_data(d.p));
	assert_false(smtp_proto_closing(d.p));
	const char *in = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n"
	                 "Hi\r\n..dot\r\n.\r\nMAIL FROM:<>\r\n";
	size_t n = direct_feed(&d, in);
	/* feed() stops right after the terminator. */
	assert_int_equal(n, strstr(in, ".\r\nMAIL FROM:<>") + 3 - in);
	/* The message is complete: out of DATA, the transaction open until resume(). */
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	assert_false(smtp_proto_in_data(d.p));
	assert_true(smtp_proto_in_transaction(d.p));
	assert_false(smtp_proto_closing(d.p));
	direct_expect(&d, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
	                  "<CR><LF>.<CR><LF>\r\n");
	/* While pending: nothing is consumed, the envelope is readable. */
	assert_int_equal(smtp_proto_feed(d.p, in + n, strlen(in + n)), 0);
	assert_string_equal(smtp_proto_mail_from(d.p), "a@x");
	assert_int_equal(smtp_proto_rcpt_count(d.p), 2);
	assert_string_equal(smtp_proto_rcpt(d.p, 1), "c@y");
	assert_null(smtp_proto_rcpt(d.p, 2));
	assert_true(smtp_proto_in_transaction(d.p));
	assert_int_equal(smtp_proto_message_size(d.p), strlen("Hi\r\n.dot\r\n"));
	assert_int_equal(d.body.len, 8);
	assert_memory_equal(d.body.data, "Hi\n.dot\n", 8);
	smtp_proto_resume(d.p, 250, "2.0.0", "Ok: queued as X");
	direct_drain(&d);
	direct_expect(&d, "250 2.0.0 Ok: queued as X\r\n");
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_NONE);
	assert_false(smtp_proto_in_transaction(d.p));
	assert_int_equal(smtp_proto_rcpt_count(d.p), 0);
	assert_string_equal(smtp_proto_mail_from(d.p), "");
	/* A resume with nothing pending is ignored. */
	smtp_proto_resume(d.p, 250, "2.0.0", "again");
	direct_drain(&d);
	direct_expect(&d, "");
	/* The rest is fed again by the adapter; a 4xx also ends the transaction. */
	direct_feed(&d, in + n);
	direct_expect(&d, "250 2.1.0 Ok\r\n");
	direct_feed(&d, "RCPT TO:<b@y>\r\nDATA\r\n.\r\n");
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	assert_int_equal(smtp_proto_message_size(d.p), 0);
	smtp_proto_resume(d.p, 451, "4.3.0", "Try again later");
	direct_drain(&d);
	direct_expect(&d, "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	                  "451 4.3.0 Try again later\r\n");
	assert_false(smtp_proto_in_transaction(d.p));
	/* Out-of-range codes and hostile text are made safe. */
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\n");
	smtp_proto_resume(d.p, 99, NULL, "x");
	direct_drain(&d);
	direct_expect(&d, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	                  "451 4.3.0 Error: internal error\r\n");
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\n");
	smtp_proto_resume(d.p, 554, NULL, "evil\r\n250 injected");
	direct_drain(&d);
	direct_expect(&d, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	                  "554 evil??250 injected\r\n");
	direct_free(&d);
}

/* A BDAT count far beyond anything that could be buffered is streamed. */
static void test_bdat_huge_streamed(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, UINT64_MAX, 5);
	d.keep_body = false;
	direct_feed(&d, "EHLO c\r\n");
	direct_feed(&d, "MAIL FROM:<a@x>\r\n");
	buf_reset(&d.out);
	assert_int_equal(direct_feed(&d, "MAIL FROM:<a@x>\r\n"), 17); /* nested */
	direct_feed(&d, "RCPT TO:<b@y>\r\nBDAT 1000000000000 LAST\r\n");
	assert_true(smtp_proto_in_data(d.p));
	static char chunk[65536];
	memset(chunk, 'x', sizeof chunk);
	for (size_t i = 0; i < sizeof chunk; i += 100)
		chunk[i] = '\n';
	for (int i = 0; i < 256; i++) /* 16 MiB */
		assert_int_equal(smtp_proto_feed(d.p, chunk, sizeof chunk), sizeof chunk);
	assert_int_equal(d.body_len, 256u * sizeof chunk);
	assert_true(smtp_proto_in_data(d.p));
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_NONE);
	smtp_proto_timeout(d.p);
	direct_drain(&d);
	assert_true(smtp_proto_closing(d.p));
	direct_expect(&d, "503 5.5.1 Error: nested MAIL command\r\n250 2.1.5 Ok\r\n"
	                  "421 4.4.2 mx.example Error: timeout exceeded\r\n");
	direct_free(&d);

	/* Over the limit: read and discarded without touching the sink. */
	direct_init(&d, 100, 5);
	direct_feed(&d, "EHLO c\r\n");
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 18446744073709551615\r\n");
	for (int i = 0; i < 64; i++)
		assert_int_equal(smtp_proto_feed(d.p, chunk, sizeof chunk), sizeof chunk);
	assert_int_equal(d.body_calls, 0);
	assert_true(smtp_proto_in_data(d.p));
	direct_free(&d);

	/* A count that does not fit in 64 bits is a syntax error. */
	direct_init(&d, 100, 5);
	direct_feed(&d, "EHLO c\r\n");
	buf_reset(&d.out);
	direct_feed(&d, "BDAT 18446744073709551616\r\nBDAT -1\r\nBDAT 1 LAST x\r\n");
	direct_expect(&d, "501 5.5.4 Syntax: BDAT count [LAST]\r\n501 5.5.4 Syntax: BDAT count "
	                  "[LAST]\r\n501 5.5.4 Syntax: BDAT count [LAST]\r\n");
	direct_free(&d);
}

static void test_nul_bytes(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	static const char in[] = "NO\0OP\r\nMAIL FROM:<a\0@x>\r\n\0\r\nMAIL FROM:<a@x>\r\n"
	                         "RCPT TO:<b@y>\r\nDATA\r\na\0b\r\n.\r\n";
	size_t n = smtp_proto_feed(d.p, in, sizeof in - 1);
	assert_int_equal(n, sizeof in - 1);
	direct_drain(&d);
	direct_expect(&d,
	              "500 5.5.2 Error: invalid character in command\r\n"
	              "500 5.5.2 Error: invalid character in command\r\n"
	              "500 5.5.2 Error: invalid character in command\r\n"
	              "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	/* Content is 8-bit clean: a NUL reaches the sink as it is. */
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	assert_int_equal(d.body.len, 4);
	assert_memory_equal(d.body.data, "a\0b\n", 4);
	direct_free(&d);
}

/* MAIL parameters real clients send (issue 13): AUTH= (RFC 4954 5, Jakarta
 * Mail's submitter, Perl's Net::SMTP) when AUTH is offered, kept only for an
 * authenticated session; a parameter repeated with the same meaning (Python's
 * smtplib doubles SMTPUTF8); conflicting repeats stay 501. */
static void test_mail_params_real_clients(void **state)
{
	(void)state;
	struct direct d;
	memset(&d, 0, sizeof d);
	buf_init(&d.out, 0);
	buf_init(&d.body, 0);
	struct smtp_proto_config cfg = {.hostname = "mx.example",
	                                .max_message_size = 10000,
	                                .max_recipients = 5,
	                                .auth = SMTP_AUTH_OPTIONAL,
	                                .auth_insecure = true};
	struct smtp_proto_sink sink = {.ctx = &d, .body = direct_body};
	d.p = smtp_proto_new(&cfg, &sink);
	assert_non_null(d.p);
	smtp_proto_greet(d.p);
	direct_feed(&d, "EHLO client.example\r\n");
	buf_reset(&d.out);
	static const struct {
		const char *cmd, *reply;
	} cases[] = {
	    {"MAIL FROM:<a@b.example> AUTH=<>", "250 2.1.0 Ok"},
	    {"MAIL FROM:<a@b.example> AUTH=e+2Bmc2@example.com", "250 2.1.0 Ok"},
	    {"MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8", "250 2.1.0 Ok"},
	    {"MAIL FROM:<a@b.example> BODY=8BITMIME body=8bitmime SIZE=10 SIZE=10", "250 2.1.0 Ok"},
	    {"MAIL FROM:<a@b.example> AUTH=<> AUTH=<>", "250 2.1.0 Ok"},
	    {"MAIL FROM:<a@b.example> BODY=7BIT BODY=8BITMIME", "501 5.5.4 Bad BODY parameter"},
	    {"MAIL FROM:<a@b.example> SIZE=10 SIZE=11", "501 5.5.4 Bad SIZE parameter"},
	    {"MAIL FROM:<a@b.example> AUTH=a+zz", "501 5.5.4 Bad AUTH parameter"},
	    {"MAIL FROM:<a@b.example> AUTH=a+0D+0A", "501 5.5.4 Bad AUTH parameter"},
	    {"MAIL FROM:<a@b.example> AUTH=<> AUTH=x@y", "501 5.5.4 Bad AUTH parameter"},
	    {"MAIL FROM:<a@b.example> AUTH", "501 5.5.4 Bad AUTH parameter"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char line[256], want[256];
		snprintf(line, sizeof line, "%s\r\n", cases[i].cmd);
		snprintf(want, sizeof want, "%s\r\n", cases[i].reply);
		direct_feed(&d, line);
		if (strncmp(cases[i].reply, "250", 3) == 0) {
			/* Not authenticated: AUTH= is taken but kept as "<>". */
			assert_string_equal(smtp_proto_auth_param(d.p), "");
			direct_feed(&d, "RSET\r\n");
			snprintf(want + strlen(want), sizeof want - strlen(want),
			         "250 2.0.0 Ok\r\n");
		}
		direct_expect(&d, want);
	}
	direct_free(&d);
	/* With AUTH off the parameter is not ours: 555, as before. */
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	direct_feed(&d, "MAIL FROM:<a@b.example> AUTH=<>\r\n");
	direct_expect(&d, "555 5.5.4 Unsupported option: AUTH\r\n");
	direct_free(&d);
}

/* SMTPD_MAX_LINE_LENGTH=0 (the default): a 5,000-octet line, in DATA and in
 * BDAT, is stored byte-exact (issue 13: badly made HTML mail is common). */
static void test_long_line_unlimited(void **state)
{
	(void)state;
	struct direct d;
	direct_init_ex(&d, 10000, 5, 0);
	direct_ehlo(&d);
	static char line[5000 + 8];
	for (size_t i = 0; i < 5000; i++)
		line[i] = (char)('a' + i % 26);
	memcpy(line + 5000, "\r\n.\r\n", 6);
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
	direct_feed(&d, line);
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	assert_int_equal(d.body.len, 5001);
	assert_memory_equal(d.body.data, line, 5000);
	assert_int_equal(d.body.data[5000], '\n');
	smtp_proto_resume(d.p, 250, "2.0.0", "Ok");
	direct_drain(&d);
	direct_free(&d);
	/* BDAT: the same line in one chunk. */
	direct_init_ex(&d, 10000, 5, 0);
	direct_ehlo(&d);
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 5002 LAST\r\n");
	line[5002] = '\0';
	direct_feed(&d, line);
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	assert_int_equal(d.body.len, 5001);
	assert_memory_equal(d.body.data, line, 5000);
	direct_free(&d);
}

/* The line limits are exact: 512 octets for a command line and 1000 for a
 * text line, both including CRLF (RFC 5321 4.5.3.1.4 and 4.5.3.1.6). */
static void test_line_limits(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	char line[2048];
	snprintf(line, sizeof line, "NOOP %0505d\r\n", 0); /* 512 octets */
	assert_int_equal(strlen(line), 512);
	direct_feed(&d, line);
	direct_expect(&d, "250 2.0.0 Ok\r\n");
	snprintf(line, sizeof line, "NOOP %0506d\r\n", 0); /* 513 */
	direct_feed(&d, line);
	direct_expect(&d, "500 5.5.6 Line too long\r\n");
	/* A bare-LF line may hold one more octet: 512 on the wire. */
	snprintf(line, sizeof line, "NOOP %0506d\n", 0);
	direct_feed(&d, line);
	direct_expect(&d, "250 2.0.0 Ok\r\n");

	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
	direct_expect(&d,
	              "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	memset(line, 'y', 998);
	memcpy(line + 998, "\r\n.\r\n", 6); /* 1000 octets with CRLF */
	direct_feed(&d, line);
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	smtp_proto_resume(d.p, 250, "2.0.0", "Ok");
	direct_drain(&d);
	direct_expect(&d, "250 2.0.0 Ok\r\n");
	/* 1001 octets; a stuffed dot counts, it is on the wire. */
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
	line[0] = '.';
	direct_feed(&d, line);
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_EOM);
	smtp_proto_resume(d.p, 250, "2.0.0", "Ok");
	direct_feed(&d, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
	memset(line, 'y', 999);
	memcpy(line + 999, "\r\n.\r\n", 6);
	direct_feed(&d, line);
	assert_int_equal(smtp_proto_pending(d.p), SMTP_WAIT_NONE);
	direct_expect(&d, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	                  "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
	                  "<CR><LF>.<CR><LF>\r\n500 5.5.6 Line too long\r\n");
	direct_free(&d);
}

static void test_sink_failure(void **state)
{
	(void)state;
	struct direct d;
	direct_init(&d, 10000, 5);
	direct_ehlo(&d);
	d.fail_body = 2;
	direct_feed(&d,
	            "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nline1\r\nline2\r\nline3\r\n.\r\n"
	            "NOOP\r\n");
	direct_expect(&d, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	                  "452 4.3.1 Insufficient system storage\r\n250 2.0.0 Ok\r\n");
	/* After the failure nothing more is offered to the sink. */
	assert_int_equal(d.body_calls, 2);
	assert_false(smtp_proto_in_transaction(d.p));
	direct_free(&d);
}

static void test_closing_and_lifecycle(void **state)
{
	(void)state;
	smtp_proto_free(NULL);
	/* Defaults for zero fields; a NULL sink is allowed. */
	struct smtp_proto_config cfg = {.hostname = "bad host\r\nname"};
	struct smtp_proto *p = smtp_proto_new(&cfg, NULL);
	assert_non_null(p);
	/* Not greeted yet: nothing to say, nothing pending, not closing. */
	const char *o;
	assert_int_equal(smtp_proto_output(p, &o), 0);
	assert_int_equal(smtp_proto_pending(p), SMTP_WAIT_NONE);
	assert_false(smtp_proto_closing(p));
	assert_string_equal(smtp_proto_helo(p), "");
	smtp_proto_greet(p);
	smtp_proto_greet(p); /* once only */
	size_t n = smtp_proto_output(p, &o);
	assert_int_equal(n, strlen("220 bad?host??name ESMTP mailport\r\n"));
	assert_memory_equal(o, "220 bad?host??name ESMTP mailport\r\n", n);
	smtp_proto_output_consume(p, 4);
	n = smtp_proto_output(p, &o);
	assert_memory_equal(o, "bad?", 4);
	smtp_proto_output_consume(p, n);
	static const char in[] = "EHLO x\r\n";
	assert_int_equal(smtp_proto_feed(p, in, sizeof in - 1), sizeof in - 1);
	n = smtp_proto_output(p, &o);
	assert_non_null(memmem(o, n, "250-SIZE 26214400\r\n", 19));
	assert_true(smtp_proto_esmtp(p));
	assert_string_equal(smtp_proto_helo(p), "x");
	smtp_proto_output_consume(p, n);
	/* Timeout while a verdict is pending: closing wins, resume is ignored. */
	static const char tx[] = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\n";
	assert_int_equal(smtp_proto_feed(p, tx, sizeof tx - 1), sizeof tx - 1);
	assert_int_equal(smtp_proto_pending(p), SMTP_WAIT_EOM);
	smtp_proto_output_consume(p, smtp_proto_output(p, &o));
	smtp_proto_shutdown(p);
	assert_true(smtp_proto_closing(p));
	assert_int_equal(smtp_proto_pending(p), SMTP_WAIT_NONE);
	smtp_proto_resume(p, 250, "2.0.0", "Ok");
	smtp_proto_timeout(p);
	smtp_proto_abort(p, "x");
	n = smtp_proto_output(p, &o);
	static const char want[] = "421 4.3.2 bad?host??name Service shutting down\r\n";
	assert_int_equal(n, sizeof want - 1);
	assert_memory_equal(o, want, n);
	assert_int_equal(smtp_proto_feed(p, in, sizeof in - 1), 0);
	smtp_proto_free(p);

	/* abort() */
	cfg.hostname = NULL;
	p = smtp_proto_new(&cfg, NULL);
	smtp_proto_greet(p);
	smtp_proto_abort(p, "Error: out of memory");
	n = smtp_proto_output(p, &o);
	static const char want2[] =
	    "220 localhost ESMTP mailport\r\n421 4.3.0 localhost Error: out of memory\r\n";
	assert_int_equal(n, sizeof want2 - 1);
	assert_memory_equal(o, want2, n);
	assert_true(smtp_proto_closing(p));
	smtp_proto_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backpressure),
	    cmocka_unit_test(test_resume_semantics),
	    cmocka_unit_test(test_bdat_huge_streamed),
	    cmocka_unit_test(test_nul_bytes),
	    cmocka_unit_test(test_line_limits),
	    cmocka_unit_test(test_long_line_unlimited),
	    cmocka_unit_test(test_mail_params_real_clients),
	    cmocka_unit_test(test_sink_failure),
	    cmocka_unit_test(test_closing_and_lifecycle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
