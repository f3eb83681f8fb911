/* filter: SMTPD_FILTER through uv_spawn (SPEC 5). See filter.h. */
#include "filter.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "log.h"

/* ---- the environment -------------------------------------------------------- */

struct filter_env {
	char **v;
	size_t n, cap;
	int err;
};

static void filter_env_push(struct filter_env *e, char *entry)
{
	if (entry == NULL) {
		e->err = -ENOMEM;
		return;
	}
	if (e->err) {
		free(entry);
		return;
	}
	if (e->n + 2 > e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 64;
		char **nv = realloc(e->v, ncap * sizeof *nv);
		if (nv == NULL) {
			free(entry);
			e->err = -ENOMEM;
			return;
		}
		e->v = nv;
		e->cap = ncap;
	}
	e->v[e->n++] = entry;
	e->v[e->n] = NULL;
}

/* "NAME=value" with control characters of the value made '?': a peer chose
 * most of these values, and a newline in an environment variable is an
 * invitation to misparse it in a shell script. */
static char *filter_env_entry(const char *name, const char *value)
{
	if (value == NULL)
		value = "";
	size_t nl = strlen(name), vl = strlen(value);
	char *s = malloc(nl + 1 + vl + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, name, nl);
	s[nl] = '=';
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		s[nl + 1 + i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	s[nl + 1 + vl] = '\0';
	return s;
}

static char *filter_env_number(const char *name, uint64_t v)
{
	char num[24];
	snprintf(num, sizeof num, "%llu", (unsigned long long)v);
	return filter_env_entry(name, num);
}

char **filter_env_build(const struct spool_envelope *env, char *const *parent_env)
{
	struct filter_env e = {0};
	for (size_t i = 0; parent_env && parent_env[i]; i++) {
		if (strncmp(parent_env[i], "SMTPD_", 6) == 0)
			continue;
		filter_env_push(&e, strdup(parent_env[i]));
	}
	struct buf rcpt;
	buf_init(&rcpt, 0);
	for (size_t i = 0; i < env->nrcpt; i++) {
		if ((i > 0 && buf_append(&rcpt, ",", 1) < 0) ||
		    buf_append(&rcpt, env->rcpt[i], strlen(env->rcpt[i])) < 0)
			e.err = -ENOMEM;
	}
	if (buf_append(&rcpt, "", 1) < 0)
		e.err = -ENOMEM;
	filter_env_push(&e, filter_env_entry("SMTPD_MAIL_FROM", env->mail_from));
	filter_env_push(&e, filter_env_entry("SMTPD_RCPT_TO", rcpt.data ? rcpt.data : ""));
	/* The comma list is ambiguous when a quoted local part holds a comma;
	 * the JSON array never is (SPEC 5). */
	json_t *arr = json_array();
	for (size_t i = 0; arr != NULL && i < env->nrcpt; i++)
		if (json_array_append_new(arr, json_stringn(env->rcpt[i], strlen(env->rcpt[i]))) <
		    0)
			e.err = -ENOMEM;
	char *rcpt_json = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (rcpt_json == NULL)
		e.err = -ENOMEM;
	filter_env_push(&e, filter_env_entry("SMTPD_RCPT_TO_JSON", rcpt_json ? rcpt_json : "[]"));
	free(rcpt_json);
	filter_env_push(&e, filter_env_entry("SMTPD_CLIENT_ADDR", env->client_addr));
	filter_env_push(&e, filter_env_number("SMTPD_CLIENT_PORT", env->client_port));
	filter_env_push(&e, filter_env_entry("SMTPD_LOCAL_ADDR", env->local_addr));
	filter_env_push(&e, filter_env_number("SMTPD_LOCAL_PORT", env->local_port));
	filter_env_push(&e, filter_env_entry("SMTPD_HELO", env->helo));
	filter_env_push(&e, filter_env_entry("SMTPD_AUTH_USER", env->auth_user));
	filter_env_push(&e, filter_env_entry("SMTPD_TLS", env->tls_version));
	filter_env_push(
	    &e, filter_env_entry("SMTPD_TLS_CIPHER", env->tls_version ? env->tls_cipher : NULL));
	filter_env_push(&e, filter_env_entry("SMTPD_MESSAGE_ID", env->id));
	filter_env_push(&e, filter_env_number("SMTPD_SIZE", env->size));
	/* SPEC 8: rspamd's verdict, the envelope's JSON; "null" without one. */
	filter_env_push(&e, filter_env_entry("SMTPD_VERDICT_JSON",
	                                     env->verdict_json ? env->verdict_json : "null"));
	buf_free(&rcpt);
	if (e.err || e.v == NULL) {
		filter_env_free(e.v);
		return NULL;
	}
	return e.v;
}

void filter_env_free(char **envp)
{
	if (envp == NULL)
		return;
	for (size_t i = 0; envp[i]; i++)
		free(envp[i]);
	free(envp);
}

/* ---- verdicts ------------------------------------------------------------------ */

size_t filter_reply_text(const char *output, size_t len, char out[FILTER_TEXT_MAX + 1])
{
	const char *nl = memchr(output, '\n', len);
	if (nl)
		len = (size_t)(nl - output);
	size_t start = 0;
	while (start < len && (output[start] == ' ' || output[start] == '\t'))
		start++;
	while (len > start &&
	       (output[len - 1] == ' ' || output[len - 1] == '\t' || output[len - 1] == '\r'))
		len--;
	size_t o = 0;
	for (size_t i = start; i < len && o < FILTER_TEXT_MAX; i++) {
		unsigned char c = (unsigned char)output[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	/* Cutting may leave a blank at the end. */
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

enum filter_verdict filter_verdict_of(bool exited, int64_t exit_status, int term_signal,
                                      bool timed_out)
{
	if (timed_out || !exited || term_signal != 0)
		return FILTER_TEMPFAIL;
	if (exit_status == 0)
		return FILTER_ACCEPT;
	if (exit_status == FILTER_EXIT_TEMPFAIL)
		return FILTER_TEMPFAIL;
	return FILTER_REJECT;
}

/* ---- the running filter --------------------------------------------------------- */

struct filter_run {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t out, err;
	uv_timer_t timer;
	int handles_open;
	filter_done_fn done;
	void *ctx;
	char log_id[SPOOL_ID_MAX];
	struct log_ctx log; /* the session's: valid until done() */

	char out_keep[FILTER_STDOUT_KEEP];
	size_t out_len;
	char err_line[FILTER_STDERR_LINE + 1];
	size_t err_len;
	unsigned err_lines;
	char read_buf[16384]; /* shared by stdout and stderr reads: each read is consumed at once */

	bool out_open, err_open, timer_open, proc_open;
	bool exited;
	bool decided;   /* the verdict is known */
	bool done_sent; /* done() ran */
	struct filter_result result;
};

static void filter_maybe_free(struct filter_run *r)
{
	if (r->handles_open == 0 && r->done_sent)
		free(r);
}

static void filter_on_close(uv_handle_t *h)
{
	struct filter_run *r = h->data;
	r->handles_open--;
	filter_maybe_free(r);
}

static void filter_close(struct filter_run *r, uv_handle_t *h, bool *open)
{
	(void)r; /* counted down in filter_on_close */
	if (!*open)
		return;
	*open = false;
	uv_close(h, filter_on_close);
}

static void filter_maybe_done(struct filter_run *r)
{
	if (!r->decided || r->done_sent)
		return;
	r->done_sent = true;
	r->done(r->ctx, &r->result);
	filter_maybe_free(r);
}

static void filter_log_stderr_line(struct filter_run *r)
{
	if (r->err_lines < FILTER_STDERR_LINES) {
		r->err_line[r->err_len] = '\0';
		for (size_t i = 0; i < r->err_len; i++) {
			unsigned char c = (unsigned char)r->err_line[i];
			if (c < 0x20 || c == 0x7f)
				r->err_line[i] = '?';
		}
		const char *kv[] = {"id", r->log_id, "line", r->err_line, NULL};
		log_event(CONFIG_LOG_WARN, &r->log, "filter stderr", kv);
	} else if (r->err_lines == FILTER_STDERR_LINES) {
		const char *kv[] = {"id", r->log_id, NULL};
		log_event(CONFIG_LOG_WARN, &r->log, "filter stderr: further lines dropped", kv);
	}
	r->err_lines++;
	r->err_len = 0;
}

/* Decide the verdict: from the timeout, or from the exit status and the output
 * read so far. Closes what still runs and reports. */
static void filter_decide(struct filter_run *r, bool timed_out)
{
	if (r->decided)
		return;
	r->decided = true;
	struct filter_result *res = &r->result;
	res->timed_out = timed_out;
	res->verdict = filter_verdict_of(r->exited, res->exit_status, res->term_signal, timed_out);
	if (!timed_out)
		filter_reply_text(r->out_keep, r->out_len, res->text);
	if (r->err_len > 0)
		filter_log_stderr_line(r);
	filter_close(r, (uv_handle_t *)&r->out, &r->out_open);
	filter_close(r, (uv_handle_t *)&r->err, &r->err_open);
	filter_close(r, (uv_handle_t *)&r->timer, &r->timer_open);
	filter_maybe_done(r);
}

/* SIGKILL to the process group: `sh -c` may have children of its own that hold
 * the pipes, and killing only the shell would leave them running. */
static void filter_kill_group(struct filter_run *r)
{
	if (r->proc_open && !r->exited && r->proc.pid > 0) {
		if (uv_kill(-r->proc.pid, SIGKILL) < 0)
			uv_process_kill(&r->proc, SIGKILL);
	}
}

static void filter_on_timer(uv_timer_t *t)
{
	struct filter_run *r = t->data;
	if (r->exited) {
		/* The linger after the exit is over: decide without the rest of the output. */
		filter_decide(r, false);
		return;
	}
	const char *kv[] = {"id", r->log_id, NULL};
	log_event(CONFIG_LOG_WARN, &r->log, "filter timed out, killed", kv);
	filter_kill_group(r);
	filter_decide(r, true);
}

static void filter_on_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct filter_run *r = p->data;
	r->exited = true;
	if (!r->decided) {
		r->result.exit_status = exit_status;
		r->result.term_signal = term_signal;
	}
	/* Whatever the shell left behind in its group goes too: nothing may keep
	 * running for a message that has its verdict. */
	if (r->proc.pid > 0)
		uv_kill(-r->proc.pid, SIGKILL);
	filter_close(r, (uv_handle_t *)&r->proc, &r->proc_open);
	if (r->decided)
		return;
	if (!r->out_open) {
		filter_decide(r, false);
		return;
	}
	/* stdout may still hold the reply text: wait for its end, briefly. */
	uv_timer_stop(&r->timer);
	uv_timer_start(&r->timer, filter_on_timer, FILTER_LINGER_MS, 0);
}

static void filter_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	struct filter_run *r = h->data;
	*b = uv_buf_init(r->read_buf, sizeof r->read_buf);
}

static void filter_on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct filter_run *r = s->data;
	if (n > 0) {
		size_t room = sizeof r->out_keep - r->out_len;
		size_t take = (size_t)n < room ? (size_t)n : room;
		memcpy(r->out_keep + r->out_len, b->base, take);
		r->out_len += take;
		return; /* the rest is read and dropped */
	}
	if (n == 0)
		return;
	/* EOF or an error: no more output. */
	filter_close(r, (uv_handle_t *)&r->out, &r->out_open);
	if (r->exited)
		filter_decide(r, false);
}

static void filter_on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct filter_run *r = s->data;
	if (n < 0) {
		if (r->err_len > 0)
			filter_log_stderr_line(r);
		filter_close(r, (uv_handle_t *)&r->err, &r->err_open);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char c = b->base[i];
		if (c == '\n') {
			filter_log_stderr_line(r);
			continue;
		}
		if (r->err_len < FILTER_STDERR_LINE)
			r->err_line[r->err_len++] = c;
	}
}

