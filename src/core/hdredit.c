/* hdredit: header block edits in one pass (SPEC 8). See hdredit.h. */
#include "hdredit.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

/* ---- the edit list --------------------------------------------------------------------- */

void hdredit_init(struct hdredit *e, size_t keep_top)
{
	*e = (struct hdredit){.keep_top = keep_top};
}

void hdredit_free(struct hdredit *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++) {
		free(e->ops[i].name);
		free(e->ops[i].value);
	}
	free(e->ops);
	free(e->authserv_id);
	*e = (struct hdredit){.keep_top = e->keep_top};
}

/* RFC 5322 2.2: ftext, printable US-ASCII but the colon. */
static bool hdredit_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static bool hdredit_name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return false;
	for (const char *p = name; *p; p++)
		if (!hdredit_ftext((unsigned char)*p))
			return false;
	return true;
}

static int hdredit_push(struct hdredit *e, enum hdredit_kind kind, const char *name,
                        const char *value, bool positioned, long index)
{
	if (!hdredit_name_ok(name))
		return -EINVAL;
	if (e->n == e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 8;
		struct hdredit_op *ops = realloc(e->ops, ncap * sizeof *ops);
		if (ops == NULL)
			return -ENOMEM;
		e->ops = ops;
		e->cap = ncap;
	}
	struct hdredit_op op = {
	    .kind = kind, .name = strdup(name), .index = index, .positioned = positioned};
	if (value != NULL)
		op.value = strdup(value);
	if (op.name == NULL || (value != NULL && op.value == NULL)) {
		free(op.name);
		free(op.value);
		return -ENOMEM;
	}
	e->ops[e->n++] = op;
	return 0;
}

int hdredit_remove(struct hdredit *e, const char *name, long index)
{
	return hdredit_push(e, HDREDIT_REMOVE, name, NULL, false, index);
}

int hdredit_add(struct hdredit *e, const char *name, const char *value, bool positioned, long order)
{
	return hdredit_push(e, HDREDIT_ADD, name, value ? value : "", positioned, order);
}

int hdredit_set(struct hdredit *e, const char *name, const char *value)
{
	return hdredit_push(e, HDREDIT_SET, name, value ? value : "", false, 0);
}

int hdredit_drop_authres(struct hdredit *e, const char *id)
{
	char *copy = strdup(id ? id : "");
	if (copy == NULL)
		return -ENOMEM;
	free(e->authserv_id);
	e->authserv_id = copy;
	return 0;
}

/* ---- reading the block ------------------------------------------------------------------- */

/* A line that starts a field: 1*ftext *WSP ":" (the blanks are RFC 5322
 * 4.5's obsolete syntax, still met). Returns the name's length, 0 when the
 * line does not start a field; *colon is the colon's offset. */
static size_t hdredit_field_name(const char *p, size_t n, size_t *colon)
{
	size_t i = 0;
	while (i < n && hdredit_ftext((unsigned char)p[i]))
		i++;
	size_t name = i;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (name == 0 || i >= n || p[i] != ':')
		return 0;
	*colon = i;
	return name;
}

struct hdredit_field {
	size_t off, len;  /* the field with its continuation lines and last LF */
	size_t name_len;  /* its name at off */
	size_t value_off; /* just past the colon */
	bool removed;
	const char *set; /* its new value (an op's), or NULL */
};

struct hdredit_fields {
	struct hdredit_field *v;
	size_t n, cap;
	size_t end; /* where the fields end: the rest of the block is copied as it is */
};

/* Split text[0..len) into fields, up to the first line that is empty or
 * neither a field nor a continuation. Returns 0 or -ENOMEM. */
static int hdredit_parse(const char *text, size_t len, struct hdredit_fields *fs)
{
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) + 1 : len;
		size_t line = end - pos - (nl ? 1 : 0);
		if (line == 0)
			break;
		if (text[pos] == ' ' || text[pos] == '\t') {
			if (fs->n == 0)
				break;
			fs->v[fs->n - 1].len = end - fs->v[fs->n - 1].off;
			pos = end;
			continue;
		}
		size_t colon;
		size_t name = hdredit_field_name(text + pos, line, &colon);
		if (name == 0)
			break;
		if (fs->n == fs->cap) {
			size_t ncap = fs->cap ? fs->cap * 2 : 64;
			struct hdredit_field *v = realloc(fs->v, ncap * sizeof *v);
			if (v == NULL)
				return -ENOMEM;
			fs->v = v;
			fs->cap = ncap;
		}
		fs->v[fs->n++] = (struct hdredit_field){
		    .off = pos, .len = end - pos, .name_len = name, .value_off = pos + colon + 1};
		pos = end;
	}
	fs->end = pos;
	return 0;
}

