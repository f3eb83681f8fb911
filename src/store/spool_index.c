/* spool_index: the in-memory index of the spool's messages. See spool_index.h. */
#include "spool_index.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One message. An id of our own format that prints back exactly from its
 * numbers is "compact": str is then its host part, shared (ix->hosts); any
 * other id keeps its whole name in str, owned by the entry. */
struct spool_ix_entry {
	uint64_t sec;
	uint64_t q;
	uint32_t usec;
	uint32_t pid;
	const char *str;
	char *attrs; /* the search text (spool_index_set_attrs), NULL until known */
	uint8_t state;
	bool compact;
};
_Static_assert(sizeof(void *) != 8 || sizeof(struct spool_ix_entry) == 48,
               "the index entry is documented as 48 bytes");

struct spool_ix_chunk {
	size_t n;
	struct spool_ix_entry e[SPOOL_INDEX_CHUNK];
};

struct spool_index {
	pthread_mutex_t mu;
	struct spool_ix_chunk **c; /* nc chunks, in order, none empty */
	size_t nc;
	size_t capc;
	size_t total;
	size_t missing; /* entries whose attrs are NULL */
	size_t counts[SPOOL_STATES];
	char *hosts[SPOOL_INDEX_HOSTS];
	size_t nhosts;
	/* Issue 17: observers, read-locked while called (see spool_index_observe). */
	pthread_rwlock_t obs_mu;
	spool_index_observer obs[SPOOL_INDEX_OBSERVERS];
	void *obs_ctx[SPOOL_INDEX_OBSERVERS];
};

/* A position: entry i of chunk c. */
struct spool_ix_pos {
	size_t c;
	size_t i;
};

/* ---- order ------------------------------------------------------------------------ */

struct spool_ix_key {
	bool ok;
	unsigned long long sec, usec, q;
};

static struct spool_ix_key spool_ix_key_of(const char *id)
{
	struct spool_ix_key k = {0};
	unsigned long long pid;
	int n = 0;
	if (sscanf(id, "%llu.M%lluP%lluQ%llu%n", &k.sec, &k.usec, &pid, &k.q, &n) == 4 && n > 0)
		k.ok = true;
	return k;
}

int spool_index_id_newer(const char *a, const char *b)
{
	struct spool_ix_key ka = spool_ix_key_of(a), kb = spool_ix_key_of(b);
	if (ka.ok != kb.ok)
		return ka.ok ? -1 : 1;
	if (ka.ok) {
		if (ka.sec != kb.sec)
			return ka.sec > kb.sec ? -1 : 1;
		if (ka.usec != kb.usec)
			return ka.usec > kb.usec ? -1 : 1;
		if (ka.q != kb.q)
			return ka.q > kb.q ? -1 : 1;
	}
	return -strcmp(a, b);
}

/* The id of an entry: its own name, or printed from its numbers into buf. */
static const char *spool_ix_name(const struct spool_ix_entry *e, char *buf, size_t len)
{
	if (!e->compact)
		return e->str;
	snprintf(buf, len, "%llu.M%06lluP%lluQ%llu.%s", (unsigned long long)e->sec,
	         (unsigned long long)e->usec, (unsigned long long)e->pid, (unsigned long long)e->q,
	         e->str);
	return buf;
}

/* One listed item: the entry's id and state. */
static void spool_ix_item(struct spool_index_item *it, const struct spool_ix_entry *e)
{
	char buf[SPOOL_ID_MAX];
	const char *name = spool_ix_name(e, buf, sizeof buf);
	size_t len = strnlen(name, sizeof it->id - 1); /* always all of it: see put */
	memcpy(it->id, name, len);
	it->id[len] = '\0';
	it->state = (enum spool_state)e->state;
}

/* Oldest first: < 0 when a is older than b. Two compact entries compare by
 * their numbers without printing anything; only equal numbers (or a foreign
 * id) fall back to spool_index_id_newer() on the names, which is what keeps
 * both ways of comparing the same order. */
static int spool_ix_cmp(const struct spool_ix_entry *a, const struct spool_ix_entry *b)
{
	if (a->compact && b->compact) {
		if (a->sec != b->sec)
			return a->sec < b->sec ? -1 : 1;
		if (a->usec != b->usec)
			return a->usec < b->usec ? -1 : 1;
		if (a->q != b->q)
			return a->q < b->q ? -1 : 1;
		if (a->pid == b->pid && a->str == b->str)
			return 0;
	}
	char x[SPOOL_ID_MAX], y[SPOOL_ID_MAX];
	return spool_index_id_newer(spool_ix_name(b, y, sizeof y), spool_ix_name(a, x, sizeof x));
}

