#!/usr/bin/python3
"""The HTTP side port (SPEC 3): /status and its counters, /livez, /healthz,
/readyz, /metrics, 404/405 JSON errors, SMTPD_HTTP=off, and
`mailport --healthcheck`."""

import json
import os
import re
import smtplib
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = b"Subject: counters\r\n\r\nhello\r\n"



def wait_for(pred, timeout=3.0):
    return h.wait_for(pred, timeout)


class TestHttp(h.MailportTestCase):
    def start(self, **env):
        self.p1, self.p2 = h.free_ports(2, "127.0.0.1", "::1")
        e = {"SMTPD_HOSTS": "127.0.0.1, ::1", "SMTPD_PORTS": "%d, %d" % (self.p1, self.p2)}
        e.update(env)
        self.mp = self.mailport(e)
        return self.mp

    def json_response(self, method, path, want_status):
        st, hdr, body = self.mp.http(method, path)
        self.assertEqual(st, want_status, "%s %s: %d %r" % (method, path, st, body[:300]))
        self.assertTrue(hdr.get("content-type", "").startswith("application/json"),
                        "%s %s: content-type %r" % (method, path, hdr.get("content-type")))
        return json.loads(body)

    def listener(self, st, addr, port):
        ls = [l for l in st["listeners"] if l["address"] == addr and l["port"] == port]
        self.assertEqual(len(ls), 1, st["listeners"])
        return ls[0]

    def test_status_structure(self):
        self.start(SMTPD_HOSTNAME="status.test.example")
        st = self.json_response("GET", "/status", 200)
        self.assertEqual(st["service"], "mailport")
        self.assertIsInstance(st["version"], str)
        v = h.run(["--version"]).stdout
        self.assertIn(st["version"], v, "/status version differs from --version")
        self.assertEqual(st["hostname"], "status.test.example")
        self.assertRegex(st["started_at"], h.RFC3339)
        self.assertIsInstance(st["uptime_seconds"], (int, float))
        self.assertGreaterEqual(st["uptime_seconds"], 0)
        self.assertLess(st["uptime_seconds"], 60)
        self.assertIs(st["ready"], True)
        self.assertIs(st["draining"], False)
        self.assertEqual(st["connections"], {"active": 0, "total": 0, "refused": 0})
        self.assertEqual(st["messages"], {"accepted": 0, "rejected": 0, "bytes": 0})
        want = [
            {"address": "127.0.0.1", "port": self.p1, "family": "ipv4", "any": False, "tls": "none",
             "state": "listening", "connections_active": 0, "connections_total": 0,
             "messages_accepted": 0},
            {"address": "::1", "port": self.p2, "family": "ipv6", "any": False, "tls": "none",
             "state": "listening", "connections_active": 0, "connections_total": 0,
             "messages_accepted": 0},
        ]
        got = [{k: l.get(k) for k in want[0]} for l in st["listeners"]]
        self.assertEqual(sorted(got, key=lambda l: l["port"]), sorted(want, key=lambda l: l["port"]))
        time.sleep(1.1)
        st2 = self.mp.status()
        self.assertGreaterEqual(st2["uptime_seconds"], 1)
        self.assertEqual(st2["started_at"], st["started_at"])

    def test_counters(self):
        self.start()
        s = smtplib.SMTP("127.0.0.1", self.p1, local_hostname="client.example", timeout=5)
        s.ehlo()
        st = wait_for(lambda: (lambda st: st if st["connections"]["active"] == 1 else None)(self.mp.status()))
        self.assertTrue(st, "connections.active never became 1: %r" % self.mp.status())
        l1 = self.listener(st, "127.0.0.1", self.p1)
        self.assertEqual(l1["connections_active"], 1)
        self.assertEqual(l1["connections_total"], 1)
        self.assertEqual(st["connections"]["total"], 1)
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.sendmail("a@x.example", ["b@y.example"], MSG + b"more\r\n")
        s.quit()
        # a second connection on the other listener, without a message
        s6 = smtplib.SMTP("::1", self.p2, local_hostname="client.example", timeout=5)
        s6.noop()
        s6.quit()

        def settled():
            st = self.mp.status()
            return st if st["connections"]["active"] == 0 and st["connections"]["total"] == 2 else None

        st = wait_for(settled)
        self.assertTrue(st, "counters did not settle: %r" % self.mp.status())
        l1 = self.listener(st, "127.0.0.1", self.p1)
        l2 = self.listener(st, "::1", self.p2)
        self.assertEqual((l1["connections_active"], l1["connections_total"], l1["messages_accepted"]),
                         (0, 1, 2), l1)
        self.assertEqual((l2["connections_active"], l2["connections_total"], l2["messages_accepted"]),
                         (0, 1, 0), l2)
        self.assertEqual(st["messages"]["accepted"], 2)
        self.assertEqual(st["messages"]["rejected"], 0)
        sizes = sum(self.mp.read_meta(m)["size"] for m in self.mp.new_files())
        self.assertEqual(sizes, 2 * len(MSG) + len(b"more\r\n"))
        self.assertEqual(st["messages"]["bytes"], sizes, "messages.bytes is not the sum of sizes")
        self.assertEqual(st["connections"]["refused"], 0)

    def test_health_endpoints(self):
        self.start()
        for path in ("/livez", "/healthz"):
            with self.subTest(path=path):
                self.assertEqual(self.json_response("GET", path, 200), {"status": "ok"})
        body = self.json_response("GET", "/readyz", 200)
        self.assertIsInstance(body, dict)

    def test_errors(self):
        self.start()
        # "/" is the web UI (issue 17; test_events.py); "/ui/<unknown>" is not.
        for path in ("/nope", "/status/x", "/ui/nope"):
            with self.subTest(path=path):
                body = self.json_response("GET", path, 404)
                self.assertIsInstance(body.get("error"), str)
        for method, path in (("POST", "/status"), ("DELETE", "/status"), ("PUT", "/livez"),
                             ("POST", "/readyz")):
            with self.subTest(method=method, path=path):
                body = self.json_response(method, path, 405)
                self.assertIsInstance(body.get("error"), str)
        # HEAD is not an error
        st, _, body = self.mp.http("HEAD", "/status")
        self.assertIn(st, (200, 405))

    def test_metrics(self):
        self.start()
        s = smtplib.SMTP("127.0.0.1", self.p1, local_hostname="client.example", timeout=5)
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.quit()
        st, hdr, body = self.mp.http_get("/metrics")
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(hdr.get("content-type", "").startswith("text/plain"), hdr)
        text = body.decode()
        samples = [l for l in text.splitlines() if l and not l.startswith("#")]
        self.assertTrue(any(l.startswith("mailport_") for l in samples), text[:500])
        for l in samples:
            self.assertRegex(l, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEinfNa]+( \d+)?$")
            self.assertTrue(l.startswith(("mailport_", "process_")), l)
        values = {l.split(" ")[0]: float(l.split(" ")[1]) for l in samples if "{" not in l}
        st = self.mp.status()
        # the counters /status shows, if exported under these names, agree with it
        for name, want in (("mailport_messages_accepted_total", st["messages"]["accepted"]),
                           ("mailport_connections_total", st["connections"]["total"]),
                           ("mailport_message_bytes_total", st["messages"]["bytes"])):
            if name in values:
                self.assertEqual(values[name], want, name)
        self.assertEqual(st["messages"]["accepted"], 1)

    def test_keep_alive(self):
        """Several requests on one connection (libmicrohttpd closes after each one
        when the response is queued on the first handler call, see TOOLS.md)."""
        import http.client
        self.start()
        conn = http.client.HTTPConnection("127.0.0.1", self.mp.http_port, timeout=5)
        self.addCleanup(conn.close)
        for path in ("/status", "/livez", "/nope", "/readyz", "/status?x=1"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            self.assertIn(r.status, (200, 404), path)
            self.assertNotEqual((r.getheader("Connection") or "").lower(), "close", path)

    def test_concurrent_requests(self):
        """Many quick requests while SMTP traffic flows."""
        self.start()
        s = smtplib.SMTP("127.0.0.1", self.p1, local_hostname="client.example", timeout=5)
        for i in range(20):
            self.assertEqual(self.mp.http_get("/status")[0], 200)
            if i % 5 == 0:
                s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.quit()
        st = wait_for(lambda: (lambda st: st if st["messages"]["accepted"] == 4 else None)(self.mp.status()))
        self.assertTrue(st, self.mp.status())

    def test_http_off(self):
        p = h.free_port()
        http_port = h.free_port()
        default_8080_before = h.connect_state("127.0.0.1", 8080)[0]
        mp = self.new_mailport()
        mp.start({"SMTPD_PORTS": str(p), "SMTPD_HTTP": "off"}, smtp_wait=("127.0.0.1", p))
        self.assertEqual(h.connect_state("127.0.0.1", http_port)[0], "refused")
        if default_8080_before == "refused":
            self.assertEqual(h.connect_state("127.0.0.1", 8080)[0], "refused",
                             "SMTPD_HTTP=off still listens on the default 8080")
        self.assertFalse(any(e.endswith(":8080") for e in mp.listening_lines()), mp.stderr())
        self.assertEqual(mp.stop(), 0)

    def test_http_on_ipv6(self):
        p = h.free_port()
        mp = self.mailport({"SMTPD_PORTS": str(p)}, http_addr="::1")
        st = mp.status()
        self.assertEqual([l["port"] for l in st["listeners"]], [p])

    def test_healthcheck(self):
        self.start()
        env = {"SMTPD_HTTP": self.mp.env["SMTPD_HTTP"]}
        r = h.run(["--healthcheck"], env=env, timeout=10)
        self.assertEqual(r.returncode, 0, "healthcheck while running: %r" % (r.stderr,))
        # the flag form works too
        r = h.run(["--healthcheck", "--http", self.mp.env["SMTPD_HTTP"]], timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.mp.stop(), 0)
        r = h.run(["--healthcheck"], env=env, timeout=10)
        self.assertEqual(r.returncode, 1, "healthcheck after stop: %d %r" % (r.returncode, r.stderr))

    def test_healthcheck_nothing_listening(self):
        port = h.free_port()
        r = h.run(["--healthcheck"], env={"SMTPD_HTTP": "127.0.0.1:%d" % port}, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_healthcheck_not_http(self):
        """Something that is not our HTTP side port (it never answers) -> 1, bounded."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        self.addCleanup(srv.close)
        t = time.monotonic()
        r = h.run(["--healthcheck"], env={"SMTPD_HTTP": "127.0.0.1:%d" % srv.getsockname()[1]},
                  timeout=15)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertLess(time.monotonic() - t, 12, "--healthcheck has no timeout worth the name")


if __name__ == "__main__":
    h.main()
