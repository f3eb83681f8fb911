/* Tests for auth: parsing the users file (every way a line can be wrong, each
 * error naming SMTPD_AUTH_USERS_FILE and the line), verifying yescrypt,
 * SHA-512 and bcrypt hashes (DES, MD5, SHA-256 refused), unknown users and NUL in passwords, the
 * file loader, and the asynchronous check and reload on a libuv loop (a
 * cancelled check never calls back; the loop closes with nothing left). The
 * checks' own pool (issue 12): many concurrent checks, chained from their own
 * callbacks, all get the right answer; a full queue refuses at once (the
 * session answers 454); stopping joins the threads and answers what never ran. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <crypt.h>
#include <time.h>

#include "auth.h"
#include "auth_pool.h"

/* Hashes of "secret" (mkpasswd -m yescrypt / bcrypt / sha256crypt, openssl passwd -6 / -1). */
#define H_YESCRYPT "$y$j9T$zdLEDPg37nppQptDFXUoV/$ONp5I1x7ow3S2shTn6ZVlYRT2qQFp1oCCk5xIiQDsw2"
#define H_BCRYPT   "$2b$05$FDFTpBRgdNR2Wvg5gPaa8uCzed3GB.xUy1qbqKKcXwWxd.ykmJM8O"
#define H_SHA512                                                                                   \
	"$6$riWR/1sIJ15Ibxcl$dIa7fM.uRXm7AholxOmRKiA.co1mKPOyFQ4wExEOxUx7kwycWGnu9EAGc29oxunAMc"   \
	"yQCO7rJIh5VTt8Sou.r/"
#define H_SHA256 "$5$mfuCCDtxshHuiKlD$KvHb0y2gHg.04e76W01m7MhvO/mJDHVbHv7GC78jz.A"
#define H_MD5    "$1$jw/MYSlw$F.SGySoIGpDlO.ZcxpR0s."
#define H_DES    "abNANd1rDfiNc"

