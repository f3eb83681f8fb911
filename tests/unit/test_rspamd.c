/* Tests for rspamd's pure side and the file rewrite (SPEC 8): what rspamd
 * 3.4's /checkv2 answers mean (action, the verdict's RFC 8601 words from its
 * symbols, smtp_message, the milter block in all its shapes), the request's
 * envelope headers, and the header edits applied to a real message file
 * (streamed: a body larger than the copy chunk, a header block past the
 * limit, nothing written when nothing changes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "rspamd.h"

#define TRACE                                                                                      \
	"Return-Path: <a@x.example>\n"                                                             \
	"Received: from client.example ([198.51.100.7])\n"                                         \
	"\tby mx.test (mailport) with ESMTP id 1.M2P3Q4.mx;\n"                                     \
	"\tFri, 27 Nov 2026 08:40:58 +0000\n"

/* An answer of rspamd 3.4 (trimmed), with milter_headers' authentication-results. */
static const char add_header_reply[] =
    "{\"is_skipped\":false,\"score\":8.3,\"required_score\":15.0,\"action\":\"add header\","
    "\"symbols\":{\"RDNS_NONE\":{\"name\":\"RDNS_NONE\",\"score\":1.0,\"metric_score\":1.0},"
    "\"R_SPF_DNSFAIL\":{\"name\":\"R_SPF_DNSFAIL\",\"score\":0.0,\"options\":[\"temporary DNS "
    "error\"]},\"R_DKIM_NA\":{\"name\":\"R_DKIM_NA\",\"score\":0.0},"
    "\"DMARC_DNSFAIL\":{\"name\":\"DMARC_DNSFAIL\",\"score\":0.0},"
    "\"MISSING_MID\":{\"name\":\"MISSING_MID\",\"score\":2.5,\"metric_score\":2.5}},"
    "\"messages\":{},\"message-id\":\"undef\",\"time_real\":3.01,"
    "\"milter\":{\"add_headers\":{\"Authentication-Results\":{\"value\":\"mx.test;\\n\\tdkim="
    "none;\\n\\tspf=temperror smtp.mailfrom=a@x.example\",\"order\":1}},"
    "\"remove_headers\":{\"Authentication-Results\":0,\"X-Spam\":0}}}";

static void test_parse_add_header(void **state)
{
	(void)state;
	struct rspamd_verdict v;
	char why[128];
	assert_int_equal(rspamd_verdict_parse(add_header_reply, strlen(add_header_reply), "mx.test",
	                                      &v, why, sizeof why),
	                 0);
	assert_int_equal(v.action, RSPAMD_ADD_HEADER);
	assert_string_equal(v.text, "");
	assert_string_equal(
	    v.json, "{\"action\":\"add header\",\"score\":8.3,\"required_score\":15.0,"
	            "\"spf\":\"temperror\",\"dkim\":\"none\",\"dmarc\":\"temperror\","
	            "\"symbols\":{\"RDNS_NONE\":1.0,\"R_SPF_DNSFAIL\":0.0,\"R_DKIM_NA\":0.0,"
	            "\"DMARC_DNSFAIL\":0.0,\"MISSING_MID\":2.5}}");
	/* Applied: every Authentication-Results and X-Spam out (the forged one
	 * too), rspamd's results under our trace headers, X-Spam: Yes last. */
	const char *in = TRACE "Authentication-Results: mx.test; spf=pass\n"
	                       "X-Spam: No\nSubject: hi\n";
	struct buf out;
	buf_init(&out, 0);
	bool changed;
	assert_int_equal(hdredit_apply(&v.edits, in, strlen(in), &out, &changed), 0);
	assert_true(changed);
	assert_int_equal(buf_append(&out, "", 1), 0);
	assert_string_equal(out.data, TRACE "Authentication-Results: mx.test;\n\tdkim=none;\n"
	                                    "\tspf=temperror smtp.mailfrom=a@x.example\n"
	                                    "Subject: hi\nX-Spam: Yes\n");
	buf_free(&out);
	rspamd_verdict_free(&v);
	rspamd_verdict_free(&v);
}

