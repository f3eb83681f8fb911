/* Tests for the GMime wrapper of the messages API (issue 17, mime.h) over the
 * fixtures in tests/fixtures/mime: nested multipart/alternative inside
 * multipart/mixed, quoted-printable and base64, ISO-8859-1 and Shift_JIS text,
 * RFC 2231 file names (with continuations), an inline cid: image, a malformed
 * message; the RFC 6266 file name parameters; and the search text and query
 * matching of GET /messages?q= (messages_search.h), with the index's search
 * (spool_index_search) against a model. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "messages_search.h"
#include "buf.h"
#include "mime.h"
#include "spool_index.h"

/* ---- fixtures ------------------------------------------------------------------------ */

static char *fixture_path(const char *name)
{
	const char *src = getenv("MAILPORT_SOURCE_DIR");
	static char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/mime/%s", src ? src : ".", name);
	return path;
}

static char *slurp(const char *name, size_t *len)
{
	FILE *f = fopen(fixture_path(name), "rb");
	assert_non_null(f);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

/* The fixture parsed from its file, as the API does (GMime file stream). */
static struct mime *open_fixture(const char *name)
{
	int fd = open(fixture_path(name), O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct mime *m = mime_open_fd(fd);
	assert_non_null(m);
	return m;
}

static json_t *parts_of(const char *name)
{
	struct mime *m = open_fixture(name);
	json_t *p = mime_parts_json(m);
	mime_free(m);
	assert_non_null(p);
	return p;
}

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* Part `name` decoded, malloc'ed, with its info. */
static char *part_bytes(struct mime *m, const char *name, int64_t *n, struct mime_part_info *pi)
{
	int fd = memfd_create("test", MFD_CLOEXEC);
	assert_true(fd >= 0);
	*n = mime_part_write(m, name, fd, pi);
	if (*n < 0) {
		close(fd);
		return NULL;
	}
	char *b = malloc((size_t)*n + 1);
	assert_non_null(b);
	assert_int_equal(pread(fd, b, (size_t)*n, 0), *n);
	b[*n] = '\0';
	close(fd);
	return b;
}

/* ---- the wrapper ----------------------------------------------------------------------- */

static void test_nested(void **state)
{
	(void)state;
	json_t *p = parts_of("nested.eml");
	assert_string_equal(str(p, "text"),
	                    "Hello world \xe2\x80\x93 caf\xc3\xa9, this is the plain "
	                    "text part with a soft line break.\n");
	assert_true(json_is_true(json_object_get(p, "html_available")));
	json_t *a = json_object_get(p, "attachments");
	assert_int_equal(json_array_size(a), 2);
	json_t *pdf = json_array_get(a, 0), *png = json_array_get(a, 1);
	assert_string_equal(str(pdf, "part"), "2");
	assert_string_equal(str(pdf, "filename"), "\xe2\x82\xac rates 2026.pdf"); /* RFC 2231 */
	assert_string_equal(str(pdf, "content_type"), "application/pdf");
	assert_int_equal(json_integer_value(json_object_get(pdf, "size")), 1061);
	assert_true(json_is_null(json_object_get(pdf, "content_id")));
	assert_string_equal(str(pdf, "disposition"), "attachment");
	assert_string_equal(str(png, "part"), "3");
	assert_string_equal(str(png, "filename"), "logo.png");
	assert_string_equal(str(png, "content_id"), "logo@mailport.test");
	assert_string_equal(str(png, "disposition"), "inline");
	assert_int_equal(json_integer_value(json_object_get(png, "size")), 70);
	json_decref(p);
}

static void test_part_bytes(void **state)
{
	(void)state;
	struct mime *m = open_fixture("nested.eml");
	size_t want_len;
	char *want = slurp("report.pdf.bin", &want_len);
	int64_t n;
	struct mime_part_info pi;
	char *got = part_bytes(m, "2", &n, &pi);
	assert_non_null(got);
	assert_int_equal(n, (int64_t)want_len);
	assert_memory_equal(got, want, want_len); /* base64 undone, byte for byte */
	assert_string_equal(pi.content_type, "application/pdf");
	assert_true(pi.attachment);
	assert_string_equal(pi.filename, "\xe2\x82\xac rates 2026.pdf");
	mime_part_info_free(&pi);
	free(got);
	free(want);
	/* the text body (quoted-printable), nested: 1.1, in its own charset */
	got = part_bytes(m, "1.1", &n, &pi);
	assert_non_null(got);
	assert_string_equal(pi.content_type, "text/plain; charset=UTF-8");
	assert_false(pi.attachment);
	assert_non_null(strstr(got, "soft line break"));
	mime_part_info_free(&pi);
	free(got);
	/* no such leaves: a multipart, a missing one, junk */
	assert_null(part_bytes(m, "1", &n, &pi));
	assert_int_equal(n, -ENOENT);
	assert_null(part_bytes(m, "9", &n, &pi));
	assert_null(part_bytes(m, "../1", &n, &pi));
	mime_free(m);
}

static void test_html_cid(void **state)
{
	(void)state;
	struct mime *m = open_fixture("nested.eml");
	size_t len;
	char *html = mime_html(m, &len);
	assert_non_null(html);
	assert_int_equal(strlen(html), len);
	assert_non_null(strstr(html, "<img src=\"parts/3\" alt=\"logo\">"));
	assert_null(strstr(html, "cid:"));
	assert_non_null(strstr(html, "caf\xc3\xa9")); /* base64 + UTF-8 */
	free(html);
	mime_free(m);
	/* a cid: naming no part, and "placid:" words, stay as they are */
	const char *msg = "Content-Type: text/html\n\n<img src=\"cid:nope\"> placid:x\n";
	m = mime_open_mem(msg, strlen(msg));
	assert_non_null(m);
	html = mime_html(m, &len);
	assert_non_null(strstr(html, "cid:nope"));
	assert_non_null(strstr(html, "placid:x"));
	free(html);
	mime_free(m);
	/* no HTML part */
	m = open_fixture("latin1.eml");
	assert_null(mime_html(m, &len));
	assert_int_equal(len, 0);
	mime_free(m);
}

static void test_charsets(void **state)
{
	(void)state;
	json_t *p = parts_of("latin1.eml");
	assert_string_equal(str(p, "text"),
	                    "Gr\xc3\xbc\xc3\x9f"
	                    "e aus K\xc3\xb6ln, \xc3\xa0 bient\xc3\xb4t \xc2\xa3 10\n");
	assert_true(json_is_false(json_object_get(p, "html_available")));
	assert_int_equal(json_array_size(json_object_get(p, "attachments")), 0);
	json_decref(p);
	p = parts_of("sjis.eml");
	/* こんにちは世界。日本語のテストです。 */
	assert_string_equal(str(p, "text"),
	                    "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe4\xb8"
	                    "\x96\xe7\x95\x8c\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3"
	                    "\x81\xae\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa7\xe3\x81\x99"
	                    "\xe3\x80\x82");
	json_decref(p);
	struct mime *m = open_fixture("sjis.eml");
	char *subject = mime_header(m, "Subject");
	assert_string_equal(subject, "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"); /* テスト */
	free(subject);
	assert_null(mime_header(m, "X-Nothing"));
	mime_free(m);
}

/* 8-bit text without a charset: UTF-8 when it is, else ISO-8859-1. */
static void test_undeclared_charset(void **state)
{
	(void)state;
	const char *utf8 = "Subject: x\n\nh\xc3\xa9llo\n", *latin1 = "Subject: x\n\nh\xe9llo\n";
	struct mime *m = mime_open_mem(utf8, strlen(utf8));
	json_t *p = mime_parts_json(m);
	assert_string_equal(str(p, "text"), "h\xc3\xa9llo\n");
	json_decref(p);
	mime_free(m);
	m = mime_open_mem(latin1, strlen(latin1));
	p = mime_parts_json(m);
	assert_string_equal(str(p, "text"), "h\xc3\xa9llo\n");
	json_decref(p);
	mime_free(m);
}

static void test_rfc2231(void **state)
{
	(void)state;
	json_t *p = parts_of("rfc2231.eml");
	assert_string_equal(str(p, "text"), "See the attachments.");
	json_t *a = json_object_get(p, "attachments");
	assert_int_equal(json_array_size(a), 2);
	/* three continuations, two of them percent-encoded UTF-8: Übersicht 日本.txt */
	assert_string_equal(str(json_array_get(a, 0), "filename"),
	                    "\xc3\x9c"
	                    "bersicht \xe6\x97\xa5\xe6\x9c\xac.txt");
	assert_string_equal(str(json_array_get(a, 0), "content_type"), "text/plain");
	assert_string_equal(str(json_array_get(a, 1), "filename"), "plain name.bin");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "size")), 10);
	json_decref(p);
}