static struct auth_users *parse_ok(const char *text)
{
	struct auth_users *u = NULL;
	char err[512] = "";
	int rc = auth_users_parse("users", text, strlen(text), &u, err, sizeof err);
	if (rc != 0)
		fprintf(stderr, "unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(u);
	return u;
}

static void parse_bad(const char *text, const char *want)
{
	struct auth_users *u = (struct auth_users *)1;
	char err[512] = "";
	assert_int_equal(auth_users_parse("users", text, strlen(text), &u, err, sizeof err), -1);
	assert_null(u);
	if (strstr(err, want) == NULL || strncmp(err, "SMTPD_AUTH_USERS_FILE: ", 23) != 0) {
		fprintf(stderr, "error %s\n  does not contain %s\n", err, want);
		fail();
	}
	/* Never the hash in a message. */
	assert_null(strstr(err, "$y$"));
	assert_null(strstr(err, "$6$"));
}

static void test_parse(void **state)
{
	(void)state;
	struct auth_users *u = parse_ok("# mailport users\n"
	                                "\n"
	                                "alice:" H_YESCRYPT "\r\n"
	                                "bob:" H_SHA512 ":1000:1000::/home/bob:/bin/sh\n"
	                                "carol:" H_BCRYPT "  \n"
	                                "dave@example.org:" H_BCRYPT);
	assert_int_equal(auth_users_count(u), 4);
	assert_true(auth_users_verify(u, "alice", "secret", 6));
	assert_true(auth_users_verify(u, "bob", "secret", 6));
	assert_true(auth_users_verify(u, "carol", "secret", 6));
	assert_true(auth_users_verify(u, "dave@example.org", "secret", 6));
	assert_false(auth_users_verify(u, "alice", "Secret", 6));
	assert_false(auth_users_verify(u, "alice", "secret", 5));
	assert_false(auth_users_verify(u, "alice", "", 0));
	assert_false(auth_users_verify(u, "mallory", "secret", 6));
	assert_false(auth_users_verify(u, "", "secret", 6));
	/* crypt(3) would stop at the NUL: such a password never matches. */
	assert_false(auth_users_verify(u, "alice", "secret\0x", 8));
	assert_false(auth_users_verify(u, "ALICE", "secret", 6));
	assert_ptr_equal(auth_users_ref(u), u);
	auth_users_unref(u);
	auth_users_unref(u);
	auth_users_unref(NULL);

	u = parse_ok("");
	assert_int_equal(auth_users_count(u), 0);
	assert_false(auth_users_verify(u, "alice", "secret", 6));
	auth_users_unref(u);
	assert_false(auth_users_verify(NULL, "alice", "secret", 6));
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_bad("alice " H_YESCRYPT "\n", "users line 1: not user:hash");
	parse_bad("\n\n:" H_YESCRYPT "\n", "users line 3: the user name must be 1 to 255");
	parse_bad("al\tice:" H_YESCRYPT "\n", "line 1: the user name");
	parse_bad("alice:secret\n", "line 1: the hash of \"alice\" is not a crypt(3) hash");
	parse_bad("alice:\n", "is not a crypt(3) hash");
	parse_bad("alice:" H_MD5 "\n", "the hash of \"alice\" uses a legacy hash method");
	parse_bad("alice:" H_DES "\n", "uses a legacy hash method");
	parse_bad("alice:" H_SHA256 "\n", "uses a legacy hash method");
	parse_bad("alice:$apr1$abc$def\n", "is not a crypt(3) hash this system supports");
	parse_bad("alice:" H_YESCRYPT "\nbob:" H_BCRYPT "\nalice:" H_SHA512 "\n",
	          "user \"alice\" appears twice");
	char nul[] = "alice:" H_YESCRYPT "\nb\0b:" H_BCRYPT "\n";
	struct auth_users *u = NULL;
	char err[256];
	assert_int_equal(auth_users_parse("users", nul, sizeof nul - 1, &u, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 2: contains a NUL byte"));
	char longname[400];
	memset(longname, 'a', 256);
	snprintf(longname + 256, sizeof longname - 256, ":%s\n", H_YESCRYPT);
	parse_bad(longname, "the user name must be 1 to 255");
}

static void test_load(void **state)
{
	(void)state;
	char dir[] = "/tmp/mailport-auth-XXXXXX", path[300], err[512];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/users", dir);
	struct auth_users *u = (struct auth_users *)1;
	assert_int_equal(auth_users_load(path, &u, err, sizeof err), -1);
	assert_null(u);
	assert_non_null(strstr(err, "SMTPD_AUTH_USERS_FILE: cannot read "));
	assert_non_null(strstr(err, "No such file or directory"));
	assert_int_equal(auth_users_load(dir, &u, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a regular file"));
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("alice:" H_YESCRYPT "\nbob:" H_BCRYPT "\n", f);
	fclose(f);
	assert_int_equal(auth_users_load(path, &u, err, sizeof err), 0);
	assert_int_equal(auth_users_count(u), 2);
	assert_true(auth_users_verify(u, "bob", "secret", 6));
	auth_users_unref(u);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("alice:" H_YESCRYPT "\nbob\n", f);
	fclose(f);
	assert_int_equal(auth_users_load(path, &u, err, sizeof err), -1);
	assert_non_null(strstr(err, "line 2: not user:hash"));
	assert_non_null(strstr(err, path));
	unlink(path);
	rmdir(dir);
}

/* ------------------------------------------------------------ async */

struct result {
	int calls;
	bool ok;
};

static void on_checked(void *ctx, bool ok)
{
	struct result *r = ctx;
	r->calls++;
	r->ok = ok;
}

static void test_check_async(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct auth_users *u = parse_ok("alice:" H_YESCRYPT "\nbob:" H_SHA512 "\n");
	struct result good = {0}, bad = {0}, unknown = {0}, cancelled = {0};
	assert_non_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &good));
	assert_non_null(auth_check_start(&loop, u, "bob", "wrong", 5, on_checked, &bad));
	assert_non_null(auth_check_start(&loop, u, "nobody", "secret", 6, on_checked, &unknown));
	struct auth_check *c =
	    auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &cancelled);
	assert_non_null(c);
	auth_check_cancel(c);
	auth_check_cancel(NULL);
	/* The table may go: the checks hold their own reference. */
	auth_users_unref(u);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(good.calls, 1);
	assert_true(good.ok);
	assert_int_equal(bad.calls, 1);
	assert_false(bad.ok);
	assert_int_equal(unknown.calls, 1);
	assert_false(unknown.ok);
	assert_int_equal(cancelled.calls, 0);
	/* The loop ran dry: the pool holds nothing of it (its threads idle),
	 * so the loop closes even before the pool stops. */
	assert_int_equal(uv_loop_close(&loop), 0);
	auth_stop();
}

/* ------------------------------------------------------------- the pool */

/* Threads of this process; *workers counts those named mailport-auth that run
 * under SCHED_IDLE (or, where that is refused, at AUTH_POOL_NICE). */
static int count_threads(int *workers)
{
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	int n = 0;
	*workers = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		char path[300], buf[1024];
		snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* "tid (comm) state ...": field 19 is the nice value, 41 the policy. */
		char *open = strchr(buf, '('), *close = strrchr(buf, ')');
		if (open == NULL || close == NULL ||
		    strncmp(open + 1, "mailport-auth)", (size_t)(close - open)) != 0)
			continue;
		int field = 2, nice = 0, policy = -1;
		for (char *tok = strtok(close + 1, " "); tok; tok = strtok(NULL, " ")) {
			if (++field == 19)
				nice = atoi(tok);
			if (field == 41) {
				policy = atoi(tok);
				break;
			}
		}
		*workers += policy == SCHED_IDLE || nice == AUTH_POOL_NICE;
	}
	closedir(d);
	return n;
}

/* A client that checks `left` more times, one at a time, the next from the
 * callback of the last (the way a session does). */
struct client {
	uv_loop_t *loop;
	struct auth_users *u;
	const char *user, *pass;
	bool want;
	int left, calls, right;
};

static void client_next(struct client *c);

static void client_checked(void *ctx, bool ok)
{
	struct client *c = ctx;
	c->calls++;
	c->right += ok == c->want;
	if (--c->left > 0)
		client_next(c);
}

static void client_next(struct client *c)
{
	assert_non_null(
	    auth_check_start(c->loop, c->u, c->user, c->pass, strlen(c->pass), client_checked, c));
}

static void test_pool_many(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	int workers;
	int threads0 = count_threads(&workers);
	assert_int_equal(workers, 0);
	assert_int_equal(auth_start(&loop, 3, 16), 0);
	assert_int_equal(auth_start(&loop, 3, 16), -EBUSY);
	assert_int_equal(count_threads(&workers), threads0 + 3);
	/* Each worker names itself and lowers its own priority as it starts:
	 * wait for that (bounded, 2 s). */
	for (int i = 0; i < 200 && workers != 3; i++) {
		usleep(10000);
		count_threads(&workers);
	}
	assert_int_equal(workers, 3);
	struct auth_users *u =
	    parse_ok("alice:" H_YESCRYPT "\nbob:" H_SHA512 "\ncarol:" H_BCRYPT "\n");
	/* 12 clients, 4 checks each, all in flight at once: 12 <= 3 + 16. */
	static const struct {
		const char *user, *pass;
		bool want;
	} cases[] = {
	    {"alice", "secret", true}, {"alice", "wrong", false}, {"bob", "secret", true},
	    {"bob", "secreT", false},  {"carol", "secret", true}, {"carol", "", false},
	    {"dave", "secret", false}, {"", "secret", false},     {"alice", "secret", true},
	    {"bob", "secret", true},   {"carol", "secret", true}, {"alice", "secre", false},
	};
	enum { NCLIENTS = sizeof cases / sizeof cases[0], ROUNDS = 4 };
	struct client cl[NCLIENTS];
	for (int i = 0; i < NCLIENTS; i++) {
		cl[i] = (struct client){.loop = &loop,
		                        .u = u,
		                        .user = cases[i].user,
		                        .pass = cases[i].pass,
		                        .want = cases[i].want,
		                        .left = ROUNDS};
		client_next(&cl[i]);
	}
	/* The clients start each next check with u: it is theirs (this
	 * reference) until they are done, as a session's is the server's. */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	auth_users_unref(u);
	for (int i = 0; i < NCLIENTS; i++) {
		if (cl[i].calls != ROUNDS || cl[i].right != ROUNDS)
			fprintf(stderr, "client %d (%s): calls=%d right=%d, want %d\n", i,
			        cases[i].user, cl[i].calls, cl[i].right, ROUNDS);
		assert_int_equal(cl[i].calls, ROUNDS);
		assert_int_equal(cl[i].right, ROUNDS);
	}
	auth_stop();
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(count_threads(&workers), threads0);
	assert_int_equal(workers, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_pool_queue_full(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	/* One thread, one waiting: two checks outstanding at most. */
	assert_int_equal(auth_start(&loop, 1, 1), 0);
	struct auth_users *u = parse_ok("alice:" H_YESCRYPT "\n");
	struct result r[5] = {{0}};
	assert_non_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &r[0]));
	struct auth_check *second =
	    auth_check_start(&loop, u, "alice", "wrong", 5, on_checked, &r[1]);
	assert_non_null(second);
	/* Refused at once, and never called back: the session answers 454. */
	assert_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &r[2]));
	assert_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &r[3]));
	/* Taking one back makes room. */
	auth_check_cancel(second);
	assert_non_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &r[4]));
	auth_users_unref(u);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(r[0].calls, 1);
	assert_true(r[0].ok);
	assert_int_equal(r[1].calls, 0);
	assert_int_equal(r[2].calls, 0);
	assert_int_equal(r[3].calls, 0);
	assert_int_equal(r[4].calls, 1);
	assert_true(r[4].ok);
	/* Answered: room again. */
	u = parse_ok("alice:" H_YESCRYPT "\n");
	struct result again = {0};
	assert_non_null(auth_check_start(&loop, u, "alice", "wrong", 5, on_checked, &again));
	auth_users_unref(u);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(again.calls, 1);
	assert_false(again.ok);
	auth_stop();
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_pool_stop(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	int workers;
	int threads0 = count_threads(&workers);
	auth_stop(); /* none running: a no-op */
	assert_int_equal(auth_start(&loop, 2, 8), 0);
	struct auth_users *u = parse_ok("alice:" H_YESCRYPT "\n");
	struct result r[8] = {{0}};
	struct auth_check *c[8];
	for (int i = 0; i < 8; i++) {
		c[i] = auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &r[i]);
		assert_non_null(c[i]);
	}
	auth_check_cancel(c[7]);
	auth_users_unref(u);
	/* Without running the loop: stop joins the threads (one or two checks
	 * finish first) and answers every check but the cancelled one, each
	 * exactly once: true when it ran, false when it never did. */
	auth_stop();
	assert_int_equal(count_threads(&workers), threads0);
	assert_int_equal(workers, 0);
	int ran = 0;
	for (int i = 0; i < 7; i++) {
		assert_int_equal(r[i].calls, 1);
		ran += r[i].ok;
	}
	assert_int_equal(r[7].calls, 0);
	assert_in_range(ran, 0, 7);
	assert_true(r[6].ok == false || ran == 7);
	/* Nothing outstanding, the handle closes, the loop ends empty. */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);

	/* The next check on a new loop starts a new pool with the defaults. */
	assert_int_equal(uv_loop_init(&loop), 0);
	u = parse_ok("alice:" H_YESCRYPT "\n");
	struct result late = {0};
	assert_non_null(auth_check_start(&loop, u, "alice", "secret", 6, on_checked, &late));
	auth_users_unref(u);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(late.calls, 1);
	assert_true(late.ok);
	auth_stop();
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

