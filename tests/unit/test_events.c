/* Issue 17: the spool index's observer, SSE frames, the web UI's embedded
 * files, and retention passes over a real spool. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpd_events.h"
#include "httpd_ui.h"
#include "retention.h"
#include "spool.h"
#include "spool_index.h"

struct seen {
	int n;
	enum spool_index_change ch[16];
	enum spool_state st[16];
	char id[16][64];
};

static void observe(void *ctx, enum spool_index_change ch, const char *id, enum spool_state st)
{
	struct seen *s = ctx;
	if (s->n < 16) {
		s->ch[s->n] = ch;
		s->st[s->n] = st;
		snprintf(s->id[s->n], sizeof s->id[0], "%s", id);
	}
	s->n++;
}

static void test_observer_sees_every_change(void **state)
{
	(void)state;
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	struct seen s = {0};
	assert_int_equal(spool_index_observe(ix, observe, &s), 0);
	const char *a = "1700000000.M000001P1Q1.h", *b = "1700000001.M000001P1Q2.h";
	assert_int_equal(spool_index_put(ix, a, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_put(ix, b, SPOOL_STATE_CUR), 0);
	assert_int_equal(spool_index_put(ix, a, SPOOL_STATE_NEW), 0); /* no change: silent */
	assert_int_equal(spool_index_update(ix, a, SPOOL_STATE_FAILED), 0);
	assert_int_equal(spool_index_update(ix, "1.M1P1Q1.none", SPOOL_STATE_CUR), -ENOENT);
	assert_int_equal(spool_index_del(ix, b), 0);
	assert_int_equal(spool_index_del(ix, b), -ENOENT);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.ch[0], SPOOL_INDEX_STORED);
	assert_string_equal(s.id[0], a);
	assert_int_equal(s.ch[1], SPOOL_INDEX_STORED);
	assert_int_equal(s.st[1], SPOOL_STATE_CUR);
	assert_int_equal(s.ch[2], SPOOL_INDEX_STATE);
	assert_int_equal(s.st[2], SPOOL_STATE_FAILED);
	assert_int_equal(s.ch[3], SPOOL_INDEX_DELETED);
	assert_string_equal(s.id[3], b);
	assert_int_equal(s.st[3], SPOOL_STATE_CUR);
	/* The start-up scan tells nobody; a removed observer hears nothing. */
	char *ids[] = {"1700000002.M000001P1Q3.h"};
	assert_int_equal(spool_index_add_batch(ix, ids, 1, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_unobserve(ix, observe, &s), 0);
	assert_int_equal(spool_index_del(ix, a), 0);
	assert_int_equal(s.n, 4);
	/* Bounded. */
	struct seen t[SPOOL_INDEX_OBSERVERS + 1];
	for (int i = 0; i < SPOOL_INDEX_OBSERVERS; i++)
		assert_int_equal(spool_index_observe(ix, observe, &t[i]), 0);
	assert_int_equal(spool_index_observe(ix, observe, &t[SPOOL_INDEX_OBSERVERS]), -ENOSPC);
	spool_index_free(ix);
}

static void test_frame(void **state)
{
	(void)state;
	size_t len = 0;
	char *f = httpd_events_frame("stored", "{\"id\":\"x\"}", &len);
	assert_non_null(f);
	assert_string_equal(f, "event: stored\ndata: {\"id\":\"x\"}\n\n");
	assert_int_equal(len, strlen(f));
	free(f);
	assert_string_equal(httpd_events_name(SPOOL_INDEX_STORED), "stored");
	assert_string_equal(httpd_events_name(SPOOL_INDEX_STATE), "state");
	assert_string_equal(httpd_events_name(SPOOL_INDEX_DELETED), "deleted");
}

static void test_ui_assets(void **state)
{
	(void)state;
	const struct httpd_ui_asset *a = httpd_ui_find("/", 1);
	assert_non_null(a);
	assert_string_equal(a->path, "/ui/index.html");
	assert_non_null(strstr((const char *)a->data, "ui/app.js"));
	assert_int_equal(a->data[a->len], 0);
	/* Relative URLs only: nothing in the page starts at the root. */
	assert_null(strstr((const char *)a->data, "src=\"/"));
	assert_null(strstr((const char *)a->data, "href=\"/"));
	a = httpd_ui_find("/ui/app.js", 10);
	assert_non_null(a);
	assert_string_equal(a->type, "text/javascript; charset=utf-8");
	assert_non_null(httpd_ui_find("/ui/style.css", 13));
	assert_null(httpd_ui_find("/ui/nothing.js", 14));
	assert_null(httpd_ui_find("/ui/", 4));
	assert_true(httpd_ui_path("/", 1));
	assert_true(httpd_ui_path("/ui/x", 5));
	assert_false(httpd_ui_path("/uix", 4));
	assert_false(httpd_ui_path("/messages", 9));
}

