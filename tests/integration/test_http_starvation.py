"""Health is never starved (issue 12, SPEC 3): slow HTTP clients, clients that
say nothing and half-sent requests hold the side port open, and /livez and
/readyz still answer on new connections (the front door answers them itself);
complete requests still reach libmicrohttpd; a head that never completes gets
408; one address cannot take more than its share of libmicrohttpd's slots.
No timing is asserted beyond the clients' own timeouts (2 s, the manifests'
probe timeout); the 100 ms figures are measured by bench/http_starve.py."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

SLOW_HEALTH = 300  # send "GET /livez HTTP/1.1\r\n" and never finish (the attack)
SILENT = 100       # connect and say nothing
SLOW_OTHER = 100   # half a /messages request


def request(port, raw, timeout=2.0):
    """One request on a new connection; (status, headers text, body)."""
    return h.http_exchange(port, raw, timeout)


def get(port, path, extra=b""):
    return request(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra +
                   b"\r\n")


class TestHealthNotStarved(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        self.mp = self.mailport()
        self.port = self.mp.http_port
        self.held = []
        self.addCleanup(self.release)

    def release(self):
        for s in self.held:
            try:
                s.close()
            except OSError:
                pass
        self.held = []

    def hold(self, n, first=b""):
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if first:
                s.sendall(first)
            self.held.append(s)

    def test_probes_answer_while_slow_clients_hold_the_port(self):
        self.hold(SLOW_HEALTH, b"GET /livez HTTP/1.1\r\n")
        self.hold(SILENT)
        self.hold(SLOW_OTHER, b"GET /messages HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(20):
            for path in ("/livez", "/healthz", "/readyz"):
                st, head, body = get(self.port, path)
                self.assertEqual(st, 200, "%s sample %d: %r %r" % (path, i, head, body))
                self.assertEqual(json.loads(body)["status"], "ok" if path != "/readyz" else "ready")
                self.assertIn("application/json", head)
        # Whole requests still reach libmicrohttpd meanwhile.
        st, _, body = get(self.port, "/status")
        self.assertEqual(st, 200)
        self.assertTrue(json.loads(body)["ready"])
        st, _, body = get(self.port, "/messages?limit=1")
        self.assertEqual(st, 200, body)
        # HEAD of a probe: the headers, no body.
        st, head, body = request(self.port,
                                 b"HEAD /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertEqual((st, body), (200, b""))
        self.assertRegex(head, r"(?i)content-length: [1-9]")

    def test_slow_probe_is_answered_before_its_headers_end(self):
        """The issue's attacker sends a probe's request line and stops: it gets
        its answer at once and the connection is closed, holding nothing."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.held.append(s)
        s.sendall(b"GET /readyz HTTP/1.1\r\n")
        data = b""
        while not data.endswith(b"\n") or b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertIn(b"Connection: close", data)

    def test_head_that_never_completes_gets_408(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.held.append(s)
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t = time.monotonic()
        data = s.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data)
        self.assertLess(time.monotonic() - t, 9.0)
        self.assertEqual(s.recv(1), b"")  # and closed

    def test_keep_alive_probes_and_pipelining(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=3)
        self.held.append(s)
        # Two probes and a status in one write: answered in order on one connection.
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200 "), 3, data[:600])
        self.assertIn(b'"status":"ok"', data)
        self.assertIn(b'"status":"ready"', data)
        self.assertIn(b'"service":"mailport"', data)

    def test_one_address_cannot_take_every_slot(self):
        """Keep-alive connections with whole requests from one address: past the
        per-address limit libmicrohttpd closes them unanswered; probes from the
        same address still answer."""
        answered = closed = 0
        for _ in range(80):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            self.held.append(s)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                d = None
            if d and d.startswith(b"HTTP/1.1 200"):
                answered += 1
            elif d == b"" or d is None:
                closed += 1
        self.assertGreater(closed, 0, "no per-address limit: %d answered" % answered)
        self.assertGreaterEqual(answered, 32)
        self.assertEqual(get(self.port, "/livez")[0], 200)
        self.assertEqual(get(self.port, "/readyz")[0], 200)


if __name__ == "__main__":
    h.main()
