/* Tests for the Maildir spool: layout, errors, exact bytes of a stored message
 * and its envelope, unique ids across threads, crash leftovers at open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "spool.h"
#include "spool_index.h"
#include "spool_priv.h"
#include "journal.h"
#include "spool_test_env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 2026-11-27T08:40:58.123Z */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct fx {
	char root[64];
	char dir[128];
	struct spool *s;
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	strcpy(fx->root, "/tmp/test_spool.XXXXXX");
	assert_non_null(mkdtemp(fx->root));
	snprintf(fx->dir, sizeof fx->dir, "%s/a/b/spool", fx->root);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	spool_close(fx->s);
	nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void fx_open(struct fx *fx, const char *hostname)
{
	char err[512] = "";
	spool_close(fx->s);
	fx->s = NULL;
	int rc = spool_open(fx->dir, hostname, &fx->s, err, sizeof err);
	if (rc != 0)
		fail_msg("spool_open: %d %s", rc, err);
}

static char *path_in(const struct fx *fx, const char *sub, const char *name)
{
	static char p[1024];
	snprintf(p, sizeof p, "%s/%s/%s", fx->dir, sub, name);
	return p;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	char *data = malloc(1 << 20);
	assert_non_null(data);
	size_t n = fread(data, 1, (1 << 20) - 1, f);
	fclose(f);
	data[n] = '\0';
	if (len)
		*len = n;
	return data;
}

/* Entries in dir other than . and .., optionally only those ending in suffix. */
static size_t count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (suffix &&
		    (l < strlen(suffix) || strcmp(de->d_name + l - strlen(suffix), suffix)))
			continue;
		n++;
	}
	closedir(d);
	return n;
}

static void touch(const char *path, time_t age)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x\n", 2), 2);
	close(fd);
	if (age) {
		struct timespec t[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
		assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
	}
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static const char body[] = "Subject: hi\n\nhello\n";

/* ---- open ------------------------------------------------------------------------ */

static void test_open_layout(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	assert_string_equal(spool_dir(fx->s), fx->dir);
	static const char *const subs[] = {"tmp", "new", "cur", "meta"};
	for (size_t i = 0; i < 4; i++) {
		char p[256];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", fx->dir, subs[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, SPOOL_DIR_MODE & ~022);
		assert_int_equal(count_files(p, NULL), 0); /* the probe is gone */
	}
	/* Opening again over an existing spool works, trailing slash or not. */
	spool_close(fx->s);
	fx->s = NULL;
	char dir2[256], err[256];
	snprintf(dir2, sizeof dir2, "%s//", fx->dir);
	assert_int_equal(spool_open(dir2, "h", &fx->s, err, sizeof err), 0);
	assert_string_equal(spool_dir(fx->s), fx->dir);
	size_t t = 9, m = 9;
	spool_open_cleaned(fx->s, &t, &m);
	assert_int_equal(t, 0);
	assert_int_equal(m, 0);
	spool_close(NULL);
}

static void test_open_errors(void **state)
{
	struct fx *fx = *state;
	char file[128], dir[256], err[512], want[512];
	struct spool *s = (struct spool *)1;

	/* A component of the path is a regular file. */
	snprintf(file, sizeof file, "%s/file", fx->root);
	touch(file, 0);
	snprintf(dir, sizeof dir, "%s/spool", file);
	assert_int_equal(spool_open(dir, "h", &s, err, sizeof err), -ENOTDIR);
	assert_null(s);
	/* mkdir -p names the component in the way. */
	snprintf(want, sizeof want, "SMTPD_SPOOL: cannot create %s: Not a directory", file);
	assert_string_equal(err, want);

	/* The spool itself is a file. */
	assert_int_equal(spool_open(file, "h", &s, err, sizeof err), -ENOTDIR);
	snprintf(want, sizeof want, "SMTPD_SPOOL: cannot create %s: Not a directory", file);
	assert_string_equal(err, want);

	/* One of its subdirectories is a file. */
	snprintf(dir, sizeof dir, "%s/s2", fx->root);
	assert_int_equal(mkdir(dir, 0750), 0);
	snprintf(file, sizeof file, "%s/s2/new", fx->root);
	touch(file, 0);
	assert_int_equal(spool_open(dir, "h", &s, err, sizeof err), -ENOTDIR);
	snprintf(want, sizeof want, "SMTPD_SPOOL: cannot create %s/new: Not a directory", dir);
	assert_string_equal(err, want);

	assert_int_equal(spool_open("", "h", &s, err, sizeof err), -EINVAL);

	/* Root may write anywhere, so EACCES can only be shown to another user. */
	if (geteuid() != 0) {
		snprintf(dir, sizeof dir, "%s/ro", fx->root);
		assert_int_equal(mkdir(dir, 0500), 0);
		assert_true(spool_open(dir, "h", &s, err, sizeof err) < 0);
		assert_non_null(strstr(err, "SMTPD_SPOOL: "));
		chmod(dir, 0700);
	}
}

/* ---- ids ------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_id_format(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx/a:b\\c d");
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	long long sec;
	long usec, pid;
	unsigned long long q;
	char host[SPOOL_ID_MAX];
	assert_int_equal(sscanf(id, "%lld.M%6ldP%ldQ%llu.%255s", &sec, &usec, &pid, &q, host), 5);
	assert_true(llabs(sec - (long long)time(NULL)) < 5);
	assert_true(usec >= 0 && usec < 1000000);
	assert_int_equal(pid, getpid());
	assert_string_equal(host, "mx\\057a\\072b\\134c\\040d");
	assert_null(strchr(id, '/'));
	assert_null(strchr(id, ':'));

	/* A host too long for a file name is cut, never in an escape. */
	char longhost[400];
	memset(longhost, 'a', sizeof longhost - 1);
	longhost[sizeof longhost - 1] = '\0';
	longhost[SPOOL_HOST_MAX - 2] = '/';
	fx_open(fx, longhost);
	spool_new_id(fx->s, id, sizeof id);
	const char *h = strchr(strchr(id, 'Q'), '.') + 1;
	assert_int_equal(strlen(h), SPOOL_HOST_MAX - 2);
	assert_true(strlen(id) + 10 <= 255);
}

