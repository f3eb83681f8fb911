/* Tests for tlsio: contexts from PEM files and self-signed, their errors, the
 * file stamps, and sessions driven through memory BIOs against an OpenSSL
 * client that is also memory-BIO driven (no sockets): handshake, data both
 * ways, close_notify, TLS 1.3 minimum, a context freed under a live session,
 * and the asynchronous load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tlsio.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* A key and a self-signed certificate for CN=name, written as PEM. */
static void make_cert(const char *name, const char *cert_file, const char *key_file,
                      const char *enc_pass)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	assert_non_null(key);
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(x, n);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	if (cert_file != NULL) {
		FILE *f = fopen(cert_file, "w");
		assert_non_null(f);
		assert_int_equal(PEM_write_X509(f, x), 1);
		fclose(f);
	}
	if (key_file != NULL) {
		FILE *f = fopen(key_file, "w");
		assert_non_null(f);
		if (enc_pass)
			assert_int_equal(PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(),
			                                      (unsigned char *)enc_pass,
			                                      (int)strlen(enc_pass), NULL, NULL),
			                 1);
		else
			assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL),
			                 1);
		fclose(f);
	}
	X509_free(x);
	EVP_PKEY_free(key);
}

static void append_file(const char *dst, const char *src)
{
	FILE *in = fopen(src, "r"), *out = fopen(dst, "a");
	assert_non_null(in);
	assert_non_null(out);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	fclose(out);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/mailport-tlsio-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char c[300], k[300], c2[300], k2[300], ek[300];
	path_of(c, sizeof c, "cert.pem");
	path_of(k, sizeof k, "key.pem");
	path_of(c2, sizeof c2, "other.pem");
	path_of(k2, sizeof k2, "otherkey.pem");
	path_of(ek, sizeof ek, "enckey.pem");
	make_cert("mx.test.example", c, k, NULL);
	make_cert("other.example", c2, k2, NULL);
	make_cert("enc.example", NULL, ek, "pw");
	/* combined.pem: certificate then key; chain.pem: leaf, an intermediate. */
	char comb[300], chain[300];
	path_of(comb, sizeof comb, "combined.pem");
	path_of(chain, sizeof chain, "chain.pem");
	append_file(comb, c);
	append_file(comb, k);
	append_file(chain, c);
	append_file(chain, c2);
	FILE *f;
	char junk[300];
	path_of(junk, sizeof junk, "junk.pem");
	f = fopen(junk, "w");
	assert_non_null(f);
	fputs("this is not PEM\n", f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ------------------------------------------------------------ contexts */

static struct tlsio_ctx *load(const char *cert, const char *key, const char *ciphers,
                              const char *minv, int want, const char *want_err)
{
	char c[300] = "", k[300] = "", err[512] = "";
	if (cert)
		path_of(c, sizeof c, cert);
	if (key)
		path_of(k, sizeof k, key);
	const char *addrs[] = {"127.0.0.1", "::1", "0.0.0.0", "fe80::1%eth0"};
	struct tlsio_settings s = {.cert_file = c,
	                           .key_file = k,
	                           .ciphers = ciphers ? ciphers : "",
	                           .min_version = minv ? minv : "TLSv1.2",
	                           .hostname = "mx.test.example",
	                           .addresses = addrs,
	                           .naddresses = 4};
	struct tlsio_ctx *ctx = NULL;
	int rc = tlsio_ctx_new(&s, &ctx, err, sizeof err);
	if (rc != want)
		fprintf(stderr, "tlsio_ctx_new(%s, %s): %d, want %d: %s\n", c, k, rc, want, err);
	assert_int_equal(rc, want);
	if (want_err != NULL && strstr(err, want_err) == NULL) {
		fprintf(stderr, "error %s\n  does not contain %s\n", err, want_err);
		fail();
	}
	if (want == 0)
		assert_non_null(ctx);
	else
		assert_null(ctx);
	return ctx;
}

static void test_ctx_files(void **state)
{
	(void)state;
	struct tlsio_ctx *c = load("cert.pem", "key.pem", NULL, NULL, 0, NULL);
	assert_false(tlsio_ctx_self_signed(c));
	assert_non_null(strstr(tlsio_ctx_describe(c), "CN=mx.test.example"));
	assert_non_null(strstr(tlsio_ctx_describe(c), "sha256 "));
	const struct tlsio_stamp *st = tlsio_ctx_stamp(c);
	assert_true(st->ino[0] != 0 && st->ino[1] != 0);
	tlsio_ctx_free(c);
	/* The key in the certificate's file; a chain after the leaf. */
	tlsio_ctx_free(load("combined.pem", NULL, NULL, NULL, 0, NULL));
	tlsio_ctx_free(load("chain.pem", "key.pem", NULL, "TLSv1.3", 0, NULL));
	tlsio_ctx_free(load("cert.pem", "key.pem", "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, 0, NULL));
	tlsio_ctx_free(NULL);
}

static void test_ctx_errors(void **state)
{
	(void)state;
	load("missing.pem", "key.pem", NULL, NULL, TLSIO_ERR_FILE, "SMTPD_TLS_CERT: cannot read ");
	load("cert.pem", "missing.pem", NULL, NULL, TLSIO_ERR_FILE, "SMTPD_TLS_KEY: cannot read ");
	load("junk.pem", "key.pem", NULL, NULL, TLSIO_ERR_FILE, "holds no usable PEM certificate");
	load("cert.pem", "junk.pem", NULL, NULL, TLSIO_ERR_FILE,
	     "SMTPD_TLS_KEY: /tmp/mailport-tlsio-");
	load("cert.pem", "otherkey.pem", NULL, NULL, TLSIO_ERR_FILE,
	     "does not match the certificate in");
	load("cert.pem", "enckey.pem", NULL, NULL, TLSIO_ERR_FILE,
	     "encrypted keys are not supported");
	/* The key is looked for in the certificate's file, which has none. */
	load("cert.pem", NULL, NULL, NULL, TLSIO_ERR_FILE, "SMTPD_TLS_CERT: ");
	load("cert.pem", "key.pem", "NOT-A-CIPHER", NULL, TLSIO_ERR_CONFIG,
	     "SMTPD_TLS_CIPHERS: \"NOT-A-CIPHER\"");
	/* A directory is not a certificate. */
	char err[512];
	struct tlsio_settings s = {.cert_file = dir, .key_file = ""};
	struct tlsio_ctx *c = NULL;
	assert_int_equal(tlsio_ctx_new(&s, &c, err, sizeof err), TLSIO_ERR_FILE);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_ctx_self_signed(void **state)
{
	(void)state;
	struct tlsio_ctx *c = load(NULL, NULL, NULL, NULL, 0, NULL);
	assert_true(tlsio_ctx_self_signed(c));
	assert_non_null(strstr(tlsio_ctx_describe(c), "CN=mx.test.example"));
	tlsio_ctx_free(c);
}

static void test_stamp(void **state)
{
	(void)state;
	char c[300], k[300];
	path_of(c, sizeof c, "stamp.pem");
	path_of(k, sizeof k, "stampkey.pem");
	make_cert("stamp.example", c, k, NULL);
	struct tlsio_settings s = {.cert_file = c, .key_file = k};
	struct tlsio_stamp a, b;
	tlsio_stamp_get(&s, &a);
	tlsio_stamp_get(&s, &b);
	assert_true(tlsio_stamp_equal(&a, &b));
	/* A new file under the same name (how a rotation looks). */
	make_cert("stamp2.example", c, NULL, NULL);
	struct timespec ts[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	assert_int_equal(utimensat(AT_FDCWD, c, ts, 0), 0);
	tlsio_stamp_get(&s, &b);
	assert_false(tlsio_stamp_equal(&a, &b));
	unlink(k);
	tlsio_stamp_get(&s, &a);
	assert_int_not_equal(a.err[1], 0);
	assert_false(tlsio_stamp_equal(&a, &b));
}

/* ------------------------------------------------------------ sessions */

struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rbio, *wbio;
};

static void client_init(struct client *cl, int max_version)
{
	cl->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cl->ctx);
	SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL);
	if (max_version)
		SSL_CTX_set_max_proto_version(cl->ctx, max_version);
	cl->ssl = SSL_new(cl->ctx);
	cl->rbio = BIO_new(BIO_s_mem());
	cl->wbio = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(cl->rbio, -1);
	SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
	SSL_set_connect_state(cl->ssl);
}

static void client_free(struct client *cl)
{
	SSL_free(cl->ssl);
	SSL_CTX_free(cl->ctx);
}

/* Move bytes both ways until neither side has anything to say. Returns the
 * last tlsio_read result (plaintext goes to got). */
static ssize_t shuttle(struct client *cl, struct tlsio *t, char *got, size_t *gotlen)
{
	ssize_t last = 0;
	for (int round = 0; round < 50; round++) {
		bool moved = false;
		char buf[16384];
		int n;
		while ((n = BIO_read(cl->wbio, buf, sizeof buf)) > 0) {
			assert_int_equal(tlsio_feed(t, buf, (size_t)n), 0);
			moved = true;
		}
		while (tlsio_input_pending(t)) {
			last = tlsio_read(t, buf, sizeof buf);
			if (last <= 0)
				break;
			if (got) {
				memcpy(got + *gotlen, buf, (size_t)last);
				*gotlen += (size_t)last;
			}
		}
		if (last < 0)
			return last;
		size_t k;
		while ((k = tlsio_take_output(t, buf, sizeof buf)) > 0) {
			assert_int_equal(BIO_write(cl->rbio, buf, (int)k), (int)k);
			moved = true;
		}
		/* Let the client advance its handshake. */
		if (!SSL_is_init_finished(cl->ssl))
			SSL_do_handshake(cl->ssl);
		if (!moved && BIO_ctrl_pending(cl->wbio) == 0)
			break;
	}
	return last;
}

static void test_session(void **state)
{
	(void)state;
	struct tlsio_ctx *c = load("cert.pem", "key.pem", NULL, NULL, 0, NULL);
	struct tlsio *t = tlsio_new(c);
	assert_non_null(t);
	/* Sessions keep the context alive (a reload frees the server's). */
	tlsio_ctx_free(c);
	assert_false(tlsio_established(t));
	assert_string_equal(tlsio_version(t), "");
	struct client cl;
	client_init(&cl, 0);
	SSL_do_handshake(cl.ssl);
	shuttle(&cl, t, NULL, NULL);
	assert_true(SSL_is_init_finished(cl.ssl));
	assert_true(tlsio_established(t));
	assert_string_equal(tlsio_version(t), "TLSv1.3");
	assert_true(strlen(tlsio_cipher(t)) > 0);
	/* Client to server, in several records and one big one. */
	char big[40000], got[65536];
	size_t gotlen = 0;
	memset(big, 'x', sizeof big);
	assert_int_equal(SSL_write(cl.ssl, "EHLO a\r\n", 8), 8);
	assert_int_equal(SSL_write(cl.ssl, big, sizeof big), (int)sizeof big);
	shuttle(&cl, t, got, &gotlen);
	assert_int_equal(gotlen, 8 + sizeof big);
	assert_memory_equal(got, "EHLO a\r\n", 8);
	/* Server to client. */
	assert_int_equal(tlsio_write(t, "250 ok\r\n", 8), 0);
	assert_true(tlsio_output_pending(t) > 0);
	shuttle(&cl, t, NULL, NULL);
	char buf[64];
	assert_int_equal(SSL_read(cl.ssl, buf, sizeof buf), 8);
	assert_memory_equal(buf, "250 ok\r\n", 8);
	/* close_notify from the client: end of file. */
	SSL_shutdown(cl.ssl);
	assert_int_equal(shuttle(&cl, t, NULL, NULL), TLSIO_EOF);
	tlsio_shutdown(t);
	tlsio_free(t);
	client_free(&cl);
	tlsio_free(NULL);
}

static void test_session_tls13_only(void **state)
{
	(void)state;
	struct tlsio_ctx *c = load(NULL, NULL, NULL, "TLSv1.3", 0, NULL);
	struct tlsio *t = tlsio_new(c);
	struct client cl;
	client_init(&cl, TLS1_2_VERSION);
	SSL_do_handshake(cl.ssl);
	assert_int_equal(shuttle(&cl, t, NULL, NULL), TLSIO_ERROR);
	assert_non_null(strstr(tlsio_error(t), "handshake: "));
	assert_false(tlsio_established(t));
	/* Nothing may be written before the handshake. */
	tlsio_free(t);
	client_free(&cl);
	tlsio_ctx_free(c);

	/* TLS 1.2 is accepted by default, with the configured cipher. */
	c = load("cert.pem", "key.pem", "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, 0, NULL);
	t = tlsio_new(c);
	client_init(&cl, TLS1_2_VERSION);
	SSL_do_handshake(cl.ssl);
	shuttle(&cl, t, NULL, NULL);
	assert_true(tlsio_established(t));
	assert_string_equal(tlsio_version(t), "TLSv1.2");
	assert_string_equal(tlsio_cipher(t), "ECDHE-ECDSA-AES128-GCM-SHA256");
	tlsio_free(t);
	client_free(&cl);
	tlsio_ctx_free(c);
}

static void test_session_garbage(void **state)
{
	(void)state;
	struct tlsio_ctx *c = load(NULL, NULL, NULL, NULL, 0, NULL);
	struct tlsio *t = tlsio_new(c);
	/* A plaintext SMTP client on a TLS port. */
	assert_int_equal(tlsio_feed(t, "EHLO x\r\n", 8), 0);
	char buf[64];
	assert_int_equal(tlsio_read(t, buf, sizeof buf), TLSIO_ERROR);
	assert_non_null(strstr(tlsio_error(t), "handshake"));
	tlsio_free(t);
	tlsio_ctx_free(c);
}

/* ------------------------------------------------------------ async */

struct loaded {
	int calls;
	struct tlsio_ctx *c;
	char err[512];
};

static void on_loaded(void *ctx, struct tlsio_ctx *c, const char *err)
{
	struct loaded *l = ctx;
	l->calls++;
	l->c = c;
	snprintf(l->err, sizeof l->err, "%s", err ? err : "");
}

static void test_load_async(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	char c[300], k[300], m[300];
	path_of(c, sizeof c, "cert.pem");
	path_of(k, sizeof k, "key.pem");
	path_of(m, sizeof m, "missing.pem");
	struct tlsio_settings ok = {.cert_file = c, .key_file = k};
	struct tlsio_settings bad = {.cert_file = m, .key_file = k};
	struct loaded a = {0}, b = {0};
	assert_int_equal(tlsio_ctx_load_async(&loop, &ok, on_loaded, &a), 0);
	assert_int_equal(tlsio_ctx_load_async(&loop, &bad, on_loaded, &b), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(a.calls, 1);
	assert_non_null(a.c);
	assert_int_equal(b.calls, 1);
	assert_null(b.c);
	assert_non_null(strstr(b.err, "SMTPD_TLS_CERT: cannot read"));
	tlsio_ctx_free(a.c);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ctx_files),       cmocka_unit_test(test_ctx_errors),
	    cmocka_unit_test(test_ctx_self_signed), cmocka_unit_test(test_stamp),
	    cmocka_unit_test(test_session),         cmocka_unit_test(test_session_tls13_only),
	    cmocka_unit_test(test_session_garbage), cmocka_unit_test(test_load_async),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
