/* Unit tests for endpoint.c (SPEC 2): SMTPD_HOSTS / SMTPD_PORTS -> listeners.
 *
 * A fake struct endpoint_env stands in for the system, so nothing here needs a
 * network or DNS. The load tests are one table (got=... want=...); each row
 * is its own cmocka test, so a failure names the row. */
#include <arpa/inet.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "endpoint.h"

/* ---- the fake system ---------------------------------------------------- */

struct fake_if {
	const char *ifname;
	const char *addr; /* IPv6 with %index for a scope */
	bool up;
};

/* lo and eth0 are up; eth1 is down. eth0 carries every kind of address the
 * "*" rule must sort: plain, link-local, global, unique-local, multicast of
 * both families, v4-mapped. NULL addr and a non-IP family occur in real
 * getifaddrs(3) output too. */
static const struct fake_if fake_ifs[] = {
    {"lo", "127.0.0.1", true},
    {"eth0", "198.51.100.10", true},
    {"eth0", "224.0.0.251", true},
    {"eth1", "203.0.113.5", false},
    {"lo", "::1", true},
    {"eth0", "fe80::1%2", true},
    {"eth0", "2001:db8::10", true},
    {"eth0", "fd00::5", true},
    {"eth0", "ff02::fb", true},
    {"eth0", "::ffff:198.51.100.11", true},
    {"eth1", "2001:db8::99", false},
    {"eth0", NULL, true},
    {"eth0", "packet", true},
};
#define FAKE_NIFS (sizeof fake_ifs / sizeof fake_ifs[0])

struct fake {
	bool no_ifs;   /* every interface down */
	int ifs_error; /* list_ifaddrs fails */
	int listed;    /* list_ifaddrs calls minus free_ifaddrs calls */
	int resolves;  /* resolver calls */
	struct sockaddr_storage store[FAKE_NIFS];
	struct endpoint_ifaddr ifs[FAKE_NIFS];
};

static void fake_sockaddr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (strcmp(text, "packet") == 0) {
		ss->ss_family = AF_UNIX; /* stands in for AF_PACKET */
		return;
	}
	char a[INET6_ADDRSTRLEN];
	snprintf(a, sizeof a, "%s", text);
	char *pct = strchr(a, '%');
	if (pct != NULL)
		*pct = '\0';
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, a, &sin.sin_addr) == 1) {
		sin.sin_port = htons(9); /* must be ignored */
		memcpy(ss, &sin, sizeof sin);
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, a, &sin6.sin6_addr), 1);
	sin6.sin6_port = htons(9);
	sin6.sin6_flowinfo = htonl(7);
	sin6.sin6_scope_id = pct ? (uint32_t)atoi(pct + 1) : 0;
	memcpy(ss, &sin6, sizeof sin6);
}

static int fake_list_ifaddrs(void *ctx, struct endpoint_ifaddr **out, size_t *n)
{
	struct fake *f = ctx;
	if (f->ifs_error)
		return f->ifs_error;
	for (size_t i = 0; i < FAKE_NIFS; i++) {
		f->ifs[i].ifname = fake_ifs[i].ifname;
		f->ifs[i].up = fake_ifs[i].up && !f->no_ifs;
		f->ifs[i].addr = NULL;
		if (fake_ifs[i].addr != NULL) {
			fake_sockaddr(fake_ifs[i].addr, &f->store[i]);
			f->ifs[i].addr = (struct sockaddr *)&f->store[i];
		}
	}
	f->listed++;
	*out = f->ifs;
	*n = FAKE_NIFS;
	return 0;
}

static void fake_free_ifaddrs(void *ctx, struct endpoint_ifaddr *v, size_t n)
{
	struct fake *f = ctx;
	assert_ptr_equal(v, f->ifs);
	assert_int_equal(n, FAKE_NIFS);
	f->listed--;
}

struct fake_name {
	const char *name;
	const char *addrs[4];
};

static const struct fake_name fake_names[] = {
    {"localhost", {"127.0.0.1", "::1"}},
    {"mail.example", {"198.51.100.7", "2001:db8::7"}},
    /* one address twice, as /etc/hosts plus DNS can give it */
    {"dup.example", {"192.0.2.1", "2001:db8::1", "192.0.2.1"}},
    /* a resolver with AI_V4MAPPED would answer like this */
    {"mapped.example", {"::ffff:192.0.2.9"}},
    {"v6only.example", {"2001:db8::7"}},
    {"any.example", {"0.0.0.0"}},
};

