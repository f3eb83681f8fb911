/* proxy_proto: the PROXY protocol header, versions 1 and 2 (see proxy_proto.h).
 * The specification is HAProxy's doc/proxy-protocol.txt; section numbers below
 * refer to it. Like Postfix's haproxy_srvr.c this only parses: the session
 * reads, keeps the bytes, and asks again after each read. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* 2.1: "PROXY" and one space start every version 1 header. */
static const char proxy_proto_v1_sig[] = "PROXY ";
#define PROXY_PROTO_V1_SIG_LEN (sizeof proxy_proto_v1_sig - 1)

/* 2.2: the twelve bytes that start every version 2 header; they contain a NUL
 * and "\r\n\r\n", so no text protocol can start with them by accident. */
static const unsigned char proxy_proto_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                     0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* 2.2: the 13th byte is the version (high nibble, 2) and the command (low
 * nibble); the 14th the address family (high) and the transport (low). */
#define PROXY_PROTO_V2_VERSION   0x20
#define PROXY_PROTO_CMD_LOCAL    0x0
#define PROXY_PROTO_CMD_PROXY    0x1
#define PROXY_PROTO_AF_UNSPEC    0x0
#define PROXY_PROTO_AF_INET      0x1
#define PROXY_PROTO_AF_INET6     0x2
#define PROXY_PROTO_AF_UNIX      0x3
#define PROXY_PROTO_TRANS_STREAM 0x1
/* 2.2: the address blocks of TCP over IPv4 and over IPv6. */
#define PROXY_PROTO_V2_INET_LEN  12
#define PROXY_PROTO_V2_INET6_LEN 36
/* 2.2.7: a TLV is a type byte and a 16-bit big-endian length, then the value. */
#define PROXY_PROTO_TLV_HEAD 3

/* ---- version 1 --------------------------------------------------------- */

/* Split off the next space-separated field of line[*pos..end): exactly one
 * space between fields (2.1: "a single space"). Returns its length, 0 when there
 * is none. */
static size_t proxy_proto_field(const char *line, size_t end, size_t *pos, const char **field)
{
	size_t start = *pos, i = start;
	while (i < end && line[i] != ' ')
		i++;
	*field = line + start;
	*pos = i < end ? i + 1 : i;
	return i - start;
}

static bool proxy_proto_field_is(const char *f, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(f, word, n) == 0;
}

/* 2.1: an address in its family's usual text form; inet_pton wants it
 * NUL-terminated, and rejects IPv4 with leading zeros or fewer than 4 parts. */
static bool proxy_proto_v1_addr(const char *f, size_t n, int family, struct sockaddr_storage *out)
{
	char text[INET6_ADDRSTRLEN];
	if (n == 0 || n >= sizeof text)
		return false;
	memcpy(text, f, n);
	text[n] = '\0';
	memset(out, 0, sizeof *out);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
	sin6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

/* 2.1: a port is a decimal number 0..65535 (five digits at most). */
static bool proxy_proto_v1_port(const char *f, size_t n, struct sockaddr_storage *ss)
{
	if (n == 0 || n > 5)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (f[i] < '0' || f[i] > '9')
			return false;
		v = v * 10 + (unsigned)(f[i] - '0');
	}
	if (v > 65535)
		return false;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)v);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)v);
	return true;
}

