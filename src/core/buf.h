/* buf: a growable byte buffer with a hard cap.
 *
 * Every buffer in mailport has a limit chosen by configuration, never by what a
 * peer sends: buf_append() checks the cap before it grows (the Redis habit) and
 * fails with -ENOSPC instead of growing past it. */
#ifndef MAILPORT_BUF_H
#define MAILPORT_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;   /* allocated */
	size_t limit; /* hard maximum for len; 0 means SIZE_MAX */
};

/* Initialise an empty buffer that may hold at most `limit` bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t limit);
/* Release the storage; the buffer is empty and reusable afterwards. buf_free on an
 * initialised empty buffer is a no-op. */
void buf_free(struct buf *b);
/* Append n bytes. Returns 0, -ENOSPC when the limit would be passed (nothing is
 * appended), or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
/* printf-style append, same returns as buf_append. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). Keeps the storage. */
void buf_consume(struct buf *b, size_t n);
/* Forget the contents but keep the storage. */
void buf_reset(struct buf *b);

#endif
