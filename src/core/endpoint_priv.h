/* endpoint_priv: what endpoint.c and endpoint_parse.c share (the address
 * literals, their identity and their text form live in endpoint_parse.c, the
 * SMTPD_HOSTS / SMTPD_PORTS loader in endpoint.c). Pure, like both files. Not
 * for other modules: they see endpoint.h's functions only. */
#ifndef MAILPORT_ENDPOINT_PRIV_H
#define MAILPORT_ENDPOINT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"

/* RFC 1035 section 2.3.4: a label is at most 63 octets and a name at most 255
 * octets on the wire, which is 253 characters when written with dots. */
#define ENDPOINT_LABEL_MAX 63
#define ENDPOINT_NAME_MAX  253

/* A piece of the caller's string: items are never copied, only sliced. */
struct endpoint_slice {
	const char *p;
	size_t n;
};

/* Why an IP literal was refused; the caller words the message. */
enum endpoint_lit {
	ENDPOINT_LIT_OK,
	ENDPOINT_LIT_NOT_IP,    /* not an IP literal (may still be a hostname) */
	ENDPOINT_LIT_BAD_ZONE,  /* the zone names no interface */
	ENDPOINT_LIT_ZONE_NOLL, /* a zone on an address that is not link-local */
	ENDPOINT_LIT_NEED_ZONE, /* link-local without a zone: bind(2) would fail */
	ENDPOINT_LIT_MAPPED,    /* ::ffff:a.b.c.d */
	ENDPOINT_LIT_MULTICAST,
};

/* The identity of an address for duplicate and conflict checks. */
struct endpoint_key {
	int family;
	unsigned char a[16];
	uint32_t scope;
	bool any;
};

/* endpoint_parse.c */
struct endpoint_slice endpoint_trim(struct endpoint_slice s);
bool endpoint_is_hostname(struct endpoint_slice s);
enum endpoint_lit endpoint_parse_literal(struct endpoint_slice s, const struct endpoint_env *env,
                                         struct sockaddr_storage *ss, bool *maybe_name);
void endpoint_key_of(const struct sockaddr_storage *ss, struct endpoint_key *k);
bool endpoint_key_same(const struct endpoint_key *x, const struct endpoint_key *y);
void endpoint_fill(struct endpoint *e, const struct sockaddr_storage *ss, uint16_t port,
                   const struct endpoint_env *env);
bool endpoint_parse_port(struct endpoint_slice s, uint16_t *port);

#endif