/* The fields of a complete line line[0..end) (without its CRLF). */
static int proxy_proto_v1_fields(const char *line, size_t end, struct proxy_proto_header *out)
{
	size_t pos = PROXY_PROTO_V1_SIG_LEN;
	const char *f;
	size_t n = proxy_proto_field(line, end, &pos, &f);
	out->version = 1;
	/* 2.1: after UNKNOWN the receiver ignores the rest of the line and uses
	 * the connection's own addresses. */
	if (proxy_proto_field_is(f, n, "UNKNOWN")) {
		out->local = true;
		return 0;
	}
	int family;
	if (proxy_proto_field_is(f, n, "TCP4"))
		family = AF_INET;
	else if (proxy_proto_field_is(f, n, "TCP6"))
		family = AF_INET6;
	else
		return -1;
	out->local = false;
	n = proxy_proto_field(line, end, &pos, &f);
	if (!proxy_proto_v1_addr(f, n, family, &out->src))
		return -1;
	n = proxy_proto_field(line, end, &pos, &f);
	if (!proxy_proto_v1_addr(f, n, family, &out->dst))
		return -1;
	n = proxy_proto_field(line, end, &pos, &f);
	if (!proxy_proto_v1_port(f, n, &out->src))
		return -1;
	/* The last field runs to the end of the line: a trailing space or a
	 * sixth field fails here. */
	if (pos >= end || memchr(line + pos, ' ', end - pos) != NULL)
		return -1;
	n = end - pos;
	f = line + pos;
	if (!proxy_proto_v1_port(f, n, &out->dst))
		return -1;
	return 0;
}

static int proxy_proto_v1(const char *p, size_t len, struct proxy_proto_header *out)
{
	size_t have = len < PROXY_PROTO_V1_SIG_LEN ? len : PROXY_PROTO_V1_SIG_LEN;
	if (memcmp(p, proxy_proto_v1_sig, have) != 0)
		return PROXY_PROTO_INVALID;
	/* Look for the CRLF within the longest line allowed: its CR is at most at
	 * PROXY_PROTO_V1_MAX - 2. Anything but printable ASCII before it, a CR not
	 * followed by LF or an LF not preceded by CR ends the header as invalid at
	 * once, and so does a line that can no longer end in time. */
	size_t last_cr = PROXY_PROTO_V1_MAX - 2;
	size_t scan = len <= last_cr ? len : last_cr + 1;
	for (size_t i = have; i < scan; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r') {
			if (i + 1 == len)
				return PROXY_PROTO_NEED_MORE;
			if (p[i + 1] != '\n')
				return PROXY_PROTO_INVALID;
			if (proxy_proto_v1_fields(p, i, out) < 0)
				return PROXY_PROTO_INVALID;
			return (int)(i + 2);
		}
		if (c < 0x20 || c > 0x7e)
			return PROXY_PROTO_INVALID;
	}
	return len <= last_cr ? PROXY_PROTO_NEED_MORE : PROXY_PROTO_INVALID;
}

/* ---- version 2 --------------------------------------------------------- */

/* 2.2.7: TLVs fill the rest of the block exactly; we need none of them
 * (SSL details, ALPN, cloud endpoint ids), but a block that is not a clean
 * sequence of them is malformed. */
static bool proxy_proto_v2_tlvs(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (len - i < PROXY_PROTO_TLV_HEAD)
			return false;
		size_t vlen = ((size_t)p[i + 1] << 8) | p[i + 2];
		if (len - i - PROXY_PROTO_TLV_HEAD < vlen)
			return false;
		i += PROXY_PROTO_TLV_HEAD + vlen;
	}
	return true;
}

