/* spool: the Maildir spool (SPEC section 5). See spool.h for the contract. */
#include "spool_priv.h"

#include "buf.h"
#include "journal.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *spool_str(const char *p)
{
	return p ? p : "";
}

static void spool_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void spool_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- opening --------------------------------------------------------------- */

/* mkdir that accepts an existing directory. A read-only filesystem may answer
 * EROFS rather than EEXIST for a directory that is already there, so look
 * before failing; something else in the way is "Not a directory". */
int spool_mkdir_at(int fd, const char *path)
{
	if (mkdirat(fd, path, SPOOL_DIR_MODE) == 0)
		return 0;
	int e = errno;
	struct stat st;
	if (fstatat(fd, path, &st, 0) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	return -e;
}

/* mkdir -p: every missing component of path, in order. */
static int spool_mkdirs(char *path, char *err, size_t errlen)
{
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		int rc = spool_mkdir_at(AT_FDCWD, path);
		if (rc < 0)
			spool_err(err, errlen, "SMTPD_SPOOL: cannot create %s: %s", path,
			          strerror(-rc));
		*p = c;
		if (rc < 0)
			return rc;
		if (c == '\0')
			return 0;
		while (p[1] == '/')
			p++;
	}
}

static int spool_subdir(struct spool *s, const char *name, bool keep, int *fdp, char *err,
                        size_t errlen)
{
	int rc = spool_mkdir_at(s->dir_fd, name);
	if (rc < 0) {
		spool_err(err, errlen, "SMTPD_SPOOL: cannot create %s/%s: %s", s->dir, name,
		          strerror(-rc));
		return rc;
	}
	int fd = openat(s->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		spool_err(err, errlen, "SMTPD_SPOOL: cannot open %s/%s: %s", s->dir, name,
		          strerror(-rc));
		return rc;
	}
	/* The writability probe only touches tmp/; a new/ or meta/ owned by
	 * someone else would otherwise fail every store instead of the start. */
	if (strcmp(name, "tmp") != 0 && faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) < 0) {
		rc = -errno;
		close(fd);
		spool_err(err, errlen, "SMTPD_SPOOL: %s/%s is not writable: %s", s->dir, name,
		          strerror(-rc));
		return rc;
	}
	if (keep)
		*fdp = fd;
	else
		close(fd);
	return 0;
}

/* Create, write, fsync and remove a file in tmp/: the only honest test that a
 * store will work (a read-only mount, a full disk or an ownership mistake all
 * show up here, at start, instead of as 451s later). */
