#!/usr/bin/python3
"""mailport as a container's PID 1 (issue 7, src/app/reaper.h): in a PID namespace of
its own, as the image runs it, mailport collects the orphans it inherits, never
steals the exit status of a filter libuv is waiting for, and still drains and
exits 0 on SIGTERM. Needs root and unshare(1)/nsenter(1); skipped otherwise."""

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = b"Subject: pid1\r\n\r\nhello\r\n"


def children(pid):
    """{child pid: state letter} of pid, from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out[int(d)] = rest[0]
    return out



def wait_for(pred, timeout=5.0):
    return h.wait_for(pred, timeout)


class TestPid1(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        if not h.is_root() or not shutil.which("unshare") or not shutil.which("nsenter"):
            self.skipTest("needs root, unshare and nsenter")

    def start_pid1(self, env=None):
        e = {"SMTPD_LOG_LEVEL": "debug"}
        e.update(env or {})
        self.port = h.free_port()
        e.setdefault("SMTPD_PORTS", str(self.port))
        # unshare forks; its child becomes PID 1 of the new namespace and execs mailport.
        self.mp = self.mailport(e, prefix=["unshare", "--pid", "--fork", "--mount-proc"])
        kids = wait_for(lambda: [p for p in children(self.mp.proc.pid)], 5)
        self.assertTrue(kids, "unshare has no child")
        self.pid = kids[0]
        with open("/proc/%d/status" % self.pid) as f:
            nspid = [l for l in f if l.startswith("NSpid:")][0].split()
        self.assertEqual(nspid[-1], "1", "mailport is not PID 1 in its namespace: %r" % nspid)
        return self.mp

    def orphan(self, seconds):
        """Leave a `sleep` behind inside the namespace; returns its host pid."""
        subprocess.run(["nsenter", "-t", str(self.pid), "-p", "-m", "--", "/bin/sh", "-c",
                        "sleep %s </dev/null >/dev/null 2>&1 & exit 0" % seconds],
                       check=True, timeout=10)
        got = wait_for(lambda: [p for p, st in children(self.pid).items()], 3)
        self.assertTrue(got, "the orphan was not reparented to mailport")
        return got[0]

    def stop_pid1(self):
        """SIGTERM to mailport itself (unshare does not forward it); exit 0."""
        os.kill(self.pid, signal.SIGTERM)
        self.assertEqual(self.mp.wait_exit(10), 0, self.mp.stderr())

    def test_orphans_are_reaped(self):
        mp = self.start_pid1()
        for _ in range(3):
            pid = self.orphan(0.3)
            # it is mailport's child now; once it exits it must not stay a zombie
            self.assertTrue(wait_for(lambda: pid not in children(self.pid), 4),
                            "orphan %d left as %r" % (pid, children(self.pid).get(pid)))
        self.assertIn("reaped an orphaned process", mp.stderr())
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=5)
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.quit()
        self.stop_pid1()

    def test_filters_keep_their_exit_status(self):
        """Filters are libuv's children: the reaper must leave them to libuv, or
        their verdict never arrives. The filter also leaves an orphan behind."""
        r = h.run(["--check-config"], env={"SMTPD_FILTER": "true"})
        if r.returncode != 0:
            self.skipTest("SMTPD_FILTER is not available: %s" % r.stderr.strip())
        mp = self.start_pid1({
            "SMTPD_FILTER": "sleep 0.2 </dev/null >/dev/null 2>&1 & cat >/dev/null; exit 0",
            "SMTPD_FILTER_TIMEOUT": "10"})
        t = time.monotonic()
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=15)
        for i in range(8):
            s.sendmail("a@x.example", ["b@y.example"], MSG)  # raises on 451
        s.quit()
        self.assertLess(time.monotonic() - t, 8, "filter verdicts were late")
        self.assertEqual(len(mp.new_files()), 8)
        self.assertTrue(wait_for(lambda: not [p for p, st in children(self.pid).items()
                                              if st == "Z"], 4), children(self.pid))
        self.stop_pid1()


if __name__ == "__main__":
    h.main()
