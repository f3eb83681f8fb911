/* Tests for hdredit (SPEC 8): where a header block ends, RFC 8601
 * authserv-ids, and rspamd's edits applied in one pass: removals by name and
 * position (counted over the block as it came), insertions at rspamd's
 * "order", Subject replaced, folded values cleaned so they can never add a
 * field, our trace headers untouched on top, forged Authentication-Results
 * removed. Table-driven, got= want= on failure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hdredit.h"

/* Our two trace fields, as the spool writes them. */
#define TRACE                                                                                      \
	"Return-Path: <a@x.example>\n"                                                             \
	"Received: from client.example ([198.51.100.7])\n"                                         \
	"\tby mx.test (mailport) with ESMTP id 1.M2P3Q4.mx;\n"                                     \
	"\tFri, 27 Nov 2026 08:40:58 +0000\n"

static void test_header_len(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t want;
		bool complete;
	} cases[] = {
	    {"", 0, false},
	    {"\n", 0, true},
	    {"\nbody\n", 0, true},
	    {"A: 1\n", 5, false},
	    {"A: 1\n\nbody\n", 5, true},
	    {"A: 1\n folded\nB: 2\n\nbody", 18, true},
	    {"A: 1\n\tfolded\n\tagain\n\n", 20, true},
	    {"A: 1\nnot a header\nB: 2\n\n", 5, true},
	    {"A: 1\n: no name\n\n", 5, true},
	    {" leading continuation\n\n", 0, true},
	    {"A : obsolete blank before the colon\n\n", 36, true},
	    {"A: 1\nB: no line end", 19, false},
	    {"A: 1\n \n\n", 7, true}, /* a blank-only line is folding (RFC 5322 4.2) */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		bool complete = !cases[i].complete;
		size_t got = hdredit_header_len(cases[i].in, strlen(cases[i].in), &complete);
		if (got != cases[i].want || complete != cases[i].complete)
			fail_msg("case %zu %s: got=%zu/%d want=%zu/%d", i, cases[i].in, got,
			         complete, cases[i].want, cases[i].complete);
	}
}

/* Reading a block piece by piece finds the same end as reading it whole:
 * "complete" is never claimed early, whatever the split. */
static void test_header_len_every_split(void **state)
{
	(void)state;
	const char *text = TRACE "Subject: hi\n\tthere\nX-A: 1\n\nbody: not a header\n";
	size_t len = strlen(text);
	bool complete;
	size_t whole = hdredit_header_len(text, len, &complete);
	assert_true(complete);
	for (size_t n = 0; n <= len; n++) {
		size_t got = hdredit_header_len(text, n, &complete);
		if (complete && got != whole)
			fail_msg("prefix %zu: got=%zu want=%zu", n, got, whole);
		if (!complete && got != n)
			fail_msg("prefix %zu: incomplete but got=%zu", n, got);
	}
}

static void test_authserv(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		bool want;
	} cases[] = {
	    {" mx.test; spf=pass", true},
	    {"mx.test;spf=pass", true},
	    {" MX.Test; dkim=pass", true},
	    {" mx.test 1; spf=pass", true},
	    {" mx.test; none", true},
	    {" (forged) mx.test; spf=pass", true},
	    {" (nested (comment)) mx.test;", true},
	    {"\n\tmx.test;\n\tdkim=pass", true},
	    {" \"mx.test\"; spf=pass", true},
	    {" \"mx\\.test\"; spf=pass", true},
	    {" mx.test.evil; spf=pass", false},
	    {" mx.tes; spf=pass", false},
	    {" other.example; spf=pass", false},
	    {" ; spf=pass", false},
	    {"", false},
	    {" \"mx.test", false},
	    {" (unclosed mx.test;", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		bool got = hdredit_authserv_is(cases[i].value, strlen(cases[i].value), "mx.test");
		if (got != cases[i].want)
			fail_msg("case %zu %s: got=%d want=%d", i, cases[i].value, got,
			         cases[i].want);
	}
}

struct op {
	enum hdredit_kind kind;
	const char *name, *value;
	long index;
	bool positioned;
};

#define MAXOPS 6

