/* Tests for the content filter (SPEC 5): its environment, its reply text, the
 * exit status mapping, and real /bin/sh filters on a private libuv loop
 * (accept, tempfail, reject with text, flood, never reading stdin, hang and
 * kill, a background child), each ending with the loop closed and no handle
 * left. The message reaches the filter as a file on its stdin (issue 14): the
 * filter reads every byte of it, and filter_start keeps no descriptor. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "filter.h"
#include "log.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return envp[i] + n + 1;
	return NULL;
}

/* A quoted local part may hold a comma: only the JSON array says where each
 * recipient ends (issue 13 item 11). */
static void test_env_rcpt_json(void **state)
{
	(void)state;
	const char *rcpt[] = {"\"x,y\"@a.example", "b@c.example"};
	struct spool_envelope env = {
	    .id = "1.M1P1Q1.mx", .mail_from = "", .rcpt = rcpt, .nrcpt = 2};
	char **e = filter_env_build(&env, NULL);
	assert_non_null(e);
	assert_string_equal(env_get(e, "SMTPD_RCPT_TO"), "\"x,y\"@a.example,b@c.example");
	json_error_t jerr;
	json_t *arr = json_loads(env_get(e, "SMTPD_RCPT_TO_JSON"), 0, &jerr);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), 2);
	assert_string_equal(json_string_value(json_array_get(arr, 0)), "\"x,y\"@a.example");
	assert_string_equal(json_string_value(json_array_get(arr, 1)), "b@c.example");
	json_decref(arr);
	filter_env_free(e);
}

static void test_env(void **state)
{
	(void)state;
	const char *rcpt[] = {"b@y.example", "c@z.example"};
	struct spool_envelope env = {
	    .id = "1700000000.M1P2Q3.mx",
	    .mail_from = "a@x.example",
	    .rcpt = rcpt,
	    .nrcpt = 2,
	    .helo = "client\r\nX: y",
	    .client_addr = "203.0.113.7",
	    .client_port = 40000,
	    .local_addr = "127.0.0.1",
	    .local_port = 2525,
	    .size = 1234,
	};
	char *parent[] = {"PATH=/usr/bin:/bin", "HOME=/root", "SMTPD_WEBHOOK_SECRET=s3cret",
	                  "SMTPD_TLS=required", "LANG=C",     NULL};
	char **e = filter_env_build(&env, parent);
	assert_non_null(e);
	assert_string_equal(env_get(e, "PATH"), "/usr/bin:/bin");
	assert_string_equal(env_get(e, "HOME"), "/root");
	assert_string_equal(env_get(e, "LANG"), "C");
	/* The service's own settings never reach the filter. */
	assert_null(env_get(e, "SMTPD_WEBHOOK_SECRET"));
	assert_string_equal(env_get(e, "SMTPD_MAIL_FROM"), "a@x.example");
	assert_string_equal(env_get(e, "SMTPD_RCPT_TO"), "b@y.example,c@z.example");
	assert_string_equal(env_get(e, "SMTPD_RCPT_TO_JSON"), "[\"b@y.example\",\"c@z.example\"]");
	assert_string_equal(env_get(e, "SMTPD_CLIENT_ADDR"), "203.0.113.7");
	assert_string_equal(env_get(e, "SMTPD_CLIENT_PORT"), "40000");
	assert_string_equal(env_get(e, "SMTPD_LOCAL_ADDR"), "127.0.0.1");
	assert_string_equal(env_get(e, "SMTPD_LOCAL_PORT"), "2525");
	assert_string_equal(env_get(e, "SMTPD_HELO"), "client??X: y");
	assert_string_equal(env_get(e, "SMTPD_AUTH_USER"), "");
	/* SMTPD_TLS is the session's TLS (none here), not the setting. */
	assert_string_equal(env_get(e, "SMTPD_TLS"), "");
	assert_string_equal(env_get(e, "SMTPD_TLS_CIPHER"), "");
	assert_string_equal(env_get(e, "SMTPD_MESSAGE_ID"), "1700000000.M1P2Q3.mx");
	assert_string_equal(env_get(e, "SMTPD_SIZE"), "1234");
	/* SPEC 8: no rspamd verdict. */
	assert_string_equal(env_get(e, "SMTPD_VERDICT_JSON"), "null");
	size_t n = 0, tls = 0;
	for (; e[n]; n++)
		tls += strncmp(e[n], "SMTPD_TLS=", 10) == 0;
	assert_int_equal(tls, 1);
	assert_int_equal(n, 3 + 14);
	filter_env_free(e);

	/* Null sender, one recipient, AUTH and TLS, no parent environment. */
	env.mail_from = "";
	env.nrcpt = 1;
	env.auth_user = "alice";
	env.tls_version = "TLSv1.3";
	env.tls_cipher = "TLS_AES_256_GCM_SHA384";
	e = filter_env_build(&env, NULL);
	assert_non_null(e);
	assert_string_equal(env_get(e, "SMTPD_MAIL_FROM"), "");
	assert_string_equal(env_get(e, "SMTPD_RCPT_TO"), "b@y.example");
	assert_string_equal(env_get(e, "SMTPD_AUTH_USER"), "alice");
	assert_string_equal(env_get(e, "SMTPD_TLS"), "TLSv1.3");
	assert_string_equal(env_get(e, "SMTPD_TLS_CIPHER"), "TLS_AES_256_GCM_SHA384");
	filter_env_free(e);
	/* SPEC 8: rspamd's verdict as the envelope has it. */
	env.verdict_json = "{\"action\":\"no action\",\"score\":1.5}";
	e = filter_env_build(&env, NULL);
	assert_non_null(e);
	assert_string_equal(env_get(e, "SMTPD_VERDICT_JSON"),
	                    "{\"action\":\"no action\",\"score\":1.5}");
	filter_env_free(e);
	filter_env_free(NULL);
}

