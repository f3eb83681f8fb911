/* auth_limit: failed AUTH per address across sessions (issue 13 item 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "auth_limit.h"

static void test_blocks_after_max_failures(void **state)
{
	(void)state;
	struct auth_limit *al = auth_limit_new(5, 16);
	assert_non_null(al);
	uint64_t t = 1000000;
	for (int i = 0; i < 4; i++) {
		assert_false(auth_limit_failure(al, "198.51.100.7", t + (uint64_t)i));
		assert_int_equal(auth_limit_blocked(al, "198.51.100.7", t + (uint64_t)i), 0);
	}
	assert_true(auth_limit_failure(al, "198.51.100.7", t + 4));
	assert_int_equal(auth_limit_blocked(al, "198.51.100.7", t + 4), AUTH_LIMIT_BLOCK_MS);
	/* Others are unaffected. */
	assert_int_equal(auth_limit_blocked(al, "198.51.100.8", t + 4), 0);
	/* The block ends; the next one lasts twice as long, up to an hour. */
	t += 4 + AUTH_LIMIT_BLOCK_MS;
	assert_int_equal(auth_limit_blocked(al, "198.51.100.7", t), 0);
	uint64_t want = AUTH_LIMIT_BLOCK_MS;
	for (int round = 1; round < 10; round++) {
		for (int i = 0; i < 5; i++)
			auth_limit_failure(al, "198.51.100.7", t);
		want = want * 2 < AUTH_LIMIT_BLOCK_MAX_MS ? want * 2 : AUTH_LIMIT_BLOCK_MAX_MS;
		assert_int_equal(auth_limit_blocked(al, "198.51.100.7", t), want);
		t += want;
	}
	/* A quiet window forgets the address. */
	t += AUTH_LIMIT_WINDOW_MS;
	for (int i = 0; i < 4; i++)
		assert_false(auth_limit_failure(al, "198.51.100.7", t));
	assert_true(auth_limit_failure(al, "198.51.100.7", t));
	assert_int_equal(auth_limit_blocked(al, "198.51.100.7", t), AUTH_LIMIT_BLOCK_MS);
	auth_limit_free(al);
}

static void test_window_success_and_ipv6(void **state)
{
	(void)state;
	struct auth_limit *al = auth_limit_new(3, 16);
	/* Failures further apart than the window never add up. */
	for (int i = 0; i < 10; i++)
		assert_false(
		    auth_limit_failure(al, "203.0.113.1", (uint64_t)i * AUTH_LIMIT_WINDOW_MS));
	/* A success starts the count again. */
	assert_false(auth_limit_failure(al, "203.0.113.2", 1));
	assert_false(auth_limit_failure(al, "203.0.113.2", 2));
	auth_limit_success(al, "203.0.113.2");
	assert_false(auth_limit_failure(al, "203.0.113.2", 3));
	/* IPv6 counts by /64: three addresses of one /64 are one client. */
	assert_false(auth_limit_failure(al, "2001:db8:1:2::1", 10));
	assert_false(auth_limit_failure(al, "2001:db8:1:2::ffff", 11));
	assert_true(auth_limit_failure(al, "2001:db8:1:2:aaaa::9", 12));
	assert_true(auth_limit_blocked(al, "2001:db8:1:2::77", 12) > 0);
	assert_int_equal(auth_limit_blocked(al, "2001:db8:1:3::1", 12), 0);
	auth_limit_free(al);
}

static void test_bounded_memory(void **state)
{
	(void)state;
	struct auth_limit *al = auth_limit_new(2, 8);
	char a[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(a, sizeof a, "10.0.%d.%d", i / 256, i % 256);
		auth_limit_failure(al, a, (uint64_t)i);
	}
	assert_int_equal(auth_limit_size(al), 8);
	/* The most recent are kept: the last address blocks on its next failure. */
	assert_true(auth_limit_failure(al, a, 1000));
	auth_limit_free(al);
	/* 0 never blocks. */
	al = auth_limit_new(0, 8);
	for (int i = 0; i < 100; i++)
		assert_false(auth_limit_failure(al, "10.0.0.1", (uint64_t)i));
	auth_limit_free(al);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks_after_max_failures),
	    cmocka_unit_test(test_window_success_and_ipv6),
	    cmocka_unit_test(test_bounded_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
