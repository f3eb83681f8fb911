/* Tests for the pure SMTP core: every golden transcript in tests/transcripts
 * replayed with the client's input fed whole, split in two at every byte, and
 * byte by byte (test_smtp_direct.c has the direct tests for what transcripts
 * cannot express).
 *
 * Transcript format (one directive per line; '#' comments and blank lines are
 * ignored):
 *   CONFIG: key=value    before anything else: hostname, max_message_size,
 *                        max_recipients, max_line_length (0: none, the default),
 *                        bare_lf (normalize|reject), greet (yes|no)
 *   MODES: whole split bytes   which replays apply (default: all three).
 *                        Pipelining-sensitive transcripts (the 554 for input
 *                        behind an EHLO depends on what one feed() holds) say
 *                        "MODES: whole".
 *   C: text              client line, CRLF appended
 *   C-RAW: escaped       client bytes, no CRLF appended (escapes: \r \n \t \0
 *                        \\ \xHH)
 *   C-REPEAT: n escaped  the escaped bytes n times, no CRLF appended
 *   S: text              one expected reply line (CRLF appended), exact
 *   EOM: code [x.y.z] text   the verdict for the next message that waits for
 *                        one (SMTP_WAIT_EOM), in file order
 *   BODY: escaped        what the body sink received since the previous BODY
 *                        (a message the core rejects is dropped, as the adapter does)
 *   EVENTS: a | b=arg    the events since the previous EVENTS line
 *   CLOSED               the core is closing at this point
 *   TIMEOUT / SHUTDOWN   call smtp_proto_timeout() / smtp_proto_shutdown()
 *   STARTTLS: ok | code [x.y.z] text   the answer to the next SMTP_WAIT_STARTTLS:
 *                        "ok" calls smtp_proto_tls_started() and drops the rest
 *                        of the input fed in that call (the adapter discards
 *                        buffered plaintext), else resume() with the refusal
 *   AUTH: MECH USER PASS => code [x.y.z] text   the next SMTP_WAIT_AUTH must
 *                        carry these credentials (escaped; "-" is empty), then
 *                        resume() with the verdict
 *   AUTHENTICATED: user | -   smtp_proto_auth_user() at this point
 * CONFIG keys for SPEC 6: tls=off|available|required|active (implicit),
 * auth=off|optional|required, auth_insecure=yes|no. SPEC 8: domains=LIST
 * (SMTPD_DOMAINS), recipients=A,B (the lines of a recipients file).
 * Consecutive C lines form one round: the client sends them together, then
 * waits for the S lines that follow (before its next round the output so far
 * must equal the S lines so far). A split replay splits one round at a time,
 * the others being fed whole. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "policy.h"
#include "smtp_proto.h"

/* ------------------------------------------------------------ transcripts */

enum op_type {
	OP_SEND,
	OP_EXPECT,
	OP_EOM,
	OP_BODY,
	OP_EVENTS,
	OP_CLOSED,
	OP_TIMEOUT,
	OP_SHUTDOWN,
	OP_STARTTLS,
	OP_AUTH,
	OP_AUTHENTICATED,
};

struct op {
	enum op_type type;
	int line;
	struct buf data;
};

#define MODE_WHOLE 1u
#define MODE_SPLIT 2u
#define MODE_BYTES 4u