static const struct {
	const char *what;
	const char *in;
	const char *drop; /* authserv-id to drop, or NULL */
	struct op ops[MAXOPS];
	const char *want; /* NULL: unchanged */
} apply_cases[] = {
    {"nothing", TRACE "Subject: x\n", NULL, {{0}}, NULL},
    {"remove all",
     TRACE "X-Spam: No\nSubject: x\nx-spam: maybe\n",
     NULL,
     {{HDREDIT_REMOVE, "X-Spam", NULL, 0, false}},
     TRACE "Subject: x\n"},
    {"remove the second",
     TRACE "X-A: 1\nX-A: 2\nX-A: 3\n",
     NULL,
     {{HDREDIT_REMOVE, "X-A", NULL, 2, false}},
     TRACE "X-A: 1\nX-A: 3\n"},
    {"remove the last",
     TRACE "X-A: 1\nX-A: 2\nX-A: 3\n",
     NULL,
     {{HDREDIT_REMOVE, "X-A", NULL, -1, false}},
     TRACE "X-A: 1\nX-A: 2\n"},
    {"remove past the count",
     TRACE "X-A: 1\n",
     NULL,
     {{HDREDIT_REMOVE, "X-A", NULL, 2, false}},
     NULL},
    {"remove before the count",
     TRACE "X-A: 1\n",
     NULL,
     {{HDREDIT_REMOVE, "X-A", NULL, -2, false}},
     NULL},
    {"our trace headers stay",
     TRACE "Received: from elsewhere\n",
     NULL,
     {{HDREDIT_REMOVE, "Received", NULL, 0, false},
      {HDREDIT_REMOVE, "Return-Path", NULL, 1, false}},
     TRACE},
    {"removals counted as the block came",
     TRACE "X-A: 1\nX-A: 2\nX-A: 3\n",
     NULL,
     {{HDREDIT_REMOVE, "X-A", NULL, 1, false}, {HDREDIT_REMOVE, "X-A", NULL, 2, false}},
     TRACE "X-A: 3\n"},
    {"added at the end",
     TRACE "Subject: x\n",
     NULL,
     {{HDREDIT_ADD, "X-Spam", "Yes", 0, false}},
     TRACE "Subject: x\nX-Spam: Yes\n"},
    {"order 0 and 1 go under our trace headers",
     TRACE "Subject: x\n",
     NULL,
     {{HDREDIT_ADD, "X-0", "a", 0, true}, {HDREDIT_ADD, "X-1", "b", 1, true}},
     TRACE "X-0: a\nX-1: b\nSubject: x\n"},
    {"order counts the fields as they came",
     TRACE "A: 1\nB: 2\nC: 3\n",
     NULL,
     {{HDREDIT_ADD, "X", "y", 3, true}, {HDREDIT_REMOVE, "A", NULL, 0, false}},
     TRACE "X: y\nB: 2\nC: 3\n"},
    {"negative order from the end",
     TRACE "A: 1\nB: 2\n",
     NULL,
     {{HDREDIT_ADD, "L", "last", -1, true},
      {HDREDIT_ADD, "P", "penultimate", -2, true},
      {HDREDIT_ADD, "T", "top", -100, true},
      {HDREDIT_ADD, "E", "end", 100, true}},
     TRACE "T: top\nA: 1\nP: penultimate\nB: 2\nL: last\nE: end\n"},
    {"subject replaced, its name as written",
     TRACE "SUBJECT: old\n\tfolded\nSubject: second\n",
     NULL,
     {{HDREDIT_SET, "Subject", "***SPAM*** old", 0, false}},
     TRACE "SUBJECT: ***SPAM*** old\nSubject: second\n"},
    {"subject added when there is none",
     TRACE "From: a@x.example\n",
     NULL,
     {{HDREDIT_SET, "Subject", "new", 0, false}},
     TRACE "From: a@x.example\nSubject: new\n"},
    {"a removed subject is not the one set",
     TRACE "Subject: a\nSubject: b\n",
     NULL,
     {{HDREDIT_REMOVE, "Subject", NULL, 1, false}, {HDREDIT_SET, "Subject", "c", 0, false}},
     TRACE "Subject: c\n"},
    {"forged results removed, others kept",
     TRACE "Authentication-Results: mx.test; spf=pass\n"
           "Authentication-Results: other.example; dkim=pass\n"
           "Authentication-Results: (c) MX.TEST;\n\tdmarc=pass\n"
           "Authentication-Results: mx.test.evil; spf=pass\n"
           "Subject: x\n",
     "mx.test",
     {{0}},
     TRACE "Authentication-Results: other.example; dkim=pass\n"
           "Authentication-Results: mx.test.evil; spf=pass\n"
           "Subject: x\n"},
    {"rspamd's own: all results out, its results in under the trace",
     TRACE "Authentication-Results: mx.test; spf=pass\n"
           "Authentication-Results: other.example; dkim=pass\nSubject: x\n",
     "mx.test",
     {{HDREDIT_REMOVE, "Authentication-Results", NULL, 0, false},
      {HDREDIT_ADD, "Authentication-Results", "mx.test;\n\tdkim=none;\n\tspf=fail smtp.mailfrom=a",
       1, true}},
     TRACE "Authentication-Results: mx.test;\n\tdkim=none;\n\tspf=fail smtp.mailfrom=a\n"
           "Subject: x\n"},
    {"values cannot add fields",
     TRACE "Subject: x\n",
     NULL,
     {{HDREDIT_ADD, "X-A", "one\nX-Injected: yes", 0, false},
      {HDREDIT_ADD, "X-B", "  two \r\n\r\n\n  three\t\n", 0, false},
      {HDREDIT_ADD, "X-C", "bell\a\x7f", 0, false},
      {HDREDIT_ADD, "X-D", "", 0, false}},
     TRACE "Subject: x\nX-A: one\n\tX-Injected: yes\nX-B: two\n\tthree\nX-C: bell??\nX-D: \n"},
    {"a block that ends without its line end",
     TRACE "Subject: x",
     NULL,
     {{HDREDIT_ADD, "X-Spam", "Yes", 0, false}},
     TRACE "Subject: x\nX-Spam: Yes\n"},
    {"what follows the fields stays after them",
     TRACE "Subject: x\nnot a header\nmore\n",
     NULL,
     {{HDREDIT_ADD, "X-Spam", "Yes", 0, false}},
     TRACE "Subject: x\nX-Spam: Yes\nnot a header\nmore\n"},
};

