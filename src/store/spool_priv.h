/* spool_priv: what the files of the spool module share (spool.c: open, ids,
 * envelope and store; spool_sync.c: the group commit; spool_access.c: reading,
 * moving and removing messages for delivery and the messages API). Not a public
 * header: everything else uses spool.h. */
#ifndef MAILPORT_SPOOL_PRIV_H
#define MAILPORT_SPOOL_PRIV_H

#include "spool.h"
#include "spool_index.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

/* Group commit of a directory (issue 8). Every store renames a file into
 * meta/ and new/ and must see that rename durable before its 250; concurrent
 * stores share one fsync of the directory instead of one each. A store takes a
 * ticket after its rename; an fsync that starts later covers every ticket
 * issued before it started, so each store waits for the first fsync that began
 * after its own rename, and at most one fsync of a directory runs at a time.
 * Each waiter gets the result of exactly that fsync (issue 12): the fsync's
 * runner hands its result to every waiter it covered before anyone can start
 * the next one, so a later fsync that succeeds never hides one that failed. */
struct spool_gwait; /* one waiting caller, on its own stack */
struct spool_gsync {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t issued; /* tickets handed out */
	bool running;
	uint64_t covers;             /* while running: the last ticket it covers */
	struct spool_gwait *waiters; /* callers whose fsync has not completed */
	uint64_t fsyncs;             /* for tests and benchmarks */
	uint64_t failures;           /* fsyncs that failed */
	int (*sync)(int fd);         /* fsync(2); tests put a fake here */
};

void spool_gsync_init(struct spool_gsync *g);
void spool_gsync_destroy(struct spool_gsync *g);
/* fsync(fd) on behalf of a rename made just before the call, sharing the
 * fsync with every concurrent caller. Returns 0 or -errno of the fsync that
 * covered this call; its ticket in *ticket when not NULL (for tests).
 * Blocking: thread pool only. */
int spool_gsync(struct spool_gsync *g, int fd, uint64_t *ticket);

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
	struct spool_gsync meta_sync; /* fsync of meta/ */
	struct spool_gsync new_sync;  /* fsync of new/ */
	struct spool_index *index;    /* the messages of new/, cur/, failed/ */
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
