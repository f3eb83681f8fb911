/* smtp_proto_priv: what the files of the SMTP core share: smtp_proto.c
 * (output, lifecycle, transaction, command dispatch, interface), smtp_data.c
 * (DATA and BDAT content), smtp_parse.c (parsing helpers) and smtp_auth.c
 * (STARTTLS and AUTH). Not for other modules: they see smtp_proto.h only. */
#ifndef MAILPORT_SMTP_PROTO_PRIV_H
#define MAILPORT_SMTP_PROTO_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_proto.h"

/* RFC 5321 4.5.3.1.2: a domain name is at most 255 octets. */
#define SMTP_PROTO_DOMAIN_MAX 255
/* The command buffer holds a line without its LF: 512 octets on the wire
 * including the line end (RFC 5321 4.5.3.1.4), so at most 511 before the LF. */
#define SMTP_PROTO_CMD_BUF (SMTP_PROTO_COMMAND_LINE_MAX - 1)
/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
#define SMTP_PROTO_REPLY_MAX 512
/* The output buffer is fixed: feed() stops once the output passes the
 * high-water mark, and one step can add at most a reply plus the 421 that
 * follows the last tolerated error; resume() and one closing reply (timeout,
 * shutdown, abort) may come on top. Eight reply lines leave a wide margin. */
#define SMTP_PROTO_OUT_CAP (SMTP_PROTO_OUTPUT_HIGH + 8 * SMTP_PROTO_REPLY_MAX)
/* Replies usually fit here (an EHLO reply is ~150 octets): an idle session
 * holds no large output buffer (issue 8). Pipelined bursts move to a heap
 * buffer of SMTP_PROTO_OUT_CAP that is released once drained. */
#define SMTP_PROTO_OUT_SMALL 1024
/* RFC 1870 / RFC 3030 sizes: 20 digits hold any uint64_t. */
#define SMTP_PROTO_NUMBER_DIGITS 20

enum smtp_proto_state {
	SMTP_ST_NEW,       /* before greet(): any input is an early talker */
	SMTP_ST_CONNECTED, /* greeted, no HELO/EHLO yet */
	SMTP_ST_HELO,      /* HELO/EHLO done: reading commands */
	SMTP_ST_DATA,      /* reading DATA content */
	SMTP_ST_BDAT,      /* reading the octets of a BDAT chunk */
	SMTP_ST_EOM,       /* a message is complete: SMTP_WAIT_EOM */
	SMTP_ST_CLOSED,    /* the last reply is queued; nothing more is read */
	SMTP_ST_STARTTLS,  /* STARTTLS accepted: SMTP_WAIT_STARTTLS */
	SMTP_ST_AUTH,      /* reading an AUTH response line (after a 334) */
	SMTP_ST_AUTH_WAIT, /* AUTH credentials complete: SMTP_WAIT_AUTH */
};

/* Where the DATA reader is within a line (RFC 5321 4.1.1.4 and 4.5.2). */
enum smtp_data_pos {
	SMTP_DP_TEXT,   /* inside a line, or at its start (line_start) */
	SMTP_DP_CR,     /* a CR inside a line: a line end if LF follows */
	SMTP_DP_DOT,    /* "." at a line start (already removed: RFC 5321 4.5.2) */
	SMTP_DP_DOT_CR, /* ".<CR>" at a line start: end of data if LF follows */
};

/* The message being received (DATA or a series of BDAT chunks). */
struct smtp_msg {
	uint64_t size;
	size_t line_len; /* octets of the current line on the wire, without its end */
	enum smtp_data_pos pos;
	bool raw_size;   /* BDAT: size counts the raw chunk octets */
	bool line_start; /* the next octet starts a line */
	bool after_crlf; /* ... and that line began after a CRLF (or DATA) */
	bool bare_lf;
	bool too_long;
	bool too_big;
	bool sink_failed;
};

/* RFC 4954 mechanisms. */
enum smtp_auth_mech { SMTP_AUTH_MECH_PLAIN, SMTP_AUTH_MECH_LOGIN };

/* Why a BDAT chunk is read only to be discarded: its reply at the chunk end. */
struct smtp_bdat_err {
	unsigned code;
	const char *enhanced;
	const char *text;
};

struct smtp_proto {
	struct smtp_proto_config cfg;
	struct smtp_proto_sink sink;
	enum smtp_proto_state state;
	unsigned errors;
	char hostname[SMTP_PROTO_DOMAIN_MAX + 1];

