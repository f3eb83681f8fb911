/* webhook_nats: SMTPD_NATS_MODE=forward (SPEC 9). The webhook's queue (the
 * spool's new/, its retries and backoff, "delivered" in the envelope, the
 * restart scan) carries the message; instead of a POST it is published into
 * JetStream. A NATS message is one payload, so the message is read whole on
 * the thread pool (SMTPD_WEBHOOK_CONCURRENCY messages at most). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "webhook_priv.h"

int webhook_nats_prep(struct webhook_job *j, json_t *envelope, int fd, uint64_t size)
{
	j->nats_envelope = envelope;
	int rc = natspub_read_file(fd, size, &j->nats_data);
	close(fd);
	if (rc < 0)
		return rc;
	j->nats_len = (size_t)size;
	return 0;
}

static void webhook_nats_done(void *ctx, bool ok, const char *reason)
{
	struct webhook_job *j = ctx;
	j->nats_wait = false;
	if (j->wh->stopping) {
		webhook_job_abandon(j);
		return;
	}
	j->status = 0;
	j->outcome = ok ? WEBHOOK_DELIVERED : WEBHOOK_RETRY;
	snprintf(j->reason, sizeof j->reason, "%s", ok ? "" : reason);
	webhook_finish_item(j);
}

void webhook_nats_post(struct webhook_job *j)
{
	json_t *env = j->nats_envelope;
	char *text = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	json_t *rcpt = json_object_get(env, "rcpt_to");
	size_t n = json_is_array(rcpt) ? json_array_size(rcpt) : 0;
	const char **list = calloc(n ? n : 1, sizeof *list);
	int rc = -ENOMEM;
	if (text != NULL && list != NULL) {
		for (size_t i = 0; i < n; i++) {
			const char *r = json_string_value(json_array_get(rcpt, i));
			list[i] = r ? r : "";
		}
		const char *from = json_string_value(json_object_get(env, "mail_from"));
		struct natspub_msg m = {
		    .id = j->item->id,
		    .envelope_json = text,
		    .mail_from = from ? from : "",
		    .rcpt = list,
		    .nrcpt = n,
		    .data = j->nats_data,
		    .len = j->nats_len,
		};
		j->nats_data = NULL; /* natspub's now, whatever happens */
		rc = natspub_publish(j->wh->nats, &m, webhook_nats_done, j);
		j->nats_wait = rc == 0;
	}
	free(text);
	free(list);
	if (rc == 0)
		return;
	/* Not a verdict on the message: try again later. */
	j->outcome = WEBHOOK_RETRY;
	snprintf(j->reason, sizeof j->reason, "cannot publish: %s", strerror(-rc));
	webhook_finish_item(j);
}
