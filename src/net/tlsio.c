/* tlsio: OpenSSL contexts and memory-BIO sessions (see tlsio.h, SPEC 6). */
#include "tlsio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* RFC 5280 upper bound of a CommonName. */
#define TLSIO_CN_MAX 64
/* Room for the SAN list of a self-signed certificate. */
#define TLSIO_SAN_MAX  4096
#define TLSIO_DESC_MAX 512
#define TLSIO_ERR_MAX  256

struct tlsio_ctx {
	SSL_CTX *ssl;
	bool self_signed;
	struct tlsio_stamp stamp;
	char desc[TLSIO_DESC_MAX];
};

struct tlsio {
	SSL *ssl;
	BIO *rbio; /* ciphertext from the peer, read by OpenSSL */
	BIO *wbio; /* ciphertext for the peer, written by OpenSSL */
	bool established;
	char err[TLSIO_ERR_MAX];
};

/* The reason of OpenSSL's most recent error, then its queue emptied. */
static void tlsio_openssl_reason(char *dst, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	if (r != NULL)
		snprintf(dst, n, "%s", r);
	else if (e != 0)
		ERR_error_string_n(e, dst, n);
	else
		snprintf(dst, n, "unknown error");
	ERR_clear_error();
}

/* ------------------------------------------------------------ files */

/* Read a whole (small) file; *out is malloc'ed. Returns 0 or -errno. */
static int tlsio_read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > TLSIO_FILE_MAX) {
		close(fd);
		return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
	}
	char *buf = malloc(TLSIO_FILE_MAX);
	size_t n = 0;
	if (buf == NULL) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, TLSIO_FILE_MAX - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == TLSIO_FILE_MAX) {
			close(fd);
			free(buf);
			return -EFBIG;
		}
	}
	close(fd);
	*out = buf;
	*len = n;
	return 0;
}

static const char *tlsio_file_error(int e)
{
	if (e == -EFBIG)
		return "file too large (1 MiB at most)";
	if (e == -EINVAL)
		return "not a regular file";
	return strerror(-e);
}

static void tlsio_stamp_one(const char *path, struct tlsio_stamp *s, int i)
{
	struct stat st;
	if (path == NULL || path[0] == '\0')
		return;
	if (stat(path, &st) < 0) {
		s->err[i] = errno;
		return;
	}
	s->dev[i] = st.st_dev;
	s->ino[i] = st.st_ino;
	s->size[i] = st.st_size;
	s->mtime[i] = st.st_mtim;
}

void tlsio_stamp_get(const struct tlsio_settings *s, struct tlsio_stamp *out)
{
	memset(out, 0, sizeof *out);
	tlsio_stamp_one(s->cert_file, out, 0);
	tlsio_stamp_one(s->key_file, out, 1);
}

bool tlsio_stamp_equal(const struct tlsio_stamp *a, const struct tlsio_stamp *b)
{
	for (int i = 0; i < 2; i++) {
		if (a->dev[i] != b->dev[i] || a->ino[i] != b->ino[i] || a->size[i] != b->size[i] ||
		    a->mtime[i].tv_sec != b->mtime[i].tv_sec ||
		    a->mtime[i].tv_nsec != b->mtime[i].tv_nsec || a->err[i] != b->err[i])
			return false;
	}
	return true;
}

