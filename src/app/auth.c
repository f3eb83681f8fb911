/* auth: the users file and crypt(3) checks off the loop (see auth.h, SPEC 6). */
#include "auth.h"
#include "file_read.h"

#include "auth_pool.h"

#include <assert.h>
#include <crypt.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What an unknown user is checked against when the table is empty, so that
 * the answer takes about as long as for a real one (a yescrypt setting). */
#define AUTH_DUMMY_SETTING "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"

struct auth_user {
	const char *name;
	const char *hash;
};

struct auth_users {
	int refs;
	char *data; /* the file, NUL-terminated fields in place */
	struct auth_user *v;
	size_t n;
	/* The hash an unknown user is checked against: the one whose method and
	 * cost take longest (auth_pick_dummy), so that no failure is faster than
	 * a real user's. NULL with no users. */
	const char *dummy;
};

static int auth_user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct auth_user *)a)->name, ((const struct auth_user *)b)->name);
}

static void auth_users_free(struct auth_users *u)
{
	if (u == NULL)
		return;
	free(u->v);
	free(u->data);
	free(u);
}

struct auth_users *auth_users_ref(struct auth_users *u)
{
	if (u != NULL)
		u->refs++;
	return u;
}

void auth_users_unref(struct auth_users *u)
{
	if (u != NULL && --u->refs == 0)
		auth_users_free(u);
}

size_t auth_users_count(const struct auth_users *u)
{
	return u ? u->n : 0;
}

/* A user name that can appear in an SMTP AUTH exchange and in a log line. */
static bool auth_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > AUTH_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* Is hash something crypt(3) here checks, and not one of the methods libxcrypt
 * calls legacy (DES, MD5, SHA-256...), whose hashes are cheap to crack? */
static const char *auth_hash_problem(const char *hash)
{
	/* A DES hash is 13 characters; anything else without a "$id$" prefix
	 * is more likely a password written in clear. */
	if (hash[0] != '$' && strlen(hash) != 13)
		return "is not a crypt(3) hash";
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_TOO_CHEAP:
		return NULL;
	case CRYPT_SALT_METHOD_LEGACY:
		return "uses a legacy hash method (DES, MD5, SHA-256)";
	default:
		return "is not a crypt(3) hash this system supports";
	}
}

/* How long one crypt(3) with this setting takes, in ns (UINT64_MAX: fails). */
static uint64_t auth_cost_ns(const char *setting)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (cd == NULL)
		return 0;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	const char *h = crypt_rn("mailport-cost-probe", setting, cd, (int)sizeof *cd);
	clock_gettime(CLOCK_MONOTONIC, &b);
	bool failed = h == NULL || h[0] == '*'; /* h points into cd */
	free(cd);
	if (failed)
		return UINT64_MAX;
	return (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
	       (uint64_t)a.tv_nsec;
}

/* The part of a hash that sets its cost, without salt and digest: "$y$j9T$",
 * "$2b$12$", "$6$rounds=N$" or "$6$" (issue 13: a file may mix methods). */
static size_t auth_params_len(const char *h)
{
	const char *p = strchr(h + 1, '$'); /* end of "$id" */
	if (h[0] != '$' || p == NULL)
		return strlen(h);
	if (strncmp(h, "$6$", 3) == 0 || strncmp(h, "$5$", 3) == 0)
		return strncmp(p + 1, "rounds=", 7) == 0 && strchr(p + 1, '$') != NULL
		           ? (size_t)(strchr(p + 1, '$') - h) + 1
		           : 3;
	const char *q = strchr(p + 1, '$');
	return q != NULL ? (size_t)(q - h) + 1 : strlen(h);
}

/* Time one crypt(3) per distinct method and cost in the file, and keep the
 * slowest user's hash for unknown users. Blocking (start-up or the pool). */
static void auth_pick_dummy(struct auth_users *u)
{
	uint64_t worst = 0;
	for (size_t i = 0; i < u->n; i++) {
		size_t pl = auth_params_len(u->v[i].hash);
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = auth_params_len(u->v[j].hash) == pl &&
			       strncmp(u->v[j].hash, u->v[i].hash, pl) == 0;
		if (seen)
			continue;
		uint64_t ns = auth_cost_ns(u->v[i].hash);
		if (u->dummy == NULL || (ns != UINT64_MAX && ns > worst)) {
			u->dummy = u->v[i].hash;
			worst = ns == UINT64_MAX ? 0 : ns;
		}
	}
}

const char *auth_users_dummy(const struct auth_users *u)
{
	return u != NULL ? u->dummy : NULL;
}