static int spool_probe(struct spool *s)
{
	char name[64];
	snprintf(name, sizeof name, ".probe.%ld", (long)getpid());
	int fd = openat(s->tmp_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	                SPOOL_FILE_MODE);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (write(fd, "x", 1) != 1 || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (unlinkat(s->tmp_fd, name, 0) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* ---- crash leftovers --------------------------------------------------------- */

void spool_names_free(struct spool_names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = ns->cap = 0;
}

static int spool_names_add(struct spool_names *ns, const char *name, size_t len)
{
	if (ns->n == ns->cap) {
		size_t ncap = ns->cap ? ns->cap * 2 : 64;
		char **nv = realloc(ns->v, ncap * sizeof *nv);
		if (nv == NULL)
			return -ENOMEM;
		ns->v = nv;
		ns->cap = ncap;
	}
	char *c = strndup(name, len);
	if (c == NULL)
		return -ENOMEM;
	ns->v[ns->n++] = c;
	return 0;
}

static int spool_names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool spool_names_has(const struct spool_names *ns, const char *name)
{
	return ns->n > 0 && bsearch(&name, ns->v, ns->n, sizeof *ns->v, spool_names_cmp) != NULL;
}

/* The names in one spool directory, or -errno. For the message directories
 * (meta false) dot files are skipped (the probe) and Maildir info (":2,S" in
 * cur/) is cut off, leaving the id; a missing one is empty (failed/ belongs to
 * the webhook and may not exist yet). */
int spool_list(struct spool *s, const char *dir, bool meta, struct spool_names *ns)
{
	int fd = openat(s->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && !meta ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		return -e;
	}
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || (!meta && n[0] == '.'))
			continue;
		rc = spool_names_add(ns, n, meta ? strlen(n) : strcspn(n, ":"));
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(d);
	return rc;
}

/* The id an envelope file belongs to: "<id>.json" or ".<id>.json.tmp" (a store
 * that died between writing and renaming its envelope). NULL for other files,
 * which are not ours to remove. */
static const char *spool_meta_id(const char *name, size_t *len)
{
	size_t n = strlen(name);
	if (name[0] == '.') {
		if (n > 10 && strcmp(name + n - 9, ".json.tmp") == 0) {
			*len = n - 10;
			return name + 1;
		}
		return NULL;
	}
	if (n > 5 && strcmp(name + n - 5, ".json") == 0) {
		*len = n - 5;
		return name;
	}
	return NULL;
}

/* Maildir's rule for tmp/: what is older than 36 hours is a dead delivery. Any
 * younger file may belong to a live store of another process sharing the spool. */
static void spool_clean_tmp(struct spool *s)
{
	struct spool_names names = {0};
	if (spool_list(s, "tmp", false, &names) < 0) {
		spool_names_free(&names);
		return;
	}
	time_t cutoff = time(NULL) - SPOOL_TMP_MAX_AGE;
	size_t hostlen = strlen(s->host);
	for (size_t i = 0; i < names.n; i++) {
		struct stat st;
		/* Ours from an earlier run (the id ends in our host part; the
		 * journal's replay has moved what was committed): a message cut off
		 * by a crash while it arrived, never answered 250. */
		size_t n = strlen(names.v[i]);
		bool ours = n > hostlen + 1 && names.v[i][n - hostlen - 1] == '.' &&
		            strcmp(names.v[i] + n - hostlen, s->host) == 0;
		if (fstatat(s->tmp_fd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    S_ISDIR(st.st_mode) || (!ours && st.st_mtime >= cutoff))
			continue;
		if (unlinkat(s->tmp_fd, names.v[i], 0) == 0)
			s->tmp_removed++;
	}
	spool_names_free(&names);
}

/* Remove envelopes whose message is gone (a crash between writing the envelope
 * and the rename into new/, once tmp/ has been cleaned; or a delivery that
 * removed a message and died before its envelope). meta/ is listed before the
 * message directories, and those in the order a message moves through them
 * (tmp, new, cur, failed), so a store or delivery running meanwhile in another
 * process sharing the spool cannot make a live envelope look orphaned: its
 * message was in tmp/ before its envelope existed, and a rename only moves it
 * to a directory listed later. Nothing is removed unless every listing worked. */
static void spool_clean_meta(struct spool *s)
{
	static const char *const dirs[] = {"tmp", "new", "cur", "failed"};
	struct spool_names metas = {0}, msgs = {0};
	int rc = spool_list(s, "meta", true, &metas);
	for (size_t i = 0; rc == 0 && i < sizeof dirs / sizeof dirs[0]; i++)
		rc = spool_list(s, dirs[i], false, &msgs);
	if (rc == 0 && msgs.n > 0)
		qsort(msgs.v, msgs.n, sizeof *msgs.v, spool_names_cmp);
	for (size_t i = 0; rc == 0 && i < metas.n; i++) {
		size_t len;
		const char *id = spool_meta_id(metas.v[i], &len);
		if (id == NULL)
			continue;
		char idbuf[NAME_MAX + 1];
		snprintf(idbuf, sizeof idbuf, "%.*s", (int)len, id);
		if (spool_names_has(&msgs, idbuf))
			continue;
		if (unlinkat(s->meta_fd, metas.v[i], 0) == 0)
			s->meta_removed++;
	}
	spool_names_free(&metas);
	spool_names_free(&msgs);
}

/* ---- ids ------------------------------------------------------------------------ */

/* Maildir escapes '/' and ':' in the host part as octal; every other byte that
 * is not plainly safe in a file name, a header and a URL is escaped the same way. */
static void spool_escape_host(const char *hostname, char *out, size_t outlen)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)hostname; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_';
		size_t need = plain ? 1 : 4;
		if (outlen - 1 - o < need)
			break;
		if (plain)
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\%03o", *p);
	}
	out[o] = '\0';
}

void spool_new_id(struct spool *s, char *id, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint_fast64_t q = atomic_fetch_add(&s->counter, 1);
	snprintf(id, len, "%lld.M%06ldP%ldQ%llu.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
	         (long)getpid(), (unsigned long long)q, s->host);
}

/* ---- envelope JSON ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 when the byte at p does not start one. */
static size_t spool_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		return 0;
	if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
		return 0;
	return len;
}