static void test_malformed(void **state)
{
	(void)state;
	struct mime *m = open_fixture("malformed.eml");
	json_t *p = mime_parts_json(m);
	assert_non_null(p);
	assert_non_null(json_object_get(p, "attachments"));
	char *s = json_dumps(p, 0);
	assert_non_null(s); /* valid UTF-8 throughout, or jansson would refuse */
	free(s);
	json_decref(p);
	size_t len;
	free(mime_html(m, &len));
	mime_free(m);
	/* every prefix of it parses to something or nothing, never a crash */
	size_t n;
	char *raw = slurp("malformed.eml", &n);
	for (size_t i = 0; i < n; i += 7) {
		struct mime *x = mime_open_mem(raw, i);
		if (x) {
			json_decref(mime_parts_json(x));
			mime_free(x);
		}
	}
	free(raw);
}

/* 100,000 nested multiparts (6 MB) parse without exhausting the stack, and
 * the walk stops at MIME_DEPTH_MAX: the text at the bottom is not reached. */
static void test_deep_nesting(void **state)
{
	(void)state;
	enum { LEVELS = 100000 };
	struct buf b;
	buf_init(&b, 16u << 20);
	buf_printf(&b, "From: a@x.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
	               "Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
	for (int i = 0; i < LEVELS; i++)
		buf_printf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n",
		           i, i + 1);
	buf_printf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nbottom\r\n", LEVELS);
	struct mime *m = mime_open_mem(b.data, b.len);
	buf_free(&b);
	assert_non_null(m);
	json_t *p = mime_parts_json(m);
	assert_non_null(p);
	assert_true(json_is_null(json_object_get(p, "text")));
	json_decref(p);
	mime_free(m);
}

