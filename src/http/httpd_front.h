/* httpd_front: the side port's front door (issue 12).
 *
 * One thread with its own epoll owns the listening socket. It accepts every
 * connection and looks at the request head with MSG_PEEK, consuming nothing:
 *
 *   - GET or HEAD of a health route (/livez, /healthz, /readyz), as soon as its
 *     request line is in: answered here at once ("Connection: close"), from
 *     memory only, so no slow client, no long listing and no disk access can
 *     hold a probe up;
 *   - any other request, once its whole head is in (or HTTPD_FRONT_PEEK bytes
 *     of it): handed to libmicrohttpd with MHD_add_connection(), which reads
 *     it from the first byte;
 *   - a head that is not complete within HTTPD_FRONT_HEAD_MS: 408 and closed;
 *   - a request line with a control octet, raw or percent-encoded: 400 and
 *     closed (a NUL would cut the path short further on).
 *
 * So libmicrohttpd only ever sees clients that have sent their request, and
 * a slow client costs one slot of this table and nothing else. The table is
 * bounded (HTTPD_FRONT_MAX); when it is full, the connection waiting longest is
 * dropped for the new one, so a flood of idle connections cannot lock a probe
 * out. Why a thread of our own rather than libmicrohttpd's thread pool: a pool
 * only spreads the same 256 connection slots over more threads, and a slow
 * client still holds a slot; here it holds nothing libmicrohttpd counts. */
#ifndef MAILPORT_HTTPD_FRONT_H
#define MAILPORT_HTTPD_FRONT_H

#include <stddef.h>

struct MHD_Daemon;
struct httpd_front;

/* Connections waiting for their request head, at most. */
#define HTTPD_FRONT_MAX 1024
/* Time a client has to send its request head (its request line, for a probe). */
#define HTTPD_FRONT_HEAD_MS 5000
/* Bytes of a request head looked at; a longer head goes to libmicrohttpd,
 * which refuses it. */
#define HTTPD_FRONT_PEEK 8192

/* The answer to a health route: status code and a malloc'ed JSON body (with its
 * trailing newline), or -1 when out of memory. Called on the front thread. */
typedef int (*httpd_front_health_fn)(void *ctx, const char *path, char **body, size_t *len);

/* Start the thread on the listening socket lfd (non-blocking, owned from here
 * on, closed by httpd_front_stop even when this fails). Returns 0 or -errno. */
int httpd_front_start(int lfd, struct MHD_Daemon *mhd, httpd_front_health_fn health, void *ctx,
                      struct httpd_front **out);
/* Stop and join the thread, close the listener and every waiting connection.
 * Call before MHD_stop_daemon(). NULL is a no-op. */
void httpd_front_stop(struct httpd_front *f);

/* ---- pure part (unit-tested) ---- */

enum httpd_front_verdict {
	HTTPD_FRONT_WAIT,   /* not enough of the head yet */
	HTTPD_FRONT_HEALTH, /* a GET/HEAD of a health route: answer it here */
	HTTPD_FRONT_PASS,   /* anything else, head complete: to libmicrohttpd */
	HTTPD_FRONT_BAD,    /* a control octet (NUL above all) in the request line, raw or
	                     * percent-encoded: 400 */
};

/* Decide from the first len bytes of a connection. For HEALTH, *head is set
 * when the method is HEAD and the route's path ("/livez", ...) is copied to
 * path (room for 16 bytes). A request line with a query string, or any other
 * form, is not a health route here (libmicrohttpd answers it the same way). */
enum httpd_front_verdict httpd_front_classify(const char *data, size_t len, size_t peek_max,
                                              char path[16], int *head);

#endif
