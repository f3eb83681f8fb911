/* fsync_batch: what group commit would buy mailport's Maildir spool, measured
 * without mailport, on the filesystem given (issue 8, target 2).
 *
 *   cc -O2 -pthread -o bench/fsync_batch bench/fsync_batch.c
 *   fsync_batch DIR [MESSAGES]
 *
 * It stores MESSAGES messages the way spool_store() does (src/spool.c: the
 * message in tmp/ with fsync, the envelope through a temporary name with fsync,
 * rename into meta/, fsync meta/, rename tmp/ -> new/, fsync new/), in three
 * ways, and prints messages per second and the process's CPU time per message:
 *
 *   per-message T   T threads each storing one message at a time with its own
 *                   four fsyncs: today's code on a libuv pool of T threads
 *                   (UV_THREADPOOL_SIZE, default 4).
 *   group B/K       batches of B messages (what B concurrent sessions would have
 *                   waiting): write all 2B files, fsync them on K threads, rename
 *                   the envelopes, ONE fsync of meta/, rename the messages into
 *                   new/, ONE fsync of new/; then all B may be answered 250.
 *                   The same order and the same guarantee per message as today.
 *   syncfs B        like group B but one syncfs() instead of the 2B file fsyncs
 *                   (flushes the whole filesystem: only for a spool volume of
 *                   its own).
 *
 * Every loop is bounded by MESSAGES; each configuration uses a fresh
 * subdirectory, removed afterwards. Exit 0 after printing, 1 on a setup error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

static char body[1400];
static char meta[620];

struct spool {
	int dir, tmp, new_, meta;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int write_file(int dirfd, const char *name, const char *data, size_t len, bool sync)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (write(fd, data, len) != (ssize_t)len)
		die("write");
	if (sync) {
		if (fsync(fd) < 0)
			die("fsync");
		close(fd);
		return -2; /* closed */
	}
	return fd;
}

static void spool_open(const char *base, const char *name, struct spool *s)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", base, name);
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		die(path);
	s->dir = open(path, O_RDONLY | O_DIRECTORY);
	if (s->dir < 0)
		die(path);
	const char *subs[] = {"tmp", "new", "meta"};
	int *fds[] = {&s->tmp, &s->new_, &s->meta};
	for (int i = 0; i < 3; i++) {
		mkdirat(s->dir, subs[i], 0750);
		*fds[i] = openat(s->dir, subs[i], O_RDONLY | O_DIRECTORY);
		if (*fds[i] < 0)
			die(subs[i]);
	}
}

static void rm_rf_dir(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (e->d_type == DT_DIR)
			rm_rf_dir(fd, e->d_name);
		else
			unlinkat(fd, e->d_name, 0);
	}
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

static void spool_close(const char *base, const char *name, struct spool *s)
{
	close(s->tmp);
	close(s->new_);
	close(s->meta);
	close(s->dir);
	int b = open(base, O_RDONLY | O_DIRECTORY);
	rm_rf_dir(b, name);
	close(b);
}

/* ---------------------------------------------------------------- per message */

struct pm_arg {
	struct spool *s;
	atomic_int *next;
	int total;
};

static void *pm_worker(void *p)
{
	struct pm_arg *a = p;
	char id[64], mt[80], mf[80];
	for (;;) {
		int i = atomic_fetch_add(a->next, 1);
		if (i >= a->total)
			break;
		snprintf(id, sizeof id, "m%d", i);
		snprintf(mt, sizeof mt, ".%s.json.tmp", id);
		snprintf(mf, sizeof mf, "%s.json", id);
		write_file(a->s->tmp, id, body, sizeof body, true);
		write_file(a->s->meta, mt, meta, sizeof meta, true);
		if (renameat(a->s->meta, mt, a->s->meta, mf) < 0)
			die("rename meta");
		if (fsync(a->s->meta) < 0)
			die("fsync meta/");
		if (renameat(a->s->tmp, id, a->s->new_, id) < 0)
			die("rename new");
		if (fsync(a->s->new_) < 0)
			die("fsync new/");
	}
	return NULL;
}

static void run_per_message(const char *base, int threads, int total)
{
	struct spool s;
	spool_open(base, "pm", &s);
	atomic_int next = 0;
	struct pm_arg a = {&s, &next, total};
	pthread_t th[256];
	double t0 = now(), c0 = cpu();
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, pm_worker, &a);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	double dt = now() - t0, dc = cpu() - c0;
	printf("  per-message T=%-3d %8.0f msg/s %8.1f us CPU/msg  %5.2f fsyncs/msg\n", threads,
	       total / dt, dc * 1e6 / total, 4.0);
	fflush(stdout);
	spool_close(base, "pm", &s);
}

