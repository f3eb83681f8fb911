/* auth_limit: failed AUTH counted per client address across sessions
 * (issue 13 item 6, SPEC 6).
 *
 * A delay that belongs to the session is reset by reconnecting; this one
 * belongs to the address. After SMTPD_AUTH_MAX_FAILURES failures within
 * AUTH_LIMIT_WINDOW_MS, AUTH from that address is answered 454 4.7.0 for a
 * block that doubles each time (AUTH_LIMIT_BLOCK_MS, 2x, ... at most
 * AUTH_LIMIT_BLOCK_MAX_MS); a quiet window forgets the address. IPv6 clients
 * count by their /64, which one attacker gets whole. The table holds at most
 * max_entries addresses, the least recently seen dropped first, so memory is
 * bounded whatever the number of attackers. Loop thread only; times are the
 * caller's (uv_now), so the module is pure and unit-tested. */
#ifndef MAILPORT_AUTH_LIMIT_H
#define MAILPORT_AUTH_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_LIMIT_WINDOW_MS    (15u * 60u * 1000u)
#define AUTH_LIMIT_BLOCK_MS     (60u * 1000u)
#define AUTH_LIMIT_BLOCK_MAX_MS (60u * 60u * 1000u)
#define AUTH_LIMIT_ENTRIES      4096

struct auth_limit;

/* NULL on out of memory. max_failures 0 never blocks. */
struct auth_limit *auth_limit_new(unsigned max_failures, size_t max_entries);
void auth_limit_free(struct auth_limit *al);

/* Milliseconds until addr may try AUTH again; 0: now. */
uint64_t auth_limit_blocked(struct auth_limit *al, const char *addr, uint64_t now_ms);
/* A failed AUTH from addr; true when it starts a block. */
bool auth_limit_failure(struct auth_limit *al, const char *addr, uint64_t now_ms);
/* A successful AUTH from addr: its count starts again. */
void auth_limit_success(struct auth_limit *al, const char *addr);
/* Addresses in the table (for tests and /status). */
size_t auth_limit_size(const struct auth_limit *al);

#endif