static int proxy_proto_v2(const unsigned char *p, size_t len, struct proxy_proto_header *out)
{
	size_t have = len < sizeof proxy_proto_v2_sig ? len : sizeof proxy_proto_v2_sig;
	if (memcmp(p, proxy_proto_v2_sig, have) != 0)
		return PROXY_PROTO_INVALID;
	/* Judge each fixed byte as soon as it is there. */
	if (len <= 12)
		return PROXY_PROTO_NEED_MORE;
	unsigned ver = p[12] & 0xf0, cmd = p[12] & 0x0f;
	if (ver != PROXY_PROTO_V2_VERSION ||
	    (cmd != PROXY_PROTO_CMD_LOCAL && cmd != PROXY_PROTO_CMD_PROXY))
		return PROXY_PROTO_INVALID;
	/* 2.2: with LOCAL the family byte and the address block are ignored. */
	unsigned fam = 0, trans = 0;
	if (len > 13 && cmd == PROXY_PROTO_CMD_PROXY) {
		fam = p[13] >> 4;
		trans = p[13] & 0x0f;
		/* Only TCP over IPv4 or IPv6 carries a client we can use; UNSPEC
		 * means "use the real connection". UNIX sockets and datagrams are
		 * refused, as Postfix does. */
		if (fam != PROXY_PROTO_AF_UNSPEC &&
		    ((fam != PROXY_PROTO_AF_INET && fam != PROXY_PROTO_AF_INET6) ||
		     trans != PROXY_PROTO_TRANS_STREAM))
			return PROXY_PROTO_INVALID;
	}
	if (len < PROXY_PROTO_V2_FIXED)
		return PROXY_PROTO_NEED_MORE;
	size_t blen = ((size_t)p[14] << 8) | p[15];
	if (blen > PROXY_PROTO_V2_MAX_LEN)
		return PROXY_PROTO_INVALID;
	size_t need = blen;
	if (cmd == PROXY_PROTO_CMD_PROXY && fam == PROXY_PROTO_AF_INET)
		need = PROXY_PROTO_V2_INET_LEN;
	else if (cmd == PROXY_PROTO_CMD_PROXY && fam == PROXY_PROTO_AF_INET6)
		need = PROXY_PROTO_V2_INET6_LEN;
	if (blen < need)
		return PROXY_PROTO_INVALID;
	if (len - PROXY_PROTO_V2_FIXED < blen)
		return PROXY_PROTO_NEED_MORE;

	const unsigned char *b = p + PROXY_PROTO_V2_FIXED;
	memset(out, 0, sizeof *out);
	out->version = 2;
	if (cmd == PROXY_PROTO_CMD_LOCAL || fam == PROXY_PROTO_AF_UNSPEC) {
		out->local = true;
		return (int)(PROXY_PROTO_V2_FIXED + blen);
	}
	if (!proxy_proto_v2_tlvs(b + need, blen - need))
		return PROXY_PROTO_INVALID;
	/* 2.2: source address, destination address, source port, destination
	 * port, all in network byte order, which is how sockaddrs keep them. */
	if (fam == PROXY_PROTO_AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, b, 4);
		memcpy(&d->sin_addr, b + 4, 4);
		memcpy(&s->sin_port, b + 8, 2);
		memcpy(&d->sin_port, b + 10, 2);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, b, 16);
		memcpy(&d->sin6_addr, b + 16, 16);
		memcpy(&s->sin6_port, b + 32, 2);
		memcpy(&d->sin6_port, b + 34, 2);
	}
	return (int)(PROXY_PROTO_V2_FIXED + blen);
}

int proxy_proto_parse(const void *data, size_t len, struct proxy_proto_header *out)
{
	const unsigned char *p = data;
	if (len == 0)
		return PROXY_PROTO_NEED_MORE;
	/* The two versions are told apart by their first byte (2.2). */
	if (p[0] == proxy_proto_v2_sig[0])
		return proxy_proto_v2(p, len, out);
	memset(out, 0, sizeof *out);
	return proxy_proto_v1(data, len, out);
}

/* ---- CIDR lists -------------------------------------------------------- */

/* The 16-byte form: IPv4 as ::ffff:a.b.c.d. */
static void proxy_proto_map4(const struct in_addr *a, uint8_t out[16])
{
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, a, 4);
}

static bool proxy_proto_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

static bool proxy_proto_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* An item as an error quotes it: one line (control characters shown as '?'),
 * cut after PROXY_PROTO_QUOTE_CUT characters. */
