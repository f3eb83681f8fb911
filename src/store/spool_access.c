/* spool_access: the spool as the webhook and the messages API see it (SPEC 3
 * and 5): find, read, move and remove stored messages, and keep the index
 * (spool_index.h) in step with every move and removal. See spool.h. */
#include "spool_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

const char *const spool_state_dirs[SPOOL_STATES] = {"new", "cur", "failed"};

const char *spool_state_name(enum spool_state st)
{
	return spool_state_dirs[st];
}

bool spool_id_valid(const char *id)
{
	if (!spool_id_ok(id))
		return false;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
		          *p == '\\' || *p == ',' || *p == '=';
		if (!ok)
			return false;
	}
	return true;
}

/* The name of message `id` in st's directory: the id itself or, in cur/, the
 * id with the Maildir info a mail reader may have added ("<id>:2,S"). */
static int spool_find_name(struct spool *s, enum spool_state st, const char *id, char *name,
                           size_t len)
{
	char path[SPOOL_ID_MAX + 16];
	snprintf(path, sizeof path, "%s/%s", spool_state_dirs[st], id);
	struct stat sb;
	if (fstatat(s->dir_fd, path, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(sb.st_mode))
			return -ENOENT;
		snprintf(name, len, "%s", id);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	if (st != SPOOL_STATE_CUR)
		return -ENOENT;
	int fd = openat(s->dir_fd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -ENOMEM;
	}
	size_t idlen = strlen(id);
	int rc = -ENOENT;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, id, idlen) == 0 && de->d_name[idlen] == ':' &&
		    strlen(de->d_name) < len) {
			snprintf(name, len, "%s", de->d_name);
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}

int spool_open_message(struct spool *s, enum spool_state st, const char *id, int *fdp,
                       uint64_t *size)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char name[NAME_MAX + 1], path[NAME_MAX + 16];
	int rc = spool_find_name(s, st, id, name, sizeof name);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof path, "%s/%s", spool_state_dirs[st], name);
	int fd = openat(s->dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return -ENOENT;
	}
	if (size)
		*size = (uint64_t)sb.st_size;
	*fdp = fd;
	return 0;
}

int spool_locate(struct spool *s, const char *id, enum spool_state *st)
{
	/* In the order a message moves (new -> cur or failed), so a move that
	 * happens during the search is still found in a later directory. */
	for (int i = 0; i < 3; i++) {
		char name[NAME_MAX + 1];
		int rc = spool_find_name(s, (enum spool_state)i, id, name, sizeof name);
		if (rc == 0) {
			*st = (enum spool_state)i;
			return 0;
		}
		if (rc != -ENOENT)
			return rc;
	}
	return -ENOENT;
}

/* Read up to max bytes of fd into a malloc'ed, NUL-terminated buffer. */
static int spool_read_fd(int fd, size_t max, char **data, size_t *len)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return -errno;
	size_t want = (uint64_t)sb.st_size < max ? (size_t)sb.st_size : max;
	char *p = malloc(want + 1);
	if (p == NULL)
		return -ENOMEM;
	size_t got = 0;
	while (got < want) {
		ssize_t n = read(fd, p + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(p);
			return -e;
		}
		if (n == 0)
			break; /* shorter than it was: take what is there */
		got += (size_t)n;
	}
	p[got] = '\0';
	*data = p;
	*len = got;
	return 0;
}

int spool_read_message(struct spool *s, enum spool_state st, const char *id, size_t max,
                       char **data, size_t *len)
{
	int fd;
	int rc = spool_open_message(s, st, id, &fd, NULL);
	if (rc < 0)
		return rc;
	rc = spool_read_fd(fd, max, data, len);
	close(fd);
	return rc;
}

int spool_meta_read(struct spool *s, const char *id, char **json)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char name[SPOOL_ID_MAX + 16];
	snprintf(name, sizeof name, "%s.json", id);
	int fd = openat(s->meta_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	size_t len;
	int rc = spool_read_fd(fd, SPOOL_META_MAX, json, &len);
	close(fd);
	return rc;
}

