/* mime: a stored message seen through GMime 3 (the messages API, the parsed webhook). See mime.h.
 */
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <gmime/gmime.h>
#include <jansson.h>

enum mime_kind { MIME_ATTACHMENT, MIME_TEXT, MIME_HTML };

struct mime_leaf {
	GMimeObject *o; /* borrowed from the message */
	char name[MIME_PART_NAME_MAX];
	enum mime_kind kind;
};

struct mime {
	GMimeMessage *msg;
	struct mime_leaf *leaves;
	size_t n;
	size_t cap;
	bool have_text, have_html;
};

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void mime_init_once(void)
{
	g_mime_init();
}

void mime_init(void)
{
	pthread_once(&mime_once, mime_init_once);
}

/* ---- the walk --------------------------------------------------------------------- */

static bool mime_is_type(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	return ct != NULL && g_mime_content_type_is_type(ct, type, subtype);
}

static bool mime_is_attachment(GMimeObject *o)
{
	const char *d = g_mime_object_get_disposition(o);
	return d != NULL && g_ascii_strcasecmp(d, "attachment") == 0;
}

static int mime_add_leaf(struct mime *m, GMimeObject *o, const char *name)
{
	if (m->n == MIME_PARTS_MAX)
		return 0;
	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 8;
		struct mime_leaf *nv = realloc(m->leaves, ncap * sizeof *nv);
		if (nv == NULL)
			return -ENOMEM;
		m->leaves = nv;
		m->cap = ncap;
	}
	struct mime_leaf *l = &m->leaves[m->n++];
	l->o = o;
	snprintf(l->name, sizeof l->name, "%s", name);
	l->kind = MIME_ATTACHMENT;
	if (GMIME_IS_TEXT_PART(o) && !mime_is_attachment(o)) {
		if (!m->have_text && mime_is_type(o, "text", "plain")) {
			l->kind = MIME_TEXT;
			m->have_text = true;
		} else if (!m->have_html && mime_is_type(o, "text", "html")) {
			l->kind = MIME_HTML;
			m->have_html = true;
		}
	}
	return 0;
}

/* Depth-first, children numbered from 1 (RFC 3501 6.4.5). */
static int mime_walk(struct mime *m, GMimeObject *o, const char *name, int depth)
{
	if (!GMIME_IS_MULTIPART(o))
		return mime_add_leaf(m, o, name[0] ? name : "1");
	if (depth >= MIME_DEPTH_MAX)
		return 0;
	GMimeMultipart *mp = GMIME_MULTIPART(o);
	int count = g_mime_multipart_get_count(mp);
	for (int i = 0; i < count && m->n < MIME_PARTS_MAX; i++) {
		char child[MIME_PART_NAME_MAX];
		int len = name[0] ? snprintf(child, sizeof child, "%s.%d", name, i + 1)
		                  : snprintf(child, sizeof child, "%d", i + 1);
		if (len < 0 || (size_t)len >= sizeof child)
			return 0;
		int rc = mime_walk(m, g_mime_multipart_get_part(mp, i), child, depth + 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static struct mime *mime_parse(GMimeStream *stream)
{
	mime_init();
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	g_object_unref(stream);
	/* Persisted: parts keep offsets into the file, their bytes stay there. */
	g_mime_parser_set_persist_stream(parser, TRUE);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	if (msg == NULL)
		return NULL;
	struct mime *m = calloc(1, sizeof *m);
	if (m == NULL) {
		g_object_unref(msg);
		return NULL;
	}
	m->msg = msg;
	GMimeObject *top = g_mime_message_get_mime_part(msg);
	if (top != NULL && mime_walk(m, top, "", 0) < 0) {
		mime_free(m);
		return NULL;
	}
	return m;
}

struct mime *mime_open_fd(int fd)
{
	mime_init();
	GMimeStream *s = g_mime_stream_fs_new(fd); /* owns fd */
	if (s == NULL) {
		close(fd);
		return NULL;
	}
	return mime_parse(s);
}

struct mime *mime_open_mem(const char *data, size_t len)
{
	mime_init();
	GMimeStream *s = g_mime_stream_mem_new_with_buffer(data, len);
	return s ? mime_parse(s) : NULL;
}

void mime_free(struct mime *m)
{
	if (m == NULL)
		return;
	free(m->leaves);
	g_object_unref(m->msg);
	free(m);
}

static struct mime_leaf *mime_find(struct mime *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->leaves[i].name, name) == 0)
			return &m->leaves[i];
	return NULL;
}

static struct mime_leaf *mime_find_kind(struct mime *m, enum mime_kind k)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->leaves[i].kind == k)
			return &m->leaves[i];
	return NULL;
}

