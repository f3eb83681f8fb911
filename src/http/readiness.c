/* readiness: the periodic probe behind /readyz (see readiness.h). */
#include "readiness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

struct readiness {
	struct server *srv;
	uv_timer_t timer;
	uv_work_t work;
	bool busy;           /* work is on the thread pool */
	bool stopped;        /* readiness_stop: ignore what comes back */
	uint64_t busy_since; /* uv_now() when work was queued */
	char *probe_path;    /* <spool>/tmp/.probe.<pid>; NULL without a spool */
	const char *spool;   /* cfg->spool, for statvfs */
	uint64_t min_bytes;  /* SMTPD_SPOOL_MIN_FREE */
	unsigned min_percent;
	bool was_ok; /* the previous probe's verdict, to log changes only */
	/* Written by the work, read in its after-callback (libuv orders the two). */
	int write_err;  /* 0 or -errno: create, write, fsync, close, remove */
	int vfs_err;    /* 0 or -errno of statvfs */
	uint64_t avail; /* f_bavail * f_frsize */
	uint64_t size;  /* f_blocks * f_frsize */
};

uint64_t readiness_min_free(uint64_t bytes, unsigned percent, uint64_t size)
{
	if (percent == 0)
		return bytes;
	/* size * percent / 100 without overflow for any 64-bit size. */
	return size / 100 * percent + size % 100 * percent / 100;
}

void readiness_store_result(struct stats_counters *c, int err, bool stored)
{
	if (err == 0 && stored) {
		c->spool_writable = true;
		c->spool_error[0] = '\0';
	}
	if (err == 0)
		return;
	c->store_failures++;
	if (err == -EROFS || err == -ENOSPC || err == -EACCES || err == -EDQUOT) {
		c->spool_writable = false;
		snprintf(c->spool_error, sizeof c->spool_error, "%s", strerror(-err));
	}
}

/* Thread pool: the same test the spool makes at start (spool.c spool_probe):
 * create, write, fsync and remove a file in tmp/. A read-only mount, a full
 * disk, a lost directory or an ownership change all fail it. */
static int readiness_probe_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	int rc = 0;
	errno = 0;
	if (write(fd, "x", 1) != 1 || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (unlink(path) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

static void readiness_work(uv_work_t *w)
{
	struct readiness *r = w->data;
	r->write_err = r->vfs_err = 0;
	if (r->probe_path == NULL)
		return;
	r->write_err = readiness_probe_file(r->probe_path);
	struct statvfs sv;
	if (statvfs(r->spool, &sv) < 0) {
		r->vfs_err = -errno;
		return;
	}
	r->avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	r->size = (uint64_t)sv.f_blocks * sv.f_frsize;
}

/* Log a change of verdict only: a probe every 2 s must not flood the log. */
static void readiness_log(struct readiness *r, bool ok, const struct stats_counters *c)
{
	if (ok == r->was_ok)
		return;
	r->was_ok = ok;
	if (ok)
		log_info("readiness probe: the spool %s is writable and has room again", r->spool);
	else if (!c->spool_writable)
		log_error("readiness probe: spool %s not writable: %s", r->spool, c->spool_error);
	else
		log_error("readiness probe: spool %s below SMTPD_SPOOL_MIN_FREE: %llu bytes free, "
		          "%llu needed",
		          r->spool, (unsigned long long)c->spool_free_bytes,
		          (unsigned long long)c->spool_min_free);
}

static void readiness_done(uv_work_t *w, int status)
{
	struct readiness *r = w->data;
	struct server *srv = r->srv;
	r->busy = false;
	if (status < 0 || r->stopped || r->probe_path == NULL)
		return;
	uint64_t need = readiness_min_free(r->min_bytes, r->min_percent, r->size);
	bool low = r->vfs_err == 0 && need > 0 && r->avail < need;
	srv->spool_low = low;
	struct stats_counters *c = &srv->stats.c;
	stats_lock(&srv->stats);
	c->spool_writable = r->write_err == 0;
	if (r->write_err != 0)
		snprintf(c->spool_error, sizeof c->spool_error, "%s", strerror(-r->write_err));
	else
		c->spool_error[0] = '\0';
	c->spool_low = low;
	c->spool_probed = r->vfs_err == 0;
	c->spool_free_bytes = r->vfs_err == 0 ? r->avail : 0;
	c->spool_min_free = need;
	bool ok = c->spool_writable && !low;
	c->probe_ok = ok && c->listener_error[0] == '\0';
	if (!c->probe_ok)
		c->probe_failures++;
	struct stats_counters copy = *c;
	stats_unlock(&srv->stats);
	readiness_log(r, ok, &copy);
}

static void readiness_on_timer(uv_timer_t *t)
{
	struct readiness *r = t->data;
	struct server *srv = r->srv;
	listener_probe(srv);
	if (r->busy) {
		/* Never two at once. One that hangs says so. */
		uint64_t late = uv_now(srv->loop) - r->busy_since;
		if (late >= READINESS_STUCK_MS) {
			stats_lock(&srv->stats);
			srv->stats.c.spool_writable = false;
			srv->stats.c.probe_ok = false;
			srv->stats.c.probe_failures++;
			snprintf(srv->stats.c.spool_error, sizeof srv->stats.c.spool_error,
			         "probe unanswered for %llu s (slow or hung disk)",
			         (unsigned long long)(late / 1000));
			stats_unlock(&srv->stats);
		}
		return;
	}
	if (r->probe_path == NULL) {
		/* No spool (SMTPD_DELIVER=discard): the listeners are the probe. */
		stats_lock(&srv->stats);
		srv->stats.c.probe_ok = srv->stats.c.listener_error[0] == '\0';
		if (!srv->stats.c.probe_ok)
			srv->stats.c.probe_failures++;
		stats_unlock(&srv->stats);
		return;
	}
	r->work.data = r;
	if (uv_queue_work(srv->loop, &r->work, readiness_work, readiness_done) == 0) {
		r->busy = true;
		r->busy_since = uv_now(srv->loop);
	}
}

int readiness_start(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct readiness *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->srv = srv;
	r->was_ok = true;
	r->spool = cfg->spool;
	/* Validated by config_load with the same parser. */
	if (config_parse_min_free(cfg->spool_min_free, &r->min_bytes, &r->min_percent) < 0)
		r->min_bytes = r->min_percent = 0;
	if (srv->spool != NULL) {
		size_t n = strlen(cfg->spool) + 64;
		r->probe_path = malloc(n);
		if (r->probe_path == NULL) {
			free(r);
			return -ENOMEM;
		}
		snprintf(r->probe_path, n, "%s/tmp/.probe.%ld", cfg->spool, (long)getpid());
	}
	uv_timer_init(srv->loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, readiness_on_timer, 0, READINESS_PERIOD_MS);
	srv->readiness = r;
	return 0;
}

static void readiness_on_close(uv_handle_t *h)
{
	(void)h;
}

void readiness_stop(struct server *srv)
{
	struct readiness *r = srv->readiness;
	if (r == NULL || r->stopped)
		return;
	r->stopped = true;
	uv_close((uv_handle_t *)&r->timer, readiness_on_close);
}

void readiness_free(struct server *srv)
{
	struct readiness *r = srv->readiness;
	if (r == NULL)
		return;
	free(r->probe_path);
	free(r);
	srv->readiness = NULL;
}
