/* loadgen: hold many concurrent SMTP sessions open against one server, have a
 * few of them send mail, and report what that costs the server (issue 8).
 *
 *   cc -O2 -o bench/loadgen bench/loadgen.c $(pkg-config --cflags --libs libuv)
 *   loadgen -p PORT [-n 10000] [-a 500] [-t 10] [-r RATE] [-l 1024] [-P SERVER_PID]
 *           [-x 127.0.0.1:8080] [-S 4] [-c 256] [-T 120] [-j out.json]
 *
 * Phases, one libuv loop, every wait bounded (-T caps the whole run):
 *   1. Sample the server's VmRSS (-P), then open -n sessions to 127.0.0.1:PORT
 *      (at most -c connecting at once, spread over -S source addresses
 *      127.0.0.1, 127.0.0.2, ... so ephemeral ports never run short): read the
 *      greeting, EHLO, then idle. One second after the last one is idle, sample
 *      VmRSS again: (idle - before) / n is the server's memory per idle session.
 *   2. -a of them send mail for -t seconds (MAIL, RCPT, DATA, a -l byte body;
 *      not pipelined, like smtp-source), as fast as the server answers or, with
 *      -r, at about RATE messages per second in total. The latency of each
 *      message is from the moment its end of data is handed to the kernel to
 *      the moment its 250 is read.
 *   3. Wait (at most 10 s) for the messages in flight, sample VmRSS once more
 *      (the senders are idle again), close everything.
 * Throughout, every 100 ms: GET /livez on -x over a new connection (latency
 * from connect to the end of the response, failure = not 200 or no answer in
 * 2 s), and NOOP on one extra SMTP session (the loop's latency as an SMTP
 * client sees it).
 *
 * Output: a summary on stdout, and with -j one JSON object. Exit status 0
 * when it ran to the end (whatever the figures), 1 on bad usage or setup. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define REPLY_CAP        1024
#define PROBE_MS         100
#define PROBE_LIMIT      2000 /* ms: a probe with no answer by then failed */
#define DRAIN_MS         10000
#define SETTLE_MS        1000
#define CONNECT_LIMIT_MS 60000 /* the connect phase ends by then, whatever is left */

enum cstate {
	C_NEW,
	C_CONNECTING,
	C_GREETING,
	C_EHLO,
	C_IDLE,
	C_MAIL,
	C_RCPT,
	C_DATA,
	C_BODY,
	C_NOOP,
	C_DEAD,
};

struct conn {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t think; /* -r: the pause before the next message */
	int idx;
	enum cstate st;
	bool active;
	bool closed;
	bool think_init;
	int ph;          /* the phase a probe was sent in */
	uint64_t t_sent; /* hrtime of the end of data, or of the NOOP */
	size_t rlen;
	char rbuf[REPLY_CAP];
};

struct lat {
	uint32_t *v; /* microseconds */
	size_t n, cap;
};

/* Probes are reported per phase: while the sessions connect, while mail is
 * sent, and the rest (settling, draining). */
enum { PH_CONNECT, PH_MAIL, PH_OTHER, PH_N };
static const char *const ph_names[PH_N] = {"connect", "mail", "other"};

struct probe_stats {
	struct lat lat;
	uint64_t ok, fail, over100, skipped;
};

static struct {
	uv_loop_t *loop;
	struct sockaddr_in dst;
	int port;
	int n, active, seconds, size, nsrc, conc, total_limit;
	double rate;
	int pid;
	char http_host[64];
	int http_port;
	const char *json_path;

	struct conn *conns;
	struct conn probe; /* the NOOP session */
	int next_connect, connecting, idle, failed_connect, closed_early;
	int connect_errors, greet_errors, ehlo_errors, mail_errors;
	int phase; /* 1 connect, 2 send, 3 drain, 4 done */
	uint64_t t0, t_connected, t_phase2, t_phase2_end, t_end;
	int64_t rss_before, rss_idle, rss_peak, rss_after, rss_now;
	char sockstat_before[256], sockstat_idle[256];
	uint64_t msgs, msgs_in_phase2;
	int in_flight;
	struct lat lat;
	struct probe_stats noop[PH_N], livez[PH_N];
	bool livez_busy;
	char *body;
	size_t body_len;
	uv_timer_t tick, settle, phase_end, drain, deadline, connect_limit;
} G;

/* ------------------------------------------------------------ small helpers */