static void test_parse_actions(void **state)
{
	(void)state;
	static const struct {
		const char *reply;
		enum rspamd_action action;
		const char *text;
	} cases[] = {
	    {"{\"action\":\"reject\",\"score\":15.0,\"required_score\":15.0,\"symbols\":{\"GTUBE\":"
	     "{\"score\":0.0}},\"messages\":{\"smtp_message\":\"Gtube pattern\"}}",
	     RSPAMD_REJECT, "Gtube pattern"},
	    {"{\"action\":\"reject\",\"messages\":{\"smtp_message\":\"  two\\r\\nlines\\u0007 \"}}",
	     RSPAMD_REJECT, "two  lines"},
	    {"{\"action\":\"soft reject\"}", RSPAMD_SOFT_REJECT, ""},
	    {"{\"action\":\"greylist\",\"messages\":{\"smtp_message\":\"Try again later\"}}",
	     RSPAMD_GREYLIST, "Try again later"},
	    {"{\"action\":\"no action\",\"score\":-0.1}", RSPAMD_NO_ACTION, ""},
	    {"{\"action\":\"rewrite subject\",\"subject\":\"***SPAM*** hi\"}",
	     RSPAMD_REWRITE_SUBJECT, ""},
	    {"{\"action\":\"discard\"}", RSPAMD_OTHER, ""},
	    {"{\"action\":\"my custom action\"}", RSPAMD_OTHER, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rspamd_verdict v;
		char why[128];
		int rc = rspamd_verdict_parse(cases[i].reply, strlen(cases[i].reply), "mx.test", &v,
		                              why, sizeof why);
		if (rc != 0 || v.action != cases[i].action || strcmp(v.text, cases[i].text) != 0)
			fail_msg(
			    "case %zu: rc=%d action got=%d want=%d text got=\"%s\" want=\"%s\"", i,
			    rc, v.action, cases[i].action, v.text, cases[i].text);
		json_t *j = json_loads(v.json, 0, NULL);
		assert_non_null(j);
		/* The action as rspamd named it, even one we do not know. */
		const char *want = strstr(cases[i].reply, "\"action\":\"") + 10;
		assert_memory_equal(json_string_value(json_object_get(j, "action")), want,
		                    strlen(json_string_value(json_object_get(j, "action"))));
		assert_int_equal(json_object_size(j), 7);
		json_decref(j);
		rspamd_verdict_free(&v);
	}
	/* rspamd's own DKIM signatures go on top, under our trace headers. */
	{
		struct rspamd_verdict d;
		char dwhy[128];
		const char *r1 = "{\"action\":\"no action\",\"dkim-signature\":\"v=1; d=x.example; "
		                 "b=abc\",\"milter\":{}}";
		const char *r2 = "{\"action\":\"no action\",\"dkim-signature\":[\"v=1; s=a\",7,"
		                 "\"v=1; s=b\"]}";
		const char *want[] = {TRACE
		                      "DKIM-Signature: v=1; d=x.example; b=abc\nSubject: hi\n",
		                      TRACE "DKIM-Signature: v=1; s=a\nDKIM-Signature: v=1; s=b\n"
		                            "Subject: hi\n"};
		const char *rs[] = {r1, r2};
		for (size_t k = 0; k < 2; k++) {
			assert_int_equal(rspamd_verdict_parse(rs[k], strlen(rs[k]), "mx.test", &d,
			                                      dwhy, sizeof dwhy),
			                 0);
			const char *blk = TRACE "Subject: hi\n";
			struct buf o;
			buf_init(&o, 0);
			bool ch;
			assert_int_equal(hdredit_apply(&d.edits, blk, strlen(blk), &o, &ch), 0);
			assert_int_equal(buf_append(&o, "", 1), 0);
			assert_string_equal(o.data, want[k]);
			buf_free(&o);
			rspamd_verdict_free(&d);
		}
	}
	/* rewrite subject edits the Subject; without a subject, nothing. */
	struct rspamd_verdict v;
	char why[128];
	const char *r = "{\"action\":\"rewrite subject\",\"subject\":\"***SPAM*** hi\"}";
	assert_int_equal(rspamd_verdict_parse(r, strlen(r), "mx.test", &v, why, sizeof why), 0);
	const char *in = TRACE "Subject: hi\n";
	struct buf out;
	buf_init(&out, 0);
	bool changed;
	assert_int_equal(hdredit_apply(&v.edits, in, strlen(in), &out, &changed), 0);
	assert_int_equal(buf_append(&out, "", 1), 0);
	assert_string_equal(out.data, TRACE "Subject: ***SPAM*** hi\n");
	buf_free(&out);
	rspamd_verdict_free(&v);
}

static void test_parse_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {"",
	                                  "not json",
	                                  "[1,2]",
	                                  "{\"score\":1}",
	                                  "{\"action\":7}",
	                                  "{\"action\":\"no action\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct rspamd_verdict v;
		char why[128] = "";
		assert_int_equal(
		    rspamd_verdict_parse(bad[i], strlen(bad[i]), "mx.test", &v, why, sizeof why),
		    -EINVAL);
		assert_true(why[0] != '\0');
		assert_null(v.json);
	}
}

