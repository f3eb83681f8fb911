/* Tests for the journal (issue 14): a batch is one sync; a crash after the
 * sync but before the messages reached new/ is repaired at the next open, byte
 * for byte and exactly once; a message a consumer took is not brought back; a
 * torn record is ignored; a failed sync refuses exactly its batch and nothing of
 * it comes back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "journal.h"
#include "spool.h"
#include "spool_test_env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct fx {
	char dir[64];
	struct spool *s;
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	strcpy(fx->dir, "/tmp/test_journal.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	char err[256];
	assert_int_equal(spool_open(fx->dir, "mx.example", &fx->s, err, sizeof err), 0);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	spool_close(fx->s);
	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* Close as a crash would and open again (the replay runs). */
static void fx_crash_reopen(struct fx *fx)
{
	spool_crash(fx->s);
	fx->s = NULL;
	char err[256] = "";
	int rc = spool_open(fx->dir, "mx.example", &fx->s, err, sizeof err);
	if (rc != 0)
		fail_msg("spool_open: %d %s", rc, err);
}

static size_t count(const struct fx *fx, const char *sub)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", fx->dir, sub);
	DIR *d = opendir(p);
	if (d == NULL)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static char *path(const struct fx *fx, const char *sub, const char *name)
{
	static char p[4][512];
	static int k;
	k = (k + 1) % 4;
	int n = snprintf(p[k], sizeof p[k], "%s/%s/%s", fx->dir, sub, name);
	assert_true(n > 0 && (size_t)n < sizeof p[k]);
	return p[k];
}

static char *slurp(const char *file, size_t *len)
{
	FILE *f = fopen(file, "rb");
	if (f == NULL)
		return NULL;
	char *data = malloc(1 << 20);
	assert_non_null(data);
	size_t n = fread(data, 1, (1 << 20) - 1, f);
	fclose(f);
	data[n] = '\0';
	if (len)
		*len = n;
	return data;
}

/* Store one message; its stored bytes in *stored (malloc'ed). */
static void store(struct fx *fx, char *id, const char *body, char **stored, size_t *len)
{
	spool_new_id(fx->s, id, SPOOL_ID_MAX);
	struct spool_envelope e = base_env(id);
	e.size = strlen(body);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);
	*stored = slurp(path(fx, "new", id), len);
	assert_non_null(*stored);
}

static void test_batch_one_sync(void **state)
{
	struct fx *fx = *state;
	struct journal *j = spool_journal(fx->s);
	char ids[8][SPOOL_ID_MAX];
	char *meta[8];
	struct journal_entry e[8], *pe[8];
	struct iovec iov[8];
	for (int i = 0; i < 8; i++) {
		spool_new_id(fx->s, ids[i], sizeof ids[i]);
		struct spool_envelope env = base_env(ids[i]);
		size_t ml;
		meta[i] = spool_meta_file(&env, NULL, &ml);
		assert_non_null(meta[i]);
		iov[i] = (struct iovec){(void *)"Subject: x\n\nbody\n", 17};
		e[i] = (struct journal_entry){.id = ids[i],
		                              .meta = meta[i],
		                              .meta_len = ml,
		                              .fd = -1,
		                              .iov = &iov[i],
		                              .iovcnt = 1,
		                              .len = 17};
		pe[i] = &e[i];
	}
	struct journal_stats before, after;
	journal_get_stats(j, &before);
	journal_commit(j, pe, 8);
	journal_get_stats(j, &after);
	assert_int_equal(after.syncs - before.syncs, 1);
	assert_int_equal(after.messages - before.messages, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(e[i].rc, 0);
		size_t n;
		char *got = slurp(path(fx, "new", ids[i]), &n);
		assert_non_null(got);
		assert_int_equal(n, 17);
		free(got);
		char mname[SPOOL_ID_MAX + 8];
		int mn = snprintf(mname, sizeof mname, "%s.json", ids[i]);
		assert_true(mn > 0 && (size_t)mn < sizeof mname);
		got = slurp(path(fx, "meta", mname), NULL);
		assert_non_null(got);
		assert_string_equal(got, meta[i]);
		free(got);
		free(meta[i]);
	}
	assert_int_equal(count(fx, "tmp"), 0);
}

/* Committed, then the crash came before tmp/<id> was renamed into new/ (and
 * before its envelope was written): the replay finishes the job. */