/* A key file is never asked for a passphrase: nobody would be there to type it. */
static int tlsio_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* The certificate chain (leaf first) and the key from PEM files. */
static int tlsio_load_pem(SSL_CTX *ssl, const struct tlsio_settings *s, char *err, size_t errlen)
{
	const char *key_file = s->key_file && s->key_file[0] ? s->key_file : s->cert_file;
	const char *key_var = s->key_file && s->key_file[0] ? "SMTPD_TLS_KEY" : "SMTPD_TLS_CERT";
	char reason[TLSIO_ERR_MAX];
	char *pem = NULL;
	size_t len = 0;
	int rc = tlsio_read_file(s->cert_file, &pem, &len);
	if (rc < 0) {
		snprintf(err, errlen, "SMTPD_TLS_CERT: cannot read %s: %s", s->cert_file,
		         tlsio_file_error(rc));
		return TLSIO_ERR_FILE;
	}
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *leaf = b ? PEM_read_bio_X509_AUX(b, NULL, tlsio_no_passphrase, NULL) : NULL;
	if (leaf == NULL || SSL_CTX_use_certificate(ssl, leaf) != 1) {
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(err, errlen, "SMTPD_TLS_CERT: %s holds no usable PEM certificate (%s)",
		         s->cert_file, reason);
		goto fail;
	}
	X509_free(leaf);
	leaf = NULL;
	/* The rest of the file: intermediate certificates, sent with the leaf. */
	X509 *ca;
	while ((ca = PEM_read_bio_X509(b, NULL, tlsio_no_passphrase, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ssl, ca) != 1) {
			X509_free(ca);
			tlsio_openssl_reason(reason, sizeof reason);
			snprintf(err, errlen, "SMTPD_TLS_CERT: %s: bad chain certificate (%s)",
			         s->cert_file, reason);
			goto fail;
		}
	}
	ERR_clear_error(); /* the end of the file reads as "no start line" */
	BIO_free(b);
	b = NULL;
	if (key_file != s->cert_file) {
		OPENSSL_cleanse(pem, len);
		free(pem);
		pem = NULL;
		rc = tlsio_read_file(key_file, &pem, &len);
		if (rc < 0) {
			snprintf(err, errlen, "SMTPD_TLS_KEY: cannot read %s: %s", key_file,
			         tlsio_file_error(rc));
			return TLSIO_ERR_FILE;
		}
	}
	b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, tlsio_no_passphrase, NULL) : NULL;
	if (key == NULL) {
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(err, errlen,
		         "%s: %s holds no usable PEM private key (%s; encrypted keys are not "
		         "supported)",
		         key_var, key_file, reason);
		goto fail;
	}
	/* SSL_CTX_use_PrivateKey already compares the key with the certificate. */
	int used = SSL_CTX_use_PrivateKey(ssl, key);
	EVP_PKEY_free(key);
	if (used != 1 || SSL_CTX_check_private_key(ssl) != 1) {
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(err, errlen, "SMTPD_TLS_KEY: %s does not match the certificate in %s (%s)",
		         key_file, s->cert_file, reason);
		goto fail;
	}
	BIO_free(b);
	OPENSSL_cleanse(pem, len);
	free(pem);
	return 0;
fail:
	X509_free(leaf);
	BIO_free(b);
	if (pem != NULL) {
		OPENSSL_cleanse(pem, len);
		free(pem);
	}
	return TLSIO_ERR_FILE;
}

/* ------------------------------------------------------- self-signed */

/* "DNS:mx.example,IP:127.0.0.1,..." from the hostname and the listeners. */
static void tlsio_san(const struct tlsio_settings *s, char *san, size_t n)
{
	size_t o = 0;
	const char *h = s->hostname && s->hostname[0] ? s->hostname : "localhost";
	char lit[INET6_ADDRSTRLEN + 8];
	size_t hl = strlen(h);
	/* An address literal hostname ([192.0.2.1], [IPv6:2001:db8::1]) is an IP name. */
	if (h[0] == '[' && hl > 2 && hl - 2 < sizeof lit) {
		memcpy(lit, h + 1, hl - 2);
		lit[hl - 2] = '\0';
		const char *a = strncasecmp(lit, "IPv6:", 5) == 0 ? lit + 5 : lit;
		o += (size_t)snprintf(san + o, n - o, "IP:%s", a);
	} else {
		o += (size_t)snprintf(san + o, n - o, "DNS:%s", h);
	}
	for (size_t i = 0; i < s->naddresses && o < n; i++) {
		char a[INET6_ADDRSTRLEN + 1];
		snprintf(a, sizeof a, "%s", s->addresses[i]);
		a[strcspn(a, "%")] = '\0'; /* a zone is not part of an IP name */
		unsigned char bin[sizeof(struct in6_addr)];
		bool v6 = strchr(a, ':') != NULL;
		if (inet_pton(v6 ? AF_INET6 : AF_INET, a, bin) != 1)
			continue;
		static const unsigned char zero[sizeof(struct in6_addr)];
		if (memcmp(bin, zero, v6 ? 16 : 4) == 0)
			continue; /* 0.0.0.0 and :: name nobody */
		char item[INET6_ADDRSTRLEN + 8];
		snprintf(item, sizeof item, ",IP:%s", a);
		if (strstr(san, item) != NULL)
			continue;
		o += (size_t)snprintf(san + o, n - o, "%s", item);
	}
}