static int spool_ix_qsort_cmp(const void *a, const void *b)
{
	return spool_ix_cmp(a, b);
}

/* ---- entries ------------------------------------------------------------------------ */

/* The shared copy of host, added when intern and there is room; NULL if none. */
static const char *spool_ix_host(struct spool_index *ix, const char *host, bool intern)
{
	for (size_t i = 0; i < ix->nhosts; i++)
		if (strcmp(ix->hosts[i], host) == 0)
			return ix->hosts[i];
	if (!intern || ix->nhosts == SPOOL_INDEX_HOSTS)
		return NULL;
	char *h = strdup(host);
	if (h != NULL)
		ix->hosts[ix->nhosts++] = h;
	return h;
}

/* The entry for id. With own (an entry to keep), a foreign name is strdup'ed and
 * a new host is shared; without (a key to search with), str may point into id.
 * -ENOMEM only with own. */
static int spool_ix_make(struct spool_index *ix, const char *id, enum spool_state st, bool own,
                         struct spool_ix_entry *e)
{
	memset(e, 0, sizeof *e);
	e->state = (uint8_t)st;
	unsigned long long sec, usec, pid, q;
	int n = 0;
	if (sscanf(id, "%llu.M%lluP%lluQ%llu%n", &sec, &usec, &pid, &q, &n) == 4 && n > 0 &&
	    id[n] == '.' && usec <= UINT32_MAX && pid <= UINT32_MAX) {
		char again[SPOOL_ID_MAX + 64];
		int len =
		    snprintf(again, sizeof again, "%llu.M%06lluP%lluQ%llu.", sec, usec, pid, q);
		/* Only an id that prints back the same is kept as numbers. */
		const char *host = len == n + 1 && memcmp(again, id, (size_t)len) == 0
		                       ? spool_ix_host(ix, id + n + 1, own)
		                       : NULL;
		if (host != NULL) {
			*e = (struct spool_ix_entry){.sec = sec,
			                             .q = q,
			                             .usec = (uint32_t)usec,
			                             .pid = (uint32_t)pid,
			                             .str = host,
			                             .state = (uint8_t)st,
			                             .compact = true};
			return 0;
		}
	}
	if (!own) {
		e->str = id;
		return 0;
	}
	e->str = strdup(id);
	return e->str ? 0 : -ENOMEM;
}

static void spool_ix_entry_free(struct spool_ix_entry *e)
{
	if (!e->compact)
		free((char *)e->str);
	free(e->attrs);
}

/* ---- chunks ------------------------------------------------------------------------------ */

/* The first position whose entry is >= k (at the end: the last chunk's n). */
static struct spool_ix_pos spool_ix_lower(const struct spool_index *ix,
                                          const struct spool_ix_entry *k)
{
	size_t lo = 0, hi = ix->nc;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct spool_ix_chunk *c = ix->c[mid];
		if (spool_ix_cmp(&c->e[c->n - 1], k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == ix->nc)
		return ix->nc ? (struct spool_ix_pos){ix->nc - 1, ix->c[ix->nc - 1]->n}
		              : (struct spool_ix_pos){0, 0};
	const struct spool_ix_chunk *c = ix->c[lo];
	size_t a = 0, b = c->n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (spool_ix_cmp(&c->e[mid], k) < 0)
			a = mid + 1;
		else
			b = mid;
	}
	return (struct spool_ix_pos){lo, a};
}

/* The entry equal to k, or NULL (then *pos is where it would go). */
static struct spool_ix_entry *spool_ix_find(struct spool_index *ix, const struct spool_ix_entry *k,
                                            struct spool_ix_pos *pos)
{
	*pos = spool_ix_lower(ix, k);
	if (pos->c >= ix->nc || pos->i >= ix->c[pos->c]->n)
		return NULL;
	struct spool_ix_entry *e = &ix->c[pos->c]->e[pos->i];
	return spool_ix_cmp(e, k) == 0 ? e : NULL;
}

/* Room for one more chunk pointer at index at. */
static int spool_ix_chunk_insert(struct spool_index *ix, size_t at, struct spool_ix_chunk *c)
{
	if (ix->nc == ix->capc) {
		size_t ncap = ix->capc ? ix->capc * 2 : 16;
		struct spool_ix_chunk **nv = realloc(ix->c, ncap * sizeof *nv);
		if (nv == NULL)
			return -ENOMEM;
		ix->c = nv;
		ix->capc = ncap;
	}
	memmove(&ix->c[at + 1], &ix->c[at], (ix->nc - at) * sizeof *ix->c);
	ix->c[at] = c;
	ix->nc++;
	return 0;
}

