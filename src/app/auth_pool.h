/* auth_pool: a small bounded worker pool of its own for password checks (issue 12).
 *
 * crypt(3) is slow by design: tens of milliseconds of CPU per check. On
 * libuv's shared thread pool, which also runs every store's fsync, a few
 * dozen clients guessing passwords would delay everyone's 250. So checks run
 * here instead: a few threads (half the CPUs this process may use, 1 to
 * AUTH_POOL_THREADS), under SCHED_IDLE so that the loop and the storage
 * threads always get the CPU first, behind a queue with a fixed bound. When
 * the bound is reached a job is refused at once (-EAGAIN) rather than queued
 * without limit: the caller answers 454 4.7.0 and the client tries later.
 *
 * The loop never waits for a worker, since a worker at idle priority may
 * wait long for a CPU: there is no lock between them. The loop keeps the
 * queue itself and hands a job to an idle worker through that worker's own
 * semaphore; a finished job goes onto a lock-free stack and the worker writes
 * to an eventfd that the loop watches with a uv_poll_t. (A uv_async_t would
 * do that too, but uv_async_send() marks the handle busy around its write and
 * the loop spins, yielding, while it is busy: a worker preempted there, which
 * is likely since its own write wakes the loop, would stall the loop for as
 * long as the scheduler keeps it off the CPU.) The poll handle is open only
 * while a job is outstanding: it holds the loop open exactly as long as a
 * uv_work_t would, and a loop that ran dry holds nothing of the pool's. The
 * threads live until auth_pool_free(). Everything but work() runs on the
 * loop thread. */
#ifndef MAILPORT_AUTH_POOL_H
#define MAILPORT_AUTH_POOL_H

#include <stdbool.h>
#include <uv.h>

/* Most worker threads by default; the default is half the CPUs, at least
 * one. A check is CPU-bound: with threads on every CPU, even idle-priority
 * ones, the p99 of end-of-data-to-250 under an AUTH storm on 2 vCPUs was 2 to
 * 12 times the quiet one, with one thread 1.1 to 2.5 times (bench/RESULTS.md
 * section 8): a loop that wakes on a CPU busy with a check pays for it. */
#define AUTH_POOL_THREADS 2u
/* Default bound on jobs waiting for a thread, beyond one running on each. At
 * ~30 ms a check that is about a second of waiting per thread, no more than
 * the delay a failed AUTH already costs its client (SPEC 6). */
#define AUTH_POOL_QUEUE 32u
/* The workers run under SCHED_IDLE: CPU the loop and the fsync threads want
 * goes to them first, and checks use what is left (all of it on an idle
 * machine; little on one saturated by mail, when AUTH answers slowly or 454).
 * Where that policy is refused, this nice value instead. */
#define AUTH_POOL_NICE 19

struct auth_pool;

/* A job: the caller embeds it, sets work and done, and owns its memory. */
struct auth_pool_job {
	/* On a worker thread. */
	void (*work)(struct auth_pool_job *j);
	/* On the loop thread, exactly once per submitted job that was not
	 * cancelled; ran is false when the pool stopped before the job ran. */
	void (*done)(struct auth_pool_job *j, bool ran);
	/* Private to the pool. */
	struct auth_pool_job *prev, *next;
	void *worker;
	int state;
};

/* Start threads workers (0: half the CPUs this process may run on, 1 to
 * AUTH_POOL_THREADS) with at most queue_max jobs waiting beyond one per
 * thread (0: AUTH_POOL_QUEUE). Returns 0 with *out, or a negative errno with
 * nothing started. */
int auth_pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct auth_pool **out);
uv_loop_t *auth_pool_loop(const struct auth_pool *p);
unsigned auth_pool_threads(const struct auth_pool *p);

/* Queue j. Returns 0, or -EAGAIN when threads + queue_max jobs are already
 * outstanding (submitted, done not yet called) or the pool is stopping, or
 * another negative errno; done is then never called. */
int auth_pool_submit(struct auth_pool *p, struct auth_pool_job *j);

/* Take back a job that has not started: returns true and done will not be
 * called. Returns false when it is running or finished: done still comes. */
bool auth_pool_cancel(struct auth_pool *p, struct auth_pool_job *j);

/* Stop: running jobs finish, the threads are joined (a wait of at most one
 * check), then every job not yet reported gets its done, those that never
 * ran with ran == false, and the pool is freed. If a job was outstanding, its
 * async handle is closing: run the loop once more before uv_loop_close().
 * free(NULL) is a no-op. Loop thread, not from within a done callback. */
void auth_pool_free(struct auth_pool *p);

#endif