int auth_users_parse(const char *path, const char *data, size_t len, struct auth_users **out,
                     char *err, size_t errlen)
{
	*out = NULL;
	struct auth_users *u = calloc(1, sizeof *u);
	if (u == NULL || (u->data = malloc(len + 1)) == NULL) {
		auth_users_free(u);
		snprintf(err, errlen, "SMTPD_AUTH_USERS_FILE: out of memory");
		return -1;
	}
	memcpy(u->data, data, len);
	u->data[len] = '\0';
	size_t cap = 0, lineno = 0;
	char *p = u->data, *end = u->data + len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = p;
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		p = nl ? nl + 1 : end;
		lineno++;
		line[n] = '\0';
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (memchr(line, '\0', n) != NULL) {
			snprintf(err, errlen,
			         "SMTPD_AUTH_USERS_FILE: %s line %zu: contains a NUL byte", path,
			         lineno);
			goto fail;
		}
		char *colon = strchr(line, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "SMTPD_AUTH_USERS_FILE: %s line %zu: not user:hash",
			         path, lineno);
			goto fail;
		}
		*colon = '\0';
		char *hash = colon + 1;
		char *more = strchr(hash, ':');
		if (more != NULL)
			*more = '\0';
		if (!auth_name_ok(line, strlen(line))) {
			snprintf(
			    err, errlen,
			    "SMTPD_AUTH_USERS_FILE: %s line %zu: the user name must be 1 to %d "
			    "printable characters",
			    path, lineno, AUTH_USER_MAX);
			goto fail;
		}
		const char *why = auth_hash_problem(hash);
		if (why != NULL) {
			snprintf(err, errlen,
			         "SMTPD_AUTH_USERS_FILE: %s line %zu: the hash of \"%s\" %s (use "
			         "yescrypt, SHA-512 or bcrypt)",
			         path, lineno, line, why);
			goto fail;
		}
		if (u->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct auth_user *nv = realloc(u->v, ncap * sizeof *nv);
			if (nv == NULL) {
				snprintf(err, errlen, "SMTPD_AUTH_USERS_FILE: out of memory");
				goto fail;
			}
			u->v = nv;
			cap = ncap;
		}
		u->v[u->n++] = (struct auth_user){.name = line, .hash = hash};
	}
	if (u->n > 0)
		qsort(u->v, u->n, sizeof *u->v, auth_user_cmp);
	for (size_t i = 1; i < u->n; i++) {
		if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
			snprintf(err, errlen,
			         "SMTPD_AUTH_USERS_FILE: %s: user \"%s\" appears twice", path,
			         u->v[i].name);
			goto fail;
		}
	}
	auth_pick_dummy(u);
	u->refs = 1;
	*out = u;
	return 0;
fail:
	explicit_bzero(u->data, len);
	auth_users_free(u);
	return -1;
}

