/* libFuzzer target for the pure SMTP core (smtp_proto).
 *
 * Input: byte 0 seeds the feed() piece sizes, byte 1 picks options (small
 * size limit, bare_lf_reject, no greeting, lazy output draining, a final
 * timeout, a failing body sink, STARTTLS + AUTH offered, implicit TLS with AUTH
 * required); the rest is what the client sends. Pending verdicts are resumed
 * with 250 and 451 alternately, as an adapter would; STARTTLS is started or
 * refused, AUTH answered 235 or 535, alternately too.
 *
 * Invariants checked (abort() on violation):
 * - feed() consumes at most what it is given, and makes progress unless a
 *   verdict is pending, the session is closing, or output is over the mark;
 * - the output is CRLF-terminated reply lines of at most 512 octets, each
 *   starting with a 3-digit code, with no bare CR or LF;
 * - the body sink never sees a CR (line ends are LF, bare CRs are dropped);
 * - at the end of a message the envelope is within its limits.
 *
 * Build: clang -std=c17 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined
 *        -Isrc tests/fuzz/fuzz_smtp_proto.c src/core/smtp_proto.c src/core/smtp_data.c
 *        src/core/smtp_parse.c src/core/smtp_auth.c src/core/buf.c src/core/policy.c
 * With -DMAILPORT_FUZZ_STANDALONE it has its own main() that replays the
 * files (or directories of files) named on its command line, so the corpus
 * can run under ctest with any compiler. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proto.h"

#define FUZZ_SMALL_SIZE 64
#define FUZZ_SIZE       4096
#define FUZZ_MAX_RCPT   3

struct fuzz {
	unsigned body_calls;
	unsigned fail_at; /* the body sink fails at this call (0: never) */
};

static void fuzz_check(bool ok)
{
	if (!ok)
		abort();
}

static int fuzz_body(void *ctx, const char *data, size_t len)
{
	struct fuzz *f = ctx;
	fuzz_check(data != NULL && len > 0);
	fuzz_check(memchr(data, '\r', len) == NULL);
	return ++f->body_calls == f->fail_at ? -1 : 0;
}

static void fuzz_event(void *ctx, const struct smtp_event *ev)
{
	(void)ctx;
	fuzz_check(ev->type <= SMTP_EV_RCPT_REFUSED);
	if (ev->arg != NULL)
		fuzz_check(strlen(ev->arg) <= 512);
}

static void fuzz_drain(struct smtp_proto *p)
{
	const char *o;
	size_t n = smtp_proto_output(p, &o);
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (o[i] == '\r') {
			fuzz_check(i + 1 < n && o[i + 1] == '\n');
			fuzz_check(i - start + 2 <= 512);
			fuzz_check(i - start >= 3);
			for (size_t k = start; k < start + 3; k++)
				fuzz_check(o[k] >= '0' && o[k] <= '9');
			start = i + 2;
			i++;
		} else {
			fuzz_check(o[i] != '\n');
		}
	}
	fuzz_check(start == n);
	smtp_proto_output_consume(p, n);
}