static int fake_resolve(void *ctx, const char *host, struct sockaddr_storage **out, size_t *n)
{
	struct fake *f = ctx;
	f->resolves++;
	if (strcmp(host, "tempfail.example") == 0)
		return ENDPOINT_RESOLVE_TEMPFAIL;
	for (size_t i = 0; i < sizeof fake_names / sizeof fake_names[0]; i++) {
		if (strcmp(host, fake_names[i].name) != 0)
			continue;
		size_t k = 0;
		while (k < 4 && fake_names[i].addrs[k] != NULL)
			k++;
		struct sockaddr_storage *v = calloc(k, sizeof *v);
		assert_non_null(v);
		for (size_t j = 0; j < k; j++)
			fake_sockaddr(fake_names[i].addrs[j], &v[j]);
		*out = v;
		*n = k;
		return ENDPOINT_RESOLVE_OK;
	}
	return ENDPOINT_RESOLVE_NOTFOUND;
}

static const char *const fake_ifnames[] = {NULL, "lo", "eth0", "eth1"};

static unsigned fake_ifindex(void *ctx, const char *ifname)
{
	(void)ctx;
	for (unsigned i = 1; i < 4; i++)
		if (strcmp(ifname, fake_ifnames[i]) == 0)
			return i;
	return 0;
}

static const char *fake_ifname(void *ctx, unsigned index, char *buf)
{
	(void)ctx;
	if (index == 0 || index >= 4)
		return NULL;
	snprintf(buf, IF_NAMESIZE, "%s", fake_ifnames[index]);
	return buf;
}

static struct endpoint_env fake_env(struct fake *f)
{
	memset(f, 0, sizeof *f);
	struct endpoint_env env = {
	    .ctx = f,
	    .list_ifaddrs = fake_list_ifaddrs,
	    .free_ifaddrs = fake_free_ifaddrs,
	    .resolve = fake_resolve,
	    .ifindex = fake_ifindex,
	    .ifname = fake_ifname,
	};
	return env;
}

/* ---- the table ---------------------------------------------------------- */

struct load_case {
	const char *name;
	const char *hosts;
	const char *ports;
	int rc;
	/* ENDPOINT_OK: the endpoint texts in order, blank-separated.
	 * Otherwise: the exact error message. */
	const char *want;
};

#define SEED_HOSTS "127.0.0.1, ::1, 192.168.0.1"

