/* httpd_ui: the web UI at GET / (issue 17, SPEC 3), unless SMTPD_HTTP_UI=off.
 *
 * The files of web/ are compiled into the binary (cmake/embed-web.cmake writes
 * them as C arrays at build time): / is web/index.html, /ui/NAME is web/NAME.
 * Every URL the UI uses is relative ("ui/app.js", "messages", "events"), so it
 * works under any path prefix a reverse proxy puts in front. The UI's own
 * pages carry a Content-Security-Policy that allows only this origin's scripts,
 * styles and connections (no inline script, nothing remote); a message's HTML
 * is shown in a sandboxed iframe from /messages/{id}/html, which has its own,
 * stricter policy. */
#ifndef MAILPORT_HTTPD_UI_H
#define MAILPORT_HTTPD_UI_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

struct httpd_ui_asset {
	const char *path; /* "/ui/app.js" */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
};
/* Ends with an entry whose path is NULL (generated: web_assets.c). */
extern const struct httpd_ui_asset httpd_ui_assets[];

#define HTTPD_UI_CSP                                                                               \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; frame-src 'self'; form-action 'none'; base-uri 'none'; "              \
	"frame-ancestors 'self'"

/* The asset served for path ("/" is /ui/index.html), or NULL. */
const struct httpd_ui_asset *httpd_ui_find(const char *path, size_t len);

/* True when the path is the UI's: "/" or "/ui/...". */
bool httpd_ui_path(const char *path, size_t len);

/* Answer GET/HEAD of a UI path: the file, 404 (unknown file, or on=false:
 * SMTPD_HTTP_UI=off), 405 for other methods. */
enum MHD_Result httpd_ui_serve(struct MHD_Connection *conn, bool on, const char *path, size_t len,
                               const char *method);

#endif
