/* Tests for the PROXY protocol parser and the SMTPD_PROXY_TRUSTED CIDR lists:
 * table-driven, got=... want=... on failure (Postfix's habit). Every valid
 * header is also fed at every split point (each proper prefix must say "need
 * more", then the whole header is taken with the same result) and placed right
 * before an unreadable page, so a read past the end crashes instead of passing. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy_proto.h"

/* ------------------------------------------------------------ helpers */

static const char v2sig[] = "\r\n\r\n\0\r\nQUIT\n";

/* A version 2 header: ver_cmd, fam, the block (addresses then TLVs). */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
                 const unsigned char *block, size_t blen)
{
	memcpy(out, v2sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen)
		memcpy(out + 16, block, blen);
	return 16 + blen;
}

static void fmt_addr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, a, sizeof a);
		port = ntohs(s->sin_port);
		snprintf(out, len, "%s:%u", a, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof a);
		port = ntohs(s->sin6_port);
		snprintf(out, len, "[%s]:%u", a, port);
	} else {
		snprintf(out, len, "-");
	}
}

/* "v1 local", "v2 198.51.100.7:40000 -> 203.0.113.1:25", "need-more", "invalid". */
static void describe(int rc, const struct proxy_proto_header *h, char *out, size_t len)
{
	if (rc == PROXY_PROTO_NEED_MORE) {
		snprintf(out, len, "need-more");
		return;
	}
	if (rc < 0) {
		snprintf(out, len, "invalid");
		return;
	}
	if (h->local) {
		snprintf(out, len, "v%u local", h->version);
		return;
	}
	char s[80], d[80];
	fmt_addr(&h->src, s, sizeof s);
	fmt_addr(&h->dst, d, sizeof d);
	snprintf(out, len, "v%u %s -> %s", h->version, s, d);
}

/* Map `len` bytes right before a PROT_NONE page and return where they are. */
struct guarded {
	unsigned char *map;
	size_t maplen;
	unsigned char *data;
};

static void guard(struct guarded *g, const void *data, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (len + page - 1) / page + 1;
	g->maplen = (pages + 1) * page;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + pages * page, page, PROT_NONE), 0);
	g->data = g->map + pages * page - len;
	memcpy(g->data, data, len);
}

