/* log: text lines are logfmt that client data cannot forge (issue 13 item 8,
 * SPEC 7). Each hostile value is logged, the line is parsed back with a
 * logfmt reader written here from the format's rules, and the fields must be
 * exactly the ones logged, with the value unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Run log_event with stderr sent to a temporary file; return the line. */
static char *capture(const struct log_ctx *ctx, const char *const *kv)
{
	fflush(stderr);
	int saved = dup(2);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	dup2(fileno(tmp), 2);
	log_event(CONFIG_LOG_INFO, ctx, "event", kv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	long n = ftell(tmp);
	assert_true(n > 0);
	char *line = calloc(1, (size_t)n + 1);
	rewind(tmp);
	assert_int_equal(fread(line, 1, (size_t)n, tmp), (size_t)n);
	fclose(tmp);
	return line;
}

struct field {
	char key[32];
	char value[512];
};

/* logfmt: key=value separated by spaces; a value is bare or "quoted" with
 * \" \\ \n \r \t \xHH escapes. Returns the number of fields after the
 * timestamp, level and message, or -1 when the line is malformed. */
static int parse(const char *line, struct field *f, int max)
{
	const char *p = strchr(line, '\n');
	if (p == NULL || p[1] != '\0')
		return -1; /* exactly one line */
	p = strstr(line, " event");
	if (p == NULL)
		return -1;
	p += 6;
	int n = 0;
	while (*p == ' ') {
		p++;
		if (n == max)
			return -1;
		const char *eq = strchr(p, '=');
		if (eq == NULL || eq - p >= (long)sizeof f[n].key)
			return -1;
		memcpy(f[n].key, p, (size_t)(eq - p));
		f[n].key[eq - p] = '\0';
		for (const char *k = p; k < eq; k++)
			if (*k == ' ' || *k == '"')
				return -1;
		p = eq + 1;
		size_t o = 0;
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (*p == '\0' || *p == '\n' || o + 1 >= sizeof f[n].value)
					return -1;
				char c = *p;
				if (c == '\\') {
					p++;
					switch (*p) {
					case '"':
						c = '"';
						break;
					case '\\':
						c = '\\';
						break;
					case 'n':
						c = '\n';
						break;
					case 'r':
						c = '\r';
						break;
					case 't':
						c = '\t';
						break;
					case 'x': {
						unsigned v;
						if (sscanf(p + 1, "%2x", &v) != 1)
							return -1;
						c = (char)v;
						p += 2;
						break;
					}
					default:
						return -1;
					}
				} else if ((unsigned char)c < 0x20) {
					return -1;
				}
				f[n].value[o++] = c;
			}
			p++;
		} else {
			while (*p != ' ' && *p != '\n') {
				if (*p == '"' || o + 1 >= sizeof f[n].value)
					return -1;
				f[n].value[o++] = *p++;
			}
		}
		f[n].value[o] = '\0';
		n++;
	}
	return *p == '\n' ? n : -1;
}

static void roundtrip(const char *client, const char *const *kv)
{
	struct log_ctx ctx = {.session = "0000002a", .client = client};
	char *line = capture(&ctx, kv);
	struct field f[16];
	int n = parse(line, f, 16);
	size_t want = 1;
	while (kv[2 * (want - 1)] != NULL)
		want++;
	if (n != (int)want)
		fail_msg("line %s: %d fields, want %zu", line, n, want);
	assert_string_equal(f[0].key, "client");
	assert_string_equal(f[0].value, client);
	for (size_t i = 1; i < want; i++) {
		assert_string_equal(f[i].key, kv[2 * (i - 1)]);
		assert_string_equal(f[i].value, kv[2 * (i - 1) + 1]);
	}
	free(line);
}

static void test_hostile_values(void **state)
{
	(void)state;
	log_setup(CONFIG_LOG_TEXT, CONFIG_LOG_DEBUG);
	/* The forgery: a quoted local part that closes the quotes. */
	const char *forged = "\"x\\\" client=6.6.6.6:1 id=forged size=1 \\\"\"@attacker.example";
	const char *const kv1[] = {"mail_from", forged, "id", "real", NULL};
	roundtrip("127.0.0.1:40000", kv1);
	const char *const kv2[] = {"helo", "a b\tc\r\nX-Injected: 1 level=error", "x", "\\", NULL};
	roundtrip("[::1]:25", kv2);
	const char *const kv3[] = {"v", "\"", "w", "", "u", "ok.value:1@x/y+z-", NULL};
	roundtrip("127.0.0.1:1", kv3);
	const char *const kv4[] = {"v", "\x01\x7f\x1b[31mred", "utf8", "J\xc3\xbcrgen", NULL};
	roundtrip("127.0.0.1:2", kv4);
}

static void test_bare_when_safe(void **state)
{
	(void)state;
	log_setup(CONFIG_LOG_TEXT, CONFIG_LOG_DEBUG);
	struct log_ctx ctx = {.client = "127.0.0.1:40000"};
	const char *const kv[] = {"from", "a@b.example", "size", "1234", "sp", "a b", NULL};
	char *line = capture(&ctx, kv);
	assert_non_null(
	    strstr(line, " client=127.0.0.1:40000 from=a@b.example size=1234 sp=\"a b\"\n"));
	free(line);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hostile_values),
	    cmocka_unit_test(test_bare_when_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