int auth_users_load(const char *path, struct auth_users **out, char *err, size_t errlen)
{
	*out = NULL;
	char *buf;
	size_t len;
	struct stat st;
	int open_errno;
	if (file_read_all("SMTPD_AUTH_USERS_FILE", path, AUTH_USERS_FILE_MAX, &buf, &len, &st,
	                  &open_errno, err, errlen) < 0)
		return -1;
	int rc = auth_users_parse(path, buf, len, out, err, errlen);
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

/* Compare without an early exit, so the time does not tell where two hashes differ. */
static bool auth_equal(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	unsigned char d = na != nb;
	for (size_t i = 0; i < na && i < nb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

bool auth_users_verify(const struct auth_users *u, const char *user, const char *pass, size_t len)
{
	const struct auth_user *e = NULL;
	if (u != NULL && u->n > 0) {
		struct auth_user key = {.name = user};
		e = bsearch(&key, u->v, u->n, sizeof *u->v, auth_user_cmp);
	}
	/* An unknown user is hashed too, against the setting of the file's most
	 * expensive hash, so that no failure is faster than a real user's: the
	 * time never tells which names exist, whatever methods the file mixes. */
	const char *setting = e ? e->hash : (u && u->dummy) ? u->dummy : AUTH_DUMMY_SETTING;
	char *phrase = malloc(len + 1);
	struct crypt_data *cd = calloc(1, sizeof *cd);
	bool ok = false;
	if (phrase != NULL && cd != NULL) {
		memcpy(phrase, pass, len);
		phrase[len] = '\0';
		const char *h = crypt_rn(phrase, setting, cd, (int)sizeof *cd);
		/* A password holding NUL cannot be what the hash was made of. */
		ok = e != NULL && h != NULL && h[0] != '*' && memchr(pass, '\0', len) == NULL &&
		     auth_equal(h, e->hash);
	}
	if (phrase != NULL) {
		explicit_bzero(phrase, len + 1);
		free(phrase);
	}
	if (cd != NULL) {
		explicit_bzero(cd, sizeof *cd);
		free(cd);
	}
	return ok;
}

/* ---------------------------------------------------------------- async */

/* The checks' pool (auth_pool.h): started by the first check, or by
 * auth_start(); stopped by auth_stop(). Loop thread only. */
static struct auth_pool *auth_pool_current;

int auth_start(uv_loop_t *loop, unsigned threads, unsigned queue_max)
{
	if (auth_pool_current != NULL)
		return -EBUSY;
	return auth_pool_new(loop, threads, queue_max, &auth_pool_current);
}

void auth_stop(void)
{
	struct auth_pool *p = auth_pool_current;
	auth_pool_current = NULL;
	auth_pool_free(p);
}

struct auth_check {
	struct auth_pool_job job; /* first: the pool hands it back */
	struct auth_pool *pool;
	struct auth_users *users;
	auth_check_cb cb;
	void *ctx;
	bool cancelled;
	bool ok;
	char user[AUTH_USER_MAX + 1];
	size_t len;
	char pass[]; /* len octets */
};

static void auth_check_free(struct auth_check *c)
{
	explicit_bzero(c->pass, c->len);
	auth_users_unref(c->users);
	free(c);
}

static void auth_check_work(struct auth_pool_job *j)
{
	struct auth_check *c = (struct auth_check *)j;
	c->ok = auth_users_verify(c->users, c->user, c->pass, c->len);
}

static void auth_check_done(struct auth_pool_job *j, bool ran)
{
	struct auth_check *c = (struct auth_check *)j;
	auth_check_cb cb = c->cancelled ? NULL : c->cb;
	void *ctx = c->ctx;
	bool ok = ran && c->ok;
	auth_check_free(c);
	if (cb != NULL)
		cb(ctx, ok);
}

struct auth_check *auth_check_start(uv_loop_t *loop, struct auth_users *u, const char *user,
                                    const char *pass, size_t len, auth_check_cb cb, void *ctx)
{
	if (auth_pool_current == NULL && auth_start(loop, 0, 0) < 0)
		return NULL;
	/* One pool, one loop: mailport has a single loop thread. */
	assert(auth_pool_loop(auth_pool_current) == loop);
	struct auth_check *c = calloc(1, sizeof *c + len);
	if (c == NULL)
		return NULL;
	size_t ulen = strlen(user);
	if (ulen > AUTH_USER_MAX)
		ulen = 0; /* never a user: fails, after the same work */
	memcpy(c->user, user, ulen);
	memcpy(c->pass, pass, len);
	c->len = len;
	c->users = auth_users_ref(u);
	c->cb = cb;
	c->ctx = ctx;
	c->pool = auth_pool_current;
	c->job.work = auth_check_work;
	c->job.done = auth_check_done;
	if (auth_pool_submit(c->pool, &c->job) < 0) {
		/* The queue is full: refused now rather than queued without bound. */
		auth_check_free(c);
		return NULL;
	}
	return c;
}

void auth_check_cancel(struct auth_check *c)
{
	if (c == NULL)
		return;
	/* Still waiting: it never runs, and goes now. Running or finished: the
	 * answer is dropped when it comes. */
	if (auth_pool_cancel(c->pool, &c->job))
		auth_check_free(c);
	else
		c->cancelled = true;
}

struct auth_load {
	uv_work_t work;
	auth_load_cb cb;
	void *ctx;
	struct auth_users *users;
	char err[512];
	char path[];
};

static void auth_load_work(uv_work_t *w)
{
	struct auth_load *l = w->data;
	if (auth_users_load(l->path, &l->users, l->err, sizeof l->err) < 0)
		l->users = NULL;
}

static void auth_load_after(uv_work_t *w, int status)
{
	struct auth_load *l = w->data;
	if (status < 0 && l->users == NULL)
		snprintf(l->err, sizeof l->err, "SMTPD_AUTH_USERS_FILE: reload cancelled");
	l->cb(l->ctx, l->users, l->users ? NULL : l->err);
	free(l);
}

int auth_users_load_async(uv_loop_t *loop, const char *path, auth_load_cb cb, void *ctx)
{
	size_t n = strlen(path);
	struct auth_load *l = calloc(1, sizeof *l + n + 1);
	if (l == NULL)
		return -ENOMEM;
	memcpy(l->path, path, n + 1);
	l->cb = cb;
	l->ctx = ctx;
	l->work.data = l;
	int rc = uv_queue_work(loop, &l->work, auth_load_work, auth_load_after);
	if (rc < 0)
		free(l);
	return rc;
}
