#!/usr/bin/python3
"""Durability (SPEC 5): a 250 to the end of data means the message is stored.
kill -9 right after the 250 must leave it complete in new/ with its envelope in
meta/; a kill at any moment must never leave a partial message in new/ nor a
message without its envelope."""

import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

LOOPS = 20
LOOP_BUDGET = 28.0  # seconds for the kill-after-250 loop


def content_for(token, lines=150):
    body = b"".join(b"%s line %04d: the quick brown fox jumps over the lazy dog\r\n" % (token, i)
                    for i in range(lines))
    return (b"Subject: durability " + token + b" %d\r\nMessage-Id" % lines + b": <" + token + b"@test>\r\n\r\n"
            + body + b".leading dot line\r\n")


TOKEN_RE = re.compile(rb"Subject: durability (\S+) (\d+)\n")


class TestDurability(h.MailportTestCase):
    def check_spool(self, mp, acked):
        """acked: {id: content}. Every acked message complete; every file in new/
        complete and with a valid envelope."""
        new = mp.new_files()
        metas = set(mp.meta_files())
        for mid, content in acked.items():
            self.assertIn(mid, new, "acknowledged message %s missing from new/" % mid)
        for mid in new:
            self.assertIn(mid + ".json", metas, "message %s in new/ without meta" % mid)
            meta = mp.read_meta(mid)  # valid JSON or this raises
            self.assertEqual(meta["id"], mid)
            data = mp.read_new(mid)
            m = TOKEN_RE.search(data)
            self.assertTrue(m, "message %s has no token: %r" % (mid, data[:300]))
            content = content_for(m.group(1), int(m.group(2)))
            _, _, rest = h.split_stored(data.decode())
            self.assertEqual(rest.encode(), content.replace(b"\r\n", b"\n"),
                             "message %s in new/ is incomplete or altered" % mid)
            self.assertEqual(meta["size"], len(content))
            if mid in acked:
                self.assertEqual(acked[mid], content)

    def test_kill9_right_after_250(self):
        mp0 = self.new_mailport()
        spool = mp0.spool
        port = h.free_port()
        acked = {}
        t_end = time.monotonic() + LOOP_BUDGET
        i = 0
        while i < LOOPS and time.monotonic() < t_end:
            mp = mp0 if i == 0 else self.new_mailport()
            mp.start({"SMTPD_PORTS": str(port), "SMTPD_SPOOL": spool})
            token = b"k%03d" % i
            content = content_for(token)
            c = h.RawSMTP("127.0.0.1", port)
            try:
                reply = h.send_message_raw(c, "a@x.example", ["b@y.example"], h.dot_stuff(content))
                mp.kill9()
            finally:
                c.close()
            self.assertEqual(reply[0], 250, reply)
            mid = h.queued_id(reply[1])
            self.assertIsNotNone(mid, reply)
            acked[mid] = content
            mp.spool = spool
            self.check_spool(mp, acked)
            i += 1
        self.assertGreaterEqual(i, 5, "too few iterations in %s s" % LOOP_BUDGET)
        # a restart over the spool keeps everything and goes on storing
        mp = self.new_mailport()
        mp.start({"SMTPD_PORTS": str(port), "SMTPD_SPOOL": spool})
        c = h.RawSMTP("127.0.0.1", port)
        content = content_for(b"after")
        reply = h.send_message_raw(c, "a@x.example", ["b@y.example"], h.dot_stuff(content))
        c.close()
        self.assertEqual(reply[0], 250, reply)
        acked[h.queued_id(reply[1])] = content
        self.assertEqual(mp.stop(), 0, mp.stderr())
        self.check_spool(mp, acked)
        self.assertEqual(len(mp.new_files()), len(acked))

    def test_kill9_under_load(self):
        """Four clients send as fast as they can; kill -9 at an arbitrary moment."""
        mp = self.new_mailport()
        port = h.free_port()
        mp.start({"SMTPD_PORTS": str(port)})
        acked = {}
        lock = threading.Lock()
        stop = threading.Event()

        def client(n):
            k = 0
            c = None
            try:
                c = h.RawSMTP("127.0.0.1", port, timeout=5)
                c.expect("EHLO load%d.example" % n, 250)
                while not stop.is_set():
                    token = b"c%d-%05d" % (n, k)
                    k += 1
                    content = content_for(token, lines=40)
                    r = h.send_message_raw(c, "a@x.example", ["b@y.example"], h.dot_stuff(content),
                                           ehlo=None)
                    if r[0] == 250:
                        with lock:
                            acked[h.queued_id(r[1])] = content
            except (OSError, h.SMTPError):
                pass  # the server was killed
            finally:
                if c is not None:
                    c.close()

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 30:
                    break
            time.sleep(0.01)
        time.sleep(0.037)
        mp.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        self.assertGreater(len(acked), 0, "no message acknowledged; stderr:\n%s" % mp.stderr())
        self.assertNotIn(None, acked, "a 250 without the message id")
        self.check_spool(mp, dict(acked))


if __name__ == "__main__":
    h.main()
