/* policy_load: the recipient policy table of the running service (SPEC 8):
 * start-up, SIGHUP, and reload when the recipients file changes. */
#include "policy_load.h"
#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "policy.h"

/* One version of the recipients file: a rename (an editor's save, a
 * ConfigMap's ..data swap) changes the inode, a write in place the size or the
 * modification time (nanoseconds). A file that cannot be stat()ed or opened is
 * its errno, so that a missing file is reported once, not every few seconds. */
struct policy_stamp {
	bool ok;
	int err;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct policy_load {
	uv_loop_t *loop;
	const struct config *cfg;
	struct stats *stats;
	const struct policy **slot; /* what sessions read: current, or NULL */
	struct policy *current;
	struct policy_stamp loaded;  /* the file current was read from */
	struct policy_stamp refused; /* ... and the one the last refused reload read */
	bool has_refused;
	bool stopped;
	uv_timer_t watch;
	bool watch_init;
	/* A stat() on the thread pool, then what it found. */
	uv_work_t stat_req;
	bool stating;
	struct policy_stamp stat_result;
	/* A read and parse on the thread pool, one at a time; the worker writes
	 * result* and the loop reads them in its done callback. */
	uv_work_t read_req;
	bool reading;
	bool read_again;
	const char *why; /* what asked for the read in flight (a static string) */
	struct policy *result;
	struct policy_stamp result_stamp;
	char result_err[512];
};

static void policy_stamp_of(struct policy_stamp *s, const struct stat *st)
{
	memset(s, 0, sizeof *s);
	s->ok = true;
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
}

static bool policy_stamp_equal(const struct policy_stamp *a, const struct policy_stamp *b)
{
	if (!a->ok || !b->ok)
		return a->ok == b->ok && a->err == b->err;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Read the whole file (file_read.h); the stamp is the file as opened. */
static int policy_load_slurp(const char *path, char **out, size_t *outlen,
                             struct policy_stamp *stamp, char *err, size_t errlen)
{
	struct stat st;
	int open_errno;
	int rc = file_read_all("SMTPD_RECIPIENTS_FILE", path, POLICY_LOAD_FILE_MAX, out, outlen,
	                       &st, &open_errno, err, errlen);
	if (open_errno != 0)
		stamp->err = open_errno;
	else
		policy_stamp_of(stamp, &st);
	return rc;
}

/* Build a table from the settings, reading the file when there is one (any
 * thread). 0 with *out set, or -1 with a message naming the setting. */
static int policy_load_read(const struct config *cfg, struct policy **out,
                            struct policy_stamp *stamp, char *err, size_t errlen)
{
	*out = NULL;
	memset(stamp, 0, sizeof *stamp);
	char why[384];
	const char *path = cfg->recipients_file;
	if (path[0] == '\0') {
		if (policy_new(cfg->domains, NULL, 0, out, why, sizeof why) == 0)
			return 0;
		snprintf(err, errlen, "SMTPD_DOMAINS: %s", why);
		return -1;
	}
	char *text;
	size_t len;
	if (policy_load_slurp(path, &text, &len, stamp, err, errlen) < 0)
		return -1;
	int rc = policy_new(cfg->domains, text, len, out, why, sizeof why);
	free(text);
	if (rc == 0)
		return 0;
	/* "/etc/mailport/recipients line 3: ..." or "...: out of memory". */
	snprintf(err, errlen, "SMTPD_RECIPIENTS_FILE: %s%s%s", path,
	         strncmp(why, "line ", 5) == 0 ? " " : ": ", why);
	return -1;
}

int policy_load_check(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->domains[0] == '\0' && cfg->recipients_file[0] == '\0')
		return 0;
	struct policy *p;
	struct policy_stamp stamp;
	int rc = policy_load_read(cfg, &p, &stamp, err, errlen);
	policy_free(p);
	return rc;
}

/* The table in use into /status and /metrics, and one log line saying what
 * it holds (`why` NULL: start-up). */
static void policy_load_publish(struct policy_load *pl, const char *why)
{
	struct policy_counts c;
	policy_counts(pl->current, &c);
	stats_lock(pl->stats);
	struct stats_counters *sc = &pl->stats->c;
	sc->policy_file = c.file;
	sc->policy_domains = c.domains;
	sc->policy_recipients = c.addresses;
	sc->policy_recipient_domains = c.at_domains;
	sc->policy_file_mtime = c.file ? (int64_t)pl->loaded.mtime.tv_sec : 0;
	sc->policy_reloads += why != NULL;
	sc->policy_error[0] = '\0';
	stats_unlock(pl->stats);
	char domains[64], file[512];
	if (c.domains == 0)
		snprintf(domains, sizeof domains, "every domain");
	else
		snprintf(domains, sizeof domains, "%zu domain pattern(s)", c.domains);
	if (c.file)
		snprintf(file, sizeof file, "%zu address(es) and %zu @domain line(s) from %s",
		         c.addresses, c.at_domains, pl->cfg->recipients_file);
	else
		snprintf(file, sizeof file, "no recipients file");
	log_info("recipient policy%s%s%s: %s, %s", why ? " reloaded (" : "", why ? why : "",
	         why ? ")" : "", domains, file);
	if (c.outside > 0)
		log_warn("SMTPD_RECIPIENTS_FILE: %zu line(s) name a domain SMTPD_DOMAINS does not "
		         "serve (the first: line %zu); they never match",
		         c.outside, c.outside_first_line);
	if (c.file && c.addresses + c.at_domains == 0)
		log_warn("SMTPD_RECIPIENTS_FILE: %s lists no recipient: every recipient in a "
		         "served domain gets 550 5.1.1",
		         pl->cfg->recipients_file);
}

int policy_load_start(uv_loop_t *loop, const struct config *cfg, struct stats *stats,
                      const struct policy **slot, struct policy_load **out, char *err,
                      size_t errlen)
{
	*out = NULL;
	*slot = NULL;
	if (cfg->domains[0] == '\0' && cfg->recipients_file[0] == '\0')
		return 0;
	struct policy_load *pl = calloc(1, sizeof *pl);
	if (pl == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pl->loop = loop;
	pl->cfg = cfg;
	pl->stats = stats;
	pl->slot = slot;
	if (policy_load_read(cfg, &pl->current, &pl->loaded, err, errlen) < 0) {
		free(pl);
		return -1;
	}
	*slot = pl->current;
	*out = pl;
	policy_load_publish(pl, NULL);
	if (cfg->domains[0] != '\0' && cfg->auth == CONFIG_AUTH_ANY)
		log_warn("SMTPD_AUTH=any with SMTPD_DOMAINS: a client that authenticates, with any "
		         "name and password, may send to every domain");
	return 0;
}

static void policy_load_read_work(uv_work_t *req)
{
	struct policy_load *pl = req->data;
	pl->result_err[0] = '\0';
	policy_load_read(pl->cfg, &pl->result, &pl->result_stamp, pl->result_err,
	                 sizeof pl->result_err);
}

static void policy_load_read_done(uv_work_t *req, int status)
{
	struct policy_load *pl = req->data;
	struct policy *t = pl->result;
	pl->result = NULL;
	pl->reading = false;
	if (pl->stopped) {
		policy_free(t);
		return;
	}
	if (status < 0 || t == NULL) {
		if (status < 0)
			snprintf(pl->result_err, sizeof pl->result_err, "%s", uv_strerror(status));
		else
			pl->refused = pl->result_stamp;
		pl->has_refused = status == 0;
		stats_lock(pl->stats);
		pl->stats->c.policy_reload_failures++;
		/* Cut to what /status shows; the log line has it whole. */
		snprintf(pl->stats->c.policy_error, sizeof pl->stats->c.policy_error, "%.*s",
		         (int)sizeof pl->stats->c.policy_error - 1, pl->result_err);
		stats_unlock(pl->stats);
		log_warn("recipient policy not reloaded (%s), the old table stays in use: %s",
		         pl->why, pl->result_err);
	} else {
		/* Freeing the old table right after the swap is safe: the SMTP core
		 * reads *slot only inside smtp_proto_feed(), synchronously on this
		 * loop thread, and never keeps the pointer; so no session can be
		 * reading the old table now, and the next RCPT sees the new one. */
		struct policy *old = pl->current;
		pl->current = t;
		*pl->slot = t;
		pl->loaded = pl->result_stamp;
		pl->has_refused = false;
		policy_free(old);
		policy_load_publish(pl, pl->why);
	}
	if (pl->read_again) {
		pl->read_again = false;
		policy_load_reload(pl, "asked again meanwhile");
	}
}

bool policy_load_reload(struct policy_load *pl, const char *why)
{
	if (pl == NULL || pl->cfg->recipients_file[0] == '\0' || pl->stopped)
		return false;
	if (pl->reading) {
		pl->read_again = true;
		return true;
	}
	pl->why = why;
	pl->read_req.data = pl;
	int rc =
	    uv_queue_work(pl->loop, &pl->read_req, policy_load_read_work, policy_load_read_done);
	if (rc < 0)
		log_warn("recipient policy not reloaded (%s): %s", why, uv_strerror(rc));
	else
		pl->reading = true;
	return true;
}

/* stat() is file-system work (a ConfigMap may sit on a slow mount): on the
 * thread pool, never on the loop. */
static void policy_load_stat_work(uv_work_t *req)
{
	struct policy_load *pl = req->data;
	struct stat st;
	memset(&pl->stat_result, 0, sizeof pl->stat_result);
	if (stat(pl->cfg->recipients_file, &st) == 0)
		policy_stamp_of(&pl->stat_result, &st);
	else
		pl->stat_result.err = errno;
}

static void policy_load_stat_done(uv_work_t *req, int status)
{
	struct policy_load *pl = req->data;
	pl->stating = false;
	if (status < 0 || pl->stopped || pl->reading)
		return;
	/* Unchanged, or the very file a reload already refused. */
	if (policy_stamp_equal(&pl->stat_result, &pl->loaded) ||
	    (pl->has_refused && policy_stamp_equal(&pl->stat_result, &pl->refused)))
		return;
	policy_load_reload(pl, "the file changed");
}

static void policy_load_on_watch(uv_timer_t *t)
{
	struct policy_load *pl = t->data;
	if (pl->stopped || pl->stating || pl->reading)
		return;
	pl->stat_req.data = pl;
	if (uv_queue_work(pl->loop, &pl->stat_req, policy_load_stat_work, policy_load_stat_done) ==
	    0)
		pl->stating = true;
}

void policy_load_watch(struct policy_load *pl)
{
	if (pl == NULL || pl->cfg->recipients_file[0] == '\0' || pl->watch_init)
		return;
	uv_timer_init(pl->loop, &pl->watch);
	pl->watch.data = pl;
	pl->watch_init = true;
	uv_timer_start(&pl->watch, policy_load_on_watch, POLICY_LOAD_WATCH_MS,
	               POLICY_LOAD_WATCH_MS);
}

static void policy_load_on_closed(uv_handle_t *h)
{
	(void)h;
}

void policy_load_stop(struct policy_load *pl)
{
	if (pl == NULL || pl->stopped)
		return;
	pl->stopped = true;
	if (pl->watch_init)
		uv_close((uv_handle_t *)&pl->watch, policy_load_on_closed);
}

void policy_load_free(struct policy_load *pl)
{
	if (pl == NULL)
		return;
	*pl->slot = NULL;
	policy_free(pl->current);
	free(pl);
}
