/* messages_search: GET /messages?q= (SPEC 3, issue 17). See messages_search.h. */
#include "messages_search.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "buf.h"
#include "messages.h"
#include "mime.h"
#include "spool.h"
#include "spool_index.h"

/* Messages whose search text is built per round, and the bytes of each field. */
#define SEARCH_FILL_BATCH 256
#define SEARCH_FIELD_MAX  (SPOOL_INDEX_ATTRS_MAX / 3 - 1)

enum search_field { SEARCH_FROM, SEARCH_TO, SEARCH_SUBJECT, SEARCH_ANY };

struct search_term {
	enum search_field field;
	char *needle; /* case-folded */
};

struct search_query {
	struct search_term t[MESSAGES_SEARCH_TERMS];
	size_t n;
};

/* ---- the query -------------------------------------------------------------------- */

static void search_query_free(struct search_query *sq)
{
	for (size_t i = 0; i < sq->n; i++)
		free(sq->t[i].needle);
	sq->n = 0;
}

static int messages_search_parse(const char *q, struct search_query *sq)
{
	static const struct {
		const char *prefix;
		enum search_field f;
	} prefixes[] = {{"from:", SEARCH_FROM}, {"to:", SEARCH_TO}, {"subject:", SEARCH_SUBJECT}};
	memset(sq, 0, sizeof *sq);
	const char *p = q;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		enum search_field f = SEARCH_ANY;
		for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
			size_t l = strlen(prefixes[i].prefix);
			if (strncasecmp(p, prefixes[i].prefix, l) == 0) {
				f = prefixes[i].f;
				p += l;
				break;
			}
		}
		const char *v = p, *e;
		if (*p == '"') { /* a quoted value keeps its blanks */
			v = ++p;
			e = strchr(p, '"');
			if (e == NULL)
				e = p + strlen(p);
			p = *e ? e + 1 : e;
		} else {
			e = v + strcspn(v, " \t");
			p = e;
		}
		if (e == v)
			continue; /* "from:" alone narrows nothing */
		if (sq->n == MESSAGES_SEARCH_TERMS) {
			search_query_free(sq);
			return -E2BIG;
		}
		char *needle = mime_casefold(v, (size_t)(e - v));
		if (needle == NULL) {
			search_query_free(sq);
			return -ENOMEM;
		}
		sq->t[sq->n++] = (struct search_term){f, needle};
	}
	return 0;
}

/* attrs: "from\0to\0subject\0"; every term must match its field (or any). */
static bool search_match(void *ctx, const char *attrs)
{
	const struct search_query *sq = ctx;
	const char *f[3];
	f[0] = attrs;
	f[1] = f[0] + strlen(f[0]) + 1;
	f[2] = f[1] + strlen(f[1]) + 1;
	for (size_t i = 0; i < sq->n; i++) {
		const struct search_term *t = &sq->t[i];
		bool hit = false;
		for (int k = 0; k < 3 && !hit; k++)
			if (t->field == SEARCH_ANY || (int)t->field == k)
				hit = strstr(f[k], t->needle) != NULL;
		if (!hit)
			return false;
	}
	return true;
}

/* ---- the search text of one message ------------------------------------------------------- */

/* Append s (at most what keeps the field within SEARCH_FIELD_MAX) and a blank. */
static int search_add(struct buf *b, const char *s)
{
	if (s == NULL || b->len >= SEARCH_FIELD_MAX)
		return 0;
	size_t l = strlen(s);
	if (l > SEARCH_FIELD_MAX - b->len)
		l = SEARCH_FIELD_MAX - b->len;
	int rc = buf_append(b, s, l);
	return rc < 0 ? rc : buf_append(b, " ", 1);
}

static int search_add_header(struct buf *b, json_t *headers, const char *name)
{
	const char *raw = messages_header(headers, name);
	if (raw == NULL)
		return 0;
	char *d = mime_decode_header(raw);
	int rc = d ? search_add(b, d) : -ENOMEM;
	free(d);
	return rc;
}

/* Fold one field and append it with its NUL. */
static int search_field_done(struct buf *out, struct buf *f)
{
	char *folded = mime_casefold(f->data ? f->data : "", f->len);
	if (folded == NULL)
		return -ENOMEM;
	int rc = buf_append(out, folded, strlen(folded) + 1);
	free(folded);
	buf_reset(f);
	return rc;
}

