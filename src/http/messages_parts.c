/* messages_parts: "parts" of GET /messages/{id} and opening a message for the
 * MIME routes (messages_mime.h); no HTTP here, so messages.c and its unit test
 * use it without libmicrohttpd. */
#include <errno.h>
#include <stdbool.h>

#include <jansson.h>

#include "messages_mime.h"
#include "mime.h"
#include "spool_index.h"

/* Lookups of a message that moves (new -> cur) while it is opened. */
#define MESSAGES_MIME_LOOKUPS 3

int messages_mime_open(struct spool *sp, const char *id, const enum spool_state *where, int *fd)
{
	if (sp == NULL || !spool_id_valid(id))
		return -ENOENT;
	enum spool_state st = where ? *where : SPOOL_STATE_NEW;
	int rc = where ? 0 : spool_index_get(spool_get_index(sp), id, &st);
	if (rc < 0)
		rc = spool_locate(sp, id, &st);
	for (int i = 0; rc == 0 && i < MESSAGES_MIME_LOOKUPS; i++) {
		rc = spool_open_message(sp, st, id, fd, NULL);
		if (rc != -ENOENT)
			return rc;
		rc = spool_locate(sp, id, &st);
	}
	return rc < 0 ? rc : -ENOENT;
}

json_t *messages_mime_parts(struct spool *sp, const char *id, enum spool_state st)
{
	int fd = -1;
	struct mime *m = NULL;
	if (messages_mime_open(sp, id, &st, &fd) == 0)
		m = mime_open_fd(fd);
	json_t *parts = m ? mime_parts_json(m) : NULL;
	mime_free(m);
	if (parts == NULL) /* unreadable or unparsable: still a message */
		parts = json_pack("{s:n, s:b, s:[]}", "text", "html_available", 0, "attachments");
	return parts ? parts : json_null();
}
