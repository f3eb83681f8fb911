/* libFuzzer target for proxy_proto_parse and the SMTPD_PROXY_TRUSTED lists
 * (SPEC 7). Beyond "no crash, no read past the input" it checks the contract:
 * a complete header is no longer than the input and than PROXY_PROTO_MAX, a
 * non-local one carries IPv4 or IPv6 addresses, and every proper prefix of a
 * complete header says "need more" (so the session may parse again after each
 * read). The input is also tried as a CIDR list, matched against a few
 * addresses. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so ASan sees any read past the end. */
	uint8_t *in = malloc(size ? size : 1);
	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	struct proxy_proto_header h;
	int rc = proxy_proto_parse(in, size, &h);
	if (rc > 0) {
		if ((size_t)rc > size || rc > PROXY_PROTO_MAX || (h.version != 1 && h.version != 2))
			abort();
		if (h.version == 1 && rc > PROXY_PROTO_V1_MAX)
			abort();
		if (!h.local && ((h.src.ss_family != AF_INET && h.src.ss_family != AF_INET6) ||
		                 h.src.ss_family != h.dst.ss_family))
			abort();
		/* Prefixes: the one just short, and a few others. */
		size_t cuts[] = {(size_t)rc - 1, (size_t)rc / 2, 16, 12, 6, 1, 0};
		for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
			struct proxy_proto_header hp;
			if (cuts[i] < (size_t)rc &&
			    proxy_proto_parse(in, cuts[i], &hp) != PROXY_PROTO_NEED_MORE)
				abort();
		}
	} else if (rc != PROXY_PROTO_NEED_MORE && rc != PROXY_PROTO_INVALID) {
		abort();
	} else if (rc == PROXY_PROTO_NEED_MORE && size >= PROXY_PROTO_MAX) {
		abort(); /* the header is bounded: the caller never buffers more */
	}

	char *text = malloc(size + 1);
	if (text != NULL) {
		memcpy(text, data, size);
		text[size] = '\0';
		struct proxy_proto_cidr v[8];
		size_t n = 99;
		char why[256];
		why[0] = '\0';
		if (proxy_proto_cidr_parse(text, v, 8, &n, why, sizeof why) == 0) {
			if (n > 8)
				abort();
			struct sockaddr_in s4 = {.sin_family = AF_INET};
			struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
			inet_pton(AF_INET, "10.1.2.3", &s4.sin_addr);
			inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
			(void)proxy_proto_cidr_match(v, n, (struct sockaddr *)&s4);
			(void)proxy_proto_cidr_match(v, n, (struct sockaddr *)&s6);
		} else if (why[0] == '\0' || memchr(why, '\n', strlen(why)) != NULL) {
			abort();
		}
		free(text);
	}
	free(in);
	return 0;
}
