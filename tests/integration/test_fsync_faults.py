#!/usr/bin/python3
"""No 250 without a successful sync (SPEC 5, issues 12 and 14), proved by fault injection.

mailport runs with tests/faultinject/fsync_fault.c preloaded, which makes fsync
and fdatasync fail with EIO for the fds whose path matches, after some calls pass
and for a given number of calls. Since issue 14 the only syncs before a 250 are
the journal's (one fdatasync of its segment per batch, and an fsync of journal/
when a segment is new): messages are sent while the fault is active, and every
message whose sync failed gets 451 4.3.0, never 250; every 250 is in new/ with its
envelope; nothing answered 451 is in new/, tmp/ or meta/, even after a restart
replays the journal; the listing agrees; and mailport goes on storing after the
fault window. And no message file, envelope or Maildir directory is fsynced on
its own any more: that is the group commit."""

import email.utils
import json
import os
import re
import smtplib
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

TOKEN_RE = re.compile(rb"^Subject: fault-token (\S+)$", re.M)


def message(token):
    return ("From: a@x.example\r\nTo: b@y.example\r\nSubject: fault-token %s\r\n"
            "Date: %s\r\n\r\nbody of %s\r\n" % (token, email.utils.formatdate(), token)).encode()


class FsyncFaultCase(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        self.shim = h.fsync_fault_lib()
        if self.shim is None:
            self.skipTest("the fsync fault library is not built (MAILPORT_FSYNC_FAULT_LIB)")

    def start(self, pattern, after, count, spool=None):
        """mailport with fsync failing for `pattern` after `after` calls, `count` times."""
        mp = self.new_mailport()
        self.port = h.free_port()
        self.fault_log = os.path.join(mp.tmp, "fsync-faults.log")
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {
            "SMTPD_PORTS": str(self.port),
            "LD_PRELOAD": self.shim,
            "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
            "MAILPORT_FAULT_FSYNC_PATH": pattern,
            "MAILPORT_FAULT_FSYNC_AFTER": str(after),
            "MAILPORT_FAULT_FSYNC_COUNT": str(count),
            "MAILPORT_FAULT_FSYNC_LOG": self.fault_log,
        }
        if spool:
            env["SMTPD_SPOOL"] = spool
        mp.start(env)
        return mp

    def send(self, token):
        """(code, reply text, id or None) of one message on its own connection."""
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        try:
            s.ehlo("client.example")
            s.mail("a@x.example")
            s.rcpt("b@y.example")
            code, text = s.data(message(token))
            text = text.decode("utf-8", "replace")
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
        finally:
            s.close()
        return code, text, h.queued_id([text])

    def injected(self):
        try:
            with open(self.fault_log) as f:
                return [l.split() for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def tokens_in(self, mp, sub):
        d = os.path.join(mp.spool, sub)
        found = {}
        for name in (os.listdir(d) if os.path.isdir(d) else []):
            if name.startswith("."):
                continue
            with open(os.path.join(d, name), "rb") as f:
                m = TOKEN_RE.search(f.read())
            found[name] = m.group(1).decode() if m else None
        return found

    def run_case(self, pattern, after, count, n=6, want=None, extra_meta=0):
        mp = self.start(pattern, after, count)
        replies = {}
        for i in range(n):
            tok = "t%02d" % i
            replies[tok] = self.send(tok)
        codes = [replies["t%02d" % i][0] for i in range(n)]
        if want is not None:
            self.assertEqual(codes, want, replies)
        acked = {tok: r[2] for tok, r in replies.items() if r[0] == 250}
        refused = [tok for tok, r in replies.items() if r[0] != 250]
        # The faults asked for happened, and each refusal is a 451 4.3.0.
        fails = [l for l in self.injected() if l[-1] == "EIO"]
        self.assertEqual(len(fails), count, self.injected())
        self.assertTrue(refused, "no message refused: the fault did not reach a store")
        for tok in refused:
            code, text, _ = replies[tok]
            self.assertEqual(code, 451, (tok, text))
            self.assertTrue(text.startswith("4.3.0"), (tok, text))
        # mailport keeps serving: the last message, after the window, is stored.
        self.assertEqual(codes[-1], 250, replies)
        self.check_spool(mp, acked, refused, extra_meta)
        self.assertIn("refused", mp.stderr())
        self.assertIn("Input/output error", mp.stderr())
        return mp, acked, refused

    def check_spool(self, mp, acked, refused, extra_meta=0):
        new = self.tokens_in(mp, "new")
        # every 250 in new/, with its envelope
        for tok, mid in acked.items():
            self.assertIsNotNone(mid, tok)
            self.assertIn(mid, new, "acknowledged %s (%s) not in new/" % (tok, mid))
            self.assertEqual(new[mid], tok)
            self.assertEqual(mp.read_meta(mid)["id"], mid)
        # nothing answered 451 in new/, cur/ or tmp/
        self.assertEqual(sorted(new), sorted(acked.values()))
        for tok in refused:
            self.assertNotIn(tok, new.values(), "message %s answered 451 is in new/" % tok)
        self.assertEqual(self.tokens_in(mp, "cur"), {})
        self.assertEqual([n for n in os.listdir(os.path.join(mp.spool, "tmp"))
                          if not n.startswith(".")], [])
        metas = [m[:-5] for m in mp.meta_files() if m.endswith(".json")]
        self.assertEqual(len(metas), len(acked) + extra_meta, metas)
        self.assertTrue(set(acked.values()) <= set(metas))
        self.assertEqual([m for m in mp.meta_files() if m.startswith(".")], [])
        # the listing (the spool's index) agrees
        st, _, body = mp.http_get("/messages?limit=1000")
        self.assertEqual(st, 200, body)
        listing = json.loads(body)
        self.assertEqual(listing["total"], len(acked))
        self.assertEqual(sorted(m["id"] for m in listing["messages"]), sorted(acked.values()))


class TestFsyncFaults(FsyncFaultCase):
    def test_journal_segment(self):
        # The batch's fdatasync of the segment: the one message of that batch
        # gets 451; the segment is cut back and a fresh one follows.
        mp, acked, refused = self.run_case("/spool/journal/0", 2, 1,
                                           want=[250, 250, 451, 250, 250, 250])
        self.assertEqual(mp.stop(), 0, mp.stderr())
        # A restart replays nothing of the refused batch.
        mp2 = self.new_mailport()
        mp2.start({"SMTPD_PORTS": str(h.free_port()), "SMTPD_SPOOL": mp.spool})
        mp2.spool = mp.spool
        self.check_spool(mp2, acked, refused)

    def test_journal_directory(self):
        # The fsync of journal/ that makes a new segment's name durable.
        self.run_case("/spool/journal$", 0, 1, n=3, want=[451, 250, 250])

    def test_no_per_message_fsync(self):
        # Group commit: the message files, envelopes and Maildir directories
        # are never synced one by one (the journal covers them).
        mp = self.start("/spool/", 0, 0)  # log every sync under the spool, fail none
        replies = {"m%d" % i: self.send("m%d" % i) for i in range(5)}
        self.assertEqual([r[0] for r in replies.values()], [250] * 5, replies)
        synced = [l[1] for l in self.injected()]
        self.assertTrue([p for p in synced if "/spool/journal/0" in p], synced)
        self.assertEqual([p for p in synced if "/journal" not in p and ".probe." not in p],
                         [], synced)

    def test_concurrent_clients(self):
        # Several clients at once share the directory fsyncs (group commit): a
        # failing one must give 451 to exactly the stores it covered, and the
        # spool must match the replies whatever the batching was.
        mp = self.start("/spool/journal/0", 3, 3)
        replies = {}
        lock = threading.Lock()

        def client(k):
            for i in range(4):
                tok = "c%d-%d" % (k, i)
                r = self.send(tok)
                with lock:
                    replies[tok] = r

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(replies), 16)
        for tok, (code, text, _) in replies.items():
            self.assertIn(code, (250, 451), (tok, text))
            if code == 451:
                self.assertTrue(text.startswith("4.3.0"), text)
        # Past the window (what is left of it fails sequential sends): 250 again.
        for i in range(4):
            r = self.send("after%d" % i)
            replies["after%d" % i] = r
            if r[0] == 250:
                break
        self.assertEqual(r[0], 250, replies)
        acked = {tok: r[2] for tok, r in replies.items() if r[0] == 250}
        refused = [tok for tok, r in replies.items() if r[0] != 250]
        self.assertTrue(refused)
        self.assertEqual(len([l for l in self.injected() if l[-1] == "EIO"]), 3)
        # A removal's own fsync may also have been failed: its envelope stays.
        new = self.tokens_in(mp, "new")
        self.assertEqual(sorted(new), sorted(acked.values()))
        for tok, mid in acked.items():
            self.assertEqual(new[mid], tok)
            self.assertEqual(mp.read_meta(mid)["id"], mid)
        st, _, body = mp.http_get("/messages?limit=1000")
        self.assertEqual(json.loads(body)["total"], len(acked))


if __name__ == "__main__":
    h.main()
