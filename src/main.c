/* mailport: the only place that prints a fatal error and picks the exit code
 * (SPEC 1): 0 clean shutdown, 2 configuration error, 1 start-up failure. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "endpoint.h"
#include "httpd.h"
#include "log.h"
#include "server.h"

extern char **environ;

static void main_warn(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "mailport: warning: %s\n", msg);
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

int main(int argc, char **argv)
{
	struct config cfg;
	memset(&cfg, 0, sizeof cfg);
	char err[1024] = "";
	if (config_load(&cfg, argc, argv, environ, main_warn, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "mailport: %s\n", err);
		config_free(&cfg);
		return 2;
	}
	switch (cfg.action) {
	case CONFIG_ACTION_HELP:
		config_print_help(stdout);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_HELP_MARKDOWN:
		config_print_markdown(stdout);
		config_free(&cfg);
		return 0;
	case CONFIG_ACTION_VERSION:
		printf("mailport %s\n", MAILPORT_VERSION);
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
	if (rc != ENDPOINT_OK) {
		fprintf(stderr, "mailport: %s\n", err);
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

	log_setup(cfg.log_format, cfg.log_level);
	int code = server_run(&cfg, &eps, err, sizeof err);
	if (code != 0)
		fprintf(stderr, "mailport: %s\n", err);
	endpoint_list_free(&eps);
	config_free(&cfg);
	return code;
}
