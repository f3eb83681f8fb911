/* fdlimit: see fdlimit.h. */
#include "fdlimit.h"

#include <stdio.h>
#include <sys/resource.h>

uint64_t fdlimit_fit(uint64_t configured, uint64_t extra, uint64_t nofile)
{
	uint64_t reserve = FDLIMIT_RESERVE + extra;
	if (nofile == UINT64_MAX)
		return configured;
	if (nofile <= reserve + FDLIMIT_PER_SESSION)
		return 1;
	uint64_t fit = (nofile - reserve) / FDLIMIT_PER_SESSION;
	return fit < configured ? fit : configured;
}

void fdlimit_setup(uint64_t configured, uint64_t extra, struct fdlimit *out, char *warn,
                   size_t warnlen)
{
	warn[0] = '\0';
	struct rlimit rl;
	out->nofile = UINT64_MAX;
	out->max_connections = configured;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur != rl.rlim_max) {
		struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = rl.rlim_max;
	}
	out->nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	out->max_connections = fdlimit_fit(configured, extra, out->nofile);
	if (out->max_connections < configured)
		snprintf(
		    warn, warnlen,
		    "SMTPD_MAX_CONNECTIONS is %llu but the open files limit (RLIMIT_NOFILE) is "
		    "%llu, enough for %llu connections: serving at most %llu (raise the limit, "
		    "e.g. --ulimit nofile= or LimitNOFILE=, to serve more)",
		    (unsigned long long)configured, (unsigned long long)out->nofile,
		    (unsigned long long)out->max_connections,
		    (unsigned long long)out->max_connections);
}
