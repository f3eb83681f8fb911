/* smtp_auth: STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954, 4616) for
 * smtp_proto (see the rules listed at the top of smtp_proto.c). The adapter
 * verifies credentials (SMTP_WAIT_AUTH) and runs the TLS handshake
 * (SMTP_WAIT_STARTTLS); here are the commands, the 334 exchange and its
 * verdict. Credentials are wiped once used (SPEC 7). */
#include "smtp_proto_priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ----------------------------------------------------------- AUTH state */

/* Forget an AUTH exchange: its lines held credentials (SPEC 7: never kept,
 * never logged). */
void smtp_proto_auth_wipe(struct smtp_proto *p)
{
	explicit_bzero(p->line, sizeof p->line);
	if (p->auth_line != NULL) {
		explicit_bzero(p->auth_line, SMTP_PROTO_AUTH_LINE_MAX);
		free(p->auth_line);
		p->auth_line = NULL;
	}
	p->auth_password = NULL;
	p->auth_password_len = 0;
}

/* AUTH is offered (EHLO) and usable now: configured, not done yet, and
 * under TLS unless SMTPD_AUTH_INSECURE (SPEC 6); never before a STARTTLS that
 * SMTPD_TLS=required asks for. */
bool smtp_proto_auth_offered(const struct smtp_proto *p)
{
	return p->cfg.auth != SMTP_AUTH_OFF && !p->authenticated &&
	       (p->tls_active || (p->cfg.auth_insecure && !p->cfg.tls_required));
}

/* ------------------------------------------------------ STARTTLS and AUTH */

/* RFC 3207 4: the adapter answers SMTP_WAIT_STARTTLS with a TLS session
 * (smtp_proto_tls_started) or a 454. */
void smtp_proto_cmd_starttls(struct smtp_proto *p, char *arg)
{
	(void)arg;
	if (p->tls_active) {
		smtp_proto_error(p, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	/* A transaction would be forgotten by the TLS reset (RFC 3207 4.2):
	 * refuse, as OpenSMTPD does, rather than drop it silently. */
	if (p->in_tx) {
		smtp_proto_error(p, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	smtp_proto_enter_state(p, SMTP_ST_STARTTLS);
}

static int smtp_proto_base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* RFC 4648 4 base64, strictly: whole quanta, '=' padding only at the very end
 * (RFC 4954 4: a response that is not base64 is refused). Decodes s[0..n) in
 * place (the output is never longer than what was read); false if invalid. */
static bool smtp_proto_base64_decode(char *s, size_t n, size_t *out)
{
	if (n % 4 != 0)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		unsigned pad = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = 0;
			if (s[i + k] == '=') {
				if (i + 4 != n || k < 2)
					return false;
				pad++;
			} else if (pad > 0 || (d = smtp_proto_base64_value(s[i + k])) < 0) {
				return false;
			}
			v = v << 6 | (uint32_t)d;
		}
		s[o++] = (char)(v >> 16);
		if (pad < 2)
			s[o++] = (char)(v >> 8 & 0xff);
		if (pad < 1)
			s[o++] = (char)(v & 0xff);
	}
	*out = o;
	return true;
}

/* The name the client wants to authenticate as. One that no user can have
 * (too long, or holding a NUL) becomes "", which never verifies, so that every
 * failure costs the same delay in the adapter. */
static void smtp_proto_auth_set_user(struct smtp_proto *p, const char *u, size_t n)
{
	if (n > SMTP_PROTO_AUTH_USER_MAX || memchr(u, '\0', n) != NULL)
		n = 0;
	memcpy(p->auth_username, u, n);
	p->auth_username[n] = '\0';
}

static void smtp_proto_auth_abort(struct smtp_proto *p, unsigned code, const char *enhanced,
                                  const char *text)
{
	p->auth_username[0] = '\0';
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	smtp_proto_error(p, code, enhanced, "%s", text);
}

/* Credentials complete: the adapter verifies them (SMTP_WAIT_AUTH). */
static void smtp_proto_auth_ready(struct smtp_proto *p, const char *pass, size_t len)
{
	p->auth_password = pass;
	p->auth_password_len = len;
	smtp_proto_enter_state(p, SMTP_ST_AUTH_WAIT);
}

/* One decoded client response, data[0..n), of the current mechanism. */
static void smtp_proto_auth_step(struct smtp_proto *p, char *data, size_t n)
{
	if (p->auth_mech == SMTP_AUTH_MECH_LOGIN) {
		/* draft-murchison-sasl-login: a user name, then a password. */
		if (!p->auth_login_user) {
			smtp_proto_auth_set_user(p, data, n);
			p->auth_login_user = true;
			smtp_proto_enter_state(p, SMTP_ST_AUTH);
			smtp_proto_out_line(p, "334 UGFzc3dvcmQ6"); /* "Password:" */
			return;
		}
		smtp_proto_auth_ready(p, data, n);
		return;
	}
	/* RFC 4616 2: [authzid] NUL authcid NUL passwd, no other NUL. */
	char *z1 = memchr(data, '\0', n);
	char *z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - data)) : NULL;
	if (z2 == NULL || memchr(z2 + 1, '\0', n - (size_t)(z2 + 1 - data)) != NULL) {
		smtp_proto_auth_abort(p, 501, "5.5.2", "Invalid PLAIN response");
		return;
	}
	size_t zlen = (size_t)(z1 - data), ulen = (size_t)(z2 - z1 - 1);
	smtp_proto_auth_set_user(p, z1 + 1, ulen);
	/* Acting as someone else (an authorization identity other than the
	 * user's own) is not supported: such a request cannot succeed. */
	if (zlen > 0 && (zlen != ulen || memcmp(data, z1 + 1, ulen) != 0))
		p->auth_username[0] = '\0';
	smtp_proto_auth_ready(p, z2 + 1, n - (size_t)(z2 + 1 - data));
}