static void test_reply_text(void **state)
{
	(void)state;
	const struct {
		const char *in;
		const char *want;
	} cases[] = {
	    {"", ""},
	    {"\n", ""},
	    {"spam detected\n", "spam detected"},
	    {"spam detected\r\nsecond line\n", "spam detected"},
	    {"  padded \t \nx", "padded"},
	    {"no newline at all", "no newline at all"},
	    {"bell\a and \x1b[31mcolour", "bell? and ?[31mcolour"},
	    {"caf\xc3\xa9", "caf??"},
	    {"\xff", "?"},
	};
	char out[FILTER_TEXT_MAX + 1];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = filter_reply_text(cases[i].in, strlen(cases[i].in), out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("in=%s got=%s want=%s", cases[i].in, out, cases[i].want);
		assert_int_equal(n, strlen(out));
	}
	/* Bounded, and a NUL inside is just another byte. */
	char big[1000];
	memset(big, 'x', sizeof big);
	assert_int_equal(filter_reply_text(big, sizeof big, out), FILTER_TEXT_MAX);
	assert_int_equal(strlen(out), FILTER_TEXT_MAX);
	assert_int_equal(filter_reply_text("a\0b\n", 4, out), 3);
	assert_string_equal(out, "a?b");
}

static void test_verdict(void **state)
{
	(void)state;
	assert_int_equal(filter_verdict_of(true, 0, 0, false), FILTER_ACCEPT);
	assert_int_equal(filter_verdict_of(true, 75, 0, false), FILTER_TEMPFAIL);
	assert_int_equal(filter_verdict_of(true, 1, 0, false), FILTER_REJECT);
	assert_int_equal(filter_verdict_of(true, 2, 0, false), FILTER_REJECT);
	assert_int_equal(filter_verdict_of(true, 74, 0, false), FILTER_REJECT);
	assert_int_equal(filter_verdict_of(true, 255, 0, false), FILTER_REJECT);
	/* A crash is not a verdict; a timeout defers whatever the status. */
	assert_int_equal(filter_verdict_of(true, 0, 11, false), FILTER_TEMPFAIL);
	assert_int_equal(filter_verdict_of(true, 0, 0, true), FILTER_TEMPFAIL);
	assert_int_equal(filter_verdict_of(false, 0, 0, false), FILTER_TEMPFAIL);
}

/* ---- real filters on a private loop ---- */

struct run {
	bool done;
	struct filter_result r;
};

static void on_done(void *ctx, const struct filter_result *r)
{
	struct run *run = ctx;
	assert_false(run->done);
	run->done = true;
	run->r = *r;
}