static void unguard(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

/* Parse `in` guarded; then every proper prefix (must be need-more unless the
 * whole is invalid, in which case a prefix may already be invalid but never
 * complete). Returns the description of the whole, and the rc. */
static int check_all_splits(const unsigned char *in, size_t len, char *got, size_t gotlen)
{
	struct guarded g;
	guard(&g, in, len);
	struct proxy_proto_header h;
	int rc = proxy_proto_parse(g.data, len, &h);
	describe(rc, &h, got, gotlen);
	for (size_t cut = 0; cut < len; cut++) {
		struct guarded gp;
		guard(&gp, in, cut);
		struct proxy_proto_header hp;
		int prc = proxy_proto_parse(gp.data, cut, &hp);
		unguard(&gp);
		if (rc > 0 && cut < (size_t)rc && prc != PROXY_PROTO_NEED_MORE)
			fail_msg("prefix of %zu bytes of a valid header: got=%d want=need-more",
			         cut, prc);
		if (rc < 0 && prc > 0)
			fail_msg("prefix of %zu bytes of an invalid input parsed as complete", cut);
	}
	unguard(&g);
	return rc;
}

/* ------------------------------------------------------------ version 1 */

struct v1case {
	const char *in;
	const char *want;
	int len; /* the header's length when valid; -1: strlen(in) */
};

static void test_v1_table(void **state)
{
	(void)state;
	static const struct v1case t[] = {
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\r\n",
	     "v1 198.51.100.7:40000 -> 203.0.113.1:25", -1},
	    {"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n",
	     "v1 [2001:db8::7]:40000 -> [2001:db8::1]:25", -1},
	    {"PROXY TCP6 ::ffff:198.51.100.7 ::1 1 2\r\n", "v1 [::ffff:198.51.100.7]:1 -> [::1]:2",
	     -1},
	    {"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
	     "v1 0.0.0.0:0 -> 255.255.255.255:65535", -1},
	    {"PROXY UNKNOWN\r\n", "v1 local", -1},
	    {"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", "v1 local", -1},
	    /* What follows the header is the client's, not ours. */
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\r\nEHLO x\r\n",
	     "v1 198.51.100.7:40000 -> 203.0.113.1:25", 46},
	    /* The longest TCP6 line (104 bytes). */
	    {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	     "v1 [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 -> "
	     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	     -1},
	    /* Invalid. */
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\rX", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25 \r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25 1\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7  203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 65536 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 -1 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 400000 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 4x 25\r\n", "invalid", 0},
	    {"PROXY TCP4 2001:db8::7 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY TCP6 198.51.100.7 2001:db8::1 40000 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY TCP4 198.051.100.7 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY TCP5 198.51.100.7 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY tcp4 198.51.100.7 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"PROXY UNKNOWNX\r\n", "invalid", 0},
	    {"PROXY \r\n", "invalid", 0},
	    {"PROXY\r\n", "invalid", 0},
	    {"proxy TCP4 198.51.100.7 203.0.113.1 40000 25\r\n", "invalid", 0},
	    {"EHLO client.example\r\n", "invalid", 0},
	    {"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\x80\r\n", "invalid", 0},
	    {"PROXY UNKNOWN \t\r\n", "invalid", 0},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		size_t len = strlen(t[i].in);
		char got[200];
		int rc = check_all_splits((const unsigned char *)t[i].in, len, got, sizeof got);
		int wantlen = t[i].len < 0 ? (int)strlen(t[i].in) : t[i].len;
		if (strcmp(got, t[i].want) != 0 || (rc > 0 && rc != wantlen)) {
			print_error("v1 case %zu %.60s: got=%s (%d) want=%s (%d)\n", i, t[i].in,
			            got, rc, t[i].want, wantlen);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_v1_need_more(void **state)
{
	(void)state;
	static const char *const prefixes[] = {
	    "", "P", "PROXY", "PROXY ", "PROXY TCP4 198.51.100.7", "PROXY UNKNOWN\r",
	};
	struct proxy_proto_header h;
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		int rc = proxy_proto_parse(prefixes[i], strlen(prefixes[i]), &h);
		if (rc != PROXY_PROTO_NEED_MORE)
			fail_msg("prefix %zu \"%s\": got=%d want=need-more", i, prefixes[i], rc);
	}
	/* The longest line allowed is 107 bytes with its CRLF ("PROXY UNKNOWN" and
	 * two 39-character addresses, two 5-digit ports): that is taken, 108 is not;
	 * 105 bytes without a CR still wait for one, 106 cannot end in time. */
	char line[PROXY_PROTO_V1_MAX + 2];
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(proxy_proto_parse(line, PROXY_PROTO_V1_MAX - 2, &h),
	                 PROXY_PROTO_NEED_MORE);
	assert_int_equal(proxy_proto_parse(line, PROXY_PROTO_V1_MAX - 1, &h), PROXY_PROTO_INVALID);
	memcpy(line + PROXY_PROTO_V1_MAX - 2, "\r\n", 2);
	char got[64];
	int rc = check_all_splits((unsigned char *)line, PROXY_PROTO_V1_MAX, got, sizeof got);
	assert_string_equal(got, "v1 local");
	assert_int_equal(rc, PROXY_PROTO_V1_MAX);
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + PROXY_PROTO_V1_MAX - 1, "\r\n", 2);
	rc = check_all_splits((unsigned char *)line, PROXY_PROTO_V1_MAX + 1, got, sizeof got);
	assert_string_equal(got, "invalid");
	/* Early invalid: a wrong first byte needs no more input. */
	assert_int_equal(proxy_proto_parse("E", 1, &h), PROXY_PROTO_INVALID);
	assert_int_equal(proxy_proto_parse("PROXX", 5, &h), PROXY_PROTO_INVALID);
	/* A NUL inside the line. */
	static const char nul[] = "PROXY TCP4 198.51.100.7 203.0.113.1 40000 2\0"
	                          "5\r\n";
	assert_int_equal(proxy_proto_parse(nul, sizeof nul - 1, &h), PROXY_PROTO_INVALID);
}