static void test_id_unique(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	enum { N = 10000 };
	char **ids = calloc(N, sizeof *ids);
	assert_non_null(ids);
	for (size_t i = 0; i < N; i++) {
		ids[i] = malloc(SPOOL_ID_MAX);
		assert_non_null(ids[i]);
		spool_new_id(fx->s, ids[i], SPOOL_ID_MAX);
	}
	qsort(ids, N, sizeof *ids, cmp_str);
	for (size_t i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	for (size_t i = 0; i < N; i++)
		free(ids[i]);
	free(ids);
}

struct id_worker {
	struct spool *s;
	char (*ids)[SPOOL_ID_MAX];
};

static void *id_worker(void *arg)
{
	struct id_worker *w = arg;
	for (size_t i = 0; i < 2500; i++)
		spool_new_id(w->s, w->ids[i], SPOOL_ID_MAX);
	return NULL;
}

static void test_id_unique_threads(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	char(*ids)[SPOOL_ID_MAX] = calloc(4 * 2500, SPOOL_ID_MAX);
	char **sorted = calloc(4 * 2500, sizeof *sorted);
	assert_non_null(ids);
	assert_non_null(sorted);
	pthread_t th[4];
	struct id_worker w[4];
	for (size_t i = 0; i < 4; i++) {
		w[i] = (struct id_worker){fx->s, ids + i * 2500};
		assert_int_equal(pthread_create(&th[i], NULL, id_worker, &w[i]), 0);
	}
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (size_t i = 0; i < 4 * 2500; i++)
		sorted[i] = ids[i];
	qsort(sorted, 4 * 2500, sizeof *sorted, cmp_str);
	for (size_t i = 1; i < 4 * 2500; i++)
		assert_string_not_equal(sorted[i - 1], sorted[i]);
	free(sorted);
	free(ids);
}

/* ---- store ------------------------------------------------------------------------- */

static json_t *load_meta(const struct fx *fx, const char *id)
{
	char name[SPOOL_ID_MAX + 8];
	snprintf(name, sizeof name, "%s.json", id);
	size_t len;
	char *text = slurp(path_in(fx, "meta", name), &len);
	assert_true(len > 0);
	assert_int_equal(text[len - 1], '\n');
	assert_null(memchr(text, '\n', len - 1)); /* one line */
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (j == NULL)
		fail_msg("meta is not JSON: %s: %s", jerr.text, text);
	free(text);
	return j;
}

static void test_store_exact(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	struct spool_envelope e = base_env(id);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);

	char want[2048];
	snprintf(want, sizeof want,
	         "Return-Path: <a@x.example>\n"
	         "Received: from client.example ([203.0.113.7])\n"
	         "\tby mx.example (mailport) with ESMTP id %s\n"
	         "\tfor <b@y.example>; Fri, 27 Nov 2026 08:40:58 +0000\n"
	         "%s",
	         id, body);
	size_t len;
	char *got = slurp(path_in(fx, "new", id), &len);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(got);

	struct stat st;
	assert_int_equal(stat(path_in(fx, "new", id), &st), 0);
	assert_int_equal(st.st_mode & 0777, SPOOL_FILE_MODE & ~022);

	/* The envelope, byte for byte (SPEC 5 key order). */
	char name[SPOOL_ID_MAX + 8];
	snprintf(name, sizeof name, "%s.json", id);
	got = slurp(path_in(fx, "meta", name), &len);
	snprintf(want, sizeof want,
	         "{\"id\":\"%s\",\"mail_from\":\"a@x.example\",\"rcpt_to\":[\"b@y.example\"],"
	         "\"client\":{\"address\":\"203.0.113.7\",\"port\":40000},"
	         "\"helo\":\"client.example\",\"local\":{\"address\":\"127.0.0.1\",\"port\":2525},"
	         "\"auth_user\":null,\"tls\":null,\"proxy\":null,\"size\":20,"
	         "\"received_at\":\"2026-11-27T08:40:58.123Z\",\"verdict\":null}\n",
	         id);
	assert_string_equal(got, want);
	free(got);
	char *j = spool_envelope_json(&e);
	assert_non_null(j);
	assert_int_equal(strlen(j) + 1, strlen(want));
	assert_memory_equal(j, want, strlen(j));
	free(j);

	assert_int_equal(count_files(path_in(fx, "tmp", ""), NULL), 0);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 1);
	assert_int_equal(count_files(path_in(fx, "new", ""), NULL), 1);
}

