/* libFuzzer target for endpoint_load (SPEC 2). The input is
 * "<SMTPD_HOSTS>\n<SMTPD_PORTS>" (no newline: hosts only, ports default);
 * the environment is a small fake, so no network is touched.
 *
 * Beyond "no crash, no leak" it checks the contract: on success every
 * endpoint is unique and well-formed; on failure the list is empty and the
 * message is one line naming the variable. */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sockaddr_storage fuzz_addr(const char *text, unsigned scope)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_scope_id = scope};
	if (inet_pton(AF_INET, text, &sin.sin_addr) == 1)
		memcpy(&ss, &sin, sizeof sin);
	else if (inet_pton(AF_INET6, text, &sin6.sin6_addr) == 1)
		memcpy(&ss, &sin6, sizeof sin6);
	return ss;
}

static struct sockaddr_storage fuzz_if_store[6];
static struct endpoint_ifaddr fuzz_ifs[6];

static int fuzz_list_ifaddrs(void *ctx, struct endpoint_ifaddr **out, size_t *n)
{
	(void)ctx;
	static const struct {
		const char *name, *addr;
		unsigned scope;
		bool up;
	} t[6] = {
	    {"lo", "127.0.0.1", 0, true},       {"lo", "::1", 0, true},
	    {"eth0", "198.51.100.10", 0, true}, {"eth0", "fe80::1", 2, true},
	    {"eth0", "2001:db8::10", 0, true},  {"eth1", "203.0.113.5", 0, false},
	};
	for (size_t i = 0; i < 6; i++) {
		fuzz_if_store[i] = fuzz_addr(t[i].addr, t[i].scope);
		fuzz_ifs[i].ifname = t[i].name;
		fuzz_ifs[i].addr = (const struct sockaddr *)&fuzz_if_store[i];
		fuzz_ifs[i].up = t[i].up;
	}
	*out = fuzz_ifs;
	*n = 6;
	return 0;
}

static void fuzz_free_ifaddrs(void *ctx, struct endpoint_ifaddr *v, size_t n)
{
	(void)ctx;
	(void)v;
	(void)n;
}

/* Any name resolves, deterministically, to one or two addresses derived from
 * its length, so that names clash with each other and with literals; names
 * starting with "nx" are not found, "tf" fail temporarily. */
static int fuzz_resolve(void *ctx, const char *host, struct sockaddr_storage **out, size_t *n)
{
	(void)ctx;
	if (strncmp(host, "nx", 2) == 0)
		return ENDPOINT_RESOLVE_NOTFOUND;
	if (strncmp(host, "tf", 2) == 0)
		return ENDPOINT_RESOLVE_TEMPFAIL;
	size_t len = strlen(host);
	char a[INET6_ADDRSTRLEN];
	struct sockaddr_storage *v = calloc(2, sizeof *v);
	if (v == NULL)
		return ENDPOINT_RESOLVE_TEMPFAIL;
	snprintf(a, sizeof a, "127.0.0.%zu", len % 4);
	v[0] = fuzz_addr(a, 0);
	snprintf(a, sizeof a, "::%zx", len % 3);
	v[1] = fuzz_addr(a, 0);
	*out = v;
	*n = len % 2 ? 2 : 1;
	return ENDPOINT_RESOLVE_OK;
}

static unsigned fuzz_ifindex(void *ctx, const char *name)
{
	(void)ctx;
	return strcmp(name, "lo") == 0 ? 1 : strcmp(name, "eth0") == 0 ? 2 : 0;
}

static const char *fuzz_ifname(void *ctx, unsigned index, char *buf)
{
	(void)ctx;
	if (index < 1 || index > 2)
		return NULL;
	snprintf(buf, IF_NAMESIZE, "%s", index == 1 ? "lo" : "eth0");
	return buf;
}

static const struct endpoint_env fuzz_env = {
    .list_ifaddrs = fuzz_list_ifaddrs,
    .free_ifaddrs = fuzz_free_ifaddrs,
    .resolve = fuzz_resolve,
    .ifindex = fuzz_ifindex,
    .ifname = fuzz_ifname,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	char *ports = memchr(in, '\n', size);
	if (ports != NULL)
		*ports++ = '\0';
	struct endpoint_list l;
	char err[256];
	int rc = endpoint_load(in, ports, &fuzz_env, &l, err, sizeof err);
	if (rc == ENDPOINT_OK) {
		if (l.n == 0)
			abort();
		for (size_t i = 0; i < l.n; i++) {
			const struct endpoint *e = &l.v[i];
			if (e->port == 0 || e->text[0] == '\0' || e->address[0] == '\0' ||
			    (e->family != AF_INET && e->family != AF_INET6))
				abort();
			for (size_t j = 0; j < i; j++)
				if (strcmp(e->text, l.v[j].text) == 0)
					abort();
		}
	} else {
		if ((rc != ENDPOINT_ECONFIG && rc != ENDPOINT_ERUNTIME) || l.v != NULL ||
		    strchr(err, '\n') != NULL ||
		    (strncmp(err, "SMTPD_HOSTS: ", 13) != 0 &&
		     strncmp(err, "SMTPD_PORTS: ", 13) != 0))
			abort();
	}
	endpoint_list_free(&l);
	/* The same bytes as an SMTPD_HTTP value. */
	struct endpoint h;
	if (endpoint_parse_hostport(in, &h) == 0 && (h.port == 0 || h.text[0] == '\0'))
		abort();
	free(in);
	return 0;
}