static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 4096;
		uint32_t *nv = realloc(l->v, nc * sizeof *nv);
		if (nv == NULL)
			return;
		l->v = nv;
		l->cap = nc;
	}
	uint64_t us = ns / 1000;
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int lat_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double lat_pct(struct lat *l, double p)
{
	if (l->n == 0)
		return -1;
	size_t i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
	return l->v[i] / 1000.0; /* ms */
}

static int64_t rss_kib(int pid)
{
	if (pid <= 0)
		return -1;
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	int64_t v = -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0) {
			v = strtoll(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void sockstat(char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/net/sockstat", "re");
	if (f == NULL)
		return;
	char line[256];
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "TCP:", 4) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "%s", line);
		}
	fclose(f);
}

static int cur_ph(void)
{
	return G.phase == 1 || G.phase == 15 ? PH_CONNECT : G.phase == 2 ? PH_MAIL : PH_OTHER;
}

static void probe_done(struct probe_stats *ps, bool ok, uint64_t ns)
{
	if (!ok) {
		ps->fail++;
		return;
	}
	ps->ok++;
	lat_add(&ps->lat, ns);
	if (ns > 100 * 1000000ull)
		ps->over100++;
}

static double ms_since(uint64_t t)
{
	return (double)(uv_hrtime() - t) / 1e6;
}

/* ------------------------------------------------------------ sessions */

static void conn_send(struct conn *c, const char *data, size_t len);
static void conn_next_message(struct conn *c);
static void maybe_connect_more(void);
static void check_phase1_done(void);

static void on_conn_closed(uv_handle_t *h)
{
	(void)h;
}

static void conn_fail(struct conn *c, int *counter)
{
	if (c->st == C_DEAD)
		return;
	bool was_setup = c->st == C_CONNECTING || c->st == C_GREETING || c->st == C_EHLO;
	if (counter)
		(*counter)++;
	if (c->st >= C_MAIL && c->st <= C_BODY)
		G.in_flight--;
	c->st = C_DEAD;
	if (!c->closed) {
		c->closed = true;
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
	}
	if (c->think_init)
		uv_timer_stop(&c->think);
	if (c != &G.probe) {
		if (was_setup) {
			G.connecting--;
			G.failed_connect++;
			maybe_connect_more();
			check_phase1_done();
		} else {
			G.closed_early++;
		}
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	free(req);
	if (status < 0 && c->st != C_DEAD)
		conn_fail(c, &G.mail_errors);
}

static void conn_send(struct conn *c, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n == (int)len)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		conn_fail(c, &G.mail_errors);
		return;
	}
	size_t done = n > 0 ? (size_t)n : 0;
	uv_write_t *req = malloc(sizeof *req);
	if (req == NULL) {
		conn_fail(c, &G.mail_errors);
		return;
	}
	req->data = c;
	/* The data passed here is static (commands) or G.body: it outlives the write. */
	b = uv_buf_init((char *)data + done, (unsigned)(len - done));
	if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
		free(req);
		conn_fail(c, &G.mail_errors);
	}
}

static void on_think(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->st == C_IDLE)
		conn_next_message(c);
}

/* Start the next message on an active session, or stop when phase 2 is over. */
static void conn_next_message(struct conn *c)
{
	if (G.phase != 2) {
		c->st = C_IDLE;
		return;
	}
	c->st = C_MAIL;
	G.in_flight++;
	static const char mail[] = "MAIL FROM:<loadgen@example.test>\r\n";
	conn_send(c, mail, sizeof mail - 1);
}