/* A line after a 334 (RFC 4954 4): base64, or "*" to cancel. */
void smtp_proto_auth_response(struct smtp_proto *p, char *line, size_t n, bool overflow)
{
	if (overflow) {
		smtp_proto_auth_abort(p, 500, "5.5.6", "Line too long");
		return;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n == 1 && line[0] == '*') {
		smtp_proto_auth_abort(p, 501, "5.7.0", "Authentication aborted");
		return;
	}
	size_t len = 0;
	if (!(n == 1 && line[0] == '=') && !smtp_proto_base64_decode(line, n, &len)) {
		smtp_proto_auth_abort(p, 501, "5.5.2", "Cannot decode response");
		return;
	}
	smtp_proto_auth_step(p, line, len);
}

/* RFC 4954 4: AUTH mechanism [initial-response]. */
void smtp_proto_cmd_auth(struct smtp_proto *p, char *arg)
{
	if (p->authenticated) {
		smtp_proto_error(p, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (p->in_tx) {
		smtp_proto_error(p, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	if (!p->tls_active && p->cfg.tls_required) {
		smtp_proto_error(p, 530, "5.7.0", "Must issue a STARTTLS command first");
		return;
	}
	/* RFC 4954 6: 538 for a plaintext mechanism over an unencrypted link. */
	if (!p->tls_active && !p->cfg.auth_insecure) {
		smtp_proto_error(p, 538, "5.7.11",
		                 "Encryption required for requested authentication mechanism");
		return;
	}
	char *ir = strchr(arg, ' ');
	if (ir != NULL) {
		*ir++ = '\0';
		while (*ir == ' ')
			ir++;
		if (strchr(ir, ' ') != NULL) {
			smtp_proto_error(p, 501, "5.5.4",
			                 "Syntax: AUTH mechanism [initial-response]");
			return;
		}
	}
	if (strcasecmp(arg, "PLAIN") == 0) {
		p->auth_mech = SMTP_AUTH_MECH_PLAIN;
	} else if (strcasecmp(arg, "LOGIN") == 0) {
		p->auth_mech = SMTP_AUTH_MECH_LOGIN;
	} else {
		smtp_proto_error(p, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	p->auth_username[0] = '\0';
	p->auth_login_user = false;
	if (ir == NULL || *ir == '\0') {
		smtp_proto_enter_state(p, SMTP_ST_AUTH);
		/* PLAIN: an empty challenge; LOGIN: "Username:". */
		smtp_proto_out_line(p, p->auth_mech == SMTP_AUTH_MECH_PLAIN ? "334 "
		                                                            : "334 VXNlcm5hbWU6");
		return;
	}
	/* RFC 4954 4: "=" is an empty initial response. */
	size_t len = 0;
	if (strcmp(ir, "=") != 0 && !smtp_proto_base64_decode(ir, strlen(ir), &len)) {
		smtp_proto_error(p, 501, "5.5.2", "Cannot decode response");
		return;
	}
	smtp_proto_auth_step(p, ir, len);
}

/* The verdict on AUTH credentials: 2xx authenticates the session. */
void smtp_proto_auth_resume(struct smtp_proto *p, unsigned code, const char *enhanced,
                            const char *text)
{
	smtp_proto_auth_wipe(p);
	smtp_proto_enter_state(p, smtp_proto_cmd_state(p));
	if (code < 200 || code > 599 || (code >= 300 && code < 400)) {
		code = 454;
		enhanced = "4.7.0";
		text = "Temporary authentication failure";
	}
	if (code < 300) {
		p->authenticated = true;
		smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
		return;
	}
	p->auth_username[0] = '\0';
	/* A failed AUTH counts towards the error limit (a guessing client). */
	if (code >= 500)
		smtp_proto_error(p, code, enhanced, "%s", text ? text : "");
	else
		smtp_proto_reply(p, code, enhanced, "%s", text ? text : "");
}
