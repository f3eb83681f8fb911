/* endpoint: SMTPD_HOSTS / SMTPD_PORTS -> the list of listeners (SPEC section 2,
 * seed page ../shared/reference/000_b0a075dcba75c0d2.txt).
 *
 * Pure: the interface list, the resolver and the zone lookup are passed in, so
 * tests need no network. main() passes endpoint_system_env(), which uses
 * getifaddrs(3), getaddrinfo(3) and if_nametoindex(3) (only at start-up, before
 * the loop runs). */
#ifndef MAILPORT_ENDPOINT_H
#define MAILPORT_ENDPOINT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "[ffff:...:ffff%<IFNAMSIZ>]:65535" fits with room to spare. */
#define ENDPOINT_TEXT_MAX 80

struct endpoint {
	struct sockaddr_storage addr; /* port filled in, sin6_scope_id set for zones */
	socklen_t addrlen;
	int family; /* AF_INET or AF_INET6 */
	bool any;   /* 0.0.0.0 or :: */
	uint16_t port;
	char address[ENDPOINT_TEXT_MAX]; /* "127.0.0.1", "::1", "fe80::1%eth0" (no brackets) */
	char text[ENDPOINT_TEXT_MAX];    /* "127.0.0.1:2525", "[::1]:2525", "[fe80::1%eth0]:2525" */
};

struct endpoint_list {
	struct endpoint *v;
	size_t n;
};

/* One address of one local interface, as getifaddrs(3) reports it. */
struct endpoint_ifaddr {
	const char *ifname;
	const struct sockaddr *addr;
	bool up; /* IFF_UP */
};

enum endpoint_resolve_result {
	ENDPOINT_RESOLVE_OK = 0,
	ENDPOINT_RESOLVE_NOTFOUND = -1, /* the name has no address: configuration error */
	ENDPOINT_RESOLVE_TEMPFAIL = -2, /* try again later: runtime error */
};

/* The outside world, injected. */
struct endpoint_env {
	void *ctx;
	/* List the addresses of all local interfaces. Returns 0 or a negative errno.
	 * *out stays valid until free_ifaddrs(ctx, *out, n). */
	int (*list_ifaddrs)(void *ctx, struct endpoint_ifaddr **out, size_t *n);
	void (*free_ifaddrs)(void *ctx, struct endpoint_ifaddr *v, size_t n);
	/* Resolve a hostname to all its IPv4 and IPv6 addresses (port 0). Returns an
	 * enum endpoint_resolve_result; on OK, *out (malloc'ed, freed by the caller
	 * with free()) holds *n >= 1 addresses. */
	int (*resolve)(void *ctx, const char *host, struct sockaddr_storage **out, size_t *n);
	/* Interface name -> index, 0 when there is no such interface. */
	unsigned (*ifindex)(void *ctx, const char *ifname);
	/* Interface index -> name into buf (IF_NAMESIZE), NULL when unknown. */
	const char *(*ifname)(void *ctx, unsigned index, char *buf);
};

enum endpoint_error {
	ENDPOINT_OK = 0,
	ENDPOINT_ECONFIG = -2,  /* bad setting: exit 2 */
	ENDPOINT_ERUNTIME = -1, /* e.g. temporary resolver failure: exit 1 */
};

/* Turn hosts/ports (the raw setting texts; NULL or blank means the default,
 * "127.0.0.1" and "2525") into the unique list of endpoints, in the order the host
 * items and ports are written. Rules (SPEC 2): comma lists, blanks around items
 * ignored, empty items an error; port items "2525" or "2525:3535" (several ports,
 * not a range) matched to host items by position, the last repeating; more port
 * items than host items is an error; "*" = every address of every up interface
 * (IPv4 but multicast; IPv6 loopback, unique-local and global only); hostnames
 * resolved to all addresses; "0.0.0.0" and "::" are single ANY listeners; the same
 * address:port twice, or a specific address with the ANY address of its family on
 * the same port, is an error containing "already in use" naming the endpoint.
 * Returns ENDPOINT_OK (out filled; free with endpoint_list_free) or an
 * enum endpoint_error with a one-line message in err naming SMTPD_HOSTS or
 * SMTPD_PORTS, e.g. `SMTPD_PORTS: "25x" is not a port number (1-65535)`.
 * Choices beyond SPEC 2: a v4-mapped literal (::ffff:1.2.3.4), a multicast
 * literal, a link-local literal without a zone and a zone on a non-link-local
 * address are ECONFIG; a zone naming no interface (by name or index) is
 * ECONFIG; a port given twice within one port item ("2525:2525") is an
 * "already in use" ECONFIG naming SMTPD_PORTS; "*" finding no usable address
 * (or the interface list failing) is ERUNTIME, like a temporary resolver
 * failure. Resolver answers that are v4-mapped are taken as IPv4. */
int endpoint_load(const char *hosts, const char *ports, const struct endpoint_env *env,
                  struct endpoint_list *out, char *err, size_t errlen);

void endpoint_list_free(struct endpoint_list *l);

/* The real environment: getifaddrs, getaddrinfo (AI_ADDRCONFIG off), if_nametoindex.
 * Lives in endpoint_sys.c so that endpoint.c stays pure. */
const struct endpoint_env *endpoint_system_env(void);

/* Parse one "address:port" text as used by SMTPD_HTTP ("127.0.0.1:8080",
 * "[::1]:8080", "0.0.0.0:8080"); literals only, IPv6 always bracketed, and
 * (having no env) only numeric zones ("[fe80::1%2]:8080"). Returns 0 or -1. */
int endpoint_parse_hostport(const char *s, struct endpoint *out);

/* Format a socket address the way every log and JSON field shows it: IPv4
 * without a ::ffff: prefix, IPv6 without brackets, zone appended as %ifname
 * (if_indextoname) or %index when the interface is unknown. Always
 * NUL-terminates (truncating) when len > 0. Returns buf. Lives in
 * endpoint_sys.c; it is endpoint_format_addr_env(sa, endpoint_system_env(), ...). */
const char *endpoint_format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* The same, pure: zone names come from env->ifname (env may be NULL: numeric
 * zones). Used for struct endpoint's address/text, and testable without the
 * system. */
const char *endpoint_format_addr_env(const struct sockaddr *sa, const struct endpoint_env *env,
                                     char *buf, size_t len);

#endif