/* One complete reply arrived on c: its code is the first line's. */
static void conn_reply(struct conn *c, int code)
{
	switch (c->st) {
	case C_GREETING:
		if (code != 220) {
			conn_fail(c, &G.greet_errors);
			return;
		}
		c->st = C_EHLO;
		static const char ehlo[] = "EHLO loadgen.example.test\r\n";
		conn_send(c, ehlo, sizeof ehlo - 1);
		return;
	case C_EHLO:
		if (code != 250) {
			conn_fail(c, &G.ehlo_errors);
			return;
		}
		c->st = C_IDLE;
		if (c == &G.probe)
			return;
		G.connecting--;
		G.idle++;
		maybe_connect_more();
		check_phase1_done();
		return;
	case C_MAIL:
		if (code != 250) {
			conn_fail(c, &G.mail_errors);
			return;
		}
		c->st = C_RCPT;
		static const char rcpt[] = "RCPT TO:<sink@example.test>\r\n";
		conn_send(c, rcpt, sizeof rcpt - 1);
		return;
	case C_RCPT:
		if (code != 250) {
			conn_fail(c, &G.mail_errors);
			return;
		}
		c->st = C_DATA;
		static const char data[] = "DATA\r\n";
		conn_send(c, data, sizeof data - 1);
		return;
	case C_DATA:
		if (code != 354) {
			conn_fail(c, &G.mail_errors);
			return;
		}
		c->st = C_BODY;
		c->t_sent = uv_hrtime();
		conn_send(c, G.body, G.body_len);
		return;
	case C_BODY:
		if (code != 250) {
			conn_fail(c, &G.mail_errors);
			return;
		}
		lat_add(&G.lat, uv_hrtime() - c->t_sent);
		G.msgs++;
		G.in_flight--;
		c->st = C_IDLE;
		if (G.phase == 2 && G.rate > 0) {
			/* Each of the a senders sends rate/a per second. */
			double gap_ms = 1000.0 * G.active / G.rate;
			double spent = ms_since(c->t_sent);
			uint64_t wait = gap_ms > spent ? (uint64_t)(gap_ms - spent) : 0;
			uv_timer_start(&c->think, on_think, wait, 0);
		} else {
			conn_next_message(c);
		}
		return;
	case C_NOOP:
		probe_done(&G.noop[c->ph], code == 250, uv_hrtime() - c->t_sent);
		if (code != 250) {
			conn_fail(c, NULL);
			return;
		}
		c->st = C_IDLE;
		return;
	default:
		conn_fail(c, &G.mail_errors);
		return;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	struct conn *c = h->data;
	/* Read straight into what is left of the reply buffer: no allocation. */
	b->base = c->rbuf + c->rlen;
	b->len = REPLY_CAP - c->rlen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	(void)b;
	struct conn *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		conn_fail(c, c->st <= C_EHLO ? &G.connect_errors : &G.mail_errors);
		return;
	}
	c->rlen += (size_t)nread;
	/* Take every complete reply: its last line is "ddd " ... CRLF. */
	size_t start = 0;
	for (size_t i = 0; i < c->rlen; i++) {
		if (c->rbuf[i] != '\n')
			continue;
		const char *line = c->rbuf + start;
		size_t len = i + 1 - start;
		start = i + 1;
		if (len >= 4 && line[3] == '-')
			continue; /* a continuation line */
		int code =
		    len >= 3 ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : 0;
		/* The reply consumed so far is done with; keep what follows. */
		memmove(c->rbuf, c->rbuf + start, c->rlen - start);
		c->rlen -= start;
		i = (size_t)-1;
		start = 0;
		conn_reply(c, code);
		if (c->st == C_DEAD)
			return;
	}
	if (c->rlen == REPLY_CAP) /* a reply longer than we allow */
		conn_fail(c, &G.mail_errors);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	if (status < 0) {
		conn_fail(c, &G.connect_errors);
		return;
	}
	c->st = C_GREETING;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
		conn_fail(c, &G.connect_errors);
}

static int conn_open(struct conn *c, int idx)
{
	memset(c, 0, sizeof *c);
	c->idx = idx;
	c->st = C_CONNECTING;
	int rc = uv_tcp_init_ex(G.loop, &c->tcp, AF_INET);
	if (rc < 0)
		return rc;
	c->tcp.data = c;
	c->creq.data = c;
	uv_tcp_nodelay(&c->tcp, 1);
	if (G.nsrc > 1) {
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
			int one = 1;
			/* Pick the port at connect time, per destination: many
			 * source addresses then share the ephemeral range. */
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		}
		struct sockaddr_in src = {.sin_family = AF_INET};
		src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(idx % G.nsrc));
		uv_tcp_bind(&c->tcp, (struct sockaddr *)&src, 0);
	}
	rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&G.dst, on_connect);
	if (rc < 0) {
		c->closed = true;
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return rc;
	}
	return 0;
}

static void maybe_connect_more(void)
{
	while (G.phase == 1 && G.connecting < G.conc && G.next_connect < G.n) {
		struct conn *c = &G.conns[G.next_connect];
		int idx = G.next_connect++;
		G.connecting++;
		if (conn_open(c, idx) < 0) {
			c->st = C_DEAD;
			G.connecting--;
			G.failed_connect++;
			G.connect_errors++;
		}
	}
}

