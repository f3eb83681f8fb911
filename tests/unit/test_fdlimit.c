/* fdlimit: how many connections fit in RLIMIT_NOFILE (issue 13 item 14). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "fdlimit.h"

static void test_fit(void **state)
{
	(void)state;
	/* Plenty: the configured maximum stays. */
	assert_int_equal(fdlimit_fit(1000, 2, 1048576), 1000);
	assert_int_equal(fdlimit_fit(1000, 2, UINT64_MAX), 1000);
	assert_int_equal(fdlimit_fit(1000, 0, 2 * 1000 + FDLIMIT_RESERVE), 1000);
	/* Too few: what fits, two descriptors a session after the reserve. */
	assert_int_equal(fdlimit_fit(1000, 0, 2 * 1000 + FDLIMIT_RESERVE - 1), 999);
	assert_int_equal(fdlimit_fit(1000, 2, 1024), (1024 - FDLIMIT_RESERVE - 2) / 2);
	/* Absurdly few: one, never zero. */
	assert_int_equal(fdlimit_fit(1000, 0, 16), 1);
	assert_int_equal(fdlimit_fit(UINT64_MAX, 0, 4096), (4096 - FDLIMIT_RESERVE) / 2);
}

static void test_setup_raises_soft_limit(void **state)
{
	(void)state;
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max > 64) {
		struct rlimit low = {.rlim_cur = 64, .rlim_max = rl.rlim_max};
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	}
	struct fdlimit fl;
	char warn[512];
	fdlimit_setup(1000, 1, &fl, warn, sizeof warn);
	struct rlimit now;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_true(now.rlim_cur == now.rlim_max);
	assert_int_equal(fl.max_connections, fdlimit_fit(1000, 1, fl.nofile));
	if (fl.max_connections < 1000)
		assert_non_null(strstr(warn, "SMTPD_MAX_CONNECTIONS is 1000"));
	else
		assert_string_equal(warn, "");
	/* With a hard limit of 200 the maximum is lowered and the warning names both. */
	struct rlimit hard = {.rlim_cur = 200, .rlim_max = 200};
	if (setrlimit(RLIMIT_NOFILE, &hard) == 0) {
		fdlimit_setup(1000, 1, &fl, warn, sizeof warn);
		assert_int_equal(fl.nofile, 200);
		assert_int_equal(fl.max_connections, (200 - FDLIMIT_RESERVE - 1) / 2);
		assert_non_null(strstr(warn, "SMTPD_MAX_CONNECTIONS is 1000"));
		assert_non_null(strstr(warn, "is 200"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fit),
	    cmocka_unit_test(test_setup_raises_soft_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