/* ---------------------------------------------------------------- group commit */

struct fs_arg {
	int *fds;
	atomic_int *next;
	int n;
};

static void *fs_worker(void *p)
{
	struct fs_arg *a = p;
	for (;;) {
		int i = atomic_fetch_add(a->next, 1);
		if (i >= a->n)
			break;
		if (fsync(a->fds[i]) < 0)
			die("fsync");
	}
	return NULL;
}

static void run_group(const char *base, int batch, int k, bool use_syncfs, int total)
{
	struct spool s;
	spool_open(base, "gc", &s);
	int *fds = malloc(sizeof(int) * 2 * (size_t)batch);
	char id[64], mt[80], mf[80];
	double t0 = now(), c0 = cpu();
	long fsyncs = 0;
	for (int done = 0; done < total; done += batch) {
		int b = total - done < batch ? total - done : batch;
		for (int j = 0; j < b; j++) {
			snprintf(id, sizeof id, "m%d", done + j);
			snprintf(mt, sizeof mt, ".%s.json.tmp", id);
			fds[2 * j] = write_file(s.tmp, id, body, sizeof body, false);
			fds[2 * j + 1] = write_file(s.meta, mt, meta, sizeof meta, false);
			if (fds[2 * j] < 0 || fds[2 * j + 1] < 0)
				die("create");
		}
		if (use_syncfs) {
			if (syncfs(s.dir) < 0)
				die("syncfs");
			fsyncs++;
		} else if (k <= 1) {
			for (int j = 0; j < 2 * b; j++)
				if (fsync(fds[j]) < 0)
					die("fsync");
			fsyncs += 2 * b;
		} else {
			atomic_int next = 0;
			struct fs_arg a = {fds, &next, 2 * b};
			pthread_t th[64];
			for (int i = 0; i < k; i++)
				pthread_create(&th[i], NULL, fs_worker, &a);
			for (int i = 0; i < k; i++)
				pthread_join(th[i], NULL);
			fsyncs += 2 * b;
		}
		for (int j = 0; j < 2 * b; j++)
			close(fds[j]);
		for (int j = 0; j < b; j++) {
			snprintf(id, sizeof id, "m%d", done + j);
			snprintf(mt, sizeof mt, ".%s.json.tmp", id);
			snprintf(mf, sizeof mf, "%s.json", id);
			if (renameat(s.meta, mt, s.meta, mf) < 0)
				die("rename meta");
		}
		if (fsync(s.meta) < 0)
			die("fsync meta/");
		for (int j = 0; j < b; j++) {
			snprintf(id, sizeof id, "m%d", done + j);
			if (renameat(s.tmp, id, s.new_, id) < 0)
				die("rename new");
		}
		if (fsync(s.new_) < 0)
			die("fsync new/");
		fsyncs += 2;
	}
	double dt = now() - t0, dc = cpu() - c0;
	if (use_syncfs)
		printf("  syncfs B=%-4d      %8.0f msg/s %8.1f us CPU/msg  %5.2f syncs/msg\n",
		       batch, total / dt, dc * 1e6 / total, (double)fsyncs / total);
	else
		printf("  group B=%-4d K=%-3d %8.0f msg/s %8.1f us CPU/msg  %5.2f fsyncs/msg\n",
		       batch, k, total / dt, dc * 1e6 / total, (double)fsyncs / total);
	fflush(stdout);
	free(fds);
	spool_close(base, "gc", &s);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fsync_batch DIR [MESSAGES]\n");
		return 1;
	}
	const char *base = argv[1];
	int total = argc > 2 ? atoi(argv[2]) : 2000;
	if (total <= 0 || total > 1000000)
		return 1;
	memset(body, 'x', sizeof body);
	memset(meta, 'm', sizeof meta);
	if (mkdir(base, 0750) < 0 && errno != EEXIST)
		die(base);
	printf("%s, %d messages each:\n", base, total);
	int pm[] = {1, 4, 16, 64};
	for (size_t i = 0; i < sizeof pm / sizeof *pm; i++)
		run_per_message(base, pm[i], total);
	int bs[] = {1, 10, 100};
	for (size_t i = 0; i < sizeof bs / sizeof *bs; i++)
		run_group(base, bs[i], 1, false, total);
	for (size_t i = 0; i < sizeof bs / sizeof *bs; i++)
		run_group(base, bs[i], 16, false, total);
	for (size_t i = 0; i < sizeof bs / sizeof *bs; i++)
		run_group(base, bs[i], 0, true, total);
	return 0;
}
