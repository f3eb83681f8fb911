#!/usr/bin/python3
"""Webhook delivery (SPEC 5) against a receiver written with http.server:
200; 500 then 200; 400; a receiver that stalls past SMTPD_WEBHOOK_TIMEOUT; a
refused connection until SMTPD_WEBHOOK_MAX_AGE; the HMAC signature checked by
the receiver; JSON and raw bodies; SMTPD_WEBHOOK_KEEP=0; kill -9 in the middle
of a retry backlog and a restart that delivers everything; SMTPD_WEBHOOK_SYNC;
a drain that does not wait for a stalled request."""

import base64
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

SECRET = "wh-s3cret"


def msg(n):
    return b"Subject: webhook %d\r\nMessage-Id: <%d@test>\r\n\r\nbody %d\r\n" % (n, n, n)


class WebhookCase(h.MailportTestCase):
    def receiver(self, policy=None):
        rcv = Receiver(policy)
        self.addCleanup(rcv.close)
        return rcv

    def start(self, rcv_or_url, env=None, mp=None):
        url = rcv_or_url if isinstance(rcv_or_url, str) else rcv_or_url.url
        e = {"SMTPD_WEBHOOK_URL": url, "SMTPD_WEBHOOK_RETRY_MIN": "1s",
             "SMTPD_WEBHOOK_RETRY_MAX": "2s", "SMTPD_WEBHOOK_TIMEOUT": "5s"}
        e.update(env or {})
        if "SMTPD_PORTS" not in e:
            self.port = h.free_port()
            e["SMTPD_PORTS"] = str(self.port)
        mp = mp or self.new_mailport()
        mp.start(e)
        return mp

    def send(self, n=0, rcpts=("b@y.example",), port=None):
        return h.send_message_to(port or self.port, msg(n), rcpts=rcpts, timeout=20)

    def send_ok(self, n=0, **kw):
        r = self.send(n, **kw)
        self.assertEqual(r[0], 250, r)
        return h.queued_id(r[1])

    def wait_file(self, mp, sub, mid, timeout=10):
        path = os.path.join(mp.spool, sub, mid)
        deadline = time.monotonic() + timeout
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(path), "%s not in %s/; stderr:\n%s"
                        % (mid, sub, mp.stderr()[-3000:]))

    def wait_status(self, mp, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            d = mp.status()["delivery"]
            if pred(d) or time.monotonic() > deadline:
                return d
            time.sleep(0.05)


class TestDelivered(WebhookCase):
    def test_200_json_signed(self):
        rcv = self.receiver()
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SECRET": SECRET})
        mid = self.send_ok(1, rcpts=("b@y.example", "c@z.example"))
        self.wait_file(mp, "cur", mid)
        reqs = rcv.attempts(mid)
        self.assertEqual(len(reqs), 1)
        req = reqs[0]
        self.assertEqual(req.path, "/hook")
        self.assertEqual(req.headers["content-type"], "application/json")
        self.assertEqual(req.headers["x-mailport-attempt"], "1")
        # The receiver verifies the signature the documented way.
        self.assertTrue(req.signature_ok(SECRET))
        self.assertFalse(req.signature_ok("wrong"))
        self.assertLess(abs(int(req.headers["x-mailport-timestamp"]) - time.time()), 30)
        body = req.json()
        self.assertEqual(set(body), {"envelope", "raw"})
        meta = mp.read_meta(mid)
        env = dict(meta)
        delivery = env.pop("delivery")
        self.assertEqual(body["envelope"], env)
        self.assertEqual(body["envelope"]["rcpt_to"], ["b@y.example", "c@z.example"])
        with open(os.path.join(mp.spool, "cur", mid), "rb") as f:
            stored = f.read()
        self.assertEqual(base64.b64decode(body["raw"]), stored)
        self.assertEqual(delivery["state"], "delivered")
        self.assertEqual(delivery["attempts"], 1)
        self.assertEqual(delivery["status"], 200)
        self.assertEqual(mp.new_files(), [])
        d = self.wait_status(mp, lambda d: d["delivered"] == 1 and d["pending"] == 0)
        self.assertEqual(d, {"pending": 0, "delivered": 1, "failed": 0, "retries": 0,
                             "oldest_pending_seconds": 0})
        st, _, text = mp.http_get("/metrics")
        self.assertIn(b"\nmailport_delivery_delivered_total 1\n", text)
        self.assertIn(b"\nmailport_delivery_pending 0\n", text)

    def test_raw_format(self):
        rcv = self.receiver()
        mp = self.start(rcv, {"SMTPD_WEBHOOK_FORMAT": "raw", "SMTPD_WEBHOOK_SECRET": SECRET})
        mid = self.send_ok(2, rcpts=("b@y.example", "c@z.example"))
        self.wait_file(mp, "cur", mid)
        req = rcv.attempts(mid)[0]
        self.assertEqual(req.headers["content-type"], "message/rfc822")
        self.assertEqual(req.headers["x-mailport-mail-from"], "a@x.example")
        # One header per recipient (SPEC 5): a comma list is ambiguous.
        self.assertEqual([v for k, v in req.header_list if k == "x-mailport-rcpt-to"],
                         ["b@y.example", "c@z.example"])
        self.assertTrue(req.signature_ok(SECRET))
        with open(os.path.join(mp.spool, "cur", mid), "rb") as f:
            self.assertEqual(req.body, f.read())
        self.assertIn(b"\nbody 2\n", req.body)

    def test_keep_0_removes(self):
        rcv = self.receiver()
        mp = self.start(rcv, {"SMTPD_WEBHOOK_KEEP": "0"})
        mid = self.send_ok(3)
        self.assertTrue(rcv.wait(lambda r: mid in r.delivered_ids()))
        self.wait_status(mp, lambda d: d["delivered"] == 1)
        deadline = time.monotonic() + 5
        while (mp.new_files() or mp.meta_files()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])
        self.assertEqual(os.listdir(os.path.join(mp.spool, "cur")), [])


