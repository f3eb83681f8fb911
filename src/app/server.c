/* server: the loop, its signals, the heartbeat and the drain (SPEC 7). */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "auth_limit.h"
#include "deliver.h"
#include "fdlimit.h"
#include "httpd.h"
#include "log.h"
#include "policy_load.h"
#include "readiness.h"
#include "retention.h"
#include "reaper.h"
#include "spool.h"

static void server_on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

/* The last session is gone after a drain began: close our own handles so the
 * loop ends and server_run returns. */
static void server_finish(struct server *srv)
{
	/* Filters, webhook requests, curl's handles: nothing may keep the loop. */
	deliver_stop(srv->deliver);
	readiness_stop(srv);
	retention_stop(srv->retention);
	uv_close((uv_handle_t *)&srv->heartbeat, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->grace, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sigterm, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sigint, server_on_handle_closed);
	uv_close((uv_handle_t *)&srv->sighup, server_on_handle_closed);
	reaper_stop();
	policy_load_stop(srv->policy_load);
	if (srv->tls_watching) {
		srv->tls_watching = false;
		uv_close((uv_handle_t *)&srv->tls_watch, server_on_handle_closed);
	}
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
	/* Running filters and synchronous posts get their 451 now. */
	deliver_stop(srv->deliver);
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
			deliver_stop(srv->deliver);
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

/* ---------------------------------------------------- TLS and AUTH (SPEC 6) */

/* How often the certificate files are stat'ed, so that a rotation (cert-manager
 * swapping a Kubernetes secret, a renewed certificate) is picked up without a
 * signal: two stat() calls, made on the thread pool. */
#define SERVER_TLS_WATCH_MS 3000

static const char *const server_tls_names[] = {
    [LISTENER_TLS_NONE] = "none",
    [LISTENER_TLS_STARTTLS] = "starttls",
    [LISTENER_TLS_IMPLICIT] = "implicit",
};

static enum listener_tls server_listener_tls(const struct config *cfg, const struct endpoint *ep)
{
	const char *cursor = cfg->tls_ports;
	for (unsigned port; (port = config_port_list_next(&cursor)) != 0;)
		if (port == ep->port)
			return LISTENER_TLS_IMPLICIT;
	return cfg->tls != CONFIG_MODE_OFF ? LISTENER_TLS_STARTTLS : LISTENER_TLS_NONE;
}

static void server_tls_reload(struct server *srv, const char *why);

/* A reload came back: the new context serves new handshakes; sessions that
 * started with the old one keep it (it is freed with the last of them). A
 * refused file leaves the old certificate in place. */
static void server_tls_loaded(void *ctx, struct tlsio_ctx *c, const char *err)
{
	struct server *srv = ctx;
	srv->tls_reloading = false;
	if (c == NULL) {
		srv->tls_refused = srv->tls_attempt;
		srv->tls_has_refused = true;
		log_error("TLS certificate not reloaded, the old one stays in use: %s", err);
	} else {
		tlsio_ctx_free(srv->tls);
		srv->tls = c;
		srv->tls_has_refused = false;
		log_info("TLS certificate reloaded: %s", tlsio_ctx_describe(c));
	}
	if (srv->tls_reload_again) {
		srv->tls_reload_again = false;
		server_tls_reload(srv, "asked again meanwhile");
	}
}

/* Read the certificate and key again on the thread pool (file I/O and PEM
 * parsing stay off the loop). One reload at a time. */
static void server_tls_reload(struct server *srv, const char *why)
{
	if (srv->tls == NULL || tlsio_ctx_self_signed(srv->tls))
		return;
	if (srv->tls_reloading) {
		srv->tls_reload_again = true;
		return;
	}
	/* The files' stamp (two stat() calls) is taken on the thread pool too. */
	int rc = tlsio_ctx_reload_async(srv->loop, &srv->tls_settings, &srv->tls_attempt,
	                                server_tls_loaded, srv);
	if (rc < 0) {
		log_error("TLS certificate not reloaded: %s", uv_strerror(rc));
		return;
	}
	srv->tls_reloading = true;
	log_info("reloading the TLS certificate (%s)", why);
}

/* stat() is file-system work, and a secret volume may sit on a slow mount: it
 * runs on the thread pool, never on the loop. */
static void server_tls_stat_work(uv_work_t *req)
{
	struct server *srv = req->data;
	tlsio_stamp_get(&srv->tls_settings, &srv->tls_stat);
}

static void server_tls_stat_done(uv_work_t *req, int status)
{
	struct server *srv = req->data;
	srv->tls_stating = false;
	if (status < 0 || srv->draining || srv->tls == NULL || srv->tls_reloading)
		return;
	/* Unchanged, or the very files a reload already refused. */
	if (tlsio_stamp_equal(&srv->tls_stat, tlsio_ctx_stamp(srv->tls)) ||
	    (srv->tls_has_refused && tlsio_stamp_equal(&srv->tls_stat, &srv->tls_refused)))
		return;
	server_tls_reload(srv, "the certificate files changed");
}

static void server_on_tls_watch(uv_timer_t *t)
{
	struct server *srv = t->data;
	if (srv->tls == NULL || srv->tls_reloading || srv->tls_stating)
		return;
	srv->tls_stat_work.data = srv;
	if (uv_queue_work(srv->loop, &srv->tls_stat_work, server_tls_stat_work,
	                  server_tls_stat_done) == 0)
		srv->tls_stating = true;
}

static void server_users_loaded(void *ctx, struct auth_users *u, const char *err)
{
	struct server *srv = ctx;
	srv->users_reloading = false;
	if (u == NULL) {
		log_error("AUTH users not reloaded, the old ones stay in use: %s", err);
		return;
	}
	/* Checks that are running hold their own reference to the old table. */
	auth_users_unref(srv->users);
	srv->users = u;
	log_info("AUTH users reloaded: %zu user(s) from %s", auth_users_count(u),
	         srv->cfg->auth_users_file);
}

/* SIGHUP reloads the TLS certificate and key and the AUTH users file, both on
 * the thread pool, without touching live sessions. (The default action would
 * kill a container's PID 1 or a daemon under a supervisor.) */
static void server_on_hup(uv_signal_t *h, int signum)
{
	(void)signum;
	struct server *srv = h->data;
	/* SPEC 8: the recipients file too (its own line says how that went). */
	bool policy = policy_load_reload(srv->policy_load, "SIGHUP");
	bool tls = srv->tls != NULL && !tlsio_ctx_self_signed(srv->tls);
	if (!tls && srv->users == NULL) {
		if (!policy)
			log_info("SIGHUP received: nothing to reload");
		return;
	}
	log_info("SIGHUP received: reloading%s%s%s", tls ? " the TLS certificate" : "",
	         tls && srv->users ? " and" : "", srv->users ? " the AUTH users" : "");
	if (tls)
		server_tls_reload(srv, "SIGHUP");
	if (srv->users != NULL && !srv->users_reloading) {
		int rc = auth_users_load_async(srv->loop, srv->cfg->auth_users_file,
		                               server_users_loaded, srv);
		if (rc < 0)
			log_error("AUTH users not reloaded: %s", uv_strerror(rc));
		else
			srv->users_reloading = true;
	}
}

/* Start-up, before anything is bound: the TLS context (from the files, or a
 * self-signed certificate) when a listener speaks TLS, and the AUTH users.
 * Returns 0, or the exit code with a one-line message in err. */
static int server_security_init(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	const struct endpoint_list *eps = srv->eps;
	bool tls = false;
	for (size_t i = 0; i < eps->n; i++)
		tls |= server_listener_tls(cfg, &eps->v[i]) != LISTENER_TLS_NONE;
	if (tls) {
		srv->tls_addresses = calloc(eps->n ? eps->n : 1, sizeof *srv->tls_addresses);
		if (srv->tls_addresses == NULL) {
			snprintf(err, errlen, "out of memory");
			return 1;
		}
		for (size_t i = 0; i < eps->n; i++)
			srv->tls_addresses[i] = eps->v[i].address;
		srv->tls_settings = (struct tlsio_settings){
		    .cert_file = cfg->tls_cert,
		    .key_file = cfg->tls_key,
		    .ciphers = cfg->tls_ciphers,
		    .min_version = cfg->tls_min_version,
		    .hostname = cfg->hostname,
		    .addresses = srv->tls_addresses,
		    .naddresses = eps->n,
		};
		int rc = tlsio_ctx_new(&srv->tls_settings, &srv->tls, err, errlen);
		if (rc < 0)
			return rc == TLSIO_ERR_CONFIG ? 2 : 1;
	}
	if (cfg->auth != CONFIG_MODE_OFF && cfg->auth != CONFIG_AUTH_ANY &&
	    auth_users_load(cfg->auth_users_file, &srv->users, err, errlen) < 0)
		return 1;
	if (cfg->auth != CONFIG_MODE_OFF && cfg->auth != CONFIG_AUTH_ANY &&
	    cfg->auth_max_failures > 0) {
		srv->auth_limit =
		    auth_limit_new((unsigned)cfg->auth_max_failures, AUTH_LIMIT_ENTRIES);
		if (srv->auth_limit == NULL) {
			snprintf(err, errlen, "out of memory");
			return 1;
		}
	}
	if (cfg->auth == CONFIG_AUTH_ANY)
		log_warn("SMTPD_AUTH=any: every AUTH succeeds with any user name and password; "
		         "for test catchers only, never on a port the Internet reaches");
	/* Logged once both worked: a start-up failure is one line (SPEC 1). */
	if (srv->tls != NULL && tlsio_ctx_self_signed(srv->tls))
		log_warn("TLS: no SMTPD_TLS_CERT given: generated a self-signed ECDSA P-256 "
		         "certificate (%s); clients cannot verify it",
		         tlsio_ctx_describe(srv->tls));
	else if (srv->tls != NULL)
		log_info("TLS: certificate from %s: %s", cfg->tls_cert,
		         tlsio_ctx_describe(srv->tls));
	if (srv->tls == NULL && cfg->tls_cert[0] != '\0')
		log_warn("SMTPD_TLS_CERT is set, but no listener speaks TLS (SMTPD_TLS is off and "
		         "SMTPD_TLS_PORTS empty): it is not used");
	if (srv->users != NULL) {
		log_info("AUTH: %zu user(s) from %s", auth_users_count(srv->users),
		         cfg->auth_users_file);
		if (auth_users_count(srv->users) == 0)
			log_warn("AUTH: %s holds no user, so every AUTH fails",
			         cfg->auth_users_file);
	}
	return 0;
}

static void server_security_free(struct server *srv)
{
	tlsio_ctx_free(srv->tls);
	srv->tls = NULL;
	auth_users_unref(srv->users);
	srv->users = NULL;
	auth_limit_free(srv->auth_limit);
	srv->auth_limit = NULL;
	free(srv->tls_addresses);
	srv->tls_addresses = NULL;
}

/* Also measures the loop's lag (issue 12): how much later than
 * STATS_HEARTBEAT_MS after the previous beat this one runs. Whatever held the
 * loop (a blocking call, a long callback, CPU starvation) shows up here. */
static void server_on_heartbeat(uv_timer_t *t)
{
	struct server *srv = t->data;
	uint64_t now = uv_hrtime();
	uint64_t due = srv->beat_last_ns + (uint64_t)STATS_HEARTBEAT_MS * 1000000u;
	if (srv->beat_last_ns != 0)
		stats_observe_lag(&srv->stats, now > due ? (now - due) / 1000u : 0, stats_now_ms());
	srv->beat_last_ns = now;
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
	    .allowed_hosts = srv->cfg->http_allowed_hosts,
	    .stats = &srv->stats,
	    .spool = srv->spool,
	    .max_event_clients = (size_t)srv->cfg->http_max_event_clients,
	    .ui = srv->cfg->http_ui,
	    .retention_max_messages = srv->cfg->retention_max_messages,
	    .retention_max_age = srv->cfg->retention_max_age,
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
	/* SPEC 7: the soft RLIMIT_NOFILE up to the hard one, and no more
	 * connections than there are descriptors for (one per listener kept). */
	struct fdlimit fl;
	char fdwarn[512];
	fdlimit_setup(cfg->max_connections, eps->n, &fl, fdwarn, sizeof fdwarn);
	if (fdwarn[0] != '\0')
		log_warn("%s", fdwarn);
	srv.max_connections = fl.max_connections;

	int code = 1;
	/* Validated by config_load with the same parser: this does not fail. */
	char why[256];
	if (proxy_proto_cidr_parse(cfg->proxy_trusted, srv.proxy_trusted, PROXY_PROTO_CIDRS_MAX,
	                           &srv.nproxy_trusted, why, sizeof why) < 0) {
		snprintf(err, errlen, "SMTPD_PROXY_TRUSTED: %s", why);
		uv_loop_close(&loop);
		return 1;
	}
	/* SPEC 3: each listener's "tls" in /status. */
	const char **tls_modes = calloc(eps->n ? eps->n : 1, sizeof *tls_modes);
	for (size_t i = 0; tls_modes != NULL && i < eps->n; i++)
		tls_modes[i] = server_tls_names[server_listener_tls(cfg, &eps->v[i])];
	if (tls_modes == NULL || stats_init(&srv.stats, cfg->hostname, eps, tls_modes) < 0) {
		free(tls_modes);
		snprintf(err, errlen, "out of memory");
		goto out_stats;
	}
	free(tls_modes);
	srv.stats.c.max_connections = fl.max_connections;
	srv.stats.c.nofile_limit = fl.nofile;
	int sec = server_security_init(&srv, err, errlen);
	if (sec != 0) {
		code = sec;
		goto out_stats;
	}
	/* SPEC 8: the recipient policy, read before anything listens; a file that
	 * cannot be read or parsed is a configuration error. */
	if (policy_load_start(&loop, cfg, &srv.stats, &srv.policy, &srv.policy_load, err, errlen) <
	    0) {
		code = 2;
		goto out_stats;
	}
	if (cfg->deliver == CONFIG_DELIVER_MAILDIR &&
	    spool_open(cfg->spool, cfg->hostname, &srv.spool, err, errlen) < 0)
		goto out_stats;
	if (listener_open_all(&srv, err, errlen) < 0)
		goto out_listeners;
	for (size_t i = 0; i < srv.nlisteners; i++) {
		srv.listeners[i].tls = server_listener_tls(cfg, srv.listeners[i].ep);
		if (srv.listeners[i].tls == LISTENER_TLS_IMPLICIT)
			log_info("TLS from the first byte on %s (SMTPD_TLS_PORTS)",
			         srv.listeners[i].ep->text);
	}
	if (server_start_http(&srv, err, errlen) < 0) {
		listener_close_all(&srv);
		goto out_listeners;
	}
	struct deliver_hooks hooks = session_deliver_hooks;
	hooks.owner = &srv;
	int drc = deliver_new(&loop, cfg, srv.spool, &srv.stats, &hooks, &srv.deliver, err, errlen);
	if (drc < 0) {
		if (drc == -2) /* SPEC 9: the NATS server's max_payload is too small */
			code = 2;
		deliver_stop(srv.deliver);
		httpd_stop(srv.httpd);
		listener_close_all(&srv);
		goto out_listeners;
	}

	uv_timer_init(&loop, &srv.heartbeat);
	srv.heartbeat.data = &srv;
	uv_timer_start(&srv.heartbeat, server_on_heartbeat, STATS_HEARTBEAT_MS, STATS_HEARTBEAT_MS);
	/* Issue 12: readiness re-probed off the loop, so it recovers by itself. */
	if (readiness_start(&srv) < 0)
		log_warn("out of memory: /readyz is not re-probed (store results still count)");
	if (retention_start(&loop, srv.spool, &srv.stats, cfg->retention_max_messages,
	                    cfg->retention_max_age, &srv.retention) < 0)
		log_warn("out of memory: SMTPD_RETENTION_* not applied");
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
	/* As a container's PID 1, collect the orphans it inherits (reaper.h). */
	if (reaper_start(&loop) < 0)
		log_warn("PID 1: cannot watch SIGCHLD; orphaned processes stay zombies");
	uv_timer_init(&loop, &srv.tls_watch);
	srv.tls_watch.data = &srv;
	srv.tls_watching = true;
	if (srv.tls != NULL && !tlsio_ctx_self_signed(srv.tls))
		uv_timer_start(&srv.tls_watch, server_on_tls_watch, SERVER_TLS_WATCH_MS,
		               SERVER_TLS_WATCH_MS);
	policy_load_watch(srv.policy_load); /* SPEC 8: reload when the file changes */

	log_info("mailport %s ready: %zu listener(s), deliver=%s, spool=%s", MAILPORT_VERSION,
	         srv.nlisteners, cfg->deliver == CONFIG_DELIVER_DISCARD ? "discard" : "maildir",
	         cfg->spool);
	uv_run(&loop, UV_RUN_DEFAULT);
	log_info("mailport stopped");
	code = 0;

	httpd_stop(srv.httpd);
out_listeners:
	/* The AUTH pool's threads are joined (a check never run is answered). */
	auth_stop();
	/* Let the close callbacks of whatever was opened run. */
	uv_run(&loop, UV_RUN_DEFAULT);
	deliver_free(srv.deliver);
	readiness_free(&srv);
	retention_free(srv.retention);
	free(srv.listeners);
	free(srv.client_buckets); /* every chain is empty once the sessions are gone */
	free(srv.id_buckets);
	spool_close(srv.spool);
out_stats:
	server_security_free(&srv);
	policy_load_free(srv.policy_load);
	stats_destroy(&srv.stats);
	uv_loop_close(&loop);
	return code;
}