/* ---- retention over a real spool ---- */

static char spool_dir_name[64];

static void store_at(struct spool *sp, int64_t sec, unsigned q, char *id, size_t idlen)
{
	snprintf(id, idlen, "%lld.M000001P1Q%u.test", (long long)sec, q);
	const char *rcpt[] = {"b@y"};
	struct spool_envelope env = {.id = id,
	                             .mail_from = "a@x",
	                             .rcpt = rcpt,
	                             .nrcpt = 1,
	                             .helo = "h",
	                             .client_addr = "127.0.0.1",
	                             .local_addr = "127.0.0.1",
	                             .hostname = "test"};
	clock_gettime(CLOCK_REALTIME, &env.received_at);
	const char body[] = "Subject: hi\n\nbody\n";
	env.size = sizeof body - 1;
	assert_int_equal(spool_store(sp, &env, body, sizeof body - 1), 0);
}

static struct spool *open_spool(void)
{
	snprintf(spool_dir_name, sizeof spool_dir_name, "/tmp/mailport-ret-XXXXXX");
	assert_non_null(mkdtemp(spool_dir_name));
	struct spool *sp;
	char err[256];
	assert_int_equal(spool_open(spool_dir_name, "test", &sp, err, sizeof err), 0);
	return sp;
}

static void rm_spool(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", spool_dir_name);
	assert_int_equal(system(cmd), 0);
}

static void test_retention_count_oldest_first(void **state)
{
	(void)state;
	struct spool *sp = open_spool();
	struct seen s = {0};
	assert_int_equal(spool_index_observe(spool_get_index(sp), observe, &s), 0);
	char ids[5][SPOOL_ID_MAX];
	for (unsigned i = 0; i < 5; i++)
		store_at(sp, 1700000000 + i, i + 1, ids[i], sizeof ids[i]);
	assert_int_equal(s.n, 5);
	assert_int_equal(retention_pass(sp, 3, 0, 1700000100), 2);
	struct spool_index *ix = spool_get_index(sp);
	assert_int_equal(spool_index_total(ix, NULL), 3);
	enum spool_state st;
	assert_int_equal(spool_index_get(ix, ids[0], &st), -ENOENT);
	assert_int_equal(spool_index_get(ix, ids[1], &st), -ENOENT);
	assert_int_equal(spool_index_get(ix, ids[2], &st), 0);
	/* Through the spool's delete path: the files went, and the observer heard. */
	assert_int_equal(spool_locate(sp, ids[0], &st), -ENOENT);
	assert_int_equal(s.n, 7);
	assert_int_equal(s.ch[5], SPOOL_INDEX_DELETED);
	assert_string_equal(s.id[5], ids[0]);
	assert_string_equal(s.id[6], ids[1]);
	/* Within the limit: nothing. */
	assert_int_equal(retention_pass(sp, 3, 0, 1700000100), 0);
	spool_index_unobserve(ix, observe, &s);
	spool_close(sp);
	rm_spool();
}

static void test_retention_age(void **state)
{
	(void)state;
	struct spool *sp = open_spool();
	char ids[4][SPOOL_ID_MAX];
	for (unsigned i = 0; i < 4; i++)
		store_at(sp, 1700000000 + 100 * i, i + 1, ids[i], sizeof ids[i]);
	/* now = 1700000350, max age 200 s: 0 (350 s) and 1 (250 s) go. */
	assert_int_equal(retention_pass(sp, 0, 200, 1700000350), 2);
	struct spool_index *ix = spool_get_index(sp);
	assert_int_equal(spool_index_total(ix, NULL), 2);
	enum spool_state st;
	assert_int_equal(spool_index_get(ix, ids[1], &st), -ENOENT);
	assert_int_equal(spool_index_get(ix, ids[2], &st), 0);
	/* Both limits: nothing is too old now, the count of 1 keeps the newest. */
	assert_int_equal(retention_pass(sp, 1, 200, 1700000350), 1);
	assert_int_equal(spool_index_get(ix, ids[2], &st), -ENOENT);
	assert_int_equal(spool_index_get(ix, ids[3], &st), 0);
	/* Both off: however old, nothing goes. */
	assert_int_equal(retention_pass(sp, 0, 0, 1700009999), 0);
	assert_int_equal(spool_index_total(ix, NULL), 1);
	spool_close(sp);
	rm_spool();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_observer_sees_every_change),
	    cmocka_unit_test(test_frame),
	    cmocka_unit_test(test_ui_assets),
	    cmocka_unit_test(test_retention_count_oldest_first),
	    cmocka_unit_test(test_retention_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
