/* spool_priv: what the files of the spool module share (spool.c: open, ids,
 * envelope and store; journal.c: the group commit; spool_access.c: reading,
 * moving and removing messages for delivery and the messages API). Not a public
 * header: everything else uses spool.h. */
#ifndef MAILPORT_SPOOL_PRIV_H
#define MAILPORT_SPOOL_PRIV_H

#include "spool.h"
#include "spool_index.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

struct spool {
	char *dir;                     /* as given, trailing slashes removed */
	char *hostname;                /* as given, for a Received header without env->hostname */
	char host[SPOOL_HOST_MAX + 1]; /* escaped for the id */
	int dir_fd;
	int tmp_fd;
	int new_fd;
	int meta_fd;
	/* Q in the id: several ids in the same microsecond from one process stay
	 * unique, whichever thread asks. */
	atomic_uint_fast64_t counter;
	size_t tmp_removed;
	size_t meta_removed;
	struct journal *journal;   /* the group commit (journal.h) */
	struct spool_index *index; /* the messages of new/, cur/, failed/ */
};

/* "new", "cur", "failed": the directory of each enum spool_state. */
extern const char *const spool_state_dirs[SPOOL_STATES];

/* A plain file name of a message (no '/', no leading dot, short enough). */
bool spool_id_ok(const char *id);
/* mkdirat that accepts an existing directory. 0 or -errno. */
int spool_mkdir_at(int fd, const char *path);
/* Create name in dir_fd (never over an existing file), write iov, fsync, close;
 * on failure the file is removed. 0 or -errno; *op (when op is not NULL) names
 * the last operation tried ("create of", "write of", "fsync of", "close of"),
 * for the log. */
int spool_write_file(int dir_fd, const char *name, struct iovec *iov, int n, const char **op);

/* A growing list of names (spool_list's result). */
struct spool_names {
	char **v;
	size_t n;
	size_t cap;
};
void spool_names_free(struct spool_names *ns);
/* Append the names of spool directory dir to ns, or -errno. For the message
 * directories (meta false) dot files are skipped and Maildir info (":2,S")
 * cut off; a missing one is empty. */
int spool_list(struct spool *s, const char *dir, bool meta, struct spool_names *ns);

#endif