static void test_filename_params(void **state)
{
	(void)state;
	char enc[200], ascii[100];
	mime_filename_params("\xe2\x82\xac rates \"x\";.pdf", enc, sizeof enc, ascii, sizeof ascii);
	assert_string_equal(enc, "%E2%82%AC%20rates%20%22x%22%3B.pdf");
	assert_string_equal(ascii, "___ rates _x__.pdf");
	mime_filename_params("a/b\\c\r\n", enc, sizeof enc, ascii, sizeof ascii);
	assert_string_equal(enc, "a%2Fb%5Cc%0D%0A");
	assert_string_equal(ascii, "a_b_c__");
	/* cut short, never overrun, and never inside a UTF-8 character (RFC 8187
	 * wants valid UTF-8, or browsers drop filename*) */
	mime_filename_params("\xe2\x82\xac\xe2\x82\xac", enc, 5, ascii, 3);
	assert_string_equal(enc, "");
	assert_string_equal(ascii, "__");
	mime_filename_params("\xe2\x82\xac\xe2\x82\xac", enc, 11, ascii, 3);
	assert_string_equal(enc, "%E2%82%AC");
	char big[240 * 3 + 1], out[700];
	for (int i = 0; i < 240; i++)
		memcpy(big + 3 * i, "\xe6\x97\xa5", 3); /* 日 */
	big[sizeof big - 1] = '\0';
	mime_filename_params(big, out, sizeof out, ascii, sizeof ascii);
	assert_int_equal(strlen(out) % 9, 0);
	assert_true(strlen(out) > 600);
}