	/* Command line being read. An AUTH line may be longer (RFC 4954 4): it
	 * moves to auth_line, allocated while it is read and wiped after use. */
	char line[SMTP_PROTO_CMD_BUF + 1];
	size_t line_len;
	bool line_overflow;
	char *auth_line; /* SMTP_PROTO_AUTH_LINE_MAX octets, or NULL */

	/* SPEC 6: TLS and AUTH. */
	bool tls_active;
	bool authenticated;
	enum smtp_auth_mech auth_mech;
	bool auth_login_user; /* LOGIN: the user name came, the password is next */
	char auth_username[SMTP_PROTO_AUTH_USER_MAX + 1]; /* the user once authenticated */
	const char *auth_password;                        /* into the line, SMTP_WAIT_AUTH only */
	size_t auth_password_len;

	/* Session. */
	char helo[SMTP_PROTO_DOMAIN_MAX + 1];
	bool esmtp;

	/* Transaction. */
	bool in_tx;
	bool smtputf8;
	bool bdat_used; /* RFC 3030 2: no DATA in a transaction that used BDAT */
	char verb[12];  /* the command being answered, for the adapter's log ("?": unknown) */
	char mail_from[SMTP_PROTO_PATH_MAX + 1];
	/* RFC 4954 5: MAIL's AUTH= mailbox, xtext-decoded; kept only when the
	 * session authenticated, else "" (as if "<>"). */
	char auth_param[SMTP_PROTO_PATH_MAX + 1];
	char *rcpt; /* rcpt_cap slots of SMTP_PROTO_PATH_MAX + 1, grown on demand */
	size_t nrcpt;
	size_t rcpt_cap;
	struct smtp_msg msg;

	/* BDAT chunk being read. */
	uint64_t bdat_count;
	uint64_t bdat_left;
	bool bdat_last;
	struct smtp_bdat_err bdat_err; /* code 0: the chunk is content */

	char reply[SMTP_PROTO_REPLY_MAX];
	size_t out_len;
	char *out; /* out_small, or SMTP_PROTO_OUT_CAP octets on the heap */
	char out_small[SMTP_PROTO_OUT_SMALL];
};

/* MAIL parameters, as smtp_proto_mail_params() found them. */
struct smtp_mail_params {
	bool has_size, has_body, smtputf8, has_auth;
	uint64_t size;
	bool body_8bit;
	char auth[SMTP_PROTO_PATH_MAX + 1];
};

/* smtp_proto.c: output, transaction. */
void smtp_proto_out_line(struct smtp_proto *p, const char *s);
void smtp_proto_event(struct smtp_proto *p, enum smtp_event_type type, const char *arg);
__attribute__((format(printf, 4, 5))) const char *
smtp_proto_reply(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...);
void smtp_proto_enter_state(struct smtp_proto *p, enum smtp_proto_state s);
__attribute__((format(printf, 4, 5))) void
smtp_proto_error(struct smtp_proto *p, unsigned code, const char *enhanced, const char *fmt, ...);
void smtp_proto_tx_clear(struct smtp_proto *p);
enum smtp_proto_state smtp_proto_cmd_state(const struct smtp_proto *p);

/* smtp_data.c: message content. */
size_t smtp_proto_data_feed(struct smtp_proto *p, const char *d, size_t n);
size_t smtp_proto_bdat_feed(struct smtp_proto *p, const char *d, size_t n);
void smtp_proto_cmd_data(struct smtp_proto *p, char *arg);
void smtp_proto_cmd_bdat(struct smtp_proto *p, char *arg);

/* smtp_parse.c: parsing helpers. */
bool smtp_proto_utf8_ok(const char *str, size_t n);
bool smtp_proto_parse_path(char **sp, char out[SMTP_PROTO_PATH_MAX + 1], bool null_ok,
                           bool *nonascii);
bool smtp_proto_next_param(char **sp, char **key, char **value);
bool smtp_proto_mail_params(struct smtp_proto *p, char *s, struct smtp_mail_params *mp);
bool smtp_proto_parse_bdat(char *arg, uint64_t *count, bool *last);

/* smtp_auth.c: STARTTLS and AUTH. */
void smtp_proto_auth_wipe(struct smtp_proto *p);
bool smtp_proto_auth_offered(const struct smtp_proto *p);
void smtp_proto_cmd_starttls(struct smtp_proto *p, char *arg);
void smtp_proto_cmd_auth(struct smtp_proto *p, char *arg);
void smtp_proto_auth_response(struct smtp_proto *p, char *line, size_t n, bool overflow);
void smtp_proto_auth_resume(struct smtp_proto *p, unsigned code, const char *enhanced,
                            const char *text);

#endif
