/* endpoint_sys: the real struct endpoint_env (getifaddrs, getaddrinfo,
 * if_nametoindex), kept apart so that endpoint.c and endpoint_parse.c stay pure
 * and testable. Called at start-up only, before the loop runs: getaddrinfo(3) blocks. */
#include "endpoint.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

/* The interface list is copied (names and addresses) into one allocation, so
 * freeifaddrs(3) runs at once and free_ifaddrs is a plain free(). */
struct endpoint_sys_if {
	struct sockaddr_storage addr;
	char name[IF_NAMESIZE];
};

static int endpoint_sys_list_ifaddrs(void *ctx, struct endpoint_ifaddr **out, size_t *n)
{
	(void)ctx;
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	size_t count = 0;
	for (struct ifaddrs *i = ifa; i != NULL; i = i->ifa_next)
		if (i->ifa_addr != NULL &&
		    (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6))
			count++;
	/* One block: the public array, then the copies it points into. */
	size_t head = count * sizeof(struct endpoint_ifaddr);
	head =
	    (head + _Alignof(struct endpoint_sys_if) - 1) & ~(_Alignof(struct endpoint_sys_if) - 1);
	char *block = calloc(1, head + count * sizeof(struct endpoint_sys_if) + 1);
	if (block == NULL) {
		freeifaddrs(ifa);
		return -ENOMEM;
	}
	struct endpoint_ifaddr *v = (struct endpoint_ifaddr *)block;
	struct endpoint_sys_if *copy = (struct endpoint_sys_if *)(block + head);
	size_t k = 0;
	for (struct ifaddrs *i = ifa; i != NULL && k < count; i = i->ifa_next) {
		if (i->ifa_addr == NULL)
			continue;
		int fam = i->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		memcpy(&copy[k].addr, i->ifa_addr,
		       fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		strncpy(copy[k].name, i->ifa_name ? i->ifa_name : "", sizeof copy[k].name - 1);
		v[k].ifname = copy[k].name;
		v[k].addr = (const struct sockaddr *)&copy[k].addr;
		v[k].up = (i->ifa_flags & IFF_UP) != 0;
		k++;
	}
	freeifaddrs(ifa);
	*out = v;
	*n = k;
	return 0;
}

static void endpoint_sys_free_ifaddrs(void *ctx, struct endpoint_ifaddr *v, size_t n)
{
	(void)ctx;
	(void)n;
	free(v);
}

static bool endpoint_sys_same(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET) {
		struct sockaddr_in x, y;
		memcpy(&x, a, sizeof x);
		memcpy(&y, b, sizeof y);
		return x.sin_addr.s_addr == y.sin_addr.s_addr;
	}
	struct sockaddr_in6 x, y;
	memcpy(&x, a, sizeof x);
	memcpy(&y, b, sizeof y);
	return x.sin6_scope_id == y.sin6_scope_id &&
	       memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
}

/* AF_UNSPEC gives both families. No AI_ADDRCONFIG: it drops ::1 for
 * "localhost" on a host without a global IPv6 address, and the SPEC asks for
 * every address the name has. SOCK_STREAM keeps one entry per address
 * instead of one per socket type; the rest are deduplicated here. */
static int endpoint_sys_resolve(void *ctx, const char *host, struct sockaddr_storage **out,
                                size_t *n)
{
	(void)ctx;
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	switch (rc) {
	case 0:
		break;
	case EAI_NONAME:
	case EAI_FAIL:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return ENDPOINT_RESOLVE_NOTFOUND;
	default:
		/* EAI_AGAIN, EAI_MEMORY, EAI_SYSTEM...: may work next time. */
		return ENDPOINT_RESOLVE_TEMPFAIL;
	}
	size_t count = 0;
	for (struct addrinfo *i = res; i != NULL; i = i->ai_next)
		count++;
	struct sockaddr_storage *v = calloc(count ? count : 1, sizeof *v);
	if (v == NULL) {
		freeaddrinfo(res);
		return ENDPOINT_RESOLVE_TEMPFAIL;
	}
	size_t k = 0;
	for (struct addrinfo *i = res; i != NULL; i = i->ai_next) {
		if (i->ai_addr == NULL || (i->ai_family != AF_INET && i->ai_family != AF_INET6) ||
		    i->ai_addrlen > sizeof *v)
			continue;
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = endpoint_sys_same(i->ai_addr, &v[j]);
		if (dup)
			continue;
		memcpy(&v[k], i->ai_addr, i->ai_addrlen);
		k++;
	}
	freeaddrinfo(res);
	if (k == 0) {
		free(v);
		return ENDPOINT_RESOLVE_NOTFOUND;
	}
	*out = v;
	*n = k;
	return ENDPOINT_RESOLVE_OK;
}

static unsigned endpoint_sys_ifindex(void *ctx, const char *ifname)
{
	(void)ctx;
	return if_nametoindex(ifname);
}

static const char *endpoint_sys_ifname(void *ctx, unsigned index, char *buf)
{
	(void)ctx;
	return if_indextoname(index, buf);
}

static const struct endpoint_env endpoint_sys_env = {
    .ctx = NULL,
    .list_ifaddrs = endpoint_sys_list_ifaddrs,
    .free_ifaddrs = endpoint_sys_free_ifaddrs,
    .resolve = endpoint_sys_resolve,
    .ifindex = endpoint_sys_ifindex,
    .ifname = endpoint_sys_ifname,
};

const struct endpoint_env *endpoint_system_env(void)
{
	return &endpoint_sys_env;
}

const char *endpoint_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	return endpoint_format_addr_env(sa, &endpoint_sys_env, buf, len);
}
