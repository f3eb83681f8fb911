/* Tests for auth: parsing the users file (every way a line can be wrong, each
 * error naming SMTPD_AUTH_USERS_FILE and the line), verifying yescrypt,
 * SHA-512 and bcrypt hashes (DES, MD5, SHA-256 refused), unknown users and NUL in passwords, the
 * file loader, and the asynchronous check and reload on a libuv loop (a
 * cancelled check never calls back; the loop closes with nothing left). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),      cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_load),       cmocka_unit_test(test_check_async),
	    cmocka_unit_test(test_load_async),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
