/* Tests for the spool's in-memory index (issue 12): insert, move, delete, the
 * page with offset and the before cursor, total, the start-up batch, against
 * a plain sorted array as the model; and the index kept by the spool itself
 * through store, move and remove. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "spool.h"
#include "spool_index.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void mkid(char *buf, size_t len, unsigned long long sec, unsigned usec, unsigned pid,
                 unsigned long long q, const char *host)
{
	snprintf(buf, len, "%llu.M%06uP%uQ%llu.%s", sec, usec, pid, q, host);
}

/* The whole index, newest first, through pages of `step` chained by before. */
static size_t all_by_cursor(struct spool_index *ix, size_t step, char (*out)[SPOOL_ID_MAX],
                            enum spool_state *states, size_t max)
{
	struct spool_index_item *items = calloc(step, sizeof *items);
	assert_non_null(items);
	size_t got = 0, n = 0, total = 0;
	char before[SPOOL_ID_MAX] = "";
	for (;;) {
		assert_int_equal(
		    spool_index_page(ix, before[0] ? before : NULL, 0, step, items, &n, &total), 0);
		for (size_t i = 0; i < n; i++) {
			assert_true(got < max);
			memcpy(out[got], items[i].id, SPOOL_ID_MAX);
			if (states)
				states[got] = items[i].state;
			got++;
		}
		if (n < step)
			break;
		memcpy(before, items[n - 1].id, SPOOL_ID_MAX);
	}
	free(items);
	return got;
}

/* ---- the order --------------------------------------------------------------------- */

static void test_order(void **state)
{
	(void)state;
	assert_true(spool_index_id_newer("1700000001.M000001P1Q0.h", "1700000000.M999999P1Q9.h") <
	            0);
	assert_true(spool_index_id_newer("1700000000.M000002P1Q0.h", "1700000000.M000001P9Q9.h") <
	            0);
	assert_true(spool_index_id_newer("1700000000.M000001P1Q10.h", "1700000000.M000001P1Q9.h") <
	            0);
	assert_true(spool_index_id_newer("1.M1P1Q1.h", "foreign-name") < 0);
	assert_true(spool_index_id_newer("foreign-b", "foreign-a") < 0);
	assert_int_equal(spool_index_id_newer("1.M1P1Q1.h", "1.M1P1Q1.h"), 0);

	/* Ids of the same numbers (another process, another host, or written
	 * without the zero padding, so not kept compact) in the index: the
	 * index orders them exactly as the function does. */
	const char *ids[] = {"1700000000.M000001P7Q3.b",
	                     "1700000000.M000001P7Q3.a",
	                     "1700000000.M000001P8Q3.a",
	                     "1700000000.M1P7Q3.a",
	                     "1700000000.M000001P7Q3.a,S=9",
	                     "zzz",
	                     "aaa",
	                     "1700000000.M000002P1Q0.a"};
	size_t n = sizeof ids / sizeof ids[0];
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(spool_index_put(ix, ids[i], SPOOL_STATE_NEW), 0);
	char(*got)[SPOOL_ID_MAX] = calloc(n, SPOOL_ID_MAX);
	assert_int_equal(all_by_cursor(ix, 3, got, NULL, n), n);
	for (size_t i = 1; i < n; i++)
		if (spool_index_id_newer(got[i - 1], got[i]) >= 0)
			fail_msg("%s listed before %s", got[i - 1], got[i]);
	free(got);
	spool_index_free(ix);
}

/* ---- operations ---------------------------------------------------------------------- */

