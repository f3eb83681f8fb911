/* hdredit: edits to a message's header block (SPEC 8), applied in one pass to
 * the header block's text. Pure: no I/O, no clock; it allocates (an array of
 * fields, the output buffer) and nothing more.
 *
 * rspamd hands its header changes over as a milter block (remove the n-th
 * "X-Foo", insert "Authentication-Results" at position 1, ...), the way its
 * own milter proxy passes them to Postfix; hdredit is that, for a file:
 *   - every position and every "n-th header of that name" is counted in the
 *     header block as it was sent to rspamd, before any edit, so the edits do
 *     not depend on each other's order;
 *   - the first `keep_top` fields (our own Return-Path and Received trace
 *     headers, SPEC 5) are never removed or replaced, and nothing is inserted
 *     above them: the stored file still starts with them;
 *   - Authentication-Results fields whose authserv-id claims our own name are
 *     removed (RFC 8601 5: a receiver removes such fields that arrive from
 *     outside, so only its own results carry its name).
 *
 * Text is as the spool stores it: LF line ends, folded fields continued by
 * lines that start with a space or a tab. The header block ends at the first
 * empty line or at the first line that is neither a field nor a continuation
 * (hdredit_header_len). */
#ifndef MAILPORT_HDREDIT_H
#define MAILPORT_HDREDIT_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

/* The longest header block that is edited: the whole block is held in memory
 * while it is rewritten (the body is copied through in chunks). Postfix's
 * header_size_limit is 100 KiB; a block past this is refused (552 5.3.4)
 * rather than edited in part, which could leave a forged Authentication-
 * Results behind. */
#define HDREDIT_HEADER_MAX (1u << 20)

enum hdredit_kind {
	HDREDIT_REMOVE, /* fields named `name`: index 0 all, n > 0 the n-th, n < 0 the n-th from the
	                   end */
	HDREDIT_ADD,    /* a new field: at position `index` when positioned, else at the end */
	HDREDIT_SET,    /* the first field named `name` gets `value`; added at the end when none */
};

struct hdredit_op {
	enum hdredit_kind kind;
	char *name;
	char *value;
	long index;
	bool positioned;
};

struct hdredit {
	struct hdredit_op *ops;
	size_t n, cap;
	char *authserv_id; /* drop Authentication-Results claiming it; NULL: none */
	size_t keep_top;   /* leading fields that stay first and untouched */
};

void hdredit_init(struct hdredit *e, size_t keep_top);
void hdredit_free(struct hdredit *e);

/* Add an edit; each returns 0, -EINVAL for a name that is not a field name
 * (RFC 5322 2.2: printable ASCII but ':'; nothing is added), or -ENOMEM.
 * Values are cleaned when applied (hdredit_apply). */
int hdredit_remove(struct hdredit *e, const char *name, long index);
/* Position as rspamd's milter block gives it ("order"): n >= 0 before the
 * n-th field of the block (0: the top; past the last: the end); n < 0 counted
 * from the end (-1: after the last field). */
int hdredit_add(struct hdredit *e, const char *name, const char *value, bool positioned,
                long order);
int hdredit_set(struct hdredit *e, const char *name, const char *value);
/* Remove Authentication-Results fields whose authserv-id is `id` (any case). */
int hdredit_drop_authres(struct hdredit *e, const char *id);

/* The length of the header block at the start of text[0..len): the bytes
 * before the empty line (or the first line that is not part of a field)
 * that ends it. *complete is false when text ends inside the block (the whole
 * of text is header, or more text is needed to know). */
size_t hdredit_header_len(const char *text, size_t len, bool *complete);

/* Append to out the header block hdr[0..len) (as hdredit_header_len
 * delimits it) with e's edits applied. *changed tells whether anything
 * differs from the input. Returns 0, or -ENOMEM / -ENOSPC (out's limit). */
int hdredit_apply(const struct hdredit *e, const char *hdr, size_t len, struct buf *out,
                  bool *changed);

/* RFC 8601 2.2: whether the authserv-id of an Authentication-Results value
 * (its first item after comments and blanks: a token, or a quoted string with
 * its quoted pairs undone) is `id`, in any case (RFC 8601 2.5: a domain
 * name, compared as one). */
bool hdredit_authserv_is(const char *value, size_t len, const char *id);

#endif
