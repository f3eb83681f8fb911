/* Tests for the /messages API logic (SPEC 3): header parsing, id order, query
 * numbers, and list/get/raw/delete against a real spool, including ids that
 * try to leave it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "messages.h"
#include "spool.h"
#include "spool_index.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void check_headers(const char *text, const char *const *want)
{
	json_t *a = messages_parse_headers(text, strlen(text));
	assert_non_null(a);
	size_t n = 0;
	while (want[2 * n])
		n++;
	if (json_array_size(a) != n) {
		char *d = json_dumps(a, 0);
		fail_msg("for %s got %s", text, d);
	}
	for (size_t i = 0; i < n; i++) {
		json_t *h = json_array_get(a, i);
		assert_string_equal(json_string_value(json_object_get(h, "name")), want[2 * i]);
		assert_string_equal(json_string_value(json_object_get(h, "value")),
		                    want[2 * i + 1]);
	}
	json_decref(a);
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_parse_headers(void **state)
{
	(void)state;
	check_headers("Subject: hi\nFrom: a@x\n\nbody: not a header\n",
	              W("Subject", "hi", "From", "a@x"));
	check_headers("Subject: hi\r\nTo: b@y\r\n\r\nX: y\r\n", W("Subject", "hi", "To", "b@y"));
	/* Unfolding keeps the blank (RFC 5322 2.2.3). */
	check_headers("Subject: a long\n  subject line\n\tthird\nX: 1\n",
	              W("Subject", "a long  subject line\tthird", "X", "1"));
	/* Empty values, no blank after the colon, no body at all. */
	check_headers("X-Empty:\nX-Tight:v", W("X-Empty", "", "X-Tight", "v"));
	/* Not header fields: skipped, the rest kept. */
	check_headers("garbage line\nA B: no\n: nameless\nOk: yes\n", W("Ok", "yes"));
	/* A continuation with nothing to continue is dropped. */
	check_headers("  leading fold\nA: 1\n", W("A", "1"));
	/* 8-bit junk becomes U+FFFD, valid UTF-8 stays. */
	check_headers("Subject: caf\xc3\xa9 \xff\n", W("Subject", "caf\xc3\xa9 \xef\xbf\xbd"));
	check_headers("", (const char *const[]){NULL});
	check_headers("\nSubject: after the body\n", (const char *const[]){NULL});

	/* Bounded. */
	size_t n = MESSAGES_HEADERS_MAX + 50;
	char *big = malloc(n * 7 + 1);
	assert_non_null(big);
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(big + len, "X-A: 1\n", 7);
		len += 7;
	}
	json_t *a = messages_parse_headers(big, len);
	assert_int_equal(json_array_size(a), MESSAGES_HEADERS_MAX);
	json_decref(a);
	free(big);

	a = messages_parse_headers("Subject: one\nsubject: two\n", 26);
	assert_string_equal(messages_header(a, "SUBJECT"), "one");
	assert_null(messages_header(a, "From"));
	json_decref(a);
}