/* ------------------------------------------------------------ version 2 */

struct v2case {
	const char *name;
	unsigned char ver_cmd, fam;
	unsigned char block[80];
	size_t blen;
	const char *want;
};

static void test_v2_table(void **state)
{
	(void)state;
	static const struct v2case t[] = {
	    {"tcp4",
	     0x21,
	     0x11,
	     {198, 51, 100, 7, 203, 0, 113, 1, 0x9c, 0x40, 0, 25},
	     12,
	     "v2 198.51.100.7:40000 -> 203.0.113.1:25"},
	    {"tcp6",
	     0x21,
	     0x21,
	     {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    7,    0x20, 0x01,
	      0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x9c, 0x40, 0,    25},
	     36,
	     "v2 [2001:db8::7]:40000 -> [2001:db8::1]:25"},
	    {"tcp4 with TLVs (ALPN, authority, NOOP padding)",
	     0x21,
	     0x11,
	     {198, 51,  100, 7,   203, 0,    113, 1, 0x9c, 0x40, 0,   25,   0x01, 0,
	      4,   's', 'm', 't', 'p', 0x02, 0,   3, 'm',  'x',  '1', 0x04, 0,    0},
	     28,
	     "v2 198.51.100.7:40000 -> 203.0.113.1:25"},
	    {"local, no addresses", 0x20, 0x00, {0}, 0, "v2 local"},
	    {"local ignores family and block", 0x20, 0x11, {1, 2, 3}, 3, "v2 local"},
	    {"local with an odd family byte", 0x20, 0xff, {0}, 0, "v2 local"},
	    {"proxy over unspec", 0x21, 0x00, {0}, 0, "v2 local"},
	    {"proxy over unspec with a block", 0x21, 0x00, {9, 9}, 2, "v2 local"},
	    {"version 1 in a v2 header", 0x11, 0x11, {0}, 12, "invalid"},
	    {"version 3", 0x31, 0x11, {0}, 12, "invalid"},
	    {"command 2", 0x22, 0x11, {0}, 12, "invalid"},
	    {"udp4", 0x21, 0x12, {0}, 12, "invalid"},
	    {"udp6", 0x21, 0x22, {0}, 36, "invalid"},
	    {"unix stream", 0x21, 0x31, {0}, 0, "invalid"},
	    {"family 4", 0x21, 0x41, {0}, 12, "invalid"},
	    {"tcp4 transport 0", 0x21, 0x10, {0}, 12, "invalid"},
	    {"tcp4 block too short", 0x21, 0x11, {0}, 11, "invalid"},
	    {"tcp6 block too short", 0x21, 0x21, {0}, 12, "invalid"},
	    {"truncated TLV head",
	     0x21,
	     0x11,
	     {198, 51, 100, 7, 203, 0, 113, 1, 0x9c, 0x40, 0, 25, 0x01, 0},
	     14,
	     "invalid"},
	    {"TLV longer than the block",
	     0x21,
	     0x11,
	     {198, 51, 100, 7, 203, 0, 113, 1, 0x9c, 0x40, 0, 25, 0x01, 0, 5, 's', 'm', 't', 'p'},
	     19,
	     "invalid"},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		unsigned char in[16 + 80 + 8];
		size_t len = v2(in, t[i].ver_cmd, t[i].fam, t[i].block, t[i].blen);
		char got[200];
		int rc = check_all_splits(in, len, got, sizeof got);
		if (strcmp(got, t[i].want) != 0 || (rc > 0 && (size_t)rc != len)) {
			print_error("v2 case \"%s\": got=%s (%d) want=%s (%zu)\n", t[i].name, got,
			            rc, t[i].want, len);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_v2_bounds(void **state)
{
	(void)state;
	/* The largest block accepted, all TLV padding; then one byte more. */
	static unsigned char in[16 + PROXY_PROTO_V2_MAX_LEN + 16];
	static unsigned char block[PROXY_PROTO_V2_MAX_LEN + 1];
	static const unsigned char addrs[12] = {198, 51, 100, 7, 203, 0, 113, 1, 0x9c, 0x40, 0, 25};
	memcpy(block, addrs, 12);
	size_t tlv = PROXY_PROTO_V2_MAX_LEN - 12 - 3;
	block[12] = 0x04; /* PP2_TYPE_NOOP */
	block[13] = (unsigned char)(tlv >> 8);
	block[14] = (unsigned char)tlv;
	size_t len = v2(in, 0x21, 0x11, block, PROXY_PROTO_V2_MAX_LEN);
	char got[200];
	int rc = check_all_splits(in, len, got, sizeof got);
	assert_string_equal(got, "v2 198.51.100.7:40000 -> 203.0.113.1:25");
	assert_int_equal(rc, PROXY_PROTO_MAX);

	tlv++;
	block[13] = (unsigned char)(tlv >> 8);
	block[14] = (unsigned char)tlv;
	len = v2(in, 0x21, 0x11, block, PROXY_PROTO_V2_MAX_LEN + 1);
	struct proxy_proto_header h;
	/* Invalid as soon as the length field is read. */
	assert_int_equal(proxy_proto_parse(in, 16, &h), PROXY_PROTO_INVALID);
	assert_int_equal(proxy_proto_parse(in, len, &h), PROXY_PROTO_INVALID);

	/* Early invalid: a bad signature byte, version or family is refused with
	 * what is there. */
	unsigned char bad[16];
	memcpy(bad, v2sig, 12);
	bad[5] = 'X';
	assert_int_equal(proxy_proto_parse(bad, 6, &h), PROXY_PROTO_INVALID);
	memcpy(bad, v2sig, 12);
	bad[12] = 0x11;
	assert_int_equal(proxy_proto_parse(bad, 13, &h), PROXY_PROTO_INVALID);
	bad[12] = 0x21;
	bad[13] = 0x12;
	assert_int_equal(proxy_proto_parse(bad, 14, &h), PROXY_PROTO_INVALID);
	bad[13] = 0x11;
	assert_int_equal(proxy_proto_parse(bad, 14, &h), PROXY_PROTO_NEED_MORE);
	/* A lone CR (the first byte of a v2 signature, but also of an empty SMTP
	 * line) waits; CR LF CR LF NUL... decides. */
	assert_int_equal(proxy_proto_parse("\r\n\r\n", 4, &h), PROXY_PROTO_NEED_MORE);
	assert_int_equal(proxy_proto_parse("\r\nQUIT", 6, &h), PROXY_PROTO_INVALID);
}

/* The bytes after a complete v2 header stay the caller's. */
static void test_v2_leftover(void **state)
{
	(void)state;
	unsigned char in[64];
	static const unsigned char addrs[12] = {192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 2};
	size_t len = v2(in, 0x21, 0x11, addrs, 12);
	memcpy(in + len, "EHLO x\r\n", 8);
	struct proxy_proto_header h;
	assert_int_equal(proxy_proto_parse(in, len + 8, &h), (int)len);
	assert_false(h.local);
}

/* ------------------------------------------------------------ CIDR lists */

struct cidrcase {
	const char *list;
	const char *addr;
	int want; /* 1 match, 0 no match, -1 the list is an error */
};

static void test_cidr_table(void **state)
{
	(void)state;
	static const struct cidrcase t[] = {
	    {"127.0.0.2/32", "127.0.0.2", 1},
	    {"127.0.0.2/32", "127.0.0.1", 0},
	    {"127.0.0.2", "127.0.0.2", 1},
	    {"10.0.0.0/8", "10.255.1.2", 1},
	    {"10.0.0.0/8", "11.0.0.1", 0},
	    {"10.0.0.0/8", "::ffff:10.1.2.3", 1},
	    {"::ffff:10.0.0.0/104", "10.1.2.3", 1},
	    {" 192.0.2.0/24 ,\t10.0.0.0/8 ", "10.0.0.1", 1},
	    {"192.0.2.0/24, 10.0.0.0/8", "192.0.2.200", 1},
	    {"0.0.0.0/0", "203.0.113.9", 1},
	    {"0.0.0.0/0", "2001:db8::1", 0},
	    {"::/0", "2001:db8::1", 1},
	    {"::/0", "203.0.113.9", 1}, /* v4-mapped is inside ::/0 */
	    {"2001:db8::/32", "2001:db8:1::5", 1},
	    {"2001:db8::/32", "2001:db9::5", 0},
	    {"2001:db8::1/128", "2001:db8::1", 1},
	    {"172.16.0.0/12", "172.31.255.255", 1},
	    {"172.16.0.0/12", "172.32.0.0", 0},
	    {"", "127.0.0.1", 0},
	    {"   ", "127.0.0.1", 0},
	    /* Errors. */
	    {"10.1.0.0/8", NULL, -1},
	    {"10.0.0.0/33", NULL, -1},
	    {"2001:db8::/129", NULL, -1},
	    {"10.0.0.0/", NULL, -1},
	    {"10.0.0.0/x", NULL, -1},
	    {"10.0.0.0/-1", NULL, -1},
	    {"10.0.0/8", NULL, -1},
	    {"localhost", NULL, -1},
	    {"10.0.0.0/8,", NULL, -1},
	    {"10.0.0.0/8,,192.0.2.0/24", NULL, -1},
	    {",10.0.0.0/8", NULL, -1},
	    {"fe80::1%eth0", NULL, -1},
	    {"10.0.0.0 /8", NULL, -1},
	    {"[::1]", NULL, -1},
	    {"10.0.0.0/0008", NULL, -1},
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct proxy_proto_cidr v[PROXY_PROTO_CIDRS_MAX];
		size_t n;
		char why[256] = "";
		int rc = proxy_proto_cidr_parse(t[i].list, v, PROXY_PROTO_CIDRS_MAX, &n, why,
		                                sizeof why);
		int got;
		if (rc < 0) {
			got = -1;
			if (why[0] == '\0' || strchr(why, '\n') != NULL) {
				print_error("cidr case %zu: no one-line reason\n", i);
				failures++;
			}
		} else {
			struct sockaddr_storage ss;
			memset(&ss, 0, sizeof ss);
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			if (inet_pton(AF_INET, t[i].addr, &s4->sin_addr) == 1)
				s4->sin_family = AF_INET;
			else if (inet_pton(AF_INET6, t[i].addr, &s6->sin6_addr) == 1)
				s6->sin6_family = AF_INET6;
			else
				fail_msg("bad test address %s", t[i].addr);
			got = proxy_proto_cidr_match(v, n, (struct sockaddr *)&ss) ? 1 : 0;
		}
		if (got != t[i].want) {
			print_error("cidr case %zu \"%s\" %s: got=%d want=%d (%s)\n", i, t[i].list,
			            t[i].addr ? t[i].addr : "", got, t[i].want, why);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_cidr_limits(void **state)
{
	(void)state;
	char list[PROXY_PROTO_CIDRS_MAX * 16 + 32] = "";
	size_t o = 0;
	for (int i = 0; i <= PROXY_PROTO_CIDRS_MAX; i++)
		o += (size_t)snprintf(list + o, sizeof list - o, "%s10.0.%d.0/24", i ? "," : "", i);
	struct proxy_proto_cidr v[PROXY_PROTO_CIDRS_MAX];
	size_t n;
	char why[256];
	assert_int_equal(
	    proxy_proto_cidr_parse(list, v, PROXY_PROTO_CIDRS_MAX, &n, why, sizeof why), -1);
	assert_non_null(strstr(why, "more than"));
	/* The reason quotes the item and says what is wrong. */
	assert_int_equal(proxy_proto_cidr_parse("10.1.0.0/8", v, 4, &n, why, sizeof why), -1);
	assert_string_equal(why, "\"10.1.0.0/8\" has bits set past its prefix length /8");
	/* An AF_UNIX or unset address never matches. */
	assert_int_equal(proxy_proto_cidr_parse("::/0", v, 4, &n, why, sizeof why), 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	ss.ss_family = AF_UNIX;
	assert_false(proxy_proto_cidr_match(v, n, (struct sockaddr *)&ss));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_table),    cmocka_unit_test(test_v1_need_more),
	    cmocka_unit_test(test_v2_table),    cmocka_unit_test(test_v2_bounds),
	    cmocka_unit_test(test_v2_leftover), cmocka_unit_test(test_cidr_table),
	    cmocka_unit_test(test_cidr_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