class TestConcurrency(WebhookCase):
    def test_concurrency_bounds_requests_in_flight(self):
        lock = threading.Lock()
        state = {"now": 0, "max": 0}

        def policy(req, rcv):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.3)
            with lock:
                state["now"] -= 1
            return 200
        rcv = self.receiver(policy)
        mp = self.start(rcv, {"SMTPD_WEBHOOK_CONCURRENCY": "2"})
        ids = [self.send_ok(i) for i in range(8)]
        self.assertTrue(rcv.wait(lambda r: r.delivered_ids() >= set(ids), timeout=15))
        self.assertEqual(state["max"], 2)
        self.wait_status(mp, lambda d: d["delivered"] == 8)


class TestRetries(WebhookCase):
    def test_500_then_200(self):
        def policy(req, rcv):
            return 500 if rcv.arrivals(req.id) == 1 else 200
        rcv = self.receiver(policy)
        mp = self.start(rcv)
        mid = self.send_ok(4)
        self.wait_file(mp, "cur", mid, timeout=10)
        reqs = rcv.attempts(mid)
        self.assertEqual([r.status for r in reqs], [500, 200])
        self.assertEqual([r.headers["x-mailport-attempt"] for r in reqs], ["1", "2"])
        # Between 0.5 s and 1 s apart (RETRY_MIN 1s drawn from [d/2, d]), give or take.
        gap = reqs[1].time - reqs[0].time
        self.assertGreater(gap, 0.4)
        self.assertLess(gap, 3)
        self.assertEqual(mp.read_meta(mid)["delivery"]["attempts"], 2)
        d = self.wait_status(mp, lambda d: d["delivered"] == 1)
        self.assertEqual(d["retries"], 1)
        self.assertEqual(d["pending"], 0)

    def test_400_fails_at_once(self):
        rcv = self.receiver(lambda req, rcv: (400, 0, b'{"error":"unknown mailbox"}'))
        mp = self.start(rcv)
        mid = self.send_ok(5)
        self.wait_file(mp, "failed", mid)
        time.sleep(1.5)  # no retry follows
        self.assertEqual(len(rcv.attempts(mid)), 1)
        delivery = mp.read_meta(mid)["delivery"]
        self.assertEqual(delivery["state"], "failed")
        self.assertTrue(delivery["reason"].startswith("HTTP 400 Bad Request"), delivery)
        self.assertIn("unknown mailbox", delivery["reason"])
        self.assertEqual(mp.new_files(), [])
        d = self.wait_status(mp, lambda d: d["failed"] == 1)
        self.assertEqual(d["failed"], 1)
        self.assertEqual(d["pending"], 0)

    def test_408_and_429_are_retried(self):
        def policy(req, rcv):
            return [408, 429, 200][min(rcv.arrivals(req.id) - 1, 2)]
        rcv = self.receiver(policy)
        mp = self.start(rcv)
        mid = self.send_ok(6)
        self.wait_file(mp, "cur", mid, timeout=15)
        self.assertEqual([r.status for r in rcv.attempts(mid)], [408, 429, 200])

    def test_stall_times_out_and_retries(self):
        def policy(req, rcv):
            return (200, 4) if rcv.arrivals(req.id) == 1 else 200
        rcv = self.receiver(policy)
        mp = self.start(rcv, {"SMTPD_WEBHOOK_TIMEOUT": "1s"})
        t0 = time.monotonic()
        mid = self.send_ok(7)
        # The stall does not hold the loop.
        st, _, _ = mp.http_get("/livez")
        self.assertEqual(st, 200)
        self.wait_file(mp, "cur", mid, timeout=12)
        self.assertLess(time.monotonic() - t0, 10)
        meta = mp.read_meta(mid)
        self.assertEqual(meta["delivery"]["attempts"], 2)
        self.assertIn("timed out", mp.stderr())

    def test_refused_until_max_age(self):
        dead = "http://127.0.0.1:%d/hook" % h.free_port()
        mp = self.start(dead, {"SMTPD_WEBHOOK_RETRY_MAX": "1s", "SMTPD_WEBHOOK_MAX_AGE": "3s"})
        mid = self.send_ok(8)
        d = self.wait_status(mp, lambda d: d["pending"] == 1 and d["retries"] >= 1, timeout=5)
        self.assertEqual(d["pending"], 1)
        self.wait_file(mp, "failed", mid, timeout=12)
        delivery = mp.read_meta(mid)["delivery"]
        self.assertEqual(delivery["state"], "failed")
        self.assertIn("SMTPD_WEBHOOK_MAX_AGE", delivery["reason"])
        self.assertGreaterEqual(delivery["attempts"], 2)
        d = self.wait_status(mp, lambda d: d["failed"] == 1)
        self.assertEqual(d["pending"], 0)

    def test_oldest_pending_age(self):
        rcv = self.receiver(lambda req, rcv: 503)
        mp = self.start(rcv)
        self.send_ok(9)
        d = self.wait_status(mp, lambda d: d["oldest_pending_seconds"] >= 2, timeout=6)
        self.assertGreaterEqual(d["oldest_pending_seconds"], 2)
        self.assertEqual(d["pending"], 1)
        self.assertGreaterEqual(d["retries"], 1)


