#!/usr/bin/python3
"""Issue 17, the server side of the web UI: GET /events (Server-Sent Events for
every stored, state-changed and deleted message, from the spool's own paths:
SMTP, the webhook's moves, DELETE, retention), its client limit and token rules,
/livez untouched by event clients, the web UI's files at / (and SMTPD_HTTP_UI=off),
and retention by count and by age."""

import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

TOKEN = "ev-t0ken"


class SSE:
    """One /events stream over a raw socket, HTTP/1.1 as EventSource speaks it
    (chunked transfer decoded here), so a read timeout leaves it usable."""

    def __init__(self, mp, path="/events", headers=None, timeout=10):
        self.sock = socket.create_connection((mp.http_host, mp.http_port), timeout=timeout)
        hdrs = {"Host": "127.0.0.1:%d" % mp.http_port, "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        req = "GET %s HTTP/1.1\r\n" % path + "".join(
            "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.raw = b""
        self.text = b""  # decoded body not yet parsed
        self.comments = []
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            self._recv(deadline)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.body = b""
        if not self.chunked and "content-length" in self.headers:
            n = int(self.headers["content-length"])
            while len(self.raw) < n:
                self._recv(deadline)
            self.body = self.raw[:n]

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("stream ended")
        self.raw += data

    def _decode(self):
        if not self.chunked:
            self.text += self.raw
            self.raw = b""
            return
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + size + 2:
                return
            if size == 0:
                raise AssertionError("stream ended")
            self.text += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]

    def next_event(self, timeout=5.0):
        """(event, data) of the next event; comments are kept in .comments."""
        deadline = time.monotonic() + timeout
        while True:
            self._decode()
            while b"\n\n" in self.text:
                block, self.text = self.text.split(b"\n\n", 1)
                name, data = None, None
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                if name is not None:
                    return name, json.loads(data)
            try:
                self._recv(deadline)
            except socket.timeout:
                raise AssertionError("no event within %.1f s" % timeout)

    def close(self):
        self.sock.close()


def message(n, subject=None):
    subject = subject or "event %d" % n
    return (b"Subject: " + subject.encode() + b"\r\nFrom: a@x.example\r\n\r\nbody %d\r\n" % n)


class EventsCase(h.PortCase):
    def send(self, n, subject=None):
        return self.send_raw(message(n, subject))

    def sse(self, **kw):
        s = SSE(self.mp, **kw)
        self.addCleanup(s.close)
        return s

    def get_json(self, path, headers=None, want=200):
        st, hdr, body = self.mp.http("GET", path, headers=headers)
        self.assertEqual(st, want, body)
        return json.loads(body)