/* ---- contents ------------------------------------------------------------------- */

/* The decoded bytes of a leaf into out (transfer encoding undone; a
 * message/rfc822 part is the embedded message as it was). 0 or -EIO. */
static int mime_decode_to(GMimeObject *o, GMimeStream *out)
{
	ssize_t rc = 0;
	if (GMIME_IS_PART(o)) {
		GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(o));
		if (w != NULL)
			rc = g_mime_data_wrapper_write_to_stream(w, out);
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		if (inner != NULL)
			rc = g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, out);
	}
	if (rc >= 0)
		rc = g_mime_stream_flush(out);
	return rc < 0 ? -EIO : 0;
}

static int64_t mime_decoded_size(GMimeObject *o)
{
	GMimeStream *null = g_mime_stream_null_new();
	int rc = mime_decode_to(o, null);
	int64_t size = rc < 0 ? -1 : (int64_t)GMIME_STREAM_NULL(null)->written;
	g_object_unref(null);
	return size;
}

/* The text of a text leaf in UTF-8 (GMime converts from its charset), with any
 * byte still invalid replaced, g_malloc'ed. */
static char *mime_text_of(GMimeObject *o)
{
	char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(o));
	if (t == NULL)
		return g_strdup("");
	if (!g_utf8_validate(t, -1, NULL)) {
		/* 8-bit text with no (or an unknown) charset: GMime's fallback
		 * charsets (UTF-8, then ISO-8859-1) as mail clients do, and any
		 * byte still invalid replaced. */
		char *d = g_mime_utils_decode_8bit(NULL, t, strlen(t));
		char *v = g_utf8_make_valid(d ? d : t, -1);
		g_free(d);
		g_free(t);
		t = v;
	}
	return t;
}

static json_t *mime_str_or_null(const char *s)
{
	if (s == NULL)
		return json_null();
	if (g_utf8_validate(s, -1, NULL))
		return json_string(s);
	char *v = g_utf8_make_valid(s, -1);
	json_t *j = json_string(v);
	g_free(v);
	return j;
}

/* "type/subtype" lowercased, or application/octet-stream when it holds
 * anything but token characters (RFC 2045 5.1). */
static void mime_type_of(GMimeObject *o, char *out, size_t n)
{
	snprintf(out, n, "application/octet-stream");
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	char *t = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
	if (t == NULL)
		return;
	bool ok = strlen(t) < n && strchr(t, '/') != NULL;
	for (const char *p = t; ok && *p; p++)
		ok = g_ascii_isalnum(*p) || strchr("!#$&^_.+-/", *p) != NULL;
	if (ok) {
		for (char *p = t; *p; p++)
			*p = g_ascii_tolower(*p);
		snprintf(out, n, "%s", t);
	}
	g_free(t);
}

static const char *mime_filename_of(GMimeObject *o)
{
	if (GMIME_IS_PART(o))
		return g_mime_part_get_filename(GMIME_PART(o));
	return g_mime_object_get_content_disposition_parameter(o, "filename");
}

