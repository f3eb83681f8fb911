/* httpd_ui: the web UI's files (issue 17). See httpd_ui.h. */
#include "httpd_ui.h"

#include <string.h>

#include "httpd_priv.h"

bool httpd_ui_path(const char *path, size_t len)
{
	return (len == 1 && path[0] == '/') || (len > 4 && memcmp(path, "/ui/", 4) == 0);
}

const struct httpd_ui_asset *httpd_ui_find(const char *path, size_t len)
{
	static const char index[] = "/ui/index.html";
	if (len == 1 && path[0] == '/') {
		path = index;
		len = sizeof index - 1;
	}
	for (const struct httpd_ui_asset *a = httpd_ui_assets; a->path != NULL; a++)
		if (strlen(a->path) == len && memcmp(a->path, path, len) == 0)
			return a;
	return NULL;
}

enum MHD_Result httpd_ui_serve(struct MHD_Connection *conn, bool on, const char *path, size_t len,
                               const char *method)
{
	const struct httpd_ui_asset *a = on ? httpd_ui_find(path, len) : NULL;
	if (a == NULL)
		return httpd_error(conn, MHD_HTTP_NOT_FOUND, "not found", NULL, NULL);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return httpd_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
		                   MHD_HTTP_HEADER_ALLOW, HTTPD_ALLOW);
	/* Static bytes in the binary: no copy. */
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	enum MHD_Result ok = MHD_YES;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type) != MHD_YES ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
	    MHD_add_response_header(r, "Content-Security-Policy", HTTPD_UI_CSP) != MHD_YES ||
	    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES ||
	    MHD_add_response_header(r, "Referrer-Policy", "no-referrer") != MHD_YES)
		ok = MHD_NO;
	if (ok == MHD_YES)
		ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ok;
}
