/* webhook_parsed: the request body of SMTPD_WEBHOOK_FORMAT=parsed (SPEC 5,
 * issue 17), the message as SendGrid's Inbound Parse gives it, in JSON:
 *   {"envelope":{...SPEC 5...},"subject":"decoded"|null,"text":"..."|null,
 *    "html":"..."|null,"attachments":[{"part","filename","content_type","size",
 *    "content_id","disposition","content":"<base64 of the decoded part>"}]}
 * text and html are the bodies the messages API shows (mime.h), UTF-8, html as
 * it is (cid: URLs untouched: match them with content_id); attachments are the
 * messages API's list, inline images included.
 *
 * The body is written to an unnamed temporary file (O_TMPFILE in the spool's
 * tmp/, a memfd when that is refused), never held in memory; the webhook then
 * streams that file as it streams the raw format. Blocking: thread pool only. */
#ifndef MAILPORT_WEBHOOK_PARSED_H
#define MAILPORT_WEBHOOK_PARSED_H

#include <stdint.h>

struct json_t;

/* The body for the message in msg_fd (owned from here, closed in every case)
 * with envelope (borrowed): 0 with *out_fd (read/write, the caller's) and its
 * *size, or -errno. dir_fd is the directory for the temporary file (-1: a
 * memfd). A message GMime cannot parse has null text, html and subject and no
 * attachments. */
int webhook_parsed_body(int msg_fd, struct json_t *envelope, int dir_fd, int *out_fd,
                        uint64_t *size);

#endif