/* A header's value comes decoded once: GMime 3 already decodes RFC 2047, so
 * an encoded word that decodes to text looking like one stays that text. */
static void test_header_decoded_once(void **state)
{
	(void)state;
	static const char msg[] = "Subject: =?UTF-8?Q?=3D=3FUTF-8=3FQ=3Fhi=3F=3D?=\r\n"
	                          "X-Word: =?ISO-8859-1?Q?K=F6ln?=\r\n\r\nbody\r\n";
	struct mime *m = mime_open_mem(msg, sizeof msg - 1);
	assert_non_null(m);
	char *v = mime_header(m, "Subject");
	assert_string_equal(v, "=?UTF-8?Q?hi?=");
	free(v);
	v = mime_header(m, "X-Word");
	assert_string_equal(v, "K\xc3\xb6ln");
	free(v);
	mime_free(m);
}

static void test_decode_header(void **state)
{
	(void)state;
	char *d = mime_decode_header("=?ISO-8859-1?Q?Gr=FC=DFe?= aus =?ISO-8859-1?Q?K=F6ln?=");
	assert_string_equal(d, "Gr\xc3\xbc\xc3\x9f"
	                       "e aus K\xc3\xb6ln");
	free(d);
	d = mime_decode_header("plain \xff bytes");
	assert_non_null(d);
	free(d);
	char *f = mime_casefold("CAF\xc3\x89 Stra\xc3\x9f"
	                        "e",
	                        12);
	assert_string_equal(f, "caf\xc3\xa9 strass"); /* full folding: ß is ss */
	free(f);
}

/* ---- search ------------------------------------------------------------------------------ */

static char *search_text(const char *env, const char *head)
{
	char *attrs = NULL;
	size_t len = 0;
	assert_int_equal(messages_search_text(env, head, head ? strlen(head) : 0, &attrs, &len), 0);
	assert_non_null(attrs);
	assert_int_equal(attrs[len - 1], '\0');
	return attrs;
}

