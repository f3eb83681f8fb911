/* journal: the spool's group commit (issue 14, SPEC 5 "Durability").
 *
 * A message reaches the spool in two steps. While it arrives its bytes go to
 * tmp/<id> (spool_writer.h), never synced. At its end it joins a batch, and one
 * call of journal_commit() takes the whole batch:
 *   1. every message file (trace headers + message) and its envelope are
 *      appended to the current segment file of <spool>/journal/ as one record
 *      each, with a SHA-256 over the record (a message of JOURNAL_EXTERNAL_MIN
 *      or more is synced in tmp/ instead, its record holding only its length);
 *   2. ONE fdatasync of the segment covers the batch (plus an fsync of
 *      journal/ when the segment is new);
 *   3. each message is materialised without any fsync: meta/<id>.json written
 *      (through a temporary name), then tmp/<id> renamed into new/ (or cur/);
 * and only then does any message of the batch get its 250. A failed sync
 * truncates the segment back to where the batch began and fails exactly the
 * batch's messages (451 4.3.0): none of them is materialised.
 *
 * Recovery (journal_open, at start-up, before anything is accepted): every
 * complete record of every segment is replayed idempotently by message id. A
 * message already in new/ is checked byte for byte against its record (and
 * rewritten if the crash left it short); one in cur/ or failed/ is left alone;
 * one still in tmp/ is checked and moved into new/; one found nowhere was taken
 * by a consumer, unless the segment was written before the machine last booted
 * (then the page cache that held the materialised file may be gone, and it is
 * written again from the record: at least once, never lost). A torn record at a
 * segment's end (the crash came before its sync) is ignored: its message never
 * got a 250. Then one syncfs makes the replay durable and the segments go.
 *
 * Checkpoints (journal_checkpoint, from a timer off the loop): a segment is
 * closed when it is large or old, and removed once a syncfs ran after it was
 * closed (everything it covers is then durable in new/ and meta/). Segments are
 * kept JOURNAL_CHECKPOINT_AGE seconds first, so that the kernel's own writeback
 * has usually written those files and the syncfs has little left to do.
 *
 * Threads: several journal_commit calls may run at once: each writes its
 * messages' tmp/ files and materialises them on its own, and only the append
 * and the sync are serialised by a mutex (one batch syncs while the next
 * prepares). A checkpoint takes the mutex only around its bookkeeping, so its
 * syncfs runs while commits go on; two checkpoints must not run at once
 * (spool_commit.c runs one at a time). The counters are atomic. */
#ifndef MAILPORT_JOURNAL_H
#define MAILPORT_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

struct spool;
struct journal;

/* A message file of at least this size that is already on disk (streamed) is
 * not copied into the journal: it is fdatasync'ed where it is (and tmp/ once
 * per batch), and its record holds its envelope and length only. Below it, the
 * copy into the shared segment is cheaper than a sync of its own. */
#define JOURNAL_EXTERNAL_MIN (1u << 20)

/* A segment is closed beyond this size or age ... */
#define JOURNAL_SEGMENT_MAX (64u << 20)
#define JOURNAL_SEGMENT_AGE 10
/* ... or after this many seconds without a commit, and removed this long
 * after it was closed. */
#define JOURNAL_SEGMENT_IDLE   5
#define JOURNAL_CHECKPOINT_AGE 30

/* One message of a batch. */
struct journal_entry {
	const char *id;   /* the Maildir name; its file is tmp/<id> */
	bool to_cur;      /* materialise into cur/ (already delivered) instead of new/ */
	const char *meta; /* meta/<id>.json's bytes, the final newline included */
	size_t meta_len;
	/* The message file (Return-Path, Received, message): either already
	 * complete in tmp/<id> and open as fd, or in memory (fd -1), and then
	 * journal_commit writes tmp/<id> from iov before the record. */
	int fd;
	const struct iovec *iov;
	int iovcnt;
	uint64_t len; /* bytes of the message file */
	int rc;       /* out: 0 stored (materialised), or -errno (nothing of it left) */
	/* For spool_commit.c's batches. */
	struct journal_entry *next;
	void (*done)(struct journal_entry *e, void *arg);
	void *arg;
};

/* Open <spool>/journal/ (created when missing) and replay what it holds.
 * Blocking; start-up only. Returns 0, or -errno with a line in err. */
int journal_open(struct spool *sp, int spool_dir_fd, struct journal **out, char *err,
                 size_t errlen);
/* Checkpoint everything (all segments synced and removed) and free. NULL ok. */
void journal_close(struct journal *j);

/* Commit a batch (the order above). Sets every e[i]->rc. Blocking: thread pool. */
void journal_commit(struct journal *j, struct journal_entry **e, size_t n);

/* Close an idle segment, remove closed segments older than
 * JOURNAL_CHECKPOINT_AGE (all of them with `all`) after one syncfs. Returns
 * the segments removed, or -errno of the sync (they are kept). Blocking. */
int journal_checkpoint(struct journal *j, bool all);
/* Whether journal_checkpoint would have anything to do now. */
bool journal_checkpoint_due(struct journal *j);

/* Counters for /metrics: messages committed, syncs (one per batch) and failed
 * syncs, and what the start-up replay did (records seen, messages written
 * again or moved into new/). */
struct journal_stats {
	uint64_t messages;
	uint64_t syncs;
	uint64_t sync_failures;
	uint64_t replayed;
	uint64_t restored;
};
void journal_get_stats(struct journal *j, struct journal_stats *st);

/* Tests: free without the final checkpoint, leaving the segments as a crash
 * would. */
void journal_abandon(struct journal *j);
/* Tests: replace fdatasync(2) of the segment (NULL restores it). */
void journal_set_sync(struct journal *j, int (*sync)(int fd));

#endif
