#!/usr/bin/python3
"""The journal's life in a running server (issue 14, README "Storage"): messages
go through a journal segment; a segment without commits for a while is closed
and, after its checkpoint (syncfs), removed while the server keeps serving; a
clean stop leaves journal/ empty; a kill -9 leaves the segment, and the next
start replays it (every acknowledged message in new/ exactly once) and removes
it. The timings are the journal's: idle 5 s, checkpoint age 30 s, tick 2 s."""

import os
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

CHECKPOINT_WITHIN = 60.0  # idle 5 s + age 30 s + a 2 s tick, with room for a slow CI


def segments(spool):
    d = os.path.join(spool, "journal")
    return sorted(n for n in os.listdir(d) if n.endswith(".mpj")) if os.path.isdir(d) else []


class TestJournal(h.MailportTestCase):
    def send(self, port, n, tag):
        ids = []
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10)
        try:
            s.ehlo()
            for i in range(n):
                msg = "Subject: journal %s %d\r\n\r\nbody %s %d\r\n" % (tag, i, tag, i)
                s.mail("a@x.example")
                s.rcpt("b@y.example")
                code, text = s.data(msg.encode())
                self.assertEqual(code, 250, text)
                ids.append(h.queued_id([text.decode()]))
        finally:
            s.quit()
        return ids

    def test_checkpoint_removes_segments_while_serving(self):
        port = h.free_port()
        mp = self.mailport({"SMTPD_PORTS": str(port)})
        ids = self.send(port, 5, "a")
        self.assertEqual(len(segments(mp.spool)), 1, segments(mp.spool))
        for mid in ids:
            self.assertEqual(mp.read_meta(mid)["id"], mid)
        deadline = time.monotonic() + CHECKPOINT_WITHIN
        while segments(mp.spool) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertEqual(segments(mp.spool), [], "no checkpoint within %.0f s" % CHECKPOINT_WITHIN)
        # Still serving, into a fresh segment.
        more = self.send(port, 2, "b")
        self.assertEqual(len(segments(mp.spool)), 1)
        self.assertEqual(sorted(mp.new_files()), sorted(ids + more))
        # A clean stop checkpoints everything.
        self.assertEqual(mp.stop(), 0, mp.stderr())
        self.assertEqual(segments(mp.spool), [])

    def test_kill9_then_replay(self):
        port = h.free_port()
        mp = self.mailport({"SMTPD_PORTS": str(port)})
        spool = mp.spool
        ids = self.send(port, 3, "c")
        # As if the crash came after the sync, before the move into new/.
        os.rename(os.path.join(spool, "new", ids[0]), os.path.join(spool, "tmp", ids[0]))
        os.unlink(os.path.join(spool, "meta", ids[0] + ".json"))
        mp.proc.send_signal(signal.SIGKILL)
        mp.proc.wait(timeout=10)
        self.assertEqual(len(segments(spool)), 1)
        mp2 = self.new_mailport()
        mp2.start({"SMTPD_PORTS": str(h.free_port()), "SMTPD_SPOOL": spool})
        mp2.spool = spool
        self.assertEqual(sorted(mp2.new_files()), sorted(ids))
        self.assertEqual(mp2.read_meta(ids[0])["id"], ids[0])
        self.assertEqual(segments(spool), [])
        self.assertIn("journal: replayed 3 message(s)", mp2.stderr())


if __name__ == "__main__":
    # 36 s alone here.
    h.main(timeout=150)