/* A JSON string for bytes that a peer chose (HELO, addresses may carry 8-bit
 * junk). jansson refuses invalid UTF-8, and writing it unchecked would make the
 * file invalid JSON, so each byte outside a valid sequence becomes U+FFFD. The
 * raw bytes stay in the message's own Received and Return-Path headers. */
json_t *spool_json_text(const char *text, size_t n)
{
	const unsigned char *p = (const unsigned char *)(text ? text : "");
	if (text == NULL)
		n = 0;
	size_t i = 0, bad = 0;
	while (i < n) {
		size_t l = spool_utf8_len(p + i, n - i);
		bad += l == 0;
		i += l ? l : 1;
	}
	if (bad == 0)
		return json_stringn((const char *)p, n);
	char *clean = malloc(n + bad * 2 + 1);
	if (clean == NULL)
		return NULL;
	size_t o = 0;
	for (i = 0; i < n;) {
		size_t l = spool_utf8_len(p + i, n - i);
		if (l == 0) {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(clean + o, p + i, l);
			o += l;
			i += l;
		}
	}
	json_t *j = json_stringn(clean, o);
	free(clean);
	return j;
}

static json_t *spool_json_str(const char *str)
{
	return spool_json_text(spool_str(str), strlen(spool_str(str)));
}