/* ------------------------------------------------------------ phases */

static void start_phase2(void);
static void finish(void);

static void on_settle(uv_timer_t *t)
{
	(void)t;
	G.rss_idle = rss_kib(G.pid);
	sockstat(G.sockstat_idle, sizeof G.sockstat_idle);
	start_phase2();
}

static void check_phase1_done(void)
{
	if (G.phase != 1 || G.next_connect < G.n || G.connecting > 0)
		return;
	uv_timer_stop(&G.connect_limit);
	G.t_connected = uv_hrtime();
	G.phase = 15; /* settling */
	uv_timer_start(&G.settle, on_settle, SETTLE_MS, 0);
}

static void on_drain_check(uv_timer_t *t);

static void on_phase_end(uv_timer_t *t)
{
	(void)t;
	G.phase = 3;
	G.t_phase2_end = uv_hrtime();
	G.msgs_in_phase2 = G.msgs;
	/* Senders waiting in their think time go idle now. */
	for (int i = 0; i < G.n; i++)
		if (G.conns[i].think_init)
			uv_timer_stop(&G.conns[i].think);
	uv_timer_start(&G.drain, on_drain_check, 50, 50);
}

static void on_final_settle(uv_timer_t *t)
{
	(void)t;
	finish();
}

static void on_drain_check(uv_timer_t *t)
{
	(void)t;
	if (G.in_flight > 0 && ms_since(G.t_phase2_end) < DRAIN_MS)
		return;
	uv_timer_stop(&G.drain);
	/* The senders are idle again: their read buffers should be gone. */
	uv_timer_start(&G.settle, on_final_settle, SETTLE_MS, 0);
	G.phase = 35;
}

static void start_phase2(void)
{
	G.phase = 2;
	G.t_phase2 = uv_hrtime();
	int started = 0;
	for (int i = 0; i < G.n && started < G.active; i++) {
		struct conn *c = &G.conns[i];
		if (c->st != C_IDLE)
			continue;
		c->active = true;
		uv_timer_init(G.loop, &c->think);
		c->think.data = c;
		c->think_init = true;
		started++;
		if (G.rate > 0) {
			/* Spread the first messages over one gap. */
			uint64_t gap = (uint64_t)(1000.0 * G.active / G.rate);
			uv_timer_start(&c->think, on_think, gap ? (uint64_t)rand() % gap : 0, 0);
		} else {
			conn_next_message(c);
		}
	}
	G.active = started;
	uv_timer_start(&G.phase_end, on_phase_end, (uint64_t)G.seconds * 1000, 0);
}

/* ------------------------------------------------------------ probes */

struct http_probe {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t limit;
	int ph;
	uint64_t t0;
	int closes;
	bool done;
	size_t len;
	char buf[512];
};

static void probe_closed(uv_handle_t *h)
{
	struct http_probe *p = h->data;
	if (++p->closes == 2)
		free(p);
}

static void probe_end(struct http_probe *p, bool ok)
{
	if (p->done)
		return;
	p->done = true;
	G.livez_busy = false;
	probe_done(&G.livez[p->ph], ok, uv_hrtime() - p->t0);
	uv_timer_stop(&p->limit);
	uv_close((uv_handle_t *)&p->tcp, probe_closed);
	uv_close((uv_handle_t *)&p->limit, probe_closed);
}

static void probe_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	(void)s;
	struct http_probe *p = h->data;
	if (p->len >= sizeof p->buf - 1)
		p->len = 16; /* keep the status line, drop the body */
	b->base = p->buf + p->len;
	b->len = sizeof p->buf - 1 - p->len;
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	(void)b;
	struct http_probe *p = s->data;
	if (n > 0) {
		p->len += (size_t)n;
		return;
	}
	if (n == 0)
		return;
	p->buf[p->len] = '\0';
	/* EOF (Connection: close) ends the response. */
	probe_end(p, n == UV_EOF && strncmp(p->buf, "HTTP/1.1 200", 12) == 0);
}