json_t *mime_parts_json(struct mime *m)
{
	json_t *atts = json_array(), *text = json_null();
	struct mime_leaf *tl = mime_find_kind(m, MIME_TEXT);
	if (tl != NULL) {
		char *t = mime_text_of(tl->o);
		json_decref(text);
		text = json_string(t);
		g_free(t);
	}
	int bad = atts == NULL || text == NULL;
	for (size_t i = 0; !bad && i < m->n; i++) {
		struct mime_leaf *l = &m->leaves[i];
		if (l->kind != MIME_ATTACHMENT)
			continue;
		char type[128];
		mime_type_of(l->o, type, sizeof type);
		const char *d = g_mime_object_get_disposition(l->o);
		char *disp = d ? g_ascii_strdown(d, -1) : NULL;
		int64_t size = mime_decoded_size(l->o);
		json_t *a = json_pack("{s:s, s:o, s:s, s:I, s:o, s:o}", "part", l->name, "filename",
		                      mime_str_or_null(mime_filename_of(l->o)), "content_type",
		                      type, "size", (json_int_t)(size < 0 ? 0 : size), "content_id",
		                      mime_str_or_null(g_mime_object_get_content_id(l->o)),
		                      "disposition", mime_str_or_null(disp));
		g_free(disp);
		bad = a == NULL || json_array_append_new(atts, a) < 0;
	}
	if (bad) {
		json_decref(atts);
		json_decref(text);
		return NULL;
	}
	return json_pack("{s:o, s:b, s:o}", "text", text, "html_available", m->have_html,
	                 "attachments", atts);
}

void mime_part_info_free(struct mime_part_info *pi)
{
	free(pi->filename);
	pi->filename = NULL;
}

int64_t mime_part_write(struct mime *m, const char *name, int out_fd, struct mime_part_info *pi)
{
	memset(pi, 0, sizeof *pi);
	struct mime_leaf *l = mime_find(m, name);
	if (l == NULL)
		return -ENOENT;
	mime_type_of(l->o, pi->content_type, sizeof pi->content_type);
	const char *cs = GMIME_IS_TEXT_PART(l->o)
	                     ? g_mime_object_get_content_type_parameter(l->o, "charset")
	                     : NULL;
	bool cs_ok = cs != NULL && cs[0] != '\0' && strlen(cs) < 40;
	for (const char *p = cs; cs_ok && *p; p++)
		cs_ok = g_ascii_isalnum(*p) || strchr("!#$&^_.+-", *p) != NULL;
	if (cs_ok) {
		size_t used = strlen(pi->content_type);
		snprintf(pi->content_type + used, sizeof pi->content_type - used, "; charset=%s",
		         cs);
	}
	pi->attachment = l->kind == MIME_ATTACHMENT;
	const char *fn = mime_filename_of(l->o);
	if (fn != NULL && (pi->filename = strdup(fn)) == NULL)
		return -ENOMEM;
	GMimeStream *out = g_mime_stream_fs_new(out_fd);
	g_mime_stream_fs_set_owner(GMIME_STREAM_FS(out), FALSE);
	int rc = mime_decode_to(l->o, out);
	g_object_unref(out);
	if (rc < 0) {
		mime_part_info_free(pi);
		return rc;
	}
	off_t end = lseek(out_fd, 0, SEEK_CUR);
	if (end < 0) {
		mime_part_info_free(pi);
		return -EIO;
	}
	return (int64_t)end;
}

/* ---- HTML -------------------------------------------------------------------------- */

static bool mime_url_end(char c)
{
	return c == '\0' || strchr("\"'()<> \t\r\n\\", c) != NULL;
}

static struct mime_leaf *mime_find_cid(struct mime *m, const char *cid)
{
	for (size_t i = 0; i < m->n; i++) {
		const char *c = g_mime_object_get_content_id(m->leaves[i].o);
		if (c != NULL && strcmp(c, cid) == 0)
			return &m->leaves[i];
	}
	return NULL;
}

char *mime_body(struct mime *m, bool html, size_t *len)
{
	*len = 0;
	struct mime_leaf *l = mime_find_kind(m, html ? MIME_HTML : MIME_TEXT);
	if (l == NULL)
		return NULL;
	char *t = mime_text_of(l->o);
	size_t n = strlen(t);
	char *r = malloc(n + 1);
	if (r != NULL) {
		memcpy(r, t, n + 1);
		*len = n;
	} else {
		*len = 1;
	}
	g_free(t);
	return r;
}

