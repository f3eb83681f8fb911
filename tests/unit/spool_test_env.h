/* spool_test_env: the envelope the spool's unit tests store (test_spool.c,
 * test_journal.c). Header-only, for tests. */
#ifndef MAILPORT_SPOOL_TEST_ENV_H
#define MAILPORT_SPOOL_TEST_ENV_H

#include <errno.h>
#include <stdbool.h>

#include "spool.h"

/* 2026-11-27T08:40:58.123Z */
#define T_SEC  1795768858
#define T_NSEC 123456789L

static inline struct spool_envelope base_env(const char *id)
{
	static const char *const rcpt1[] = {"b@y.example"};
	struct spool_envelope e = {
	    .id = id,
	    .mail_from = "a@x.example",
	    .rcpt = rcpt1,
	    .nrcpt = 1,
	    .helo = "client.example",
	    .esmtp = true,
	    .client_addr = "203.0.113.7",
	    .client_port = 40000,
	    .local_addr = "127.0.0.1",
	    .local_port = 2525,
	    .size = 20,
	    .received_at = {T_SEC, T_NSEC},
	    .hostname = "mx.example",
	};
	return e;
}

/* A sync that fails with EIO (journal_set_sync), for the failure tests. */
static inline int always_eio(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

#endif