static void probe_connected(uv_connect_t *req, int status)
{
	struct http_probe *p = req->data;
	if (p->done)
		return;
	if (status < 0) {
		probe_end(p, false);
		return;
	}
	static const char get[] =
	    "GET /livez HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n";
	uv_buf_t b = uv_buf_init((char *)get, sizeof get - 1);
	if (uv_try_write((uv_stream_t *)&p->tcp, &b, 1) != (int)(sizeof get - 1) ||
	    uv_read_start((uv_stream_t *)&p->tcp, probe_alloc, probe_read) < 0)
		probe_end(p, false);
}

static void probe_timeout(uv_timer_t *t)
{
	probe_end(t->data, false);
}

static void livez_probe(void)
{
	if (G.http_port == 0)
		return;
	if (G.livez_busy) {
		G.livez[cur_ph()].skipped++; /* the one still out is >100 ms */
		return;
	}
	struct http_probe *p = calloc(1, sizeof *p);
	if (p == NULL)
		return;
	struct sockaddr_in a;
	uv_ip4_addr(G.http_host, G.http_port, &a);
	uv_tcp_init(G.loop, &p->tcp);
	uv_timer_init(G.loop, &p->limit);
	p->tcp.data = p->creq.data = p->limit.data = p;
	p->t0 = uv_hrtime();
	p->ph = cur_ph();
	G.livez_busy = true;
	uv_timer_start(&p->limit, probe_timeout, PROBE_LIMIT, 0);
	if (uv_tcp_connect(&p->creq, &p->tcp, (struct sockaddr *)&a, probe_connected) < 0)
		probe_end(p, false);
}

static void noop_probe(void)
{
	struct conn *c = &G.probe;
	if (c->st == C_DEAD || c->st == C_CONNECTING || c->st == C_GREETING || c->st == C_EHLO)
		return;
	if (c->st == C_NOOP) {
		G.noop[cur_ph()].skipped++;
		return;
	}
	c->st = C_NOOP;
	c->ph = cur_ph();
	c->t_sent = uv_hrtime();
	static const char noop[] = "NOOP\r\n";
	conn_send(c, noop, sizeof noop - 1);
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	livez_probe();
	noop_probe();
	int64_t r = rss_kib(G.pid);
	if (r > G.rss_peak)
		G.rss_peak = r;
	G.rss_now = r;
}

/* Sessions still not idle after CONNECT_LIMIT_MS count as failed: go on
 * with the others. */
static void on_connect_limit(uv_timer_t *t)
{
	(void)t;
	if (G.phase != 1)
		return;
	fprintf(stderr, "loadgen: connect phase limit reached with %d sessions not idle\n",
	        G.connecting + (G.n - G.next_connect));
	G.next_connect = G.n;
	for (int i = 0; i < G.n; i++) {
		struct conn *c = &G.conns[i];
		if (c->st == C_CONNECTING || c->st == C_GREETING || c->st == C_EHLO)
			conn_fail(c, &G.connect_errors);
	}
	check_phase1_done();
}

static void on_deadline(uv_timer_t *t)
{
	(void)t;
	fprintf(stderr, "loadgen: -T limit reached in phase %d, stopping\n", G.phase);
	finish();
}

/* ------------------------------------------------------------ report */

static void probe_print(const char *what, struct probe_stats *ps)
{
	for (int i = 0; i < PH_N; i++) {
		struct probe_stats *p = &ps[i];
		qsort(p->lat.v, p->lat.n, sizeof *p->lat.v, lat_cmp);
		printf("%s during %-7s: %4" PRIu64 " ok, %" PRIu64 " failed, %" PRIu64
		       " over 100 ms (+%" PRIu64
		       " not sent while one was out); p50 %.2f ms, p99 %.2f "
		       "ms, max %.2f ms\n",
		       what, ph_names[i], p->ok, p->fail, p->over100, p->skipped,
		       lat_pct(&p->lat, 50), lat_pct(&p->lat, 99), lat_pct(&p->lat, 100));
	}
}

static void probe_json(FILE *f, const char *name, struct probe_stats *ps)
{
	fprintf(f, ",\"%s\":{", name);
	for (int i = 0; i < PH_N; i++) {
		struct probe_stats *p = &ps[i];
		fprintf(f,
		        "%s\"%s\":{\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
		        ",\"over_100ms\":%" PRIu64 ",\"not_sent\":%" PRIu64
		        ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}",
		        i ? "," : "", ph_names[i], p->ok, p->fail, p->over100, p->skipped,
		        lat_pct(&p->lat, 50), lat_pct(&p->lat, 99), lat_pct(&p->lat, 100));
	}
	fprintf(f, "}");
}