static void spool_ix_chunk_remove(struct spool_index *ix, size_t at)
{
	free(ix->c[at]);
	memmove(&ix->c[at], &ix->c[at + 1], (ix->nc - at - 1) * sizeof *ix->c);
	ix->nc--;
}

/* Put e at pos. A full chunk is split in halves, except when e goes after the
 * very last entry (arrivals in order): a new chunk then starts, so chunks
 * filled in order stay full. */
static int spool_ix_insert_at(struct spool_index *ix, struct spool_ix_pos pos,
                              const struct spool_ix_entry *e)
{
	if (ix->nc == 0 || (pos.c == ix->nc - 1 && pos.i == SPOOL_INDEX_CHUNK)) {
		struct spool_ix_chunk *nc = malloc(sizeof *nc);
		if (nc == NULL || spool_ix_chunk_insert(ix, ix->nc, nc) < 0) {
			free(nc);
			return -ENOMEM;
		}
		nc->n = 0;
		pos = (struct spool_ix_pos){ix->nc - 1, 0};
	} else if (ix->c[pos.c]->n == SPOOL_INDEX_CHUNK) {
		struct spool_ix_chunk *c = ix->c[pos.c], *upper = malloc(sizeof *upper);
		if (upper == NULL || spool_ix_chunk_insert(ix, pos.c + 1, upper) < 0) {
			free(upper);
			return -ENOMEM;
		}
		size_t half = SPOOL_INDEX_CHUNK / 2;
		memcpy(upper->e, &c->e[half], (SPOOL_INDEX_CHUNK - half) * sizeof c->e[0]);
		upper->n = SPOOL_INDEX_CHUNK - half;
		c->n = half;
		if (pos.i > half)
			pos = (struct spool_ix_pos){pos.c + 1, pos.i - half};
	}
	struct spool_ix_chunk *c = ix->c[pos.c];
	memmove(&c->e[pos.i + 1], &c->e[pos.i], (c->n - pos.i) * sizeof c->e[0]);
	c->e[pos.i] = *e;
	c->n++;
	ix->total++;
	ix->missing += e->attrs == NULL;
	ix->counts[e->state]++;
	return 0;
}

/* Remove the entry at pos; a chunk under a quarter full joins a neighbour
 * when they fit in one. */
static void spool_ix_remove_at(struct spool_index *ix, struct spool_ix_pos pos)
{
	struct spool_ix_chunk *c = ix->c[pos.c];
	ix->counts[c->e[pos.i].state]--;
	ix->total--;
	ix->missing -= c->e[pos.i].attrs == NULL;
	spool_ix_entry_free(&c->e[pos.i]);
	memmove(&c->e[pos.i], &c->e[pos.i + 1], (c->n - pos.i - 1) * sizeof c->e[0]);
	c->n--;
	if (c->n == 0) {
		spool_ix_chunk_remove(ix, pos.c);
		return;
	}
	if (c->n >= SPOOL_INDEX_CHUNK / 4)
		return;
	size_t a = pos.c, b = pos.c + 1; /* join b into a */
	if (b >= ix->nc || c->n + ix->c[b]->n > SPOOL_INDEX_CHUNK) {
		if (pos.c == 0 || ix->c[pos.c - 1]->n + c->n > SPOOL_INDEX_CHUNK)
			return;
		a = pos.c - 1;
		b = pos.c;
	}
	struct spool_ix_chunk *ca = ix->c[a], *cb = ix->c[b];
	memcpy(&ca->e[ca->n], cb->e, cb->n * sizeof cb->e[0]);
	ca->n += cb->n;
	spool_ix_chunk_remove(ix, b);
}

/* ---- the interface --------------------------------------------------------------------- */

struct spool_index *spool_index_new(void)
{
	struct spool_index *ix = calloc(1, sizeof *ix);
	if (ix == NULL)
		return NULL;
	if (pthread_mutex_init(&ix->mu, NULL) != 0) {
		free(ix);
		return NULL;
	}
	if (pthread_rwlock_init(&ix->obs_mu, NULL) != 0) {
		pthread_mutex_destroy(&ix->mu);
		free(ix);
		return NULL;
	}
	return ix;
}