int messages_search_text(const char *envelope, const char *head, size_t head_len, char **attrs,
                         size_t *len)
{
	json_t *env = envelope ? json_loads(envelope, 0, NULL) : NULL;
	json_t *headers = messages_parse_headers(head ? head : "", head ? head_len : 0);
	struct buf out, f;
	buf_init(&out, 0);
	buf_init(&f, 0);
	int rc = headers ? 0 : -ENOMEM;
	/* from: the envelope sender and the From header */
	if (rc == 0)
		rc = search_add(&f, json_string_value(json_object_get(env, "mail_from")));
	if (rc == 0)
		rc = search_add_header(&f, headers, "From");
	if (rc == 0)
		rc = search_field_done(&out, &f);
	/* to: the envelope recipients, To and Cc */
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(env, "rcpt_to"), i, r)
	{
		if (rc == 0)
			rc = search_add(&f, json_string_value(r));
	}
	if (rc == 0)
		rc = search_add_header(&f, headers, "To");
	if (rc == 0)
		rc = search_add_header(&f, headers, "Cc");
	if (rc == 0)
		rc = search_field_done(&out, &f);
	if (rc == 0)
		rc = search_add_header(&f, headers, "Subject");
	if (rc == 0)
		rc = search_field_done(&out, &f);
	json_decref(env);
	json_decref(headers);
	buf_free(&f);
	if (rc < 0) {
		buf_free(&out);
		return rc;
	}
	*attrs = out.data;
	*len = out.len;
	return 0;
}

/* Build and set the search text of every message that has none yet: once per
 * message (messages stored since the last search, or all of them at the
 * first search after a start). Bounded by the index's size. */
static int search_fill(struct spool *sp)
{
	struct spool_index *ix = spool_get_index(sp);
	struct spool_index_item *items = malloc(SEARCH_FILL_BATCH * sizeof *items);
	if (items == NULL)
		return -ENOMEM;
	size_t rounds = spool_index_total(ix, NULL) / SEARCH_FILL_BATCH + 2, n = 0;
	int rc = 0;
	for (size_t round = 0; rc == 0 && round < rounds; round++) {
		spool_index_missing_attrs(ix, items, SEARCH_FILL_BATCH, &n);
		if (n == 0)
			break;
		for (size_t k = 0; rc == 0 && k < n; k++) {
			char *meta = NULL, *head = NULL, *attrs = NULL;
			size_t hlen = 0, alen = 0;
			spool_meta_read(sp, items[k].id, &meta);
			enum spool_state st = items[k].state;
			int r = spool_read_message(sp, st, items[k].id, MESSAGES_LIST_HEADER_BYTES,
			                           &head, &hlen);
			if (r == -ENOENT && spool_locate(sp, items[k].id, &st) == 0)
				r = spool_read_message(sp, st, items[k].id,
				                       MESSAGES_LIST_HEADER_BYTES, &head, &hlen);
			/* A message gone or unreadable gets an empty text: not read again. */
			rc = messages_search_text(meta, r == 0 ? head : NULL, r == 0 ? hlen : 0,
			                          &attrs, &alen);
			if (rc == 0)
				spool_index_set_attrs(ix, items[k].id, attrs, alen);
			free(meta);
			free(head);
			free(attrs);
		}
	}
	free(items);
	return rc;
}

int messages_search_page(struct spool *sp, const char *q, const char *before, size_t offset,
                         size_t limit, struct spool_index_item *items, size_t *n, size_t *total)
{
	struct search_query sq;
	int rc = messages_search_parse(q, &sq);
	if (rc < 0)
		return rc == -E2BIG ? -EINVAL : rc;
	rc = search_fill(sp);
	if (rc == 0)
		rc = spool_index_search(spool_get_index(sp), search_match, &sq, before, offset,
		                        limit, items, n, total);
	search_query_free(&sq);
	return rc;
}

bool messages_search_matches(const char *q, const char *attrs)
{
	struct search_query sq;
	if (messages_search_parse(q, &sq) < 0)
		return false;
	bool hit = search_match(&sq, attrs);
	search_query_free(&sq);
	return hit;
}
