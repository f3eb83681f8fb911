/* spool_writer: a message streamed to tmp/ while it arrives. See spool_writer.h. */
#include "spool_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "spool.h"

/* A feed may add a whole read's worth past a full chunk (pipelined BDAT). */
#define SPOOL_WRITER_LIMIT (SPOOL_WRITER_CHUNK + (128u << 10))

struct spool_writer {
	uv_loop_t *loop;
	int dir_fd;
	char *name; /* NULL: O_TMPFILE */
	int fd;
	struct buf fill;   /* gathering */
	struct buf flight; /* being written by the pool */
	uint64_t written;  /* bytes on disk */
	uint64_t total;    /* bytes appended */
	int err;           /* the first write error */
	uv_work_t work;
	bool in_flight;
	bool finishing;
	bool released;
	bool remove;
	bool cleaned; /* released: the file closed (and removed) */
	/* What the queued job does, set on the loop before it is queued: the pool
	 * never reads `released`, which the loop may set while a write runs. */
	bool job_cleanup;
	void (*room)(void *arg);
	void *room_arg;
	void (*done)(void *arg, int rc);
	void *done_arg;
};

static void spool_writer_kick(struct spool_writer *w);

static int spool_writer_open(struct spool_writer *w)
{
	if (w->name != NULL)
		w->fd = openat(w->dir_fd, w->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		               SPOOL_FILE_MODE);
	else
		w->fd = openat(w->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return w->fd < 0 ? -errno : 0;
}

/* Thread pool: write the chunk in flight (or, released, clean up). */
static void spool_writer_work(uv_work_t *req)
{
	struct spool_writer *w = req->data;
	if (w->job_cleanup) {
		if (w->fd >= 0)
			close(w->fd);
		w->fd = -1;
		if (w->remove && w->name != NULL)
			unlinkat(w->dir_fd, w->name, 0);
		w->cleaned = true;
		return;
	}
	if (w->err == 0 && w->fd < 0)
		w->err = spool_writer_open(w);
	const char *p = w->flight.data;
	size_t left = w->flight.len;
	while (w->err == 0 && left > 0) {
		ssize_t n = pwrite(w->fd, p, left, (off_t)w->written);
		if (n < 0) {
			if (errno != EINTR)
				w->err = -errno;
			continue;
		}
		p += n;
		left -= (size_t)n;
		w->written += (uint64_t)n;
	}
}

static void spool_writer_after(uv_work_t *req, int status);

static void spool_writer_destroy(struct spool_writer *w)
{
	buf_free(&w->fill);
	buf_free(&w->flight);
	free(w->name);
	free(w);
}

/* Released: close (and remove) the file on the pool. 1 when queued, 0 when
 * there was nothing to do or it was done here (the pool refused). */
static int spool_writer_cleanup(struct spool_writer *w)
{
	bool named = w->remove && w->name != NULL && (w->fd >= 0 || w->written > 0);
	if (w->fd < 0 && !named) {
		w->cleaned = true;
		return 0;
	}
	w->in_flight = true;
	w->job_cleanup = true;
	w->work.data = w;
	if (uv_queue_work(w->loop, &w->work, spool_writer_work, spool_writer_after) == 0)
		return 1;
	w->in_flight = false;
	spool_writer_work(&w->work); /* rare: the pool refused; a close and an unlink */
	return 0;
}

static void spool_writer_after(uv_work_t *req, int status)
{
	struct spool_writer *w = req->data;
	w->in_flight = false;
	if (status < 0 && w->err == 0)
		w->err = status;
	buf_reset(&w->flight);
	if (w->released) {
		if (!w->cleaned && spool_writer_cleanup(w) == 1)
			return;
		spool_writer_destroy(w);
		return;
	}
	spool_writer_kick(w);
	if (w->finishing && !w->in_flight) {
		w->finishing = false;
		w->done(w->done_arg, w->err);
		return;
	}
	if (!w->finishing && w->room != NULL && spool_writer_room(w) > 0)
		w->room(w->room_arg);
}

/* Start writing the gathered bytes when a chunk is full (or at the end). */
static void spool_writer_kick(struct spool_writer *w)
{
	if (w->in_flight || w->fill.len == 0)
		return;
	if (w->fill.len < SPOOL_WRITER_CHUNK && !w->finishing)
		return;
	struct buf t = w->flight;
	w->flight = w->fill;
	w->fill = t;
	w->in_flight = true;
	w->job_cleanup = false;
	w->work.data = w;
	int rc = uv_queue_work(w->loop, &w->work, spool_writer_work, spool_writer_after);
	if (rc < 0) {
		/* Not queued: the bytes are lost, the message fails at its end. */
		w->in_flight = false;
		if (w->err == 0)
			w->err = rc;
		buf_reset(&w->flight);
	}
}

struct spool_writer *spool_writer_new(uv_loop_t *loop, int dir_fd, const char *name)
{
	struct spool_writer *w = calloc(1, sizeof *w);
	if (w == NULL)
		return NULL;
	if (name != NULL && (w->name = strdup(name)) == NULL) {
		free(w);
		return NULL;
	}
	w->loop = loop;
	w->dir_fd = dir_fd;
	w->fd = -1;
	buf_init(&w->fill, SPOOL_WRITER_LIMIT);
	buf_init(&w->flight, SPOOL_WRITER_LIMIT);
	return w;
}

int spool_writer_write(struct spool_writer *w, const char *data, size_t len)
{
	w->total += len;
	if (w->err != 0)
		return 0; /* reported at the end */
	while (len > 0) {
		size_t room = SPOOL_WRITER_LIMIT - w->fill.len;
		size_t n = len < room ? len : room;
		if (n == 0) {
			/* Only a caller that ignored spool_writer_room gets here. */
			w->err = -ENOBUFS;
			return 0;
		}
		if (buf_append(&w->fill, data, n) < 0)
			return -ENOMEM;
		data += n;
		len -= n;
		spool_writer_kick(w);
	}
	return 0;
}

size_t spool_writer_room(const struct spool_writer *w)
{
	if (w->err != 0)
		return SPOOL_WRITER_CHUNK; /* swallowed: the end reports the error */
	if (w->fill.len >= SPOOL_WRITER_CHUNK)
		return 0;
	return SPOOL_WRITER_CHUNK - w->fill.len;
}

void spool_writer_on_room(struct spool_writer *w, void (*room)(void *arg), void *arg)
{
	w->room = room;
	w->room_arg = arg;
}

int spool_writer_finish(struct spool_writer *w, bool to_disk, void (*done)(void *arg, int rc),
                        void *arg)
{
	w->room = NULL;
	bool disk = to_disk || w->in_flight || w->fd >= 0; /* fd: the pool's while in flight */
	if (!disk || w->err != 0)
		return w->err;
	w->done = done;
	w->done_arg = arg;
	w->finishing = true;
	if (!w->in_flight && w->fd < 0 && w->fill.len == 0) {
		/* An empty message that must exist as a file. */
		w->in_flight = true;
		w->job_cleanup = false;
		w->work.data = w;
		if (uv_queue_work(w->loop, &w->work, spool_writer_work, spool_writer_after) == 0)
			return 1;
		w->in_flight = false;
		w->finishing = false;
		return -ENOMEM;
	}
	spool_writer_kick(w);
	if (w->in_flight)
		return 1;
	w->finishing = false; /* all of it was on disk already */
	return w->err;
}

int spool_writer_fd(const struct spool_writer *w)
{
	return w->fd;
}

int spool_writer_iov(const struct spool_writer *w, struct iovec *iov)
{
	iov[0] = (struct iovec){w->fill.data, w->fill.len};
	return 1;
}

uint64_t spool_writer_len(const struct spool_writer *w)
{
	return w->total;
}

void spool_writer_release(struct spool_writer *w, bool remove)
{
	if (w == NULL)
		return;
	w->released = true;
	w->remove = remove;
	w->room = NULL;
	w->done = NULL;
	w->finishing = false;
	if (w->in_flight)
		return; /* spool_writer_after finishes the job */
	if (spool_writer_cleanup(w) == 0)
		spool_writer_destroy(w);
}
