/* reaper: collect the orphans a container's PID 1 inherits (issue 7).
 *
 * In a container mailport is PID 1 (the image's ENTRYPOINT, no init in front), so
 * every orphaned process of the container becomes its child: typically what a
 * SMTPD_FILTER command started in the background and did not wait for. Such a
 * child stays a zombie (a process table slot, forever) until its parent waits
 * for it. libuv never does: it waits only for the processes it spawned itself,
 * with waitpid(pid) for each uv_process_t on its own SIGCHLD watcher. And a plain
 * waitpid(-1) would be wrong: it could collect a filter that libuv is about to
 * collect, whose exit callback would then never run (libuv sees ECHILD and
 * moves on), so the message would wait for SMTPD_FILTER_TIMEOUT.
 *
 * So the reaper looks before it takes: waitid(P_ALL, WNOWAIT) shows one exited
 * child without collecting it; a child that is the pid of one of the loop's
 * uv_process_t handles is left to libuv, any other is collected. It runs on
 * SIGCHLD (next to libuv's watcher: libuv allows several per signal) and on a
 * slow timer, because waitid shows only one child at a time and that one may be
 * libuv's, hiding an orphan behind it until libuv has collected it. It only runs
 * when mailport is PID 1: anywhere else orphans go to the real init and
 * mailport's only children are libuv's. */
#ifndef MAILPORT_REAPER_H
#define MAILPORT_REAPER_H

#include <stdint.h>
#include <uv.h>

/* How often the reaper looks when no SIGCHLD came. */
#define REAPER_INTERVAL_MS 1000

/* Start reaping on loop when getpid() == 1 (else do nothing). Returns 0 or a
 * negative libuv error. One reaper per process. */
int reaper_start(uv_loop_t *loop);
/* Close the reaper's handles (before the loop ends). Safe when not started. */
void reaper_stop(void);
/* Orphans collected so far. */
uint64_t reaper_count(void);

#endif