size_t hdredit_header_len(const char *text, size_t len, bool *complete)
{
	/* The same rules as hdredit_parse, without keeping the fields. */
	size_t pos = 0;
	bool any = false;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		size_t end = (size_t)(nl - text) + 1;
		size_t line = end - pos - 1;
		size_t colon;
		bool cont = line > 0 && (text[pos] == ' ' || text[pos] == '\t');
		if (line == 0 || (cont && !any) ||
		    (!cont && hdredit_field_name(text + pos, line, &colon) == 0)) {
			*complete = true;
			return pos;
		}
		any = true;
		pos = end;
	}
	*complete = false;
	return len;
}

/* ---- RFC 8601 authserv-id ----------------------------------------------------------------- */

/* Past blanks, line ends and (nested) comments: RFC 5322 3.2.2 CFWS. */
static size_t hdredit_skip_cfws(const char *v, size_t len, size_t i)
{
	int depth = 0;
	while (i < len) {
		char c = v[i];
		if (depth > 0 && c == '\\' && i + 1 < len) {
			i += 2;
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n')
			break;
		i++;
	}
	return i;
}

/* RFC 2045 5.1 tspecials, which end a token. */
static bool hdredit_tspecial(char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

bool hdredit_authserv_is(const char *value, size_t len, const char *id)
{
	size_t i = hdredit_skip_cfws(value, len, 0);
	size_t idlen = strlen(id);
	size_t k = 0;
	if (i < len && value[i] == '"') {
		for (i++; i < len && value[i] != '"'; i++) {
			char c = value[i];
			if (c == '\\' && i + 1 < len)
				c = value[++i];
			if (c == '\r' || c == '\n')
				continue; /* folding inside the string */
			if (k >= idlen ||
			    tolower((unsigned char)c) != tolower((unsigned char)id[k]))
				return false;
			k++;
		}
		return i < len && k == idlen && k > 0;
	}
	for (; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c <= ' ' || c == 0x7f || hdredit_tspecial((char)c))
			break;
		if (k >= idlen || tolower(c) != tolower((unsigned char)id[k]))
			return false;
		k++;
	}
	return k == idlen && k > 0;
}

/* ---- writing --------------------------------------------------------------------------- */

/* A value as one field's text: CRs dropped, other control bytes but tab made
 * '?', blanks trimmed around each line, empty lines dropped (an empty line
 * would end the header block), every line after the first starting with a
 * blank (folded, RFC 5322 2.2.3), so a value can never add a field. */
static int hdredit_put_value(struct buf *out, const char *v)
{
	bool first = true;
	while (*v) {
		const char *nl = strchr(v, '\n');
		size_t n = nl ? (size_t)(nl - v) : strlen(v);
		size_t a = 0, b = n;
		while (a < b && (v[a] == ' ' || v[a] == '\t' || v[a] == '\r'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == '\r'))
			b--;
		if (a < b) {
			int rc = 0;
			if (!first)
				rc = buf_append(out, "\n\t", 2);
			for (size_t i = a; rc == 0 && i < b; i++) {
				unsigned char c = (unsigned char)v[i];
				if (c == '\r')
					continue;
				char o = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
				rc = buf_append(out, &o, 1);
			}
			if (rc < 0)
				return rc;
			first = false;
		}
		v += n + (nl ? 1 : 0);
	}
	return 0;
}

static int hdredit_put_field(struct buf *out, const char *name, size_t name_len, const char *value)
{
	int rc = buf_append(out, name, name_len);
	if (rc == 0)
		rc = buf_append(out, ": ", 2);
	if (rc == 0)
		rc = hdredit_put_value(out, value);
	if (rc == 0)
		rc = buf_append(out, "\n", 1);
	return rc;
}

/* ---- applying ---------------------------------------------------------------------------- */

static bool hdredit_is(const char *text, const struct hdredit_field *f, const char *name)
{
	return strlen(name) == f->name_len && strncasecmp(text + f->off, name, f->name_len) == 0;
}

/* Mark what op (a removal) takes, counted over the block as it came. */
static void hdredit_mark_remove(const struct hdredit *e, const struct hdredit_op *op,
                                const char *text, struct hdredit_fields *fs)
{
	size_t count = 0;
	for (size_t i = 0; i < fs->n; i++)
		count += hdredit_is(text, &fs->v[i], op->name);
	long want = op->index >= 0 ? op->index : (long)count + op->index + 1;
	if (op->index != 0 && (want < 1 || (size_t)want > count))
		return;
	size_t seen = 0;
	for (size_t i = 0; i < fs->n; i++) {
		if (!hdredit_is(text, &fs->v[i], op->name))
			continue;
		seen++;
		if (i >= e->keep_top && (op->index == 0 || seen == (size_t)want))
			fs->v[i].removed = true;
	}
}

/* Where op's new field goes: before field p (fs->n: after the last). */
static size_t hdredit_position(const struct hdredit *e, const struct hdredit_op *op, size_t n)
{
	long p = (long)n;
	if (op->kind == HDREDIT_ADD && op->positioned)
		p = op->index >= 0 ? op->index : (long)n + op->index + 1;
	if (p < 0)
		p = 0;
	if ((size_t)p > n)
		p = (long)n;
	size_t top = e->keep_top < n ? e->keep_top : n;
	return (size_t)p < top ? top : (size_t)p;
}

int hdredit_apply(const struct hdredit *e, const char *hdr, size_t len, struct buf *out,
                  bool *changed)
{
	*changed = false;
	struct hdredit_fields fs = {0};
	size_t *pos = e->n ? calloc(e->n, sizeof *pos) : NULL;
	int rc = e->n && pos == NULL ? -ENOMEM : hdredit_parse(hdr, len, &fs);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < e->n; i++)
		if (e->ops[i].kind == HDREDIT_REMOVE)
			hdredit_mark_remove(e, &e->ops[i], hdr, &fs);
	for (size_t i = e->keep_top; e->authserv_id && i < fs.n; i++) {
		struct hdredit_field *f = &fs.v[i];
		if (hdredit_is(hdr, f, "Authentication-Results") &&
		    hdredit_authserv_is(hdr + f->value_off, f->off + f->len - f->value_off,
		                        e->authserv_id))
			f->removed = true;
	}
	/* Positions: SIZE_MAX for what adds nothing (a removal, a SET that
	 * found its field). */
	for (size_t i = 0; i < e->n; i++) {
		const struct hdredit_op *op = &e->ops[i];
		pos[i] = SIZE_MAX;
		if (op->kind == HDREDIT_SET) {
			size_t k = e->keep_top;
			while (k < fs.n && (fs.v[k].removed || fs.v[k].set ||
			                    !hdredit_is(hdr, &fs.v[k], op->name)))
				k++;
			if (k < fs.n) {
				fs.v[k].set = op->value;
				continue;
			}
		}
		if (op->kind != HDREDIT_REMOVE)
			pos[i] = hdredit_position(e, op, fs.n);
	}
	for (size_t p = 0; rc == 0 && p <= fs.n; p++) {
		for (size_t i = 0; rc == 0 && i < e->n; i++) {
			if (pos[i] != p)
				continue;
			/* A last field without its LF (a file that ends in its
			 * header block) gets one before what follows it. */
			if (out->len > 0 && out->data[out->len - 1] != '\n')
				rc = buf_append(out, "\n", 1);
			if (rc == 0)
				rc = hdredit_put_field(out, e->ops[i].name, strlen(e->ops[i].name),
				                       e->ops[i].value);
			*changed = true;
		}
		if (p == fs.n || rc < 0)
			break;
		const struct hdredit_field *f = &fs.v[p];
		if (f->removed) {
			*changed = true;
		} else if (f->set) {
			rc = hdredit_put_field(out, hdr + f->off, f->name_len, f->set);
			*changed = true;
		} else {
			rc = buf_append(out, hdr + f->off, f->len);
		}
	}
	if (rc == 0)
		rc = buf_append(out, hdr + fs.end, len - fs.end);
out:
	free(pos);
	free(fs.v);
	return rc;
}