static void test_store_variants(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	static const char *const rcpt2[] = {"one@y.example", "two@z.example"};
	char id[SPOOL_ID_MAX];

	/* Null sender, two recipients, IPv6, TLS and AUTH. */
	spool_new_id(fx->s, id, sizeof id);
	struct spool_envelope e = base_env(id);
	e.mail_from = "";
	e.rcpt = rcpt2;
	e.nrcpt = 2;
	e.client_addr = "2001:db8::7";
	e.client_port = 51000;
	e.local_addr = "::1";
	e.tls_version = "TLSv1.3";
	e.tls_cipher = "TLS_AES_256_GCM_SHA384";
	e.auth_user = "alice";
	e.size = 123456789012ULL;
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);
	char *got = slurp(path_in(fx, "new", id), NULL);
	char want[2048];
	snprintf(want, sizeof want,
	         "Return-Path: <>\n"
	         "Received: from client.example ([IPv6:2001:db8::7])\n"
	         "\tby mx.example (mailport) with ESMTPSA id %s;\n"
	         "\tFri, 27 Nov 2026 08:40:58 +0000\n%s",
	         id, body);
	assert_string_equal(got, want);
	free(got);

	json_t *j = load_meta(fx, id);
	assert_string_equal(json_string_value(json_object_get(j, "id")), id);
	assert_string_equal(json_string_value(json_object_get(j, "mail_from")), "");
	json_t *r = json_object_get(j, "rcpt_to");
	assert_int_equal(json_array_size(r), 2);
	assert_string_equal(json_string_value(json_array_get(r, 0)), "one@y.example");
	assert_string_equal(json_string_value(json_array_get(r, 1)), "two@z.example");
	json_t *c = json_object_get(j, "client");
	assert_string_equal(json_string_value(json_object_get(c, "address")), "2001:db8::7");
	assert_int_equal(json_integer_value(json_object_get(c, "port")), 51000);
	json_t *l = json_object_get(j, "local");
	assert_string_equal(json_string_value(json_object_get(l, "address")), "::1");
	assert_int_equal(json_integer_value(json_object_get(l, "port")), 2525);
	assert_string_equal(json_string_value(json_object_get(j, "helo")), "client.example");
	assert_string_equal(json_string_value(json_object_get(j, "auth_user")), "alice");
	json_t *t = json_object_get(j, "tls");
	assert_true(json_is_object(t));
	assert_string_equal(json_string_value(json_object_get(t, "version")), "TLSv1.3");
	assert_string_equal(json_string_value(json_object_get(t, "cipher")),
	                    "TLS_AES_256_GCM_SHA384");
	assert_true(json_is_null(json_object_get(j, "proxy")));
	assert_int_equal(json_integer_value(json_object_get(j, "size")), 123456789012LL);
	assert_string_equal(json_string_value(json_object_get(j, "received_at")),
	                    "2026-11-27T08:40:58.123Z");
	assert_true(json_is_null(json_object_get(j, "verdict")));
	assert_int_equal(json_object_size(j), 12);
	json_decref(j);

	/* SPEC 8: rspamd's verdict goes in as an object, scores as rspamd wrote
	 * them; a verdict that is not a JSON object is refused (NULL). */
	e = base_env(id);
	e.verdict_json = "{\"action\":\"add header\",\"score\":8.3,\"spf\":\"pass\"}";
	char *ej = spool_envelope_json(&e);
	assert_non_null(ej);
	assert_non_null(strstr(ej, ",\"verdict\":{\"action\":\"add header\",\"score\":8.3,"
	                           "\"spf\":\"pass\"}}"));
	free(ej);
	e.verdict_json = "[1]";
	assert_null(spool_envelope_json(&e));

	/* HELO, TLS without AUTH, no helo at all, a PROXY header. */
	spool_new_id(fx->s, id, sizeof id);
	e = base_env(id);
	e.esmtp = false;
	e.helo = "";
	e.proxy_src_addr = "203.0.113.7";
	e.proxy_src_port = 40000;
	e.proxy_dst_addr = "198.51.100.1";
	e.proxy_dst_port = 25;
	assert_int_equal(spool_store(fx->s, &e, "", 0), 0);
	got = slurp(path_in(fx, "new", id), NULL);
	snprintf(want, sizeof want,
	         "Return-Path: <a@x.example>\n"
	         "Received: from [203.0.113.7] ([203.0.113.7])\n"
	         "\tby mx.example (mailport) with SMTP id %s\n"
	         "\tfor <b@y.example>; Fri, 27 Nov 2026 08:40:58 +0000\n",
	         id);
	assert_string_equal(got, want);
	free(got);
	j = load_meta(fx, id);
	assert_true(json_is_null(json_object_get(j, "auth_user")));
	assert_true(json_is_null(json_object_get(j, "tls")));
	json_t *p = json_object_get(j, "proxy");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(p, "destination"), "address")),
	    "198.51.100.1");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "source"), "port")),
	                 40000);
	json_decref(j);

	spool_new_id(fx->s, id, sizeof id);
	e = base_env(id);
	e.tls_version = "TLSv1.2";
	e.tls_cipher = NULL;
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);
	got = slurp(path_in(fx, "new", id), NULL);
	assert_non_null(strstr(got, " with ESMTPS id "));
	free(got);
	j = load_meta(fx, id);
	assert_true(json_is_null(json_object_get(json_object_get(j, "tls"), "cipher")));
	json_decref(j);
	assert_int_equal(count_files(path_in(fx, "tmp", ""), NULL), 0);
}

