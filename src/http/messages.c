/* messages: the /messages API (SPEC 3). See messages.h. */
#include "messages.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "messages_mime.h"
#include "mime.h"
#include "messages_search.h"
#include "spool.h"
#include "spool_index.h"

/* A message found by a listing may move (new -> cur/failed) before it is read:
 * look it up again this many times before calling it gone. */
#define MESSAGES_LOOKUPS 3

/* ---- pure parts ------------------------------------------------------------------ */

static bool messages_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Append one unfolded header line to the array. */
static int messages_add_header(json_t *a, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (colon == NULL || colon == line)
		return 0; /* not a field: skipped */
	size_t nlen = (size_t)(colon - line);
	for (size_t i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c <= 0x20 || c >= 0x7f) /* RFC 5322 2.2: printable ASCII but ':' */
			return 0;
	}
	const char *v = colon + 1, *end = line + len;
	while (v < end && messages_wsp(*v))
		v++;
	while (end > v && (messages_wsp(end[-1]) || end[-1] == '\r'))
		end--;
	json_t *name = spool_json_text(line, nlen);
	json_t *value = spool_json_text(v, (size_t)(end - v));
	json_t *o = json_object();
	int rc = -1;
	if (name && value && o && json_object_set(o, "name", name) == 0 &&
	    json_object_set(o, "value", value) == 0 && json_array_append(a, o) == 0)
		rc = 0;
	json_decref(name);
	json_decref(value);
	json_decref(o);
	return rc;
}

