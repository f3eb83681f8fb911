/* spool_writer: one message's bytes on their way to disk while they arrive
 * (issue 14: "no message is ever held whole in memory").
 *
 * The caller appends bytes (the trace headers first, then the message). They
 * gather in memory up to SPOOL_WRITER_CHUNK; a full chunk is written to
 * tmp/<id> on the thread pool while the next one gathers. With a chunk in
 * flight and the next one full, spool_writer_room() is 0 and the caller stops
 * reading its client until the room callback runs: memory per message is at
 * most two chunks, whatever the message's size. A message smaller than a chunk
 * never touches the disk here: the group commit writes it (journal.h).
 *
 * Nothing of the writer points back at its caller: the callbacks get the arg
 * the caller gave, and the delivery layer passes an id there, never a pointer
 * to a session. Loop thread only. */
#ifndef MAILPORT_SPOOL_WRITER_H
#define MAILPORT_SPOOL_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#define SPOOL_WRITER_CHUNK (64u << 10)

struct spool_writer;

/* A writer for file `name` in directory dir_fd (created O_EXCL at the first
 * write), or, with name NULL, an unnamed O_TMPFILE file in dir_fd (a filter's
 * input when nothing is stored). NULL on out of memory. */
struct spool_writer *spool_writer_new(uv_loop_t *loop, int dir_fd, const char *name);

/* Append; starts a background write when a chunk is full. 0 or -ENOMEM. A
 * write error is kept and reported by spool_writer_finish. */
int spool_writer_write(struct spool_writer *w, const char *data, size_t len);
/* How many more bytes the caller may append before it must wait: 0 means
 * wait for room(arg). */
size_t spool_writer_room(const struct spool_writer *w);
void spool_writer_on_room(struct spool_writer *w, void (*room)(void *arg), void *arg);

/* The end of the message. With to_disk, or when part of it is on disk
 * already, everything is written out first: returns 1 and done(arg, rc) runs
 * later from the loop, rc 0 or -errno of any write. Otherwise (the message
 * stays in memory, or an earlier write failed) returns 0 or that -errno at
 * once and done never runs. */
int spool_writer_finish(struct spool_writer *w, bool to_disk, void (*done)(void *arg, int rc),
                        void *arg);

/* After finish: the file (read-write; its offset is not ours to rely on), or
 * -1 when the whole message is still in memory; then spool_writer_iov gives
 * it (at most 2 iovecs). Total bytes written in spool_writer_len. */
int spool_writer_fd(const struct spool_writer *w);
int spool_writer_iov(const struct spool_writer *w, struct iovec *iov);
uint64_t spool_writer_len(const struct spool_writer *w);

/* Done with it. With remove, the file's name goes too (a message not
 * stored); the writer frees itself once no write of it is in flight. */
void spool_writer_release(struct spool_writer *w, bool remove);

#endif
