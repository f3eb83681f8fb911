/* fdlimit: descriptors for SMTPD_MAX_CONNECTIONS (SPEC 7, issue 13).
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard one. Each SMTP session
 * may hold two descriptors (its socket, and a spool file or a filter's pipe
 * while it stores), and the rest of the service keeps FDLIMIT_RESERVE (the
 * listeners, the side port, the spool's directories, libuv's own). When the
 * limit is still too low, the effective maximum of connections is lowered to
 * what fits, so the service refuses with 421 instead of failing accept() and
 * starving /livez of descriptors. */
#ifndef MAILPORT_FDLIMIT_H
#define MAILPORT_FDLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define FDLIMIT_PER_SESSION 2
#define FDLIMIT_RESERVE     128

struct fdlimit {
	uint64_t nofile;          /* the soft limit after raising it (UINT64_MAX: none) */
	uint64_t max_connections; /* what the configured maximum became */
};

/* Raise the limit and fit `configured` connections (plus `extra` descriptors
 * the caller needs, e.g. one per listener) into it. When it had to lower the
 * maximum, writes a one-line warning naming both numbers into warn (else ""). */
void fdlimit_setup(uint64_t configured, uint64_t extra, struct fdlimit *out, char *warn,
                   size_t warnlen);

/* The pure part: the connections that fit in nofile descriptors. */
uint64_t fdlimit_fit(uint64_t configured, uint64_t extra, uint64_t nofile);

#endif
