#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The kernel's accept queue; libuv caps it at SOMAXCONN anyway. */
#define LISTENER_BACKLOG 511

static void listener_on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	if (status < 0) {
		log_warn("accept on %s failed: %s", l->ep->text, uv_strerror(status));
		return;
	}
	session_accept(l);
}

static void listener_on_close(uv_handle_t *h)
{
	(void)h;
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
		int rc = uv_tcp_init(srv->loop, &l->tcp);
		if (rc < 0)
			goto fail;
		l->open = true;
		l->tcp.data = l;
		/* "::" must be IPv6-only so that "0.0.0.0, ::" are two listeners
		 * (SPEC 2); for specific IPv6 addresses it changes nothing. */
		unsigned flags = l->ep->family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
		rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->ep->addr, flags);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&l->tcp, LISTENER_BACKLOG,
			               listener_on_connection);
		if (rc < 0) {
		fail:
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
	for (size_t i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].open && i < srv->stats.nlisteners)
			srv->stats.listeners[i].state = "closed";
	}
	srv->stats.c.listeners_bound = false;
	stats_unlock(&srv->stats);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		if (l->open) {
			l->open = false;
			uv_close((uv_handle_t *)&l->tcp, listener_on_close);
		}
	}
}