#define PROXY_PROTO_QUOTE_CUT 60
static void proxy_proto_quote(char *out, size_t outlen, const char *s, size_t n)
{
	size_t o = 0;
	if (outlen == 0)
		return;
	for (size_t i = 0; i < n && o + 4 < outlen; i++) {
		if (i == PROXY_PROTO_QUOTE_CUT) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		unsigned char c = (unsigned char)s[i];
		out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	out[o] = '\0';
}

/* One item "addr" or "addr/len", blanks already trimmed, NUL-terminated. */
static int proxy_proto_cidr_item(const char *item, struct proxy_proto_cidr *out, char *why,
                                 size_t whylen)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(item, '/');
	size_t alen = slash ? (size_t)(slash - item) : strlen(item);
	if (alen == 0 || alen >= sizeof addr)
		goto bad;
	memcpy(addr, item, alen);
	addr[alen] = '\0';
	unsigned max, base;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		proxy_proto_map4(&a4, out->addr);
		max = 32;
		base = 96;
	} else if (inet_pton(AF_INET6, addr, &a6) == 1) {
		memcpy(out->addr, &a6, 16);
		max = 128;
		base = 0;
	} else {
		goto bad;
	}
	unsigned len = max;
	if (slash != NULL) {
		const char *d = slash + 1;
		size_t nd = strlen(d);
		if (nd == 0 || nd > 3)
			goto bad;
		len = 0;
		for (size_t i = 0; i < nd; i++) {
			if (d[i] < '0' || d[i] > '9')
				goto bad;
			len = len * 10 + (unsigned)(d[i] - '0');
		}
		if (len > max)
			goto bad;
	}
	out->prefix = base + len;
	/* The address itself must be the network: bits past the prefix are
	 * almost always a typo that would trust something else. */
	for (unsigned bit = out->prefix; bit < 128; bit++) {
		if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
			char q[PROXY_PROTO_QUOTE_CUT + 8];
			proxy_proto_quote(q, sizeof q, item, strlen(item));
			snprintf(why, whylen, "\"%s\" has bits set past its prefix length /%u", q,
			         len);
			return -1;
		}
	}
	return 0;
bad:;
	char q[PROXY_PROTO_QUOTE_CUT + 8];
	proxy_proto_quote(q, sizeof q, item, strlen(item));
	snprintf(why, whylen,
	         "\"%s\" is not an IPv4 or IPv6 address or CIDR block (10.0.0.0/8, "
	         "2001:db8::/32)",
	         q);
	return -1;
}

int proxy_proto_cidr_parse(const char *text, struct proxy_proto_cidr *out, size_t max, size_t *n,
                           char *why, size_t whylen)
{
	*n = 0;
	const char *p = text;
	while (proxy_proto_is_blank(*p))
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *s = p, *e = end;
		while (s < e && proxy_proto_is_blank(*s))
			s++;
		while (e > s && proxy_proto_is_blank(e[-1]))
			e--;
		char item[INET6_ADDRSTRLEN + 8];
		if (s == e) {
			snprintf(why, whylen, "empty item in the list");
			return -1;
		}
		if ((size_t)(e - s) >= sizeof item) {
			char q[PROXY_PROTO_QUOTE_CUT + 8];
			proxy_proto_quote(q, sizeof q, s, (size_t)(e - s));
			snprintf(why, whylen, "\"%s\" is not an IPv4 or IPv6 address or CIDR block",
			         q);
			return -1;
		}
		memcpy(item, s, (size_t)(e - s));
		item[e - s] = '\0';
		if (*n == max) {
			snprintf(why, whylen, "more than %zu CIDR blocks", max);
			return -1;
		}
		if (proxy_proto_cidr_item(item, &out[*n], why, whylen) < 0)
			return -1;
		(*n)++;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

bool proxy_proto_cidr_match(const struct proxy_proto_cidr *list, size_t n,
                            const struct sockaddr *sa)
{
	uint8_t a[16];
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof sin);
		proxy_proto_map4(&sin.sin_addr, a);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof sin6);
		memcpy(a, &sin6.sin6_addr, 16);
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (proxy_proto_prefix_equal(list[i].addr, a, list[i].prefix))
			return true;
	return false;
}