/* Peer bytes: control characters cannot break the header, invalid UTF-8 cannot
 * break the JSON. */
static void test_store_hostile_input(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	struct spool_envelope e = base_env(id);
	e.helo = "evil\r\nX-Injected: 1\x7f \xff\xfe ok \xc3\xa9 \xc3\x28 \xed\xa0\x80 \xe2\x82";
	e.mail_from = "a\xc0\xaf@x";
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);

	char *got = slurp(path_in(fx, "new", id), NULL);
	assert_null(strstr(got, "\nX-Injected"));
	assert_non_null(strstr(got, "Received: from evil??X-Injected: 1? \xff\xfe ok \xc3\xa9"));
	assert_non_null(strstr(got, "Return-Path: <a\xc0\xaf@x>\n"));
	free(got);

	json_t *j = load_meta(fx, id);
	assert_string_equal(json_string_value(json_object_get(j, "helo")),
	                    "evil\r\nX-Injected: 1\x7f \xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9 "
	                    "\xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
	                    "\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(j, "mail_from")),
	                    "a\xef\xbf\xbd\xef\xbf\xbd@x");
	json_decref(j);

	/* An id that is not a plain file name is refused before anything is written. */
	e.id = "../escape";
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -EINVAL);
	e.id = ".hidden";
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -EINVAL);
	e.id = "";
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -EINVAL);
}

