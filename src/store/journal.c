/* journal: the spool's group commit. See journal.h for the contract.
 *
 * Segment file <spool>/journal/<16 hex digits>.mpj:
 *   "mailport-journal 1 boot=<boot id>\n"
 *   record*
 * record:
 *   "MPJR <n|c> <16 hex: data length> <8 hex: meta length> <4 hex: id length>
 *    <64 hex: SHA-256 of id, data, meta>\n" (JREC_HDR bytes, fixed width)
 *   id, data (the message file), meta (meta/<id>.json's bytes)
 * A record is written in one go with its header last (pwrite at its place),
 * but nothing of a batch counts before the fdatasync: a record torn by a crash
 * fails its length or its hash, and was never answered 250. */
#include "journal.h"

#include "log.h"
#include "spool_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAGIC "mailport-journal 1 boot="
#define JREC_HDR      103 /* "MPJR c " 16 " " 8 " " 4 " " 64 "\n" */
#define JCOPY_SIZE    (256u << 10)
#define JBOOT_MAX     64

struct jseg {
	uint64_t seq;
	time_t closed;
};

struct journal {
	pthread_mutex_t mu; /* the append and sync of one batch at a time */
	struct spool *sp;
	int dir_fd; /* <spool>/journal */
	int seg_fd; /* the segment being appended to, -1 when none */
	uint64_t seg_seq;
	uint64_t seg_off;
	bool seg_new; /* its directory entry is not synced yet */
	time_t seg_opened;
	time_t last_commit;
	struct jseg *closed; /* closed segments waiting for a checkpoint */
	size_t nclosed, cap;
	char boot[JBOOT_MAX];
	unsigned char *copy; /* JCOPY_SIZE bytes */
	int (*sync)(int fd);
	atomic_uint_fast64_t messages, syncs, sync_failures;
	uint64_t replayed, restored;
};

static bool journal_checkpoint_due_locked(struct journal *j);

/* ---- small helpers ---------------------------------------------------------- */

static void journal_boot_id(char *out, size_t len)
{
	snprintf(out, len, "unknown");
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f == NULL)
		return;
	if (fgets(out, (int)len, f) == NULL)
		snprintf(out, len, "unknown");
	out[strcspn(out, "\r\n")] = '\0';
	fclose(f);
}