json_t *messages_parse_headers(const char *text, size_t len)
{
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	struct buf line;
	buf_init(&line, 0);
	size_t i = 0;
	int rc = 0;
	while (i < len && rc == 0 && json_array_size(a) < MESSAGES_HEADERS_MAX) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t l = end - i;
		if (l > 0 && text[end - 1] == '\r')
			l--;
		if (l == 0) /* the empty line: the body begins */
			break;
		if (messages_wsp(text[i]) && line.len > 0) {
			/* A continuation: the line break goes, the blank stays. */
			rc = buf_append(&line, text + i, l);
		} else {
			if (line.len > 0)
				rc = messages_add_header(a, line.data, line.len);
			buf_reset(&line);
			if (rc == 0 && !messages_wsp(text[i]))
				rc = buf_append(&line, text + i, l);
		}
		i = nl ? end + 1 : len;
	}
	if (rc == 0 && line.len > 0 && json_array_size(a) < MESSAGES_HEADERS_MAX)
		rc = messages_add_header(a, line.data, line.len);
	buf_free(&line);
	if (rc < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

const char *messages_header(json_t *headers, const char *name)
{
	size_t i;
	json_t *h;
	json_array_foreach(headers, i, h)
	{
		const char *n = json_string_value(json_object_get(h, "name"));
		if (n && strcasecmp(n, name) == 0)
			return json_string_value(json_object_get(h, "value"));
	}
	return NULL;
}

int messages_id_newer(const char *a, const char *b)
{
	return spool_index_id_newer(a, b);
}

int messages_parse_count(const char *s, size_t def, size_t max, size_t *out)
{
	if (s == NULL || *s == '\0') {
		*out = def;
		return 0;
	}
	size_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (max - (size_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (size_t)(*p - '0');
	}
	*out = v;
	return 0;
}

/* ---- reading the spool ------------------------------------------------------------ */

static const char *const messages_states[] = {"new", "delivered", "failed"};

const char *messages_state_name(enum spool_state st)
{
	return messages_states[st];
}

static void messages_error(struct messages_reply *out, unsigned status, const char *msg)
{
	out->status = status;
	out->json = json_pack("{s:s}", "error", msg);
}

/* The envelope of id, or {"id":id} when meta/ lost it (still a message). */
static json_t *messages_envelope(struct spool *sp, const char *id)
{
	char *text = NULL;
	json_t *o = NULL;
	if (spool_meta_read(sp, id, &text) == 0)
		o = json_loads(text, 0, NULL);
	free(text);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o ? o : json_pack("{s:s}", "id", id);
}

/* One entry: the envelope, "subject", "state", and with want_headers the
 * parsed headers. *stp is where to look first, and where the message was
 * found. Returns NULL when the message is gone (-ENOENT in *err). */
static json_t *messages_entry(struct spool *sp, const char *id, enum spool_state *stp,
                              bool want_headers, int *err)
{
	enum spool_state st = *stp;
	char *data = NULL;
	size_t len = 0;
	int rc = -ENOENT;
	for (int i = 0; i < MESSAGES_LOOKUPS; i++) {
		rc = spool_read_message(
		    sp, st, id, want_headers ? MESSAGES_HEADER_BYTES : MESSAGES_LIST_HEADER_BYTES,
		    &data, &len);
		if (rc != -ENOENT)
			break;
		if (spool_locate(sp, id, &st) < 0)
			break;
	}
	if (rc < 0) {
		*err = rc;
		return NULL;
	}
	*stp = st;
	json_t *headers = messages_parse_headers(data, len);
	free(data);
	json_t *o = messages_envelope(sp, id);
	if (headers == NULL || o == NULL) {
		json_decref(headers);
		json_decref(o);
		*err = -ENOMEM;
		return NULL;
	}
	/* The Subject decoded (RFC 2047 encoded words, by GMime): what a reader sees. */
	const char *raw_subject = messages_header(headers, "Subject");
	char *subject = raw_subject ? mime_decode_header(raw_subject) : NULL;
	int ok = json_object_set_new(o, "subject", subject ? json_string(subject) : json_null());
	free(subject);
	ok |= json_object_set_new(o, "state", json_string(messages_states[st]));
	if (want_headers) {
		ok |= json_object_set(o, "headers", headers);
		ok |= json_object_set_new(o, "parts", messages_mime_parts(sp, id, st));
	}
	json_decref(headers);
	if (ok != 0) {
		json_decref(o);
		*err = -ENOMEM;
		return NULL;
	}
	return o;
}

json_t *messages_list_entry(struct spool *sp, const char *id)
{
	enum spool_state st = SPOOL_STATE_NEW;
	if (sp == NULL || !spool_id_valid(id) ||
	    (spool_index_get(spool_get_index(sp), id, &st) < 0 && spool_locate(sp, id, &st) < 0))
		return NULL;
	int err = 0;
	return messages_entry(sp, id, &st, false, &err);
}

/* Most rounds of a listing: each round after the first is there only because
 * messages of the page were found gone (and dropped from the index). */
#define MESSAGES_LIST_ROUNDS 8

/* Append to msgs the entries of one page of the index (newest first, after
 * before and offset), at most limit. A message found gone is dropped from the
 * index (another program removed it); one found in another directory than the
 * index says gets its state there. *gone counts the dropped ones. Returns 0,
 * -ENOENT (before not in the index) or another -errno. */
static int messages_page(struct spool *sp, const char *q, const char *before, size_t offset,
                         size_t limit, json_t *msgs, size_t *gone, size_t *total)
{
	struct spool_index *ix = spool_get_index(sp);
	struct spool_index_item *items = limit ? malloc(limit * sizeof *items) : NULL;
	if (limit && items == NULL)
		return -ENOMEM;
	size_t n = 0;
	int rc = q ? messages_search_page(sp, q, before, offset, limit, items, &n, total)
	           : spool_index_page(ix, before, offset, limit, items, &n, total);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int err = 0;
		enum spool_state st = items[i].state;
		json_t *e = messages_entry(sp, items[i].id, &st, false, &err);
		if (e != NULL) {
			if (json_array_append_new(msgs, e) < 0)
				rc = -ENOMEM;
			if (st != items[i].state)
				spool_index_update(ix, items[i].id, st);
		} else if (err == -ENOENT) {
			if (spool_index_del(ix, items[i].id) == 0)
				(*gone)++;
		} else {
			rc = err;
		}
	}
	free(items);
	return rc;
}

static void messages_list(struct spool *sp, const struct messages_query *q,
                          struct messages_reply *out)
{
	size_t limit, offset;
	if (messages_parse_count(q->limit, MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX, &limit) <
	    0) {
		messages_error(out, 400, "limit must be a number from 0 to 1000");
		return;
	}
	if (messages_parse_count(q->offset, 0, SIZE_MAX / 2, &offset) < 0) {
		messages_error(out, 400, "offset must be a number");
		return;
	}
	const char *before = q->before && q->before[0] ? q->before : NULL;
	if (before && (!spool_id_valid(before) || sp == NULL)) {
		messages_error(out, 400, "before must be the id of a message");
		return;
	}
	const char *text = q->q && q->q[0] ? q->q : NULL;
	json_t *msgs = json_array();
	if (msgs == NULL) {
		messages_error(out, 500, strerror(ENOMEM));
		return;
	}
	size_t total = 0;
	int rc = 0;
	/* A round that found messages gone asks for as many more, from where the
	 * last one ended: the gone ones left the index, so the same before and
	 * offset plus what was taken name the next ones. Bounded: a spool emptied
	 * behind our back costs a few short rounds, then a short page. */
	for (int round = 0; sp && rc == 0 && round < MESSAGES_LIST_ROUNDS; round++) {
		size_t have = json_array_size(msgs), gone = 0;
		if (have >= limit && round > 0)
			break;
		rc = messages_page(sp, text, before, offset + have, limit - have, msgs, &gone,
		                   &total);
		if (rc == -ENOENT && round > 0)
			rc = 0; /* the cursor itself went meanwhile: this page is it */
		if (gone == 0 || rc < 0)
			break;
		if (text == NULL)
			total = spool_index_total(spool_get_index(sp), NULL);
		else
			total -= gone;
	}
	if (rc == -ENOENT) {
		json_decref(msgs);
		messages_error(out, 400, "before: no such message");
		return;
	}
	if (rc == -EINVAL) {
		json_decref(msgs);
		messages_error(out, 400, "q: too many terms");
		return;
	}
	if (rc < 0) {
		json_decref(msgs);
		messages_error(out, 500, strerror(-rc));
		return;
	}
	out->status = 200;
	out->json = json_pack("{s:I, s:o}", "total", (json_int_t)total, "messages", msgs);
}

static void messages_one(struct spool *sp, const char *id, const char *what, const char *method,
                         struct messages_reply *out)
{
	bool raw = strcmp(what, "raw") == 0;
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool del = strcmp(method, "DELETE") == 0;
	if (what[0] != '\0' && !raw) {
		messages_error(out, 404, "not found");
		return;
	}
	if (!get && !(del && !raw)) {
		out->allow = raw ? "GET, HEAD" : "GET, HEAD, DELETE";
		messages_error(out, 405, "method not allowed");
		return;
	}
	enum spool_state st = SPOOL_STATE_NEW;
	int rc = -ENOENT;
	/* The index knows the directory; the disk is asked only about an id it
	 * does not have (spool_locate may read all of cur/ for a Maildir name). */
	if (sp && spool_id_valid(id)) {
		rc = spool_index_get(spool_get_index(sp), id, &st);
		if (rc < 0)
			rc = spool_locate(sp, id, &st);
	}
	bool did = false;
	for (int i = 0; rc == 0 && i < MESSAGES_LOOKUPS; i++) {
		if (del) {
			rc = spool_remove(sp, st, id);
		} else if (raw) {
			rc = spool_open_message(sp, st, id, &out->fd, &out->size);
		} else {
			json_t *e = messages_entry(sp, id, &st, true, &rc);
			if (e) {
				out->status = 200;
				out->json = e;
				return;
			}
		}
		if (rc != -ENOENT) {
			did = true;
			break;
		}
		/* Moved between the lookup and the use: look again. */
		rc = spool_locate(sp, id, &st);
	}
	if (!did && rc == 0)
		rc = -ENOENT;
	if (rc == -ENOENT || rc == -EINVAL) {
		messages_error(out, 404, "no such message");
		return;
	}
	if (rc < 0) {
		messages_error(out, 500, strerror(-rc));
		return;
	}
	out->status = del ? 204 : 200;
}

void messages_handle(struct spool *sp, const char *method, const char *path,
                     const struct messages_query *q, struct messages_reply *out)
{
	static const struct messages_query none = {0};
	memset(out, 0, sizeof *out);
	out->fd = -1;
	if (path[0] == '\0' || strcmp(path, "/") == 0) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
			out->allow = "GET, HEAD, DELETE"; /* DELETE: messages_mime.c */
			messages_error(out, 405, "method not allowed");
			return;
		}
		messages_list(sp, q ? q : &none, out);
		return;
	}
	if (path[0] != '/') {
		messages_error(out, 404, "not found");
		return;
	}
	path++;
	const char *slash = strchr(path, '/');
	size_t idlen = slash ? (size_t)(slash - path) : strlen(path);
	char id[SPOOL_ID_MAX];
	/* Ids match exactly (SPEC 3): "/<id>/" is not "/<id>". */
	if (idlen == 0 || idlen >= sizeof id || (slash && slash[1] == '\0')) {
		messages_error(out, 404, "no such message");
		return;
	}
	memcpy(id, path, idlen);
	id[idlen] = '\0';
	messages_one(sp, id, slash ? slash + 1 : "", method, out);
}
