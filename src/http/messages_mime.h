/* messages_mime: the MIME side of the /messages API (SPEC 3, issue 17).
 *
 *   GET    /messages/{id}               "parts" (mime.h: text, html_available,
 *                                       attachments) added by messages.c
 *   GET    /messages/{id}/parts/{part}  the decoded part with its content type;
 *                                       listed attachments with
 *                                       Content-Disposition: attachment (RFC 6266
 *                                       filename*=UTF-8''...); 404 unknown part
 *   GET    /messages/{id}/html          the HTML part, cid: URLs rewritten to
 *                                       "parts/<part>" (relative), under a CSP
 *                                       that runs no script and fetches nothing
 *                                       remote (?remote=1: remote images)
 *   DELETE /messages                    every message removed, 204
 * Token and Host rules are httpd.c's, as for the rest of /messages. A part is
 * decoded into an unnamed temporary file (O_TMPFILE in the spool's tmp/, a
 * memfd when that fails), never into the heap, and sent from it. */
#ifndef MAILPORT_MESSAGES_MIME_H
#define MAILPORT_MESSAGES_MIME_H

#include <stdbool.h>

#include "spool.h"

struct json_t;
struct httpd;
struct MHD_Connection;

/* The served HTML's Content-Security-Policy (SPEC 3), and with ?remote=1. */
#define MESSAGES_HTML_CSP                                                                          \
	"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
#define MESSAGES_HTML_CSP_REMOTE                                                                   \
	"default-src 'none'; img-src 'self' data: https: http:; style-src 'unsafe-inline'; "       \
	"sandbox"

/* "parts" of message id (in st's directory): a new reference, JSON null only
 * when out of memory; a message GMime cannot parse has no text and no parts.
 * (messages_parts.c) */
struct json_t *messages_mime_parts(struct spool *sp, const char *id, enum spool_state st);

/* Open message id for reading: in *where's directory (NULL: where the index
 * says), looked up again when it moved meanwhile. 0 with *fd, -ENOENT (no such
 * message, or not a valid id) or another -errno. (messages_parts.c) */
int messages_mime_open(struct spool *sp, const char *id, const enum spool_state *where, int *fd);

/* Answer the routes above when path (what follows "/messages") is one of
 * them: true with *res set; false leaves the request to messages.c. */
bool messages_mime_route(struct httpd *h, struct MHD_Connection *conn, const char *path,
                         const char *method, int *res);

#endif