static void filter_spawn_failed(uv_timer_t *t)
{
	struct filter_run *r = t->data;
	r->result.spawn_failed = true;
	filter_decide(r, false);
}

int filter_start(uv_loop_t *loop, const char *command, uint64_t timeout_ms, char **envp,
                 int input_fd, const char *id, const struct log_ctx *log, filter_done_fn done,
                 void *ctx, struct filter_run **out)
{
	struct filter_run *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	if (log)
		r->log = *log;
	r->loop = loop;
	r->done = done;
	r->ctx = ctx;
	snprintf(r->log_id, sizeof r->log_id, "%s", id ? id : "");
	r->proc.data = r->out.data = r->err.data = r->timer.data = r;
	uv_timer_init(loop, &r->timer);
	uv_pipe_init(loop, &r->out, 0);
	uv_pipe_init(loop, &r->err, 0);
	r->handles_open = 3;
	r->timer_open = r->out_open = r->err_open = true;
	if (out)
		*out = r;

	char *args[] = {"/bin/sh", "-c", (char *)command, NULL};
	/* stdin is the message file itself (issue 14): the child gets its own
	 * descriptor (dup2 in the child), so nothing here keeps input_fd, nothing
	 * is copied through a pipe, and the message is never in our memory.
	 * UV_IGNORE is /dev/null. */
	uv_stdio_container_t stdio[3] = {
	    {.flags = input_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = input_fd},
	    {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out},
	    {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->err},
	};
	/* UV_PROCESS_DETACHED: setsid() in the child, so the filter and all it
	 * starts form one process group that a timeout can kill as a whole. */
	uv_process_options_t opt = {
	    .exit_cb = filter_on_exit,
	    .file = "/bin/sh",
	    .args = args,
	    .env = envp,
	    .flags = UV_PROCESS_DETACHED,
	    .stdio_count = 3,
	    .stdio = stdio,
	};
	int rc = uv_spawn(loop, &r->proc, &opt);
	if (rc < 0) {
		char why[64];
		snprintf(why, sizeof why, "%s", uv_strerror(rc));
		const char *kv[] = {"id", r->log_id, "error", why, NULL};
		log_event(CONFIG_LOG_ERROR, &r->log, "filter could not be started", kv);
		/* uv_spawn's handle still needs closing. Report from the loop, never
		 * from inside filter_start. */
		r->handles_open++;
		uv_close((uv_handle_t *)&r->proc, filter_on_close);
		uv_timer_start(&r->timer, filter_spawn_failed, 0, 0);
		return 0;
	}
	r->proc_open = true;
	r->handles_open++;
	uv_read_start((uv_stream_t *)&r->out, filter_alloc, filter_on_stdout);
	uv_read_start((uv_stream_t *)&r->err, filter_alloc, filter_on_stderr);
	uv_timer_start(&r->timer, filter_on_timer, timeout_ms, 0);
	return 0;
}

void filter_kill(struct filter_run *r)
{
	if (r == NULL || r->decided)
		return;
	filter_kill_group(r);
	filter_decide(r, true);
}