class TestRestart(WebhookCase):
    def test_kill9_in_a_retry_backlog(self):
        state = {"fail": True}
        rcv = self.receiver(lambda req, rcv: 500 if state["fail"] else 200)
        spool_owner = self.new_mailport()
        port = h.free_port()
        env = {"SMTPD_PORTS": str(port), "SMTPD_SPOOL": spool_owner.spool,
               "SMTPD_WEBHOOK_CONCURRENCY": "2"}
        self.port = port
        mp = self.start(rcv, env, mp=spool_owner)
        ids = [self.send_ok(i) for i in range(20)]
        # Every message has failed at least once and waits for its retry.
        self.assertTrue(rcv.wait(lambda r: {q.id for q in r.snapshot()} >= set(ids),
                                 timeout=15))
        pending = [m for m in ids if os.path.exists(os.path.join(mp.spool, "new", m))]
        self.assertEqual(len(pending), 20)
        mp.kill9()
        with_attempts = [m for m in ids
                         if mp.read_meta(m).get("delivery", {}).get("attempts", 0) >= 1]
        self.assertGreater(len(with_attempts), 0)
        state["fail"] = False
        mp2 = self.new_mailport()
        mp2.spool = spool_owner.spool
        self.start(rcv, env, mp=mp2)
        self.assertTrue(rcv.wait(lambda r: r.delivered_ids() >= set(ids), timeout=20),
                        "missing: %r" % (set(ids) - rcv.delivered_ids()))
        deadline = time.monotonic() + 5
        while mp2.new_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(mp2.new_files(), [])
        self.assertEqual(sorted(os.listdir(os.path.join(mp2.spool, "cur"))), sorted(ids))
        # At least once: nothing but these ids ever arrived.
        self.assertEqual({q.id for q in rcv.snapshot()}, set(ids))

    def test_drain_does_not_wait_for_a_stalled_request(self):
        state = {"stall": True}
        rcv = self.receiver(lambda req, rcv: (200, 20) if state["stall"] else 200)
        owner = self.new_mailport()
        port = h.free_port()
        env = {"SMTPD_PORTS": str(port), "SMTPD_SPOOL": owner.spool,
               "SMTPD_WEBHOOK_TIMEOUT": "30s"}
        self.port = port
        mp = self.start(rcv, env, mp=owner)
        mid = self.send_ok(10)
        time.sleep(0.5)  # the request is on the wire, stalled
        t0 = time.monotonic()
        self.assertEqual(mp.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn(mid, mp.new_files())
        state["stall"] = False
        mp2 = self.new_mailport()
        self.start(rcv, env, mp=mp2)
        mp2.spool = owner.spool
        self.wait_file(mp2, "cur", mid)


class TestSync(WebhookCase):
    def test_sync_200_is_250(self):
        rcv = self.receiver()
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SYNC": "1", "SMTPD_WEBHOOK_SECRET": SECRET})
        r = self.send(11)
        self.assertEqual(r[0], 250, r)
        mid = h.queued_id(r[1])
        # Posted before the answer: there already, with its id.
        reqs = rcv.attempts(mid)
        self.assertEqual(len(reqs), 1)
        self.assertTrue(reqs[0].signature_ok(SECRET))
        self.assertEqual(mp.new_files(), [])
        self.assertTrue(os.path.exists(os.path.join(mp.spool, "cur", mid)))
        with open(os.path.join(mp.spool, "cur", mid), "rb") as f:
            self.assertEqual(reqs[0].raw(), f.read())
        meta = mp.read_meta(mid)
        self.assertEqual(meta["delivery"]["state"], "delivered")
        self.assertEqual(reqs[0].json()["envelope"]["id"], mid)
        time.sleep(0.5)
        self.assertEqual(len(rcv.attempts(mid)), 1)  # never posted again

    def test_sync_500_is_451_and_nothing_kept(self):
        rcv = self.receiver(lambda req, rcv: 500)
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SYNC": "1"})
        r = self.send(12)
        self.assertEqual(r[0], 451, r)
        self.assertTrue(r[1][-1].startswith("451 4.3.0 "), r)
        self.assertEqual(len(rcv.snapshot()), 1)
        time.sleep(1.5)  # and no retry from our side
        self.assertEqual(len(rcv.snapshot()), 1)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])
        self.assertEqual(os.listdir(os.path.join(mp.spool, "cur")), [])

    def test_sync_400_and_timeout_are_451(self):
        def policy(req, rcv):
            return 400 if rcv.arrivals() == 1 else (200, 3)
        rcv = self.receiver(policy)
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SYNC": "1", "SMTPD_WEBHOOK_TIMEOUT": "1s"})
        self.assertEqual(self.send(13)[0], 451)
        t0 = time.monotonic()
        self.assertEqual(self.send(14)[0], 451)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])

    def test_sync_post_abandoned_at_the_grace(self):
        rcv = self.receiver(lambda req, rcv: (200, 20))
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SYNC": "1", "SMTPD_WEBHOOK_TIMEOUT": "30s",
                              "SMTPD_SHUTDOWN_GRACE": "1s"})
        c = h.RawSMTP("127.0.0.1", self.port, timeout=10)
        self.addCleanup(c.close)
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(msg(16) + b".\r\n")
        self.assertTrue(rcv.wait(lambda r: r.arrivals() == 1, timeout=5))
        t0 = time.monotonic()
        mp.proc.send_signal(15)
        code, lines = c.reply()
        self.assertEqual(code, 451, lines)
        self.assertEqual(mp.wait_exit(10), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])

    def test_sync_keep_0(self):
        rcv = self.receiver()
        mp = self.start(rcv, {"SMTPD_WEBHOOK_SYNC": "1", "SMTPD_WEBHOOK_KEEP": "0"})
        mid = self.send_ok(15)
        self.assertEqual(len(rcv.attempts(mid)), 1)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])


if __name__ == "__main__":
    # 25 s alone here (retries with backoff).
    h.main(timeout=120)
