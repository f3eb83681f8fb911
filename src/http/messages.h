/* messages: the /messages API of the HTTP side port (SPEC 3), which makes the
 * spool browsable (a mail catcher for CI) and lets an operator drop messages.
 *
 *   GET    /messages?limit=&offset=&before=&q=
 *                                    {"total":N,"messages":[entry...]}, newest first;
 *                                    q= searches (messages_search.h), total counts
 *                                    the matches
 *   GET    /messages/{id}            entry + "headers":[{"name":..,"value":..}...]
 *                                    + "parts" (messages_mime.h)
 *   GET    /messages/{id}/raw        the stored file, message/rfc822
 *   DELETE /messages/{id}            204; the message and its envelope removed
 * An entry is the envelope of meta/<id>.json (SPEC 5, with its "delivery" object
 * when it has one) plus "subject" (the unfolded Subject header with its RFC 2047
 * encoded words decoded to UTF-8, null when there is none) and "state": "new" (in new/),
 * "delivered" (cur/) or "failed" (failed/). The id is the Maildir base name; anything that is not a
 * plain id (spool_id_valid: no '/', no leading dot) is a 404, so no path can escape the spool.
 *
 * The listing takes its page from the spool's index (spool_index.h), never
 * from a directory: a page of N costs N envelope and header reads whatever the
 * spool holds. before=<id> is a cursor: the page starts at the newest message
 * strictly older than that id (then skips offset more); an id that is invalid or
 * not in the spool is a 400. "total" is the number of messages in the index.
 *
 * This runs on libmicrohttpd's thread and reads files directly: the loop moves
 * and removes messages meanwhile, so a message found by the listing may be gone
 * (or elsewhere) when it is read; such a message is looked up again or left out
 * (and dropped from the index), never an error. */
#ifndef MAILPORT_MESSAGES_H
#define MAILPORT_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include "spool.h"

struct json_t;

/* Page size of GET /messages without ?limit=, and the largest accepted. */
#define MESSAGES_LIMIT_DEFAULT 50
#define MESSAGES_LIMIT_MAX     1000
/* Bytes of a message read to find its headers, and the most headers returned. */
#define MESSAGES_HEADER_BYTES (256u * 1024)
/* The listing only wants the Subject: less of each message is read. */
#define MESSAGES_LIST_HEADER_BYTES (32u * 1024)
#define MESSAGES_HEADERS_MAX       1000

struct messages_reply {
	unsigned status;     /* 200, 204, 400, 404, 405, 500 */
	struct json_t *json; /* the body (a new reference), NULL for 204 and raw */
	int fd;              /* raw: the open message file (the caller closes it), else -1 */
	uint64_t size;       /* raw: its size */
	const char *allow;   /* 405: the Allow header */
};

/* The query parameters of a request, each the raw value or NULL when absent. */
struct messages_query {
	const char *limit;
	const char *offset;
	const char *before; /* a message id: the page starts after it (older) */
	const char *q;      /* a search (messages_search.h) */
};

/* Answer one request. path is what follows "/messages" in the URL ("", "/",
 * "/<id>", "/<id>/raw"); q may be NULL (no parameters). sp NULL
 * (SMTPD_DELIVER=discard) is an empty spool. */
void messages_handle(struct spool *sp, const char *method, const char *path,
                     const struct messages_query *q, struct messages_reply *out);

/* Issue 17: the entry of one message exactly as GET /messages lists it (for
 * /events), or NULL when it is gone (or out of memory). Blocking file reads. */
struct json_t *messages_list_entry(struct spool *sp, const char *id);

/* ---- pure parts (unit-tested) ---- */

/* The header section of a message (up to the first empty line, or the end of
 * text) as a JSON array of {"name","value"} in order: folded lines unfolded
 * (RFC 5322 2.2.3: the line break removed, the blank kept), values trimmed,
 * invalid UTF-8 replaced, at most MESSAGES_HEADERS_MAX entries; a line that is
 * not a header field is skipped. NULL on out of memory. */
struct json_t *messages_parse_headers(const char *text, size_t len);

/* The value of the first header named `name` (any case) in such an array, or NULL. */
const char *messages_header(struct json_t *headers, const char *name);

/* Order of ids for "newest first": < 0 when a is newer than b. Our ids start
 * with "<seconds>.M<microseconds>P<pid>Q<counter>", compared as numbers in that
 * order; ids that do not parse come last, by name. The index's order: this is
 * spool_index_id_newer(). */
int messages_id_newer(const char *a, const char *b);

/* A decimal query parameter in [0, max]; NULL or "" gives def. Returns 0 or -1. */
int messages_parse_count(const char *s, size_t def, size_t max, size_t *out);

/* The word GET /messages gives a state: "new", "delivered" or "failed". */
const char *messages_state_name(enum spool_state st);

#endif
