/* reaper: collect the orphans a container's PID 1 inherits. See reaper.h. */
#include "reaper.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

static struct {
	bool on;
	uv_signal_t sigchld;
	uv_timer_t timer;
	uint64_t reaped;
} reaper;

struct reaper_find {
	pid_t pid;
	bool found;
};

static void reaper_walk(uv_handle_t *h, void *arg)
{
	struct reaper_find *f = arg;
	if (h->type == UV_PROCESS && ((uv_process_t *)h)->pid == f->pid)
		f->found = true;
}

/* Collect every exited child that is not libuv's, up to the first that is. */
static void reaper_run(uv_loop_t *loop)
{
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			return; /* ECHILD: no children; si_pid 0: none has exited */
		struct reaper_find f = {.pid = si.si_pid};
		uv_walk(loop, reaper_walk, &f);
		if (f.found)
			return; /* libuv's own: its SIGCHLD watcher collects it */
		int status;
		pid_t pid;
		do
			pid = waitpid(si.si_pid, &status, WNOHANG);
		while (pid < 0 && errno == EINTR);
		if (pid <= 0)
			return;
		reaper.reaped++;
		char spid[16], code[16];
		snprintf(spid, sizeof spid, "%d", (int)pid);
		snprintf(code, sizeof code, "%d",
		         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		const char *kv[] = {"pid", spid, "status", code, NULL};
		log_event(CONFIG_LOG_DEBUG, NULL, "reaped an orphaned process", kv);
	}
}

static void reaper_on_sigchld(uv_signal_t *h, int signum)
{
	(void)signum;
	reaper_run(h->loop);
}

static void reaper_on_timer(uv_timer_t *t)
{
	reaper_run(t->loop);
}

int reaper_start(uv_loop_t *loop)
{
	if (reaper.on || getpid() != 1)
		return 0;
	int rc = uv_signal_init(loop, &reaper.sigchld);
	if (rc < 0)
		return rc;
	rc = uv_signal_start(&reaper.sigchld, reaper_on_sigchld, SIGCHLD);
	if (rc < 0) {
		uv_close((uv_handle_t *)&reaper.sigchld, NULL);
		return rc;
	}
	uv_timer_init(loop, &reaper.timer);
	uv_timer_start(&reaper.timer, reaper_on_timer, REAPER_INTERVAL_MS, REAPER_INTERVAL_MS);
	/* Neither keeps the loop alive: the service's own handles decide that. */
	uv_unref((uv_handle_t *)&reaper.sigchld);
	uv_unref((uv_handle_t *)&reaper.timer);
	reaper.on = true;
	log_debug("PID 1: orphaned processes are reaped");
	return 0;
}

void reaper_stop(void)
{
	if (!reaper.on)
		return;
	reaper.on = false;
	uv_close((uv_handle_t *)&reaper.sigchld, NULL);
	uv_close((uv_handle_t *)&reaper.timer, NULL);
}

uint64_t reaper_count(void)
{
	return reaper.reaped;
}
