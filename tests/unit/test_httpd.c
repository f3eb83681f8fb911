/* httpd: the side port answered over real loopback sockets by a tiny HTTP
 * client, the JSON read back with jansson. The endpoints are filled by hand so
 * this test does not depend on endpoint.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "httpd.h"
#include "httpd_front.h"
#include "stats.h"

#define TOKEN "s3cret-token"

struct fixture {
	struct endpoint eps[2];
	struct stats st;
	struct endpoint bind;
	struct httpd *h;
	uint16_t port;
};

static void make_endpoint(struct endpoint *ep, int family, const char *addr, uint16_t port)
{
	memset(ep, 0, sizeof *ep);
	ep->family = family;
	ep->port = port;
	snprintf(ep->address, sizeof ep->address, "%s", addr);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ep->addr;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
		ep->any = sin->sin_addr.s_addr == htonl(INADDR_ANY);
		ep->addrlen = sizeof *sin;
		snprintf(ep->text, sizeof ep->text, "%s:%u", addr, (unsigned)port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->addr;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
		ep->any = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
		ep->addrlen = sizeof *sin6;
		snprintf(ep->text, sizeof ep->text, "[%s]:%u", addr, (unsigned)port);
	}
}

static int start(struct fixture *f, const char *token)
{
	struct httpd_options opt = {
	    .bind = &f->bind, .version = "1.2.3-test", .token = token, .stats = &f->st};
	char err[256] = "";
	int rc = httpd_start(&opt, &f->h, err, sizeof err);
	if (rc == 0)
		f->port = httpd_port(f->h);
	else
		print_message("httpd_start: %s\n", err);
	return rc;
}

static int setup_common(void **state, const char *token)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	make_endpoint(&f->eps[0], AF_INET, "127.0.0.1", 2525);
	make_endpoint(&f->eps[1], AF_INET6, "::1", 3535);
	struct endpoint_list list = {.v = f->eps, .n = 2};
	const char *tls[] = {"none", "implicit"};
	assert_int_equal(stats_init(&f->st, "mx.example.test", &list, tls), 0);
	stats_lock(&f->st);
	f->st.c.listeners_bound = true;
	f->st.c.spool_writable = true;
	f->st.listeners[0].state = "listening";
	f->st.listeners[1].state = "listening";
	stats_unlock(&f->st);
	make_endpoint(&f->bind, AF_INET, "127.0.0.1", 0);
	assert_int_equal(start(f, token), 0);
	assert_true(f->port != 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_common(state, "");
}

static int setup_token(void **state)
{
	return setup_common(state, TOKEN);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	httpd_stop(f->h);
	stats_destroy(&f->st);
	free(f);
	return 0;
}

/* ---- a small HTTP client --------------------------------------------------- */

struct reply {
	int status;
	char *raw;  /* whole response, NUL-terminated */
	char *body; /* into raw */
	size_t body_len;
};

static int connect_to(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = in6addr_loopback;
		sl = sizeof *sin6;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		s += n;
		len -= (size_t)n;
	}
}

