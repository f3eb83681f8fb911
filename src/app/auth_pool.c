/* auth_pool: password checks on threads of their own (see auth_pool.h). */
#include "auth_pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

enum auth_pool_state {
	AUTH_POOL_IDLE,    /* not submitted, or taken back */
	AUTH_POOL_WAITING, /* in the loop's queue */
	AUTH_POOL_RUNNING, /* handed to a worker, not yet reported */
};

struct auth_pool_worker {
	struct auth_pool *pool;
	pthread_t thread;
	/* Posted by the loop after it set job: a job to run; posted with no job
	 * set, stop. The semaphore orders the write before the worker's take. */
	sem_t go;
	_Atomic(struct auth_pool_job *) job;
	bool busy; /* loop thread only: handed a job not yet reported */
};

struct auth_pool {
	uv_loop_t *loop;
	/* Finished jobs, pushed by the workers (a Treiber stack, linked through
	 * next), taken whole by the loop. */
	_Atomic(struct auth_pool_job *) done;
	int efd; /* written by a worker after each push */
	/* Loop thread only from here. */
	uv_poll_t *poll;                   /* watches efd while a job is outstanding */
	struct auth_pool_job *head, *tail; /* waiting, oldest first */
	unsigned outstanding;              /* submitted, done not yet called */
	unsigned queue_max;
	unsigned nthreads;
	bool stopping;
	struct auth_pool_worker *workers;
};

/* ------------------------------------------------------------- workers */

static void *auth_pool_main(void *arg)
{
	struct auth_pool_worker *w = arg;
	struct auth_pool *p = w->pool;
	/* SCHED_IDLE (Linux, per thread, no privilege needed): a check runs on
	 * CPU time nobody else wants, and a waking loop or fsync thread
	 * preempts it at once. A raised nice value alone is not enough: the
	 * scheduler lets a running low-priority thread finish its slice first,
	 * milliseconds added to every 250 under a storm (bench/auth_storm.py).
	 * If the policy is refused, fall back to the lowest nice. */
	struct sched_param sp = {.sched_priority = 0};
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), AUTH_POOL_NICE);
	/* So that `top -H` and /proc/<pid>/task/<tid>/comm tell them apart. */
	(void)pthread_setname_np(pthread_self(), "mailport-auth");
	for (;;) {
		while (sem_wait(&w->go) != 0)
			assert(errno == EINTR);
		struct auth_pool_job *j =
		    atomic_exchange_explicit(&w->job, NULL, memory_order_relaxed);
		if (j == NULL)
			return NULL;
		j->work(j);
		struct auth_pool_job *top = atomic_load_explicit(&p->done, memory_order_relaxed);
		do
			j->next = top;
		while (!atomic_compare_exchange_weak_explicit(
		    &p->done, &top, j, memory_order_release, memory_order_relaxed));
		/* After the push: the loop reads efd before it takes the stack, so
		 * a job pushed after the take is always followed by a wakeup. The
		 * counter cannot overflow (one per job); EINTR aside, a failed
		 * write cannot happen. */
		uint64_t one = 1;
		while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
			;
	}
}

/* -------------------------------------------------------- the loop side */

static void auth_pool_on_poll(uv_poll_t *h, int status, int events);

static void auth_pool_on_poll_closed(uv_handle_t *h)
{
	free(h);
}

/* One job more outstanding: the first one opens the poll handle. */
static int auth_pool_hold(struct auth_pool *p)
{
	if (p->outstanding == 0) {
		uv_poll_t *h = malloc(sizeof *h);
		if (h == NULL)
			return -ENOMEM;
		int rc = uv_poll_init(p->loop, h, p->efd);
		if (rc < 0) {
			free(h);
			return rc;
		}
		h->data = p;
		rc = uv_poll_start(h, UV_READABLE, auth_pool_on_poll);
		if (rc < 0) {
			uv_close((uv_handle_t *)h, auth_pool_on_poll_closed);
			return rc;
		}
		p->poll = h;
	}
	p->outstanding++;
	return 0;
}

/* One job fewer: the last one closes the handle. A worker only ever writes
 * to efd, never touches the handle, so this needs no care; a late write is
 * read by the next handle, or by nobody. */
static void auth_pool_release(struct auth_pool *p)
{
	assert(p->outstanding > 0);
	if (--p->outstanding > 0)
		return;
	uv_close((uv_handle_t *)p->poll, auth_pool_on_poll_closed);
	p->poll = NULL;
}

static void auth_pool_unlink(struct auth_pool *p, struct auth_pool_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		p->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		p->tail = j->prev;
	j->prev = j->next = NULL;
}

/* Hand waiting jobs, oldest first, to idle workers. */
static void auth_pool_dispatch(struct auth_pool *p)
{
	for (unsigned i = 0; i < p->nthreads && p->head != NULL && !p->stopping; i++) {
		struct auth_pool_worker *w = &p->workers[i];
		if (w->busy)
			continue;
		struct auth_pool_job *j = p->head;
		auth_pool_unlink(p, j);
		j->state = AUTH_POOL_RUNNING;
		j->worker = w;
		w->busy = true;
		atomic_store_explicit(&w->job, j, memory_order_relaxed);
		sem_post(&w->go);
	}
}

