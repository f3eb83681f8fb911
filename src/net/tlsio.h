/* tlsio: TLS for SMTP sessions (SPEC 6), OpenSSL driven through memory BIOs.
 *
 * The socket stays libuv's: the session hands every ciphertext byte it reads
 * to tlsio_feed(), takes plaintext out with tlsio_read(), encrypts with
 * tlsio_write() and sends what tlsio_take_output() gives it. OpenSSL never
 * touches a file descriptor, so TLS never blocks the loop (the h2o shape). The
 * handshake runs inside tlsio_read() as the client's bytes arrive.
 *
 * A tlsio_ctx is one configuration with one certificate (an SSL_CTX). Every
 * tlsio made from it holds its own reference to it, so the server may replace
 * its context (SIGHUP, a rotated certificate) and free the old one while
 * sessions that started with it go on. Loading a context reads files and may
 * run on the thread pool (tlsio_ctx_load_async).
 *
 * Nothing here logs; errors are one-line messages for the caller to log. */
#ifndef MAILPORT_TLSIO_H
#define MAILPORT_TLSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

/* PEM files are read whole; a certificate chain is a few KiB. */
#define TLSIO_FILE_MAX ((size_t)1 << 20)
/* A self-signed certificate made at start-up is valid this long. */
#define TLSIO_SELF_SIGNED_DAYS 365
/* tlsio_ctx_new: the returns besides 0. */
#define TLSIO_ERR_FILE   (-1) /* a certificate or key file is unusable */
#define TLSIO_ERR_CONFIG (-2) /* a setting OpenSSL refuses (SMTPD_TLS_CIPHERS) */

struct tlsio_settings {
	const char *cert_file;   /* SMTPD_TLS_CERT; "" or NULL: self-signed */
	const char *key_file;    /* SMTPD_TLS_KEY; "" or NULL: the key is in cert_file */
	const char *ciphers;     /* SMTPD_TLS_CIPHERS (TLS 1.2 and older); "": OpenSSL's */
	const char *min_version; /* "TLSv1.2" (default) or "TLSv1.3" */
	/* For a self-signed certificate: CN and DNS/IP subject alternative names. */
	const char *hostname;
	const char *const *addresses; /* listener addresses; ANY addresses are skipped */
	size_t naddresses;
};

/* When a certificate's files last changed, to notice a rotation cheaply. */
struct tlsio_stamp {
	dev_t dev[2];
	ino_t ino[2];
	off_t size[2];
	struct timespec mtime[2];
	int err[2]; /* errno of a failed stat, 0 */
};

struct tlsio_ctx;

/* A context for s: the certificate and key from their files (chain allowed,
 * RSA or ECDSA), or a new self-signed ECDSA P-256 certificate when no
 * cert_file is given. TLS 1.2 at least (1.3 preferred: OpenSSL picks the
 * highest both sides have), renegotiation off. Returns 0, TLSIO_ERR_FILE or
 * TLSIO_ERR_CONFIG with a one-line message in err that names the setting
 * (SMTPD_TLS_CERT, SMTPD_TLS_KEY, SMTPD_TLS_CIPHERS) and the path. Blocking
 * (file reads); thread-safe. */
int tlsio_ctx_new(const struct tlsio_settings *s, struct tlsio_ctx **out, char *err, size_t errlen);
void tlsio_ctx_free(struct tlsio_ctx *c); /* NULL is a no-op; live sessions keep theirs */
/* "subject CN=mx.example, expires 2027-01-01T00:00:00Z, sha256 AB:CD:..." */
const char *tlsio_ctx_describe(const struct tlsio_ctx *c);
bool tlsio_ctx_self_signed(const struct tlsio_ctx *c);
/* The files' stamp taken just before they were read (zero when self-signed). */
const struct tlsio_stamp *tlsio_ctx_stamp(const struct tlsio_ctx *c);

/* Stat the certificate and key files now. */
void tlsio_stamp_get(const struct tlsio_settings *s, struct tlsio_stamp *out);
bool tlsio_stamp_equal(const struct tlsio_stamp *a, const struct tlsio_stamp *b);

/* tlsio_ctx_new on the thread pool; cb runs on the loop with the new context
 * (the callee owns it) or NULL and the message. s and its strings must stay
 * valid until then. Returns 0 or a negative errno (cb not called). */
typedef void (*tlsio_load_cb)(void *ctx, struct tlsio_ctx *c, const char *err);
int tlsio_ctx_load_async(uv_loop_t *loop, const struct tlsio_settings *s, tlsio_load_cb cb,
                         void *ctx);
/* The same, and *stamp gets the files' stamp, taken on the thread pool just
 * before they are read (so no stat() runs on the loop), when cb runs: what a
 * refused reload found, to recognise the same files later. */
int tlsio_ctx_reload_async(uv_loop_t *loop, const struct tlsio_settings *s,
                           struct tlsio_stamp *stamp, tlsio_load_cb cb, void *ctx);

/* ------------------------------------------------------------ a session */

struct tlsio;

/* Server side of one connection. NULL on out of memory. */
struct tlsio *tlsio_new(struct tlsio_ctx *c);
void tlsio_free(struct tlsio *t); /* NULL is a no-op */

/* Ciphertext from the peer. 0 or -ENOMEM. */
int tlsio_feed(struct tlsio *t, const char *data, size_t len);

#define TLSIO_EOF   (-1) /* the peer sent close_notify */
#define TLSIO_ERROR (-2) /* handshake or record failure: see tlsio_error() */
/* Plaintext into buf: >0 octets, 0 when more ciphertext is needed first,
 * TLSIO_EOF or TLSIO_ERROR. Drives the handshake; may produce output. */
ssize_t tlsio_read(struct tlsio *t, char *buf, size_t len);
/* Encrypt len octets (the handshake must be done). 0 or TLSIO_ERROR. */
int tlsio_write(struct tlsio *t, const char *data, size_t len);
/* Ciphertext waiting for the socket: how much, and take up to len of it. */
size_t tlsio_output_pending(const struct tlsio *t);
size_t tlsio_take_output(struct tlsio *t, char *buf, size_t len);
/* Ciphertext fed but not yet turned into plaintext, or plaintext decrypted
 * but not yet read: call tlsio_read() again before waiting for the socket. */
bool tlsio_input_pending(const struct tlsio *t);
/* Queue a close_notify (best effort). */
void tlsio_shutdown(struct tlsio *t);

bool tlsio_established(const struct tlsio *t); /* handshake complete */
/* Negotiated protocol ("TLSv1.3") and cipher, "" before the handshake. */
const char *tlsio_version(const struct tlsio *t);
const char *tlsio_cipher(const struct tlsio *t);
/* Why the last TLSIO_ERROR happened ("handshake: no shared cipher"). */
const char *tlsio_error(const struct tlsio *t);

#endif
