/* listener: one uv_tcp_t per endpoint, and what keeps it accepting (issue 12).
 *
 * libuv stops polling a listener until uv_accept() takes the connection it
 * accepted, and after an accept error it calls us again at once (the loop in
 * uv__server_io). So a connection is always taken, into a spare handle when
 * there is no memory for a session; an error marks the listener not ready; a
 * socket that stopped listening (or errors without end) is closed rather than
 * spun on, and the readiness probe listens on the endpoint anew. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

/* The kernel's accept queue; libuv caps it at SOMAXCONN anyway. */
#define LISTENER_BACKLOG 511
/* Accept errors in a row (no connection between them) taken as lasting: the
 * handle is closed, so the loop is not spun by libuv's retries. */
#define LISTENER_ERRORS_MAX 64

static void listener_on_connection(uv_stream_t *server, int status);

static void listener_on_close(uv_handle_t *h)
{
	(void)h;
}

static void listener_on_failed_close(uv_handle_t *h)
{
	struct listener *l = h->data;
	l->closing = false;
}

/* The socket still listens (SO_ACCEPTCONN): a cheap, non-blocking check. */
static bool listener_accepting(struct listener *l)
{
	uv_os_fd_t fd;
	int v = 0;
	socklen_t len = sizeof v;
	return uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0 &&
	       getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v != 0;
}

/* Each listener's state and error for /status, and the first failing one named
 * for /readyz. */
static void listener_publish(struct server *srv)
{
	struct stats *st = &srv->stats;
	stats_lock(st);
	st->c.listener_error[0] = '\0';
	for (size_t i = 0; i < srv->nlisteners && i < st->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		struct stats_listener *sl = &st->listeners[i];
		sl->error[0] = '\0';
		if (l->err == 0) {
			sl->state = l->open ? "listening" : "closed";
			continue;
		}
		sl->state = "error";
		snprintf(sl->error, sizeof sl->error, "%s", strerror(-l->err));
		if (st->c.listener_error[0] == '\0')
			snprintf(st->c.listener_error, sizeof st->c.listener_error,
			         "listener %s not listening: %s", l->ep->text, sl->error);
	}
	stats_unlock(st);
}

/* An accept error: not ready until a probe finds the listener well again. */
static void listener_fail(struct listener *l, int status)
{
	l->err = status;
	l->err_new = true;
	if (l->open && (++l->errors_in_row >= LISTENER_ERRORS_MAX || !listener_accepting(l))) {
		log_error("listener %s stopped accepting (%s): closed, listening again shortly",
		          l->ep->text, strerror(-status));
		l->open = false;
		l->closing = true;
		l->accept_waiting = false; /* closing the handle closes that connection */
		uv_close((uv_handle_t *)&l->tcp, listener_on_failed_close);
	}
	listener_publish(l->srv);
}

static void listener_on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	if (status < 0) {
		if (l->errors_in_row == 0)
			log_warn("accept on %s failed: %s", l->ep->text, uv_strerror(status));
		listener_fail(l, status);
		return;
	}
	l->errors_in_row = 0;
	session_accept(l);
}

/* Bind and listen on l's endpoint; l->open once the handle exists. */
static int listener_listen(struct listener *l)
{
	int rc = uv_tcp_init(l->srv->loop, &l->tcp);
	if (rc < 0)
		return rc;
	l->open = true;
	l->tcp.data = l;
	/* "::" must be IPv6-only so that "0.0.0.0, ::" are two listeners
	 * (SPEC 2); for specific IPv6 addresses it changes nothing. */
	unsigned flags = l->ep->family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
	rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->ep->addr, flags);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, LISTENER_BACKLOG, listener_on_connection);
	return rc;
}

/* Bind and listen on every endpoint. Any failure closes the listeners already
 * opened (so nothing is left half-open) and names the endpoint in err. */