static void test_auth_results(void **state)
{
	(void)state;
	static const struct {
		const char *symbols, *spf, *dkim, *dmarc;
	} cases[] = {
	    {"{}", "none", "none", "none"},
	    {"{\"R_SPF_ALLOW\":{},\"R_DKIM_ALLOW\":{},\"DMARC_POLICY_ALLOW\":{}}", "pass", "pass",
	     "pass"},
	    {"{\"R_SPF_FAIL\":{},\"R_DKIM_REJECT\":{},\"DMARC_POLICY_REJECT\":{}}", "fail", "fail",
	     "fail"},
	    {"{\"R_SPF_SOFTFAIL\":{},\"R_DKIM_TEMPFAIL\":{},\"DMARC_POLICY_QUARANTINE\":{}}",
	     "softfail", "temperror", "fail"},
	    {"{\"R_SPF_NEUTRAL\":{},\"R_DKIM_PERMFAIL\":{},\"DMARC_POLICY_SOFTFAIL\":{}}",
	     "neutral", "permerror", "fail"},
	    {"{\"R_SPF_DNSFAIL\":{},\"R_DKIM_NA\":{},\"DMARC_DNSFAIL\":{}}", "temperror", "none",
	     "temperror"},
	    {"{\"R_SPF_PERMFAIL\":{},\"DMARC_BAD_POLICY\":{}}", "permerror", "none", "permerror"},
	    {"{\"R_SPF_NA\":{},\"DMARC_NA\":{},\"DMARC_POLICY_ALLOW_WITH_FAILURES\":{}}", "none",
	     "none", "pass"},
	    /* One good signature among broken ones passes (RFC 6376 6.1). */
	    {"{\"R_DKIM_REJECT\":{},\"R_DKIM_ALLOW\":{}}", "none", "pass", "none"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *s = json_loads(cases[i].symbols, 0, NULL);
		assert_non_null(s);
		const char *spf = rspamd_auth_result(s, "spf");
		const char *dkim = rspamd_auth_result(s, "dkim");
		const char *dmarc = rspamd_auth_result(s, "dmarc");
		if (strcmp(spf, cases[i].spf) || strcmp(dkim, cases[i].dkim) ||
		    strcmp(dmarc, cases[i].dmarc))
			fail_msg("case %zu: got=%s/%s/%s want=%s/%s/%s", i, spf, dkim, dmarc,
			         cases[i].spf, cases[i].dkim, cases[i].dmarc);
		json_decref(s);
	}
}

/* Every shape rspamd's milter block takes (rspamd_milter.c). */
static void test_milter_shapes(void **state)
{
	(void)state;
	const char *r = "{\"action\":\"no action\",\"milter\":{"
	                "\"remove_headers\":{\"X-Old\":1,\"X-Last\":-1,\"X-Str\":\"all\"},"
	                "\"add_headers\":{\"X-Plain\":\"plain\","
	                "\"X-Top\":{\"value\":\"top\",\"order\":0},"
	                "\"X-Idx\":{\"value\":\"idx\",\"index\":-1},"
	                "\"X-Many\":[{\"value\":\"m1\"},\"m2\",{\"value\":\"m3\",\"order\":0}],"
	                "\"Bad Name\":\"skipped\",\"X-Num\":7}}}";
	struct rspamd_verdict v;
	char why[128];
	assert_int_equal(rspamd_verdict_parse(r, strlen(r), "mx.test", &v, why, sizeof why), 0);
	const char *in = TRACE "X-Old: 1\nX-Old: 2\nX-Last: 1\nX-Last: 2\nX-Str: kept\n";
	struct buf out;
	buf_init(&out, 0);
	bool changed;
	assert_int_equal(hdredit_apply(&v.edits, in, strlen(in), &out, &changed), 0);
	assert_int_equal(buf_append(&out, "", 1), 0);
	assert_string_equal(out.data, TRACE "X-Top: top\nX-Many: m3\nX-Old: 2\nX-Last: 1\n"
	                                    "X-Str: kept\nX-Plain: plain\nX-Idx: idx\nX-Many: m1\n"
	                                    "X-Many: m2\n");
	buf_free(&out);
	rspamd_verdict_free(&v);
}

static const char *header_of(char **h, const char *name, size_t nth)
{
	size_t n = strlen(name);
	for (size_t i = 0; h[i]; i++)
		if (strncmp(h[i], name, n) == 0 && h[i][n] == ':' && nth-- == 0)
			return h[i] + n + 2;
	return NULL;
}

static void test_request_headers(void **state)
{
	(void)state;
	const char *rcpt[] = {"b@y.example", "c\r\nX-Evil: 1@z.example"};
	struct spool_envelope env = {
	    .id = "1.M2P3Q4.mx",
	    .mail_from = "a@x.example",
	    .rcpt = rcpt,
	    .nrcpt = 2,
	    .helo = "client.example",
	    .client_addr = "198.51.100.7",
	};
	char **h = rspamd_request_headers(&env, "mx.test", "1.2.3");
	assert_non_null(h);
	assert_string_equal(header_of(h, "IP", 0), "198.51.100.7");
	assert_string_equal(header_of(h, "Helo", 0), "client.example");
	assert_string_equal(header_of(h, "From", 0), "a@x.example");
	assert_string_equal(header_of(h, "Rcpt", 0), "b@y.example");
	assert_string_equal(header_of(h, "Rcpt", 1), "c??X-Evil: 1@z.example");
	assert_string_equal(header_of(h, "Queue-Id", 0), "1.M2P3Q4.mx");
	assert_string_equal(header_of(h, "MTA-Name", 0), "mx.test");
	assert_string_equal(header_of(h, "User-Agent", 0), "mailport/1.2.3");
	assert_null(header_of(h, "User", 0));
	assert_null(header_of(h, "TLS-Version", 0));
	assert_null(header_of(h, "Hostname", 0));
	size_t n = 0;
	while (h[n])
		n++;
	assert_int_equal(n, 8);
	rspamd_headers_free(h);

	/* The null sender, AUTH, TLS, no HELO, an unknown address. */
	env.mail_from = "";
	env.helo = "";
	env.auth_user = "alice";
	env.tls_version = "TLSv1.3";
	env.tls_cipher = "TLS_AES_256_GCM_SHA384";
	env.client_addr = "unknown";
	h = rspamd_request_headers(&env, "mx.test", "1.2.3");
	assert_non_null(h);
	assert_string_equal(header_of(h, "From", 0), "<>");
	assert_string_equal(header_of(h, "User", 0), "alice");
	assert_string_equal(header_of(h, "TLS-Version", 0), "TLSv1.3");
	assert_string_equal(header_of(h, "TLS-Cipher", 0), "TLS_AES_256_GCM_SHA384");
	assert_null(header_of(h, "IP", 0));
	assert_null(header_of(h, "Helo", 0));
	rspamd_headers_free(h);
	rspamd_headers_free(NULL);
}

/* ---- the file rewrite ---- */

struct dir {
	char path[64];
	int fd;
};

static void dir_make(struct dir *d)
{
	snprintf(d->path, sizeof d->path, "/tmp/mailport-test-rspamd-XXXXXX");
	assert_non_null(mkdtemp(d->path));
	d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(d->fd >= 0);
}

static size_t dir_count(struct dir *d)
{
	DIR *dd = opendir(d->path);
	assert_non_null(dd);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(dd)) != NULL)
		n += e->d_name[0] != '.';
	closedir(dd);
	return n;
}

