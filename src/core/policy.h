/* policy: the inbound recipient policy (SPEC 8) as a pure table: which domains
 * mailport serves (SMTPD_DOMAINS) and which recipients exist there
 * (SMTPD_RECIPIENTS_FILE), and the verdict for one RCPT.
 *
 * Pure: no I/O, no clock, no libuv. The loader (src/app/policy_load.c) reads the
 * file, on the thread pool after start-up, and hands its text to policy_new();
 * the SMTP core asks policy_check() at every RCPT. A table never changes once
 * built: a reload builds a new one and swaps the pointer the core reads.
 *
 * Matching (README "Inbound policy"):
 * - Domains compare case-insensitively (ASCII letters only; UTF-8 octets, as in
 *   an SMTPUTF8 address, compare byte for byte: no IDNA mapping, so list the
 *   U-label and the xn-- form when clients may use either). A final dot is
 *   ignored. "*.example.org" matches every subdomain at any depth, never
 *   example.org itself (Postfix's parent_domain_matches_subdomains off): list
 *   the apex separately.
 * - Local parts compare case-insensitively too (ASCII letters), after removing
 *   the quotes of a quoted local part (RFC 5321 4.1.2: "bob"@x is bob@x).
 * - "@example.org" lines cover every local part of exactly that domain.
 * - An address literal (bob@[192.0.2.1]) is in no served domain. */
#ifndef MAILPORT_POLICY_H
#define MAILPORT_POLICY_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets, so an
 * address at most 254: a longer line of the file can never match. */
#define POLICY_ADDRESS_MAX 254

enum policy_verdict {
	POLICY_ACCEPT,
	/* 554 5.7.1 Relay access denied: the domain is not served and the session
	 * did not authenticate. */
	POLICY_RELAY_DENIED,
	/* 550 5.1.1 User unknown: a recipients file is in use and lists neither
	 * the address nor its @domain. */
	POLICY_UNKNOWN_USER,
};

struct policy;

/* What a table holds, for the logs and /status. */
struct policy_counts {
	size_t domains;            /* distinct SMTPD_DOMAINS patterns (0: every domain) */
	bool file;                 /* built with a recipients file */
	size_t addresses;          /* distinct addresses in the file */
	size_t at_domains;         /* distinct @domain lines in the file */
	size_t outside;            /* file lines whose domain SMTPD_DOMAINS does not serve */
	size_t outside_first_line; /* ... the first of them (0: none) */
};

/* Build a table from SMTPD_DOMAINS (`domains`: a comma list, "" or blanks only
 * = every domain) and, when `recipients` is not NULL, the text of
 * SMTPD_RECIPIENTS_FILE (`len` octets, not necessarily NUL-terminated; one
 * address or "@domain" a line, "#" starts a comment, blank lines and
 * surrounding whitespace ignored, CRLF line ends accepted). Returns 0 with *out
 * set (free with policy_free), or -1 with *out NULL and a one-line reason in
 * err, without the setting's name: `"exa mple.org" is not a domain name` for
 * the list, `line 3: ...` for the file, `out of memory`. */
int policy_new(const char *domains, const char *recipients, size_t len, struct policy **out,
               char *err, size_t errlen);
void policy_free(struct policy *p); /* NULL is a no-op */

/* SMTPD_DOMAINS alone, for the settings table: 0, or -1 with the reason. */
int policy_domains_check(const char *domains, char *err, size_t errlen);

/* The verdict for the forward path of one RCPT (without brackets, as the SMTP
 * core parsed it: "bob@example.org", "\"b o b\"@example.org", or "postmaster"
 * alone, which is always accepted, RFC 5321 4.5.1). A NULL table accepts
 * everything. An authenticated session may relay to any domain outside
 * SMTPD_DOMAINS without a file check; in a served domain the file applies to it
 * as to anyone (Postfix: local recipient checks apply to every client). */
enum policy_verdict policy_check(const struct policy *p, const char *path, bool authenticated);

void policy_counts(const struct policy *p, struct policy_counts *out);

#endif