static void test_apply(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof apply_cases / sizeof apply_cases[0]; i++) {
		struct hdredit e;
		hdredit_init(&e, 2);
		if (apply_cases[i].drop)
			assert_int_equal(hdredit_drop_authres(&e, apply_cases[i].drop), 0);
		for (size_t k = 0; k < MAXOPS && apply_cases[i].ops[k].name; k++) {
			const struct op *o = &apply_cases[i].ops[k];
			int rc = o->kind == HDREDIT_REMOVE ? hdredit_remove(&e, o->name, o->index)
			         : o->kind == HDREDIT_SET
			             ? hdredit_set(&e, o->name, o->value)
			             : hdredit_add(&e, o->name, o->value, o->positioned, o->index);
			assert_int_equal(rc, 0);
		}
		struct buf out;
		buf_init(&out, 0);
		bool changed = true;
		const char *in = apply_cases[i].in;
		assert_int_equal(hdredit_apply(&e, in, strlen(in), &out, &changed), 0);
		const char *want = apply_cases[i].want ? apply_cases[i].want : in;
		assert_int_equal(buf_append(&out, "", 1), 0);
		if (strcmp(out.data, want) != 0 || changed != (apply_cases[i].want != NULL))
			fail_msg("%s: changed=%d got=\n%s\nwant=\n%s", apply_cases[i].what, changed,
			         out.data, want);
		buf_free(&out);
		hdredit_free(&e);
	}
}

static void test_bad_names(void **state)
{
	(void)state;
	struct hdredit e;
	hdredit_init(&e, 2);
	assert_int_equal(hdredit_add(&e, "Bad Name", "v", false, 0), -EINVAL);
	assert_int_equal(hdredit_add(&e, "", "v", false, 0), -EINVAL);
	assert_int_equal(hdredit_add(&e, "A:B", "v", false, 0), -EINVAL);
	assert_int_equal(hdredit_remove(&e, "Caf\xc3\xa9", 0), -EINVAL);
	assert_int_equal(hdredit_set(&e, NULL, "v"), -EINVAL);
	assert_int_equal(e.n, 0);
	assert_int_equal(hdredit_add(&e, "X-Ok", NULL, false, 0), 0);
	assert_int_equal(e.n, 1);
	hdredit_free(&e);
	hdredit_free(&e);
	hdredit_free(NULL);
}

/* The output's limit is honoured: -ENOSPC, never a longer buffer. */
static void test_limit(void **state)
{
	(void)state;
	struct hdredit e;
	hdredit_init(&e, 2);
	assert_int_equal(
	    hdredit_add(&e, "X-Long", "0123456789012345678901234567890123456789", false, 0), 0);
	struct buf out;
	buf_init(&out, strlen(TRACE) + 10);
	bool changed;
	assert_int_equal(hdredit_apply(&e, TRACE, strlen(TRACE), &out, &changed), -ENOSPC);
	assert_true(out.len <= strlen(TRACE) + 10);
	buf_free(&out);
	hdredit_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_len), cmocka_unit_test(test_header_len_every_split),
	    cmocka_unit_test(test_authserv),   cmocka_unit_test(test_apply),
	    cmocka_unit_test(test_bad_names),  cmocka_unit_test(test_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
