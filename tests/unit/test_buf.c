#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_append_within_limit(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "abcd", 4), 0);
	assert_int_equal(buf_append(&b, "efgh", 4), 0);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "abcdefgh", 8);
	/* The cap is checked before growing: nothing is appended past it. */
	assert_int_equal(buf_append(&b, "i", 1), -ENOSPC);
	assert_int_equal(b.len, 8);
	buf_free(&b);
}

static void test_consume_and_printf(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_printf(&b, "%d %s", 250, "Ok"), 0);
	buf_consume(&b, 4);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "Ok", 2);
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(buf_printf(&b, "%s", big), 0);
	assert_int_equal(b.len, 2 + sizeof big - 1);
	buf_consume(&b, b.len + 5);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_within_limit),
	    cmocka_unit_test(test_consume_and_printf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