static void walk_count(uv_handle_t *h, void *arg)
{
	(void)h;
	(*(int *)arg)++;
}

/* Descriptors of this process open on a message file of these tests: after
 * the caller closed its own, filter_start must have kept none. (libuv keeps
 * descriptors of its own, its signal pipe, so a plain count would not do.) */
static int message_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char link[300], target[256];
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t l = readlink(link, target, sizeof target - 1);
		if (l <= 0)
			continue;
		target[l] = '\0';
		n += strstr(target, "mailport-test-filter-") != NULL;
	}
	closedir(d);
	return n;
}

/* The message as the service hands it over: a read-only descriptor of a file
 * holding a trace header and then input, positioned at 0, its name already
 * gone. */
static int message_fd(const char *input, size_t len)
{
	char path[] = "/tmp/mailport-test-filter-XXXXXX";
	int w = mkstemp(path);
	assert_true(w >= 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(path);
	const char trace[] = "Received: x\n";
	assert_int_equal(write(w, trace, sizeof trace - 1), (ssize_t)(sizeof trace - 1));
	for (size_t off = 0; off < len;) {
		ssize_t n = write(w, input + off, len - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	close(w);
	return fd;
}

/* Run `cmd` with input and the given timeout; returns the result and the
 * seconds it took. The loop must end with every handle closed, and no
 * descriptor may be left behind. */
static struct filter_result run_filter(const char *cmd, const char *input, size_t len,
                                       uint64_t timeout_ms, double *secs)
{
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	const char *rcpt[] = {"b@y.example"};
	struct spool_envelope env = {.id = "1.M1P1Q1.t",
	                             .mail_from = "a@x.example",
	                             .rcpt = rcpt,
	                             .nrcpt = 1,
	                             .client_addr = "127.0.0.1",
	                             .local_addr = "127.0.0.1",
	                             .local_port = 2526};
	char *parent[] = {"PATH=/usr/bin:/bin", NULL};
	char **envp = filter_env_build(&env, parent);
	assert_non_null(envp);
	int fd = message_fd(input, len);
	struct run run = {0};
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(
	    filter_start(&loop, cmd, timeout_ms, envp, fd, env.id, NULL, on_done, &run, NULL), 0);
	/* The caller closes its descriptor at once: the child has its own. */
	close(fd);
	assert_int_equal(message_fds(), 0);
	filter_env_free(envp);
	uv_run(&loop, UV_RUN_DEFAULT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	*secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	assert_true(run.done);
	int open = 0;
	uv_walk(&loop, walk_count, &open);
	assert_int_equal(open, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(message_fds(), 0);
	return run.r;
}

static void test_run_simple(void **state)
{
	(void)state;
	double t;
	struct filter_result r = run_filter("cat >/dev/null; exit 0", "hello\n", 6, 5000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "");

	r = run_filter("echo 'try later'; exit 75", "x\n", 2, 5000, &t);
	assert_int_equal(r.verdict, FILTER_TEMPFAIL);
	assert_false(r.timed_out);
	assert_string_equal(r.text, "try later");

	r = run_filter("echo 'spam score 12.5'; echo second; echo err >&2; exit 1", "x\n", 2, 5000,
	               &t);
	assert_int_equal(r.verdict, FILTER_REJECT);
	assert_int_equal(r.exit_status, 1);
	assert_string_equal(r.text, "spam score 12.5");

	/* The envelope and the message arrive as documented. */
	r = run_filter("read -r first; [ \"$first\" = 'Received: x' ] || exit 3;"
	               " grep -q '^body line$' || exit 4;"
	               " [ \"$SMTPD_LOCAL_PORT\" = 2526 ] || exit 5;"
	               " [ \"$SMTPD_RCPT_TO\" = b@y.example ] || exit 6; echo ok",
	               "body line\n", 10, 5000, &t);
	assert_int_equal(r.exit_status, 0);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "ok");

	/* A crash is a temporary failure. */
	r = run_filter("kill -SEGV $$", "x\n", 2, 5000, &t);
	assert_int_equal(r.verdict, FILTER_TEMPFAIL);
	assert_int_equal(r.term_signal, 11);
}

static void test_run_hostile(void **state)
{
	(void)state;
	double t;
	/* 2 MB in, never read: nothing waits on it, the exit status decides. */
	size_t big = 2u << 20;
	char *in = malloc(big);
	assert_non_null(in);
	memset(in, 'a', big);
	for (size_t i = 99; i < big; i += 100)
		in[i] = '\n';
	struct filter_result r = run_filter("echo 'not reading'; exit 0", in, big, 5000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "not reading");
	assert_true(t < 3);

	/* Reads a little, then exits 1 with the rest unread. */
	r = run_filter("head -c 10 >/dev/null; echo partial; exit 1", in, big, 5000, &t);
	assert_int_equal(r.verdict, FILTER_REJECT);
	assert_string_equal(r.text, "partial");

	/* 10 MB on stdout and on stderr: read and dropped, first line kept. */
	r = run_filter("echo first; head -c 10000000 /dev/zero; head -c 1000000 /dev/zero >&2;"
	               " cat >/dev/null; exit 0",
	               in, big, 10000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "first");
	free(in);

	/* Hangs: killed after the timeout, with whatever it started. */
	r = run_filter("sleep 30 & sleep 30", "x\n", 2, 300, &t);
	assert_int_equal(r.verdict, FILTER_TEMPFAIL);
	assert_true(r.timed_out);
	assert_true(t >= 0.29 && t < 3);

	/* Exits, leaving a child that holds stdout: decided within the linger. */
	r = run_filter("echo quick; (sleep 30 &) ; exit 0", "x\n", 2, 10000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "quick");
	assert_true(t < 3);

	/* A command that does not exist: the shell says 127, a refusal. */
	r = run_filter("/nonexistent/filter", "x\n", 2, 5000, &t);
	assert_int_equal(r.verdict, FILTER_REJECT);
	assert_int_equal(r.exit_status, 127);
}

/* The filter reads the whole file, byte for byte, however large: its stdin
 * is the file itself, not a copy in our memory. */
static void test_run_reads_file(void **state)
{
	(void)state;
	double t;
	size_t big = (3u << 20) + 7;
	char *in = malloc(big);
	assert_non_null(in);
	for (size_t i = 0; i < big; i++)
		in[i] = (char)('a' + i % 26);
	in[big - 1] = '\n';
	char want[32];
	snprintf(want, sizeof want, "%zu", big + 12);
	struct filter_result r = run_filter("wc -c | tr -d ' '", in, big, 10000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, want);

	/* Exactly the bytes: the trace header first, then the message. */
	char path[] = "/tmp/mailport-test-filter-out-XXXXXX";
	int o = mkstemp(path);
	assert_true(o >= 0);
	close(o);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "cat > %s", path);
	r = run_filter(cmd, in, big, 10000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *got = malloc(big + 12 + 1);
	assert_non_null(got);
	size_t n = fread(got, 1, big + 12 + 1, f);
	fclose(f);
	unlink(path);
	assert_int_equal(n, big + 12);
	assert_memory_equal(got, "Received: x\n", 12);
	assert_memory_equal(got + 12, in, big);
	free(got);

	/* An empty message: the filter sees just the trace header, then EOF. */
	r = run_filter("wc -c | tr -d ' '", "", 0, 5000, &t);
	assert_int_equal(r.verdict, FILTER_ACCEPT);
	assert_string_equal(r.text, "12");
	free(in);
}

/* Without a message descriptor the filter's stdin is empty (/dev/null). */
static void test_run_no_input(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct run run = {0};
	assert_int_equal(filter_start(&loop, "n=$(wc -c); echo \"got $n\"", 5000, envp, -1, "x",
	                              NULL, on_done, &run, NULL),
	                 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(run.done);
	assert_int_equal(run.r.verdict, FILTER_ACCEPT);
	assert_string_equal(run.r.text, "got 0");
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	/* As the service does (server_run). */
	signal(SIGPIPE, SIG_IGN);
	log_setup(CONFIG_LOG_TEXT, CONFIG_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_env),
	    cmocka_unit_test(test_env_rcpt_json),
	    cmocka_unit_test(test_reply_text),
	    cmocka_unit_test(test_verdict),
	    cmocka_unit_test(test_run_simple),
	    cmocka_unit_test(test_run_hostile),
	    cmocka_unit_test(test_run_reads_file),
	    cmocka_unit_test(test_run_no_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
