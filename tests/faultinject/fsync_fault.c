/* fsync_fault: a test-only LD_PRELOAD library that makes fsync(2),
 * fdatasync(2) and syncfs(2) fail with EIO, to prove that mailport never answers 250 for a
 * message whose sync failed (SPEC 5, issue 12). Built only with BUILD_TESTING;
 * never installed.
 *
 * Which calls fail, from the environment (read at each call, so a test may
 * set them for the process it starts):
 *   MAILPORT_FAULT_FSYNC_PATH   only fds whose path (readlink /proc/self/fd/N)
 *                               contains this; a trailing '$' anchors it at the
 *                               end ("/spool/new$": the directory, not its files).
 *                               Unset or empty: every fd.
 *   MAILPORT_FAULT_FSYNC_AFTER  this many matching calls pass first (default 0).
 *   MAILPORT_FAULT_FSYNC_COUNT  then this many fail (default: all that follow).
 *   MAILPORT_FAULT_FSYNC_TRIGGER  when set, matching calls pass (and are not
 *                               counted) until this file exists; the first
 *                               counted call removes it, so a test arms the
 *                               fault at the moment it chooses (issue 14).
 *   MAILPORT_FAULT_FSYNC_LOG    a file that gets one line per matching call,
 *                               "<n> <path> ok|EIO", so the test can check that
 *                               the faults it asked for really happened.
 * A failing call still syncs nothing: it returns -1 with errno EIO at once.
 *
 * Under AddressSanitizer the preloaded library comes before the ASan runtime in
 * the library list: run the binary with ASAN_OPTIONS=verify_asan_link_order=0.
 * The library itself is built without sanitizers. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

static unsigned long fsync_fault_calls; /* matching calls so far */

static long fsync_fault_env(const char *name, long def)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return def;
	char *end;
	long n = strtol(v, &end, 10);
	return *end == '\0' && n >= 0 ? n : def;
}

static int fsync_fault_match(const char *path, const char *pat)
{
	if (pat == NULL || *pat == '\0')
		return 1;
	size_t pl = strlen(pat);
	if (pat[pl - 1] != '$')
		return strstr(path, pat) != NULL;
	size_t n = strlen(path);
	return n >= pl - 1 && memcmp(path + n - (pl - 1), pat, pl - 1) == 0;
}

static void fsync_fault_log(unsigned long n, const char *path, int fail)
{
	const char *log = getenv("MAILPORT_FAULT_FSYNC_LOG");
	if (log == NULL || *log == '\0')
		return;
	char line[PATH_MAX + 64];
	int len = snprintf(line, sizeof line, "%lu %s %s\n", n, path, fail ? "EIO" : "ok");
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (len > 0 && write(fd, line, (size_t)len) < 0) {
		/* a test helper: nothing to do about a lost log line */
	}
	close(fd);
}

/* Whether this call on fd must fail (and log it when it matches). */
static int fsync_fault_should_fail(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	if (!fsync_fault_match(path, getenv("MAILPORT_FAULT_FSYNC_PATH")))
		return 0;
	const char *trigger = getenv("MAILPORT_FAULT_FSYNC_TRIGGER");
	if (trigger != NULL && *trigger != '\0') {
		static int armed;
		if (!__atomic_load_n(&armed, __ATOMIC_SEQ_CST)) {
			if (unlink(trigger) < 0)
				return 0; /* not armed yet (or another thread took it) */
			__atomic_store_n(&armed, 1, __ATOMIC_SEQ_CST);
		}
	}
	unsigned long k = __atomic_add_fetch(&fsync_fault_calls, 1, __ATOMIC_SEQ_CST);
	long after = fsync_fault_env("MAILPORT_FAULT_FSYNC_AFTER", 0);
	long count = fsync_fault_env("MAILPORT_FAULT_FSYNC_COUNT", -1);
	int fail = k > (unsigned long)after && (count < 0 || k <= (unsigned long)(after + count));
	fsync_fault_log(k, path, fail);
	return fail;
}

static int fsync_fault_call(const char *name, int fd)
{
	if (fsync_fault_should_fail(fd)) {
		errno = EIO;
		return -1;
	}
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
	if (real == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd);
}

int syncfs(int fd);
int syncfs(int fd)
{
	return fsync_fault_call("syncfs", fd);
}

int fsync(int fd)
{
	return fsync_fault_call("fsync", fd);
}

int fdatasync(int fd)
{
	return fsync_fault_call("fdatasync", fd);
}
