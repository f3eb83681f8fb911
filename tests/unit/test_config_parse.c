/* The settings' value parsers (sizes, durations, lists), each on its own:
 * test_config.c checks them through the settings table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static void test_parse_helpers(void **state)
{
	(void)state;
	static const struct {
		int (*parse)(const char *, uint64_t *);
		const char *in;
		int rc;
		uint64_t want;
	} nums[] = {
	    {config_parse_size, "0", 0, 0},
	    {config_parse_size, "1", 0, 1},
	    {config_parse_size, "1k", 0, 1024},
	    {config_parse_size, "3M", 0, 3u << 20},
	    {config_parse_size, "2G", 0, 2ull << 30},
	    {config_parse_size, "16777215T", -1, 0},
	    {config_parse_size, "", -1, 0},
	    {config_parse_size, "1 K", -1, 0},
	    {config_parse_size, "1KiB", -1, 0},
	    {config_parse_size, "0x10", -1, 0},
	    {config_parse_size, "17179869184G", -1, 0},
	    {config_parse_size, "17179869183G", 0, 17179869183ull << 30},
	    {config_parse_duration, "0", 0, 0},
	    {config_parse_duration, "45", 0, 45},
	    {config_parse_duration, "45S", 0, 45},
	    {config_parse_duration, "10m", 0, 600},
	    {config_parse_duration, "72h", 0, 259200},
	    {config_parse_duration, "87600h", 0, 315360000},
	    {config_parse_duration, "87601h", -1, 0},
	    {config_parse_duration, "1d", -1, 0},
	    {config_parse_duration, "h", -1, 0},
	    {config_parse_duration, "-1", -1, 0},
	    {config_parse_duration, "99999999999999999999999", -1, 0},
	    {config_parse_count, "18446744073709551615", 0, UINT64_MAX},
	    {config_parse_count, "18446744073709551616", -1, 0},
	    {config_parse_count, "1k", -1, 0},
	    {config_parse_count, "", -1, 0},
	};
	for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
		uint64_t got = 0;
		int rc = nums[i].parse(nums[i].in, &got);
		if (rc != nums[i].rc || (rc == 0 && got != nums[i].want))
			fail_msg("\"%s\": got rc=%d %llu want rc=%d %llu", nums[i].in, rc,
			         (unsigned long long)got, nums[i].rc,
			         (unsigned long long)nums[i].want);
	}
	static const struct {
		const char *in;
		int rc;
		bool want;
	} bools[] = {
	    {"1", 0, true},         {"true", 0, true},   {"YES", 0, true}, {"On", 0, true},
	    {"0", 0, false},        {"FALSE", 0, false}, {"no", 0, false}, {"oFF", 0, false},
	    {"", -1, false},        {"2", -1, false},    {"y", -1, false}, {"yes ", -1, false},
	    {"enabled", -1, false},
	};
	for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
		bool got = !bools[i].want;
		int rc = config_parse_bool(bools[i].in, &got);
		if (rc != bools[i].rc || (rc == 0 && got != bools[i].want))
			fail_msg("\"%s\": got rc=%d %d want rc=%d %d", bools[i].in, rc, got,
			         bools[i].rc, bools[i].want);
	}
	/* SMTPD_SPOOL_MIN_FREE (issue 12): a size, or whole percents below 100. */
	static const struct {
		const char *in;
		int rc;
		uint64_t bytes;
		unsigned percent;
	} mins[] = {
	    {"100M", 0, 100u << 20, 0},
	    {"0", 0, 0, 0},
	    {"2%", 0, 0, 2},
	    {"99%", 0, 0, 99},
	    {"0%", 0, 0, 0},
	    {"1G", 0, 1u << 30, 0},
	    {"100%", -1, 0, 0},
	    {"1.5%", -1, 0, 0},
	    {"%", -1, 0, 0},
	    {"-1%", -1, 0, 0},
	    {"0100%", -1, 0, 0},
	    {"2 %", -1, 0, 0},
	    {"", -1, 0, 0},
	    {"5x", -1, 0, 0},
	};
	for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++) {
		uint64_t bytes = 7;
		unsigned percent = 7;
		int rc = config_parse_min_free(mins[i].in, &bytes, &percent);
		if (rc != mins[i].rc ||
		    (rc == 0 && (bytes != mins[i].bytes || percent != mins[i].percent)))
			fail_msg("min free \"%s\": got rc=%d %llu %u%% want rc=%d %llu %u%%",
			         mins[i].in, rc, (unsigned long long)bytes, percent, mins[i].rc,
			         (unsigned long long)mins[i].bytes, mins[i].percent);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
