/* server: the loop, its signals, the heartbeat and the drain (SPEC 7). */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "log.h"
#include "spool.h"

static void server_on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

/* The last session is gone after a drain began: close our own handles so the
 * loop ends and server_run returns. */
static void server_finish(struct server *srv)
{
	uv_close((uv_handle_t *)&srv->heartbeat, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->grace, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sigterm, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sigint, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sighup, server_on_handle_closed);
}

void server_session_gone(struct server *srv)
{
	srv->nsessions--;
	if (srv->draining && srv->nsessions == 0)
		server_finish(srv);
}

static void server_drain_all(struct server *srv, bool force)
{
	struct session *s = srv->sessions;
	while (s) {
		/* session_drain may unlink s: take the next one first. */
		struct session *next = session_next(s);
		session_drain(s, force);
		s = next;
	}
}

static void server_on_grace(uv_timer_t *t)
{
	struct server *srv = t->data;
	log_warn("shutdown grace period over, closing %llu session(s)",
	         (unsigned long long)srv->nsessions);
	srv->grace_over = true;
	server_drain_all(srv, true);
}

static void server_on_signal(uv_signal_t *h, int signum)
{
	struct server *srv = h->data;
	if (srv->draining) {
		/* A second SIGTERM shortens the wait. */
		if (!srv->grace_over) {
			log_warn("second %s: closing all sessions now", strsignal(signum));
			srv->grace_over = true;
			uv_timer_stop(&srv->grace);
			server_drain_all(srv, true);
		}
		return;
	}
	log_info("%s received: draining %llu session(s), grace %llus", strsignal(signum),
	         (unsigned long long)srv->nsessions, (unsigned long long)srv->cfg->shutdown_grace);
	srv->draining = true;
	listener_close_all(srv);
	stats_lock(&srv->stats);
	srv->stats.c.draining = true;
	stats_unlock(&srv->stats);
	if (srv->nsessions == 0) {
		server_finish(srv);
		return;
	}
	uv_timer_start(&srv->grace, server_on_grace, srv->cfg->shutdown_grace * 1000, 0);
	server_drain_all(srv, false);
}

/* SIGHUP is the reload signal (SPEC 6: the TLS certificate). Until there is
 * something to reload it must at least not kill the service, which is what the
 * default action would do to a container's PID 1 or a daemon under a supervisor. */
static void server_on_hup(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	log_info("SIGHUP received: nothing to reload");
}

static void server_on_heartbeat(uv_timer_t *t)
{
	struct server *srv = t->data;
	stats_beat(&srv->stats);
}

static int server_start_http(struct server *srv, char *err, size_t errlen)
{
	if (strcmp(srv->cfg->http, "off") == 0)
		return 0;
	static struct endpoint http_ep;
	if (endpoint_parse_hostport(srv->cfg->http, &http_ep) < 0) {
		snprintf(err, errlen, "SMTPD_HTTP: \"%s\" is not address:port", srv->cfg->http);
		return -EINVAL;
	}
	struct httpd_options opt = {
	    .bind = &http_ep,
	    .version = MAILPORT_VERSION,
	    .token = srv->cfg->http_token,
	    .stats = &srv->stats,
	};
	int rc = httpd_start(&opt, &srv->httpd, err, errlen);
	if (rc == 0)
		log_info("HTTP side port on %s", http_ep.text);
	return rc;
}

int server_run(const struct config *cfg, const struct endpoint_list *eps, char *err, size_t errlen)
{
	struct server srv;
	memset(&srv, 0, sizeof srv);
	srv.cfg = cfg;
	srv.eps = eps;
	uv_loop_t loop;
	int rc = uv_loop_init(&loop);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the event loop: %s", uv_strerror(rc));
		return 1;
	}
	srv.loop = &loop;
	/* A peer that closes while we write must give EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	int code = 1;
	if (stats_init(&srv.stats, cfg->hostname, eps, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out_stats;
	}
	if (cfg->deliver == CONFIG_DELIVER_MAILDIR &&
	    spool_open(cfg->spool, cfg->hostname, &srv.spool, err, errlen) < 0)
		goto out_stats;
	if (listener_open_all(&srv, err, errlen) < 0)
		goto out_listeners;
	if (server_start_http(&srv, err, errlen) < 0) {
		listener_close_all(&srv);
		goto out_listeners;
	}

	uv_timer_init(&loop, &srv.heartbeat);
	srv.heartbeat.data = &srv;
	uv_timer_start(&srv.heartbeat, server_on_heartbeat, STATS_HEARTBEAT_MS, STATS_HEARTBEAT_MS);
	uv_timer_init(&loop, &srv.grace);
	srv.grace.data = &srv;
	uv_signal_init(&loop, &srv.sigterm);
	srv.sigterm.data = &srv;
	uv_signal_start(&srv.sigterm, server_on_signal, SIGTERM);
	uv_signal_init(&loop, &srv.sigint);
	srv.sigint.data = &srv;
	uv_signal_start(&srv.sigint, server_on_signal, SIGINT);
	uv_signal_init(&loop, &srv.sighup);
	srv.sighup.data = &srv;
	uv_signal_start(&srv.sighup, server_on_hup, SIGHUP);

	log_info("mailport %s ready: %zu listener(s), deliver=%s, spool=%s", MAILPORT_VERSION,
	         srv.nlisteners, cfg->deliver == CONFIG_DELIVER_DISCARD ? "discard" : "maildir",
	         cfg->spool);
	uv_run(&loop, UV_RUN_DEFAULT);
	log_info("mailport stopped");
	code = 0;

	httpd_stop(srv.httpd);
out_listeners:
	/* Let the close callbacks of whatever was opened run. */
	uv_run(&loop, UV_RUN_DEFAULT);
	free(srv.listeners);
	spool_close(srv.spool);
out_stats:
	stats_destroy(&srv.stats);
	uv_loop_close(&loop);
	return code;
}