/* A failing rename into new/ leaves nothing behind. */
static void test_store_failure_cleans_up(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	char newdir[256];
	snprintf(newdir, sizeof newdir, "%s/new", fx->dir);
	assert_int_equal(rmdir(newdir), 0); /* the open fd now names a dead directory */
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	struct spool_envelope e = base_env(id);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -ENOENT);
	assert_int_equal(count_files(path_in(fx, "tmp", ""), NULL), 0);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 0);

	/* A used id is never overwritten in tmp/. */
	fx_open(fx, "mx.example");
	spool_new_id(fx->s, id, sizeof id);
	touch(path_in(fx, "tmp", id), 0);
	e = base_env(id);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -EEXIST);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 0);
	assert_int_equal(count_files(path_in(fx, "new", ""), NULL), 0);
}

struct worker {
	struct spool *s;
	int failures;
};

static void *store_worker(void *arg)
{
	struct worker *w = arg;
	static const char *const rcpt[] = {"b@y.example"};
	for (int i = 0; i < 200; i++) {
		char id[SPOOL_ID_MAX];
		spool_new_id(w->s, id, sizeof id);
		struct spool_envelope e = {
		    .id = id,
		    .mail_from = "a@x",
		    .rcpt = rcpt,
		    .nrcpt = 1,
		    .helo = "h",
		    .esmtp = true,
		    .client_addr = "127.0.0.1",
		    .local_addr = "127.0.0.1",
		    .hostname = "mx",
		};
		clock_gettime(CLOCK_REALTIME, &e.received_at);
		if (spool_store(w->s, &e, body, strlen(body)) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_store_concurrent(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){fx->s, 0};
		assert_int_equal(pthread_create(&th[i], NULL, store_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(count_files(path_in(fx, "new", ""), NULL), 800);
	assert_int_equal(count_files(path_in(fx, "meta", ""), ".json"), 800);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 800);
	assert_int_equal(count_files(path_in(fx, "tmp", ""), NULL), 0);
	/* A restart finds nothing to clean in a healthy spool. */
	fx_open(fx, "mx.example");
	size_t t, m;
	spool_open_cleaned(fx->s, &t, &m);
	assert_int_equal(t + m, 0);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 800);
}

/* ---- crash leftovers ------------------------------------------------------------------ */

static void test_stale_cleanup(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	spool_close(fx->s);
	fx->s = NULL;
	char failed[256];
	snprintf(failed, sizeof failed, "%s/failed", fx->dir);
	assert_int_equal(mkdir(failed, 0750), 0);

	touch(path_in(fx, "tmp", "1.M1P1Q1.old"), 37 * 3600);       /* dead delivery */
	touch(path_in(fx, "tmp", "1.M1P1Q2.fresh"), 3600);          /* maybe live */
	touch(path_in(fx, "meta", "1.M1P1Q1.old.json"), 37 * 3600); /* its message goes */
	touch(path_in(fx, "meta", "1.M1P1Q2.fresh.json"), 0);       /* message in tmp/ */
	touch(path_in(fx, "new", "1.M1P1Q3.h"), 0);
	touch(path_in(fx, "meta", "1.M1P1Q3.h.json"), 0);
	touch(path_in(fx, "cur", "1.M1P1Q4.h:2,S"), 0);
	touch(path_in(fx, "meta", "1.M1P1Q4.h.json"), 0);
	touch(path_in(fx, "failed", "1.M1P1Q5.h"), 0);
	touch(path_in(fx, "meta", "1.M1P1Q5.h.json"), 0);
	touch(path_in(fx, "meta", "1.M1P1Q6.gone.json"), 0);       /* orphan */
	touch(path_in(fx, "meta", ".1.M1P1Q7.gone.json.tmp"), 0);  /* orphan temp */
	touch(path_in(fx, "meta", ".1.M1P1Q2.fresh.json.tmp"), 0); /* store in progress */
	touch(path_in(fx, "meta", "README"), 0);                   /* not ours */

	fx_open(fx, "mx.example");
	size_t t, m;
	spool_open_cleaned(fx->s, &t, &m);
	assert_int_equal(t, 1);
	assert_int_equal(m, 3);
	assert_false(exists(path_in(fx, "tmp", "1.M1P1Q1.old")));
	assert_true(exists(path_in(fx, "tmp", "1.M1P1Q2.fresh")));
	assert_false(exists(path_in(fx, "meta", "1.M1P1Q1.old.json")));
	assert_true(exists(path_in(fx, "meta", "1.M1P1Q2.fresh.json")));
	assert_true(exists(path_in(fx, "meta", ".1.M1P1Q2.fresh.json.tmp")));
	assert_true(exists(path_in(fx, "meta", "1.M1P1Q3.h.json")));
	assert_true(exists(path_in(fx, "meta", "1.M1P1Q4.h.json")));
	assert_true(exists(path_in(fx, "meta", "1.M1P1Q5.h.json")));
	assert_false(exists(path_in(fx, "meta", "1.M1P1Q6.gone.json")));
	assert_false(exists(path_in(fx, "meta", ".1.M1P1Q7.gone.json.tmp")));
	assert_true(exists(path_in(fx, "meta", "README")));
	assert_true(exists(path_in(fx, "new", "1.M1P1Q3.h")));
	assert_true(exists(path_in(fx, "cur", "1.M1P1Q4.h:2,S")));
}

/* ---- a failed sync (the journal's, issue 14; test_journal.c has the rest) ---- */

/* A failed sync: the store fails, and nothing of the message stays in new/,
 * meta/, tmp/ or the index; the next store works. */
static void test_store_sync_fails(void **state)
{
	struct fx *fx = *state;
	fx_open(fx, "mx.example");
	char id[SPOOL_ID_MAX];
	spool_new_id(fx->s, id, sizeof id);
	struct spool_envelope e = base_env(id);
	journal_set_sync(spool_journal(fx->s), always_eio);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), -EIO);
	journal_set_sync(spool_journal(fx->s), NULL);
	assert_int_equal(count_files(path_in(fx, "new", ""), NULL), 0);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 0);
	assert_int_equal(count_files(path_in(fx, "tmp", ""), NULL), 0);
	enum spool_state st;
	assert_int_equal(spool_index_get(spool_get_index(fx->s), id, &st), -ENOENT);
	assert_int_equal(spool_locate(fx->s, id, &st), -ENOENT);
	spool_new_id(fx->s, id, sizeof id);
	e = base_env(id);
	assert_int_equal(spool_store(fx->s, &e, body, strlen(body)), 0);
	assert_int_equal(count_files(path_in(fx, "new", ""), NULL), 1);
	assert_int_equal(count_files(path_in(fx, "meta", ""), NULL), 1);
	assert_int_equal(spool_index_total(spool_get_index(fx->s), NULL), 1);
	uint64_t messages, syncs, failures;
	spool_sync_stats(fx->s, &messages, &syncs, &failures);
	assert_int_equal(messages, 1);
	assert_int_equal(syncs, 2);
	assert_int_equal(failures, 1);
}

int main(void)
{
	umask(022);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_layout, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_id_format, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_id_unique, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_id_unique_threads, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_exact, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_variants, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_hostile_input, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_failure_cleans_up, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_concurrent, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stale_cleanup, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_store_sync_fails, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