int spool_index_observe(struct spool_index *ix, spool_index_observer fn, void *ctx)
{
	int rc = -ENOSPC;
	pthread_rwlock_wrlock(&ix->obs_mu);
	for (size_t i = 0; i < SPOOL_INDEX_OBSERVERS; i++) {
		if (ix->obs[i] == NULL) {
			ix->obs[i] = fn;
			ix->obs_ctx[i] = ctx;
			rc = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&ix->obs_mu);
	return rc;
}

int spool_index_unobserve(struct spool_index *ix, spool_index_observer fn, void *ctx)
{
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&ix->obs_mu);
	for (size_t i = 0; i < SPOOL_INDEX_OBSERVERS; i++) {
		if (ix->obs[i] == fn && ix->obs_ctx[i] == ctx) {
			ix->obs[i] = NULL;
			ix->obs_ctx[i] = NULL;
			rc = 0;
		}
	}
	pthread_rwlock_unlock(&ix->obs_mu);
	return rc;
}

/* Tell every observer, under ix->mu, so they see the changes in the order the
 * index made them (a store, then its removal; never the other way round). An
 * observer only copies the change: it must not call back into the index. */
static void spool_ix_notify(struct spool_index *ix, enum spool_index_change ch, const char *id,
                            enum spool_state st)
{
	pthread_rwlock_rdlock(&ix->obs_mu);
	for (size_t i = 0; i < SPOOL_INDEX_OBSERVERS; i++)
		if (ix->obs[i] != NULL)
			ix->obs[i](ix->obs_ctx[i], ch, id, st);
	pthread_rwlock_unlock(&ix->obs_mu);
}

void spool_index_free(struct spool_index *ix)
{
	if (ix == NULL)
		return;
	for (size_t i = 0; i < ix->nc; i++) {
		for (size_t j = 0; j < ix->c[i]->n; j++)
			spool_ix_entry_free(&ix->c[i]->e[j]);
		free(ix->c[i]);
	}
	free(ix->c);
	for (size_t i = 0; i < ix->nhosts; i++)
		free(ix->hosts[i]);
	pthread_mutex_destroy(&ix->mu);
	pthread_rwlock_destroy(&ix->obs_mu);
	free(ix);
}

int spool_index_put(struct spool_index *ix, const char *id, enum spool_state st)
{
	struct spool_ix_entry k, *e;
	struct spool_ix_pos pos;
	/* Every id fits SPOOL_ID_MAX (a file name, or spool_id_ok()), and so does
	 * any id printed back from its numbers, which is the same string. */
	if (strlen(id) >= SPOOL_ID_MAX)
		return -EINVAL;
	int changed = -1; /* -1: nothing to tell */
	pthread_mutex_lock(&ix->mu);
	int rc = spool_ix_make(ix, id, st, false, &k);
	if ((e = spool_ix_find(ix, &k, &pos)) != NULL) {
		if (e->state != (uint8_t)st)
			changed = SPOOL_INDEX_STATE;
		ix->counts[e->state]--;
		e->state = (uint8_t)st;
		ix->counts[st]++;
	} else if ((rc = spool_ix_make(ix, id, st, true, &k)) == 0) {
		rc = spool_ix_insert_at(ix, pos, &k);
		if (rc < 0)
			spool_ix_entry_free(&k);
		else
			changed = SPOOL_INDEX_STORED;
	}
	if (changed >= 0)
		spool_ix_notify(ix, (enum spool_index_change)changed, id, st);
	pthread_mutex_unlock(&ix->mu);
	return rc;
}

int spool_index_update(struct spool_index *ix, const char *id, enum spool_state st)
{
	struct spool_ix_entry k, *e;
	struct spool_ix_pos pos;
	bool changed = false;
	pthread_mutex_lock(&ix->mu);
	spool_ix_make(ix, id, st, false, &k);
	if ((e = spool_ix_find(ix, &k, &pos)) != NULL) {
		changed = e->state != (uint8_t)st;
		ix->counts[e->state]--;
		e->state = (uint8_t)st;
		ix->counts[st]++;
	}
	if (changed)
		spool_ix_notify(ix, SPOOL_INDEX_STATE, id, st);
	pthread_mutex_unlock(&ix->mu);
	return e ? 0 : -ENOENT;
}