class TestEvents(EventsCase):
    def test_stored_and_deleted_carry_the_list_entry(self):
        self.start()
        s = self.sse()
        self.assertEqual(s.status, 200)
        self.assertEqual(s.headers["content-type"], "text/event-stream")
        mid = self.send(1)
        name, data = s.next_event()
        self.assertEqual(name, "stored")
        entry = self.get_json("/messages")["messages"][0]
        self.assertEqual(data, entry)
        self.assertEqual(data["subject"], "event 1")
        st, _, _ = self.mp.http("DELETE", "/messages/" + mid)
        self.assertEqual(st, 204)
        name, data = s.next_event()
        self.assertEqual((name, data), ("deleted", {"id": mid}))
        self.assertIn(": connected", s.comments)

    def test_delete_all_emits_one_deleted_event_each(self):
        """DELETE /messages (the MIME half's route) goes through the spool's
        delete path, so /events reports every message with no code of its own."""
        self.start()
        ids = [self.send(i) for i in range(3)]
        s = self.sse()
        st, _, _ = self.mp.http("DELETE", "/messages")
        self.assertEqual(st, 204)
        got = set()
        for _ in ids:
            name, data = s.next_event()
            self.assertEqual(name, "deleted")
            got.add(data["id"])
        self.assertEqual(got, set(ids))

    def test_state_events_follow_the_webhook(self):
        rcv = Receiver(lambda req, r: 400 if b"refuse me" in req.raw() else 200)
        self.addCleanup(rcv.close)
        self.start({"SMTPD_WEBHOOK_URL": rcv.url})
        s = self.sse()
        ok = self.send(1)
        bad = self.send(2, subject="refuse me")
        seen = {}
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            name, data = s.next_event(timeout=10)
            if name == "state":
                seen[data["id"]] = data["state"]
        self.assertEqual(seen, {ok: "delivered", bad: "failed"})

    def test_many_clients_each_get_every_event(self):
        self.start()
        clients = [self.sse() for _ in range(5)]
        ids = [self.send(i) for i in range(3)]
        for c in clients:
            got = [c.next_event()[1]["id"] for _ in ids]
            self.assertEqual(got, ids)

    def test_client_limit_503_and_health_unaffected(self):
        self.start({"SMTPD_HTTP_MAX_EVENT_CLIENTS": "2"})
        a, b = self.sse(), self.sse()
        self.assertEqual((a.status, b.status), (200, 200))
        over = self.sse()
        self.assertEqual(over.status, 503)
        self.assertEqual(over.headers["content-type"], "application/json")
        self.assertIn("SMTPD_HTTP_MAX_EVENT_CLIENTS", json.loads(over.body)["error"])
        self.assertEqual(self.mp.status()["events"]["clients"], 2)
        # Streams hold no slot other routes need: probes and the API answer.
        for _ in range(20):
            t0 = time.monotonic()
            st, _, _ = self.mp.http("GET", "/livez")
            self.assertEqual(st, 200)
            self.assertLess(time.monotonic() - t0, 0.5)
        self.assertEqual(self.get_json("/messages")["total"], 0)
        # A client that left frees its slot (noticed within about a second).
        a.close()
        deadline = time.monotonic() + 5
        while self.mp.status()["events"]["clients"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        c = self.sse()
        self.assertEqual(c.status, 200)

    def test_one_address_holds_at_most_32_streams(self):
        """Streams from one address stop at 32 of its 64 connections, so the
        other routes keep slots; another address still gets one."""
        self.start()
        streams = [self.sse() for _ in range(32)]
        self.assertEqual({s.status for s in streams}, {200})
        over = self.sse()
        self.assertEqual(over.status, 503)
        self.assertIn("this address", json.loads(over.body)["error"])
        for _ in range(20):
            self.assertEqual(self.get_json("/messages")["total"], 0)
        other = socket.create_connection(("127.0.0.1", self.mp.http_port), timeout=5,
                                         source_address=("127.0.0.2", 0))
        self.addCleanup(other.close)
        other.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(other.recv(4096).startswith(b"HTTP/1.1 200"))

    def test_token_header_or_query_on_events_only(self):
        self.start({"SMTPD_HTTP_TOKEN": TOKEN})
        st, _, _ = self.mp.http("GET", "/events")
        self.assertEqual(st, 401)
        st, _, _ = self.mp.http("GET", "/events?token=wrong")
        self.assertEqual(st, 401)
        s = self.sse(path="/events?token=" + TOKEN)
        self.assertEqual(s.status, 200)
        s2 = self.sse(headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(s2.status, 200)
        # The query form is for EventSource, on /events only.
        st, _, _ = self.mp.http("GET", "/messages?token=" + TOKEN)
        self.assertEqual(st, 401)
        mid = self.send(1)
        self.assertEqual(s.next_event()[1]["id"], mid)

    def test_wrong_method(self):
        self.start()
        st, hdr, _ = self.mp.http("POST", "/events")
        self.assertEqual(st, 405)
        self.assertEqual(hdr["allow"], "GET, HEAD")

    def test_heartbeat_comment(self):
        self.start()
        s = self.sse(timeout=25)
        deadline = time.monotonic() + 20
        while ": heartbeat" not in s.comments and time.monotonic() < deadline:
            try:
                s.next_event(timeout=1)
            except AssertionError:
                pass
        self.assertIn(": heartbeat", s.comments)

    def test_stop_with_streams_open(self):
        mp = self.start()
        streams = [self.sse() for _ in range(3)]
        self.send(1)
        for s in streams:
            s.next_event()
        t0 = time.monotonic()
        self.assertEqual(mp.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIsNone(mp.sanitizer_report())


class TestUI(EventsCase):
    def test_ui_files(self):
        self.start()
        st, hdr, body = self.mp.http("GET", "/")
        self.assertEqual(st, 200)
        self.assertEqual(hdr["content-type"], "text/html; charset=utf-8")
        self.assertIn("script-src 'self'", hdr["content-security-policy"])
        self.assertIn(b'src="ui/app.js"', body)
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "web", "app.js"), "rb") as f:
            want = f.read()
        st, hdr, body = self.mp.http("GET", "/ui/app.js")
        self.assertEqual((st, body), (200, want))
        self.assertEqual(hdr["content-type"], "text/javascript; charset=utf-8")
        st, _, _ = self.mp.http("GET", "/ui/style.css")
        self.assertEqual(st, 200)
        st, _, body = self.mp.http("GET", "/ui/nope.js")
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(body)["error"], "not found")
        st, _, _ = self.mp.http("POST", "/")
        self.assertEqual(st, 405)
        # Without a token, the Host check covers the UI like the API.
        st, _, _ = self.mp.http("GET", "/", headers={"Host": "evil.example"})
        self.assertEqual(st, 403)

    def test_ui_off(self):
        self.start({"SMTPD_HTTP_UI": "off"})
        for path in ("/", "/ui/app.js"):
            st, hdr, body = self.mp.http("GET", path)
            self.assertEqual(st, 404, path)
            self.assertEqual(hdr["content-type"], "application/json")
            self.assertIn("error", json.loads(body))
        st, _, _ = self.mp.http("GET", "/livez")
        self.assertEqual(st, 200)