static void report(void)
{
	qsort(G.lat.v, G.lat.n, sizeof *G.lat.v, lat_cmp);
	double connect_s = G.t_connected ? (double)(G.t_connected - G.t0) / 1e9 : -1;
	double send_s = G.t_phase2_end ? (double)(G.t_phase2_end - G.t_phase2) / 1e9 : -1;
	double per_idle = (G.rss_idle > 0 && G.rss_before > 0 && G.idle > 0)
	                      ? (double)(G.rss_idle - G.rss_before) * 1024.0 / G.idle
	                      : -1;
	double rate = send_s > 0 ? (double)G.msgs_in_phase2 / send_s : -1;
	printf("sessions: %d requested, %d idle after EHLO, %d failed to connect/greet, "
	       "%d closed later; connect phase %.2f s\n",
	       G.n, G.idle, G.failed_connect, G.closed_early, connect_s);
	printf("server RSS: before %" PRId64 " KiB, %d idle %" PRId64 " KiB => %.0f bytes per idle "
	       "session; peak %" PRId64 " KiB; after senders idle %" PRId64 " KiB\n",
	       G.rss_before, G.idle, G.rss_idle, per_idle, G.rss_peak, G.rss_after);
	printf("kernel %s -> %s\n", G.sockstat_before, G.sockstat_idle);
	printf("mail: %d senders, %" PRIu64 " messages in %.1f s = %.0f msg/s%s; errors %d\n",
	       G.active, G.msgs_in_phase2, send_s, rate, G.rate > 0 ? " (rate-limited)" : "",
	       G.mail_errors);
	printf("end of data -> 250: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (%zu)\n",
	       lat_pct(&G.lat, 50), lat_pct(&G.lat, 90), lat_pct(&G.lat, 99), lat_pct(&G.lat, 100),
	       G.lat.n);
	probe_print("NOOP  ", G.noop);
	if (G.http_port)
		probe_print("/livez", G.livez);
	if (G.json_path == NULL)
		return;
	FILE *f = fopen(G.json_path, "w");
	if (f == NULL) {
		perror(G.json_path);
		return;
	}
	fprintf(f,
	        "{\"sessions\":%d,\"idle\":%d,\"failed_connect\":%d,\"closed_early\":%d,"
	        "\"connect_s\":%.3f,\"rss_before_kib\":%" PRId64 ",\"rss_idle_kib\":%" PRId64
	        ",\"rss_peak_kib\":%" PRId64 ",\"rss_after_kib\":%" PRId64
	        ",\"bytes_per_idle_session\":%.0f,"
	        "\"sockstat_before\":\"%s\",\"sockstat_idle\":\"%s\","
	        "\"senders\":%d,\"rate_limit\":%.0f,\"messages\":%" PRIu64
	        ",\"send_s\":%.3f,\"msg_per_s\":%.1f,\"mail_errors\":%d,"
	        "\"lat_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"n\":%zu}",
	        G.n, G.idle, G.failed_connect, G.closed_early, connect_s, G.rss_before, G.rss_idle,
	        G.rss_peak, G.rss_after, per_idle, G.sockstat_before, G.sockstat_idle, G.active,
	        G.rate, G.msgs_in_phase2, send_s, rate, G.mail_errors, lat_pct(&G.lat, 50),
	        lat_pct(&G.lat, 90), lat_pct(&G.lat, 99), lat_pct(&G.lat, 100), G.lat.n);
	probe_json(f, "noop", G.noop);
	if (G.http_port)
		probe_json(f, "livez", G.livez);
	fprintf(f, "}\n");
	fclose(f);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void finish(void)
{
	if (G.phase == 4)
		return;
	G.phase = 4;
	G.t_end = uv_hrtime();
	G.rss_after = rss_kib(G.pid);
	report();
	uv_walk(G.loop, close_walk, NULL);
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr, "usage: loadgen -p PORT [-n SESSIONS] [-a SENDERS] [-t SECONDS] [-r RATE] "
	                "[-l BYTES] [-P SERVER_PID] [-x HOST:PORT] [-S SOURCES] [-c CONCURRENT] "
	                "[-T LIMIT_S] [-j JSON]\n");
}

