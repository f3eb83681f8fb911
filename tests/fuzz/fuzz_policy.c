/* libFuzzer target for the recipient policy (SPEC 8): SMTPD_DOMAINS and the
 * recipients file. The input's first line is SMTPD_DOMAINS, the rest the
 * file. Beyond "no crash, no read past the input, no leak" it checks the
 * contract:
 * - SMTPD_DOMAINS alone is accepted by policy_domains_check() exactly when a
 *   table can be built from it without a file;
 * - every line of an accepted file that is a bare address (no blanks, no
 *   comment) is accepted for an authenticated session, and stays accepted
 *   with its ASCII letters upper-cased; every "@domain" line accepts
 *   "x@domain";
 * - a verdict is one of the three values, and a NULL table accepts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
	if (!ok)
		abort();
}

/* The bare-token lines of the file: no blank or '#' anywhere, not empty. */
static void fuzz_lines(const struct policy *p, const char *text, size_t len)
{
	char tok[300], up[300];
	size_t pos = 0;
	bool first = true;
	while (pos < len) {
		const char *l = text + pos;
		const char *nl = memchr(l, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - l) : len - pos;
		pos += n + 1;
		bool bom = first && n >= 3 && memcmp(l, "\xef\xbb\xbf", 3) == 0;
		first = false;
		bool bare = !bom && n > 0 && n < sizeof tok - 2;
		for (size_t k = 0; bare && k < n; k++)
			bare = l[k] != '\0' && strchr(" \t\r\v\f#", l[k]) == NULL;
		if (!bare)
			continue;
		if (l[0] == '@') {
			tok[0] = 'x';
			memcpy(tok + 1, l, n);
			tok[n + 1] = '\0';
		} else {
			memcpy(tok, l, n);
			tok[n] = '\0';
		}
		fuzz_check(policy_check(p, tok, true) == POLICY_ACCEPT);
		size_t k = 0;
		for (; tok[k]; k++)
			up[k] = tok[k] >= 'a' && tok[k] <= 'z' ? (char)(tok[k] - 32) : tok[k];
		up[k] = '\0';
		fuzz_check(policy_check(p, up, true) == POLICY_ACCEPT);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *nl = memchr(in, '\n', size);
	size_t dlen = nl ? (size_t)(nl - in) : size;
	char *domains = malloc(dlen + 1);
	/* An exact-size copy of the file, so ASan sees any read past its end. */
	size_t flen = nl ? size - dlen - 1 : 0;
	char *file = malloc(flen ? flen : 1);
	if (domains == NULL || file == NULL) {
		free(domains);
		free(file);
		return 0;
	}
	memcpy(domains, in, dlen);
	domains[dlen] = '\0';
	if (flen)
		memcpy(file, nl + 1, flen);
	char err[512];
	struct policy *p;
	int alone = policy_new(domains, NULL, 0, &p, err, sizeof err);
	fuzz_check(alone == policy_domains_check(domains, err, sizeof err));
	fuzz_check(alone < 0 || policy_check(p, "postmaster", false) == POLICY_ACCEPT);
	policy_free(p);
	if (nl != NULL && policy_new(domains, file, flen, &p, err, sizeof err) == 0) {
		fuzz_lines(p, file, flen);
		static const char *const probes[] = {
		    "bob@example.org", "\"b o b\"@EXAMPLE.org.", "x@[192.0.2.1]", "a@b", "@", "x@.",
		    "postmaster"};
		for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
			enum policy_verdict v = policy_check(p, probes[i], false);
			fuzz_check(v == POLICY_ACCEPT || v == POLICY_RELAY_DENIED ||
			           v == POLICY_UNKNOWN_USER);
		}
		policy_free(p);
	} else if (nl != NULL) {
		fuzz_check(strlen(err) > 0 && strlen(err) < sizeof err - 1);
	}
	fuzz_check(policy_check(NULL, domains, false) == POLICY_ACCEPT);
	free(domains);
	free(file);
	return 0;
}