static void test_order_and_counts(void **state)
{
	(void)state;
	assert_true(messages_id_newer("1700000001.M000001P1Q0.h", "1700000000.M999999P1Q9.h") < 0);
	assert_true(messages_id_newer("1700000000.M000002P1Q0.h", "1700000000.M000001P9Q9.h") < 0);
	assert_true(messages_id_newer("1700000000.M000001P1Q10.h", "1700000000.M000001P1Q9.h") < 0);
	assert_true(messages_id_newer("1700000000.M000001P1Q9.h", "1700000000.M000001P1Q10.h") > 0);
	assert_true(messages_id_newer("1.M1P1Q1.h", "foreign-name") < 0);
	assert_true(messages_id_newer("foreign-b", "foreign-a") < 0);
	assert_int_equal(messages_id_newer("1.M1P1Q1.h", "1.M1P1Q1.h"), 0);

	size_t v;
	assert_int_equal(messages_parse_count(NULL, 50, 1000, &v), 0);
	assert_int_equal(v, 50);
	assert_int_equal(messages_parse_count("", 50, 1000, &v), 0);
	assert_int_equal(v, 50);
	assert_int_equal(messages_parse_count("0", 50, 1000, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(messages_parse_count("1000", 50, 1000, &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(messages_parse_count("1001", 50, 1000, &v), -1);
	assert_int_equal(messages_parse_count("-1", 50, 1000, &v), -1);
	assert_int_equal(messages_parse_count("1x", 50, 1000, &v), -1);
	assert_int_equal(messages_parse_count("99999999999999999999999", 50, SIZE_MAX, &v), -1);
}

/* ---- against a spool ---- */

struct fx {
	char root[64];
	char dir[128];
	struct spool *s;
	char ids[3][SPOOL_ID_MAX];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	strcpy(fx->root, "/tmp/test_messages.XXXXXX");
	assert_non_null(mkdtemp(fx->root));
	snprintf(fx->dir, sizeof fx->dir, "%s/spool", fx->root);
	char err[256];
	assert_int_equal(spool_open(fx->dir, "mx.test", &fx->s, err, sizeof err), 0);
	const char *rcpt[] = {"b@y.example"};
	const char *subjects[] = {"first", "second", NULL};
	for (int i = 0; i < 3; i++) {
		spool_new_id(fx->s, fx->ids[i], sizeof fx->ids[i]);
		struct spool_envelope env = {.id = fx->ids[i],
		                             .mail_from = "a@x.example",
		                             .rcpt = rcpt,
		                             .nrcpt = 1,
		                             .client_addr = "127.0.0.1",
		                             .local_addr = "127.0.0.1",
		                             .local_port = 2525,
		                             .hostname = "mx.test"};
		char body[128];
		if (subjects[i])
			snprintf(body, sizeof body, "Subject: %s\nX-N: %d\n\nbody %d\n",
			         subjects[i], i, i);
		else
			snprintf(body, sizeof body, "X-N: %d\n\nno subject\n", i);
		env.size = strlen(body);
		assert_int_equal(spool_store(fx->s, &env, body, strlen(body)), 0);
	}
	/* The second one delivered, the third failed. */
	assert_int_equal(spool_move(fx->s, fx->ids[1], SPOOL_STATE_NEW, SPOOL_STATE_CUR), 0);
	assert_int_equal(spool_move(fx->s, fx->ids[2], SPOOL_STATE_NEW, SPOOL_STATE_FAILED), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	spool_close(fx->s);
	nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void reply_free(struct messages_reply *r)
{
	json_decref(r->json);
	if (r->fd >= 0)
		close(r->fd);
}

static void test_list(void **state)
{
	struct fx *fx = *state;
	struct messages_reply r;
	messages_handle(fx->s, "GET", "", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 3);
	json_t *m = json_object_get(r.json, "messages");
	assert_int_equal(json_array_size(m), 3);
	/* Newest first. */
	const char *want_state[] = {"failed", "delivered", "new"};
	for (int i = 0; i < 3; i++) {
		json_t *e = json_array_get(m, (size_t)i);
		assert_string_equal(json_string_value(json_object_get(e, "id")), fx->ids[2 - i]);
		assert_string_equal(json_string_value(json_object_get(e, "state")), want_state[i]);
		assert_string_equal(json_string_value(json_object_get(e, "mail_from")),
		                    "a@x.example");
		assert_non_null(json_object_get(e, "received_at"));
		assert_null(json_object_get(e, "headers"));
	}
	assert_true(json_is_null(json_object_get(json_array_get(m, 0), "subject")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "subject")),
	                    "second");
	reply_free(&r);

	messages_handle(fx->s, "GET", "/", &(struct messages_query){.limit = "1", .offset = "1"},
	                &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 3);
	m = json_object_get(r.json, "messages");
	assert_int_equal(json_array_size(m), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "id")),
	                    fx->ids[1]);
	reply_free(&r);

	messages_handle(fx->s, "GET", "", &(struct messages_query){.limit = "10", .offset = "7"},
	                &r);
	assert_int_equal(json_array_size(json_object_get(r.json, "messages")), 0);
	reply_free(&r);

	messages_handle(fx->s, "GET", "", &(struct messages_query){.limit = "abc"}, &r);
	assert_int_equal(r.status, 400);
	reply_free(&r);
	messages_handle(fx->s, "POST", "", NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET, HEAD, DELETE");
	reply_free(&r);

	/* No spool (discard): empty. */
	messages_handle(NULL, "GET", "", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 0);
	reply_free(&r);
	messages_handle(NULL, "GET", "", &(struct messages_query){.before = fx->ids[0]}, &r);
	assert_int_equal(r.status, 400);
	reply_free(&r);
}

/* The before= cursor, and a message removed behind the spool's back. */
static void test_list_before(void **state)
{
	struct fx *fx = *state;
	struct messages_reply r;
	messages_handle(fx->s, "GET", "", &(struct messages_query){.before = fx->ids[2]}, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 3);
	json_t *m = json_object_get(r.json, "messages");
	assert_int_equal(json_array_size(m), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "id")),
	                    fx->ids[1]);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "id")),
	                    fx->ids[0]);
	reply_free(&r);
	messages_handle(fx->s, "GET", "",
	                &(struct messages_query){.before = fx->ids[2], .offset = "1", .limit = "5"},
	                &r);
	m = json_object_get(r.json, "messages");
	assert_int_equal(json_array_size(m), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "id")),
	                    fx->ids[0]);
	reply_free(&r);
	/* empty is no cursor; invalid and unknown ids are 400 with a JSON error */
	messages_handle(fx->s, "GET", "", &(struct messages_query){.before = ""}, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "messages")), 3);
	reply_free(&r);
	const char *bad[] = {"1.M1P1Q1.unknown", "../x", ".hidden", "a b"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		messages_handle(fx->s, "GET", "", &(struct messages_query){.before = bad[i]}, &r);
		if (r.status != 400)
			fail_msg("before=%s answered %u", bad[i], r.status);
		assert_non_null(json_string_value(json_object_get(r.json, "error")));
		reply_free(&r);
	}

	/* Removed from cur/ by someone else: left out of the page, dropped from
	 * the index, the page still full, total exact. */
	char p[512];
	snprintf(p, sizeof p, "%s/cur/%s", fx->dir, fx->ids[1]);
	assert_int_equal(unlink(p), 0);
	messages_handle(fx->s, "GET", "", &(struct messages_query){.limit = "2"}, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 2);
	m = json_object_get(r.json, "messages");
	assert_int_equal(json_array_size(m), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "id")),
	                    fx->ids[2]);
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "id")),
	                    fx->ids[0]);
	reply_free(&r);
	assert_int_equal(spool_index_total(spool_get_index(fx->s), NULL), 2);

	/* Moved by someone else (a mail reader): found, and the index follows. */
	char q[512];
	snprintf(p, sizeof p, "%s/new/%s", fx->dir, fx->ids[0]);
	snprintf(q, sizeof q, "%s/cur/%s:2,S", fx->dir, fx->ids[0]);
	assert_int_equal(rename(p, q), 0);
	messages_handle(fx->s, "GET", "", NULL, &r);
	m = json_object_get(r.json, "messages");
	assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "state")),
	                    "delivered");
	reply_free(&r);
	enum spool_state st;
	assert_int_equal(spool_index_get(spool_get_index(fx->s), fx->ids[0], &st), 0);
	assert_int_equal(st, SPOOL_STATE_CUR);
}