static void test_replay_finishes_materialising(void **state)
{
	struct fx *fx = *state;
	char id[SPOOL_ID_MAX];
	char *stored;
	size_t len;
	store(fx, id, "hello\n", &stored, &len);
	char mname[SPOOL_ID_MAX + 8];
	snprintf(mname, sizeof mname, "%s.json", id);
	char *meta = slurp(path(fx, "meta", mname), NULL);
	assert_int_equal(rename(path(fx, "new", id), path(fx, "tmp", id)), 0);
	assert_int_equal(unlink(path(fx, "meta", mname)), 0);
	fx_crash_reopen(fx);
	size_t n;
	char *got = slurp(path(fx, "new", id), &n);
	assert_non_null(got);
	assert_int_equal(n, len);
	assert_memory_equal(got, stored, len);
	char *meta2 = slurp(path(fx, "meta", mname), NULL);
	assert_non_null(meta2);
	assert_string_equal(meta2, meta);
	assert_int_equal(count(fx, "new"), 1);
	assert_int_equal(count(fx, "tmp"), 0);
	assert_int_equal(count(fx, "journal"), 0); /* replayed, synced, removed */
	enum spool_state st;
	assert_int_equal(spool_locate(fx->s, id, &st), 0);
	free(got);
	free(meta);
	free(meta2);
	free(stored);
}

/* A file in new/ cut short (a machine crash before writeback) is written again. */
static void test_replay_repairs_short_file(void **state)
{
	struct fx *fx = *state;
	char id[SPOOL_ID_MAX];
	char *stored;
	size_t len;
	store(fx, id, "a longer body\nwith lines\n", &stored, &len);
	assert_int_equal(truncate(path(fx, "new", id), 10), 0);
	fx_crash_reopen(fx);
	size_t n;
	char *got = slurp(path(fx, "new", id), &n);
	assert_int_equal(n, len);
	assert_memory_equal(got, stored, len);
	assert_int_equal(count(fx, "new"), 1);
	free(got);
	free(stored);
}

/* In the same boot, a message gone from new/ was taken by a consumer; one in
 * cur/ stays there; neither comes back into new/. */
static void test_replay_respects_consumers(void **state)
{
	struct fx *fx = *state;
	char a[SPOOL_ID_MAX], b[SPOOL_ID_MAX];
	char *sa, *sb;
	size_t la, lb;
	store(fx, a, "one\n", &sa, &la);
	store(fx, b, "two\n", &sb, &lb);
	assert_int_equal(unlink(path(fx, "new", a)), 0);
	char cur[SPOOL_ID_MAX + 8];
	snprintf(cur, sizeof cur, "%s:2,S", b);
	assert_int_equal(rename(path(fx, "new", b), path(fx, "cur", cur)), 0);
	fx_crash_reopen(fx);
	assert_int_equal(count(fx, "new"), 0);
	assert_int_equal(count(fx, "cur"), 1);
	free(sa);
	free(sb);
}

/* A record written after the sync's data was lost (torn tail) is ignored;
 * the records before it replay. */
static void test_replay_ignores_torn_tail(void **state)
{
	struct fx *fx = *state;
	char a[SPOOL_ID_MAX], b[SPOOL_ID_MAX];
	char *sa, *sb;
	size_t la, lb;
	store(fx, a, "first\n", &sa, &la);
	store(fx, b, "second message\n", &sb, &lb);
	/* Both back in tmp/ as if never materialised; b's record torn. */
	assert_int_equal(rename(path(fx, "new", a), path(fx, "tmp", a)), 0);
	assert_int_equal(rename(path(fx, "new", b), path(fx, "tmp", b)), 0);
	char seg[512] = "";
	DIR *d = opendir(path(fx, "journal", ""));
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".mpj"))
			snprintf(seg, sizeof seg, "%s/journal/%s", fx->dir, de->d_name);
	closedir(d);
	assert_true(seg[0] != '\0');
	struct stat st;
	assert_int_equal(stat(seg, &st), 0);
	assert_int_equal(truncate(seg, st.st_size - 3), 0);
	fx_crash_reopen(fx);
	assert_int_equal(count(fx, "new"), 1);
	char *got = slurp(path(fx, "new", a), NULL);
	assert_non_null(got);
	free(got);
	free(sa);
	free(sb);
}

/* A failed sync: every message of the batch refused, nothing of them left,
 * nothing of them back after a crash; the next batch works. */