int spool_meta_write(struct spool *s, const char *id, const char *json, bool durable)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char meta[SPOOL_ID_MAX + 16], meta_tmp[SPOOL_ID_MAX + 16];
	snprintf(meta, sizeof meta, "%s.json", id);
	snprintf(meta_tmp, sizeof meta_tmp, ".%s.json.tmp", id);
	struct iovec iov[2] = {{(void *)json, strlen(json)}, {(void *)"\n", 1}};
	/* A temporary name left by a crash would make O_EXCL fail. */
	unlinkat(s->meta_fd, meta_tmp, 0);
	int rc = spool_write_file(s->meta_fd, meta_tmp, iov, 2, NULL);
	if (rc < 0)
		return rc;
	if (renameat(s->meta_fd, meta_tmp, s->meta_fd, meta) < 0) {
		rc = -errno;
		unlinkat(s->meta_fd, meta_tmp, 0);
		return rc;
	}
	if (durable && fsync(s->meta_fd) < 0)
		return -errno;
	return 0;
}

static int spool_fsync_dir(struct spool *s, const char *dir)
{
	int fd = openat(s->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int spool_move(struct spool *s, const char *id, enum spool_state from, enum spool_state to)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char name[NAME_MAX + 1], src[NAME_MAX + 16], dst[SPOOL_ID_MAX + 16];
	int rc = spool_find_name(s, from, id, name, sizeof name);
	if (rc < 0)
		return rc;
	snprintf(src, sizeof src, "%s/%s", spool_state_dirs[from], name);
	snprintf(dst, sizeof dst, "%s/%s", spool_state_dirs[to], id);
	/* failed/ is made on first use: most spools never need it. */
	if (to == SPOOL_STATE_FAILED) {
		rc = spool_mkdir_at(s->dir_fd, "failed");
		if (rc < 0)
			return rc;
	}
	if (renameat(s->dir_fd, src, s->dir_fd, dst) < 0)
		return -errno;
	/* In `to` from now on, whatever the fsync says. Only an entry still in
	 * the index moves: a DELETE between the rename and here must not bring
	 * the message back into the listing. */
	spool_index_update(s->index, id, to);
	rc = spool_fsync_dir(s, spool_state_dirs[to]);
	if (rc < 0)
		log_error("spool: fsync of %s/%s/ after moving %s failed: %s", s->dir,
		          spool_state_dirs[to], id, strerror(-rc));
	return rc;
}

int spool_remove(struct spool *s, enum spool_state st, const char *id)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char name[NAME_MAX + 1], path[NAME_MAX + 16], meta[SPOOL_ID_MAX + 16];
	int rc = spool_find_name(s, st, id, name, sizeof name);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof path, "%s/%s", spool_state_dirs[st], name);
	if (unlinkat(s->dir_fd, path, 0) < 0)
		return -errno;
	spool_index_del(s->index, id);
	/* The message first: an envelope without its message is a leftover that
	 * spool_open() removes; a message without its envelope would be a hole. */
	snprintf(meta, sizeof meta, "%s.json", id);
	if (unlinkat(s->meta_fd, meta, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int spool_meta_remove(struct spool *s, const char *id)
{
	if (!spool_id_ok(id))
		return -EINVAL;
	char meta[SPOOL_ID_MAX + 16];
	snprintf(meta, sizeof meta, "%s.json", id);
	if (unlinkat(s->meta_fd, meta, 0) < 0)
		return -errno;
	return 0;
}

int spool_list_ids(struct spool *s, enum spool_state st, char ***ids, size_t *n)
{
	struct spool_names names = {0};
	int rc = spool_list(s, spool_state_dirs[st], false, &names);
	if (rc < 0) {
		spool_names_free(&names);
		*ids = NULL;
		*n = 0;
		return rc;
	}
	*ids = names.v;
	*n = names.n;
	return 0;
}

void spool_ids_free(char **ids, size_t n)
{
	struct spool_names names = {.v = ids, .n = n, .cap = n};
	spool_names_free(&names);
}