char *mime_html(struct mime *m, size_t *len)
{
	*len = 0;
	struct mime_leaf *hl = mime_find_kind(m, MIME_HTML);
	if (hl == NULL)
		return NULL;
	char *html = mime_text_of(hl->o);
	GString *out = g_string_sized_new(strlen(html) + 64);
	const char *p = html;
	while (*p) {
		const char *c = strcasestr(p, "cid:");
		if (c == NULL) {
			g_string_append(out, p);
			break;
		}
		g_string_append_len(out, p, c - p);
		const char *v = c + 4, *e = v;
		while (!mime_url_end(*e))
			e++;
		/* "placid:" is a word, not a URL. */
		bool word = c > html && g_ascii_isalnum(c[-1]);
		char *tok = g_strndup(v, (gsize)(e - v));
		char *cid = g_uri_unescape_string(tok, NULL); /* RFC 2392: %hh in cid URLs */
		struct mime_leaf *l = !word && cid ? mime_find_cid(m, cid) : NULL;
		if (l != NULL) {
			g_string_append(out, "parts/");
			g_string_append(out, l->name);
		} else {
			g_string_append_len(out, c, e - c);
		}
		g_free(tok);
		g_free(cid);
		p = e;
	}
	g_free(html);
	char *r = malloc(out->len + 1);
	if (r == NULL) {
		g_string_free(out, TRUE);
		*len = 1;
		return NULL;
	}
	memcpy(r, out->str, out->len + 1);
	*len = out->len;
	g_string_free(out, TRUE);
	return r;
}

/* ---- headers and the rest ------------------------------------------------------------ */

char *mime_header(struct mime *m, const char *name)
{
	/* GMime 3 hands the value unfolded and RFC 2047-decoded already: decoding
	 * it again would turn a subject that reads "=?UTF-8?Q?hi?=" into "hi". */
	const char *v = g_mime_object_get_header(GMIME_OBJECT(m->msg), name);
	if (v == NULL)
		return NULL;
	char *valid = g_utf8_make_valid(v, -1);
	char *r = strdup(valid);
	g_free(valid);
	return r;
}

char *mime_decode_header(const char *raw)
{
	mime_init();
	char *d = g_mime_utils_header_decode_text(NULL, raw);
	if (d == NULL)
		return strdup(raw);
	char *v = g_utf8_validate(d, -1, NULL) ? g_strdup(d) : g_utf8_make_valid(d, -1);
	g_free(d);
	char *r = strdup(v);
	g_free(v);
	return r;
}

char *mime_casefold(const char *s, size_t len)
{
	char *v = g_utf8_make_valid(s, (gssize)len);
	char *f = g_utf8_casefold(v, -1);
	g_free(v);
	char *r = strdup(f);
	g_free(f);
	return r;
}

void mime_filename_params(const char *name, char *out, size_t n, char *ascii, size_t an)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0, a = 0;
	bool full = false; /* out is cut before the first character that does not fit */
	size_t char_o = 0; /* where the character being written began in out */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		/* RFC 8187 3.2.1 attr-char */
		bool plain = g_ascii_isalnum(*p) || strchr("!#$&+-.^_`|~", *p) != NULL;
		if ((*p & 0xC0) != 0x80)
			char_o = o;
		if (!full && o + (plain ? 1 : 3) >= n) {
			full = true;
			o = char_o; /* never half a UTF-8 character */
		}
		if (!full && plain) {
			out[o++] = (char)*p;
		} else if (!full) {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
		bool safe = *p >= 0x20 && *p < 0x7f && strchr("\"\\%;/", *p) == NULL;
		if (a + 1 < an)
			ascii[a++] = safe ? (char)*p : '_';
	}
	if (n)
		out[o < n ? o : n - 1] = '\0';
	if (an)
		ascii[a < an ? a : an - 1] = '\0';
}

int mime_scratch_fd(int dir_fd)
{
	int fd = dir_fd >= 0 ? openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
	if (fd < 0)
		fd = memfd_create("mailport-mime", MFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