struct reloaded {
	int calls;
	struct auth_users *u;
	char err[512];
};

static void on_loaded(void *ctx, struct auth_users *u, const char *err)
{
	struct reloaded *r = ctx;
	r->calls++;
	r->u = u;
	snprintf(r->err, sizeof r->err, "%s", err ? err : "");
}

static void test_load_async(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	char dir[] = "/tmp/mailport-auth-XXXXXX", path[300];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/users", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("carol:" H_BCRYPT "\n", f);
	fclose(f);
	struct reloaded a = {0}, b = {0};
	assert_int_equal(auth_users_load_async(&loop, path, on_loaded, &a), 0);
	assert_int_equal(auth_users_load_async(&loop, "/nonexistent/users", on_loaded, &b), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(a.calls, 1);
	assert_non_null(a.u);
	assert_true(auth_users_verify(a.u, "carol", "secret", 6));
	auth_users_unref(a.u);
	assert_int_equal(b.calls, 1);
	assert_null(b.u);
	assert_non_null(strstr(b.err, "SMTPD_AUTH_USERS_FILE: cannot read /nonexistent/users"));
	assert_int_equal(uv_loop_close(&loop), 0);
	unlink(path);
	rmdir(dir);
}

/* Issue 13 item 7: in a file that mixes methods, an unknown user is checked
 * against the most expensive hash (here bcrypt cost 10, sorted after a cheap
 * SHA-512 user), so a failure for a name that does not exist is never faster
 * than one for the slowest real user. */
static double verify_ms(const struct auth_users *u, const char *user)
{
	struct timespec a, b;
	double best = 1e9;
	for (int i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &a);
		assert_false(auth_users_verify(u, user, "wrong", 5));
		clock_gettime(CLOCK_MONOTONIC, &b);
		double ms =
		    (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
		best = ms < best ? ms : best;
	}
	return best;
}

static void test_dummy_is_the_most_expensive(void **state)
{
	(void)state;
	char s6[CRYPT_GENSALT_OUTPUT_SIZE], s2b[CRYPT_GENSALT_OUTPUT_SIZE];
	assert_non_null(crypt_gensalt_rn("$6$", 5000, NULL, 0, s6, sizeof s6));
	assert_non_null(crypt_gensalt_rn("$2b$", 10, NULL, 0, s2b, sizeof s2b));
	static struct crypt_data cd;
	char h6[CRYPT_OUTPUT_SIZE], h2b[CRYPT_OUTPUT_SIZE];
	snprintf(h6, sizeof h6, "%s", crypt_r("pw", s6, &cd));
	snprintf(h2b, sizeof h2b, "%s", crypt_r("pw", s2b, &cd));
	char file[1024];
	for (int order = 0; order < 2; order++) {
		snprintf(file, sizeof file,
		         order ? "zzz:%s\naaa:%s\naab:%s\n" : "aaa:%s\naab:%s\nzzz:%s\n",
		         order ? h2b : h6, order ? h6 : h6, order ? h6 : h2b);
		struct auth_users *u;
		char err[256];
		assert_int_equal(auth_users_parse("users", file, strlen(file), &u, err, sizeof err),
		                 0);
		assert_string_equal(auth_users_dummy(u), h2b);
		assert_true(auth_users_verify(u, "zzz", "pw", 2));
		/* One-sided and with a wide margin (bcrypt-10 is ~30x SHA-512's 5000
		 * rounds here): the unknown user is not the cheap one any more. */
		double unknown = verify_ms(u, "nobody"), slow = verify_ms(u, "zzz");
		if (unknown < 0.5 * slow)
			fail_msg("unknown user %.1f ms, bcrypt user %.1f ms", unknown, slow);
		auth_users_unref(u);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_check_async),
	    cmocka_unit_test(test_load_async),
	    cmocka_unit_test(test_pool_many),
	    cmocka_unit_test(test_pool_queue_full),
	    cmocka_unit_test(test_pool_stop),
	    cmocka_unit_test(test_dummy_is_the_most_expensive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