/* Report every finished job, in the order they finished. Their workers are
 * given new jobs first; a done callback may submit or cancel others. */
static void auth_pool_deliver(struct auth_pool *p)
{
	struct auth_pool_job *j = atomic_exchange_explicit(&p->done, NULL, memory_order_acquire);
	struct auth_pool_job *fifo = NULL;
	while (j != NULL) {
		struct auth_pool_job *next = j->next;
		j->next = fifo;
		fifo = j;
		((struct auth_pool_worker *)j->worker)->busy = false;
		j = next;
	}
	auth_pool_dispatch(p);
	while (fifo != NULL) {
		struct auth_pool_job *next = fifo->next;
		fifo->next = NULL;
		fifo->worker = NULL;
		fifo->state = AUTH_POOL_IDLE;
		auth_pool_release(p);
		fifo->done(fifo, true);
		fifo = next;
	}
}

static void auth_pool_on_poll(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	struct auth_pool *p = h->data;
	uint64_t n;
	/* Read first, then take the stack (see auth_pool_main). */
	while (read(p->efd, &n, sizeof n) < 0 && errno == EINTR)
		;
	auth_pool_deliver(p);
}

/* ---------------------------------------------------------------- setup */

/* How many CPUs this process may run on (a container's cpuset included). */
static unsigned auth_pool_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1u;
}

uv_loop_t *auth_pool_loop(const struct auth_pool *p)
{
	return p->loop;
}

unsigned auth_pool_threads(const struct auth_pool *p)
{
	return p->nthreads;
}

/* Stop and join the first `started` workers (each runs the job it was
 * handed, if any, then finds no job behind the last post), then free what
 * new made. */
static void auth_pool_destroy(struct auth_pool *p, unsigned started)
{
	for (unsigned i = 0; i < started; i++)
		sem_post(&p->workers[i].go);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->workers[i].thread, NULL);
	for (unsigned i = 0; i < p->nthreads; i++)
		sem_destroy(&p->workers[i].go);
	close(p->efd);
	free(p->workers);
	free(p);
}

int auth_pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct auth_pool **out)
{
	*out = NULL;
	if (threads == 0) {
		unsigned half = auth_pool_cpus() / 2;
		threads = half < 1 ? 1 : half > AUTH_POOL_THREADS ? AUTH_POOL_THREADS : half;
	}
	struct auth_pool *p = calloc(1, sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	p->workers = calloc(threads, sizeof *p->workers);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->workers == NULL || p->efd < 0) {
		int rc = p->workers == NULL ? -ENOMEM : -errno;
		if (p->efd >= 0)
			close(p->efd);
		free(p->workers);
		free(p);
		return rc;
	}
	p->loop = loop;
	p->nthreads = threads;
	p->queue_max = queue_max ? queue_max : AUTH_POOL_QUEUE;
	atomic_init(&p->done, NULL);
	for (unsigned i = 0; i < threads; i++) {
		p->workers[i].pool = p;
		atomic_init(&p->workers[i].job, NULL);
		(void)sem_init(&p->workers[i].go, 0, 0); /* cannot fail with these values */
	}
	for (unsigned i = 0; i < threads; i++) {
		int rc =
		    -pthread_create(&p->workers[i].thread, NULL, auth_pool_main, &p->workers[i]);
		if (rc < 0) {
			auth_pool_destroy(p, i);
			return rc;
		}
	}
	*out = p;
	return 0;
}

int auth_pool_submit(struct auth_pool *p, struct auth_pool_job *j)
{
	assert(j->state == AUTH_POOL_IDLE && j->work != NULL && j->done != NULL);
	/* The bound counts every job not yet reported, not only those still
	 * waiting, so that it does not depend on how fast workers report. */
	if (p->stopping || p->outstanding >= p->nthreads + p->queue_max)
		return -EAGAIN;
	int rc = auth_pool_hold(p);
	if (rc < 0)
		return rc;
	j->state = AUTH_POOL_WAITING;
	j->next = NULL;
	j->prev = p->tail;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	auth_pool_dispatch(p);
	return 0;
}

bool auth_pool_cancel(struct auth_pool *p, struct auth_pool_job *j)
{
	if (j->state != AUTH_POOL_WAITING)
		return false;
	auth_pool_unlink(p, j);
	j->state = AUTH_POOL_IDLE;
	auth_pool_release(p);
	return true;
}

void auth_pool_free(struct auth_pool *p)
{
	if (p == NULL)
		return;
	p->stopping = true;
	/* Each worker runs the job it was handed, if any (at most one check),
	 * then stops; nothing new is handed out once stopping. */
	for (unsigned i = 0; i < p->nthreads; i++)
		sem_post(&p->workers[i].go);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->workers[i].thread, NULL);
	/* The threads are gone: what finished is reported as usual, then what
	 * never ran, oldest first. */
	auth_pool_deliver(p);
	while (p->head != NULL) {
		struct auth_pool_job *j = p->head;
		auth_pool_unlink(p, j);
		j->state = AUTH_POOL_IDLE;
		auth_pool_release(p);
		j->done(j, false);
	}
	assert(p->outstanding == 0 && p->poll == NULL);
	auth_pool_destroy(p, 0); /* joined above */
}