static void build_body(void)
{
	/* Headers and 78-octet lines up to about -l octets, then the end of data. */
	size_t cap = (size_t)G.size + 1024;
	G.body = malloc(cap);
	if (G.body == NULL)
		exit(1);
	size_t n = (size_t)snprintf(G.body, cap,
	                            "From: <loadgen@example.test>\r\nTo: <sink@example.test>\r\n"
	                            "Subject: loadgen\r\n\r\n");
	while (n + 80 < (size_t)G.size) {
		memset(G.body + n, 'x', 78);
		memcpy(G.body + n + 78, "\r\n", 2);
		n += 80;
	}
	memcpy(G.body + n, ".\r\n", 3);
	G.body_len = n + 3;
}

int main(int argc, char **argv)
{
	G.n = 10000;
	G.active = 500;
	G.seconds = 10;
	G.size = 1024;
	G.nsrc = 4;
	G.conc = 256;
	G.total_limit = 120;
	int opt;
	while ((opt = getopt(argc, argv, "p:n:a:t:r:l:P:x:S:c:T:j:h")) != -1) {
		switch (opt) {
		case 'p':
			G.port = atoi(optarg);
			break;
		case 'n':
			G.n = atoi(optarg);
			break;
		case 'a':
			G.active = atoi(optarg);
			break;
		case 't':
			G.seconds = atoi(optarg);
			break;
		case 'r':
			G.rate = atof(optarg);
			break;
		case 'l':
			G.size = atoi(optarg);
			break;
		case 'P':
			G.pid = atoi(optarg);
			break;
		case 'x': {
			const char *colon = strrchr(optarg, ':');
			if (colon == NULL || (size_t)(colon - optarg) >= sizeof G.http_host) {
				usage();
				return 1;
			}
			memcpy(G.http_host, optarg, (size_t)(colon - optarg));
			G.http_port = atoi(colon + 1);
			break;
		}
		case 'S':
			G.nsrc = atoi(optarg);
			break;
		case 'c':
			G.conc = atoi(optarg);
			break;
		case 'T':
			G.total_limit = atoi(optarg);
			break;
		case 'j':
			G.json_path = optarg;
			break;
		default:
			usage();
			return 1;
		}
	}
	if (G.port <= 0 || G.n <= 0 || G.active < 0 || G.active > G.n || G.seconds <= 0 ||
	    G.nsrc <= 0 || G.nsrc > 250 || G.conc <= 0 || G.total_limit <= 0) {
		usage();
		return 1;
	}
	/* One descriptor per session, plus the probes, libuv's own and stdio. */
	struct rlimit rl;
	rlim_t want = (rlim_t)G.n + 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		struct rlimit nr = {want, rl.rlim_max > want ? rl.rlim_max : want};
		if (setrlimit(RLIMIT_NOFILE, &nr) < 0) {
			nr.rlim_cur = nr.rlim_max = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &nr);
			fprintf(stderr, "loadgen: RLIMIT_NOFILE only %llu, wanted %llu\n",
			        (unsigned long long)rl.rlim_max, (unsigned long long)want);
		}
	}
	build_body();
	G.loop = uv_default_loop();
	uv_ip4_addr("127.0.0.1", G.port, &G.dst);
	G.conns = calloc((size_t)G.n, sizeof *G.conns);
	if (G.conns == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	G.rss_before = rss_kib(G.pid);
	G.rss_peak = G.rss_before;
	sockstat(G.sockstat_before, sizeof G.sockstat_before);
	G.t0 = uv_hrtime();
	uv_timer_init(G.loop, &G.tick);
	uv_timer_init(G.loop, &G.settle);
	uv_timer_init(G.loop, &G.phase_end);
	uv_timer_init(G.loop, &G.drain);
	uv_timer_init(G.loop, &G.deadline);
	uv_timer_init(G.loop, &G.connect_limit);
	uv_timer_start(&G.connect_limit, on_connect_limit, CONNECT_LIMIT_MS, 0);
	uv_timer_start(&G.tick, on_tick, PROBE_MS, PROBE_MS);
	uv_timer_start(&G.deadline, on_deadline, (uint64_t)G.total_limit * 1000, 0);
	/* The NOOP probe session first, from its own source address. */
	if (conn_open(&G.probe, G.nsrc) < 0)
		G.probe.st = C_DEAD;
	G.phase = 1;
	maybe_connect_more();
	uv_run(G.loop, UV_RUN_DEFAULT);
	uv_loop_close(G.loop);
	return 0;
}