static int journal_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = pwrite(fd, c, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int journal_pread_all(int fd, void *p, size_t n, uint64_t off)
{
	char *c = p;
	while (n > 0) {
		ssize_t r = pread(fd, c, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENODATA;
		c += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int journal_write_all(int fd, const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++) {
		const char *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;
		while (left > 0) {
			ssize_t w = write(fd, p, left);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			p += w;
			left -= (size_t)w;
		}
	}
	return 0;
}

static void journal_seg_name(uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%016" PRIx64 ".mpj", seq);
}

static int journal_default_sync(int fd)
{
	return fdatasync(fd);
}

/* ---- segments --------------------------------------------------------------------- */

static int journal_remember_closed(struct journal *j, uint64_t seq)
{
	if (j->nclosed == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 8;
		struct jseg *v = realloc(j->closed, cap * sizeof *v);
		if (v == NULL)
			return -ENOMEM;
		j->closed = v;
		j->cap = cap;
	}
	j->closed[j->nclosed++] = (struct jseg){.seq = seq, .closed = time(NULL)};
	return 0;
}

static void journal_close_segment(struct journal *j)
{
	if (j->seg_fd < 0)
		return;
	close(j->seg_fd);
	j->seg_fd = -1;
	/* Out of memory: the segment stays on disk and is replayed (harmlessly)
	 * and removed at the next start. */
	if (journal_remember_closed(j, j->seg_seq) < 0)
		log_error("journal: out of memory; segment %016" PRIx64 " kept until restart",
		          j->seg_seq);
	j->seg_seq++;
}

static int journal_open_segment(struct journal *j)
{
	char name[32];
	journal_seg_name(j->seg_seq, name, sizeof name);
	int fd = openat(j->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, SPOOL_FILE_MODE);
	if (fd < 0)
		return -errno;
	char head[sizeof JOURNAL_MAGIC + JBOOT_MAX + 2];
	int n = snprintf(head, sizeof head, JOURNAL_MAGIC "%s\n", j->boot);
	int rc = journal_pwrite_all(fd, head, (size_t)n, 0);
	if (rc < 0) {
		close(fd);
		unlinkat(j->dir_fd, name, 0);
		return rc;
	}
	j->seg_fd = fd;
	j->seg_off = (uint64_t)n;
	j->seg_new = true;
	j->seg_opened = time(NULL);
	return 0;
}

/* ---- commit --------------------------------------------------------------------- */

/* Create tmp/<id> from memory (no fsync: the journal record is what is synced). */
static int journal_write_tmp(struct journal *j, struct journal_entry *e)
{
	int fd =
	    openat(j->sp->tmp_fd, e->id, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, SPOOL_FILE_MODE);
	if (fd < 0)
		return -errno;
	int rc = journal_write_all(fd, e->iov, e->iovcnt);
	if (close(fd) < 0 && rc == 0 && errno != EINTR)
		rc = -errno;
	if (rc < 0)
		unlinkat(j->sp->tmp_fd, e->id, 0);
	return rc;
}

/* A large message already on disk is not copied: its file is synced where it
 * is, and the record carries only its length (and the envelope). */
static bool journal_external(const struct journal_entry *e)
{
	return e->fd >= 0 && e->len >= JOURNAL_EXTERNAL_MIN;
}

/* Append one record at j->seg_off. On failure nothing past seg_off counts. */
static int journal_append(struct journal *j, struct journal_entry *e)
{
	size_t idlen = strlen(e->id);
	uint64_t off = j->seg_off + JREC_HDR;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	int rc = journal_pwrite_all(j->seg_fd, e->id, idlen, off);
	EVP_DigestUpdate(md, e->id, idlen);
	off += idlen;
	if (journal_external(e)) {
		/* The data stays in tmp/<id>, synced there (journal_commit). */
	} else if (e->fd < 0) {
		for (int i = 0; rc == 0 && i < e->iovcnt; i++) {
			rc = journal_pwrite_all(j->seg_fd, e->iov[i].iov_base, e->iov[i].iov_len,
			                        off);
			EVP_DigestUpdate(md, e->iov[i].iov_base, e->iov[i].iov_len);
			off += e->iov[i].iov_len;
		}
	} else {
		/* Streamed: copy from tmp/<id> (the page cache, usually). */
		for (uint64_t done = 0; rc == 0 && done < e->len;) {
			size_t n =
			    e->len - done < JCOPY_SIZE ? (size_t)(e->len - done) : JCOPY_SIZE;
			rc = journal_pread_all(e->fd, j->copy, n, done);
			if (rc == 0)
				rc = journal_pwrite_all(j->seg_fd, j->copy, n, off);
			EVP_DigestUpdate(md, j->copy, n);
			done += n;
			off += n;
		}
	}
	if (rc == 0) {
		rc = journal_pwrite_all(j->seg_fd, e->meta, e->meta_len, off);
		EVP_DigestUpdate(md, e->meta, e->meta_len);
		off += e->meta_len;
	}
	unsigned char sum[32];
	unsigned sumlen = 0;
	EVP_DigestFinal_ex(md, sum, &sumlen);
	EVP_MD_CTX_free(md);
	if (rc < 0)
		return rc;
	char hdr[JREC_HDR + 1];
	int n = snprintf(hdr, sizeof hdr, "MPJR %c %016" PRIx64 " %08zx %04zx ",
	                 journal_external(e) ? (e->to_cur ? 'C' : 'N') : (e->to_cur ? 'c' : 'n'),
	                 e->len, e->meta_len, idlen);
	for (int i = 0; i < 32; i++)
		n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%02x", sum[i]);
	hdr[n++] = '\n';
	if (n != JREC_HDR)
		return -EINVAL;
	rc = journal_pwrite_all(j->seg_fd, hdr, JREC_HDR, j->seg_off);
	if (rc == 0)
		j->seg_off = off;
	return rc;
}

/* meta/<id>.json, written in place: nobody reads it before its message is in
 * new/ (and in the index), which comes after. No temporary name: in a large
 * directory every name looked up costs a scan (a Maildir volume without
 * dir_index), and a temporary name costs three. */
static int journal_write_meta(struct spool *sp, const char *id, const char *meta, size_t len)
{
	char name[SPOOL_ID_MAX + 16];
	snprintf(name, sizeof name, "%s.json", id);
	int fd =
	    openat(sp->meta_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SPOOL_FILE_MODE);
	if (fd < 0)
		return -errno;
	struct iovec iov = {(void *)meta, len};
	int rc = journal_write_all(fd, &iov, 1);
	if (close(fd) < 0 && rc == 0 && errno != EINTR)
		rc = -errno;
	if (rc < 0)
		unlinkat(sp->meta_fd, name, 0);
	return rc;
}

/* Into new/ (or cur/): the envelope first, then the message (SPEC 5). */
static int journal_materialise(struct spool *sp, const char *id, bool to_cur, const char *meta,
                               size_t meta_len)
{
	int rc = journal_write_meta(sp, id, meta, meta_len);
	if (rc < 0)
		return rc;
	int dest = sp->new_fd, cur = -1;
	if (to_cur) {
		cur = openat(sp->dir_fd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cur < 0)
			rc = -errno;
		dest = cur;
	}
	if (rc == 0 && renameat(sp->tmp_fd, id, dest, id) < 0)
		rc = -errno;
	if (cur >= 0)
		close(cur);
	if (rc < 0) {
		char name[SPOOL_ID_MAX + 16];
		snprintf(name, sizeof name, "%s.json", id);
		unlinkat(sp->meta_fd, name, 0);
		return rc;
	}
	if (spool_index_put(sp->index, id, to_cur ? SPOOL_STATE_CUR : SPOOL_STATE_NEW) < 0)
		log_error("spool: %s stored but not in the index: out of memory", id);
	return 0;
}

/* Phase 1, no lock: every message's file complete in tmp/ (and synced there
 * when large). Several batches may do this at once. */
static void journal_prepare(struct journal *j, struct journal_entry **e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		e[i]->rc = 0;
		if (!spool_id_ok(e[i]->id)) {
			e[i]->rc = -EINVAL;
			continue;
		}
		if (e[i]->fd < 0 && (e[i]->rc = journal_write_tmp(j, e[i])) < 0) {
			log_error("spool: cannot write %s/tmp/%s: %s", spool_dir(j->sp), e[i]->id,
			          strerror(-e[i]->rc));
			continue;
		}
		if (journal_external(e[i]) && j->sync(e[i]->fd) < 0) {
			e[i]->rc = -errno;
			log_error("journal: sync of %s/tmp/%s failed: %s", spool_dir(j->sp),
			          e[i]->id, strerror(-e[i]->rc));
		}
	}
}

/* Phase 2, under the lock: the records and the one sync of the batch. Only
 * this part is serial: a batch appends and syncs while the next prepares. */
static void journal_append_sync(struct journal *j, struct journal_entry **e, size_t n)
{
	time_t now = time(NULL);
	if (j->seg_fd >= 0 &&
	    (j->seg_off >= JOURNAL_SEGMENT_MAX || now - j->seg_opened >= JOURNAL_SEGMENT_AGE))
		journal_close_segment(j);
	int rc = 0;
	if (j->seg_fd < 0 && (rc = journal_open_segment(j)) < 0)
		log_error("journal: cannot create a segment in %s/journal/: %s", spool_dir(j->sp),
		          strerror(-rc));
	uint64_t start = j->seg_off;
	size_t appended = 0, external = 0;
	for (size_t i = 0; i < n; i++) {
		if (e[i]->rc < 0)
			continue;
		if (rc < 0) {
			e[i]->rc = rc;
			continue;
		}
		uint64_t before = j->seg_off;
		if ((e[i]->rc = journal_append(j, e[i])) < 0) {
			log_error("journal: cannot append %s: %s", e[i]->id, strerror(-e[i]->rc));
			if (ftruncate(j->seg_fd, (off_t)before) < 0)
				log_error("journal: cannot cut a torn record: %s", strerror(errno));
			continue;
		}
		appended++;
		external += journal_external(e[i]);
	}
	if (appended > 0) {
		/* The one sync of the batch (and, for large messages synced in
		 * tmp/, one of tmp/ for their names). */
		int src = external > 0 && fsync(j->sp->tmp_fd) < 0 ? -errno : 0;
		if (src == 0)
			src = j->sync(j->seg_fd) < 0 ? -errno : 0;
		if (src == 0 && j->seg_new)
			src = fsync(j->dir_fd) < 0 ? -errno : 0;
		atomic_fetch_add(&j->syncs, 1);
		if (src < 0) {
			atomic_fetch_add(&j->sync_failures, 1);
			log_error("journal: sync of %s/journal/ failed: %s; %zu message(s) refused",
			          spool_dir(j->sp), strerror(-src), appended);
			/* None of the batch may come back at a replay: cut it off, and
			 * go on in a fresh segment (this one's pages are suspect). */
			if (ftruncate(j->seg_fd, (off_t)start) < 0 || j->sync(j->seg_fd) < 0)
				log_error(
				    "journal: cannot cut the failed batch off its segment: %s",
				    strerror(errno));
			journal_close_segment(j);
			for (size_t i = 0; i < n; i++)
				if (e[i]->rc == 0)
					e[i]->rc = src;
		} else {
			j->seg_new = false;
		}
	}
	j->last_commit = now;
}

/* Phase 3, no lock: into new/ (or cur/), without syncs; a refused message's
 * tmp/ file goes. */
static void journal_materialise_batch(struct journal *j, struct journal_entry **e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (e[i]->rc == 0) {
			e[i]->rc = journal_materialise(j->sp, e[i]->id, e[i]->to_cur, e[i]->meta,
			                               e[i]->meta_len);
			if (e[i]->rc < 0)
				log_error("spool: %s is in the journal but cannot be moved into "
				          "%s/%s/: %s",
				          e[i]->id, spool_dir(j->sp), e[i]->to_cur ? "cur" : "new",
				          strerror(-e[i]->rc));
			else
				atomic_fetch_add(&j->messages, 1);
		}
		/* Refused: nothing of it stays (the client sends it again). */
		if (e[i]->rc < 0 && spool_id_ok(e[i]->id))
			unlinkat(j->sp->tmp_fd, e[i]->id, 0);
	}
}

/* ---- checkpoint -------------------------------------------------------------------- */

bool journal_checkpoint_due(struct journal *j)
{
	pthread_mutex_lock(&j->mu);
	bool due = journal_checkpoint_due_locked(j);
	pthread_mutex_unlock(&j->mu);
	return due;
}

static bool journal_checkpoint_due_locked(struct journal *j)
{
	time_t now = time(NULL);
	if (j->seg_fd >= 0 && now - j->last_commit >= JOURNAL_SEGMENT_IDLE)
		return true;
	for (size_t i = 0; i < j->nclosed; i++)
		if (now - j->closed[i].closed >= JOURNAL_CHECKPOINT_AGE)
			return true;
	return false;
}

/* The syncfs runs without the lock, so commits go on meanwhile: the segments
 * it covers are closed (nothing is appended to them any more), and a checkpoint
 * never runs twice at once (spool_commit.c; journal_close after the loop). */
int journal_checkpoint(struct journal *j, bool all)
{
	pthread_mutex_lock(&j->mu);
	time_t now = time(NULL);
	if (j->seg_fd >= 0 && (all || now - j->last_commit >= JOURNAL_SEGMENT_IDLE))
		journal_close_segment(j);
	size_t due = 0;
	uint64_t last = 0; /* the newest segment this checkpoint removes */
	for (size_t i = 0; i < j->nclosed; i++)
		if (all || now - j->closed[i].closed >= JOURNAL_CHECKPOINT_AGE) {
			due++;
			if (j->closed[i].seq >= last)
				last = j->closed[i].seq;
		}
	pthread_mutex_unlock(&j->mu);
	if (due == 0)
		return 0;
	/* Everything the segments cover (files in tmp/ renamed into new/, meta/)
	 * is durable after this. */
	if (syncfs(j->dir_fd) < 0) {
		int e = errno;
		log_error("journal: syncfs of %s failed: %s; segments kept", spool_dir(j->sp),
		          strerror(e));
		return -e;
	}
	pthread_mutex_lock(&j->mu);
	size_t kept = 0, removed = 0;
	for (size_t i = 0; i < j->nclosed; i++) {
		if (j->closed[i].seq > last ||
		    (!all && now - j->closed[i].closed < JOURNAL_CHECKPOINT_AGE)) {
			j->closed[kept++] = j->closed[i];
			continue;
		}
		char name[32];
		journal_seg_name(j->closed[i].seq, name, sizeof name);
		if (unlinkat(j->dir_fd, name, 0) == 0 || errno == ENOENT)
			removed++;
	}
	j->nclosed = kept;
	pthread_mutex_unlock(&j->mu);
	fsync(j->dir_fd);
	return (int)removed;
}

void journal_commit(struct journal *j, struct journal_entry **e, size_t n)
{
	journal_prepare(j, e, n);
	pthread_mutex_lock(&j->mu);
	journal_append_sync(j, e, n);
	pthread_mutex_unlock(&j->mu);
	journal_materialise_batch(j, e, n);
}

/* ---- replay ---------------------------------------------------------------------------- */

struct jrec {
	bool to_cur;
	bool external; /* the data is in tmp/<id> (or new/), not in the record */
	uint64_t len;
	size_t meta_len;
	size_t idlen;
	char id[SPOOL_ID_MAX];
	uint64_t data_off; /* in the segment */
	uint64_t meta_off;
};

static int journal_hex(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

/* Parse and verify the record at off. 1: a record (next offset in *next);
 * 0: the segment's end or a torn tail. */
static int journal_read_record(struct journal *j, int fd, uint64_t off, uint64_t size,
                               struct jrec *r, uint64_t *next)
{
	char hdr[JREC_HDR];
	if (off + JREC_HDR > size || journal_pread_all(fd, hdr, JREC_HDR, off) < 0)
		return 0;
	uint64_t len, meta_len, idlen;
	unsigned char want[32];
	if (memcmp(hdr, "MPJR ", 5) != 0 || strchr("ncNC", hdr[5]) == NULL || hdr[6] != ' ' ||
	    journal_hex(hdr + 7, 16, &len) < 0 || journal_hex(hdr + 24, 8, &meta_len) < 0 ||
	    journal_hex(hdr + 33, 4, &idlen) < 0 || hdr[JREC_HDR - 1] != '\n')
		return 0;
	for (int i = 0; i < 32; i++) {
		uint64_t b;
		if (journal_hex(hdr + 38 + 2 * i, 2, &b) < 0)
			return 0;
		want[i] = (unsigned char)b;
	}
	bool external = hdr[5] == 'N' || hdr[5] == 'C';
	uint64_t end = off + JREC_HDR + idlen + (external ? 0 : len) + meta_len;
	if (idlen == 0 || idlen >= SPOOL_ID_MAX || end > size || end < off)
		return 0;
	r->to_cur = hdr[5] == 'c' || hdr[5] == 'C';
	r->external = external;
	r->len = len;
	r->meta_len = (size_t)meta_len;
	r->idlen = (size_t)idlen;
	r->data_off = off + JREC_HDR + idlen;
	r->meta_off = r->data_off + (external ? 0 : len);
	if (journal_pread_all(fd, r->id, r->idlen, off + JREC_HDR) < 0)
		return 0;
	r->id[r->idlen] = '\0';
	/* The hash over id, data and meta. */
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return 0;
	}
	bool ok = true;
	for (uint64_t p = off + JREC_HDR; ok && p < end;) {
		size_t n = end - p < JCOPY_SIZE ? (size_t)(end - p) : JCOPY_SIZE;
		ok = journal_pread_all(fd, j->copy, n, p) == 0;
		EVP_DigestUpdate(md, j->copy, n);
		p += n;
	}
	unsigned char sum[32];
	unsigned sumlen = 0;
	EVP_DigestFinal_ex(md, sum, &sumlen);
	EVP_MD_CTX_free(md);
	if (!ok || memcmp(sum, want, 32) != 0)
		return 0;
	*next = end;
	return 1;
}

/* Whether file `name` in dir_fd holds exactly the record's data. */
static bool journal_same(struct journal *j, int dir_fd, const char *name, int seg, uint64_t off,
                         uint64_t len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	bool same = fstat(fd, &st) == 0 && (uint64_t)st.st_size == len;
	unsigned char *b = j->copy + JCOPY_SIZE / 2;
	for (uint64_t p = 0; same && p < len;) {
		size_t n = len - p < JCOPY_SIZE / 2 ? (size_t)(len - p) : JCOPY_SIZE / 2;
		same = journal_pread_all(fd, j->copy, n, p) == 0 &&
		       journal_pread_all(seg, b, n, off + p) == 0 && memcmp(j->copy, b, n) == 0;
		p += n;
	}
	close(fd);
	return same;
}

/* Whether file `name` in dir_fd is len bytes long. */
static bool journal_size_is(int dir_fd, const char *name, uint64_t len)
{
	struct stat st;
	return fstatat(dir_fd, name, &st, 0) == 0 && (uint64_t)st.st_size == len;
}

/* tmp/<id> written again from the record. */
static int journal_restore_tmp(struct journal *j, int seg, const struct jrec *r)
{
	unlinkat(j->sp->tmp_fd, r->id, 0);
	int fd =
	    openat(j->sp->tmp_fd, r->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, SPOOL_FILE_MODE);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (uint64_t p = 0; rc == 0 && p < r->len;) {
		size_t n = r->len - p < JCOPY_SIZE ? (size_t)(r->len - p) : JCOPY_SIZE;
		rc = journal_pread_all(seg, j->copy, n, r->data_off + p);
		if (rc == 0)
			rc = journal_pwrite_all(fd, j->copy, n, p);
		p += n;
	}
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

static bool journal_meta_present(struct spool *sp, const char *id)
{
	char name[SPOOL_ID_MAX + 16];
	snprintf(name, sizeof name, "%s.json", id);
	struct stat st;
	return fstatat(sp->meta_fd, name, &st, 0) == 0 && st.st_size > 0;
}

static int journal_replay_record(struct journal *j, int seg, const struct jrec *r, bool same_boot)
{
	struct spool *sp = j->sp;
	if (!spool_id_ok(r->id))
		return 0;
	char *meta = malloc(r->meta_len ? r->meta_len : 1);
	if (meta == NULL)
		return -ENOMEM;
	int rc = journal_pread_all(seg, meta, r->meta_len, r->meta_off);
	/* Where the message is, from the index (one listing at open), not a
	 * search of cur/ per record. */
	enum spool_state st;
	bool known = spool_index_get(sp->index, r->id, &st) == 0;
	if (rc < 0) {
		/* unreadable: leave it */
	} else if (known && st != SPOOL_STATE_NEW) {
		/* Taken further by delivery or a consumer: theirs now. */
	} else if (known) {
		if (r->external) {
			/* Synced in place before its record: only its length to check. */
			if (!journal_size_is(sp->new_fd, r->id, r->len))
				log_error("journal: %s/new/%s is not %" PRIu64 " bytes long as its "
				          "record says; left as it is",
				          spool_dir(sp), r->id, r->len);
		} else if (!journal_same(j, sp->new_fd, r->id, seg, r->data_off, r->len)) {
			/* Short after a machine crash: written again, over it. */
			rc = journal_restore_tmp(j, seg, r);
			if (rc == 0 && renameat(sp->tmp_fd, r->id, sp->new_fd, r->id) < 0)
				rc = -errno;
			j->restored++;
		}
		if (rc == 0 && !journal_meta_present(sp, r->id))
			rc = journal_write_meta(sp, r->id, meta, r->meta_len);
	} else if (faccessat(sp->tmp_fd, r->id, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
	           (!same_boot && !r->external)) {
		/* Committed but not yet moved into new/ (or cur/), or moved and
		 * lost with the page cache of an earlier boot. */
		if (r->external ? !journal_size_is(sp->tmp_fd, r->id, r->len)
		                : !journal_same(j, sp->tmp_fd, r->id, seg, r->data_off, r->len)) {
			if (r->external)
				rc = -EIO; /* synced, yet not whole: say so, keep the segment */
			else
				rc = journal_restore_tmp(j, seg, r);
		}
		if (rc == 0)
			rc = journal_materialise(sp, r->id, r->to_cur, meta, r->meta_len);
		j->restored++;
	}
	free(meta);
	j->replayed++;
	return rc;
}

static int journal_replay_segment(struct journal *j, const char *name)
{
	int fd = openat(j->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char head[sizeof JOURNAL_MAGIC + JBOOT_MAX + 2] = "";
	ssize_t n = pread(fd, head, sizeof head - 1, 0);
	head[n > 0 ? n : 0] = '\0';
	char *nl = strchr(head, '\n');
	if (nl == NULL || strncmp(head, JOURNAL_MAGIC, strlen(JOURNAL_MAGIC)) != 0) {
		/* Cut before its header was written: nothing in it. */
		close(fd);
		return 0;
	}
	*nl = '\0';
	bool same_boot = strcmp(head + strlen(JOURNAL_MAGIC), j->boot) == 0;
	uint64_t off = (uint64_t)(nl - head) + 1, next;
	struct jrec r;
	int rc = 0;
	while (journal_read_record(j, fd, off, (uint64_t)st.st_size, &r, &next) == 1) {
		int e = journal_replay_record(j, fd, &r, same_boot);
		if (e < 0) {
			log_error("journal: cannot replay %s from %s: %s", r.id, name,
			          strerror(-e));
			rc = e;
		}
		off = next;
	}
	close(fd);
	return rc;
}

static int journal_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay every segment in order, make the result durable, remove them. */
static int journal_replay(struct journal *j, char *err, size_t errlen)
{
	DIR *d = fdopendir(dup(j->dir_fd));
	if (d == NULL) {
		snprintf(err, errlen, "SMTPD_SPOOL: cannot list %s/journal: %s", spool_dir(j->sp),
		         strerror(errno));
		return -errno;
	}
	rewinddir(d);
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len != 20 || strcmp(de->d_name + 16, ".mpj") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **v = realloc(names, cap * sizeof *v);
			if (v == NULL) {
				rc = -ENOMEM;
				break;
			}
			names = v;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			rc = -ENOMEM;
		else
			n++;
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, journal_name_cmp);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		uint64_t seq;
		if (journal_hex(names[i], 16, &seq) == 0 && seq >= j->seg_seq)
			j->seg_seq = seq + 1;
		int e = journal_replay_segment(j, names[i]);
		if (e < 0) {
			snprintf(err, errlen,
			         "SMTPD_SPOOL: cannot replay %s/journal/%s: %s (it is kept; fix "
			         "the spool and start again)",
			         spool_dir(j->sp), names[i], strerror(-e));
			rc = e;
		}
	}
	if (rc == 0 && n > 0) {
		if (syncfs(j->dir_fd) < 0) {
			rc = -errno;
			snprintf(err, errlen,
			         "SMTPD_SPOOL: syncfs of %s after the journal replay: %s",
			         spool_dir(j->sp), strerror(-rc));
		}
		for (size_t i = 0; rc == 0 && i < n; i++)
			unlinkat(j->dir_fd, names[i], 0);
		if (rc == 0)
			fsync(j->dir_fd);
	}
	if (n > 0 && rc == 0)
		log_info("journal: replayed %" PRIu64 " message(s) from %zu segment(s), %" PRIu64
		         " written again or moved into new/",
		         j->replayed, n, j->restored);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* ---- open/close ----------------------------------------------------------------------- */

int journal_open(struct spool *sp, int spool_dir_fd, struct journal **out, char *err, size_t errlen)
{
	*out = NULL;
	struct journal *j = calloc(1, sizeof *j);
	if (j == NULL || (j->copy = malloc(JCOPY_SIZE)) == NULL) {
		free(j);
		snprintf(err, errlen, "SMTPD_SPOOL: out of memory");
		return -ENOMEM;
	}
	j->sp = sp;
	pthread_mutex_init(&j->mu, NULL);
	j->seg_fd = -1;
	j->sync = journal_default_sync;
	j->last_commit = time(NULL);
	atomic_init(&j->messages, 0);
	atomic_init(&j->syncs, 0);
	atomic_init(&j->sync_failures, 0);
	journal_boot_id(j->boot, sizeof j->boot);
	int rc = spool_mkdir_at(spool_dir_fd, "journal");
	if (rc == 0) {
		j->dir_fd = openat(spool_dir_fd, "journal", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (j->dir_fd < 0)
			rc = -errno;
	}
	if (rc < 0) {
		snprintf(err, errlen, "SMTPD_SPOOL: cannot open %s/journal: %s", spool_dir(sp),
		         strerror(-rc));
		free(j->copy);
		free(j);
		return rc;
	}
	if ((rc = journal_replay(j, err, errlen)) < 0) {
		close(j->dir_fd);
		free(j->copy);
		free(j);
		return rc;
	}
	*out = j;
	return 0;
}

void journal_close(struct journal *j)
{
	if (j == NULL)
		return;
	journal_checkpoint(j, true);
	journal_abandon(j);
}

void journal_abandon(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->seg_fd >= 0)
		close(j->seg_fd);
	close(j->dir_fd);
	pthread_mutex_destroy(&j->mu);
	free(j->closed);
	free(j->copy);
	free(j);
}

void journal_get_stats(struct journal *j, struct journal_stats *st)
{
	st->messages = atomic_load(&j->messages);
	st->syncs = atomic_load(&j->syncs);
	st->sync_failures = atomic_load(&j->sync_failures);
	st->replayed = j->replayed;
	st->restored = j->restored;
}

void journal_set_sync(struct journal *j, int (*sync)(int fd))
{
	j->sync = sync ? sync : journal_default_sync;
}
