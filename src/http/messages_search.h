/* messages_search: GET /messages?q=TEXT (SPEC 3, issue 17), through the
 * spool's index, never a directory scan.
 *
 * The query is blank-separated terms, all of which must match (AND); a term is
 * a word, or a "double-quoted phrase", optionally prefixed by from:, to: or
 * subject: (any case) to narrow it to that field; a bare term matches any of
 * the three. Matching is case-insensitive (Unicode case folding) substring.
 *   from    = the envelope's mail_from and the From header
 *   to      = the envelope's rcpt_to, the To and Cc headers
 *   subject = the Subject header
 * Headers are decoded (RFC 2047) first, so subject:grüße finds an encoded word.
 *
 * Each message's search text is built once from its envelope and its first
 * MESSAGES_LIST_HEADER_BYTES and kept in the index (spool_index_set_attrs):
 * the first search after a start builds it for every message (reads each
 * message's head once), later ones only for messages stored since. A search is
 * then one pass over the index in memory, O(messages), under its lock. */
#ifndef MAILPORT_MESSAGES_SEARCH_H
#define MAILPORT_MESSAGES_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

struct spool;
struct spool_index_item;

/* Terms a query may have (a longer one is a 400). */
#define MESSAGES_SEARCH_TERMS 16

/* A page of the messages matching q, like spool_index_page(): 0, -ENOENT
 * (before not in the index), -EINVAL (too many terms), -ENOMEM. */
int messages_search_page(struct spool *sp, const char *q, const char *before, size_t offset,
                         size_t limit, struct spool_index_item *items, size_t *n, size_t *total);

/* ---- pure parts (unit-tested) ---- */

/* The search text of a message from its envelope JSON (NULL: none) and the
 * start of its file (head_len bytes, NULL: none): "from\0to\0subject\0",
 * case-folded, malloc'ed in *attrs with its length. 0 or -ENOMEM. */
int messages_search_text(const char *envelope, const char *head, size_t head_len, char **attrs,
                         size_t *len);
/* Whether search text attrs matches query q. */
bool messages_search_matches(const char *q, const char *attrs);

#endif
