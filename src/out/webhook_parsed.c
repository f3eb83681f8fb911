/* webhook_parsed: the body of SMTPD_WEBHOOK_FORMAT=parsed. See webhook_parsed.h. */
#include "webhook_parsed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "mime.h"

/* Bytes of a decoded part base64-encoded at a time: a multiple of 3, so the
 * chunks' encodings end to end are the encoding of the whole part. */
#define WEBHOOK_PARSED_CHUNK (3u * 16384)

static int wp_write(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int wp_puts(int fd, const char *s)
{
	return wp_write(fd, s, strlen(s));
}

/* `v` (reference taken) as compact JSON, any value. */
static int wp_json(int fd, json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
	                                JSON_REAL_PRECISION(15))
	            : NULL;
	json_decref(v);
	if (s == NULL)
		return -ENOMEM;
	int rc = wp_puts(fd, s);
	free(s);
	return rc;
}

/* A text or HTML body as a JSON string, or null. */
static int wp_body(int fd, struct mime *m, bool html)
{
	size_t len = 0;
	char *t = m ? mime_body(m, html, &len) : NULL;
	if (t == NULL)
		return len ? -ENOMEM : wp_puts(fd, "null");
	json_t *s = json_stringn(t, len);
	free(t);
	return wp_json(fd, s);
}

/* The decoded part, base64-encoded, through a temporary file of its own. */
static int wp_base64_part(int fd, struct mime *m, const char *part, int dir_fd)
{
	int tmp = mime_scratch_fd(dir_fd);
	if (tmp < 0)
		return tmp;
	struct mime_part_info pi;
	int64_t size = mime_part_write(m, part, tmp, &pi);
	if (size < 0) {
		close(tmp);
		return (int)size;
	}
	mime_part_info_free(&pi);
	unsigned char *in = malloc(WEBHOOK_PARSED_CHUNK);
	unsigned char *out = malloc(WEBHOOK_PARSED_CHUNK / 3 * 4 + 1);
	int rc = in && out ? 0 : -ENOMEM;
	for (int64_t off = 0; rc == 0 && off < size;) {
		size_t want =
		    size - off < WEBHOOK_PARSED_CHUNK ? (size_t)(size - off) : WEBHOOK_PARSED_CHUNK;
		ssize_t r = pread(tmp, in, want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			break;
		}
		if ((size_t)r < want) /* whole groups of 3 only: read the rest first */
			r -= r % 3;
		int n = EVP_EncodeBlock(out, in, (int)r);
		rc = wp_write(fd, out, (size_t)n);
		off += r;
	}
	free(in);
	free(out);
	close(tmp);
	return rc;
}

/* "attachments":[...]: each the metadata of mime_parts_json plus "content". */
static int wp_attachments(int fd, struct mime *m, json_t *atts, int dir_fd)
{
	int rc = wp_puts(fd, "[");
	size_t i;
	json_t *a;
	json_array_foreach(atts, i, a)
	{
		if (rc == 0 && i > 0)
			rc = wp_puts(fd, ",");
		char *meta = rc == 0 ? json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (rc == 0 && meta == NULL)
			rc = -ENOMEM;
		if (rc == 0) {
			/* {"part":...,"disposition":...} without its brace, then content */
			rc = wp_write(fd, meta, strlen(meta) - 1);
			if (rc == 0)
				rc = wp_puts(fd, ",\"content\":\"");
			if (rc == 0)
				rc = wp_base64_part(
				    fd, m, json_string_value(json_object_get(a, "part")), dir_fd);
			if (rc == 0)
				rc = wp_puts(fd, "\"}");
		}
		free(meta);
	}
	return rc == 0 ? wp_puts(fd, "]") : rc;
}

int webhook_parsed_body(int msg_fd, json_t *envelope, int dir_fd, int *out_fd, uint64_t *size)
{
	*out_fd = -1;
	struct mime *m = mime_open_fd(msg_fd); /* owns msg_fd */
	int fd = mime_scratch_fd(dir_fd);
	if (fd < 0) {
		mime_free(m);
		return fd;
	}
	json_t *parts = m ? mime_parts_json(m) : json_pack("{s:[]}", "attachments");
	char *subject = m ? mime_header(m, "Subject") : NULL;
	int rc = parts ? wp_puts(fd, "{\"envelope\":") : -ENOMEM;
	if (rc == 0)
		rc = wp_json(fd, json_incref(envelope));
	if (rc == 0)
		rc = wp_puts(fd, ",\"subject\":");
	if (rc == 0)
		rc = wp_json(fd, subject ? json_string(subject) : json_null());
	if (rc == 0)
		rc = wp_puts(fd, ",\"text\":");
	if (rc == 0)
		rc = wp_body(fd, m, false);
	if (rc == 0)
		rc = wp_puts(fd, ",\"html\":");
	if (rc == 0)
		rc = wp_body(fd, m, true);
	if (rc == 0)
		rc = wp_puts(fd, ",\"attachments\":");
	if (rc == 0)
		rc = wp_attachments(fd, m, json_object_get(parts, "attachments"), dir_fd);
	if (rc == 0)
		rc = wp_puts(fd, "}");
	free(subject);
	json_decref(parts);
	mime_free(m);
	off_t end = rc == 0 ? lseek(fd, 0, SEEK_CUR) : -1;
	if (rc == 0 && end < 0)
		rc = -errno;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out_fd = fd;
	*size = (uint64_t)end;
	return 0;
}
