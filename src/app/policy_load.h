/* policy_load: the recipient policy table (policy.h, SPEC 8) as the running
 * service keeps it: built at start-up, before anything listens, from
 * SMTPD_DOMAINS and SMTPD_RECIPIENTS_FILE; rebuilt on SIGHUP and when the file
 * changes (its device, inode, size and modification time are stat()ed every
 * POLICY_LOAD_WATCH_MS, which also sees a Kubernetes ConfigMap's symlink swap).
 *
 * Every disk access after start-up (the stat, reading the file) and the parse
 * run on libuv's thread pool; the new table is swapped in on the loop. A bad
 * file keeps the old table and logs one warning with the reason (and line). */
#ifndef MAILPORT_POLICY_LOAD_H
#define MAILPORT_POLICY_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "stats.h"

#define POLICY_LOAD_WATCH_MS 2000
/* A recipients file is a list of addresses, not a database: 64 MiB at most
 * (about two million addresses). */
#define POLICY_LOAD_FILE_MAX ((size_t)64 << 20)

struct policy;
struct policy_load;

/* Start-up, before listening (reads the file synchronously): build the table,
 * publish it in *slot (which the SMTP core reads at RCPT, through the pointer
 * session.c gives it), count it in stats and log it. With neither setting
 * given there is no table: *slot and *out are NULL. Returns 0, or -1 with a
 * one-line message naming the setting in err (a configuration error, exit 2):
 * "SMTPD_RECIPIENTS_FILE: cannot read /etc/x: No such file or directory",
 * "SMTPD_RECIPIENTS_FILE: /etc/x line 3: ...". loop, stats and slot outlive
 * the loader. */
int policy_load_start(uv_loop_t *loop, const struct config *cfg, struct stats *stats,
                      const struct policy **slot, struct policy_load **out, char *err,
                      size_t errlen);

/* Start watching the file for changes (once the service runs). */
void policy_load_watch(struct policy_load *pl);

/* SIGHUP: read the file again on the thread pool. Returns false when there is
 * no file to reload (pl NULL or no SMTPD_RECIPIENTS_FILE). */
bool policy_load_reload(struct policy_load *pl, const char *why);

/* The service is stopping: close the watch timer; a read in flight still
 * completes (the loop waits for it) and is dropped. NULL is a no-op. */
void policy_load_stop(struct policy_load *pl);

/* After the loop has ended: free the table (*slot becomes NULL) and the
 * loader. NULL is a no-op. */
void policy_load_free(struct policy_load *pl);

/* --check-config: the same checks as start-up (the file read and parsed),
 * without a loop. 0, or -1 with the message in err. */
int policy_load_check(const struct config *cfg, char *err, size_t errlen);

#endif
