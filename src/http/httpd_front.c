/* httpd_front: the side port's front door; see httpd_front.h. */
#include "httpd_front.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define FRONT_EVENTS    64
#define FRONT_PIPELINED 32
/* How often deadlines are looked at, and how long accept() pauses when the
 * process is out of descriptors and nothing can be dropped. */
#define FRONT_TICK_MS  100
#define FRONT_PAUSE_MS 100
/* epoll data of the two descriptors that are not connections. */
#define FRONT_TAG_LISTEN UINT64_MAX
#define FRONT_TAG_WAKE   (UINT64_MAX - 1)

struct front_conn {
	int fd; /* -1: free slot */
	uint64_t deadline_ms;
	uint64_t since_ms; /* accepted (or last answered), for "waited longest" */
	bool got_bytes;    /* anything ever received: 408 at the deadline, else a silent close */
	socklen_t addrlen;
	struct sockaddr_storage addr;
};

struct httpd_front {
	int lfd, ep, wake;
	pthread_t thread;
	bool started;
	struct MHD_Daemon *mhd;
	httpd_front_health_fn health;
	void *ctx;
	bool listen_paused;
	uint64_t paused_until;
	size_t nfree;
	uint32_t free_slots[HTTPD_FRONT_MAX];
	struct front_conn conns[HTTPD_FRONT_MAX];
};

static uint64_t front_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the pure part -------------------------------------------------------- */

static const char *const front_health_paths[] = {"/livez", "/healthz", "/readyz"};