int spool_index_del(struct spool_index *ix, const char *id)
{
	struct spool_ix_entry k;
	struct spool_ix_pos pos;
	pthread_mutex_lock(&ix->mu);
	spool_ix_make(ix, id, SPOOL_STATE_NEW, false, &k);
	bool found = spool_ix_find(ix, &k, &pos) != NULL;
	enum spool_state st = SPOOL_STATE_NEW;
	if (found) {
		st = (enum spool_state)ix->c[pos.c]->e[pos.i].state;
		spool_ix_remove_at(ix, pos);
	}
	if (found)
		spool_ix_notify(ix, SPOOL_INDEX_DELETED, id, st);
	pthread_mutex_unlock(&ix->mu);
	return found ? 0 : -ENOENT;
}

int spool_index_get(struct spool_index *ix, const char *id, enum spool_state *st)
{
	struct spool_ix_entry k, *e;
	struct spool_ix_pos pos;
	pthread_mutex_lock(&ix->mu);
	spool_ix_make(ix, id, SPOOL_STATE_NEW, false, &k);
	if ((e = spool_ix_find(ix, &k, &pos)) != NULL)
		*st = (enum spool_state)e->state;
	pthread_mutex_unlock(&ix->mu);
	return e ? 0 : -ENOENT;
}

size_t spool_index_total(struct spool_index *ix, size_t *counts)
{
	pthread_mutex_lock(&ix->mu);
	size_t total = ix->total;
	if (counts)
		memcpy(counts, ix->counts, sizeof ix->counts);
	pthread_mutex_unlock(&ix->mu);
	return total;
}

int spool_index_add_batch(struct spool_index *ix, char *const *ids, size_t n, enum spool_state st)
{
	pthread_mutex_lock(&ix->mu);
	size_t all = ix->total + n, m = 0;
	struct spool_ix_entry *v = malloc((all ? all : 1) * sizeof *v);
	int rc = v ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (strlen(ids[i]) < SPOOL_ID_MAX &&
		    (rc = spool_ix_make(ix, ids[i], st, true, &v[m])) == 0)
			m++;
	size_t nchunks = (all + SPOOL_INDEX_CHUNK - 1) / SPOOL_INDEX_CHUNK;
	struct spool_ix_chunk **cs = rc == 0 && nchunks ? calloc(nchunks, sizeof *cs) : NULL;
	if (rc == 0 && nchunks && cs == NULL)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < nchunks; i++)
		if ((cs[i] = malloc(sizeof *cs[i])) == NULL)
			rc = -ENOMEM;
	if (rc < 0) {
		for (size_t i = 0; i < m; i++)
			spool_ix_entry_free(&v[i]);
		for (size_t i = 0; cs && i < nchunks; i++)
			free(cs[i]);
		free(cs);
		free(v);
		pthread_mutex_unlock(&ix->mu);
		return rc;
	}
	/* Nothing can fail from here on. The old chunks join the new entries. */
	for (size_t i = 0; i < ix->nc; i++) {
		memcpy(&v[m], ix->c[i]->e, ix->c[i]->n * sizeof v[0]);
		m += ix->c[i]->n;
		free(ix->c[i]);
	}
	free(ix->c);
	qsort(v, m, sizeof *v, spool_ix_qsort_cmp);
	size_t k = 0;
	for (size_t i = 0; i < m; i++) {
		if (k > 0 && spool_ix_cmp(&v[k - 1], &v[i]) == 0) {
			/* The same message twice: the later directory wins. */
			if (v[i].state > v[k - 1].state) {
				spool_ix_entry_free(&v[k - 1]);
				v[k - 1] = v[i];
			} else {
				spool_ix_entry_free(&v[i]);
			}
			continue;
		}
		v[k++] = v[i];
	}
	memset(ix->counts, 0, sizeof ix->counts);
	size_t used = 0;
	for (size_t i = 0; i < k; i += SPOOL_INDEX_CHUNK) {
		size_t take = k - i < SPOOL_INDEX_CHUNK ? k - i : SPOOL_INDEX_CHUNK;
		memcpy(cs[used]->e, &v[i], take * sizeof v[0]);
		cs[used++]->n = take;
	}
	ix->missing = 0;
	for (size_t i = 0; i < k; i++) {
		ix->counts[v[i].state]++;
		ix->missing += v[i].attrs == NULL;
	}
	for (size_t i = used; i < nchunks; i++)
		free(cs[i]);
	ix->c = cs;
	ix->nc = used;
	ix->capc = nchunks;
	ix->total = k;
	free(v);
	pthread_mutex_unlock(&ix->mu);
	return 0;
}

/* Move *pos back by k entries (towards the oldest). False when that passes the
 * oldest entry. pos.i may be one past the end of its chunk. */
