/* config_check: value checkers and parsers of the settings table that need no
 * helper of config.c's own (split from config.c, which passed 1,000 lines). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "proxy_proto.h"

unsigned config_port_list_next(const char **cursor)
{
	const char *p = *cursor;
	while (*p == ' ' || *p == '\t' || *p == ',')
		p++;
	unsigned port = 0;
	while (*p >= '0' && *p <= '9')
		port = port * 10 + (unsigned)(*p++ - '0');
	*cursor = p;
	return port <= 65535 ? port : 0;
}

/* SMTPD_PROXY_TRUSTED: parsed by the same code the server uses to match peers. */
int config_check_cidrs(char *value, char *why, size_t whylen)
{
	struct proxy_proto_cidr v[PROXY_PROTO_CIDRS_MAX];
	size_t n;
	return proxy_proto_cidr_parse(value, v, PROXY_PROTO_CIDRS_MAX, &n, why, whylen);
}

/* SMTPD_DOMAINS (SPEC 8): parsed by the same code that builds the table. */
int config_check_domains(char *value, char *why, size_t whylen)
{
	return policy_domains_check(value, why, whylen);
}

int config_parse_min_free(const char *s, uint64_t *bytes, unsigned *percent)
{
	size_t len = strlen(s);
	*bytes = 0;
	*percent = 0;
	if (len == 0 || s[len - 1] != '%')
		return config_parse_size(s, bytes);
	/* "2%": whole percents below 100 (100% could never be met). */
	char digits[4];
	uint64_t n;
	if (len - 1 >= sizeof digits)
		return -1;
	memcpy(digits, s, len - 1);
	digits[len - 1] = '\0';
	if (config_parse_count(digits, &n) < 0 || n > 99)
		return -1;
	*percent = (unsigned)n;
	return 0;
}

int config_check_min_free(char *value, char *why, size_t whylen)
{
	uint64_t bytes;
	unsigned percent;
	if (config_parse_min_free(value, &bytes, &percent) == 0)
		return 0;
	bool printable = strlen(value) <= 60;
	for (const char *p = value; printable && *p; p++)
		printable = *p >= 0x20 && *p < 0x7f;
	snprintf(why, whylen,
	         "%s%s%s is not a size (bytes, or a number with K, M or G) or a percentage "
	         "(0%% to 99%%)",
	         printable ? "\"" : "", printable ? value : "the value", printable ? "\"" : "");
	return -1;
}