int listener_open_all(struct server *srv, char *err, size_t errlen)
{
	srv->nlisteners = srv->eps->n;
	srv->listeners = calloc(srv->nlisteners ? srv->nlisteners : 1, sizeof *srv->listeners);
	if (srv->listeners == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		l->srv = srv;
		l->ep = &srv->eps->v[i];
		l->index = i;
		/* SPEC 7: a port in SMTPD_PROXY_PORTS makes every listener on it a
		 * PROXY listener, whatever its address. */
		const char *cursor = srv->cfg->proxy_ports;
		for (unsigned port; (port = config_port_list_next(&cursor)) != 0;)
			l->proxy |= port == l->ep->port;
		int rc = listener_listen(l);
		if (rc < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s", l->ep->text,
			         strerror(-rc));
			listener_close_all(srv);
			return rc;
		}
	}
	stats_lock(&srv->stats);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		srv->stats.listeners[i].state = "listening";
		srv->stats.listeners[i].proxy = srv->listeners[i].proxy;
	}
	srv->stats.c.listeners_bound = true;
	stats_unlock(&srv->stats);
	for (size_t i = 0; i < srv->nlisteners; i++)
		log_info("listening on %s%s", srv->listeners[i].ep->text,
		         srv->listeners[i].proxy ? " (PROXY protocol)" : "");
	return 0;
}

void listener_close_all(struct server *srv)
{
	stats_lock(&srv->stats);
	for (size_t i = 0; i < srv->nlisteners && i < srv->stats.nlisteners; i++) {
		srv->stats.listeners[i].state = "closed";
		srv->stats.listeners[i].error[0] = '\0';
	}
	srv->stats.c.listeners_bound = false;
	srv->stats.c.listener_error[0] = '\0';
	stats_unlock(&srv->stats);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		l->err = 0;
		l->accept_waiting = false;
		if (l->open) {
			l->open = false;
			uv_close((uv_handle_t *)&l->tcp, listener_on_close);
		}
	}
}

void listener_probe(struct server *srv)
{
	if (srv->draining)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		if (!l->open && !l->closing && l->err != 0) {
			int rc = listener_listen(l);
			if (rc < 0) {
				if (l->open) {
					l->open = false;
					l->closing = true;
					uv_close((uv_handle_t *)&l->tcp, listener_on_failed_close);
				}
				l->err = rc;
				l->err_new = true;
			} else {
				l->errors_in_row = 0;
				log_info("listening again on %s", l->ep->text);
			}
		} else if (l->open && !listener_accepting(l)) {
			listener_fail(l, -EINVAL);
		}
		/* An error the previous probe saw, and none since: forgotten. */
		if (l->open && !l->err_new)
			l->err = 0;
		l->err_new = false;
	}
	listener_publish(srv);
}

/* MAILPORT_TEST_FAIL_ACCEPT_ALLOC exists only in test builds: the sanitizer
 * builds the test suite runs, or -DMAILPORT_TEST_HOOKS. */
#if defined(MAILPORT_TEST_HOOKS) || defined(__SANITIZE_ADDRESS__)
void *listener_session_alloc(size_t size)
{
	static long fail = -1;
	if (fail < 0) {
		const char *e = getenv("MAILPORT_TEST_FAIL_ACCEPT_ALLOC");
		fail = e ? strtol(e, NULL, 10) : 0;
		if (fail > 0)
			log_warn("test hook: the next %ld session allocation(s) fail "
			         "(MAILPORT_TEST_FAIL_ACCEPT_ALLOC)",
			         fail);
	}
	if (fail > 0) {
		fail--;
		return NULL;
	}
	return calloc(1, size);
}
#else
void *listener_session_alloc(size_t size)
{
	return calloc(1, size);
}
#endif

static void listener_on_spare_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	l->spare_busy = false;
	if (l->accept_waiting) {
		l->accept_waiting = false;
		if (l->open)
			session_accept(l);
	}
}

void listener_refuse_oom(struct listener *l)
{
	/* The spare still closes the previous one: libuv keeps this connection
	 * (and stops polling) until uv_accept, which the close callback calls. */
	if (l->spare_busy) {
		l->accept_waiting = true;
		return;
	}
	struct server *srv = l->srv;
	uv_tcp_init(srv->loop, &l->spare); /* no socket, no allocation */
	l->spare.data = l;
	l->spare_busy = true;
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&l->spare) == 0)
		stats_refusal(&srv->stats, STATS_REFUSED_OUT_OF_MEMORY);
	uv_close((uv_handle_t *)&l->spare, listener_on_spare_closed);
	log_warn("out of memory: connection on %s closed before its greeting", l->ep->text);
}
