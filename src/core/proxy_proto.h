/* proxy_proto: the PROXY protocol header a load balancer puts before the client's
 * first byte (HAProxy's "PROXY protocol" versions 1 and 2, SPEC 7).
 *
 * Pure: no I/O, no allocation, no clock. The caller reads into its own buffer
 * and calls proxy_proto_parse() on everything received so far, after each read;
 * the header is complete when it returns its length, and what follows it is the
 * client's own data (SMTP), which stays in the caller's buffer. This is the
 * shape of Postfix's haproxy_srvr_parse(): parsing separated from reading.
 *
 * Also here, because config validation and the session need the same syntax:
 * the CIDR list of SMTPD_PROXY_TRUSTED. */
#ifndef MAILPORT_PROXY_PROTO_H
#define MAILPORT_PROXY_PROTO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Version 1 (text): "PROXY UNKNOWN <39 chars> <39 chars> 65535 65535\r\n" is the
 * longest line the specification allows: 107 bytes with its CRLF (section 2.1). */
#define PROXY_PROTO_V1_MAX 107
/* Version 2 (binary): 16 fixed bytes, then the addresses (12 for IPv4, 36 for
 * IPv6, 216 for UNIX) and TLVs. The 16-bit length could announce 64 KiB; we take
 * at most this much after the fixed part, which leaves ample room for the TLVs
 * cloud load balancers add (AWS VPC endpoint id, Azure Private Link id, GCP PSC
 * connection id) and the SSL TLVs of HAProxy. */
#define PROXY_PROTO_V2_FIXED   16
#define PROXY_PROTO_V2_MAX_LEN 2048
/* No header is ever longer than this: callers may size a buffer with it. */
#define PROXY_PROTO_MAX (PROXY_PROTO_V2_FIXED + PROXY_PROTO_V2_MAX_LEN)
/* How long a client may take to send its header (SPEC 7). */
#define PROXY_PROTO_TIMEOUT_MS 5000

/* proxy_proto_parse() returns the header's length (> 0) when it is complete, or: */
#define PROXY_PROTO_NEED_MORE 0
#define PROXY_PROTO_INVALID   (-1)

struct proxy_proto_header {
	unsigned version; /* 1 or 2 */
	/* The header carries no client address: version 2 LOCAL (a load balancer's
	 * own health check), version 2 PROXY over AF_UNSPEC, version 1 UNKNOWN. The
	 * connection's own addresses apply, as the specification says. */
	bool local;
	/* When !local: the client (source) and the address it connected to on the
	 * load balancer (destination), AF_INET or AF_INET6 with their ports. */
	struct sockaddr_storage src;
	struct sockaddr_storage dst;
};

/* Parse the header at the start of data[0..len). Returns its length when it is
 * complete (*out filled; data[n..len) belongs to the next protocol),
 * PROXY_PROTO_NEED_MORE when data is a proper prefix of a header that may still
 * be valid, or PROXY_PROTO_INVALID as soon as data cannot start a valid header
 * (wrong signature, a version 1 line without CRLF within PROXY_PROTO_V1_MAX
 * bytes or with a bad field, a version 2 header of an unknown version or
 * command, a transport other than TCP, a length over PROXY_PROTO_V2_MAX_LEN or
 * too short for its addresses, or malformed TLVs). Every proper prefix of a
 * complete header gives NEED_MORE, so the caller may call again after each read
 * with everything received so far. TLVs are checked for framing and skipped. */
int proxy_proto_parse(const void *data, size_t len, struct proxy_proto_header *out);

/* ---- SMTPD_PROXY_TRUSTED ---------------------------------------------- */

/* One CIDR block: an address and a prefix length. IPv4 blocks are kept as
 * v4-mapped IPv6 (::ffff:0:0/96 + prefix), so a peer on a dual-stack listener
 * written ::ffff:10.0.0.1 matches 10.0.0.0/8. */
struct proxy_proto_cidr {
	uint8_t addr[16];
	unsigned prefix; /* 0..128, counted on the 16-byte form */
};

/* Most blocks in the list: a configuration, not a database. */
#define PROXY_PROTO_CIDRS_MAX 64

/* Parse "10.0.0.0/8, 192.0.2.7, 2001:db8::/32" (blanks around items ignored; an
 * address without /len is a single host). Bits set past the prefix are an error,
 * as a typo ("10.1.0.0/8") would otherwise widen the trust silently. Fills
 * out[0..*n) (room for `max`). Returns 0, or -1 with the reason in why (the text
 * after "SMTPD_PROXY_TRUSTED: "). An empty text gives *n = 0. */
int proxy_proto_cidr_parse(const char *text, struct proxy_proto_cidr *out, size_t max, size_t *n,
                           char *why, size_t whylen);

/* True when sa (AF_INET or AF_INET6, v4-mapped or not) is in one of the blocks. */
bool proxy_proto_cidr_match(const struct proxy_proto_cidr *list, size_t n,
                            const struct sockaddr *sa);

#endif
