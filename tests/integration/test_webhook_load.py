#!/usr/bin/python3
"""Issue 6's "done means": 1,000 messages sent with smtp-source while the
webhook receiver fails half of its requests at random; mailport is killed with
SIGKILL in the middle (with a retry backlog pending) and restarted on the same
spool; every message arrives at the receiver (counted by X-Mailport-Id), and
/livez, sampled every 100 ms while mailport runs, never fails."""

import os
import random
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

HALF = 500
BUDGET = 110  # seconds for the whole script


class LivezSampler(threading.Thread):
    """GET /livez every 100 ms while `target` is set; records every failure."""

    def __init__(self):
        super().__init__(daemon=True)
        self.target = None
        self.lock = threading.Lock()
        self.samples = 0
        self.failures = []
        self.stop = threading.Event()

    def set_target(self, mp):
        with self.lock:
            self.target = mp

    def run(self):
        while not self.stop.is_set():
            with self.lock:
                mp = self.target
            if mp is not None:
                try:
                    st, _, body = mp.http_get("/livez", timeout=2)
                    ok = st == 200
                    why = "%d %r" % (st, body[:200])
                except OSError as e:
                    ok, why = False, repr(e)
                with self.lock:
                    if mp is self.target:  # not a sample of a process we just killed
                        self.samples += 1
                        if not ok:
                            self.failures.append(why)
            self.stop.wait(0.1)


class TestLoad(h.MailportTestCase):
    def smtp_source(self, port, n):
        r = subprocess.run([self.source, "-s", "10", "-m", str(n), "-l", "1024",
                            "-f", "a@x.example", "-t", "b@y.example", "127.0.0.1:%d" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:])

    def test_1000_messages_half_failing_kill9(self):
        self.source = shutil.which("smtp-source") or (
            "/usr/sbin/smtp-source" if os.path.exists("/usr/sbin/smtp-source") else None)
        if self.source is None:
            self.skipTest("smtp-source (postfix) is not installed")
        t_start = time.monotonic()
        rng = random.Random(6)
        rng_lock = threading.Lock()

        def policy(req, rcv):
            with rng_lock:
                fail = rng.random() < 0.5
            return 500 if fail else 200

        rcv = Receiver(policy)
        self.addCleanup(rcv.close)
        sampler = LivezSampler()
        sampler.start()
        self.addCleanup(sampler.stop.set)

        owner = self.new_mailport()
        port = h.free_port()
        env = {"SMTPD_PORTS": str(port), "SMTPD_SPOOL": owner.spool,
               "SMTPD_WEBHOOK_URL": rcv.url, "SMTPD_WEBHOOK_RETRY_MIN": "1s",
               "SMTPD_WEBHOOK_RETRY_MAX": "2s", "SMTPD_WEBHOOK_TIMEOUT": "5s",
               "SMTPD_LOG_LEVEL": "warn"}
        owner.start(env)
        sampler.set_target(owner)

        # First half, then kill -9 while the retry backlog is pending.
        self.smtp_source(port, HALF)
        st = owner.status()
        self.assertEqual(st["messages"]["accepted"], HALF)
        self.assertGreater(st["delivery"]["pending"], 0, "no backlog to kill in: %r" % st)
        sampler.set_target(None)
        owner.kill9()
        in_new = len(owner.new_files())
        self.assertGreater(in_new, 0)

        second = self.new_mailport()
        second.start(env)
        sampler.set_target(second)
        self.smtp_source(port, HALF)
        self.assertEqual(second.status()["messages"]["accepted"], HALF)

        # Everything arrives.
        cur = os.path.join(owner.spool, "cur")
        deadline = t_start + BUDGET - 10
        while time.monotonic() < deadline:
            if len(rcv.delivered_ids()) >= 2 * HALF and not second.new_files():
                break
            time.sleep(0.2)
        stored = set(os.listdir(cur)) | set(second.new_files())
        delivered = rcv.delivered_ids()
        self.assertEqual(len(stored), 2 * HALF)
        self.assertEqual(stored - delivered, set(),
                         "%d message(s) never delivered" % len(stored - delivered))
        self.assertEqual(delivered, stored)
        self.assertEqual(second.new_files(), [])
        # The loop counts a delivery just after its last spool update.
        deadline = time.monotonic() + 5
        while second.status()["delivery"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        st = second.status()["delivery"]
        self.assertEqual(st["pending"], 0)
        self.assertGreater(st["retries"], 0)
        total = len(rcv.snapshot())
        sampler.set_target(None)
        sampler.stop.set()
        sampler.join(5)
        ok = sum(1 for r in rcv.snapshot() if r.status == 200)
        print("\n%d messages, %d requests, %d answered 200 (%d delivered more than once), "
              "%d /livez samples, %.1f s" % (len(stored), total, ok, ok - len(delivered),
                                             sampler.samples, time.monotonic() - t_start))
        self.assertGreater(sampler.samples, 20)
        self.assertEqual(sampler.failures, [])


if __name__ == "__main__":
    h.main(timeout=BUDGET + 5)
