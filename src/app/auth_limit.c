/* auth_limit: see auth_limit.h. */
#include "auth_limit.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_LIMIT_KEY_MAX 48 /* an IPv6 address as text, with room */

struct auth_limit_entry {
	char key[AUTH_LIMIT_KEY_MAX];
	uint64_t first_ms; /* first failure of the current window */
	uint64_t last_ms;  /* last seen: the least recent is dropped when full */
	uint64_t until_ms; /* blocked until; 0 = not blocked */
	unsigned failures; /* in the current window */
	unsigned blocks;   /* blocks so far: the next lasts 2^blocks minutes */
};

struct auth_limit {
	unsigned max_failures;
	size_t n, cap;
	struct auth_limit_entry *v;
};

struct auth_limit *auth_limit_new(unsigned max_failures, size_t max_entries)
{
	struct auth_limit *al = calloc(1, sizeof *al);
	if (al == NULL)
		return NULL;
	al->max_failures = max_failures;
	al->cap = max_entries ? max_entries : 1;
	al->v = calloc(al->cap, sizeof *al->v);
	if (al->v == NULL) {
		free(al);
		return NULL;
	}
	return al;
}

void auth_limit_free(struct auth_limit *al)
{
	if (al == NULL)
		return;
	free(al->v);
	free(al);
}

size_t auth_limit_size(const struct auth_limit *al)
{
	return al->n;
}

/* The key of an address: IPv4 as it is, IPv6 reduced to its /64. */
static void auth_limit_key(const char *addr, char key[AUTH_LIMIT_KEY_MAX])
{
	struct in6_addr a6;
	if (strchr(addr, ':') != NULL && inet_pton(AF_INET6, addr, &a6) == 1) {
		memset(a6.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a6, key, AUTH_LIMIT_KEY_MAX) != NULL)
			return;
	}
	size_t n = strlen(addr);
	n = n < AUTH_LIMIT_KEY_MAX - 1 ? n : AUTH_LIMIT_KEY_MAX - 1;
	memcpy(key, addr, n);
	key[n] = '\0';
}

static struct auth_limit_entry *auth_limit_find(struct auth_limit *al, const char *addr)
{
	char key[AUTH_LIMIT_KEY_MAX];
	auth_limit_key(addr, key);
	for (size_t i = 0; i < al->n; i++)
		if (strcmp(al->v[i].key, key) == 0)
			return &al->v[i];
	return NULL;
}

/* A whole window without a failure, counted from the end of the last block,
 * forgets the address (so waiting out a long block quietly does not). */
static bool auth_limit_stale(const struct auth_limit_entry *e, uint64_t now_ms)
{
	uint64_t since = e->last_ms > e->until_ms ? e->last_ms : e->until_ms;
	return now_ms >= since && now_ms - since >= AUTH_LIMIT_WINDOW_MS;
}

uint64_t auth_limit_blocked(struct auth_limit *al, const char *addr, uint64_t now_ms)
{
	struct auth_limit_entry *e = auth_limit_find(al, addr);
	if (e == NULL || now_ms >= e->until_ms)
		return 0;
	e->last_ms = now_ms;
	return e->until_ms - now_ms;
}

bool auth_limit_failure(struct auth_limit *al, const char *addr, uint64_t now_ms)
{
	if (al->max_failures == 0)
		return false;
	struct auth_limit_entry *e = auth_limit_find(al, addr);
	if (e != NULL && auth_limit_stale(e, now_ms)) {
		e->failures = 0;
		e->blocks = 0;
		e->until_ms = 0;
	}
	if (e == NULL) {
		if (al->n < al->cap) {
			e = &al->v[al->n++];
		} else {
			e = &al->v[0];
			for (size_t i = 1; i < al->n; i++)
				if (al->v[i].last_ms < e->last_ms)
					e = &al->v[i];
		}
		memset(e, 0, sizeof *e);
		auth_limit_key(addr, e->key);
	}
	if (e->failures == 0 || now_ms - e->first_ms >= AUTH_LIMIT_WINDOW_MS) {
		e->failures = 0;
		e->first_ms = now_ms;
	}
	e->last_ms = now_ms;
	if (++e->failures < al->max_failures)
		return false;
	unsigned shift = e->blocks < 6 ? e->blocks : 6;
	uint64_t ms = (uint64_t)AUTH_LIMIT_BLOCK_MS << shift;
	e->until_ms = now_ms + (ms < AUTH_LIMIT_BLOCK_MAX_MS ? ms : AUTH_LIMIT_BLOCK_MAX_MS);
	e->blocks++;
	e->failures = 0;
	return true;
}

void auth_limit_success(struct auth_limit *al, const char *addr)
{
	struct auth_limit_entry *e = auth_limit_find(al, addr);
	if (e != NULL)
		e->failures = 0;
}
