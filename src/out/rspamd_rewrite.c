/* rspamd_rewrite: rspamd's header edits applied to a message file, off the
 * loop (SPEC 8). See rspamd.h. The header block is read (at most
 * HDREDIT_HEADER_MAX bytes), edited in memory, written to a new file with the
 * body copied behind it in chunks, and the new file is renamed over the old
 * name: the message is never held whole in memory. */
#include "rspamd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

/* Read and copy in pieces of this size. */
#define RSPAMD_REWRITE_CHUNK (64u << 10)

static int rspamd_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The header block of fd into hdr: read until hdredit_header_len finds its
 * end, the file ends, or HDREDIT_HEADER_MAX is passed (-EFBIG). */
static int rspamd_read_header(int fd, uint64_t size, struct buf *hdr, size_t *hlen)
{
	for (;;) {
		bool complete;
		*hlen = hdredit_header_len(hdr->data ? hdr->data : "", hdr->len, &complete);
		if (complete || hdr->len >= size)
			return 0;
		if (hdr->len > HDREDIT_HEADER_MAX)
			return -EFBIG;
		char chunk[8192];
		uint64_t left = size - hdr->len;
		size_t want = left < sizeof chunk ? (size_t)left : sizeof chunk;
		ssize_t n = pread(fd, chunk, want, (off_t)hdr->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shorter than its size */
		int rc = buf_append(hdr, chunk, (size_t)n);
		if (rc < 0)
			return rc == -ENOSPC ? -EFBIG : rc;
	}
}

/* The body: fd from `off` to `size`, appended to out (kernel-side where it
 * can, else through a buffer). */
static int rspamd_copy_body(int fd, uint64_t off, uint64_t size, int out)
{
	loff_t in_off = (loff_t)off;
	while ((uint64_t)in_off < size) {
		size_t want = size - (uint64_t)in_off > RSPAMD_REWRITE_CHUNK
		                  ? RSPAMD_REWRITE_CHUNK
		                  : (size_t)(size - (uint64_t)in_off);
		ssize_t n = copy_file_range(fd, &in_off, out, NULL, want, 0);
		if (n > 0)
			continue;
		if (n == 0)
			return -EIO;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -errno;
		break; /* not between these files: copy through memory */
	}
	char *buf = NULL;
	while ((uint64_t)in_off < size) {
		if (buf == NULL && (buf = malloc(RSPAMD_REWRITE_CHUNK)) == NULL)
			return -ENOMEM;
		size_t want = size - (uint64_t)in_off > RSPAMD_REWRITE_CHUNK
		                  ? RSPAMD_REWRITE_CHUNK
		                  : (size_t)(size - (uint64_t)in_off);
		ssize_t n = pread(fd, buf, want, in_off);
		if (n < 0 && errno == EINTR)
			continue;
		int rc = n < 0 ? -errno : n == 0 ? -EIO : rspamd_write_all(out, buf, (size_t)n);
		if (rc < 0) {
			free(buf);
			return rc;
		}
		in_off += n;
	}
	free(buf);
	return 0;
}

int rspamd_rewrite(int dir_fd, const char *name, int fd, uint64_t size, const struct hdredit *e,
                   int *out_fd, uint64_t *out_size)
{
	*out_fd = -1;
	struct buf hdr, edited;
	buf_init(&hdr, HDREDIT_HEADER_MAX + RSPAMD_REWRITE_CHUNK);
	/* Room for what rspamd adds to a block at its longest. */
	buf_init(&edited, 2 * (size_t)HDREDIT_HEADER_MAX);
	size_t hlen = 0;
	bool changed = false;
	int rc = rspamd_read_header(fd, size, &hdr, &hlen);
	if (rc == 0 && hlen > HDREDIT_HEADER_MAX)
		rc = -EFBIG;
	if (rc == 0)
		rc = hdredit_apply(e, hdr.data ? hdr.data : "", hlen, &edited, &changed);
	if (rc < 0 || !changed) {
		buf_free(&hdr);
		buf_free(&edited);
		return rc < 0 ? (rc == -ENOSPC ? -EFBIG : rc) : 0;
	}
	char tmp[SPOOL_ID_MAX + 8];
	snprintf(tmp, sizeof tmp, "hdr.%s", name);
	int out = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	                 SPOOL_FILE_MODE);
	rc = out < 0 ? -errno : 0;
	if (rc == 0)
		rc = rspamd_write_all(out, edited.data, edited.len);
	if (rc == 0)
		rc = rspamd_copy_body(fd, hlen, size, out);
	if (rc == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
		rc = -errno;
	if (rc < 0) {
		if (out >= 0) {
			close(out);
			unlinkat(dir_fd, tmp, 0);
		}
	} else {
		*out_fd = out;
		*out_size = edited.len + (size - hlen);
	}
	buf_free(&hdr);
	buf_free(&edited);
	return rc < 0 ? rc : 1;
}