static json_t *spool_json_endpoint(const char *addr, uint16_t port)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "address", spool_json_str(addr)) < 0 ||
	    json_object_set_new(o, "port", json_integer(port)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* RFC 3339 in UTC with milliseconds: sortable as text, and finer than the
 * Received header's seconds when two messages arrive together. */
static void spool_rfc3339(const struct timespec *ts, char *out, size_t len)
{
	struct tm tm;
	time_t t = ts->tv_sec;
	gmtime_r(&t, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000);
}

/* The envelope's dump: compact, in the SPEC's key order, and rspamd's scores
 * as it prints them (8.3, not jansson's default 8.3000000000000007). */
#define SPOOL_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* The envelope as a jansson object (a new reference), NULL on out of memory. */
static json_t *spool_envelope_obj(const struct spool_envelope *env)
{
	json_t *o = json_object();
	json_t *rcpt = json_array();
	json_t *tls = json_null(), *proxy = json_null();
	/* SPEC 8: always there, null without a verdict. */
	json_t *verdict = env->verdict_json ? json_loads(env->verdict_json, 0, NULL) : json_null();
	bool ok =
	    o != NULL && rcpt != NULL && (env->verdict_json == NULL || json_is_object(verdict));
	for (size_t i = 0; ok && i < env->nrcpt; i++)
		ok = json_array_append_new(rcpt, spool_json_str(env->rcpt[i])) == 0;
	if (ok && env->tls_version != NULL) {
		tls = json_object();
		ok = tls != NULL &&
		     json_object_set_new(tls, "version", spool_json_str(env->tls_version)) == 0 &&
		     json_object_set_new(tls, "cipher",
		                         env->tls_cipher ? spool_json_str(env->tls_cipher)
		                                         : json_null()) == 0;
	}
	if (ok && env->proxy_src_addr != NULL) {
		proxy = json_object();
		ok = proxy != NULL &&
		     json_object_set_new(
		         proxy, "source",
		         spool_json_endpoint(env->proxy_src_addr, env->proxy_src_port)) == 0 &&
		     json_object_set_new(
		         proxy, "destination",
		         spool_json_endpoint(env->proxy_dst_addr, env->proxy_dst_port)) == 0;
	}
	char when[64];
	spool_rfc3339(&env->received_at, when, sizeof when);
	/* Key order is the SPEC's; jansson keeps insertion order. */
	ok = ok && json_object_set_new(o, "id", spool_json_str(env->id)) == 0 &&
	     json_object_set_new(o, "mail_from", spool_json_str(env->mail_from)) == 0 &&
	     json_object_set(o, "rcpt_to", rcpt) == 0 &&
	     json_object_set_new(o, "client",
	                         spool_json_endpoint(env->client_addr, env->client_port)) == 0 &&
	     json_object_set_new(o, "helo", spool_json_str(env->helo)) == 0 &&
	     json_object_set_new(o, "local",
	                         spool_json_endpoint(env->local_addr, env->local_port)) == 0 &&
	     json_object_set_new(o, "auth_user",
	                         env->auth_user ? spool_json_str(env->auth_user) : json_null()) ==
	         0 &&
	     json_object_set(o, "tls", tls) == 0 && json_object_set(o, "proxy", proxy) == 0 &&
	     json_object_set_new(o, "size", json_integer((json_int_t)env->size)) == 0 &&
	     json_object_set_new(o, "received_at", json_string(when)) == 0 &&
	     json_object_set(o, "verdict", verdict) == 0;
	/* RFC 4954 5: the AUTH= mailbox an authenticated client gave on MAIL;
	 * the key is only there when it did. */
	if (ok && env->auth_param != NULL && env->auth_param[0] != '\0')
		ok = json_object_set_new(o, "auth_param", spool_json_str(env->auth_param)) == 0;
	json_decref(rcpt);
	json_decref(tls);
	json_decref(proxy);
	json_decref(verdict);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *spool_envelope_json(const struct spool_envelope *env)
{
	json_t *o = spool_envelope_obj(env);
	char *out = o ? json_dumps(o, SPOOL_JSON_FLAGS) : NULL;
	json_decref(o);
	return out;
}

/* ---- the message file ------------------------------------------------------------ */

/* Header values come from the peer; a CR or LF in them would let it add
 * headers of its choosing, so every control byte becomes '?'. 8-bit bytes are
 * kept (RFC 6531 allows UTF-8 here). */
static int spool_hdr_text(struct buf *b, const char *p)
{
	for (p = spool_str(p); *p; p++) {
		unsigned char c = (unsigned char)*p;
		char out = c < 0x20 || c == 0x7f ? '?' : (char)c;
		int rc = buf_append(b, &out, 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* RFC 5321 4.1.3 address literal: "[203.0.113.7]" or "[IPv6:2001:db8::1]". */
static int spool_hdr_literal(struct buf *b, const char *addr)
{
	int rc = buf_printf(b, "%s", strchr(spool_str(addr), ':') ? "[IPv6:" : "[");
	if (rc == 0)
		rc = spool_hdr_text(b, addr);
	if (rc == 0)
		rc = buf_append(b, "]", 1);
	return rc;
}

/* Return-Path and the RFC 5321 4.4 trace header, folded with LF and a tab:
 *   Received: from helo ([203.0.113.7])
 *   	by mx.example (mailport) with ESMTPS id <id>
 *   	for <b@y>; Fri, 27 Nov 2026 08:40:58 +0000
 * TCP-info is the address literal alone, which RFC 5321 allows: we look up no
 * reverse name, and an IPv6 address is not a Domain. "for" names the recipient
 * only when there is exactly one, so a Bcc list does not leak into every copy.
 * The protocol keyword follows RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA). */
static int spool_headers(struct buf *b, const struct spool *s, const struct spool_envelope *env)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	char proto[8] = "SMTP";
	if (env->esmtp)
		snprintf(proto, sizeof proto, "ESMTP%s%s", env->tls_version ? "S" : "",
		         env->auth_user ? "A" : "");
	struct tm tm;
	time_t t = env->received_at.tv_sec;
	gmtime_r(&t, &tm);

	int rc = buf_append(b, "Return-Path: <", 14);
	if (rc == 0)
		rc = spool_hdr_text(b, env->mail_from);
	if (rc == 0)
		rc = buf_append(b, ">\nReceived: from ", 17);
	if (rc == 0)
		rc = env->helo && env->helo[0] ? spool_hdr_text(b, env->helo)
		                               : spool_hdr_literal(b, env->client_addr);
	if (rc == 0)
		rc = buf_append(b, " (", 2);
	if (rc == 0)
		rc = spool_hdr_literal(b, env->client_addr);
	if (rc == 0)
		rc = buf_append(b, ")\n\tby ", 6);
	if (rc == 0)
		rc = spool_hdr_text(b, env->hostname ? env->hostname : s ? s->hostname : "");
	if (rc == 0)
		rc = buf_printf(b, " (mailport) with %s id ", proto);
	if (rc == 0)
		rc = spool_hdr_text(b, env->id);
	if (rc == 0 && env->nrcpt == 1) {
		rc = buf_append(b, "\n\tfor <", 7);
		if (rc == 0)
			rc = spool_hdr_text(b, env->rcpt[0]);
		if (rc == 0)
			rc = buf_append(b, ">; ", 3);
	} else if (rc == 0) {
		rc = buf_append(b, ";\n\t", 3);
	}
	if (rc == 0)
		rc = buf_printf(b, "%s, %02d %s %04d %02d:%02d:%02d +0000\n", days[tm.tm_wday],
		                tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		                tm.tm_min, tm.tm_sec);
	return rc;
}

/* Write all of iov[0..n), through short writes and EINTR. */
static int spool_writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		ssize_t w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		size_t left = (size_t)w;
		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

int spool_write_file(int dir_fd, const char *name, struct iovec *iov, int n, const char **op)
{
	const char *what = "create of";
	int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, SPOOL_FILE_MODE);
	int rc = fd < 0 ? -errno : 0;
	if (rc == 0) {
		what = "write of";
		rc = spool_writev_all(fd, iov, n);
	}
	if (rc == 0) {
		what = "fsync of";
		if (fsync(fd) < 0)
			rc = -errno;
	}
	/* NFS reports some write errors only at close. */
	if (fd >= 0 && close(fd) < 0 && rc == 0 && errno != EINTR) {
		what = "close of";
		rc = -errno;
	}
	if (rc < 0 && fd >= 0)
		unlinkat(dir_fd, name, 0);
	if (op)
		*op = what;
	return rc;
}

bool spool_id_ok(const char *id)
{
	return id != NULL && id[0] != '\0' && id[0] != '.' && strchr(id, '/') == NULL &&
	       strlen(id) < SPOOL_ID_MAX;
}

int spool_trace_headers(const struct spool *s, const struct spool_envelope *env, struct buf *out)
{
	return spool_headers(out, s, env);
}

/* The meta/ file of a new message: the envelope, plus a "delivery" object
 * when one is given (a message stored already delivered, SMTPD_WEBHOOK_SYNC),
 * and the newline the file ends with. */
char *spool_meta_file(const struct spool_envelope *env, const char *delivery, size_t *len)
{
	char *json = NULL;
	if (delivery == NULL) {
		json = spool_envelope_json(env);
	} else {
		json_t *o = spool_envelope_obj(env);
		json_t *d = json_loads(delivery, 0, NULL);
		if (o != NULL && d != NULL && json_object_set(o, "delivery", d) == 0)
			json = json_dumps(o, SPOOL_JSON_FLAGS);
		json_decref(d);
		json_decref(o);
	}
	if (json == NULL)
		return NULL;
	size_t n = strlen(json);
	char *out = realloc(json, n + 2);
	if (out == NULL) {
		free(json);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	*len = n + 1;
	return out;
}

int spool_store(struct spool *s, const struct spool_envelope *env, const char *body, size_t len)
{
	return spool_store_ex(s, env, body, len, NULL);
}

/* The blocking store (tests, tools): one message as a batch of its own. The
 * service streams through spool_writer.h and batches through spool_commit.h. */
int spool_store_ex(struct spool *s, const struct spool_envelope *env, const char *body, size_t len,
                   const struct spool_store_opts *opts)
{
	if (!spool_id_ok(env->id))
		return -EINVAL;
	struct buf hdr;
	buf_init(&hdr, 0);
	size_t meta_len = 0;
	char *meta = NULL;
	int rc = spool_headers(&hdr, s, env);
	if (rc == 0 &&
	    (meta = spool_meta_file(env, opts ? opts->delivery_json : NULL, &meta_len)) == NULL)
		rc = -ENOMEM;
	if (rc == 0) {
		struct iovec iov[2] = {{hdr.data, hdr.len}, {(void *)body, len}};
		struct journal_entry e = {
		    .id = env->id,
		    .to_cur = opts && opts->to_cur,
		    .meta = meta,
		    .meta_len = meta_len,
		    .fd = -1,
		    .iov = iov,
		    .iovcnt = 2,
		    .len = hdr.len + len,
		};
		struct journal_entry *pe = &e;
		journal_commit(s->journal, &pe, 1);
		rc = e.rc;
	}
	free(meta);
	buf_free(&hdr);
	return rc;
}

/* ---- open/close ---------------------------------------------------------------------- */

/* The index of the messages API, filled by one scan of new/, cur/ and failed/
 * (in the order messages move, so a message moved by another process during
 * the scan is kept in its later state). This is the only time the spool lists
 * its message directories for the API: a large spool takes a while here,
 * never per request. */
static int spool_index_load(struct spool *s, char *err, size_t errlen)
{
	s->index = spool_index_new();
	int rc = s->index ? 0 : -ENOMEM;
	for (int st = 0; rc == 0 && st < SPOOL_STATES; st++) {
		struct spool_names names = {0};
		rc = spool_list(s, spool_state_dirs[st], false, &names);
		if (rc == 0)
			rc =
			    spool_index_add_batch(s->index, names.v, names.n, (enum spool_state)st);
		spool_names_free(&names);
		if (rc < 0)
			spool_err(err, errlen, "SMTPD_SPOOL: cannot list %s/%s: %s", s->dir,
			          spool_state_dirs[st], strerror(-rc));
	}
	return rc;
}

int spool_open(const char *dir, const char *hostname, struct spool **out, char *err, size_t errlen)
{
	*out = NULL;
	if (dir == NULL || dir[0] == '\0') {
		spool_err(err, errlen, "SMTPD_SPOOL: empty path");
		return -EINVAL;
	}
	struct spool *s = calloc(1, sizeof *s);
	if (s == NULL || (s->dir = strdup(dir)) == NULL ||
	    (s->hostname = strdup(spool_str(hostname))) == NULL) {
		if (s)
			free(s->dir);
		free(s);
		spool_err(err, errlen, "SMTPD_SPOOL: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	s->dir_fd = s->tmp_fd = s->new_fd = s->meta_fd = -1;
	atomic_init(&s->counter, 0);
	for (size_t n = strlen(s->dir); n > 1 && s->dir[n - 1] == '/'; n--)
		s->dir[n - 1] = '\0';
	/* Maildir names always carry a host part. */
	spool_escape_host(s->hostname[0] ? s->hostname : "localhost", s->host, sizeof s->host);

	int rc = spool_mkdirs(s->dir, err, errlen);
	if (rc < 0)
		goto fail;
	s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dir_fd < 0) {
		rc = -errno;
		spool_err(err, errlen, "SMTPD_SPOOL: cannot open %s: %s", s->dir, strerror(-rc));
		goto fail;
	}
	if ((rc = spool_subdir(s, "tmp", true, &s->tmp_fd, err, errlen)) < 0)
		goto fail;
	/* The probe before the other directories' checks, so that a read-only
	 * volume is reported as such, for the spool as a whole. */
	if ((rc = spool_probe(s)) < 0) {
		spool_err(err, errlen, "SMTPD_SPOOL: %s is not writable: %s", s->dir,
		          strerror(-rc));
		goto fail;
	}
	if ((rc = spool_subdir(s, "new", true, &s->new_fd, err, errlen)) < 0 ||
	    (rc = spool_subdir(s, "cur", false, NULL, err, errlen)) < 0 ||
	    (rc = spool_subdir(s, "meta", true, &s->meta_fd, err, errlen)) < 0)
		goto fail;
	/* The index first: the journal's replay asks it where messages are and
	 * adds what it moves into new/. Then what a crash left: tmp/ before
	 * meta/, since a message it drops may leave an envelope the next step sees. */
	if ((rc = spool_index_load(s, err, errlen)) < 0 ||
	    (rc = journal_open(s, s->dir_fd, &s->journal, err, errlen)) < 0)
		goto fail;
	spool_clean_tmp(s);
	spool_clean_meta(s);
	*out = s;
	return 0;
fail:
	spool_close(s);
	return rc;
}

void spool_crash(struct spool *s)
{
	if (s == NULL)
		return;
	journal_abandon(s->journal);
	s->journal = NULL;
	spool_close(s);
}

void spool_close(struct spool *s)
{
	if (s == NULL)
		return;
	journal_close(s->journal);
	int fds[] = {s->dir_fd, s->tmp_fd, s->new_fd, s->meta_fd};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	spool_index_free(s->index);
	free(s->dir);
	free(s->hostname);
	free(s);
}

void spool_sync_stats(struct spool *s, uint64_t *messages, uint64_t *syncs, uint64_t *failures)
{
	struct journal_stats st;
	journal_get_stats(s->journal, &st);
	*messages = st.messages;
	*syncs = st.syncs;
	*failures = st.sync_failures;
}

struct journal *spool_journal(struct spool *s)
{
	return s->journal;
}

int spool_tmp_fd(const struct spool *s)
{
	return s->tmp_fd;
}

const char *spool_host(const struct spool *s)
{
	return s->host;
}

const char *spool_dir(const struct spool *s)
{
	return s->dir;
}

struct spool_index *spool_get_index(struct spool *s)
{
	return s->index;
}

void spool_open_cleaned(const struct spool *s, size_t *tmp_removed, size_t *meta_removed)
{
	if (tmp_removed)
		*tmp_removed = s->tmp_removed;
	if (meta_removed)
		*meta_removed = s->meta_removed;
}