class TestRetention(EventsCase):
    def test_max_messages_oldest_first(self):
        self.start({"SMTPD_RETENTION_MAX_MESSAGES": "3"})
        s = self.sse()
        ids = [self.send(i) for i in range(5)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = self.get_json("/messages")
            if data["total"] == 3:
                break
            time.sleep(0.05)
        self.assertEqual([m["id"] for m in data["messages"]], ids[:1:-1])
        # The message leaves the index first, its envelope right after.
        gone = [os.path.join(self.mp.spool, d, mid + x)
                for mid in ids[:2] for d, x in (("new", ""), ("meta", ".json"))]
        deadline = time.monotonic() + 5
        while any(map(os.path.exists, gone)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([p for p in gone if os.path.exists(p)], [])
        st = self.mp.status()["retention"]
        self.assertEqual(st, {"max_messages": 3, "max_age_seconds": 0, "removed": 2})
        deleted = set()
        deadline = time.monotonic() + 5
        while len(deleted) < 2 and time.monotonic() < deadline:
            name, d = s.next_event()
            if name == "deleted":
                deleted.add(d["id"])
        self.assertEqual(deleted, set(ids[:2]))

    def test_max_age(self):
        # A message from 2001 (its id says when it arrived), put into the spool
        # before start-up, and one sent now: only the old one goes.
        old = "1000000000.M000001P1Q1.old.example"
        self.mp = self.new_mailport()
        for d in ("new", "meta"):
            os.makedirs(os.path.join(self.mp.spool, d), exist_ok=True)
        with open(os.path.join(self.mp.spool, "new", old), "wb") as f:
            f.write(b"Subject: old\n\nold\n")
        with open(os.path.join(self.mp.spool, "meta", old + ".json"), "w") as f:
            json.dump({"id": old, "mail_from": "a@x", "rcpt_to": ["b@y"], "size": 17}, f)
        self.port = h.free_port()
        self.mp.start({"SMTPD_PORTS": str(self.port), "SMTPD_RETENTION_MAX_AGE": "1h"})
        young = self.send(2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ids = [m["id"] for m in self.get_json("/messages")["messages"]]
            if old not in ids:
                break
            time.sleep(0.1)
        self.assertEqual(ids, [young])
        self.assertFalse(os.path.exists(os.path.join(self.mp.spool, "new", old)))
        self.assertFalse(os.path.exists(os.path.join(self.mp.spool, "meta", old + ".json")))
        st = self.mp.status()["retention"]
        self.assertEqual(st, {"max_messages": 0, "max_age_seconds": 3600, "removed": 1})

    def test_off_by_default(self):
        self.start()
        for i in range(3):
            self.send(i)
        time.sleep(1.5)
        self.assertEqual(self.get_json("/messages")["total"], 3)
        self.assertEqual(self.mp.status()["retention"],
                         {"max_messages": 0, "max_age_seconds": 0, "removed": 0})

    def test_bad_values_exit_2(self):
        for env, var in (({"SMTPD_RETENTION_MAX_AGE": "soon"}, "SMTPD_RETENTION_MAX_AGE"),
                         ({"SMTPD_RETENTION_MAX_MESSAGES": "-1"}, "SMTPD_RETENTION_MAX_MESSAGES"),
                         ({"SMTPD_HTTP_MAX_EVENT_CLIENTS": "0"}, "SMTPD_HTTP_MAX_EVENT_CLIENTS"),
                         ({"SMTPD_HTTP_UI": "maybe"}, "SMTPD_HTTP_UI")):
            r = h.run(["--check-config"], env=env)
            self.assertEqual(r.returncode, 2, (env, r.stderr))
            self.assertIn(var, r.stderr)


if __name__ == "__main__":
    h.main(timeout=240)
