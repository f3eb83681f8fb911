/* file_read: a settings file read whole. See file_read.h. */
#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int file_read_all(const char *setting, const char *path, size_t max, char **data, size_t *len,
                  struct stat *st, int *open_errno, char *err, size_t errlen)
{
	*data = NULL;
	*len = 0;
	*open_errno = 0;
	memset(st, 0, sizeof *st);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, st) < 0) {
		*open_errno = errno;
		snprintf(err, errlen, "%s: cannot read %s: %s", setting, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size > max) {
		if (S_ISREG(st->st_mode))
			snprintf(err, errlen, "%s: %s is too large (%zu MiB at most)", setting,
			         path, max >> 20);
		else
			snprintf(err, errlen, "%s: %s is not a regular file", setting, path);
		close(fd);
		return -1;
	}
	size_t cap = (size_t)st->st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (buf == NULL) {
		snprintf(err, errlen, "%s: out of memory", setting);
		close(fd);
		return -1;
	}
	for (;;) {
		/* Grown while read: half-written, probably; the caller's next look
		 * sees it changed again. */
		if (n == cap) {
			snprintf(err, errlen, "%s: %s changed while read", setting, path);
			break;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot read %s: %s", setting, path,
			         strerror(errno));
			break;
		}
		if (r == 0) {
			close(fd);
			*data = buf;
			*len = n;
			return 0;
		}
		n += (size_t)r;
	}
	close(fd);
	explicit_bzero(buf, n);
	free(buf);
	return -1;
}
