/* spool_index: the spool's in-memory index of its messages (issue 12), so that
 * GET /messages lists a page without reading a directory (SPEC 3: "Listing is
 * O(page) from the spool's index, never a directory scan per request").
 *
 * It holds every message of new/, cur/ and failed/ once: its id and the
 * directory it is in, in arrival order (spool_index_id_newer(), the order of our
 * Maildir ids). The spool keeps it current: spool_open() fills it with one scan,
 * and the spool functions that store, move or remove a message update it after
 * the file operation succeeded, so their callers need not know it exists.
 *
 * Thread-safe: one mutex per index, held for in-memory work only (a lookup, a
 * memmove inside one chunk, copying out one page), never during file I/O. The
 * HTTP thread reads it while the loop and the thread pool write it.
 *
 * Layout: a sorted array (oldest first) of fixed-size entries, cut into chunks of
 * SPOOL_INDEX_CHUNK entries, with a sorted array of chunk pointers on top (a
 * one-level B+ tree). Lookup is O(log n); insert and delete move at most one
 * chunk's entries; a page walks the chunk counts (n / SPOOL_INDEX_CHUNK steps)
 * then copies its own entries, never touching the other messages.
 *
 * Memory per message: one 48-byte entry (LP64) for an id of our own format
 * "<sec>.M<usec>P<pid>Q<counter>.<host>": the numbers are kept parsed and the
 * host part is shared by every id with the same host (SPOOL_INDEX_HOSTS of them).
 * Another id (a file some other program put in the spool) also keeps its name,
 * strdup'ed. Chunks filled by arrivals in order are full; deletes merge a chunk
 * that drops under a quarter full into a neighbour, so a chunk is on average at
 * least about 3/8 full: 48 bytes per message typically (300,000 messages: 14 MB),
 * about 130 at worst (39 MB); plus, once GET /messages?q= has been asked, each
 * message's search text (at most SPOOL_INDEX_ATTRS_MAX bytes, typically ~100). */
#ifndef MAILPORT_SPOOL_INDEX_H
#define MAILPORT_SPOOL_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "spool.h"

/* Entries per chunk: 20 KiB of entries, one memmove of at most that per change. */
#define SPOOL_INDEX_CHUNK 512
/* Distinct host parts shared between entries; ids with further hosts keep their
 * whole name (a spool normally sees one host, ours). */
#define SPOOL_INDEX_HOSTS 64
/* The longest search text kept per message (from, to and subject). */
#define SPOOL_INDEX_ATTRS_MAX 1024

struct spool_index;

/* An empty index, NULL on out of memory. */
struct spool_index *spool_index_new(void);
void spool_index_free(struct spool_index *ix); /* NULL is a no-op */

/* Insert id in state st, or set its state when it is there. 0, -ENOMEM, or
 * -EINVAL for an id of SPOOL_ID_MAX bytes or more (no file name is that long). */
int spool_index_put(struct spool_index *ix, const char *id, enum spool_state st);
/* Set the state of id only when it is in the index (a message being moved may
 * have been deleted meanwhile: it must not come back). 0 or -ENOENT. */
int spool_index_update(struct spool_index *ix, const char *id, enum spool_state st);
/* Remove id. 0 or -ENOENT. */
int spool_index_del(struct spool_index *ix, const char *id);
/* The state of id. 0 or -ENOENT. */
int spool_index_get(struct spool_index *ix, const char *id, enum spool_state *st);
/* Messages in the index, in all, and per state when counts is not NULL
 * (counts[SPOOL_STATES]). */
size_t spool_index_total(struct spool_index *ix, size_t *counts);

/* Issue 17: who hears about every change, so that /events and anything else
 * that follows the spool need no code of their own in the paths that store,
 * move or delete a message (every one of them goes through put, update or del).
 * Called with the index's mutex held (so in the order of the changes), on the thread that made the
 * change (the thread pool, the HTTP thread), once per message: STORED when put
 * inserted it, STATE when put or update changed its state, DELETED when del
 * removed it. The start-up scan (add_batch) calls nobody. An observer must be
 * quick and must not call back into the index. */
enum spool_index_change { SPOOL_INDEX_STORED, SPOOL_INDEX_STATE, SPOOL_INDEX_DELETED };
typedef void (*spool_index_observer)(void *ctx, enum spool_index_change ch, const char *id,
                                     enum spool_state st);
/* At most this many observers. */
#define SPOOL_INDEX_OBSERVERS 4
/* Add (fn non-NULL) or remove (the same fn and ctx) an observer. 0, or -ENOSPC
 * when SPOOL_INDEX_OBSERVERS are registered. A removal waits for calls in
 * progress on other threads to finish, so ctx may be freed afterwards. */
int spool_index_observe(struct spool_index *ix, spool_index_observer fn, void *ctx);
int spool_index_unobserve(struct spool_index *ix, spool_index_observer fn, void *ctx);

/* Add n ids in state st at once (the start-up scan): one sort instead of n
 * inserts. An id already in the index, or twice in ids, is kept once, in the
 * later state of new -> cur -> failed (a move seen half-way by the scan); ids
 * too long for spool_index_put() are left out.
 * 0 or -ENOMEM (then the index is unchanged). */
int spool_index_add_batch(struct spool_index *ix, char *const *ids, size_t n, enum spool_state st);

/* One message of a page. */
struct spool_index_item {
	char id[SPOOL_ID_MAX];
	enum spool_state state;
};

/* A page, newest first: skip `offset` messages, then copy at most `limit` into
 * items (room for limit). Without before (NULL) the page starts at the newest
 * message; with it, at the newest message strictly older than before, which must
 * be in the index. Returns 0 with *n items and *total (all messages in the
 * index), or -ENOENT when before is not in the index. */
int spool_index_page(struct spool_index *ix, const char *before, size_t offset, size_t limit,
                     struct spool_index_item *items, size_t *n, size_t *total);

/* ---- search (issue 17: GET /messages?q=) ----
 * Each entry may carry its search text ("attrs"): opaque bytes set by the
 * messages API (messages_search.c: from, to and subject, case-folded), NULL
 * until set. The index only stores them and hands them to a matcher. */

/* Set (copy) the search text of id: len bytes ending in a NUL.
 * 0, -ENOMEM, or -ENOENT when id is not in the index. */
int spool_index_set_attrs(struct spool_index *ix, const char *id, const char *attrs, size_t len);
/* At most max messages (newest first) whose search text is not set yet;
 * O(1) when every message has it. Returns 0 with *n items. */
int spool_index_missing_attrs(struct spool_index *ix, struct spool_index_item *items, size_t max,
                              size_t *n);
/* true when a message's search text matches. Called with the index locked:
 * it must not call into the index. */
typedef bool (*spool_index_match_fn)(void *ctx, const char *attrs);
/* Like spool_index_page() over the messages whose search text matches:
 * *total is the number of all matching messages (cursor and offset aside).
 * Messages without search text never match. O(n) in the index's size. */
int spool_index_search(struct spool_index *ix, spool_index_match_fn match, void *ctx,
                       const char *before, size_t offset, size_t limit,
                       struct spool_index_item *items, size_t *n, size_t *total);

/* The order of ids, "newest first": < 0 when a is newer than b, 0 when they are
 * the same id. Ids "<seconds>.M<microseconds>P<pid>Q<counter>..." compare as
 * those numbers (seconds, then microseconds, then counter), then by name, the
 * greater name first; ids that do not parse come after all that do, by name
 * the same way. (messages_id_newer() is this function.) */
int spool_index_id_newer(const char *a, const char *b);

#endif