static void dir_remove(struct dir *d)
{
	DIR *dd = opendir(d->path);
	struct dirent *e;
	while (dd && (e = readdir(dd)) != NULL)
		if (e->d_name[0] != '.')
			unlinkat(d->fd, e->d_name, 0);
	if (dd)
		closedir(dd);
	close(d->fd);
	rmdir(d->path);
}

static int write_file(struct dir *d, const char *name, const char *a, size_t alen, const char *b,
                      size_t blen)
{
	int fd = openat(d->fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, a, alen), (ssize_t)alen);
	if (blen)
		assert_int_equal(write(fd, b, blen), (ssize_t)blen);
	return fd;
}

static char *read_fd(int fd, size_t *len)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	p[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return p;
}

static void test_rewrite(void **state)
{
	(void)state;
	struct dir d;
	dir_make(&d);
	const char *head = TRACE "Authentication-Results: mx.test; spf=pass\nSubject: hi\n\n";
	/* A body over two copy chunks, with a line that looks like a header. */
	size_t blen = 200000;
	char *body = malloc(blen);
	assert_non_null(body);
	for (size_t i = 0; i < blen; i++)
		body[i] = i % 61 == 60 ? '\n' : (char)('a' + i % 26);
	memcpy(body, "X-Not-A-Header: x\n", 18);
	int fd = write_file(&d, "1.M2P3Q4.mx", head, strlen(head), body, blen);

	struct hdredit e;
	hdredit_init(&e, RSPAMD_TRACE_FIELDS);
	assert_int_equal(hdredit_drop_authres(&e, "mx.test"), 0);
	assert_int_equal(hdredit_add(&e, "X-Spam", "Yes", false, 0), 0);
	int nfd = -1;
	uint64_t nsize = 0;
	uint64_t size = strlen(head) + blen;
	assert_int_equal(rspamd_rewrite(d.fd, "1.M2P3Q4.mx", fd, size, &e, &nfd, &nsize), 1);
	assert_true(nfd >= 0);
	size_t got_len;
	char *got = read_fd(nfd, &got_len);
	const char *want_head = TRACE "Subject: hi\nX-Spam: Yes\n\n";
	assert_int_equal(got_len, nsize);
	assert_int_equal(nsize, strlen(want_head) + blen);
	assert_memory_equal(got, want_head, strlen(want_head));
	assert_memory_equal(got + strlen(want_head), body, blen);
	free(got);
	/* The name is the new file's; nothing else is left. */
	int byname = openat(d.fd, "1.M2P3Q4.mx", O_RDONLY | O_CLOEXEC);
	assert_true(byname >= 0);
	got = read_fd(byname, &got_len);
	assert_int_equal(got_len, nsize);
	free(got);
	close(byname);
	assert_int_equal(dir_count(&d), 1);
	close(fd);

	/* Nothing to change: 0, no file written. */
	hdredit_free(&e);
	hdredit_init(&e, RSPAMD_TRACE_FIELDS);
	assert_int_equal(hdredit_drop_authres(&e, "mx.test"), 0);
	assert_int_equal(rspamd_rewrite(d.fd, "1.M2P3Q4.mx", nfd, nsize, &e, &fd, &size), 0);
	assert_int_equal(fd, -1);
	assert_int_equal(dir_count(&d), 1);
	close(nfd);

	/* A message that is all header (no empty line), edited. */
	const char *only = TRACE "Subject: no body";
	fd = write_file(&d, "2.M2P3Q4.mx", only, strlen(only), NULL, 0);
	assert_int_equal(hdredit_add(&e, "X-Spam", "Yes", false, 0), 0);
	assert_int_equal(rspamd_rewrite(d.fd, "2.M2P3Q4.mx", fd, strlen(only), &e, &nfd, &nsize),
	                 1);
	got = read_fd(nfd, &got_len);
	assert_string_equal(got, TRACE "Subject: no body\nX-Spam: Yes\n");
	free(got);
	close(nfd);
	close(fd);

	/* A header block past HDREDIT_HEADER_MAX: refused, nothing left behind. */
	size_t big = HDREDIT_HEADER_MAX + 4096;
	char *hdr = malloc(big);
	assert_non_null(hdr);
	memcpy(hdr, TRACE, strlen(TRACE));
	for (size_t i = strlen(TRACE); i < big; i++)
		hdr[i] = (i - strlen(TRACE)) % 80 == 79 ? '\n' : (i % 80 == 0 ? 'X' : 'x');
	for (size_t i = strlen(TRACE); i + 80 <= big; i += 80)
		memcpy(hdr + i, "X-Pad:", 6);
	fd = write_file(&d, "3.M2P3Q4.mx", hdr, big, "\nbody\n", 6);
	assert_int_equal(rspamd_rewrite(d.fd, "3.M2P3Q4.mx", fd, big + 6, &e, &nfd, &nsize),
	                 -EFBIG);
	assert_int_equal(nfd, -1);
	assert_int_equal(dir_count(&d), 3);
	close(fd);

	/* A file shorter than its size: an error, not a short message. */
	fd = write_file(&d, "4.M2P3Q4.mx", TRACE, strlen(TRACE), NULL, 0);
	assert_int_equal(
	    rspamd_rewrite(d.fd, "4.M2P3Q4.mx", fd, strlen(TRACE) + 100, &e, &nfd, &nsize), -EIO);
	close(fd);
	assert_int_equal(dir_count(&d), 4);

	free(hdr);
	free(body);
	hdredit_free(&e);
	dir_remove(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_add_header), cmocka_unit_test(test_parse_actions),
	    cmocka_unit_test(test_parse_errors),     cmocka_unit_test(test_auth_results),
	    cmocka_unit_test(test_milter_shapes),    cmocka_unit_test(test_request_headers),
	    cmocka_unit_test(test_rewrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