struct transcript {
	char path[1024];
	char hostname[256];
	struct smtp_proto_config cfg;
	bool greet;
	/* SPEC 8: the recipient policy the core reads through cfg.policy. */
	char domains[256], recipients[256];
	bool has_recipients;
	const struct policy *policy;
	unsigned modes;
	struct op *ops;
	size_t nops;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void unescape(struct buf *b, const char *s, const char *path, int line)
{
	for (; *s; s++) {
		char c = *s;
		if (c == '\\') {
			s++;
			switch (*s) {
			case 'r':
				c = '\r';
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case '0':
				c = '\0';
				break;
			case '\\':
				c = '\\';
				break;
			case 'x': {
				unsigned v;
				if (sscanf(s + 1, "%2x", &v) != 1)
					die("%s:%d: bad \\x escape", path, line);
				c = (char)v;
				s += 2;
				break;
			}
			default:
				die("%s:%d: bad escape", path, line);
			}
		}
		assert_int_equal(buf_append(b, &c, 1), 0);
	}
}

static struct op *add_op(struct transcript *t, enum op_type type, int line)
{
	/* Consecutive client lines form one round. */
	if (type == OP_SEND && t->nops > 0 && t->ops[t->nops - 1].type == OP_SEND)
		return &t->ops[t->nops - 1];
	t->ops = realloc(t->ops, (t->nops + 1) * sizeof *t->ops);
	assert_non_null(t->ops);
	struct op *o = &t->ops[t->nops++];
	o->type = type;
	o->line = line;
	buf_init(&o->data, 0);
	return o;
}

static void parse_config(struct transcript *t, const char *kv, int line)
{
	char key[64], val[256];
	if (sscanf(kv, "%63[^=]=%255s", key, val) != 2)
		die("%s:%d: bad CONFIG", t->path, line);
	if (strcmp(key, "hostname") == 0)
		snprintf(t->hostname, sizeof t->hostname, "%s", val);
	else if (strcmp(key, "max_message_size") == 0)
		t->cfg.max_message_size = strtoull(val, NULL, 10);
	else if (strcmp(key, "max_recipients") == 0)
		t->cfg.max_recipients = (unsigned)strtoul(val, NULL, 10);
	else if (strcmp(key, "max_line_length") == 0)
		t->cfg.max_line_length = strtoull(val, NULL, 10);
	else if (strcmp(key, "bare_lf") == 0)
		t->cfg.bare_lf_reject = strcmp(val, "reject") == 0;
	else if (strcmp(key, "greet") == 0)
		t->greet = strcmp(val, "yes") == 0;
	else if (strcmp(key, "tls") == 0) {
		t->cfg.tls_available =
		    strcmp(val, "available") == 0 || strcmp(val, "required") == 0;
		t->cfg.tls_required = strcmp(val, "required") == 0;
		t->cfg.tls_active = strcmp(val, "active") == 0;
	} else if (strcmp(key, "auth") == 0)
		t->cfg.auth = strcmp(val, "required") == 0   ? SMTP_AUTH_REQUIRED
		              : strcmp(val, "optional") == 0 ? SMTP_AUTH_OPTIONAL
		                                             : SMTP_AUTH_OFF;
	else if (strcmp(key, "auth_insecure") == 0)
		t->cfg.auth_insecure = strcmp(val, "yes") == 0;
	else if (strcmp(key, "domains") == 0)
		snprintf(t->domains, sizeof t->domains, "%s", val);
	else if (strcmp(key, "recipients") == 0) {
		/* One file line per comma. */
		snprintf(t->recipients, sizeof t->recipients, "%s", val);
		for (char *c = t->recipients; (c = strchr(c, ',')) != NULL;)
			*c = '\n';
		t->has_recipients = true;
	} else
		die("%s:%d: unknown CONFIG %s", t->path, line, key);
}

static void parse_line(struct transcript *t, char *l, int line)
{
	struct op *o;
	if (strncmp(l, "C: ", 3) == 0 || strcmp(l, "C:") == 0) {
		o = add_op(t, OP_SEND, line);
		assert_int_equal(
		    buf_append(&o->data, l + (l[2] ? 3 : 2), strlen(l + (l[2] ? 3 : 2))), 0);
		assert_int_equal(buf_append(&o->data, "\r\n", 2), 0);
	} else if (strncmp(l, "C-RAW: ", 7) == 0) {
		unescape(&add_op(t, OP_SEND, line)->data, l + 7, t->path, line);
	} else if (strncmp(l, "C-REPEAT: ", 10) == 0) {
		char *end;
		unsigned long n = strtoul(l + 10, &end, 10);
		o = add_op(t, OP_SEND, line);
		for (unsigned long i = 0; i < n; i++)
			unescape(&o->data, end + 1, t->path, line);
	} else if (strncmp(l, "S: ", 3) == 0) {
		o = add_op(t, OP_EXPECT, line);
		assert_int_equal(buf_printf(&o->data, "%s\r\n", l + 3), 0);
	} else if (strncmp(l, "EOM: ", 5) == 0) {
		o = add_op(t, OP_EOM, line);
		/* Kept NUL-terminated: it is read as a string. */
		assert_int_equal(buf_append(&o->data, l + 5, strlen(l + 5) + 1), 0);
	} else if (strncmp(l, "BODY:", 5) == 0) {
		unescape(&add_op(t, OP_BODY, line)->data, l[5] ? l + 6 : "", t->path, line);
	} else if (strncmp(l, "EVENTS:", 7) == 0) {
		o = add_op(t, OP_EVENTS, line);
		assert_int_equal(buf_printf(&o->data, "%s", l[7] ? l + 8 : ""), 0);
	} else if (strcmp(l, "CLOSED") == 0) {
		add_op(t, OP_CLOSED, line);
	} else if (strcmp(l, "TIMEOUT") == 0) {
		add_op(t, OP_TIMEOUT, line);
	} else if (strcmp(l, "SHUTDOWN") == 0) {
		add_op(t, OP_SHUTDOWN, line);
	} else if (strncmp(l, "STARTTLS: ", 10) == 0) {
		o = add_op(t, OP_STARTTLS, line);
		assert_int_equal(buf_append(&o->data, l + 10, strlen(l + 10) + 1), 0);
	} else if (strncmp(l, "AUTH: ", 6) == 0) {
		o = add_op(t, OP_AUTH, line);
		assert_int_equal(buf_append(&o->data, l + 6, strlen(l + 6) + 1), 0);
	} else if (strncmp(l, "AUTHENTICATED: ", 15) == 0) {
		o = add_op(t, OP_AUTHENTICATED, line);
		assert_int_equal(buf_append(&o->data, l + 15, strlen(l + 15) + 1), 0);
	} else if (strncmp(l, "CONFIG: ", 8) == 0) {
		parse_config(t, l + 8, line);
	} else if (strncmp(l, "MODES: ", 7) == 0) {
		t->modes = (strstr(l, "whole") ? MODE_WHOLE : 0) |
		           (strstr(l, "split") ? MODE_SPLIT : 0) |
		           (strstr(l, "bytes") ? MODE_BYTES : 0);
	} else {
		die("%s:%d: unknown directive: %s", t->path, line, l);
	}
}

static struct transcript *transcript_load(const char *path)
{
	struct transcript *t = calloc(1, sizeof *t);
	assert_non_null(t);
	snprintf(t->path, sizeof t->path, "%s", path);
	snprintf(t->hostname, sizeof t->hostname, "mx.example");
	t->cfg.max_message_size = 10240;
	t->cfg.max_recipients = 5;
	t->greet = true;
	t->modes = MODE_WHOLE | MODE_SPLIT | MODE_BYTES;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		die("%s: cannot open", path);
	/* AUTH lines may be 12288 octets (RFC 4954 4). */
	static char l[32768];
	int line = 0;
	while (fgets(l, sizeof l, f)) {
		line++;
		l[strcspn(l, "\n")] = '\0';
		if (l[0] == '\0' || l[0] == '#')
			continue;
		parse_line(t, l, line);
	}
	fclose(f);
	t->cfg.hostname = t->hostname;
	if (t->domains[0] != '\0' || t->has_recipients) {
		struct policy *pol;
		char err[256];
		if (policy_new(t->domains, t->has_recipients ? t->recipients : NULL,
		               strlen(t->recipients), &pol, err, sizeof err) < 0)
			die("%s: policy: %s", path, err);
		t->policy = pol;
		t->cfg.policy = &t->policy;
	}
	return t;
}

static void transcript_free(struct transcript *t)
{
	for (size_t i = 0; i < t->nops; i++)
		buf_free(&t->ops[i].data);
	free(t->ops);
	policy_free((struct policy *)t->policy);
	free(t);
}

/* ----------------------------------------------------------------- replay */

struct run {
	const struct transcript *t;
	struct smtp_proto *p;
	const char *mode;
	size_t split_op, split_at;
	struct buf out, expect, body, events;
	size_t next_eom;
	size_t next_tls, next_auth;
	bool failed;
};

static int run_body(void *ctx, const char *data, size_t len)
{
	struct run *r = ctx;
	return buf_append(&r->body, data, len) == 0 ? 0 : -1;
}

static const char *const event_names[] = {
    [SMTP_EV_HELO] = "HELO",
    [SMTP_EV_MAIL] = "MAIL",
    [SMTP_EV_RCPT] = "RCPT",
    [SMTP_EV_DATA] = "DATA",
    [SMTP_EV_RSET] = "RSET",
    [SMTP_EV_REJECTED] = "REJECTED",
    [SMTP_EV_QUIT] = "QUIT",
    [SMTP_EV_PROTOCOL] = "PROTOCOL",
    [SMTP_EV_TOO_MANY_ERRORS] = "TOO_MANY_ERRORS",
    [SMTP_EV_RCPT_REFUSED] = "RCPT_REFUSED",
};

static void run_event(void *ctx, const struct smtp_event *ev)
{
	struct run *r = ctx;
	/* An adapter drops what it received of a message the core refused. */
	if (ev->type == SMTP_EV_REJECTED)
		buf_reset(&r->body);
	buf_printf(&r->events, "%s%s%s%s", r->events.len ? " | " : "", event_names[ev->type],
	           ev->arg ? "=" : "", ev->arg ? ev->arg : "");
}

static bool same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void print_escaped(const char *label, const char *s, size_t n)
{
	fprintf(stderr, "  %s (%zu bytes): \"", label, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n\n     ", stderr);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputs("\"\n", stderr);
}

static void run_fail(struct run *r, int line, const char *what, const struct buf *got,
                     const struct buf *want)
{
	if (r->failed)
		return;
	r->failed = true;
	fprintf(stderr, "%s:%d: %s (replay %s", r->t->path, line, what, r->mode);
	if (strcmp(r->mode, "split") == 0)
		fprintf(stderr, " round at line %d split at %zu", r->t->ops[r->split_op].line,
		        r->split_at);
	fprintf(stderr, ")\n");
	if (got)
		print_escaped("got ", got->data, got->len);
	if (want)
		print_escaped("want", want->data, want->len);
}

static void run_drain(struct run *r)
{
	const char *d;
	size_t n = smtp_proto_output(r->p, &d);
	/* Invariant: every reply line ends in CRLF, no bare LF. */
	for (size_t i = 0; i < n; i++)
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			run_fail(r, 0, "bare LF in output", NULL, NULL);
	assert_int_equal(buf_append(&r->out, d, n), 0);
	smtp_proto_output_consume(r->p, n);
}

static void run_resume(struct run *r)
{
	while (r->next_eom < r->t->nops && r->t->ops[r->next_eom].type != OP_EOM)
		r->next_eom++;
	if (r->next_eom == r->t->nops) {
		run_fail(r, 0, "a message waits for a verdict but no EOM directive is left", NULL,
		         NULL);
		smtp_proto_resume(r->p, 451, "4.3.0", "no verdict");
		return;
	}
	const char *s = r->t->ops[r->next_eom++].data.data;
	char enhanced[32] = "";
	unsigned code = (unsigned)strtoul(s, (char **)&s, 10);
	while (*s == ' ')
		s++;
	int n = 0;
	unsigned a, b, c;
	if (sscanf(s, "%u.%u.%u%n", &a, &b, &c, &n) == 3 && (s[n] == ' ' || s[n] == '\0')) {
		snprintf(enhanced, sizeof enhanced, "%.*s", n, s);
		s += n;
		while (*s == ' ')
			s++;
	}
	smtp_proto_resume(r->p, code, enhanced[0] ? enhanced : NULL, s);
}

/* "code [x.y.z] text" from a directive, for resume(). */
static void run_verdict(struct run *r, const char *s)
{
	char enhanced[32] = "";
	unsigned code = (unsigned)strtoul(s, (char **)&s, 10);
	while (*s == ' ')
		s++;
	int n = 0;
	unsigned a, b, c;
	if (sscanf(s, "%u.%u.%u%n", &a, &b, &c, &n) == 3 && (s[n] == ' ' || s[n] == '\0')) {
		snprintf(enhanced, sizeof enhanced, "%.*s", n, s);
		s += n;
		while (*s == ' ')
			s++;
	}
	smtp_proto_resume(r->p, code, enhanced[0] ? enhanced : NULL, s);
}

static size_t run_next(struct run *r, size_t *next, enum op_type type)
{
	while (*next < r->t->nops && r->t->ops[*next].type != type)
		(*next)++;
	return *next < r->t->nops ? (*next)++ : SIZE_MAX;
}

/* SMTP_WAIT_STARTTLS: true when TLS started (the caller drops its input). */
static bool run_starttls(struct run *r)
{
	size_t i = run_next(r, &r->next_tls, OP_STARTTLS);
	if (i == SIZE_MAX) {
		run_fail(r, 0, "STARTTLS waits but no STARTTLS directive is left", NULL, NULL);
		smtp_proto_resume(r->p, 454, "4.7.0", "no directive");
		return false;
	}
	const char *s = r->t->ops[i].data.data;
	if (strcmp(s, "ok") == 0) {
		smtp_proto_tls_started(r->p);
		return true;
	}
	run_verdict(r, s);
	return false;
}

/* One "-"-or-escaped field of an AUTH directive into b. */
static const char *run_field(struct run *r, const char *s, struct buf *b, int line)
{
	while (*s == ' ')
		s++;
	size_t n = strcspn(s, " ");
	if (n == 0)
		die("%s:%d: bad AUTH directive", r->t->path, line);
	char *tmp = strndup(s, n);
	assert_non_null(tmp);
	buf_reset(b);
	if (strcmp(tmp, "-") != 0)
		unescape(b, tmp, r->t->path, line);
	free(tmp);
	return s + n;
}

static void run_auth(struct run *r)
{
	size_t i = run_next(r, &r->next_auth, OP_AUTH);
	if (i == SIZE_MAX) {
		run_fail(r, 0, "AUTH waits but no AUTH directive is left", NULL, NULL);
		smtp_proto_resume(r->p, 454, "4.7.0", "no directive");
		return;
	}
	const struct op *o = &r->t->ops[i];
	struct buf mech, user, pass, got;
	buf_init(&mech, 0);
	buf_init(&user, 0);
	buf_init(&pass, 0);
	buf_init(&got, 0);
	const char *s = o->data.data;
	s = run_field(r, s, &mech, o->line);
	s = run_field(r, s, &user, o->line);
	s = run_field(r, s, &pass, o->line);
	const char *arrow = strstr(s, "=> ");
	if (arrow == NULL)
		die("%s:%d: AUTH directive without =>", r->t->path, o->line);
	assert_int_equal(buf_printf(&got, "%s", smtp_proto_auth_mechanism(r->p)), 0);
	if (!same(&got, &mech))
		run_fail(r, o->line, "AUTH mechanism differs", &got, &mech);
	buf_reset(&got);
	assert_int_equal(buf_printf(&got, "%s", smtp_proto_auth_username(r->p)), 0);
	if (!same(&got, &user))
		run_fail(r, o->line, "AUTH user differs", &got, &user);
	buf_reset(&got);
	size_t plen;
	const char *pw = smtp_proto_auth_password(r->p, &plen);
	assert_non_null(pw);
	assert_int_equal(buf_append(&got, pw, plen), 0);
	if (!same(&got, &pass))
		run_fail(r, o->line, "AUTH password differs", &got, &pass);
	run_verdict(r, arrow + 3);
	/* The core wiped the password at resume(). */
	assert_null(smtp_proto_auth_password(r->p, &plen));
	buf_free(&mech);
	buf_free(&user);
	buf_free(&pass);
	buf_free(&got);
}

/* Feed like the adapter: resume pending verdicts, re-feed what was not taken. */
static void run_feed(struct run *r, const char *d, size_t n)
{
	size_t off = 0;
	int stalls = 0;
	for (;;) {
		if (smtp_proto_pending(r->p) == SMTP_WAIT_EOM) {
			run_resume(r);
			run_drain(r);
			continue;
		}
		if (smtp_proto_pending(r->p) == SMTP_WAIT_STARTTLS) {
			/* RFC 3207 / CVE-2011-0411: what came with STARTTLS is dropped. */
			if (run_starttls(r))
				off = n;
			run_drain(r);
			continue;
		}
		if (smtp_proto_pending(r->p) == SMTP_WAIT_AUTH) {
			run_auth(r);
			run_drain(r);
			continue;
		}
		if (off >= n || smtp_proto_closing(r->p) || r->failed)
			break;
		size_t k = smtp_proto_feed(r->p, d + off, n - off);
		run_drain(r);
		assert_true(k <= n - off);
		if (k == 0 && smtp_proto_pending(r->p) == SMTP_WAIT_NONE &&
		    !smtp_proto_closing(r->p) && ++stalls > 1) {
			run_fail(r, 0, "feed() made no progress", NULL, NULL);
			break;
		}
		off += k;
	}
}

static void run_send(struct run *r, size_t i)
{
	const struct buf *b = &r->t->ops[i].data;
	if (strcmp(r->mode, "bytes") == 0) {
		for (size_t k = 0; k < b->len; k++)
			run_feed(r, b->data + k, 1);
	} else if (strcmp(r->mode, "split") == 0 && i == r->split_op) {
		run_feed(r, b->data, r->split_at);
		run_feed(r, b->data + r->split_at, b->len - r->split_at);
	} else {
		run_feed(r, b->data, b->len);
	}
}

static void run_check_output(struct run *r, int line)
{
	if (!same(&r->out, &r->expect))
		run_fail(r, line, "replies differ", &r->out, &r->expect);
}

static void run_op(struct run *r, size_t i, bool *closed_seen)
{
	const struct op *o = &r->t->ops[i];
	switch (o->type) {
	case OP_SEND:
		run_check_output(r, o->line);
		run_send(r, i);
		break;
	case OP_EXPECT:
		assert_int_equal(buf_append(&r->expect, o->data.data, o->data.len), 0);
		break;
	case OP_EOM:
	case OP_STARTTLS:
	case OP_AUTH:
		break;
	case OP_AUTHENTICATED: {
		const char *u = smtp_proto_auth_user(r->p);
		const char *want = o->data.data;
		if (strcmp(want, "-") == 0 ? u != NULL : (u == NULL || strcmp(u, want) != 0)) {
			struct buf g, w;
			buf_init(&g, 0);
			buf_init(&w, 0);
			assert_int_equal(buf_printf(&g, "%s", u ? u : "-"), 0);
			assert_int_equal(buf_printf(&w, "%s", want), 0);
			run_fail(r, o->line, "authenticated user differs", &g, &w);
			buf_free(&g);
			buf_free(&w);
		}
		break;
	}
	case OP_BODY:
		if (!same(&r->body, &o->data))
			run_fail(r, o->line, "body differs", &r->body, &o->data);
		buf_reset(&r->body);
		break;
	case OP_EVENTS:
		if (!same(&r->events, &o->data))
			run_fail(r, o->line, "events differ", &r->events, &o->data);
		buf_reset(&r->events);
		break;
	case OP_CLOSED:
		*closed_seen = true;
		if (!smtp_proto_closing(r->p))
			run_fail(r, o->line, "expected the session to be closing", NULL, NULL);
		break;
	case OP_TIMEOUT:
	case OP_SHUTDOWN:
		run_check_output(r, o->line);
		if (o->type == OP_TIMEOUT)
			smtp_proto_timeout(r->p);
		else
			smtp_proto_shutdown(r->p);
		run_drain(r);
		break;
	}
}

static bool run_transcript(const struct transcript *t, const char *mode, size_t split_op,
                           size_t split_at)
{
	struct run r = {.t = t, .mode = mode, .split_op = split_op, .split_at = split_at};
	buf_init(&r.out, 0);
	buf_init(&r.expect, 0);
	buf_init(&r.body, 0);
	buf_init(&r.events, 0);
	struct smtp_proto_sink sink = {.ctx = &r, .body = run_body, .event = run_event};
	r.p = smtp_proto_new(&t->cfg, &sink);
	assert_non_null(r.p);
	if (t->greet) {
		smtp_proto_greet(r.p);
		run_drain(&r);
	}
	bool closed_seen = false;
	for (size_t i = 0; i < t->nops && !r.failed; i++)
		run_op(&r, i, &closed_seen);
	run_check_output(&r, 0);
	if (!closed_seen && smtp_proto_closing(r.p))
		run_fail(&r, 0, "closing, but the transcript has no CLOSED", NULL, NULL);
	for (size_t i = r.next_eom; i < t->nops; i++)
		if (t->ops[i].type == OP_EOM)
			run_fail(&r, t->ops[i].line, "EOM directive never used", NULL, NULL);
	for (size_t i = r.next_tls; i < t->nops; i++)
		if (t->ops[i].type == OP_STARTTLS)
			run_fail(&r, t->ops[i].line, "STARTTLS directive never used", NULL, NULL);
	for (size_t i = r.next_auth; i < t->nops; i++)
		if (t->ops[i].type == OP_AUTH)
			run_fail(&r, t->ops[i].line, "AUTH directive never used", NULL, NULL);
	smtp_proto_free(r.p);
	buf_free(&r.out);
	buf_free(&r.expect);
	buf_free(&r.body);
	buf_free(&r.events);
	return !r.failed;
}

static void test_transcript(void **state)
{
	const char *path = *state;
	struct transcript *t = transcript_load(path);
	bool ok = true;
	if (t->modes & MODE_WHOLE)
		ok &= run_transcript(t, "whole", 0, 0);
	if (t->modes & MODE_BYTES)
		ok &= run_transcript(t, "bytes", 0, 0);
	for (size_t i = 0; ok && (t->modes & MODE_SPLIT) && i < t->nops; i++)
		if (t->ops[i].type == OP_SEND)
			for (size_t k = 1; ok && k < t->ops[i].data.len; k++)
				ok &= run_transcript(t, "split", i, k);
	transcript_free(t);
	assert_true(ok);
}

/* ------------------------------------------------------------------- main */

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
	char dir[1024];
	const char *src = getenv("MAILPORT_SOURCE_DIR");
	if (src != NULL && src[0] != '\0') {
		snprintf(dir, sizeof dir, "%s/tests/transcripts", src);
	} else {
		/* Compile-time fallback: this file's own source tree. */
		snprintf(dir, sizeof dir, "%s", __FILE__);
		char *cut = strstr(dir, "tests/unit/test_smtp_proto.c");
		if (cut == NULL)
			die("set MAILPORT_SOURCE_DIR");
		snprintf(cut, sizeof dir - (size_t)(cut - dir), "tests/transcripts");
	}
	DIR *dh = opendir(dir);
	if (dh == NULL)
		die("%s: cannot open the transcripts directory", dir);
	char **paths = NULL;
	size_t npaths = 0;
	struct dirent *de;
	while ((de = readdir(dh)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".txt") != 0)
			continue;
		paths = realloc(paths, (npaths + 1) * sizeof *paths);
		if (paths == NULL || (paths[npaths] = malloc(strlen(dir) + l + 2)) == NULL)
			die("out of memory");
		sprintf(paths[npaths++], "%s/%s", dir, de->d_name);
	}
	closedir(dh);
	if (npaths == 0)
		die("%s: no transcripts", dir);
	qsort(paths, npaths, sizeof *paths, compare_names);

	struct CMUnitTest *tests = calloc(npaths, sizeof *tests);
	if (tests == NULL)
		die("out of memory");
	for (size_t i = 0; i < npaths; i++) {
		tests[i].name = strrchr(paths[i], '/') + 1;
		tests[i].test_func = test_transcript;
		tests[i].initial_state = paths[i];
	}
	int rc = _cmocka_run_group_tests("smtp_proto", tests, npaths, NULL, NULL);
	for (size_t i = 0; i < npaths; i++)
		free(paths[i]);
	free(paths);
	free(tests);
	return rc;
}