static bool spool_ix_back(const struct spool_index *ix, struct spool_ix_pos *pos, size_t k)
{
	while (k > pos->i) {
		k -= pos->i + 1;
		if (pos->c == 0)
			return false;
		pos->c--;
		pos->i = ix->c[pos->c]->n - 1;
	}
	pos->i -= k;
	return true;
}

int spool_index_page(struct spool_index *ix, const char *before, size_t offset, size_t limit,
                     struct spool_index_item *items, size_t *n, size_t *total)
{
	*n = 0;
	pthread_mutex_lock(&ix->mu);
	*total = ix->total;
	struct spool_ix_pos pos = {0, 0};
	bool more = ix->nc > 0;
	if (before != NULL) {
		struct spool_ix_entry k;
		spool_ix_make(ix, before, SPOOL_STATE_NEW, false, &k);
		if (spool_ix_find(ix, &k, &pos) == NULL) {
			pthread_mutex_unlock(&ix->mu);
			return -ENOENT;
		}
		/* The newest entry older than before, then offset more. */
		more = spool_ix_back(ix, &pos, 1 + offset);
	} else if (more) {
		pos = (struct spool_ix_pos){ix->nc - 1, ix->c[ix->nc - 1]->n - 1};
		more = spool_ix_back(ix, &pos, offset);
	}
	while (more && *n < limit) {
		const struct spool_ix_entry *e = &ix->c[pos.c]->e[pos.i];
		spool_ix_item(&items[(*n)++], e);
		more = spool_ix_back(ix, &pos, 1);
	}
	pthread_mutex_unlock(&ix->mu);
	return 0;
}

/* ---- search (issue 17) ------------------------------------------------------------------ */

int spool_index_set_attrs(struct spool_index *ix, const char *id, const char *attrs, size_t len)
{
	char *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, attrs, len);
	struct spool_ix_entry k, *e;
	struct spool_ix_pos pos;
	pthread_mutex_lock(&ix->mu);
	spool_ix_make(ix, id, SPOOL_STATE_NEW, false, &k);
	if ((e = spool_ix_find(ix, &k, &pos)) != NULL) {
		ix->missing -= e->attrs == NULL;
		free(e->attrs);
		e->attrs = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&ix->mu);
	free(copy);
	return e ? 0 : -ENOENT;
}

int spool_index_missing_attrs(struct spool_index *ix, struct spool_index_item *items, size_t max,
                              size_t *n)
{
	*n = 0;
	pthread_mutex_lock(&ix->mu);
	for (size_t c = ix->nc; ix->missing > 0 && c-- > 0 && *n < max;) {
		for (size_t i = ix->c[c]->n; i-- > 0 && *n < max;) {
			const struct spool_ix_entry *e = &ix->c[c]->e[i];
			if (e->attrs != NULL)
				continue;
			spool_ix_item(&items[(*n)++], e);
		}
	}
	pthread_mutex_unlock(&ix->mu);
	return 0;
}

int spool_index_search(struct spool_index *ix, spool_index_match_fn match, void *ctx,
                       const char *before, size_t offset, size_t limit,
                       struct spool_index_item *items, size_t *n, size_t *total)
{
	*n = 0;
	*total = 0;
	pthread_mutex_lock(&ix->mu);
	/* Entries at or after `from` (newest first order: positions below it are
	 * older) are the page's candidates; every match counts in total. */
	struct spool_ix_pos from = {SIZE_MAX, SIZE_MAX};
	if (before != NULL) {
		struct spool_ix_entry k;
		spool_ix_make(ix, before, SPOOL_STATE_NEW, false, &k);
		if (spool_ix_find(ix, &k, &from) == NULL) {
			pthread_mutex_unlock(&ix->mu);
			return -ENOENT;
		}
	}
	size_t skipped = 0;
	for (size_t c = ix->nc; c-- > 0;) {
		for (size_t i = ix->c[c]->n; i-- > 0;) {
			const struct spool_ix_entry *e = &ix->c[c]->e[i];
			if (e->attrs == NULL || !match(ctx, e->attrs))
				continue;
			(*total)++;
			bool older = before == NULL || c < from.c || (c == from.c && i < from.i);
			if (!older || *n >= limit)
				continue;
			if (skipped < offset) {
				skipped++;
				continue;
			}
			spool_ix_item(&items[(*n)++], e);
		}
	}
	pthread_mutex_unlock(&ix->mu);
	return 0;
}