static const struct load_case load_cases[] = {
    /* The five examples of the seed page, each with the exact list. */
    {"seed 1: port 2525 on all addresses", SEED_HOSTS, "2525", ENDPOINT_OK,
     "127.0.0.1:2525 [::1]:2525 192.168.0.1:2525"},
    {"seed 2: ports 2525 and 3535 on all addresses", SEED_HOSTS, "2525:3535", ENDPOINT_OK,
     "127.0.0.1:2525 127.0.0.1:3535 [::1]:2525 [::1]:3535 192.168.0.1:2525 "
     "192.168.0.1:3535"},
    {"seed 3: 2525 on the first, 3535 on the second and above", SEED_HOSTS, "2525, 3535",
     ENDPOINT_OK, "127.0.0.1:2525 [::1]:3535 192.168.0.1:3535"},
    {"seed 4: 2525, 3535, 2525", SEED_HOSTS, "2525, 3535, 2525", ENDPOINT_OK,
     "127.0.0.1:2525 [::1]:3535 192.168.0.1:2525"},
    {"seed 5: 2525, 2525:3535, 2525", SEED_HOSTS, "2525, 2525:3535, 2525", ENDPOINT_OK,
     "127.0.0.1:2525 [::1]:2525 [::1]:3535 192.168.0.1:2525"},

    /* Defaults: NULL or blank whole value. */
    {"defaults (NULL)", NULL, NULL, ENDPOINT_OK, "127.0.0.1:2525"},
    {"defaults (empty)", "", "", ENDPOINT_OK, "127.0.0.1:2525"},
    {"defaults (blank)", " \t ", "\t", ENDPOINT_OK, "127.0.0.1:2525"},
    {"default ports only", "::1", NULL, ENDPOINT_OK, "[::1]:2525"},
    {"default hosts only", NULL, "25", ENDPOINT_OK, "127.0.0.1:25"},

    /* Blanks and spellings. */
    {"blanks around items", "  127.0.0.1\t,\t::1  ", " 25 , 26 ", ENDPOINT_OK,
     "127.0.0.1:25 [::1]:26"},
    {"blanks around ports in an item", "127.0.0.1", "25 : 26", ENDPOINT_OK,
     "127.0.0.1:25 127.0.0.1:26"},
    {"port order as written", "127.0.0.1", "3535:2525:25", ENDPOINT_OK,
     "127.0.0.1:3535 127.0.0.1:2525 127.0.0.1:25"},
    {"ports 1 and 65535", "127.0.0.1", "1:65535", ENDPOINT_OK, "127.0.0.1:1 127.0.0.1:65535"},
    {"leading zeros are decimal", "127.0.0.1", "0025", ENDPOINT_OK, "127.0.0.1:25"},
    {"bracketed IPv6", "[::1]", "2525", ENDPOINT_OK, "[::1]:2525"},
    {"IPv6 canonical form", "2001:DB8:0:0::0:10", "25", ENDPOINT_OK, "[2001:db8::10]:25"},
    {"IPv6 with embedded IPv4", "64:ff9b::192.0.2.1", "25", ENDPOINT_OK, "[64:ff9b::c000:201]:25"},

    /* ANY addresses. */
    {"ANY IPv4", "0.0.0.0", "2525", ENDPOINT_OK, "0.0.0.0:2525"},
    {"ANY IPv6", "::", "2525", ENDPOINT_OK, "[::]:2525"},
    {"ANY IPv6 bracketed", "[::]", "2525", ENDPOINT_OK, "[::]:2525"},
    {"ANY IPv6 long form", "0:0::0", "2525", ENDPOINT_OK, "[::]:2525"},
    {"dual stack: 0.0.0.0 and :: on one port", "0.0.0.0, ::", "2525", ENDPOINT_OK,
     "0.0.0.0:2525 [::]:2525"},
    {"ANY IPv4 with a specific IPv6", "0.0.0.0, ::1", "2525", ENDPOINT_OK,
     "0.0.0.0:2525 [::1]:2525"},
    {"ANY IPv6 with a specific IPv4", "::, 127.0.0.1", "2525", ENDPOINT_OK,
     "[::]:2525 127.0.0.1:2525"},
    {"ANY and specific on different ports", "0.0.0.0, 127.0.0.1", "25, 26", ENDPOINT_OK,
     "0.0.0.0:25 127.0.0.1:26"},

    /* Hostnames. */
    {"localhost: both families", "localhost", "2525", ENDPOINT_OK, "127.0.0.1:2525 [::1]:2525"},
    {"hostname: every address gets the item's ports", "mail.example, 127.0.0.1", "25:587, 2525",
     ENDPOINT_OK,
     "198.51.100.7:25 198.51.100.7:587 [2001:db8::7]:25 [2001:db8::7]:587 127.0.0.1:2525"},
    {"hostname: duplicates within one item dropped", "dup.example", "25", ENDPOINT_OK,
     "192.0.2.1:25 [2001:db8::1]:25"},
    {"hostname: v4-mapped answer shown as IPv4", "mapped.example", "25", ENDPOINT_OK,
     "192.0.2.9:25"},
    /* the root dot passes the syntax check and reaches the resolver */
    {"hostname with a trailing dot", "nosuch.example.", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"nosuch.example.\" does not resolve to any address"},
    {"hostname: only a dot", ".", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \".\" is not an IP address or hostname"},
    {"hostname: all-numeric last label", "mail.123", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"mail.123\" is not an IP address or hostname"},
    {"hostname: numeric first label is fine", "123.example", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"123.example\" does not resolve to any address"},
    {"hostname: not found", "nosuch.example", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"nosuch.example\" does not resolve to any address"},
    {"hostname: temporary failure", "127.0.0.1, tempfail.example", "25", ENDPOINT_ERUNTIME,
     "SMTPD_HOSTS: cannot resolve \"tempfail.example\" now (temporary resolver failure)"},

    /* "*": every address of every up interface. */
    {"wildcard", "*", "2525", ENDPOINT_OK,
     "127.0.0.1:2525 198.51.100.10:2525 [::1]:2525 [2001:db8::10]:2525 [fd00::5]:2525"},
    {"wildcard with a second item", "*, [fe80::1%eth0]", "25, 26", ENDPOINT_OK,
     "127.0.0.1:25 198.51.100.10:25 [::1]:25 [2001:db8::10]:25 [fd00::5]:25 "
     "[fe80::1%eth0]:26"},

    /* Zones. */
    {"zone", "fe80::1%eth0", "2525", ENDPOINT_OK, "[fe80::1%eth0]:2525"},
    {"zone bracketed", "[fe80::1%eth0]", "2525", ENDPOINT_OK, "[fe80::1%eth0]:2525"},
    {"numeric zone shown by name", "fe80::1%2", "2525", ENDPOINT_OK, "[fe80::1%eth0]:2525"},
    {"zone on a down interface", "fe80::1%eth1", "2525", ENDPOINT_OK, "[fe80::1%eth1]:2525"},
    {"same address, two zones: distinct", "fe80::1%eth0, fe80::1%eth1", "2525", ENDPOINT_OK,
     "[fe80::1%eth0]:2525 [fe80::1%eth1]:2525"},
    {"zone: unknown interface", "fe80::1%nosuch0", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1%nosuch0\": there is no interface \"nosuch0\" for its zone"},
    {"zone: unknown interface, bracketed", "[fe80::1%nosuch0]", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"[fe80::1%nosuch0]\": there is no interface \"nosuch0\" for its zone"},
    {"zone: unknown index", "fe80::1%99", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1%99\": there is no interface \"99\" for its zone"},
    {"zone: index 0", "fe80::1%0", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1%0\": there is no interface \"0\" for its zone"},
    {"zone: too long for an interface name", "fe80::1%abcdefghijklmnopq", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1%abcdefghijklmnopq\": there is no interface "
     "\"abcdefghijklmnopq\" for its zone"},
    {"zone: empty", "fe80::1%", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1%\" is not an IP address or hostname"},
    {"zone on a global address", "2001:db8::1%eth0", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"2001:db8::1%eth0\" has a zone but only a link-local address "
     "(fe80::/10) may"},
    {"link-local without a zone", "fe80::1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"fe80::1\" is link-local and needs a zone, as in \"fe80::1%eth0\""},
    {"link-local without a zone, bracketed", "[fe80::1]", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"[fe80::1]\" is link-local and needs a zone, as in \"fe80::1%eth0\""},
    {"zone on IPv4", "127.0.0.1%lo", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"127.0.0.1%lo\" is not an IP address or hostname"},

    /* Conflicts. */
    {"conflict: localhost, 127.0.0.1, ::1", "localhost, 127.0.0.1, ::1", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:2525 is already in use (given twice: \"localhost\" and "
     "\"127.0.0.1\")"},
    {"conflict: ::1 later", "localhost, ::1", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [::1]:2525 is already in use (given twice: \"localhost\" and \"::1\")"},
    {"conflict: same literal twice", "127.0.0.1, 127.0.0.1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:25 is already in use (given twice: \"127.0.0.1\" and "
     "\"127.0.0.1\")"},
    {"conflict: two spellings of one IPv6", "::1, [0:0::1]", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [::1]:25 is already in use (given twice: \"::1\" and \"[0:0::1]\")"},
    {"no conflict: same address, other ports", "127.0.0.1, 127.0.0.1", "25, 26", ENDPOINT_OK,
     "127.0.0.1:25 127.0.0.1:26"},
    {"conflict: only on the shared port", "127.0.0.1, 127.0.0.1", "25:26, 27:26", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:26 is already in use (given twice: \"127.0.0.1\" and "
     "\"127.0.0.1\")"},
    {"conflict: ANY first, then specific", "0.0.0.0, 127.0.0.1", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:2525 is already in use (0.0.0.0:2525 from \"0.0.0.0\" serves "
     "every IPv4 address; 127.0.0.1:2525 is from \"127.0.0.1\")"},
    {"conflict: specific first, then ANY", "127.0.0.1, 0.0.0.0", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:2525 is already in use (0.0.0.0:2525 from \"0.0.0.0\" serves "
     "every IPv4 address; 127.0.0.1:2525 is from \"127.0.0.1\")"},
    {"conflict: IPv6 ANY and a zone", "fe80::1%eth0, [::]", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [fe80::1%eth0]:2525 is already in use ([::]:2525 from \"[::]\" serves "
     "every IPv6 address; [fe80::1%eth0]:2525 is from \"fe80::1%eth0\")"},
    {"conflict: ANY twice", "0.0.0.0, 0.0.0.0", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 0.0.0.0:2525 is already in use (given twice: \"0.0.0.0\" and "
     "\"0.0.0.0\")"},
    {"conflict: :: twice", "::, [::]", "2525", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [::]:2525 is already in use (given twice: \"::\" and \"[::]\")"},
    {"conflict: hostname resolving to ANY", "127.0.0.1, any.example", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 127.0.0.1:25 is already in use (0.0.0.0:25 from \"any.example\" serves "
     "every IPv4 address; 127.0.0.1:25 is from \"127.0.0.1\")"},
    {"conflict: * and one of its addresses", "*, 198.51.100.10", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: 198.51.100.10:25 is already in use (given twice: \"*\" and "
     "\"198.51.100.10\")"},
    {"conflict: two hostnames sharing an address", "mail.example, v6only.example", "25",
     ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [2001:db8::7]:25 is already in use (given twice: \"mail.example\" and "
     "\"v6only.example\")"},
    {"conflict: the first one in list order is named", "::1, 127.0.0.1, ::1, 127.0.0.1", "25",
     ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: [::1]:25 is already in use (given twice: \"::1\" and \"::1\")"},
    {"conflict: port twice in one item", "127.0.0.1", "2525:2525", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: port 2525 is already in use (given twice in \"2525:2525\")"},
    {"conflict: port twice in one item, spelled apart", "127.0.0.1", "25:26:025", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: port 25 is already in use (given twice in \"25:26:025\")"},

    /* Bad SMTPD_HOSTS. */
    {"host with a port", "127.0.0.1:25", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"127.0.0.1:25\" is not an IP address or hostname"},
    {"host with an underscore", "foo_bar", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"foo_bar\" is not an IP address or hostname"},
    {"empty item in the middle", "127.0.0.1,,::1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: item 2 of \"127.0.0.1,,::1\" is empty"},
    {"trailing comma", "127.0.0.1,", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: item 2 of \"127.0.0.1,\" is empty"},
    {"blank item", "127.0.0.1, ,::1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: item 2 of \"127.0.0.1, ,::1\" is empty"},
    {"only a comma", ",", "25", ENDPOINT_ECONFIG, "SMTPD_HOSTS: item 1 of \",\" is empty"},
    {"IPv4 out of range", "1.2.3.256", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"1.2.3.256\" is not an IP address or hostname"},
    {"short IPv4 is not for inet_aton", "127.1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"127.1\" is not an IP address or hostname"},
    {"bad IPv6", "::1::2", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"::1::2\" is not an IP address or hostname"},
    {"unclosed bracket", "[::1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"[::1\" is not an IP address or hostname"},
    {"bracketed IPv4", "[127.0.0.1]", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"[127.0.0.1]\" is not an IP address or hostname"},
    {"bracketed with port", "[::1]:25", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"[::1]:25\" is not an IP address or hostname"},
    {"label starting with a hyphen", "-mail.example", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"-mail.example\" is not an IP address or hostname"},
    {"empty label", "mail..example", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"mail..example\" is not an IP address or hostname"},
    {"label of 64", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
     "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\" "
     "is not an IP address or hostname"},
    {"label of 63 is fine (NOTFOUND)",
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", "25",
     ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\" "
     "does not resolve to any address"},
    {"control byte escaped in the message", "mail\nexample", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"mail\\x0aexample\" is not an IP address or hostname"},
    {"quote escaped in the message", "\"x\"", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"\\\"x\\\"\" is not an IP address or hostname"},
    {"v4-mapped literal", "::ffff:127.0.0.1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"::ffff:127.0.0.1\" is an IPv4-mapped IPv6 address; write the IPv4 "
     "address"},
    {"IPv4 multicast literal", "224.0.0.1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"224.0.0.1\" is a multicast address"},
    {"IPv6 multicast literal", "ff02::1", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"ff02::1\" is a multicast address"},
    {"syntax error found before any lookup", "tempfail.example, foo_bar", "25", ENDPOINT_ECONFIG,
     "SMTPD_HOSTS: \"foo_bar\" is not an IP address or hostname"},

    /* Bad SMTPD_PORTS. */
    {"port with junk", "127.0.0.1", "25x", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"25x\" is not a port number (1-65535)"},
    {"port 0", "127.0.0.1", "0", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"0\" is not a port number (1-65535)"},
    {"port 65536", "127.0.0.1", "65536", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"65536\" is not a port number (1-65535)"},
    {"port huge", "127.0.0.1", "99999999999999999999999", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"99999999999999999999999\" is not a port number (1-65535)"},
    {"port with sign", "127.0.0.1", "+25", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"+25\" is not a port number (1-65535)"},
    {"negative port", "127.0.0.1", "-25", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"-25\" is not a port number (1-65535)"},
    {"port range is not a thing", "127.0.0.1", "25-30", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"25-30\" is not a port number (1-65535)"},
    {"blank inside a port", "127.0.0.1", "2 5", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"2 5\" is not a port number (1-65535)"},
    {"bad port inside an item", "127.0.0.1", "25:x", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"x\" in \"25:x\" is not a port number (1-65535)"},
    {"empty port inside an item", "127.0.0.1", "25:", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: \"\" in \"25:\" is not a port number (1-65535)"},
    {"empty port item", "127.0.0.1, ::1", "25,,26", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: item 2 of \"25,,26\" is empty"},
    {"trailing comma in ports", "127.0.0.1, ::1", "25,", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: item 2 of \"25,\" is empty"},
    {"too many port items", "127.0.0.1", "25, 26", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: 2 port items but SMTPD_HOSTS has only 1 host item (at most one port item "
     "per host item)"},
    {"too many port items (plural)", SEED_HOSTS, "1,2,3,4", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: 4 port items but SMTPD_HOSTS has only 3 host items (at most one port item "
     "per host item)"},
    {"too many port items for a hostname", "localhost", "25, 26", ENDPOINT_ECONFIG,
     "SMTPD_PORTS: 2 port items but SMTPD_HOSTS has only 1 host item (at most one port item "
     "per host item)"},
};

/* Join the endpoint texts as the table writes them. */
static void join_texts(const struct endpoint_list *l, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		int r = snprintf(buf + o, len - o, "%s%s", i ? " " : "", l->v[i].text);
		assert_true(r > 0 && (size_t)r < len - o);
		o += (size_t)r;
	}
}

static void run_load_case(void **state)
{
	const struct load_case *c = *state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	struct endpoint_list l = {(struct endpoint *)1, 99}; /* must be reset */
	char err[512] = "junk";
	int rc = endpoint_load(c->hosts, c->ports, &env, &l, err, sizeof err);
	assert_int_equal(f.listed, 0); /* interface list freed */
	char got[2048];
	join_texts(&l, got, sizeof got);
	if (rc != c->rc)
		fail_msg("%s: rc got=%d want=%d (list \"%s\", err \"%s\")", c->name, rc, c->rc, got,
		         err);
	if (c->rc == ENDPOINT_OK) {
		assert_string_equal(err, "");
		if (c->want != NULL && strcmp(got, c->want) != 0)
			fail_msg("%s:\n got=%s\nwant=%s", c->name, got, c->want);
	} else {
		assert_null(l.v);
		assert_int_equal(l.n, 0);
		if (strcmp(err, c->want) != 0)
			fail_msg("%s:\n got=%s\nwant=%s", c->name, err, c->want);
		/* SPEC 1: one line naming the variable. */
		assert_null(strchr(err, '\n'));
		assert_true(strncmp(err, "SMTPD_HOSTS: ", 13) == 0 ||
		            strncmp(err, "SMTPD_PORTS: ", 13) == 0);
	}
	endpoint_list_free(&l);
}

/* ---- field-level checks ------------------------------------------------- */

static const struct endpoint *load_one(const char *hosts, const char *ports,
                                       struct endpoint_list *l)
{
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	char err[256];
	int rc = endpoint_load(hosts, ports, &env, l, err, sizeof err);
	if (rc != ENDPOINT_OK)
		fail_msg("%s / %s: %s", hosts, ports, err);
	assert_int_equal(l->n, 1);
	return &l->v[0];
}

static void test_fields_ipv4(void **state)
{
	(void)state;
	struct endpoint_list l;
	const struct endpoint *e = load_one("192.0.2.1", "2525", &l);
	assert_int_equal(e->family, AF_INET);
	assert_false(e->any);
	assert_int_equal(e->port, 2525);
	assert_int_equal(e->addrlen, sizeof(struct sockaddr_in));
	assert_string_equal(e->address, "192.0.2.1");
	assert_string_equal(e->text, "192.0.2.1:2525");
	struct sockaddr_in sin;
	memcpy(&sin, &e->addr, sizeof sin);
	assert_int_equal(sin.sin_family, AF_INET);
	assert_int_equal(sin.sin_port, htons(2525));
	assert_int_equal(sin.sin_addr.s_addr, htonl(0xc0000201));
	endpoint_list_free(&l);
	endpoint_list_free(&l); /* reset: a second free is harmless */
	endpoint_list_free(NULL);
}

static void test_fields_zone(void **state)
{
	(void)state;
	struct endpoint_list l;
	const struct endpoint *e = load_one("[fe80::1%eth0]", "25", &l);
	assert_int_equal(e->family, AF_INET6);
	assert_false(e->any);
	assert_int_equal(e->addrlen, sizeof(struct sockaddr_in6));
	assert_string_equal(e->address, "fe80::1%eth0");
	assert_string_equal(e->text, "[fe80::1%eth0]:25");
	struct sockaddr_in6 sin6;
	memcpy(&sin6, &e->addr, sizeof sin6);
	assert_int_equal(sin6.sin6_family, AF_INET6);
	assert_int_equal(sin6.sin6_port, htons(25));
	assert_int_equal(sin6.sin6_scope_id, 2);
	endpoint_list_free(&l);
}

static void test_fields_any(void **state)
{
	(void)state;
	struct endpoint_list l;
	const struct endpoint *e = load_one("0.0.0.0", "2525", &l);
	assert_true(e->any);
	assert_int_equal(e->family, AF_INET);
	assert_string_equal(e->address, "0.0.0.0");
	endpoint_list_free(&l);
	e = load_one("[::]", "2525", &l);
	assert_true(e->any);
	assert_int_equal(e->family, AF_INET6);
	assert_string_equal(e->address, "::");
	assert_string_equal(e->text, "[::]:2525");
	endpoint_list_free(&l);
}

/* Resolved and interface addresses come with ports, flow labels and scopes
 * that must not leak into the endpoint. */
static void test_fields_resolved(void **state)
{
	(void)state;
	struct endpoint_list l;
	const struct endpoint *e = load_one("v6only.example", "587", &l);
	struct sockaddr_in6 sin6;
	memcpy(&sin6, &e->addr, sizeof sin6);
	assert_int_equal(sin6.sin6_port, htons(587));
	assert_int_equal(sin6.sin6_flowinfo, 0);
	assert_int_equal(sin6.sin6_scope_id, 0);
	assert_string_equal(e->address, "2001:db8::7");
	endpoint_list_free(&l);
}

/* ---- environment failures ----------------------------------------------- */

static void test_wildcard_no_interface(void **state)
{
	(void)state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	f.no_ifs = true;
	struct endpoint_list l;
	char err[256];
	assert_int_equal(endpoint_load("*", "25", &env, &l, err, sizeof err), ENDPOINT_ERUNTIME);
	assert_string_equal(err, "SMTPD_HOSTS: \"*\" found no usable address on any interface "
	                         "that is up");
	assert_int_equal(f.listed, 0);
	assert_null(l.v);
}

static void test_wildcard_list_error(void **state)
{
	(void)state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	f.ifs_error = -12;
	struct endpoint_list l;
	char err[256];
	assert_int_equal(endpoint_load("*", "25", &env, &l, err, sizeof err), ENDPOINT_ERUNTIME);
	assert_string_equal(err, "SMTPD_HOSTS: \"*\": cannot list the interfaces (error 12)");
}

/* Nothing is resolved when the ports are wrong, and a literal-only list
 * never touches the resolver. */
static void test_no_lookup_when_not_needed(void **state)
{
	(void)state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	struct endpoint_list l;
	char err[256];
	assert_int_equal(endpoint_load("localhost", "25x", &env, &l, err, sizeof err),
	                 ENDPOINT_ECONFIG);
	assert_int_equal(f.resolves, 0);
	assert_int_equal(endpoint_load("127.0.0.1, ::1", "25", &env, &l, err, sizeof err),
	                 ENDPOINT_OK);
	assert_int_equal(f.resolves, 0);
	endpoint_list_free(&l);
}

/* errlen is honoured: truncated, terminated, never overrun; NULL err is ok. */
static void test_error_truncation(void **state)
{
	(void)state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	struct endpoint_list l;
	char err[16];
	memset(err, 'Z', sizeof err);
	assert_int_equal(endpoint_load("foo_bar", NULL, &env, &l, err, 10), ENDPOINT_ECONFIG);
	assert_string_equal(err, "SMTPD_HOS");
	assert_int_equal(err[10], 'Z');
	assert_int_equal(endpoint_load("foo_bar", NULL, &env, &l, NULL, 0), ENDPOINT_ECONFIG);
	assert_int_equal(endpoint_load("foo_bar", NULL, &env, &l, err, 0), ENDPOINT_ECONFIG);
	assert_int_equal(err[0], 'S');
}

/* A very long item is cut in the message, which stays one short line. */
static void test_error_long_item(void **state)
{
	(void)state;
	char hosts[4096];
	memset(hosts, '_', sizeof hosts - 1);
	hosts[sizeof hosts - 1] = '\0';
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	struct endpoint_list l;
	char err[1024];
	assert_int_equal(endpoint_load(hosts, NULL, &env, &l, err, sizeof err), ENDPOINT_ECONFIG);
	assert_non_null(strstr(err, "____...\" is not an IP address or hostname"));
	assert_true(strlen(err) < 200);
}

/* Many ports on many addresses: the conflict check must stay fast and still
 * find the one clash at the very end. */
static void test_many_endpoints(void **state)
{
	(void)state;
	static char ports[65536 * 6];
	size_t o = 0;
	for (unsigned p = 1; p <= 65535; p++)
		o += (size_t)snprintf(ports + o, sizeof ports - o, "%s%u", p > 1 ? ":" : "", p);
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	struct endpoint_list l;
	char err[256];
	assert_int_equal(endpoint_load("*", ports, &env, &l, err, sizeof err), ENDPOINT_OK);
	assert_int_equal(l.n, 5 * 65535);
	endpoint_list_free(&l);
	assert_int_equal(endpoint_load("*, 0.0.0.0", "1:2:3, 3", &env, &l, err, sizeof err),
	                 ENDPOINT_ECONFIG);
	assert_string_equal(err, "SMTPD_HOSTS: 127.0.0.1:3 is already in use (0.0.0.0:3 from "
	                         "\"0.0.0.0\" serves every IPv4 address; 127.0.0.1:3 is from "
	                         "\"*\")");
}

/* ---- endpoint_parse_hostport -------------------------------------------- */

struct hostport_case {
	const char *in;
	int rc;
	const char *text; /* when rc == 0 */
	int family;
	bool any;
};

static const struct hostport_case hostport_cases[] = {
    {"127.0.0.1:8080", 0, "127.0.0.1:8080", AF_INET, false},
    {"[::1]:8080", 0, "[::1]:8080", AF_INET6, false},
    {"0.0.0.0:8080", 0, "0.0.0.0:8080", AF_INET, true},
    {"[::]:8080", 0, "[::]:8080", AF_INET6, true},
    {" 127.0.0.1:1 ", 0, "127.0.0.1:1", AF_INET, false},
    {"[fe80::1%2]:80", 0, "[fe80::1%2]:80", AF_INET6, false},
    {"[fe80::1%eth0]:80", -1, NULL, 0, false}, /* no env: numeric zones only */
    {"[fe80::1]:80", -1, NULL, 0, false},
    {"::1:8080", -1, NULL, 0, false},
    {"[::1]8080", -1, NULL, 0, false},
    {"[::1]:", -1, NULL, 0, false},
    {"[::1", -1, NULL, 0, false},
    {"127.0.0.1", -1, NULL, 0, false},
    {"127.0.0.1:", -1, NULL, 0, false},
    {":8080", -1, NULL, 0, false},
    {"127.0.0.1:0", -1, NULL, 0, false},
    {"127.0.0.1:65536", -1, NULL, 0, false},
    {"127.0.0.1:80x", -1, NULL, 0, false},
    {"localhost:8080", -1, NULL, 0, false},
    {"[127.0.0.1]:8080", -1, NULL, 0, false},
    {"[::ffff:127.0.0.1]:8080", -1, NULL, 0, false},
    {"off", -1, NULL, 0, false},
    {"", -1, NULL, 0, false},
};

static void test_parse_hostport(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof hostport_cases / sizeof hostport_cases[0]; i++) {
		const struct hostport_case *c = &hostport_cases[i];
		struct endpoint e;
		memset(&e, 0, sizeof e);
		int rc = endpoint_parse_hostport(c->in, &e);
		if (rc != c->rc)
			fail_msg("\"%s\": got=%d want=%d", c->in, rc, c->rc);
		if (rc != 0)
			continue;
		if (strcmp(e.text, c->text) != 0)
			fail_msg("\"%s\": got=%s want=%s", c->in, e.text, c->text);
		assert_int_equal(e.family, c->family);
		assert_int_equal(e.any, c->any);
		assert_int_equal(e.addr.ss_family, c->family);
	}
	assert_int_equal(endpoint_parse_hostport(NULL, NULL), -1);
}

/* ---- endpoint_format_addr ----------------------------------------------- */

static void test_format_addr_env(void **state)
{
	(void)state;
	struct fake f;
	struct endpoint_env env = fake_env(&f);
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
	    {"::ffff:127.0.0.1", "127.0.0.1"}, /* SPEC 7: no ::ffff: prefix */
	    {"::ffff:203.0.113.7", "203.0.113.7"}, {"203.0.113.7", "203.0.113.7"},
	    {"2001:db8::1", "2001:db8::1"},        {"fe80::1%2", "fe80::1%eth0"},
	    {"fe80::1%42", "fe80::1%42"}, /* unknown interface: the index */
	};
	char buf[ENDPOINT_TEXT_MAX];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sockaddr_storage ss;
		fake_sockaddr(cases[i].in, &ss);
		const char *got =
		    endpoint_format_addr_env((struct sockaddr *)&ss, &env, buf, sizeof buf);
		assert_ptr_equal(got, buf);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("%s: got=%s want=%s", cases[i].in, got, cases[i].want);
	}
	struct sockaddr_storage ss;
	fake_sockaddr("fe80::1%2", &ss);
	assert_string_equal(endpoint_format_addr_env((struct sockaddr *)&ss, NULL, buf, sizeof buf),
	                    "fe80::1%2");
	/* truncated, terminated */
	fake_sockaddr("2001:db8::1", &ss);
	assert_string_equal(endpoint_format_addr_env((struct sockaddr *)&ss, &env, buf, 5), "2001");
}

/* endpoint_format_addr lives in endpoint_sys.c, which this test target does
 * not link; the weak reference lets the test run when it is linked and skip
 * otherwise. */
#pragma weak endpoint_format_addr
static void test_format_addr_system(void **state)
{
	(void)state;
	const char *(*fn)(const struct sockaddr *, char *, size_t) = endpoint_format_addr;
	if (fn == NULL)
		skip();
	struct sockaddr_storage ss;
	char buf[ENDPOINT_TEXT_MAX];
	fake_sockaddr("::ffff:127.0.0.1", &ss);
	assert_string_equal(fn((struct sockaddr *)&ss, buf, sizeof buf), "127.0.0.1");
	fake_sockaddr("::1", &ss);
	assert_string_equal(fn((struct sockaddr *)&ss, buf, sizeof buf), "::1");
}

int main(void)
{
	const size_t nload = sizeof load_cases / sizeof load_cases[0];
	const struct CMUnitTest fixed[] = {
	    cmocka_unit_test(test_fields_ipv4),
	    cmocka_unit_test(test_fields_zone),
	    cmocka_unit_test(test_fields_any),
	    cmocka_unit_test(test_fields_resolved),
	    cmocka_unit_test(test_wildcard_no_interface),
	    cmocka_unit_test(test_wildcard_list_error),
	    cmocka_unit_test(test_no_lookup_when_not_needed),
	    cmocka_unit_test(test_error_truncation),
	    cmocka_unit_test(test_error_long_item),
	    cmocka_unit_test(test_many_endpoints),
	    cmocka_unit_test(test_parse_hostport),
	    cmocka_unit_test(test_format_addr_env),
	    cmocka_unit_test(test_format_addr_system),
	};
	const size_t nfixed = sizeof fixed / sizeof fixed[0];
	struct CMUnitTest *tests = calloc(nload + nfixed, sizeof *tests);
	if (tests == NULL)
		return 1;
	for (size_t i = 0; i < nload; i++) {
		tests[i].name = load_cases[i].name;
		tests[i].test_func = run_load_case;
		tests[i].initial_state = (void *)&load_cases[i];
	}
	memcpy(tests + nload, fixed, sizeof fixed);
	int rc = _cmocka_run_group_tests("endpoint", tests, nload + nfixed, NULL, NULL);
	free(tests);
	return rc;
}
