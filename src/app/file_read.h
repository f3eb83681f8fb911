/* file_read: a settings file (AUTH users, recipients) read whole, bounded.
 * Blocking: start-up, or the thread pool. */
#ifndef MAILPORT_FILE_READ_H
#define MAILPORT_FILE_READ_H

#include <stddef.h>
#include <sys/stat.h>

/* Read the regular file `path` of at most max bytes into a malloc'ed buffer.
 * Returns 0 with *data and *len, or -1 with one line in err naming `setting`
 * ("SMTPD_X: cannot read <path>: ...", "... is not a regular file", "... is too
 * large (N MiB at most)", "... changed while read"). *st is the file as opened
 * (zeroed when it could not be opened); *open_errno is the errno of a failed
 * open or fstat, else 0. A buffer given up on is zeroed first: the file may
 * hold secrets (password hashes). */
int file_read_all(const char *setting, const char *path, size_t max, char **data, size_t *len,
                  struct stat *st, int *open_errno, char *err, size_t errlen);

#endif