static void test_get_raw_delete(void **state)
{
	struct fx *fx = *state;
	char path[SPOOL_ID_MAX + 16];
	struct messages_reply r;

	snprintf(path, sizeof path, "/%s", fx->ids[1]);
	messages_handle(fx->s, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "state")), "delivered");
	assert_string_equal(json_string_value(json_object_get(r.json, "subject")), "second");
	json_t *h = json_object_get(r.json, "headers");
	/* Return-Path, Received, Subject, X-N. */
	assert_int_equal(json_array_size(h), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "name")),
	                    "Return-Path");
	assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "value")),
	                    "<a@x.example>");
	assert_string_equal(json_string_value(json_object_get(json_array_get(h, 3), "value")), "1");
	reply_free(&r);

	snprintf(path, sizeof path, "/%s/raw", fx->ids[0]);
	messages_handle(fx->s, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.fd >= 0);
	char buf[4096];
	ssize_t n = read(r.fd, buf, sizeof buf - 1);
	assert_true(n > 0 && (uint64_t)n == r.size);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "Return-Path: <a@x.example>\nReceived: from"));
	assert_non_null(strstr(buf, "\n\nbody 0\n"));
	reply_free(&r);

	snprintf(path, sizeof path, "/%s/raw", fx->ids[0]);
	messages_handle(fx->s, "DELETE", path, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET, HEAD");
	reply_free(&r);
	/* Ids match exactly: a trailing slash is another path. */
	snprintf(path, sizeof path, "/%s/", fx->ids[0]);
	messages_handle(fx->s, "GET", path, NULL, &r);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	messages_handle(fx->s, "DELETE", path, NULL, &r);
	assert_int_equal(r.status, 404);
	reply_free(&r);

	/* Delete each, wherever it is; then they are gone. */
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/%s", fx->ids[i]);
		messages_handle(fx->s, "DELETE", path, NULL, &r);
		assert_int_equal(r.status, 204);
		assert_null(r.json);
		reply_free(&r);
		messages_handle(fx->s, "DELETE", path, NULL, &r);
		assert_int_equal(r.status, 404);
		reply_free(&r);
		messages_handle(fx->s, "GET", path, NULL, &r);
		assert_int_equal(r.status, 404);
		assert_string_equal(json_string_value(json_object_get(r.json, "error")),
		                    "no such message");
		reply_free(&r);
		char *meta = NULL;
		assert_int_equal(spool_meta_read(fx->s, fx->ids[i], &meta), -ENOENT);
	}
	messages_handle(fx->s, "GET", "", NULL, &r);
	assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 0);
	reply_free(&r);
}

