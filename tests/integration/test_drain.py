#!/usr/bin/python3
"""Graceful drain on SIGTERM / SIGINT (SPEC 7): the listeners close, /readyz turns
503 at once while the HTTP side keeps answering, idle sessions get 421 4.3.2 at
once, sessions inside a transaction may finish it within SMTPD_SHUTDOWN_GRACE and
then get 421 4.3.2, the rest are closed when the grace ends, a second SIGTERM
shortens the wait, and mailport exits 0 as soon as the last session is gone.
Nothing that got a 250 is lost and nothing half-received is stored, also when the
server is busy."""

import hashlib
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402



def wait_for(pred, timeout=3.0):
    return h.wait_for(pred, timeout, interval=0.02)


class DrainCase(h.PortCase):
    def raw(self, timeout=5.0):
        c = h.RawSMTP("127.0.0.1", self.port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def in_data(self, c, first=b"Subject: drain\r\n\r\nfirst half\r\n"):
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(first)

    def assert_421(self, reply):
        self.assertEqual(reply[0], 421, reply)
        self.assertTrue(reply[1][-1].startswith("421 4.3.2"), reply)

    def spool_files(self):
        out = {}
        for d in ("new", "tmp", "meta", "cur"):
            p = os.path.join(self.mp.spool, d)
            out[d] = sorted(f for f in os.listdir(p) if not f.startswith(".")) \
                if os.path.isdir(p) else []
        return out


class TestDrain(DrainCase):
    def test_idle_sessions_get_421_at_once(self):
        """Greeted, after EHLO, and halfway through a command line: all idle, all
        told 421 4.3.2 at once; the exit follows well before the 25 s grace."""
        mp = self.start()
        greeted = self.raw()
        ehlo = self.raw()
        ehlo.expect("EHLO client.example", 250)
        partial = self.raw()
        partial.send(b"NOOP")
        time.sleep(0.1)
        t = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        for c in (greeted, ehlo, partial):
            c.settimeout(2)
            self.assert_421(c.reply())
            self.assertTrue(c.closed_by_peer(2))
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertLess(time.monotonic() - t, 2.0)

    def test_transaction_finishes_then_421(self):
        """Mid-DATA at SIGTERM: the listener closes and /readyz says 503 at once,
        /status, /livez and /metrics keep answering, the message is finished and
        answered 250 (and stored), then 421 4.3.2; exit 0 long before the grace."""
        mp = self.start()
        c = self.raw()
        self.in_data(c)
        t = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: mp.http_get("/readyz")[0] == 503, 1.0),
                        "/readyz not 503 within 1 s of SIGTERM")
        st, _, body = mp.http_get("/readyz")
        self.assertEqual(json.loads(body)["status"], "draining")
        status = mp.status()
        self.assertIs(status["draining"], True)
        self.assertIs(status["ready"], False)
        self.assertEqual(status["listeners"][0]["state"], "closed")
        self.assertEqual(mp.http_get("/livez")[0], 200)
        st, _, metrics = mp.http_get("/metrics")
        self.assertEqual(st, 200)
        self.assertIn(b"mailport_draining 1", metrics)
        self.assertEqual(h.connect_state("127.0.0.1", self.port)[0], "refused")
        time.sleep(0.3)  # the client takes its time; the grace allows it
        c.send(b"second half\r\n.\r\n")
        r = c.reply()
        self.assertEqual(r[0], 250, r)
        mid = h.queued_id(r[1])
        self.assert_421(c.reply())
        self.assertTrue(c.closed_by_peer(2))
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertLess(time.monotonic() - t, 3.0)
        self.assertEqual(self.spool_files()["new"], [mid])
        self.assertIn(b"first half\nsecond half\n", mp.read_new(mid))

    def test_no_new_transaction_while_draining(self):
        """A client that pipelines its next message behind the final dot gets the
        250 for the first and 421 4.3.2 for the next MAIL: a draining server
        starts no new transaction (the client sends that message elsewhere)."""
        mp = self.start()
        c = self.raw()
        self.in_data(c)
        mp.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: mp.http_get("/readyz")[0] == 503, 1.0))
        c.send(b"end\r\n.\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
        r = c.reply()
        self.assertEqual(r[0], 250, r)
        self.assert_421(c.reply())
        self.assertTrue(c.closed_by_peer(2))
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertEqual(len(self.spool_files()["new"]), 1)

    def test_grace_ends_nothing_half_received_stored(self):
        """A transaction that does not finish within SMTPD_SHUTDOWN_GRACE gets
        421 4.3.2 and is closed when it ends; what it had sent is not stored."""
        mp = self.start({"SMTPD_SHUTDOWN_GRACE": "2"})
        in_data = self.raw(timeout=6)
        self.in_data(in_data)
        in_mail = self.raw(timeout=6)
        in_mail.expect("EHLO client.example", 250)
        in_mail.expect("MAIL FROM:<a@x.example>", 250)
        t = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        for c in (in_data, in_mail):
            self.assert_421(c.reply())
            self.assertTrue(c.closed_by_peer(2))
        took = time.monotonic() - t
        self.assertGreater(took, 1.7, "closed before the grace ended")
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertLess(time.monotonic() - t, 4.0)
        files = self.spool_files()
        self.assertEqual(files, {"new": [], "tmp": [], "meta": [], "cur": []})
        self.assertIn("shutdown grace period over", mp.stderr())

    def test_second_sigterm_shortens_the_wait(self):
        mp = self.start()  # grace 25 s
        c = self.raw()
        self.in_data(c)
        mp.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: mp.http_get("/readyz")[0] == 503, 1.0))
        time.sleep(0.3)
        self.assertTrue(mp.alive(), "exited while a transaction was open")
        t = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        self.assert_421(c.reply())
        self.assertTrue(c.closed_by_peer(2))
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertLess(time.monotonic() - t, 2.0)
        self.assertEqual(self.spool_files()["new"], [])
        self.assertIn("second", mp.stderr())

    def test_sigint_drains_the_same_way(self):
        mp = self.start()
        c = self.raw()
        self.in_data(c)
        mp.proc.send_signal(signal.SIGINT)
        c.send(b"rest\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assert_421(c.reply())
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())

    def test_no_sessions_exits_at_once(self):
        mp = self.start()
        t = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        self.assertEqual(mp.wait_exit(5), 0, mp.stderr())
        self.assertLess(time.monotonic() - t, 1.5)