/* The end of the request head (the byte after its empty line), or 0. */
static size_t front_head_end(const char *d, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (d[i] != '\n')
			continue;
		if (i + 1 < len && d[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && d[i + 1] == '\r' && d[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A whole head that announces a body (Content-Length other than 0, or any
 * Transfer-Encoding): libmicrohttpd reads such a request, body and all. */
static bool front_has_body(const char *d, size_t head_len)
{
	for (const char *p = d; head_len != 0 && p < d + head_len;) {
		const char *e = memchr(p, '\n', (size_t)(d + head_len - p));
		if (e == NULL)
			break;
		size_t n = (size_t)(e - p);
		if (n >= 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0)
			return true;
		if (n >= 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
			for (const char *q = p + 15; q < e; q++)
				if (*q >= '1' && *q <= '9')
					return true;
		}
		p = e + 1;
	}
	return false;
}

enum httpd_front_verdict httpd_front_classify(const char *data, size_t len, size_t peek_max,
                                              char path[16], int *head)
{
	const char *nl = memchr(data, '\n', len);
	if (nl == NULL)
		return len >= peek_max ? HTTPD_FRONT_PASS : HTTPD_FRONT_WAIT;
	size_t ll = (size_t)(nl - data);
	if (ll > 0 && data[ll - 1] == '\r')
		ll--;
	for (size_t i = 0; i < ll; i++) {
		if ((unsigned char)data[i] < 0x20 || data[i] == 0x7f)
			return HTTPD_FRONT_BAD;
		/* ... or one percent-encoded: %00-%1F, %7F. */
		if (data[i] == '%' && i + 2 < ll &&
		    ((data[i + 1] == '0' || data[i + 1] == '1') &&
		     isxdigit((unsigned char)data[i + 2])))
			return HTTPD_FRONT_BAD;
		if (data[i] == '%' && i + 2 < ll && data[i + 1] == '7' &&
		    (data[i + 2] == 'f' || data[i + 2] == 'F'))
			return HTTPD_FRONT_BAD;
	}
	/* "GET /livez HTTP/1.1": method, one space, the exact path, one space, version. */
	size_t mlen = 0;
	if (ll > 4 && memcmp(data, "GET ", 4) == 0)
		mlen = 3;
	else if (ll > 5 && memcmp(data, "HEAD ", 5) == 0)
		mlen = 4;
	if (mlen != 0) {
		const char *t = data + mlen + 1, *end = data + ll;
		const char *sp = memchr(t, ' ', (size_t)(end - t));
		if (sp != NULL && end - (sp + 1) == 8 && memcmp(sp + 1, "HTTP/1.", 7) == 0 &&
		    (sp[8] == '0' || sp[8] == '1')) {
			size_t plen = (size_t)(sp - t);
			for (size_t i = 0;
			     i < sizeof front_health_paths / sizeof front_health_paths[0]; i++) {
				if (strlen(front_health_paths[i]) == plen &&
				    memcmp(front_health_paths[i], t, plen) == 0 &&
				    !front_has_body(data, front_head_end(data, len))) {
					memcpy(path, t, plen);
					path[plen] = '\0';
					*head = mlen == 4;
					return HTTPD_FRONT_HEALTH;
				}
			}
		}
	}
	if (front_head_end(data, len) != 0 || len >= peek_max)
		return HTTPD_FRONT_PASS;
	return HTTPD_FRONT_WAIT;
}

/* Keep the connection after a health answer? Only for a whole HTTP/1.1 head
 * without "Connection: close" (the head is ASCII; a header value that merely
 * contains "close" elsewhere errs on the side of closing). */
static bool front_keep_alive(const char *d, size_t head_len)
{
	const char *nl = memchr(d, '\n', head_len);
	if (nl == NULL || nl - d < 9 || memcmp(nl - (nl[-1] == '\r' ? 9 : 8), "HTTP/1.1", 8) != 0)
		return false;
	for (const char *p = nl + 1; p < d + head_len;) {
		const char *e = memchr(p, '\n', (size_t)(d + head_len - p));
		if (e == NULL)
			break;
		if ((size_t)(e - p) >= 11 && strncasecmp(p, "Connection:", 11) == 0) {
			for (const char *q = p + 11; q + 5 <= e; q++)
				if (strncasecmp(q, "close", 5) == 0)
					return false;
		}
		p = e + 1;
	}
	return true;
}

/* ---- connections ---------------------------------------------------------- */

static void front_forget(struct httpd_front *f, uint32_t i)
{
	epoll_ctl(f->ep, EPOLL_CTL_DEL, f->conns[i].fd, NULL);
	f->conns[i].fd = -1;
	f->free_slots[f->nfree++] = i;
}

static void front_close(struct httpd_front *f, uint32_t i)
{
	int fd = f->conns[i].fd;
	front_forget(f, i);
	close(fd);
}

/* Read and drop what the client sent, before a close: closing with unread
 * bytes sends a reset that can destroy our answer before the client reads it.
 * Bounded, so a client that never stops sending cannot hold the thread. */
static void front_drain(int fd)
{
	char sink[HTTPD_FRONT_PEEK];
	for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
		;
}

/* A short answer that fits any socket buffer: one non-blocking send. */
static void front_send(int fd, const char *s, size_t n)
{
	(void)!send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void front_timeout(struct httpd_front *f, uint32_t i)
{
	static const char r408[] =
	    "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
	    "Content-Length: 34\r\nConnection: close\r\n\r\n"
	    "{\"error\":\"request head too slow\"}\n";
	int fd = f->conns[i].fd;
	if (f->conns[i].got_bytes) {
		front_drain(fd);
		front_send(fd, r408, sizeof r408 - 1);
		shutdown(fd, SHUT_WR);
	}
	front_close(f, i);
}

/* The slot that has waited longest, to make room; UINT32_MAX when none. */
static uint32_t front_oldest(const struct httpd_front *f)
{
	uint32_t best = UINT32_MAX;
	for (uint32_t i = 0; i < HTTPD_FRONT_MAX; i++)
		if (f->conns[i].fd >= 0 &&
		    (best == UINT32_MAX || f->conns[i].since_ms < f->conns[best].since_ms))
			best = i;
	return best;
}

/* Answer a health request on slot i. Returns true when the connection is
 * kept for another request (then the slot is still in use). */
static bool front_answer(struct httpd_front *f, uint32_t i, const char *data, size_t len,
                         const char *path, int head)
{
	struct front_conn *c = &f->conns[i];
	size_t head_len = front_head_end(data, len);
	bool keep = head_len != 0 && front_keep_alive(data, head_len);
	char *body = NULL;
	size_t blen = 0;
	int status = f->health(f->ctx, path, &body, &blen);
	char hdr[256];
	int n;
	if (status < 0) {
		free(body);
		body = NULL;
		blen = 0;
		n = snprintf(hdr, sizeof hdr,
		             "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
		             "Connection: close\r\n\r\n");
		keep = false;
	} else {
		n = snprintf(hdr, sizeof hdr,
		             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		             "Cache-Control: no-store\r\nContent-Length: %zu\r\n%s\r\n",
		             status, status == 200 ? "OK" : "Service Unavailable", blen,
		             keep ? "" : "Connection: close\r\n");
	}
	/* Consume exactly this request (the next one may follow on a kept
	 * connection); a head still incomplete is drained, since we close. */
	char sink[HTTPD_FRONT_PEEK];
	if (keep)
		(void)!recv(c->fd, sink, head_len, MSG_DONTWAIT);
	else
		front_drain(c->fd);
	struct iovec iov[2] = {{hdr, (size_t)n}, {body, head ? 0 : blen}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(body);
	if (!keep || w != (ssize_t)((size_t)n + (head ? 0 : blen))) {
		shutdown(c->fd, SHUT_WR);
		front_close(f, i);
		return false;
	}
	/* Kept: the next request gets the same treatment, from a fresh deadline. */
	c->since_ms = front_now_ms();
	c->deadline_ms = c->since_ms + HTTPD_FRONT_HEAD_MS;
	c->got_bytes = false;
	return true;
}

static void front_readable(struct httpd_front *f, uint32_t i, uint32_t events)
{
	struct front_conn *c = &f->conns[i];
	char buf[HTTPD_FRONT_PEEK];
	/* A loop: a kept connection may already hold its next (pipelined)
	 * request, and edge triggering will not report those bytes again. At
	 * most FRONT_PIPELINED answers per wake-up, so one client cannot hold
	 * the thread; the rest waits for its next bytes or its deadline. */
	for (int answered = 0; answered < FRONT_PIPELINED;) {
		ssize_t r = recv(c->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (r <= 0) {
			front_close(f, i);
			return;
		}
		c->got_bytes = true;
		char path[16];
		int head = 0;
		switch (httpd_front_classify(buf, (size_t)r, sizeof buf, path, &head)) {
		case HTTPD_FRONT_HEALTH:
			if (!front_answer(f, i, buf, (size_t)r, path, head))
				return;
			answered++;
			continue;
		case HTTPD_FRONT_PASS: {
			int fd = c->fd;
			struct sockaddr_storage addr = c->addr;
			socklen_t alen = c->addrlen;
			front_forget(f, i);
			/* Takes the descriptor, and closes it when it cannot take the client. */
			MHD_add_connection(f->mhd, fd, (const struct sockaddr *)&addr, alen);
			return;
		}
		case HTTPD_FRONT_BAD: {
			static const char r400[] =
			    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
			    "Content-Length: 54\r\nConnection: close\r\n\r\n"
			    "{\"error\":\"bad request: control octet in the request\"}\n";
			front_drain(c->fd);
			front_send(c->fd, r400, sizeof r400 - 1);
			shutdown(c->fd, SHUT_WR);
			front_close(f, i);
			return;
		}
		case HTTPD_FRONT_WAIT:
			/* The peer stopped sending before its head was complete. */
			if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				front_close(f, i);
			return;
		}
	}
}

static void front_pause_listen(struct httpd_front *f, uint64_t now)
{
	if (!f->listen_paused) {
		epoll_ctl(f->ep, EPOLL_CTL_DEL, f->lfd, NULL);
		f->listen_paused = true;
	}
	f->paused_until = now + FRONT_PAUSE_MS;
}

static void front_accept(struct httpd_front *f)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(f->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		uint64_t now = front_now_ms();
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: the longest waiter makes room; with
				 * none to drop, accepting pauses briefly instead of spinning. */
				uint32_t old = front_oldest(f);
				if (old != UINT32_MAX) {
					front_timeout(f, old);
					continue;
				}
				front_pause_listen(f, now);
			}
			return;
		}
		if (f->nfree == 0)
			front_timeout(f, front_oldest(f));
		uint32_t i = f->free_slots[--f->nfree];
		struct front_conn *c = &f->conns[i];
		c->fd = fd;
		c->since_ms = now;
		c->deadline_ms = now + HTTPD_FRONT_HEAD_MS;
		c->got_bytes = false;
		c->addr = ss;
		c->addrlen = sl;
		/* Edge-triggered: a peeked head stays in the socket, so level
		 * triggering would wake us for it again and again. */
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = i};
		if (epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			c->fd = -1;
			f->free_slots[f->nfree++] = i;
			close(fd);
		}
	}
}

static void front_expire(struct httpd_front *f, uint64_t now)
{
	for (uint32_t i = 0; i < HTTPD_FRONT_MAX; i++)
		if (f->conns[i].fd >= 0 && f->conns[i].deadline_ms <= now)
			front_timeout(f, i);
	if (f->listen_paused && now >= f->paused_until) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = FRONT_TAG_LISTEN};
		if (epoll_ctl(f->ep, EPOLL_CTL_ADD, f->lfd, &ev) == 0)
			f->listen_paused = false;
		else
			f->paused_until = now + FRONT_PAUSE_MS;
	}
}

static void *front_main(void *arg)
{
	struct httpd_front *f = arg;
	struct epoll_event evs[FRONT_EVENTS];
	uint64_t next_expire = front_now_ms() + FRONT_TICK_MS;
	for (;;) {
		int n = epoll_wait(f->ep, evs, FRONT_EVENTS, FRONT_TICK_MS);
		for (int k = 0; k < n; k++) {
			uint64_t tag = evs[k].data.u64;
			if (tag == FRONT_TAG_WAKE)
				return NULL;
			if (tag == FRONT_TAG_LISTEN)
				front_accept(f);
			else if (tag < HTTPD_FRONT_MAX && f->conns[tag].fd >= 0)
				front_readable(f, (uint32_t)tag, evs[k].events);
		}
		uint64_t now = front_now_ms();
		if (now >= next_expire) {
			front_expire(f, now);
			next_expire = now + FRONT_TICK_MS;
		}
	}
}

int httpd_front_start(int lfd, struct MHD_Daemon *mhd, httpd_front_health_fn health, void *ctx,
                      struct httpd_front **out)
{
	*out = NULL;
	struct httpd_front *f = calloc(1, sizeof *f);
	if (f == NULL) {
		close(lfd);
		return -ENOMEM;
	}
	f->lfd = lfd;
	f->mhd = mhd;
	f->health = health;
	f->ctx = ctx;
	for (uint32_t i = 0; i < HTTPD_FRONT_MAX; i++) {
		f->conns[i].fd = -1;
		f->free_slots[i] = HTTPD_FRONT_MAX - 1 - i;
	}
	f->nfree = HTTPD_FRONT_MAX;
	f->ep = epoll_create1(EPOLL_CLOEXEC);
	f->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc = 0;
	struct epoll_event el = {.events = EPOLLIN, .data.u64 = FRONT_TAG_LISTEN};
	struct epoll_event ew = {.events = EPOLLIN, .data.u64 = FRONT_TAG_WAKE};
	if (f->ep < 0 || f->wake < 0 || epoll_ctl(f->ep, EPOLL_CTL_ADD, lfd, &el) < 0 ||
	    epoll_ctl(f->ep, EPOLL_CTL_ADD, f->wake, &ew) < 0)
		rc = -errno;
	if (rc == 0) {
		rc = -pthread_create(&f->thread, NULL, front_main, f);
		f->started = rc == 0;
	}
	if (rc < 0) {
		httpd_front_stop(f);
		return rc;
	}
	*out = f;
	return 0;
}

void httpd_front_stop(struct httpd_front *f)
{
	if (f == NULL)
		return;
	if (f->started) {
		uint64_t one = 1;
		(void)!write(f->wake, &one, sizeof one);
		pthread_join(f->thread, NULL);
	}
	for (uint32_t i = 0; i < HTTPD_FRONT_MAX; i++)
		if (f->conns[i].fd >= 0)
			close(f->conns[i].fd);
	if (f->ep >= 0)
		close(f->ep);
	if (f->wake >= 0)
		close(f->wake);
	close(f->lfd);
	free(f);
}
