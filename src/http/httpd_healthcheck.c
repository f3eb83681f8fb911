/* httpd_healthcheck: `mailport --healthcheck`, the client side of /readyz
 * (SPEC 1), for a HEALTHCHECK in an image that has no curl. It runs in its own
 * short-lived process, so it may block, within HTTPD_HEALTHCHECK_MS in all. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

/* --healthcheck gives up after this long in total (connect, send, read). */
#define HTTPD_HEALTHCHECK_MS 3000

/* ---- --healthcheck ------------------------------------------------------- */

/* The SMTPD_HTTP value, parsed by the same endpoint_parse_hostport() that the
 * service uses, so --healthcheck accepts exactly what the service does. An ANY
 * address is probed on the loopback of its family: it answers there too, and
 * nothing else is certain to reach it. Returns 0 or -1. */
static int httpd_probe_addr(const char *s, struct endpoint *ep)
{
	if (endpoint_parse_hostport(s, ep) < 0)
		return -1;
	if (!ep->any)
		return 0;
	if (ep->family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, &ep->addr, sizeof sin);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		memcpy(&ep->addr, &sin, sizeof sin);
		snprintf(ep->text, sizeof ep->text, "127.0.0.1:%u", (unsigned)ep->port);
	} else {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, &ep->addr, sizeof sin6);
		sin6.sin6_addr = in6addr_loopback;
		memcpy(&ep->addr, &sin6, sizeof sin6);
		snprintf(ep->text, sizeof ep->text, "[::1]:%u", (unsigned)ep->port);
	}
	return 0;
}

/* Wait for `events` on fd until the deadline. Returns 0 or -ETIMEDOUT / -errno. */
static int httpd_wait(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = stats_now_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = events};
		int rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Connect, send GET /readyz, read the status line. Returns the HTTP
 * status (100-599), -EPROTO for a reply that is not HTTP, or a negative errno. */
static int httpd_probe(const struct sockaddr_storage *ss, socklen_t sl)
{
	uint64_t deadline = stats_now_ms() + HTTPD_HEALTHCHECK_MS;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (connect(fd, (const struct sockaddr *)ss, sl) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto out;
		}
		if ((rc = httpd_wait(fd, POLLOUT, deadline)) < 0)
			goto out;
		int soerr = 0;
		socklen_t len = sizeof soerr;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr) {
			rc = -soerr;
			goto out;
		}
	}
	static const char req[] = "GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n";
	size_t sent = 0;
	while (sent < sizeof req - 1) {
		ssize_t n = send(fd, req + sent, sizeof req - 1 - sent, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if ((rc = httpd_wait(fd, POLLOUT, deadline)) < 0)
				goto out;
		} else if (n < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
	}
	/* Only the status line matters: "HTTP/1.1 200 OK". */
	char line[64] = "";
	size_t got = 0;
	while (got < sizeof line - 1 && memchr(line, '\n', got) == NULL) {
		ssize_t n = recv(fd, line + got, sizeof line - 1 - got, 0);
		if (n > 0) {
			got += (size_t)n;
		} else if (n == 0) {
			break;
		} else if (errno == EAGAIN) {
			if ((rc = httpd_wait(fd, POLLIN, deadline)) < 0)
				goto out;
		} else if (errno != EINTR) {
			rc = -errno;
			goto out;
		}
	}
	line[got] = '\0';
	if (got < 12 || strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
	    line[8] != ' ' || !isdigit((unsigned char)line[9]) ||
	    !isdigit((unsigned char)line[10]) || !isdigit((unsigned char)line[11]) ||
	    (line[12] != ' ' && line[12] != '\r' && line[12] != '\n' && line[12] != '\0')) {
		rc = -EPROTO;
		goto out;
	}
	rc = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
out:
	close(fd);
	return rc;
}

int httpd_healthcheck(const char *http)
{
	if (http == NULL || *http == '\0' || strcasecmp(http, "off") == 0) {
		fprintf(stderr, "mailport: healthcheck: the HTTP side port is off (SMTPD_HTTP)\n");
		return 1;
	}
	struct endpoint ep;
	if (httpd_probe_addr(http, &ep) < 0) {
		fprintf(stderr, "mailport: healthcheck: SMTPD_HTTP: \"%s\" is not address:port\n",
		        http);
		return 1;
	}
	int rc = httpd_probe(&ep.addr, ep.addrlen);
	const char *text = ep.text;
	if (rc == 200)
		return 0;
	if (rc == -EPROTO)
		fprintf(stderr, "mailport: healthcheck: %s: not an HTTP reply\n", text);
	else if (rc < 0)
		fprintf(stderr, "mailport: healthcheck: %s: %s\n", text, strerror(-rc));
	else
		fprintf(stderr, "mailport: healthcheck: %s: answered %d\n", text, rc);
	return 1;
}