static int tlsio_add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* An ECDSA P-256 key and a certificate for it, signed by itself. */
static int tlsio_self_signed(SSL_CTX *ssl, const struct tlsio_settings *s, char *err, size_t errlen)
{
	char reason[TLSIO_ERR_MAX], san[TLSIO_SAN_MAX] = "";
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	ASN1_INTEGER *serial = ASN1_INTEGER_new();
	BIGNUM *bn = BN_new();
	unsigned char rnd[16];
	int rc = -1;
	if (key == NULL || x == NULL || serial == NULL || bn == NULL ||
	    RAND_bytes(rnd, sizeof rnd) != 1)
		goto out;
	rnd[0] &= 0x7f; /* a positive serial number (RFC 5280 4.1.2.2) */
	if (BN_bin2bn(rnd, sizeof rnd, bn) == NULL || BN_to_ASN1_INTEGER(bn, serial) == NULL ||
	    X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), (long)TLSIO_SELF_SIGNED_DAYS * 86400) == NULL ||
	    X509_set_pubkey(x, key) != 1)
		goto out;
	const char *h = s->hostname && s->hostname[0] ? s->hostname : "localhost";
	char cn[TLSIO_CN_MAX + 1];
	snprintf(cn, sizeof cn, "%s", strlen(h) <= TLSIO_CN_MAX ? h : "mailport");
	X509_NAME *name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
	                               0) != 1 ||
	    X509_set_issuer_name(x, name) != 1)
		goto out;
	tlsio_san(s, san, sizeof san);
	if (tlsio_add_ext(x, NID_subject_alt_name, san) < 0 ||
	    tlsio_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tlsio_add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tlsio_add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    tlsio_add_ext(x, NID_subject_key_identifier, "hash") < 0)
		goto out;
	if (X509_sign(x, key, EVP_sha256()) == 0 || SSL_CTX_use_certificate(ssl, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ssl, key) != 1)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(err, errlen, "SMTPD_TLS_CERT: cannot make a self-signed certificate: %s",
		         reason);
	}
	BN_free(bn);
	ASN1_INTEGER_free(serial);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc < 0 ? TLSIO_ERR_FILE : 0;
}

/* ---------------------------------------------------------- contexts */

static void tlsio_describe(struct tlsio_ctx *c)
{
	X509 *x = SSL_CTX_get0_certificate(c->ssl);
	char subject[256] = "?", expires[64] = "?", fp[3 * EVP_MAX_MD_SIZE + 1] = "";
	if (x == NULL)
		return;
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
	struct tm tm;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
		for (unsigned i = 0; i < mdlen; i++)
			snprintf(fp + 3 * i, sizeof fp - 3 * i, "%02X%s", md[i],
			         i + 1 < mdlen ? ":" : "");
	snprintf(c->desc, sizeof c->desc, "subject %s, expires %s, sha256 %s", subject, expires,
	         fp);
}

int tlsio_ctx_new(const struct tlsio_settings *s, struct tlsio_ctx **out, char *err, size_t errlen)
{
	*out = NULL;
	ERR_clear_error();
	struct tlsio_ctx *c = calloc(1, sizeof *c);
	if (c == NULL || (c->ssl = SSL_CTX_new(TLS_server_method())) == NULL) {
		free(c);
		snprintf(err, errlen, "TLS: out of memory");
		return TLSIO_ERR_FILE;
	}
	SSL_CTX *ssl = c->ssl;
	int rc = TLSIO_ERR_CONFIG;
	bool v13 = s->min_version != NULL && strcmp(s->min_version, "TLSv1.3") == 0;
	/* TLS 1.2 at least (RFC 8314 4.1 and RFC 8996: no TLS 1.0/1.1). */
	SSL_CTX_set_min_proto_version(ssl, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_COMPRESSION);
	/* Idle sessions give their record buffers back (many idle SMTP sessions). */
	SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_id_context(ssl, (const unsigned char *)"mailport", 8);
	SSL_CTX_set_dh_auto(ssl, 1);
	/* TLS 1.2 by default: Mozilla's "intermediate" list without the DHE suites
	 * (no DH parameters to manage): AEAD with forward secrecy only, none of the
	 * CBC suites OpenSSL also offers, which scanners flag (issue 13). */
	const char *ciphers = s->ciphers != NULL && s->ciphers[0] != '\0'
	                          ? s->ciphers
	                          : "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	                            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
	if (SSL_CTX_set_cipher_list(ssl, ciphers) != 1) {
		char reason[TLSIO_ERR_MAX];
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(err, errlen,
		         "SMTPD_TLS_CIPHERS: \"%.100s\" is not a usable cipher list (%s)",
		         s->ciphers, reason);
		goto fail;
	}
	if (s->cert_file != NULL && s->cert_file[0] != '\0') {
		tlsio_stamp_get(s, &c->stamp);
		rc = tlsio_load_pem(ssl, s, err, errlen);
	} else {
		c->self_signed = true;
		rc = tlsio_self_signed(ssl, s, err, errlen);
	}
	if (rc < 0)
		goto fail;
	tlsio_describe(c);
	*out = c;
	return 0;
fail:
	ERR_clear_error();
	tlsio_ctx_free(c);
	return rc;
}

void tlsio_ctx_free(struct tlsio_ctx *c)
{
	if (c == NULL)
		return;
	/* Sessions made from it hold their own reference to the SSL_CTX. */
	SSL_CTX_free(c->ssl);
	free(c);
}

const char *tlsio_ctx_describe(const struct tlsio_ctx *c)
{
	return c->desc;
}

bool tlsio_ctx_self_signed(const struct tlsio_ctx *c)
{
	return c->self_signed;
}