static void test_failed_sync_refuses_batch(void **state)
{
	struct fx *fx = *state;
	char ok[SPOOL_ID_MAX];
	char *so;
	size_t lo;
	store(fx, ok, "before\n", &so, &lo);
	journal_set_sync(spool_journal(fx->s), always_eio);
	char ids[3][SPOOL_ID_MAX];
	for (int i = 0; i < 3; i++) {
		spool_new_id(fx->s, ids[i], sizeof ids[i]);
		struct spool_envelope e = base_env(ids[i]);
		assert_int_equal(spool_store(fx->s, &e, "lost\n", 5), -EIO);
		assert_false(access(path(fx, "new", ids[i]), F_OK) == 0);
		assert_false(access(path(fx, "tmp", ids[i]), F_OK) == 0);
	}
	journal_set_sync(spool_journal(fx->s), NULL);
	struct journal_stats st;
	journal_get_stats(spool_journal(fx->s), &st);
	assert_int_equal(st.sync_failures, 3);
	char after[SPOOL_ID_MAX];
	char *sa;
	size_t la;
	store(fx, after, "after\n", &sa, &la);
	/* Crash with the refused ones in tmp/ again, as if a replay could see
	 * them: their records were cut off the segment. */
	for (int i = 0; i < 3; i++) {
		FILE *f = fopen(path(fx, "tmp", ids[i]), "w");
		fputs("lost\n", f);
		fclose(f);
	}
	fx_crash_reopen(fx);
	assert_int_equal(count(fx, "new"), 2);
	for (int i = 0; i < 3; i++)
		assert_false(access(path(fx, "new", ids[i]), F_OK) == 0);
	char mname[SPOOL_ID_MAX + 8];
	snprintf(mname, sizeof mname, "%s.json", after);
	assert_true(access(path(fx, "meta", mname), F_OK) == 0);
	free(so);
	free(sa);
}

/* Checkpoint: segments go once synced; close leaves none. */
static void test_checkpoint_removes_segments(void **state)
{
	struct fx *fx = *state;
	char id[SPOOL_ID_MAX];
	char *s;
	size_t l;
	store(fx, id, "x\n", &s, &l);
	assert_int_equal(count(fx, "journal"), 1);
	assert_true(journal_checkpoint(spool_journal(fx->s), true) >= 1);
	assert_int_equal(count(fx, "journal"), 0);
	/* The next commit opens a new segment. */
	char id2[SPOOL_ID_MAX];
	char *s2;
	store(fx, id2, "y\n", &s2, &l);
	assert_int_equal(count(fx, "journal"), 1);
	spool_close(fx->s);
	fx->s = NULL;
	assert_int_equal(count(fx, "journal"), 0);
	char err[256];
	assert_int_equal(spool_open(fx->dir, "mx.example", &fx->s, err, sizeof err), 0);
	assert_int_equal(count(fx, "new"), 2);
	free(s);
	free(s2);
}

/* A large message already streamed to tmp/ is synced there, not copied: the
 * segment stays small, and a replay still finishes its move into new/. */
static void test_external_large_message(void **state)
{
	struct fx *fx = *state;
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	size_t len = JOURNAL_EXTERNAL_MIN + 4321;
	char *data = malloc(len);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + i % 26);
	int fd = open(path(fx, "tmp", id), O_RDWR | O_CREAT | O_EXCL, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	struct spool_envelope env = base_env(id);
	size_t ml;
	char *meta = spool_meta_file(&env, NULL, &ml);
	struct journal_entry e = {.id = id, .meta = meta, .meta_len = ml, .fd = fd, .len = len};
	struct journal_entry *pe = &e;
	journal_commit(spool_journal(fx->s), &pe, 1);
	close(fd);
	assert_int_equal(e.rc, 0);
	struct stat st;
	assert_int_equal(stat(path(fx, "new", id), &st), 0);
	assert_int_equal((size_t)st.st_size, len);
	/* The segment holds the record, not the data. */
	DIR *d = opendir(path(fx, "journal", ""));
	struct dirent *de;
	off_t seg = -1;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".mpj")) {
			char p[600];
			snprintf(p, sizeof p, "%s/journal/%s", fx->dir, de->d_name);
			assert_int_equal(stat(p, &st), 0);
			seg = st.st_size;
		}
	closedir(d);
	assert_true(seg > 0 && seg < 4096);
	/* As if the crash came before the move: the replay moves it. */
	char mname[SPOOL_ID_MAX + 8];
	snprintf(mname, sizeof mname, "%s.json", id);
	assert_int_equal(rename(path(fx, "new", id), path(fx, "tmp", id)), 0);
	assert_int_equal(unlink(path(fx, "meta", mname)), 0);
	fx_crash_reopen(fx);
	size_t n;
	char *got = slurp(path(fx, "new", id), &n);
	assert_non_null(got);
	free(got);
	assert_int_equal(stat(path(fx, "new", id), &st), 0);
	assert_int_equal((size_t)st.st_size, len);
	char *meta2 = slurp(path(fx, "meta", mname), NULL);
	assert_string_equal(meta2, meta);
	free(meta2);
	free(meta);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch_one_sync, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_replay_finishes_materialising, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_replay_repairs_short_file, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_replay_respects_consumers, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_replay_ignores_torn_tail, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_sync_refuses_batch, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoint_removes_segments, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_external_large_message, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