static void test_hostile_ids(void **state)
{
	struct fx *fx = *state;
	/* A file next to the spool that no id may reach. */
	char secret[256];
	snprintf(secret, sizeof secret, "%s/secret", fx->root);
	FILE *f = fopen(secret, "w");
	assert_non_null(f);
	fputs("secret\n", f);
	fclose(f);
	const char *paths[] = {
	    "/..",   "/../secret",   "/..%2fsecret",      "/.",      "/.hidden", "/new", "/a/b/raw",
	    "//raw", "/x/raw/extra", "/../../secret/raw", "/%2e%2e", "/a b",     "x"};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		struct messages_reply r;
		messages_handle(fx->s, "GET", paths[i], NULL, &r);
		if (r.status != 404)
			fail_msg("%s answered %u", paths[i], r.status);
		assert_int_equal(r.fd, -1);
		reply_free(&r);
		messages_handle(fx->s, "DELETE", paths[i], NULL, &r);
		assert_true(r.status == 404 || r.status == 405);
		reply_free(&r);
	}
	struct stat st;
	assert_int_equal(stat(secret, &st), 0);
	assert_false(spool_id_valid("../x"));
	assert_false(spool_id_valid(".x"));
	assert_false(spool_id_valid("a/b"));
	assert_false(spool_id_valid(""));
	assert_true(spool_id_valid(fx->ids[0]));
	assert_true(spool_id_valid("1.M1P1Q1.host\\057name"));
}

/* The spool additions the webhook relies on: a message stored straight into
 * cur/ with its delivery state, an envelope replaced atomically, a move of a
 * message that is gone. */
static void test_spool_delivery(void **state)
{
	struct fx *fx = *state;
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	const char *rcpt[] = {"b@y.example"};
	struct spool_envelope env = {.id = id,
	                             .mail_from = "a@x.example",
	                             .rcpt = rcpt,
	                             .nrcpt = 1,
	                             .client_addr = "127.0.0.1",
	                             .local_addr = "127.0.0.1",
	                             .local_port = 2525,
	                             .hostname = "mx.test",
	                             .size = 3};
	struct spool_store_opts opts = {
	    .to_cur = true, .delivery_json = "{\"state\":\"delivered\",\"attempts\":1}"};
	assert_int_equal(spool_store_ex(fx->s, &env, "hi\n", 3, &opts), 0);
	enum spool_state st;
	assert_int_equal(spool_locate(fx->s, id, &st), 0);
	assert_int_equal(st, SPOOL_STATE_CUR);
	char *text = NULL;
	assert_int_equal(spool_meta_read(fx->s, id, &text), 0);
	json_t *meta = json_loads(text, 0, NULL);
	free(text);
	assert_non_null(meta);
	assert_string_equal(json_string_value(json_object_get(meta, "id")), id);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(meta, "delivery"), "state")),
	    "delivered");
	/* The same trace headers as spool_store writes. */
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(spool_trace_headers(fx->s, &env, &b), 0);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(spool_read_message(fx->s, st, id, SIZE_MAX, &data, &len), 0);
	assert_int_equal(len, b.len + 3);
	assert_memory_equal(data, b.data, b.len);
	free(data);
	buf_free(&b);

	/* Replaced whole; no temporary file left behind. */
	json_object_set_new(meta, "delivery", json_pack("{s:s}", "state", "pending"));
	char *dump = json_dumps(meta, JSON_COMPACT);
	assert_int_equal(spool_meta_write(fx->s, id, dump, true), 0);
	free(dump);
	json_decref(meta);
	assert_int_equal(spool_meta_read(fx->s, id, &text), 0);
	assert_non_null(strstr(text, "\"delivery\":{\"state\":\"pending\"}"));
	free(text);
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s/meta/.%s.json.tmp", fx->dir, id);
	assert_int_equal(access(tmp, F_OK), -1);

	assert_int_equal(spool_move(fx->s, "1.M1P1Q1.gone", SPOOL_STATE_NEW, SPOOL_STATE_CUR),
	                 -ENOENT);
	assert_int_equal(spool_remove(fx->s, SPOOL_STATE_NEW, id), -ENOENT);
	assert_int_equal(spool_remove(fx->s, SPOOL_STATE_CUR, id), 0);
	assert_int_equal(spool_meta_read(fx->s, id, &text), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_headers),
	    cmocka_unit_test(test_order_and_counts),
	    cmocka_unit_test_setup_teardown(test_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_before, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_raw_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spool_delivery, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
