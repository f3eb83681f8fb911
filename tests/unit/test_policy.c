/* Tests for the inbound recipient policy (SPEC 8): SMTPD_DOMAINS parsing and
 * matching, the recipients file's syntax and errors, the verdicts, and the
 * check at RCPT inside the pure SMTP core (replies, events, the error count, a
 * table swapped under a live session). Table-driven: got=... want=... */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "policy.h"
#include "smtp_proto.h"

static const char *verdict_name(enum policy_verdict v)
{
	return v == POLICY_ACCEPT ? "accept" : v == POLICY_RELAY_DENIED ? "relay" : "unknown";
}

static struct policy *build(const char *domains, const char *file)
{
	struct policy *p;
	char err[512];
	if (policy_new(domains, file, file ? strlen(file) : 0, &p, err, sizeof err) < 0)
		fail_msg("policy_new(%s, %s): %s", domains, file ? file : "NULL", err);
	return p;
}

struct check_case {
	const char *path;
	bool auth;
	enum policy_verdict want;
};

static void check_all(const struct policy *p, const struct check_case *c, size_t n)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		enum policy_verdict got = policy_check(p, c[i].path, c[i].auth);
		if (got != c[i].want) {
			fprintf(stderr, "policy_check(%s, auth=%d): got=%s want=%s\n", c[i].path,
			        c[i].auth, verdict_name(got), verdict_name(c[i].want));
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* ------------------------------------------------------- SMTPD_DOMAINS */

static void test_domains_syntax(void **state)
{
	(void)state;
	static const struct {
		const char *list;
		const char *want; /* NULL: valid; else a substring of the error */
	} cases[] = {
	    {"", NULL},
	    {"   ", NULL},
	    {"example.org", NULL},
	    {"Example.ORG.", NULL},
	    {" example.org , *.example.org,\texample.net ", NULL},
	    {"*.example.org", NULL},
	    {"xn--bcher-kva.example, b\xc3\xbc"
	     "cher.example",
	     NULL},
	    {"a-b.c-d.example", NULL},
	    {"example.org,", "empty item"},
	    {",example.org", "empty item"},
	    {"a.org,,b.org", "empty item"},
	    {"exa mple.org", "\"exa mple.org\" is not a domain name"},
	    {"example..org", "is not a domain name"},
	    {".example.org", "is not a domain name"},
	    {"*", "* is only allowed as a whole first label"},
	    {"*example.org", "* is only allowed"},
	    {"a.*.example.org", "* is only allowed"},
	    {"*.*.example.org", "* is only allowed"},
	    {"*.", "is not a domain name"},
	    {"@example.org", "write the domain without @"},
	    {"[192.0.2.1]", "address literals are not served"},
	    {"bob@example.org", "is not a domain name"},
	    {"under_score.example", "is not a domain name"},
	    {"0123456789012345678901234567890123456789012345678901234567890123.example",
	     "is not a domain name"},
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[512] = "";
		int rc = policy_domains_check(cases[i].list, err, sizeof err);
		struct policy *p = NULL;
		char err2[512] = "";
		int rc2 = policy_new(cases[i].list, NULL, 0, &p, err2, sizeof err2);
		policy_free(p);
		bool ok = cases[i].want == NULL ? rc == 0 && rc2 == 0
		                                : rc < 0 && rc2 < 0 && strstr(err, cases[i].want) &&
		                                      strcmp(err, err2) == 0;
		if (!ok) {
			fprintf(stderr, "domains \"%s\": got rc=%d err=\"%s\" want %s\n",
			        cases[i].list, rc, err, cases[i].want ? cases[i].want : "valid");
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

static void test_domains_match(void **state)
{
	(void)state;
	struct policy *p = build("Example.ORG, *.sub.example.net, b\xc3\xbc"
	                         "cher.example",
	                         NULL);
	static const struct check_case cases[] = {
	    {"bob@example.org", false, POLICY_ACCEPT},
	    {"BOB@EXAMPLE.org", false, POLICY_ACCEPT},
	    {"bob@example.org.", false, POLICY_ACCEPT},
	    {"\"b o b\"@example.org", false, POLICY_ACCEPT},
	    {"bob@www.example.org", false, POLICY_RELAY_DENIED}, /* no wildcard for it */
	    {"bob@badexample.org", false, POLICY_RELAY_DENIED},
	    {"bob@example.org.evil", false, POLICY_RELAY_DENIED},
	    {"bob@sub.example.net", false, POLICY_RELAY_DENIED}, /* *. is not the apex */
	    {"bob@a.sub.example.net", false, POLICY_ACCEPT},
	    {"bob@A.B.Sub.Example.NET", false, POLICY_ACCEPT}, /* any depth */
	    {"bob@xsub.example.net", false, POLICY_RELAY_DENIED},
	    {"bob@example.net", false, POLICY_RELAY_DENIED},
	    {"j\xc3\xb6ran@b\xc3\xbc"
	     "cher.example",
	     false, POLICY_ACCEPT},
	    {"j\xc3\xb6ran@B\xc3\xbc"
	     "CHER.EXAMPLE",
	     false, POLICY_ACCEPT}, /* ASCII folded */
	    {"j\xc3\xb6ran@B\xc3\x9c"
	     "CHER.EXAMPLE",
	     false, POLICY_RELAY_DENIED},                                       /* not Ü */
	    {"j\xc3\xb6ran@xn--bcher-kva.example", false, POLICY_RELAY_DENIED}, /* no IDNA */
	    {"bob@[192.0.2.1]", false, POLICY_RELAY_DENIED},
	    {"postmaster", false, POLICY_ACCEPT}, /* RFC 5321 4.5.1 */
	    {"Postmaster", false, POLICY_ACCEPT},
	    {"postmaster@elsewhere.example", false, POLICY_RELAY_DENIED},
	    /* Authenticated: any domain. */
	    {"bob@elsewhere.example", true, POLICY_ACCEPT},
	    {"bob@[192.0.2.1]", true, POLICY_ACCEPT},
	    {"bob@example.org", true, POLICY_ACCEPT},
	};
	check_all(p, cases, sizeof cases / sizeof cases[0]);
	struct policy_counts c;
	policy_counts(p, &c);
	assert_int_equal(c.domains, 3);
	assert_false(c.file);
	policy_free(p);

	/* Empty list: every domain; a NULL table: everything. */
	p = build("", NULL);
	static const struct check_case all[] = {
	    {"bob@anything.example", false, POLICY_ACCEPT},
	    {"bob@[192.0.2.1]", false, POLICY_ACCEPT},
	};
	check_all(p, all, 2);
	check_all(NULL, all, 2);
	policy_counts(p, &c);
	assert_int_equal(c.domains, 0);
	policy_free(p);
	policy_free(NULL);

	/* Duplicates count once. */
	p = build("a.example, A.example., *.a.example, *.A.EXAMPLE", NULL);
	policy_counts(p, &c);
	assert_int_equal(c.domains, 2);
	policy_free(p);
}

/* ------------------------------------------------ SMTPD_RECIPIENTS_FILE */

static void test_file_match(void **state)
{
	(void)state;
	const char *file = "\xef\xbb\xbf# recipients of example.org\n"
	                   "Bob@Example.org\n"
	                   "   alice@example.org   # Alice, surrounded by blanks\r\n"
	                   "\n"
	                   "\t\n"
	                   "\"john doe\"@example.org\n"
	                   "\"quoted\"@example.org\n"
	                   "@Sales.Example.ORG.\n"
	                   "x#y@example.org\n"
	                   "j\xc3\xb6ran@example.org\n"
	                   "bob@example.org\n"
	                   "carol@other.example";
	struct policy *p = build("example.org, *.example.org", file);
	static const struct check_case cases[] = {
	    {"bob@example.org", false, POLICY_ACCEPT},
	    {"BOB@EXAMPLE.ORG", false, POLICY_ACCEPT},
	    {"\"bob\"@example.org", false, POLICY_ACCEPT}, /* RFC 5321 4.1.2: the same */
	    {"alice@example.org", false, POLICY_ACCEPT},
	    {"\"john doe\"@example.org", false, POLICY_ACCEPT},
	    {"\"John Doe\"@Example.Org", false, POLICY_ACCEPT},
	    {"quoted@example.org", false, POLICY_ACCEPT},
	    {"x#y@example.org", false, POLICY_ACCEPT},
	    {"j\xc3\xb6ran@example.org", false, POLICY_ACCEPT},
	    {"J\xc3\xb6RAN@example.org", false, POLICY_ACCEPT},
	    {"anyone@sales.example.org", false, POLICY_ACCEPT}, /* @domain line */
	    {"ANYONE@SALES.EXAMPLE.ORG.", false, POLICY_ACCEPT},
	    {"anyone@eu.sales.example.org", false, POLICY_UNKNOWN_USER}, /* exact domain only */
	    {"dave@example.org", false, POLICY_UNKNOWN_USER},
	    {"bob@www.example.org", false, POLICY_UNKNOWN_USER}, /* served, not listed */
	    {"john doe@example.org", false, POLICY_ACCEPT},      /* the core never passes it */
	    {"postmaster", false, POLICY_ACCEPT},
	    /* Outside SMTPD_DOMAINS: relay, whatever the file says. */
	    {"carol@other.example", false, POLICY_RELAY_DENIED},
	    {"dave@other.example", false, POLICY_RELAY_DENIED},
	    /* Authenticated: the file still applies in served domains (Postfix),
	     * elsewhere the mail is relayed unchecked. */
	    {"dave@example.org", true, POLICY_UNKNOWN_USER},
	    {"bob@example.org", true, POLICY_ACCEPT},
	    {"dave@other.example", true, POLICY_ACCEPT},
	};
	check_all(p, cases, sizeof cases / sizeof cases[0]);
	struct policy_counts c;
	policy_counts(p, &c);
	assert_true(c.file);
	assert_int_equal(c.domains, 2);
	assert_int_equal(c.addresses, 7); /* bob twice: once */
	assert_int_equal(c.at_domains, 1);
	assert_int_equal(c.outside, 1);
	assert_int_equal(c.outside_first_line, 12);
	policy_free(p);

	/* Every domain served: the file decides for all of them. */
	p = build("", "bob@example.org\n@example.net\n");
	static const struct check_case all[] = {
	    {"bob@example.org", false, POLICY_ACCEPT},
	    {"eve@example.org", false, POLICY_UNKNOWN_USER},
	    {"eve@example.net", false, POLICY_ACCEPT},
	    {"eve@elsewhere.example", false, POLICY_UNKNOWN_USER},
	    {"eve@elsewhere.example", true, POLICY_UNKNOWN_USER},
	    {"eve@[192.0.2.1]", false, POLICY_UNKNOWN_USER},
	};
	check_all(p, all, sizeof all / sizeof all[0]);
	policy_free(p);

	/* A file of comments only: nobody exists. */
	p = build("", "# nobody yet\n\n");
	policy_counts(p, &c);
	assert_true(c.file);
	assert_int_equal(c.addresses + c.at_domains, 0);
	assert_int_equal(policy_check(p, "bob@example.org", false), POLICY_UNKNOWN_USER);
	policy_free(p);
	/* An empty file, and no newline at the end. */
	p = build("", "");
	assert_int_equal(policy_check(p, "bob@example.org", false), POLICY_UNKNOWN_USER);
	policy_free(p);
	p = build("", "bob@example.org");
	assert_int_equal(policy_check(p, "bob@example.org", false), POLICY_ACCEPT);
	policy_free(p);
}

static void test_file_errors(void **state)
{
	(void)state;
	char long_line[400];
	snprintf(long_line, sizeof long_line, "ok@example.org\n%0300d@example.org\n", 7);
	static const char nul_file[] = "ok@example.org\nbad\0@example.org\n";
	const struct {
		const char *text;
		size_t len; /* 0: strlen */
		const char *want;
	} cases[] = {
	    {"bob\n", 0, "line 1: \"bob\" is not an address (local@domain) or @domain"},
	    {"# c\n\nbob@\n", 0, "line 3: \"bob@\" is not an address"},
	    {"@\n", 0, "line 1: \"@\": not a domain name after @"},
	    {"@exa mple.org\n", 0, "line 1: \"@exa mple.org\": one address a line"},
	    {"bob@example.org alice@example.org\n", 0,
	     "line 1: \"bob@example.org alice@example.org\": one address a line"},
	    {"ok@example.org\n*@example.org\n", 0,
	     "line 2: \"*@example.org\": write @example.org for a whole domain"},
	    {"@*.example.org\n", 0,
	     "line 1: \"@*.example.org\": wildcards belong in SMTPD_DOMAINS"},
	    {"<bob@example.org>\n", 0, "line 1: \"<bob@example.org>\" is not an address"},
	    {"bob@[192.0.2.1]\n", 0, "line 1: \"bob@[192.0.2.1]\" is not an address"},
	    {"bob@exa_mple.org\n", 0, "is not an address"},
	    {"\"unterminated@example.org\n", 0, "line 1: "},
	    {"\"\"@example.org\n", 0, "is not an address"},
	    {"a@b@example.org\n", 0, "is not an address"},
	    {"bob@example..org\n", 0, "is not an address"},
	    {"b\x01ob@example.org\n", 0, "line 1: \"b?ob@example.org\" is not an address"},
	    {long_line, 0, "line 2: \"0000"},
	    {nul_file, sizeof nul_file - 1, "line 2: contains a NUL octet"},
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct policy *p = (struct policy *)1;
		char err[512] = "";
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		int rc = policy_new("", cases[i].text, len, &p, err, sizeof err);
		if (rc == 0 || p != NULL || strstr(err, cases[i].want) == NULL) {
			fprintf(stderr, "file case %zu: got rc=%d err=\"%s\" want \"%s\"\n", i, rc,
			        err, cases[i].want);
			bad++;
		}
		if (rc == 0)
			policy_free(p);
	}
	assert_int_equal(bad, 0);
	/* The long line's message is cut, not the whole line. */
	char err[512];
	struct policy *p;
	assert_int_equal(policy_new("", long_line, strlen(long_line), &p, err, sizeof err), -1);
	assert_non_null(strstr(err, "...\" is longer than 254 octets"));
	assert_true(strlen(err) < 160);
	/* A bad SMTPD_DOMAINS is reported before the file is read. */
	assert_int_equal(policy_new("a b", "bob@example.org\n", 16, &p, err, sizeof err), -1);
	assert_non_null(strstr(err, "is not a domain name"));
}

/* Many addresses: every one found, others not (the hash set under load). */
static void test_file_large(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(buf_printf(&b, "user%d@example.org\n\n# %d\n", i, i), 0);
	struct policy *p;
	char err[256];
	assert_int_equal(policy_new("example.org", b.data, b.len, &p, err, sizeof err), 0);
	struct policy_counts c;
	policy_counts(p, &c);
	assert_int_equal(c.addresses, 20000);
	char a[64];
	for (int i = 0; i < 20000; i += 7) {
		snprintf(a, sizeof a, "USER%d@example.org", i);
		assert_int_equal(policy_check(p, a, false), POLICY_ACCEPT);
		snprintf(a, sizeof a, "user%d@example.org", i + 20000);
		assert_int_equal(policy_check(p, a, false), POLICY_UNKNOWN_USER);
	}
	policy_free(p);
	buf_free(&b);
	/* A file of blank lines only allocates nothing per line. */
	size_t n = 1u << 20;
	char *blank = malloc(n);
	assert_non_null(blank);
	memset(blank, '\n', n);
	assert_int_equal(policy_new("", blank, n, &p, err, sizeof err), 0);
	policy_counts(p, &c);
	assert_int_equal(c.addresses, 0);
	policy_free(p);
	free(blank);
}

/* ----------------------------------------- the check inside the SMTP core */

struct session {
	struct smtp_proto *p;
	const struct policy *table; /* what the core reads through cfg.policy */
	struct buf events;
};

static void on_event(void *ctx, const struct smtp_event *ev)
{
	struct session *s = ctx;
	if (ev->type == SMTP_EV_RCPT_REFUSED)
		assert_int_equal(buf_printf(&s->events, "[refused=%s]", ev->arg), 0);
	else if (ev->type == SMTP_EV_PROTOCOL)
		assert_int_equal(buf_printf(&s->events, "[protocol]"), 0);
	else if (ev->type == SMTP_EV_RCPT)
		assert_int_equal(buf_printf(&s->events, "[rcpt=%s]", ev->arg), 0);
}

static void session_start(struct session *s, const struct policy *table, bool auth)
{
	memset(s, 0, sizeof *s);
	s->table = table;
	buf_init(&s->events, 0);
	struct smtp_proto_config cfg = {
	    .hostname = "mx.example",
	    .max_recipients = 100,
	    .auth = auth ? SMTP_AUTH_OPTIONAL : SMTP_AUTH_OFF,
	    .auth_insecure = true,
	    .policy = &s->table,
	};
	struct smtp_proto_sink sink = {.ctx = s, .event = on_event};
	s->p = smtp_proto_new(&cfg, &sink);
	assert_non_null(s->p);
	smtp_proto_greet(s->p);
	const char *o;
	smtp_proto_output_consume(s->p, smtp_proto_output(s->p, &o));
}

/* Feed one command line; return its reply (first line, without CRLF). */
static const char *cmd(struct session *s, const char *line)
{
	static char reply[512];
	char in[600];
	int n = snprintf(in, sizeof in, "%s\r\n", line);
	assert_int_equal(smtp_proto_feed(s->p, in, (size_t)n), (size_t)n);
	const char *o;
	size_t len = smtp_proto_output(s->p, &o);
	size_t k = 0;
	while (k < len && o[k] != '\r' && k + 1 < sizeof reply) {
		reply[k] = o[k];
		k++;
	}
	reply[k] = '\0';
	smtp_proto_output_consume(s->p, len);
	return reply;
}

static void session_end(struct session *s)
{
	smtp_proto_free(s->p);
	buf_free(&s->events);
}

static void test_core_rcpt(void **state)
{
	(void)state;
	struct policy *t = build("example.org", "bob@example.org\n@lists.example.org\n");
	struct session s;
	session_start(&s, t, false);
	assert_string_equal(cmd(&s, "EHLO client.example"), "250-mx.example");
	assert_string_equal(cmd(&s, "MAIL FROM:<a@client.example>"), "250 2.1.0 Ok");
	assert_string_equal(cmd(&s, "RCPT TO:<eve@elsewhere.example>"),
	                    "554 5.7.1 Relay access denied");
	assert_string_equal(cmd(&s, "RCPT TO:<dave@example.org>"), "550 5.1.1 User unknown");
	assert_string_equal(cmd(&s, "RCPT TO:<BOB@Example.ORG>"), "250 2.1.5 Ok");
	assert_string_equal(cmd(&s, "RCPT TO:<\"Bob\"@example.org>"), "250 2.1.5 Ok");
	/* Syntax comes first: a bad path is 501 whatever its domain. */
	assert_string_equal(cmd(&s, "RCPT TO:<eve@elsewhere.example> FOO=1"),
	                    "555 5.5.4 Unsupported option: FOO");
	assert_string_equal(cmd(&s, "RCPT TO:eve@elsewhere.example"),
	                    "501 5.5.4 Bad recipient address syntax");
	assert_string_equal(cmd(&s, "RCPT TO:<postmaster>"), "250 2.1.5 Ok");
	assert_int_equal(smtp_proto_rcpt_count(s.p), 3);
	assert_int_equal(buf_append(&s.events, "", 1), 0);
	assert_string_equal(s.events.data,
	                    "[refused=relay][protocol][refused=unknown_user][protocol]"
	                    "[rcpt=BOB@Example.ORG][rcpt=\"Bob\"@example.org][protocol][protocol]"
	                    "[rcpt=postmaster]");

	/* A reload swaps the table under the live session: the next RCPT sees it. */
	struct policy *t2 = build("example.org", "dave@example.org\n");
	s.table = t2;
	assert_string_equal(cmd(&s, "RCPT TO:<dave@example.org>"), "250 2.1.5 Ok");
	assert_string_equal(cmd(&s, "RCPT TO:<bob@example.org>"), "550 5.1.1 User unknown");
	/* No table at all: everything again. */
	s.table = NULL;
	assert_string_equal(cmd(&s, "RCPT TO:<eve@elsewhere.example>"), "250 2.1.5 Ok");
	session_end(&s);
	policy_free(t);
	policy_free(t2);
}

/* Refused recipients count towards the 20-error limit: a harvester is cut off. */
static void test_core_harvest(void **state)
{
	(void)state;
	struct policy *t = build("example.org", "bob@example.org\n");
	struct session s;
	session_start(&s, t, false);
	cmd(&s, "EHLO client.example");
	cmd(&s, "MAIL FROM:<a@client.example>");
	char line[64];
	for (int i = 0; i < 19; i++) {
		snprintf(line, sizeof line, "RCPT TO:<guess%d@example.org>", i);
		assert_string_equal(cmd(&s, line), "550 5.1.1 User unknown");
	}
	assert_false(smtp_proto_closing(s.p));
	assert_string_equal(cmd(&s, "RCPT TO:<guess19@example.org>"), "550 5.1.1 User unknown");
	assert_true(smtp_proto_closing(s.p));
	session_end(&s);
	policy_free(t);
}

/* After AUTH, other domains are relayed; the file still applies at home. */
static void test_core_authenticated(void **state)
{
	(void)state;
	struct policy *t = build("example.org", "bob@example.org\n");
	struct session s;
	session_start(&s, t, true);
	cmd(&s, "EHLO client.example");
	/* AUTH PLAIN "\0alice\0secret" */
	cmd(&s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==");
	assert_int_equal(smtp_proto_pending(s.p), SMTP_WAIT_AUTH);
	smtp_proto_resume(s.p, 235, "2.7.0", "Authentication successful");
	const char *o;
	smtp_proto_output_consume(s.p, smtp_proto_output(s.p, &o));
	assert_string_equal(smtp_proto_auth_user(s.p), "alice");
	cmd(&s, "MAIL FROM:<alice@example.org>");
	assert_string_equal(cmd(&s, "RCPT TO:<eve@elsewhere.example>"), "250 2.1.5 Ok");
	assert_string_equal(cmd(&s, "RCPT TO:<dave@example.org>"), "550 5.1.1 User unknown");
	assert_string_equal(cmd(&s, "RCPT TO:<bob@example.org>"), "250 2.1.5 Ok");
	session_end(&s);
	policy_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_domains_syntax), cmocka_unit_test(test_domains_match),
	    cmocka_unit_test(test_file_match),     cmocka_unit_test(test_file_errors),
	    cmocka_unit_test(test_file_large),     cmocka_unit_test(test_core_rcpt),
	    cmocka_unit_test(test_core_harvest),   cmocka_unit_test(test_core_authenticated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