const struct tlsio_stamp *tlsio_ctx_stamp(const struct tlsio_ctx *c)
{
	return &c->stamp;
}

struct tlsio_load {
	uv_work_t work;
	const struct tlsio_settings *s;
	tlsio_load_cb cb;
	void *ctx;
	struct tlsio_ctx *result;
	char err[512];
	struct tlsio_stamp stamp;
	struct tlsio_stamp *stamp_out; /* NULL: not wanted */
};

static void tlsio_load_work(uv_work_t *w)
{
	struct tlsio_load *l = w->data;
	if (l->stamp_out != NULL)
		tlsio_stamp_get(l->s, &l->stamp);
	if (tlsio_ctx_new(l->s, &l->result, l->err, sizeof l->err) < 0)
		l->result = NULL;
	ERR_clear_error(); /* the worker thread's queue */
}

static void tlsio_load_after(uv_work_t *w, int status)
{
	struct tlsio_load *l = w->data;
	if (status < 0 && l->result == NULL)
		snprintf(l->err, sizeof l->err, "TLS reload cancelled");
	if (l->stamp_out != NULL)
		*l->stamp_out = l->stamp;
	l->cb(l->ctx, l->result, l->result ? NULL : l->err);
	free(l);
}

int tlsio_ctx_load_async(uv_loop_t *loop, const struct tlsio_settings *s, tlsio_load_cb cb,
                         void *ctx)
{
	return tlsio_ctx_reload_async(loop, s, NULL, cb, ctx);
}

int tlsio_ctx_reload_async(uv_loop_t *loop, const struct tlsio_settings *s,
                           struct tlsio_stamp *stamp, tlsio_load_cb cb, void *ctx)
{
	struct tlsio_load *l = calloc(1, sizeof *l);
	if (l == NULL)
		return -ENOMEM;
	l->stamp_out = stamp;
	l->s = s;
	l->cb = cb;
	l->ctx = ctx;
	l->work.data = l;
	int rc = uv_queue_work(loop, &l->work, tlsio_load_work, tlsio_load_after);
	if (rc < 0)
		free(l);
	return rc;
}

/* ---------------------------------------------------------- sessions */

struct tlsio *tlsio_new(struct tlsio_ctx *c)
{
	struct tlsio *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->ssl = SSL_new(c->ssl);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	/* An empty read BIO means "wait for more", never end of file. */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both now */
	SSL_set_accept_state(t->ssl);
	return t;
}

void tlsio_free(struct tlsio *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);
	free(t);
}

int tlsio_feed(struct tlsio *t, const char *data, size_t len)
{
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		int n = BIO_write(t->rbio, data, chunk);
		if (n <= 0)
			return -ENOMEM;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t tlsio_read(struct tlsio *t, char *buf, size_t len)
{
	ERR_clear_error();
	int n = SSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (!t->established && SSL_is_init_finished(t->ssl))
		t->established = true;
	if (n > 0)
		return n;
	switch (SSL_get_error(t->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return TLSIO_EOF;
	default: {
		char reason[TLSIO_ERR_MAX - 32];
		tlsio_openssl_reason(reason, sizeof reason);
		snprintf(t->err, sizeof t->err, "%s: %s", t->established ? "record" : "handshake",
		         reason);
		return TLSIO_ERROR;
	}
	}
}

int tlsio_write(struct tlsio *t, const char *data, size_t len)
{
	ERR_clear_error();
	while (len > 0) {
		int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
		int n = SSL_write(t->ssl, data, chunk);
		if (n <= 0) {
			char reason[TLSIO_ERR_MAX - 32];
			tlsio_openssl_reason(reason, sizeof reason);
			snprintf(t->err, sizeof t->err, "write: %s", reason);
			return TLSIO_ERROR;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t tlsio_output_pending(const struct tlsio *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t tlsio_take_output(struct tlsio *t, char *buf, size_t len)
{
	int n = BIO_read(t->wbio, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	return n > 0 ? (size_t)n : 0;
}

bool tlsio_input_pending(const struct tlsio *t)
{
	return BIO_ctrl_pending(t->rbio) > 0 || SSL_pending(t->ssl) > 0;
}

void tlsio_shutdown(struct tlsio *t)
{
	if (!t->established)
		return;
	ERR_clear_error();
	SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool tlsio_established(const struct tlsio *t)
{
	return t->established;
}

const char *tlsio_version(const struct tlsio *t)
{
	return t->established ? SSL_get_version(t->ssl) : "";
}

const char *tlsio_cipher(const struct tlsio *t)
{
	const char *c = t->established ? SSL_get_cipher_name(t->ssl) : NULL;
	return c ? c : "";
}

const char *tlsio_error(const struct tlsio *t)
{
	return t->err[0] ? t->err : "unknown error";
}