class TestBusyDrain(DrainCase):
    CLIENTS = 8

    def client(self, n, stop, results):
        """Send messages until the server says 421 or goes away. Records
        (id, sha256 of the body as stored) for every 250."""
        rnd = random.Random(n)
        sent = 0
        try:
            c = h.RawSMTP("127.0.0.1", self.port, timeout=10)
        except OSError:
            return
        try:
            c.expect("EHLO c%d.example" % n, 250)
            while not stop.is_set() or sent < 2:
                size = rnd.choice((200, 5000, 60000, 300000))
                body_lines = [b"Subject: busy %d/%d" % (n, sent), b""]
                line = b"x" * 70
                while sum(len(l) + 2 for l in body_lines) < size:
                    body_lines.append(line)
                data = b"\r\n".join(body_lines) + b"\r\n"
                r = c.cmd("MAIL FROM:<c%d@x.example>" % n)
                if r[0] != 250:
                    results.append(("reply", r[0]))
                    return
                if c.cmd("RCPT TO:<b@y.example>")[0] != 250:
                    return
                if c.cmd("DATA")[0] != 354:
                    return
                # send the body in pieces, so SIGTERM lands mid-DATA for some
                for i in range(0, len(data), 65536):
                    c.send(data[i:i + 65536])
                c.send(b".\r\n")
                r = c.reply()
                if r[0] == 250:
                    stored = data.replace(b"\r\n", b"\n")
                    results.append(("ok", h.queued_id(r[1]), hashlib.sha256(stored).hexdigest()))
                    sent += 1
                else:
                    results.append(("reply", r[0]))
                    return
        except (h.SMTPError, OSError) as e:
            results.append(("error", str(e)))
        finally:
            c.close()

    def test_busy_server_loses_nothing(self):
        mp = self.start({"SMTPD_SHUTDOWN_GRACE": "20"})
        stop = threading.Event()
        results = [[] for _ in range(self.CLIENTS)]
        threads = [threading.Thread(target=self.client, args=(i, stop, results[i]), daemon=True)
                   for i in range(self.CLIENTS)]
        for t in threads:
            t.start()
        # let them get going, then pull the plug while they are busy
        self.assertTrue(wait_for(lambda: mp.status()["messages"]["accepted"] >= 20, 15),
                        "clients did not get going")
        # SIGTERM while the clients keep going (they stop on 421 or when the
        # server goes away), so some transactions are always in flight.
        t0 = time.monotonic()
        mp.proc.send_signal(signal.SIGTERM)
        stop.set()
        rc = mp.wait_exit(25)
        took = time.monotonic() - t0
        for t in threads:
            t.join(10)
        self.assertEqual(rc, 0, mp.stderr()[-3000:])
        self.assertLess(took, 10, "busy sessions did not finish well within the grace")
        acked = {}
        for r in results:
            for e in r:
                if e[0] == "ok":
                    acked[e[1]] = e[2]
                elif e[0] == "reply":
                    self.assertEqual(e[1], 421, r)
        # at least the 20 seen accepted before SIGTERM (more is a matter of timing)
        self.assertGreaterEqual(len(acked), 20)
        files = self.spool_files()
        # every 250 is in new/ with its envelope, byte for byte; nothing else is
        self.assertEqual(sorted(acked), files["new"])
        self.assertEqual(sorted(m + ".json" for m in acked), files["meta"])
        self.assertEqual(files["tmp"], [])
        for mid, digest in acked.items():
            _, _, rest = h.split_stored(mp.read_new(mid).decode())
            self.assertEqual(hashlib.sha256(rest.encode()).hexdigest(), digest, mid)
        st = mp.stderr()
        self.assertIn("draining", st)


if __name__ == "__main__":
    h.main()