static void test_search_text(void **state)
{
	(void)state;
	char *a = search_text("{\"mail_from\":\"Bounce@X.example\",\"rcpt_to\":[\"bob@y.example\","
	                      "\"eve@z.example\"]}",
	                      "From: Alice <alice@x.example>\nTo: Bob <bob@y.example>\nCc: "
	                      "carol@w.example\nSubject: =?UTF-8?Q?Caf=C3=A9?= Weekly\n\nbody "
	                      "mentions zebra\n");
	struct {
		const char *q;
		bool hit;
	} cases[] = {
	    {"alice", true},
	    {"ALICE", true},
	    {"bounce@x", true},
	    {"from:alice", true},
	    {"FROM:Alice", true},
	    {"to:alice", false},
	    {"to:carol", true},
	    {"to:eve@z", true},
	    {"subject:CAFÉ", true},
	    {"subject:caf\xc3\xa9 weekly", true},
	    {"subject:\"caf\xc3\xa9 weekly\"", true},
	    {"subject:\"weekly caf\xc3\xa9\"", false},
	    {"zebra", false}, /* the body is not searched */
	    {"alice nobody", false},
	    {"from:", true},
	    {"", true},
	    {"subject:weekly from:alice to:bob", true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (messages_search_matches(cases[i].q, a) != cases[i].hit)
			fail_msg("q=%s: got %d want %d", cases[i].q, !cases[i].hit, cases[i].hit);
	}
	free(a);
	/* no envelope, no message: empty fields, matching nothing but "" */
	a = search_text(NULL, NULL);
	assert_false(messages_search_matches("x", a));
	assert_true(messages_search_matches("", a));
	free(a);
}

static bool model_match(void *ctx, const char *attrs)
{
	return messages_search_matches(ctx, attrs);
}

static void test_index_search(void **state)
{
	(void)state;
	struct spool_index *ix = spool_index_new();
	assert_non_null(ix);
	char id[100][SPOOL_ID_MAX];
	for (int i = 0; i < 100; i++) {
		snprintf(id[i], sizeof id[i], "%d.M%06dP1Q%d.host", 1000 + i, i, i);
		assert_int_equal(spool_index_put(ix, id[i], SPOOL_STATE_NEW), 0);
	}
	struct spool_index_item items[100];
	size_t n, total;
	assert_int_equal(spool_index_missing_attrs(ix, items, 100, &n), 0);
	assert_int_equal(n, 100);
	assert_string_equal(items[0].id, id[99]); /* newest first */
	for (int i = 0; i < 100; i++) {
		char attrs[64];
		int l = snprintf(attrs, sizeof attrs, "%s%c%s%cmsg %d%c", i % 3 ? "a" : "three", 0,
		                 "to", 0, i, 0);
		if (i != 50) /* one left without: it never matches */
			assert_int_equal(spool_index_set_attrs(ix, id[i], attrs, (size_t)l + 1), 0);
	}
	assert_int_equal(spool_index_missing_attrs(ix, items, 100, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, id[50]);
	assert_int_equal(spool_index_set_attrs(ix, "1.M000000P1Q1.none", "\0\0", 3), -ENOENT);
	/* from:three matches i % 3 == 0: 0, 3, ..., 99 (34 of them) */
	char q[] = "from:three";
	assert_int_equal(spool_index_search(ix, model_match, q, NULL, 0, 5, items, &n, &total), 0);
	assert_int_equal(total, 34);
	assert_int_equal(n, 5);
	assert_string_equal(items[0].id, id[99]);
	assert_string_equal(items[4].id, id[87]);
	/* the cursor: strictly older than id[87], offset 1 more */
	assert_int_equal(spool_index_search(ix, model_match, q, id[87], 1, 3, items, &n, &total),
	                 0);
	assert_int_equal(total, 34);
	assert_int_equal(n, 3);
	assert_string_equal(items[0].id, id[81]);
	assert_string_equal(items[2].id, id[75]);
	/* a cursor that is not a match still places the page */
	assert_int_equal(spool_index_search(ix, model_match, q, id[2], 0, 10, items, &n, &total),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].id, id[0]);
	assert_int_equal(
	    spool_index_search(ix, model_match, q, "9.M000000P1Q1.none", 0, 10, items, &n, &total),
	    -ENOENT);
	/* deletes leave the count exact */
	assert_int_equal(spool_index_del(ix, id[99]), 0);
	assert_int_equal(spool_index_del(ix, id[50]), 0);
	assert_int_equal(spool_index_missing_attrs(ix, items, 100, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(spool_index_search(ix, model_match, q, NULL, 0, 100, items, &n, &total),
	                 0);
	assert_int_equal(total, 33);
	assert_int_equal(n, 33);
	spool_index_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nested),
	    cmocka_unit_test(test_part_bytes),
	    cmocka_unit_test(test_html_cid),
	    cmocka_unit_test(test_charsets),
	    cmocka_unit_test(test_rfc2231),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_filename_params),
	    cmocka_unit_test(test_decode_header),
	    cmocka_unit_test(test_search_text),
	    cmocka_unit_test(test_index_search),
	    cmocka_unit_test(test_undeclared_charset),
	    cmocka_unit_test(test_header_decoded_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