static void test_put_update_del(void **state)
{
	(void)state;
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	char a[SPOOL_ID_MAX], b[SPOOL_ID_MAX], c[SPOOL_ID_MAX];
	mkid(a, sizeof a, 1700000000, 1, 10, 0, "mx.example");
	mkid(b, sizeof b, 1700000000, 2, 10, 1, "mx.example");
	mkid(c, sizeof c, 1700000001, 0, 10, 2, "mx.example");
	/* Out of arrival order (two stores finishing the other way round). */
	assert_int_equal(spool_index_put(ix, c, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_put(ix, a, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_put(ix, b, SPOOL_STATE_CUR), 0);
	size_t counts[SPOOL_STATES];
	assert_int_equal(spool_index_total(ix, counts), 3);
	assert_int_equal(counts[SPOOL_STATE_NEW], 2);
	assert_int_equal(counts[SPOOL_STATE_CUR], 1);
	/* put of a present id only sets its state */
	assert_int_equal(spool_index_put(ix, a, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_total(ix, NULL), 3);

	struct spool_index_item items[4];
	size_t n, total;
	assert_int_equal(spool_index_page(ix, NULL, 0, 4, items, &n, &total), 0);
	assert_int_equal(n, 3);
	assert_int_equal(total, 3);
	assert_string_equal(items[0].id, c);
	assert_string_equal(items[1].id, b);
	assert_int_equal(items[1].state, SPOOL_STATE_CUR);
	assert_string_equal(items[2].id, a);

	/* A move: the state changes, the order does not. */
	assert_int_equal(spool_index_update(ix, c, SPOOL_STATE_FAILED), 0);
	enum spool_state st;
	assert_int_equal(spool_index_get(ix, c, &st), 0);
	assert_int_equal(st, SPOOL_STATE_FAILED);
	spool_index_total(ix, counts);
	assert_int_equal(counts[SPOOL_STATE_NEW], 1);
	assert_int_equal(counts[SPOOL_STATE_FAILED], 1);

	/* A delete; what is gone is not brought back by a move. */
	assert_int_equal(spool_index_del(ix, b), 0);
	assert_int_equal(spool_index_del(ix, b), -ENOENT);
	assert_int_equal(spool_index_update(ix, b, SPOOL_STATE_CUR), -ENOENT);
	assert_int_equal(spool_index_get(ix, b, &st), -ENOENT);
	assert_int_equal(spool_index_total(ix, NULL), 2);
	assert_int_equal(spool_index_page(ix, NULL, 0, 4, items, &n, &total), 0);
	assert_int_equal(n, 2);
	assert_int_equal(total, 2);
	assert_string_equal(items[0].id, c);
	assert_string_equal(items[1].id, a);

	/* The cursor: strictly older; unknown ids are refused. */
	assert_int_equal(spool_index_page(ix, c, 0, 4, items, &n, &total), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, a);
	assert_int_equal(spool_index_page(ix, a, 0, 4, items, &n, &total), 0);
	assert_int_equal(n, 0);
	assert_int_equal(spool_index_page(ix, b, 0, 4, items, &n, &total), -ENOENT);
	assert_int_equal(spool_index_page(ix, "nope", 0, 4, items, &n, &total), -ENOENT);
	assert_int_equal(spool_index_page(ix, NULL, 5, 4, items, &n, &total), 0);
	assert_int_equal(n, 0);
	assert_int_equal(total, 2);
	assert_int_equal(spool_index_page(ix, NULL, 0, 0, NULL, &n, &total), 0);
	assert_int_equal(n, 0);

	char longid[SPOOL_ID_MAX + 1];
	memset(longid, 'x', SPOOL_ID_MAX);
	longid[SPOOL_ID_MAX] = '\0';
	assert_int_equal(spool_index_put(ix, longid, SPOOL_STATE_NEW), -EINVAL);
	assert_int_equal(spool_index_total(ix, NULL), 2);

	assert_int_equal(spool_index_del(ix, a), 0);
	assert_int_equal(spool_index_del(ix, c), 0);
	assert_int_equal(spool_index_total(ix, NULL), 0);
	assert_int_equal(spool_index_page(ix, NULL, 0, 4, items, &n, &total), 0);
	assert_int_equal(n, 0);
	spool_index_free(ix);
	spool_index_free(NULL);
}

/* Several chunks: every message once, in order, by cursor and by offset. */
static void test_paging(void **state)
{
	(void)state;
	enum { N = 5 * SPOOL_INDEX_CHUNK + 17 };
	struct spool_index *ix = spool_index_new();
	char(*ids)[SPOOL_ID_MAX] = calloc(N, SPOOL_ID_MAX);
	char(*got)[SPOOL_ID_MAX] = calloc(N, SPOOL_ID_MAX);
	assert_non_null(ix);
	assert_non_null(ids);
	assert_non_null(got);
	for (size_t i = 0; i < N; i++) {
		mkid(ids[i], SPOOL_ID_MAX, 1700000000 + i / 3, (unsigned)(i % 3) * 10, 42, i, "h");
		assert_int_equal(spool_index_put(ix, ids[i], (enum spool_state)(i % 3)), 0);
	}
	const size_t steps[] = {1, 7, 100, SPOOL_INDEX_CHUNK, 1000};
	for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
		enum spool_state *states = calloc(N, sizeof *states);
		assert_int_equal(all_by_cursor(ix, steps[s], got, states, N), N);
		for (size_t i = 0; i < N; i++) {
			assert_string_equal(got[i], ids[N - 1 - i]);
			assert_int_equal(states[i], (N - 1 - i) % 3);
		}
		free(states);
	}
	/* offset pages agree with the cursor, and before + offset skips on. */
	struct spool_index_item items[50];
	size_t n, total;
	for (size_t off = 0; off < N; off += 333) {
		assert_int_equal(spool_index_page(ix, NULL, off, 50, items, &n, &total), 0);
		assert_int_equal(total, N);
		assert_int_equal(n, N - off < 50 ? N - off : 50);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(items[i].id, ids[N - 1 - off - i]);
	}
	assert_int_equal(spool_index_page(ix, ids[1000], 600, 50, items, &n, &total), 0);
	assert_int_equal(n, 50);
	assert_string_equal(items[0].id, ids[1000 - 1 - 600]);
	assert_int_equal(spool_index_page(ix, ids[10], 5, 50, items, &n, &total), 0);
	assert_int_equal(n, 5);
	assert_string_equal(items[4].id, ids[0]);
	free(ids);
	free(got);
	spool_index_free(ix);
}

/* ---- against a model ---------------------------------------------------------------------- */

struct model {
	char (*ids)[SPOOL_ID_MAX]; /* newest first */
	enum spool_state *st;
	size_t n;
};

static size_t model_find(const struct model *m, const char *id, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (spool_index_id_newer(m->ids[mid], id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->n && strcmp(m->ids[lo], id) == 0;
	return lo;
}

static void model_check(struct spool_index *ix, const struct model *m)
{
	size_t counts[SPOOL_STATES], want[SPOOL_STATES] = {0};
	assert_int_equal(spool_index_total(ix, counts), m->n);
	for (size_t i = 0; i < m->n; i++)
		want[m->st[i]]++;
	for (int s = 0; s < SPOOL_STATES; s++)
		assert_int_equal(counts[s], want[s]);
	char(*got)[SPOOL_ID_MAX] = calloc(m->n + 1, SPOOL_ID_MAX);
	enum spool_state *states = calloc(m->n + 1, sizeof *states);
	assert_int_equal(all_by_cursor(ix, 61, got, states, m->n + 1), m->n);
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(got[i], m->ids[i]) != 0)
			fail_msg("at %zu: got %s want %s", i, got[i], m->ids[i]);
		assert_int_equal(states[i], m->st[i]);
	}
	free(got);
	free(states);
}

/* Random stores (out of order, several hosts past the shared ones, foreign
 * names), moves and deletes: splits, merges and empty chunks. */
static void test_model(void **state)
{
	(void)state;
	enum { MAX = 6000, OPS = 30000 };
	struct model m = {calloc(MAX, SPOOL_ID_MAX), calloc(MAX, sizeof(enum spool_state)), 0};
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	srand(12);
	for (int op = 0; op < OPS; op++) {
		int r = rand() % 100;
		/* fill, then drain, then fill again: chunks split and merge */
		bool grow = (op / 7000) % 2 == 0;
		if (m.n < MAX && (r < (grow ? 70 : 25) || m.n == 0)) {
			char id[SPOOL_ID_MAX];
			int kind = rand() % 20;
			if (kind == 0)
				snprintf(id, sizeof id, "foreign-%d", rand() % 5000);
			else if (kind == 1)
				snprintf(id, sizeof id, "1700000100.M%dP1Q%d.odd", rand() % 50,
				         rand() % 4);
			else {
				char host[32];
				snprintf(host, sizeof host, "h%d.example", rand() % 80);
				mkid(id, sizeof id, 1700000000 + (unsigned)(rand() % 200),
				     (unsigned)(rand() % 3), (unsigned)(rand() % 3),
				     (unsigned long long)(rand() % 4), host);
			}
			enum spool_state st = (enum spool_state)(rand() % SPOOL_STATES);
			bool found;
			size_t at = model_find(&m, id, &found);
			assert_int_equal(spool_index_put(ix, id, st), 0);
			if (found) {
				m.st[at] = st;
			} else {
				memmove(&m.ids[at + 1], &m.ids[at], (m.n - at) * SPOOL_ID_MAX);
				memmove(&m.st[at + 1], &m.st[at], (m.n - at) * sizeof *m.st);
				memcpy(m.ids[at], id, SPOOL_ID_MAX);
				m.st[at] = st;
				m.n++;
			}
		} else if (r < 85 && m.n > 0) {
			size_t at = (size_t)rand() % m.n;
			assert_int_equal(spool_index_del(ix, m.ids[at]), 0);
			memmove(&m.ids[at], &m.ids[at + 1], (m.n - at - 1) * SPOOL_ID_MAX);
			memmove(&m.st[at], &m.st[at + 1], (m.n - at - 1) * sizeof *m.st);
			m.n--;
		} else if (m.n > 0) {
			size_t at = (size_t)rand() % m.n;
			enum spool_state st = (enum spool_state)(rand() % SPOOL_STATES);
			assert_int_equal(spool_index_update(ix, m.ids[at], st), 0);
			m.st[at] = st;
		}
		if (op % 2500 == 0)
			model_check(ix, &m);
	}
	model_check(ix, &m);
	/* Drain it all: the chunk list empties and works again after. */
	while (m.n > 0) {
		size_t at = (size_t)rand() % m.n;
		assert_int_equal(spool_index_del(ix, m.ids[at]), 0);
		memmove(&m.ids[at], &m.ids[at + 1], (m.n - at - 1) * SPOOL_ID_MAX);
		memmove(&m.st[at], &m.st[at + 1], (m.n - at - 1) * sizeof *m.st);
		m.n--;
	}
	model_check(ix, &m);
	assert_int_equal(spool_index_put(ix, "1.M1P1Q1.h", SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_total(ix, NULL), 1);
	free(m.ids);
	free(m.st);
	spool_index_free(ix);
}

/* The start-up batch: unsorted, the same message in two directories. */
static void test_batch(void **state)
{
	(void)state;
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	assert_int_equal(spool_index_put(ix, "1700000005.M000000P1Q5.h", SPOOL_STATE_NEW), 0);
	char *news[] = {"1700000003.M000000P1Q3.h", "1700000001.M000000P1Q1.h",
	                "1700000002.M000000P1Q2.h", "foreign"};
	char *curs[] = {"1700000002.M000000P1Q2.h", "1700000004.M000000P1Q4.h"};
	char *none[] = {NULL};
	assert_int_equal(spool_index_add_batch(ix, news, 4, SPOOL_STATE_NEW), 0);
	assert_int_equal(spool_index_add_batch(ix, curs, 2, SPOOL_STATE_CUR), 0);
	assert_int_equal(spool_index_add_batch(ix, none, 0, SPOOL_STATE_FAILED), 0);
	size_t counts[SPOOL_STATES];
	assert_int_equal(spool_index_total(ix, counts), 6);
	assert_int_equal(counts[SPOOL_STATE_NEW], 4);
	assert_int_equal(counts[SPOOL_STATE_CUR], 2);
	struct spool_index_item items[8];
	size_t n, total;
	assert_int_equal(spool_index_page(ix, NULL, 0, 8, items, &n, &total), 0);
	assert_int_equal(n, 6);
	const char *want[] = {"1700000005.M000000P1Q5.h", "1700000004.M000000P1Q4.h",
	                      "1700000003.M000000P1Q3.h", "1700000002.M000000P1Q2.h",
	                      "1700000001.M000000P1Q1.h", "foreign"};
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(items[i].id, want[i]);
	assert_int_equal(items[3].state, SPOOL_STATE_CUR); /* the later directory */
	/* Inserts and deletes work on after a batch (the chunks are full). */
	assert_int_equal(spool_index_put(ix, "1700000002.M500000P1Q9.h", SPOOL_STATE_FAILED), 0);
	assert_int_equal(spool_index_del(ix, "foreign"), 0);
	assert_int_equal(spool_index_page(ix, "1700000003.M000000P1Q3.h", 0, 8, items, &n, &total),
	                 0);
	assert_int_equal(n, 3);
	assert_string_equal(items[0].id, "1700000002.M500000P1Q9.h");
	assert_int_equal(total, 6);
	spool_index_free(ix);
}

/* The documented size: 300,000 messages in arrival order, listed from the top
 * and from a cursor deep down, each page its own size. */
static void test_large(void **state)
{
	(void)state;
	enum { N = 300000 };
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	char id[SPOOL_ID_MAX];
	char **batch = calloc(N / 2, sizeof *batch);
	assert_non_null(batch);
	for (size_t i = 0; i < N / 2; i++) {
		mkid(id, sizeof id, 1700000000 + i / 100, (unsigned)(i % 100), 7, i, "mx.example");
		batch[i] = strdup(id);
	}
	assert_int_equal(spool_index_add_batch(ix, batch, N / 2, SPOOL_STATE_CUR), 0);
	for (size_t i = 0; i < N / 2; i++)
		free(batch[i]);
	free(batch);
	for (size_t i = N / 2; i < N; i++) {
		mkid(id, sizeof id, 1700000000 + i / 100, (unsigned)(i % 100), 7, i, "mx.example");
		assert_int_equal(spool_index_put(ix, id, SPOOL_STATE_NEW), 0);
	}
	struct spool_index_item items[2];
	size_t n, total;
	assert_int_equal(spool_index_page(ix, NULL, 0, 1, items, &n, &total), 0);
	assert_int_equal(total, N);
	assert_int_equal(n, 1);
	mkid(id, sizeof id, 1700000000 + (N - 1) / 100, (N - 1) % 100, 7, N - 1, "mx.example");
	assert_string_equal(items[0].id, id);
	mkid(id, sizeof id, 1700000000 + 1000 / 100, 1000 % 100, 7, 1000, "mx.example");
	assert_int_equal(spool_index_page(ix, id, 0, 2, items, &n, &total), 0);
	assert_int_equal(n, 2);
	mkid(id, sizeof id, 1700000000 + 998 / 100, 998 % 100, 7, 998, "mx.example");
	assert_string_equal(items[1].id, id);
	assert_int_equal(items[1].state, SPOOL_STATE_CUR);
	spool_index_free(ix);
}

/* ---- threads ------------------------------------------------------------------------------ */

struct th_arg {
	struct spool_index *ix;
	unsigned k;
	atomic_int *stop;
	int bad;
};

static void *th_writer(void *p)
{
	struct th_arg *a = p;
	for (unsigned i = 0; i < 2000; i++) {
		char id[SPOOL_ID_MAX];
		mkid(id, sizeof id, 1700000000 + i, a->k, 1, i, "w");
		if (spool_index_put(a->ix, id, SPOOL_STATE_NEW) != 0)
			a->bad++;
		if (i % 2 == 0 && spool_index_update(a->ix, id, SPOOL_STATE_CUR) != 0)
			a->bad++;
		if (i % 4 == 0 && spool_index_del(a->ix, id) != 0)
			a->bad++;
	}
	return NULL;
}

static void *th_reader(void *p)
{
	struct th_arg *a = p;
	struct spool_index_item items[64];
	while (!atomic_load(a->stop)) {
		size_t n, total;
		if (spool_index_page(a->ix, NULL, 0, 64, items, &n, &total) != 0 || n > 64 ||
		    n > total)
			a->bad++;
		for (size_t i = 1; i < n; i++)
			if (spool_index_id_newer(items[i - 1].id, items[i].id) >= 0)
				a->bad++;
	}
	return NULL;
}

/* The HTTP thread pages while the loop and the pool store, move and delete. */
static void test_threads(void **state)
{
	(void)state;
	struct spool_index *ix = spool_index_new();
	atomic_int stop = 0;
	struct th_arg w[3], r = {ix, 0, &stop, 0};
	pthread_t tw[3], tr;
	assert_int_equal(pthread_create(&tr, NULL, th_reader, &r), 0);
	for (unsigned i = 0; i < 3; i++) {
		w[i] = (struct th_arg){ix, i, &stop, 0};
		assert_int_equal(pthread_create(&tw[i], NULL, th_writer, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pthread_join(tw[i], NULL), 0);
		assert_int_equal(w[i].bad, 0);
	}
	atomic_store(&stop, 1);
	assert_int_equal(pthread_join(tr, NULL), 0);
	assert_int_equal(r.bad, 0);
	size_t counts[SPOOL_STATES];
	assert_int_equal(spool_index_total(ix, counts), 3 * 1500);
	assert_int_equal(counts[SPOOL_STATE_CUR], 3 * 500);
	spool_index_free(ix);
}

/* ---- kept by the spool ---------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void touch(const char *dir, const char *sub, const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	mkdir(p, 0750);
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	close(fd);
}

static void test_spool_keeps_it(void **state)
{
	(void)state;
	char root[64] = "/tmp/test_spool_index.XXXXXX", dir[128], err[256];
	assert_non_null(mkdtemp(root));
	snprintf(dir, sizeof dir, "%s/spool", root);
	struct spool *s;
	assert_int_equal(spool_open(dir, "mx.test", &s, err, sizeof err), 0);
	spool_close(s);
	/* What a previous run left: found by the one scan at open. */
	touch(dir, "new", "1700000001.M000000P1Q1.mx.test");
	touch(dir, "cur", "1700000002.M000000P1Q2.mx.test:2,S");
	touch(dir, "failed", "1700000003.M000000P1Q3.mx.test");
	touch(dir, "new", ".hidden");
	assert_int_equal(spool_open(dir, "mx.test", &s, err, sizeof err), 0);
	struct spool_index *ix = spool_get_index(s);
	size_t counts[SPOOL_STATES];
	assert_int_equal(spool_index_total(ix, counts), 3);
	assert_int_equal(counts[SPOOL_STATE_NEW], 1);
	assert_int_equal(counts[SPOOL_STATE_CUR], 1);
	assert_int_equal(counts[SPOOL_STATE_FAILED], 1);
	enum spool_state st;
	assert_int_equal(spool_index_get(ix, "1700000002.M000000P1Q2.mx.test", &st), 0);
	assert_int_equal(st, SPOOL_STATE_CUR);

	/* store -> new, move -> cur, remove -> gone; a failed store adds nothing */
	char id[SPOOL_ID_MAX];
	spool_new_id(s, id, sizeof id);
	const char *rcpt[] = {"b@y"};
	struct spool_envelope env = {.id = id,
	                             .mail_from = "a@x",
	                             .rcpt = rcpt,
	                             .nrcpt = 1,
	                             .client_addr = "127.0.0.1",
	                             .local_addr = "127.0.0.1",
	                             .hostname = "mx.test",
	                             .size = 3};
	assert_int_equal(spool_store(s, &env, "hi\n", 3), 0);
	assert_int_equal(spool_index_get(ix, id, &st), 0);
	assert_int_equal(st, SPOOL_STATE_NEW);
	char id2[SPOOL_ID_MAX];
	spool_new_id(s, id2, sizeof id2);
	touch(dir, "tmp", id2); /* a used id: the store fails */
	env.id = id2;
	assert_int_equal(spool_store(s, &env, "hi\n", 3), -EEXIST);
	assert_int_equal(spool_index_get(ix, id2, &st), -ENOENT);
	env.id = id;
	assert_int_equal(spool_index_total(ix, NULL), 4);
	struct spool_index_item items[1];
	size_t n, total;
	assert_int_equal(spool_index_page(ix, NULL, 0, 1, items, &n, &total), 0);
	assert_string_equal(items[0].id, id);
	assert_int_equal(spool_move(s, id, SPOOL_STATE_NEW, SPOOL_STATE_CUR), 0);
	assert_int_equal(spool_index_get(ix, id, &st), 0);
	assert_int_equal(st, SPOOL_STATE_CUR);
	assert_int_equal(
	    spool_move(s, "1700000001.M000000P1Q1.mx.test", SPOOL_STATE_NEW, SPOOL_STATE_FAILED),
	    0);
	assert_int_equal(spool_index_get(ix, "1700000001.M000000P1Q1.mx.test", &st), 0);
	assert_int_equal(st, SPOOL_STATE_FAILED);
	assert_int_equal(spool_remove(s, SPOOL_STATE_CUR, id), 0);
	assert_int_equal(spool_index_get(ix, id, &st), -ENOENT);
	assert_int_equal(spool_remove(s, SPOOL_STATE_CUR, "1700000002.M000000P1Q2.mx.test"), 0);
	assert_int_equal(spool_index_total(ix, counts), 2);
	assert_int_equal(counts[SPOOL_STATE_FAILED], 2);

	/* Stored straight into cur/ (SMTPD_WEBHOOK_SYNC). */
	spool_new_id(s, id, sizeof id);
	env.id = id;
	struct spool_store_opts opts = {.to_cur = true};
	assert_int_equal(spool_store_ex(s, &env, "hi\n", 3, &opts), 0);
	assert_int_equal(spool_index_get(ix, id, &st), 0);
	assert_int_equal(st, SPOOL_STATE_CUR);
	spool_close(s);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order),   cmocka_unit_test(test_put_update_del),
	    cmocka_unit_test(test_paging),  cmocka_unit_test(test_model),
	    cmocka_unit_test(test_batch),   cmocka_unit_test(test_large),
	    cmocka_unit_test(test_threads), cmocka_unit_test(test_spool_keeps_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