/* Header value (after "Name: ") in the head of raw, or NULL; copied to out. */
static const char *header(const struct reply *r, const char *name, char *out, size_t len)
{
	const char *p = strstr(r->raw, "\r\n");
	size_t nlen = strlen(name);
	while (p && p + 2 < r->body - 2) {
		p += 2;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			while (*v == ' ')
				v++;
			size_t vlen = strcspn(v, "\r\n");
			snprintf(out, len, "%.*s", (int)vlen, v);
			return out;
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

/* Read one response: up to the end of its body by Content-Length, or to EOF. */
static void read_reply(int fd, struct reply *r, bool head_request)
{
	size_t cap = 1 << 16, got = 0;
	char *buf = malloc(cap + 1);
	assert_non_null(buf);
	char *end = NULL;
	long clen = -1;
	for (;;) {
		if (end == NULL) {
			buf[got] = '\0';
			end = strstr(buf, "\r\n\r\n");
			if (end) {
				const char *cl = strcasestr(buf, "\r\nContent-Length:");
				if (cl && cl < end)
					clen = strtol(cl + 17, NULL, 10);
				if (head_request)
					clen = 0;
			}
		}
		if (end && clen >= 0 && got >= (size_t)(end + 4 - buf) + (size_t)clen)
			break;
		assert_true(got < cap);
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		assert_true(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	assert_non_null(end);
	r->raw = buf;
	r->body = end + 4;
	r->body_len = got - (size_t)(r->body - buf);
	assert_int_equal(strncmp(buf, "HTTP/1.", 7), 0);
	r->status = atoi(buf + 9);
}

static void reply_free(struct reply *r)
{
	free(r->raw);
	r->raw = NULL;
}

/* One HTTP/1.0 request; extra is more header lines, each ending in \r\n. */
static void request_on(int family, uint16_t port, const char *method, const char *path,
                       const char *extra, struct reply *r)
{
	int fd = connect_to(family, port);
	char req[1024];
	snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n%s\r\n", method, path,
	         extra ? extra : "");
	send_all(fd, req);
	read_reply(fd, r, strcmp(method, "HEAD") == 0);
	close(fd);
}

static void get(struct fixture *f, const char *path, struct reply *r)
{
	request_on(AF_INET, f->port, "GET", path, NULL, r);
}

/* The body as JSON, checked to be application/json with a trailing newline. */
static json_t *json_body(const struct reply *r)
{
	char v[128];
	assert_non_null(header(r, "Content-Type", v, sizeof v));
	assert_string_equal(v, "application/json");
	assert_non_null(header(r, "Cache-Control", v, sizeof v));
	assert_string_equal(v, "no-store");
	assert_true(r->body_len > 0);
	assert_int_equal(r->body[r->body_len - 1], '\n');
	json_error_t e;
	json_t *j = json_loadb(r->body, r->body_len, 0, &e);
	if (j == NULL)
		fail_msg("bad JSON: %s in %s", e.text, r->body);
	return j;
}

static void expect_json(struct reply *r, int status, const char *key, const char *value)
{
	assert_int_equal(r->status, status);
	json_t *j = json_body(r);
	assert_string_equal(json_string_value(json_object_get(j, key)), value);
	json_decref(j);
}

static json_int_t int_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		fail_msg("%s is not an integer", key);
	return json_integer_value(v);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_status(void **state)
{
	struct fixture *f = *state;
	stats_lock(&f->st);
	f->st.c.connections_active = 3;
	f->st.c.connections_total = 17;
	f->st.c.connections_refused = 2;
	f->st.c.messages_accepted = 11;
	f->st.c.messages_rejected = 4;
	f->st.c.messages_bytes = 123456;
	f->st.listeners[0].connections_active = 1;
	f->st.listeners[0].connections_total = 10;
	f->st.listeners[0].messages_accepted = 6;
	f->st.listeners[1].connections_active = 2;
	f->st.listeners[1].connections_total = 7;
	f->st.listeners[1].messages_accepted = 5;
	f->st.listeners[1].state = "closed";
	stats_unlock(&f->st);

	struct reply r;
	get(f, "/status", &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	/* 15 + "policy" and "rspamd" (SPEC 8) + "nats" (SPEC 9) + "retention" and
	 * "events" (issue 17) */
	assert_int_equal(json_object_size(j), 20);
	assert_int_equal(int_at(json_object_get(j, "retention"), "removed"), 0);
	/* NATS off: the block is there, its strings null. */
	json_t *nats = json_object_get(j, "nats");
	assert_int_equal(json_object_size(nats), 7);
	assert_true(json_is_false(json_object_get(nats, "connected")));
	assert_true(json_is_null(json_object_get(nats, "server")));
	assert_true(json_is_null(json_object_get(nats, "stream")));
	assert_true(json_is_null(json_object_get(nats, "last_error")));
	assert_int_equal(json_integer_value(json_object_get(nats, "pending")), 0);
	assert_int_equal(json_object_size(json_object_get(j, "policy")), 8);
	assert_true(json_is_null(json_object_get(json_object_get(j, "policy"), "file_mtime")));
	assert_string_equal(json_string_value(json_object_get(j, "service")), "mailport");
	assert_string_equal(json_string_value(json_object_get(j, "version")), "1.2.3-test");
	assert_string_equal(json_string_value(json_object_get(j, "hostname")), "mx.example.test");
	char want[32];
	struct tm tm;
	gmtime_r(&f->st.started_at, &tm);
	strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%SZ", &tm);
	assert_string_equal(json_string_value(json_object_get(j, "started_at")), want);
	json_int_t up = int_at(j, "uptime_seconds");
	assert_true(up >= 0 && up < 60);
	assert_true(json_is_true(json_object_get(j, "ready")));
	assert_true(json_is_false(json_object_get(j, "draining")));

	json_t *ls = json_object_get(j, "listeners");
	assert_int_equal(json_array_size(ls), 2);
	json_t *l0 = json_array_get(ls, 0), *l1 = json_array_get(ls, 1);
	assert_int_equal(json_object_size(l0), 10);
	assert_true(json_is_false(json_object_get(l0, "proxy"))); /* SPEC 7: SMTPD_PROXY_PORTS */
	assert_string_equal(json_string_value(json_object_get(l0, "address")), "127.0.0.1");
	assert_int_equal(int_at(l0, "port"), 2525);
	assert_string_equal(json_string_value(json_object_get(l0, "family")), "ipv4");
	assert_true(json_is_false(json_object_get(l0, "any")));
	assert_string_equal(json_string_value(json_object_get(l0, "tls")), "none");
	assert_string_equal(json_string_value(json_object_get(l0, "state")), "listening");
	assert_int_equal(int_at(l0, "connections_active"), 1);
	assert_int_equal(int_at(l0, "connections_total"), 10);
	assert_int_equal(int_at(l0, "messages_accepted"), 6);
	assert_string_equal(json_string_value(json_object_get(l1, "address")), "::1");
	assert_int_equal(int_at(l1, "port"), 3535);
	assert_string_equal(json_string_value(json_object_get(l1, "family")), "ipv6");
	assert_string_equal(json_string_value(json_object_get(l1, "tls")), "implicit");
	assert_string_equal(json_string_value(json_object_get(l1, "state")), "closed");
	assert_int_equal(int_at(l1, "connections_active"), 2);
	assert_int_equal(int_at(l1, "connections_total"), 7);
	assert_int_equal(int_at(l1, "messages_accepted"), 5);

	json_t *c = json_object_get(j, "connections");
	assert_int_equal(json_object_size(c), 3);
	assert_int_equal(int_at(c, "active"), 3);
	assert_int_equal(int_at(c, "total"), 17);
	assert_int_equal(int_at(c, "refused"), 2);
	json_t *m = json_object_get(j, "messages");
	assert_int_equal(json_object_size(m), 3);
	assert_int_equal(int_at(m, "accepted"), 11);
	assert_int_equal(int_at(m, "rejected"), 4);
	assert_int_equal(int_at(m, "bytes"), 123456);
	/* SPEC 5: the delivery queue, and the filter's verdicts. */
	json_t *d = json_object_get(j, "delivery");
	assert_int_equal(json_object_size(d), 5);
	assert_int_equal(int_at(d, "pending"), 0);
	assert_int_equal(int_at(d, "delivered"), 0);
	assert_int_equal(int_at(d, "failed"), 0);
	assert_int_equal(int_at(d, "retries"), 0);
	assert_int_equal(int_at(d, "oldest_pending_seconds"), 0);
	assert_int_equal(json_object_size(json_object_get(j, "filter")), 4);
	json_decref(j);
	reply_free(&r);

	/* Not ready shows in /status too; a query string does not change the route. */
	stats_lock(&f->st);
	f->st.c.draining = true;
	stats_unlock(&f->st);
	get(f, "/status?pretty=1", &r);
	assert_int_equal(r.status, 200);
	j = json_body(&r);
	assert_true(json_is_false(json_object_get(j, "ready")));
	assert_true(json_is_true(json_object_get(j, "draining")));
	json_decref(j);
	reply_free(&r);
}

static void test_livez(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	const char *paths[] = {"/livez", "/healthz"};
	for (size_t i = 0; i < 2; i++) {
		get(f, paths[i], &r);
		expect_json(&r, 200, "status", "ok");
		reply_free(&r);
	}
	atomic_store(&f->st.heartbeat_ms, stats_now_ms() - 5000);
	for (size_t i = 0; i < 2; i++) {
		get(f, paths[i], &r);
		expect_json(&r, 503, "status", "stalled");
		json_t *j = json_body(&r);
		const char *why = json_string_value(json_object_get(j, "reason"));
		assert_non_null(why);
		assert_non_null(strstr(why, "SMTP loop has not run for 50"));
		json_decref(j);
		reply_free(&r);
	}
	/* A stalled loop is not ready either. */
	get(f, "/readyz", &r);
	expect_json(&r, 503, "reason", "SMTP loop stalled");
	reply_free(&r);
	stats_beat(&f->st);
	get(f, "/livez", &r);
	expect_json(&r, 200, "status", "ok");
	reply_free(&r);
}

static void test_readyz(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	get(f, "/readyz", &r);
	expect_json(&r, 200, "status", "ready");
	reply_free(&r);

	stats_lock(&f->st);
	f->st.c.spool_writable = false;
	stats_unlock(&f->st);
	get(f, "/readyz", &r);
	expect_json(&r, 503, "status", "not ready");
	expect_json(&r, 503, "reason", "spool not writable");
	reply_free(&r);

	stats_lock(&f->st);
	f->st.c.spool_writable = true;
	f->st.c.listeners_bound = false;
	stats_unlock(&f->st);
	get(f, "/readyz", &r);
	expect_json(&r, 503, "reason", "listeners not bound");
	reply_free(&r);

	stats_lock(&f->st);
	f->st.c.listeners_bound = true;
	f->st.c.draining = true;
	stats_unlock(&f->st);
	get(f, "/readyz", &r);
	expect_json(&r, 503, "status", "draining");
	expect_json(&r, 503, "reason", "draining");
	reply_free(&r);

	/* Several problems are all named. */
	stats_lock(&f->st);
	f->st.c.spool_writable = false;
	stats_unlock(&f->st);
	get(f, "/readyz", &r);
	expect_json(&r, 503, "reason", "draining; spool not writable");
	reply_free(&r);
}

static void assert_has_line(const struct reply *r, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = r->body; (p = strstr(p, line)) != NULL; p++)
		if ((p == r->body || p[-1] == '\n') && p[len] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, r->body);
}

static void check_metrics_body(const struct reply *r)
{
	char v[128];
	assert_non_null(header(r, "Content-Type", v, sizeof v));
	assert_string_equal(v, "text/plain; version=0.0.4; charset=utf-8");
	assert_has_line(r, "# TYPE mailport_connections_total counter");
	assert_has_line(r, "# TYPE mailport_connections_active gauge");
	assert_has_line(r, "mailport_connections_active 3");
	assert_has_line(r, "mailport_connections_total 17");
	assert_has_line(r, "# TYPE mailport_connections_refused_total counter");
	assert_has_line(r, "mailport_connections_refused_total{reason=\"max_connections\"} 1");
	assert_has_line(r, "mailport_connections_refused_total{reason=\"proxy_untrusted\"} 1");
	assert_has_line(r, "mailport_connections_refused_total{reason=\"proxy_timeout\"} 0");
	assert_has_line(r, "mailport_messages_rejected_total{class=\"4xx\"} 1");
	assert_has_line(r, "mailport_messages_rejected_total{class=\"5xx\"} 3");
	assert_has_line(r, "mailport_tls_handshakes_total 5");
	assert_has_line(r, "mailport_tls_handshake_failures_total 2");
	assert_has_line(r, "mailport_auth_failures_total 7");
	assert_has_line(r, "# TYPE mailport_message_accept_duration_seconds histogram");
	assert_has_line(r, "mailport_message_accept_duration_seconds_bucket{le=\"0.0005\"} 1");
	assert_has_line(r, "mailport_message_accept_duration_seconds_bucket{le=\"0.01\"} 1");
	assert_has_line(r, "mailport_message_accept_duration_seconds_bucket{le=\"0.025\"} 2");
	assert_has_line(r, "mailport_message_accept_duration_seconds_bucket{le=\"5\"} 2");
	assert_has_line(r, "mailport_message_accept_duration_seconds_bucket{le=\"+Inf\"} 3");
	assert_has_line(r, "mailport_message_accept_duration_seconds_sum 9.020300");
	assert_has_line(r, "mailport_message_accept_duration_seconds_count 3");
	assert_has_line(r, "mailport_messages_accepted_total 11");
	assert_has_line(r, "mailport_message_bytes_total 123456");
	assert_has_line(r, "mailport_store_failures_total 1");
	assert_has_line(r, "mailport_ready 1");
	assert_has_line(r, "mailport_draining 0");
	assert_has_line(r, "mailport_info{version=\"1.2.3-test\"} 1");
	assert_has_line(r, "mailport_listener_connections_active{address=\"127.0.0.1\","
	                   "port=\"2525\"} 1");
	assert_has_line(r, "mailport_listener_connections_total{address=\"::1\",port=\"3535\"} 7");
	assert_has_line(r, "mailport_listener_messages_accepted_total{address=\"::1\","
	                   "port=\"3535\"} 5");
	assert_non_null(strstr(r->body, "\nmailport_uptime_seconds "));
	assert_non_null(strstr(r->body, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(r->body, "\nprocess_open_fds "));
	assert_non_null(strstr(r->body, "\nprocess_cpu_seconds_total "));
	assert_non_null(strstr(r->body, "\nprocess_start_time_seconds "));
	assert_null(strstr(r->body, "\nprocess_resident_memory_bytes 0\n"));
	assert_null(strstr(r->body, "\nprocess_start_time_seconds 0"));
	/* Every sample line has a # TYPE for its family. */
	assert_int_equal(r->body[r->body_len - 1], '\n');
}

static void set_metric_counters(struct fixture *f)
{
	stats_lock(&f->st);
	f->st.c.connections_active = 3;
	f->st.c.connections_total = 17;
	f->st.c.connections_refused = 2;
	f->st.c.messages_accepted = 11;
	f->st.c.messages_rejected = 4;
	f->st.c.messages_bytes = 123456;
	f->st.c.store_failures = 1;
	/* issue 7: by reason, by class, TLS, AUTH, the latency histogram */
	f->st.c.refused[STATS_REFUSED_MAX_CONNECTIONS] = 1;
	f->st.c.refused[STATS_REFUSED_PROXY_UNTRUSTED] = 1;
	f->st.c.rejected_4xx = 1;
	f->st.c.rejected_5xx = 3;
	f->st.c.tls_handshakes = 5;
	f->st.c.tls_handshake_failures = 2;
	f->st.c.auth_failures = 7;
	stats_observe_accept(&f->st.c, 300);     /* 0.3 ms */
	stats_observe_accept(&f->st.c, 20000);   /* 20 ms */
	stats_observe_accept(&f->st.c, 9000000); /* 9 s: only +Inf */
	f->st.listeners[0].connections_active = 1;
	f->st.listeners[1].connections_total = 7;
	f->st.listeners[1].messages_accepted = 5;
	stats_unlock(&f->st);
}

static void test_metrics_open(void **state)
{
	struct fixture *f = *state;
	set_metric_counters(f);
	struct reply r;
	get(f, "/metrics", &r);
	assert_int_equal(r.status, 200);
	check_metrics_body(&r);
	reply_free(&r);
}

static void test_metrics_token(void **state)
{
	struct fixture *f = *state;
	set_metric_counters(f);
	struct reply r;
	char v[128];
	const char *bad[] = {NULL,
	                     "Authorization: Bearer wrong\r\n",
	                     "Authorization: Bearer " TOKEN "x\r\n",
	                     "Authorization: Bearer s3cret-toke\r\n",
	                     "Authorization: Basic " TOKEN "\r\n",
	                     "Authorization: Bearer\r\n",
	                     "Authorization: " TOKEN "\r\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		request_on(AF_INET, f->port, "GET", "/metrics", bad[i], &r);
		expect_json(&r, 401, "error", "unauthorized");
		assert_non_null(header(&r, "WWW-Authenticate", v, sizeof v));
		assert_int_equal(strncmp(v, "Bearer", 6), 0);
		reply_free(&r);
	}
	request_on(AF_INET, f->port, "GET", "/metrics", "Authorization: Bearer " TOKEN "\r\n", &r);
	assert_int_equal(r.status, 200);
	check_metrics_body(&r);
	reply_free(&r);
	request_on(AF_INET, f->port, "GET", "/metrics", "authorization: bearer  " TOKEN "\r\n", &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	/* Health and status never need the token. */
	const char *open[] = {"/status", "/livez", "/healthz", "/readyz"};
	for (size_t i = 0; i < 4; i++) {
		get(f, open[i], &r);
		assert_int_equal(r.status, 200);
		reply_free(&r);
	}
}

static void test_not_found_and_method(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	const char *missing[] = {"/", "/nope", "/status/", "/messagesx", "/STATUS"};
	for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		get(f, missing[i], &r);
		expect_json(&r, 404, "error", "not found");
		reply_free(&r);
	}
	request_on(AF_INET, f->port, "DELETE", "/nope", NULL, &r);
	expect_json(&r, 404, "error", "not found");
	reply_free(&r);
	/* Without a spool (SMTPD_DELIVER=discard) the messages API is empty. */
	get(f, "/messages", &r);
	assert_int_equal(r.status, 200);
	json_t *j = json_body(&r);
	assert_int_equal(int_at(j, "total"), 0);
	json_decref(j);
	reply_free(&r);
	get(f, "/messages/abc/raw", &r);
	expect_json(&r, 404, "error", "no such message");
	reply_free(&r);

	char v[64];
	const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
	for (size_t i = 0; i < 4; i++) {
		request_on(AF_INET, f->port, methods[i], "/status", NULL, &r);
		expect_json(&r, 405, "error", "method not allowed");
		assert_non_null(header(&r, "Allow", v, sizeof v));
		assert_string_equal(v, "GET, HEAD");
		reply_free(&r);
	}
	/* A body is read and discarded. */
	request_on(AF_INET, f->port, "POST", "/metrics", "Content-Length: 11\r\n\r\nhello world",
	           &r);
	expect_json(&r, 405, "error", "method not allowed");
	reply_free(&r);
}

static void test_head(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	request_on(AF_INET, f->port, "HEAD", "/status", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	char v[64];
	assert_non_null(header(&r, "Content-Type", v, sizeof v));
	assert_string_equal(v, "application/json");
	assert_non_null(header(&r, "Content-Length", v, sizeof v));
	assert_true(atoi(v) > 100);
	reply_free(&r);
	request_on(AF_INET, f->port, "HEAD", "/readyz", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	reply_free(&r);
}

/* Without a token a Host that is not an IP, localhost or listed is 403 on
 * every route but health: a page in a browser cannot rebind a name to us. */
static void test_host_check(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *req;
		unsigned status;
	} cases[] = {
	    {"GET /status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 403},
	    {"GET /metrics HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n", 403},
	    {"GET /livez HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 200},
	    {"GET /readyz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 200},
	    {"GET /status HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n", 200},
	    {"GET /status HTTP/1.0\r\n\r\n", 200},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int fd = connect_to(AF_INET, f->port);
		struct reply r;
		send_all(fd, cases[i].req);
		read_reply(fd, &r, false);
		if (r.status != (int)cases[i].status)
			fail_msg("%s: %d, want %u", cases[i].req, r.status, cases[i].status);
		reply_free(&r);
		close(fd);
	}
}

static void test_keepalive(void **state)
{
	struct fixture *f = *state;
	int fd = connect_to(AF_INET, f->port);
	struct reply r;
	char v[64];
	/* The first request carries a body that must be skipped. */
	send_all(fd,
	         "GET /livez HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 5\r\n\r\nhello");
	read_reply(fd, &r, false);
	expect_json(&r, 200, "status", "ok");
	assert_null(header(&r, "Connection", v, sizeof v));
	reply_free(&r);
	send_all(fd, "GET /readyz HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
	read_reply(fd, &r, false);
	expect_json(&r, 200, "status", "ready");
	assert_null(header(&r, "Connection", v, sizeof v));
	reply_free(&r);
	send_all(fd, "GET /status HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n");
	read_reply(fd, &r, false);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	char c;
	assert_int_equal(recv(fd, &c, 1, 0), 0); /* closed as asked */
	close(fd);
}

/* The front door's decision (httpd_front.h), from the first bytes alone. */
static uint16_t closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	socklen_t sl = sizeof sin;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void test_healthcheck(void **state)
{
	struct fixture *f = *state;
	char s[64];
	snprintf(s, sizeof s, "127.0.0.1:%u", (unsigned)f->port);
	assert_int_equal(httpd_healthcheck(s), 0);
	snprintf(s, sizeof s, "0.0.0.0:%u", (unsigned)f->port);
	assert_int_equal(httpd_healthcheck(s), 0);

	stats_lock(&f->st);
	f->st.c.draining = true;
	stats_unlock(&f->st);
	snprintf(s, sizeof s, "127.0.0.1:%u", (unsigned)f->port);
	assert_int_equal(httpd_healthcheck(s), 1);
	stats_lock(&f->st);
	f->st.c.draining = false;
	stats_unlock(&f->st);
	assert_int_equal(httpd_healthcheck(s), 0);

	assert_int_equal(httpd_healthcheck("off"), 1);
	assert_int_equal(httpd_healthcheck("OFF"), 1);
	assert_int_equal(httpd_healthcheck(""), 1);
	const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0",    "127.0.0.1:65536",
	                     "::1:8080",  "[::1]8080",  "localhost:8080", "127.0.0.1:80x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(httpd_healthcheck(bad[i]), 1);
	snprintf(s, sizeof s, "127.0.0.1:%u", (unsigned)closed_port());
	assert_int_equal(httpd_healthcheck(s), 1);
}

/* A peer that accepts and answers something that is not HTTP, or nothing. */
static void test_healthcheck_not_http(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(fd, 4), 0);
	socklen_t sl = sizeof sin;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	char s[64];
	snprintf(s, sizeof s, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	/* Nobody accepts: the kernel completes the handshake, no answer comes,
	 * and the probe gives up after its timeout. */
	uint64_t t0 = stats_now_ms();
	assert_int_equal(httpd_healthcheck(s), 1);
	uint64_t took = stats_now_ms() - t0;
	assert_true(took >= 2500 && took < 6000);
	close(fd);
}

static void *answer_smtp(void *arg)
{
	int lfd = *(int *)arg;
	int fd = accept(lfd, NULL, NULL);
	if (fd >= 0) {
		send(fd, "220 mx ESMTP mailport\r\n", 23, MSG_NOSIGNAL);
		close(fd);
	}
	return NULL;
}

/* An SMTP port given as SMTPD_HTTP by mistake: not an HTTP reply. */
static void test_healthcheck_wrong_protocol(void **state)
{
	(void)state;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(lfd, 4), 0);
	socklen_t sl = sizeof sin;
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, answer_smtp, &lfd), 0);
	char s[64];
	snprintf(s, sizeof s, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	assert_int_equal(httpd_healthcheck(s), 1);
	pthread_join(t, NULL);
	close(lfd);
}

static void test_address_in_use(void **state)
{
	struct fixture *f = *state;
	struct endpoint ep;
	make_endpoint(&ep, AF_INET, "127.0.0.1", f->port);
	struct httpd_options opt = {.bind = &ep, .version = "x", .token = "", .stats = &f->st};
	struct httpd *h2 = (struct httpd *)&ep; /* must be reset to NULL */
	char err[256];
	int rc = httpd_start(&opt, &h2, err, sizeof err);
	assert_int_equal(rc, -EADDRINUSE);
	assert_null(h2);
	char want[128];
	snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%u: Address already in use",
	         (unsigned)f->port);
	assert_string_equal(err, want);
	httpd_stop(NULL);
}

static void test_ipv6(void **state)
{
	struct fixture *f = *state;
	struct endpoint ep;
	make_endpoint(&ep, AF_INET6, "::1", 0);
	struct httpd_options opt = {.bind = &ep, .version = "x", .token = "", .stats = &f->st};
	struct httpd *h6;
	char err[256];
	if (httpd_start(&opt, &h6, err, sizeof err) != 0) {
		print_message("no IPv6 loopback here (%s): skipped\n", err);
		skip();
	}
	uint16_t port = httpd_port(h6);
	assert_true(port != 0);
	struct reply r;
	request_on(AF_INET6, port, "GET", "/readyz", NULL, &r);
	expect_json(&r, 200, "status", "ready");
	reply_free(&r);
	char s[64];
	snprintf(s, sizeof s, "[::1]:%u", (unsigned)port);
	assert_int_equal(httpd_healthcheck(s), 0);
	snprintf(s, sizeof s, "[::]:%u", (unsigned)port);
	assert_int_equal(httpd_healthcheck(s), 0);
	httpd_stop(h6);
	/* Stopped means closed: the port refuses now. */
	assert_int_equal(httpd_healthcheck(s), 1);
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* httpd_stop() closes the listening socket we handed to libmicrohttpd, and a
 * failed start closes everything it opened. */
static void test_no_fd_leak(void **state)
{
	(void)state;
	struct fixture *f;
	int before = count_fds();
	setup((void **)&f);
	int fd = connect_to(AF_INET, f->port);
	send_all(fd, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
	struct reply r;
	read_reply(fd, &r, false);
	reply_free(&r);
	/* Left open on purpose: stopping must close the server's side too. */
	struct endpoint ep;
	make_endpoint(&ep, AF_INET, "127.0.0.1", f->port);
	struct httpd_options opt = {.bind = &ep, .version = "x", .token = "", .stats = &f->st};
	struct httpd *h2;
	char err[256];
	assert_int_equal(httpd_start(&opt, &h2, err, sizeof err), -EADDRINUSE);
	teardown((void **)&f);
	char c;
	assert_int_equal(recv(fd, &c, 1, 0), 0);
	close(fd);
	assert_int_equal(count_fds(), before);
}

/* Many clients at once while the "loop" changes counters: TSan's test. */
static void test_concurrent(void **state)
{
	struct fixture *f = *state;
	int fds[16];
	for (size_t i = 0; i < 16; i++) {
		fds[i] = connect_to(AF_INET, f->port);
		send_all(fds[i],
		         i % 2 ? "GET /status HTTP/1.0\r\n\r\n" : "GET /metrics HTTP/1.0\r\n\r\n");
		stats_lock(&f->st);
		f->st.c.connections_total++;
		f->st.listeners[0].connections_total++;
		stats_unlock(&f->st);
		stats_beat(&f->st);
	}
	for (size_t i = 0; i < 16; i++) {
		struct reply r;
		read_reply(fds[i], &r, false);
		assert_int_equal(r.status, 200);
		reply_free(&r);
		close(fds[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_status, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_livez, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics_token, setup_token, teardown),
	    cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_check, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_healthcheck, setup, teardown),
	    cmocka_unit_test(test_healthcheck_not_http),
	    cmocka_unit_test(test_healthcheck_wrong_protocol),
	    cmocka_unit_test_setup_teardown(test_address_in_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	    cmocka_unit_test(test_no_fd_leak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
