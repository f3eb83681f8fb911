/* messages_mime: the MIME routes of the /messages API. See messages_mime.h. */
#include "messages_mime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "httpd_priv.h"
#include "mime.h"
#include "spool_index.h"

/* DELETE /messages removes this many per page of the index. */
#define MESSAGES_DELETE_PAGE 512

/* ---- responses ------------------------------------------------------------------------ */

struct messages_hdr {
	const char *name, *value;
};

/* Queue r (destroyed here) with the headers every answer carries and hs. */
static int messages_mime_queue(struct MHD_Connection *conn, struct MHD_Response *r,
                               const struct messages_hdr *hs, size_t n)
{
	if (r == NULL)
		return MHD_NO;
	enum MHD_Result ok = MHD_YES;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
	    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES ||
	    MHD_add_response_header(r, "Referrer-Policy", "no-referrer") != MHD_YES)
		ok = MHD_NO;
	for (size_t i = 0; ok == MHD_YES && i < n; i++)
		if (hs[i].value && MHD_add_response_header(r, hs[i].name, hs[i].value) != MHD_YES)
			ok = MHD_NO;
	if (ok == MHD_YES)
		ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ok;
}

/* Open message `id` through GMime: 0 with *m (NULL when GMime cannot parse
 * it), or -1 with *err the answer already queued (404 or 500). */
static int messages_mime_load(struct httpd *h, struct MHD_Connection *conn, const char *id,
                              struct mime **m, enum MHD_Result *err)
{
	int fd = -1;
	int rc = messages_mime_open(h->spool, id, NULL, &fd);
	if (rc < 0) {
		*err = rc == -ENOENT
		           ? httpd_error(conn, MHD_HTTP_NOT_FOUND, "no such message", NULL, NULL)
		           : httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, strerror(-rc), NULL,
		                         NULL);
		return -1;
	}
	*m = mime_open_fd(fd);
	return 0;
}

static int messages_mime_part(struct httpd *h, struct MHD_Connection *conn, const char *id,
                              const char *part)
{
	struct mime *m;
	enum MHD_Result err;
	if (messages_mime_load(h, conn, id, &m, &err) < 0)
		return err;
	bool parsed = m != NULL;
	int out = m ? mime_scratch_fd(spool_tmp_fd(h->spool)) : -1;
	struct mime_part_info pi;
	int64_t size = out >= 0 ? mime_part_write(m, part, out, &pi) : -ENOMEM;
	mime_free(m);
	if (size < 0) {
		if (out >= 0)
			close(out);
		if (size == -ENOENT || !parsed)
			return httpd_error(conn, MHD_HTTP_NOT_FOUND, "no such part", NULL, NULL);
		return httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot decode the part",
		                   NULL, NULL);
	}
	/* RFC 6266 4.3: filename for old clients, filename* (RFC 8187) for the rest. */
	char disp[1200] = "attachment";
	if (pi.attachment && pi.filename) {
		char enc[700], ascii[256];
		mime_filename_params(pi.filename, enc, sizeof enc, ascii, sizeof ascii);
		snprintf(disp, sizeof disp, "attachment; filename=\"%s\"; filename*=UTF-8''%s",
		         ascii, enc);
	}
	struct messages_hdr hs[] = {
	    {MHD_HTTP_HEADER_CONTENT_TYPE, pi.content_type},
	    {MHD_HTTP_HEADER_CONTENT_DISPOSITION, pi.attachment ? disp : NULL},
	    /* A text/html part opened on its own must not run either. */
	    {"Content-Security-Policy", MESSAGES_HTML_CSP},
	};
	mime_part_info_free(&pi);
	/* libmicrohttpd owns the descriptor from here and reads it from offset 0. */
	struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)size, out);
	if (r == NULL)
		close(out);
	return messages_mime_queue(conn, r, hs, sizeof hs / sizeof hs[0]);
}

