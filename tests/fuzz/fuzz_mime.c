/* libFuzzer target for the GMime parse path of the messages API (issue 17,
 * src/http/mime.c): the input is a stored message. Beyond "no crash, no read
 * past the input, no leak" it checks the contract:
 * - mime_parts_json() gives an object with "text" (string or null),
 *   "html_available" (bool) and "attachments" (array) that serialises, i.e.
 *   every string in it is valid UTF-8;
 * - every attachment listed can be written with mime_part_write(), and the
 *   bytes written are its "size";
 * - html_available is exactly when mime_html() and mime_body(html) give a
 *   body, which is valid UTF-8 with no NUL before its length;
 * - mime_decode_header() of the input's first line is valid UTF-8. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>
#include <jansson.h>

#include "mime.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mime_init(); /* GMime's global tables: once, not a leak of an input */
	return 0;
}

static void fuzz_utf8(const char *s, size_t len)
{
	fuzz_check(s != NULL && g_utf8_validate(s, (gssize)len, NULL) && strlen(s) == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	mime_init();
	char line[512];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t l = nl ? (size_t)(nl - data) : size;
	l = l < sizeof line - 1 ? l : sizeof line - 1;
	memcpy(line, data, l);
	line[l] = '\0';
	char *h = mime_decode_header(line);
	fuzz_check(h != NULL && g_utf8_validate(h, -1, NULL));
	free(h);

	struct mime *m = mime_open_mem((const char *)data, size);
	if (m == NULL)
		return 0;
	json_t *p = mime_parts_json(m);
	fuzz_check(p != NULL);
	json_t *text = json_object_get(p, "text");
	fuzz_check(json_is_string(text) || json_is_null(text));
	fuzz_check(json_is_boolean(json_object_get(p, "html_available")));
	json_t *atts = json_object_get(p, "attachments");
	fuzz_check(json_is_array(atts));
	char *s = json_dumps(p, JSON_COMPACT);
	fuzz_check(s != NULL);
	free(s);
	int fd = memfd_create("fuzz", MFD_CLOEXEC);
	fuzz_check(fd >= 0);
	size_t i;
	json_t *a;
	json_array_foreach(atts, i, a)
	{
		fuzz_check(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
		struct mime_part_info pi;
		int64_t n =
		    mime_part_write(m, json_string_value(json_object_get(a, "part")), fd, &pi);
		fuzz_check(n == json_integer_value(json_object_get(a, "size")));
		fuzz_check(pi.attachment);
		mime_part_info_free(&pi);
	}
	close(fd);
	size_t hl = 0, bl = 0;
	char *html = mime_html(m, &hl), *body = mime_body(m, true, &bl);
	bool avail = json_is_true(json_object_get(p, "html_available"));
	fuzz_check((html != NULL) == avail && (body != NULL) == avail);
	if (html) {
		fuzz_utf8(html, hl);
		fuzz_utf8(body, bl);
	}
	free(html);
	free(body);
	json_decref(p);
	mime_free(m);
	return 0;
}
