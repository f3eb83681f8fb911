/* mailport: the only place that prints a fatal error and picks the exit code
 * (SPEC 1): 0 clean shutdown, 2 configuration error, 1 start-up failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "config.h"
#include "endpoint.h"
#include "httpd.h"
#include "log.h"
#include "policy_load.h"
#include "server.h"
#include "version_git.h"

extern char **environ;

/* config_load's warnings wait until the log format is known: with
 * SMTPD_LOG_FORMAT=json every line on stderr is a JSON object (SPEC 7). */
#define MAIN_WARNINGS_MAX 16
static char main_warnings[MAIN_WARNINGS_MAX][512];
static size_t main_nwarnings;

static void main_warn(void *ctx, const char *msg)
{
	(void)ctx;
	if (main_nwarnings < MAIN_WARNINGS_MAX)
		snprintf(main_warnings[main_nwarnings++], sizeof main_warnings[0], "%s", msg);
}

/* One line, as `curl -V` begins: our version and commit, then the libraries
 * as they are at run time (the ones loaded, not the headers built against). */
static void main_print_version(void)
{
	const curl_version_info_data *c = curl_version_info(CURLVERSION_NOW);
	printf("mailport %s (commit %s) libuv/%s libmicrohttpd/%s OpenSSL/%s jansson/%s "
	       "libcurl/%s\n",
	       MAILPORT_VERSION, MAILPORT_GIT_COMMIT, uv_version_string(), MHD_get_version(),
	       OpenSSL_version(OPENSSL_VERSION_STRING), jansson_version_str(),
	       c != NULL ? c->version : "unknown");
}

/* cfg NULL: the configuration did not load, so plain text. */
static void main_flush_warnings(const struct config *cfg)
{
	for (size_t i = 0; i < main_nwarnings; i++) {
		if (cfg != NULL && cfg->log_format == CONFIG_LOG_JSON)
			log_event(CONFIG_LOG_WARN, NULL, main_warnings[i], NULL);
		else
			fprintf(stderr, "mailport: warning: %s\n", main_warnings[i]);
	}
	main_nwarnings = 0;
}

/* The one line of a fatal error (SPEC 1), a JSON object (level error, the same
 * text as msg) once the configuration has said SMTPD_LOG_FORMAT=json. */
static void main_fatal(const struct config *cfg, const char *err)
{
	if (cfg != NULL && cfg->log_format == CONFIG_LOG_JSON)
		log_event(CONFIG_LOG_ERROR, NULL, err, NULL);
	else
		fprintf(stderr, "mailport: %s\n", err);
}

/* The HTTP side port must not take an SMTP listener's address:port. */
static int main_check_http(const struct config *cfg, const struct endpoint_list *eps, char *err,
                           size_t errlen)
{
	if (strcmp(cfg->http, "off") == 0)
		return 0;
	struct endpoint h;
	if (endpoint_parse_hostport(cfg->http, &h) < 0) {
		snprintf(err, errlen, "SMTPD_HTTP: \"%s\" is not off or address:port", cfg->http);
		return -1;
	}
	for (size_t i = 0; i < eps->n; i++) {
		const struct endpoint *e = &eps->v[i];
		if (e->port != h.port || e->family != h.family)
			continue;
		if (strcmp(e->address, h.address) == 0 || e->any || h.any) {
			snprintf(err, errlen,
			         "SMTPD_HTTP: %s is already in use by the SMTP listener %s", h.text,
			         e->text);
			return -1;
		}
	}
	return 0;
}

/* SMTPD_PROXY_PORTS and SMTPD_TLS_PORTS (SPEC 6, 7): a port no listener has is a
 * typo that would leave the intended listener without its PROXY header (every
 * client logged as the load balancer) or speaking plaintext. */
static int main_check_port_list(const char *list, const char *var, const struct endpoint_list *eps,
                                char *err, size_t errlen)
{
	const char *cursor = list;
	for (unsigned port; (port = config_port_list_next(&cursor)) != 0;) {
		bool found = false;
		for (size_t i = 0; i < eps->n && !found; i++)
			found = eps->v[i].port == port;
		if (!found) {
			snprintf(err, errlen,
			         "%s: port %u is not the port of any listener (SMTPD_PORTS)", var,
			         port);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg;
	memset(&cfg, 0, sizeof cfg);
	char err[1024] = "";
	if (config_load(&cfg, argc, argv, environ, main_warn, NULL, err, sizeof err) < 0) {
		main_flush_warnings(NULL);
		main_fatal(NULL, err);
		config_free(&cfg);
		return 2;
	}
	/* The thread pool runs the fsyncs of every store (and webhook reads, the
	 * readiness probe; crypt has a pool of its own, auth_pool.h): concurrent fsyncs are what
	 * the filesystem journal and our group commit merge, so give it more than libuv's default 4
	 * unless the operator chose. Must be set before the loop first uses the pool. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	log_setup(cfg.log_format, cfg.log_level);
	main_flush_warnings(&cfg);
	switch (cfg.action) {
	case CONFIG_ACTION_HELP:
		config_print_help(stdout);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_HELP_MARKDOWN:
		config_print_markdown(stdout);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_HELP_MAN:
		config_print_man(stdout, MAILPORT_VERSION);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_HELP_ENV:
		config_print_envfile(stdout);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_VERSION:
		main_print_version();
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_HEALTHCHECK: {
		int rc = httpd_healthcheck(cfg.http);
		config_free(&cfg);
		return rc;
	}
	case CONFIG_ACTION_CHECK:
	case CONFIG_ACTION_RUN:
		break;
	}

	struct endpoint_list eps = {0};
	int rc = endpoint_load(cfg.hosts, cfg.ports, endpoint_system_env(), &eps, err, sizeof err);
	if (rc == ENDPOINT_OK && main_check_http(&cfg, &eps, err, sizeof err) < 0)
		rc = ENDPOINT_ECONFIG;
	if (rc == ENDPOINT_OK &&
	    main_check_port_list(cfg.proxy_ports, "SMTPD_PROXY_PORTS", &eps, err, sizeof err) < 0)
		rc = ENDPOINT_ECONFIG;
	if (rc == ENDPOINT_OK &&
	    main_check_port_list(cfg.tls_ports, "SMTPD_TLS_PORTS", &eps, err, sizeof err) < 0)
		rc = ENDPOINT_ECONFIG;
	/* SPEC 8: --check-config reads the recipients file as start-up would. */
	if (rc == ENDPOINT_OK && cfg.action == CONFIG_ACTION_CHECK &&
	    policy_load_check(&cfg, err, sizeof err) < 0)
		rc = ENDPOINT_ECONFIG;
	if (rc != ENDPOINT_OK) {
		main_fatal(&cfg, err);
		endpoint_list_free(&eps);
		config_free(&cfg);
		return rc == ENDPOINT_ECONFIG ? 2 : 1;
	}
	if (cfg.action == CONFIG_ACTION_CHECK) {
		for (size_t i = 0; i < eps.n; i++)
			printf("%s %s\n", eps.v[i].text,
			       eps.v[i].family == AF_INET6 ? "ipv6" : "ipv4");
		endpoint_list_free(&eps);
		config_free(&cfg);
		return 0;
	}

	int code = server_run(&cfg, &eps, err, sizeof err);
	if (code != 0)
		main_fatal(&cfg, err);
	endpoint_list_free(&eps);
	config_free(&cfg);
	return code;
}