static int messages_mime_html(struct httpd *h, struct MHD_Connection *conn, const char *id)
{
	struct mime *m;
	enum MHD_Result err;
	if (messages_mime_load(h, conn, id, &m, &err) < 0)
		return err;
	size_t len = 0;
	char *html = m ? mime_html(m, &len) : NULL;
	mime_free(m);
	if (html == NULL)
		return len ? httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory",
		                         NULL, NULL)
		           : httpd_error(conn, MHD_HTTP_NOT_FOUND, "no HTML part", NULL, NULL);
	const char *remote = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "remote");
	bool allow_remote = remote && strcmp(remote, "1") == 0;
	struct messages_hdr hs[] = {
	    {MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8"},
	    {"Content-Security-Policy",
	     allow_remote ? MESSAGES_HTML_CSP_REMOTE : MESSAGES_HTML_CSP},
	};
	struct MHD_Response *r = MHD_create_response_from_buffer(len, html, MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		free(html);
	return messages_mime_queue(conn, r, hs, sizeof hs / sizeof hs[0]);
}

/* Remove every message, a page of the index at a time (newest first); a
 * message found gone leaves the index. Bounded: each round removes what it
 * finds, and the rounds are the messages there were at the start plus one
 * page's worth of arrivals. */
static int messages_mime_delete_all(struct spool *sp)
{
	if (sp == NULL)
		return 0;
	struct spool_index *ix = spool_get_index(sp);
	struct spool_index_item *items = malloc(MESSAGES_DELETE_PAGE * sizeof *items);
	if (items == NULL)
		return -ENOMEM;
	size_t rounds = spool_index_total(ix, NULL) / MESSAGES_DELETE_PAGE + 2;
	int rc = 0;
	for (size_t round = 0; rc == 0 && round < rounds; round++) {
		size_t n = 0, total = 0;
		spool_index_page(ix, NULL, 0, MESSAGES_DELETE_PAGE, items, &n, &total);
		if (n == 0)
			break;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			enum spool_state st = items[i].state;
			int r = spool_remove(sp, st, items[i].id);
			if (r == -ENOENT && spool_locate(sp, items[i].id, &st) == 0)
				r = spool_remove(sp, st, items[i].id);
			if (r == -ENOENT)
				spool_index_del(ix, items[i].id);
			else if (r < 0)
				rc = r;
		}
	}
	free(items);
	return rc;
}

bool messages_mime_route(struct httpd *h, struct MHD_Connection *conn, const char *path,
                         const char *method, int *res)
{
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (path[0] == '\0' || strcmp(path, "/") == 0) {
		if (strcmp(method, "DELETE") != 0)
			return false;
		int rc = messages_mime_delete_all(h->spool);
		if (rc < 0) {
			*res = httpd_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, strerror(-rc),
			                   NULL, NULL);
			return true;
		}
		char *empty = malloc(1);
		*res = empty
		           ? httpd_send(conn, MHD_HTTP_NO_CONTENT, HTTPD_JSON, empty, 0, NULL, NULL)
		           : MHD_NO;
		return true;
	}
	if (path[0] != '/')
		return false;
	const char *slash = strchr(path + 1, '/');
	if (slash == NULL)
		return false;
	size_t idlen = (size_t)(slash - path - 1);
	const char *rest = slash + 1;
	bool html = strcmp(rest, "html") == 0;
	bool part = strncmp(rest, "parts/", 6) == 0 && rest[6] != '\0';
	if ((!html && !part) || idlen == 0 || idlen >= SPOOL_ID_MAX)
		return false;
	if (!get) {
		*res = httpd_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		                   MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		return true;
	}
	char id[SPOOL_ID_MAX];
	memcpy(id, path + 1, idlen);
	id[idlen] = '\0';
	*res = html ? messages_mime_html(h, conn, id) : messages_mime_part(h, conn, id, rest + 6);
	return true;
}
