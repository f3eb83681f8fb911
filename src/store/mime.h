/* mime: what the messages API shows of a message's MIME structure (SPEC 3,
 * issue 17), a thin wrapper around GMime 3 that knows nothing of HTTP, so it
 * is unit-tested and fuzzed on its own.
 *
 * A message is parsed from its stored file through a GMime file stream with
 * the stream persisted: GMime keeps offsets into the file for the parts'
 * contents instead of copying them, so parsing a 10 MiB message with large
 * attachments costs the structure, not the bytes. Part contents are decoded
 * (transfer encoding, and charset for text) only when asked for, streaming.
 *
 * Parts are named the IMAP way (RFC 3501 6.4.5 section numbers): the children
 * of the top multipart are "1", "2", ..., theirs "2.1", "2.2", ...; a message
 * that is a single part has the one part "1". A message/rfc822 part is a leaf
 * (an attachment), never walked into.
 *
 * Which part is what: the first text/plain leaf whose disposition is not
 * "attachment" is the text, the first such text/html leaf the HTML; every other
 * leaf is listed in "attachments" (inline images with a Content-ID included,
 * with their disposition). Never parsed by hand: a malformed message is
 * whatever GMime makes of it (typically one text part), never an error. */
#ifndef MAILPORT_MIME_H
#define MAILPORT_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;
struct mime;

/* Deepest multipart nesting walked: deeper parts are not listed (a message
 * nested 1,000 deep must not take the stack). */
#define MIME_DEPTH_MAX 32
/* Parts listed at most (a message of 100,000 empty parts stays cheap). */
#define MIME_PARTS_MAX 1000
/* Longest part name: MIME_DEPTH_MAX numbers of up to 4 digits and dots. */
#define MIME_PART_NAME_MAX 200

/* Once per process, before any other call (thread-safe, idempotent). */
void mime_init(void);

/* Parse the message in fd (read from offset 0; the fd is owned by the result
 * from here, closed by mime_free, and also on failure). NULL on out of memory
 * or when nothing could be parsed. */
struct mime *mime_open_fd(int fd);
/* Parse a message held in memory (tests, fuzzing); the bytes are copied. */
struct mime *mime_open_mem(const char *data, size_t len);
void mime_free(struct mime *m); /* NULL is a no-op */

/* {"text": "...", "html_available": bool, "attachments": [{"part", "filename",
 * "content_type", "size", "content_id", "disposition"}]}: text decoded to
 * UTF-8 (null when there is no text part), filename, content_id and
 * disposition null when absent, size the decoded bytes. NULL on out of memory. */
struct json_t *mime_parts_json(struct mime *m);

/* One part, for GET /messages/{id}/parts/{part}. */
struct mime_part_info {
	char content_type[160]; /* "type/subtype" (+ "; charset=x"), safe in a header */
	char *filename;         /* UTF-8 or NULL; malloc'ed, freed by mime_part_info_free */
	bool attachment;        /* listed in "attachments": served as a download */
};
void mime_part_info_free(struct mime_part_info *pi);

/* Write the decoded bytes of part `name` to out_fd. Returns the bytes written
 * (>= 0) with *pi filled, -ENOENT when there is no such leaf, or -EIO. */
int64_t mime_part_write(struct mime *m, const char *name, int out_fd, struct mime_part_info *pi);

/* The HTML body as UTF-8 with every cid: URL (RFC 2392) that names a part
 * rewritten to the relative URL "parts/<name>" (the HTML is served at
 * /messages/{id}/html, so it resolves next to it, under any path prefix).
 * malloc'ed with *len; NULL with *len 0 when there is no HTML part, NULL with
 * *len 1 on out of memory. */
char *mime_html(struct mime *m, size_t *len);

/* The text (html false) or HTML body as it is, UTF-8, malloc'ed with *len;
 * NULL with *len 0 when there is none, NULL with *len 1 on out of memory. */
char *mime_body(struct mime *m, bool html, size_t *len);

/* The text of the first header `name` decoded (RFC 2047) to UTF-8, malloc'ed;
 * NULL when absent. */
char *mime_header(struct mime *m, const char *name);

/* A raw header value decoded (RFC 2047 encoded words) to valid UTF-8,
 * malloc'ed; NULL on out of memory. */
char *mime_decode_header(const char *raw);
/* s[0..len) case-folded (Unicode, so "Grüße" and "GRÜSSE" fold alike) as
 * valid UTF-8, malloc'ed; NULL on out of memory. */
char *mime_casefold(const char *s, size_t len);

/* Percent-encode a UTF-8 file name for filename*=UTF-8''... (RFC 6266 4.3,
 * RFC 8187 3.2.1) into out (size n); an ASCII stand-in for the plain
 * filename= parameter into ascii (size an). */
void mime_filename_params(const char *name, char *out, size_t n, char *ascii, size_t an);

/* An unnamed scratch file for decoded bytes (a part, a parsed webhook body):
 * O_TMPFILE in dir_fd (the spool's tmp/, so on its disk), else a memfd. The
 * fd, or -errno. */
int mime_scratch_fd(int dir_fd);

#endif