static void fuzz_check_eom(const struct smtp_proto *p, uint64_t max_size)
{
	fuzz_check(smtp_proto_message_size(p) <= max_size);
	fuzz_check(smtp_proto_rcpt_count(p) >= 1 && smtp_proto_rcpt_count(p) <= FUZZ_MAX_RCPT);
	fuzz_check(smtp_proto_in_transaction(p));
	fuzz_check(!smtp_proto_in_data(p));
	fuzz_check(strlen(smtp_proto_mail_from(p)) <= SMTP_PROTO_PATH_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t seed = data[0];
	uint8_t opt = data[1];
	const char *in = (const char *)data + 2;
	size -= 2;

	struct fuzz f = {.fail_at = (opt & 0x20) ? 1 + (seed & 7) : 0};
	struct smtp_proto_config cfg = {
	    .hostname = "fuzz.example",
	    .max_message_size = (opt & 0x01) ? FUZZ_SMALL_SIZE : FUZZ_SIZE,
	    .max_recipients = FUZZ_MAX_RCPT,
	    .bare_lf_reject = (opt & 0x02) != 0,
	    .tls_available = (opt & 0x40) != 0,
	    .tls_active = (opt & 0x80) != 0,
	    .auth = (opt & 0x80)   ? SMTP_AUTH_REQUIRED
	            : (opt & 0x40) ? SMTP_AUTH_OPTIONAL
	                           : SMTP_AUTH_OFF,
	    .auth_insecure = (opt & 0x40) && (seed & 1),
	    .max_line_length = (seed & 2) ? 1000 : 0,
	};
	struct smtp_proto_sink sink = {.ctx = &f, .body = fuzz_body, .event = fuzz_event};
	struct smtp_proto *p = smtp_proto_new(&cfg, &sink);
	if (p == NULL)
		return 0;
	if (!(opt & 0x04))
		smtp_proto_greet(p);
	bool lazy = (opt & 0x08) != 0;
	unsigned verdicts = 0;
	size_t off = 0;
	while (off < size) {
		if (smtp_proto_pending(p) == SMTP_WAIT_EOM) {
			fuzz_check_eom(p, cfg.max_message_size);
			if (verdicts++ % 2 == 0)
				smtp_proto_resume(p, 250, "2.0.0", "Ok: queued as F");
			else
				smtp_proto_resume(p, 451, "4.3.0", "Try again later");
			fuzz_check(smtp_proto_pending(p) == SMTP_WAIT_NONE);
			fuzz_check(!smtp_proto_in_transaction(p));
			fuzz_drain(p);
			continue;
		}
		if (smtp_proto_pending(p) == SMTP_WAIT_STARTTLS) {
			fuzz_check(!smtp_proto_tls_active(p) && !smtp_proto_in_transaction(p));
			if (verdicts++ % 2 == 0) {
				smtp_proto_tls_started(p);
				fuzz_check(smtp_proto_tls_active(p));
				fuzz_check(smtp_proto_helo(p)[0] == '\0');
				fuzz_check(smtp_proto_auth_user(p) == NULL);
			} else {
				smtp_proto_resume(p, 454, "4.7.0", "TLS not available");
			}
			fuzz_check(smtp_proto_pending(p) == SMTP_WAIT_NONE);
			fuzz_drain(p);
			continue;
		}
		if (smtp_proto_pending(p) == SMTP_WAIT_AUTH) {
			size_t plen;
			const char *pw = smtp_proto_auth_password(p, &plen);
			const char *user = smtp_proto_auth_username(p);
			fuzz_check(pw != NULL && strlen(user) <= SMTP_PROTO_AUTH_USER_MAX);
			fuzz_check(plen < SMTP_PROTO_AUTH_LINE_MAX);
			if (verdicts++ % 2 == 0)
				smtp_proto_resume(p, 235, "2.7.0", "Authentication successful");
			else
				smtp_proto_resume(p, 535, "5.7.8",
				                  "Authentication credentials invalid");
			fuzz_check(smtp_proto_pending(p) == SMTP_WAIT_NONE);
			fuzz_check(smtp_proto_auth_password(p, &plen) == NULL);
			fuzz_drain(p);
			continue;
		}
		if (smtp_proto_closing(p))
			break;
		/* Piece sizes from a small LCG seeded by the first byte. */
		seed = seed * 1103515245u + 12345u;
		size_t piece = 1 + (seed >> 16) % (data[0] < 128 ? 8 : 600);
		if (piece > size - off)
			piece = size - off;
		size_t k = smtp_proto_feed(p, in + off, piece);
		fuzz_check(k <= piece);
		const char *o;
		size_t queued = smtp_proto_output(p, &o);
		if (k == 0 && smtp_proto_pending(p) == SMTP_WAIT_NONE && !smtp_proto_closing(p) &&
		    queued <= SMTP_PROTO_OUTPUT_HIGH)
			abort(); /* no progress and no reason for it */
		if (!lazy || k == 0)
			fuzz_drain(p);
		off += k;
	}
	if (opt & 0x10) {
		smtp_proto_timeout(p);
		fuzz_check(smtp_proto_closing(p));
	}
	fuzz_drain(p);
	smtp_proto_free(p);
	return 0;
}

#ifdef MAILPORT_FUZZ_STANDALONE
#include <dirent.h>

static int fuzz_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return -1;
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, fp);
	fclose(fp);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (d == NULL) {
			if (fuzz_file(argv[i]) < 0) {
				fprintf(stderr, "%s: cannot read\n", argv[i]);
				return 1;
			}
			files++;
			continue;
		}
		struct dirent *de;
		char path[4096];
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
			if (fuzz_file(path) == 0)
				files++;
		}
		closedir(d);
	}
	printf("%d inputs replayed\n", files);
	return 0;
}
#endif
