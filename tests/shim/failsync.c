/* failsync: a test-only LD_PRELOAD library that fails one batch of syncs with
 * EIO on demand (issue 14, "crash truth"), for test_crash_truth.py. Built only
 * with BUILD_TESTING; never installed.
 *
 * It wraps fsync(2), fdatasync(2) and syncfs(2). A call fails when
 *   - the file named by FAILSYNC_TRIGGER exists: the first matching call that
 *     sees it unlinks it (unlink(2) decides between threads racing for it) and
 *     fails, and so do the next FAILSYNC_COUNT - 1 matching calls (FAILSYNC_COUNT
 *     defaults to 1); then everything passes through again until the trigger is
 *     created anew;
 *   - and the fd's path (readlink /proc/self/fd/N) contains FAILSYNC_PATH (unset
 *     or empty: every fd). A test passes the spool directory, so the fault hits
 *     whatever file or directory the implementation syncs, journal or Maildir.
 * A failing call syncs nothing and returns -1 with errno EIO at once. Every
 * failed call is appended to FAILSYNC_LOG when set ("<call> <path> EIO"), so a
 * test can show which sync it failed.
 *
 * The test starts an ASan binary with LD_PRELOAD="<libasan.so>:<this library>"
 * (the ASan runtime must come first in the library list). The library itself
 * is built without sanitizers. */
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
int syncfs(int fd);

/* Failures still owed after the trigger fired (FAILSYNC_COUNT - 1 of them). */
static long failsync_owed;

static long failsync_count(void)
{
	const char *v = getenv("FAILSYNC_COUNT");
	if (v == NULL || *v == '\0')
		return 1;
	char *end;
	long n = strtol(v, &end, 10);
	return *end == '\0' && n >= 1 ? n : 1;
}

static void failsync_log(const char *call, const char *path)
{
	const char *log = getenv("FAILSYNC_LOG");
	if (log == NULL || *log == '\0')
		return;
	char line[PATH_MAX + 64];
	int len = snprintf(line, sizeof line, "%s %s EIO\n", call, path);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (len > 0 && write(fd, line, (size_t)len) < 0) {
		/* a test helper: nothing to do about a lost log line */
	}
	close(fd);
}

/* Take one owed failure, if any is left (lock-free: compare and swap). */
static int failsync_take_owed(void)
{
	long n = __atomic_load_n(&failsync_owed, __ATOMIC_SEQ_CST);
	while (n > 0) {
		if (__atomic_compare_exchange_n(&failsync_owed, &n, n - 1, 0, __ATOMIC_SEQ_CST,
		                                __ATOMIC_SEQ_CST))
			return 1;
	}
	return 0;
}

/* Whether this call on fd must fail. errno is preserved for the passing case. */
static int failsync_should_fail(const char *call, int fd)
{
	const char *trigger = getenv("FAILSYNC_TRIGGER");
	if (trigger == NULL || *trigger == '\0')
		return 0;
	int saved = errno;
	int fail = 0;
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n < 0)
		goto out;
	path[n] = '\0';
	const char *want = getenv("FAILSYNC_PATH");
	if (want != NULL && *want != '\0' && strstr(path, want) == NULL)
		goto out;
	if (failsync_take_owed()) {
		fail = 1;
	} else if (unlink(trigger) == 0) {
		/* This call fired the trigger: it fails, and COUNT - 1 more after it. */
		__atomic_add_fetch(&failsync_owed, failsync_count() - 1, __ATOMIC_SEQ_CST);
		fail = 1;
	}
	if (fail)
		failsync_log(call, path);
out:
	errno = saved;
	return fail;
}

static int failsync_call(const char *name, int fd)
{
	if (failsync_should_fail(name, fd)) {
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

int fsync(int fd)
{
	return failsync_call("fsync", fd);
}

int fdatasync(int fd)
{
	return failsync_call("fdatasync", fd);
}

int syncfs(int fd)
{
	return failsync_call("syncfs", fd);
}
