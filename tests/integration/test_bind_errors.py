#!/usr/bin/python3
"""Start-up failures (SPEC 1, issue 3 item 4): a listener that cannot be bound
(in use by another process, permission denied below 1024, address not on this
host) or a spool that cannot be written exits 1 with one error line naming the
endpoint (or SMTPD_SPOOL), and leaves nothing listening."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402


def occupy(addr, port):
    s = socket.socket(h.family_of(addr), socket.SOCK_STREAM)
    s.bind((addr, port))
    s.listen(1)
    return s


class TestBindErrors(h.MailportTestCase):
    def start_fail(self, env, prefix=(), want_rc=1):
        mp = self.new_mailport(prefix)
        env = dict(env)
        env.setdefault("SMTPD_HTTP", "off")
        mp.start(env, wait=False)
        rc = mp.wait_exit(timeout=10)
        err = mp.stderr()
        self.assertEqual(rc, want_rc, "want exit %d, got %d; stderr:\n%s" % (want_rc, rc, err))
        return mp, err

    def error_line(self, err, needle):
        lines = [l for l in err.splitlines() if needle in l]
        self.assertEqual(len(lines), 1, "want one line containing %r in stderr:\n%s" % (needle, err))
        self.assertTrue(lines[0].startswith("mailport: "), lines[0])
        return lines[0]

    def test_port_in_use_second(self):
        p1, p2 = h.free_ports(2, "127.0.0.1")
        http = h.free_port("127.0.0.1")
        blocker = occupy("127.0.0.1", p2)
        self.addCleanup(blocker.close)
        mp, err = self.start_fail({"SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": "%d:%d" % (p1, p2),
                                   "SMTPD_HTTP": "127.0.0.1:%d" % http})
        line = self.error_line(err, "cannot listen on 127.0.0.1:%d" % p2)
        self.assertIn("Address already in use", line)
        self.assertEqual(h.connect_state("127.0.0.1", p1)[0], "refused")
        self.assertEqual(h.connect_state("127.0.0.1", http)[0], "refused")
        # the port that was free is really free again
        self.assertTrue(h._can_bind("127.0.0.1", p1))

    def test_port_in_use_first(self):
        p1, p2 = h.free_ports(2, "127.0.0.1", "::1")
        blocker = occupy("127.0.0.1", p1)
        self.addCleanup(blocker.close)
        mp, err = self.start_fail({"SMTPD_HOSTS": "127.0.0.1, ::1", "SMTPD_PORTS": "%d, %d" % (p1, p2)})
        line = self.error_line(err, "cannot listen on 127.0.0.1:%d" % p1)
        self.assertIn("Address already in use", line)
        self.assertEqual(h.connect_state("::1", p2)[0], "refused")

    def test_port_in_use_ipv6(self):
        p1, p2 = h.free_ports(2, "127.0.0.1", "::1")
        blocker = occupy("::1", p2)
        self.addCleanup(blocker.close)
        mp, err = self.start_fail({"SMTPD_HOSTS": "127.0.0.1, ::1", "SMTPD_PORTS": "%d, %d" % (p1, p2)})
        line = self.error_line(err, "cannot listen on [::1]:%d" % p2)
        self.assertIn("Address already in use", line)
        self.assertEqual(h.connect_state("127.0.0.1", p1)[0], "refused")

    def test_http_port_in_use(self):
        p = h.free_port("127.0.0.1")
        http = h.free_port("127.0.0.1")
        blocker = occupy("127.0.0.1", http)
        self.addCleanup(blocker.close)
        mp, err = self.start_fail({"SMTPD_PORTS": str(p), "SMTPD_HTTP": "127.0.0.1:%d" % http})
        self.assertTrue(re.search(r"127\.0\.0\.1:%d" % http, err), err)
        self.assertEqual(h.connect_state("127.0.0.1", p)[0], "refused")

    def test_spool_not_writable(self):
        tmp = tempfile.mkdtemp(prefix="mailport-bind-")
        self.addCleanup(shutil.rmtree, tmp, True)
        f = os.path.join(tmp, "file")
        open(f, "w").close()
        p = h.free_port("127.0.0.1")
        mp, err = self.start_fail({"SMTPD_PORTS": str(p), "SMTPD_SPOOL": os.path.join(f, "spool")})
        self.error_line(err, "SMTPD_SPOOL")
        self.assertEqual(h.connect_state("127.0.0.1", p)[0], "refused")

    def test_privileged_port(self):
        start = 1024
        try:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
                start = int(f.read())
        except OSError:
            pass
        if start <= 1:
            self.skipTest(h.ENV_SKIP + "every port is unprivileged here")
        candidates = [c for c in range(1000, 900, -1) if c < start]
        if not candidates:
            self.skipTest(h.ENV_SKIP + "no privileged port in 901-1000")
        port = candidates[0]
        if h.is_root():
            free = [c for c in candidates if h._can_bind("127.0.0.1", c)]
            if not free:
                self.skipTest(h.ENV_SKIP + "no free privileged port")
            port = free[0]
        prefix = ()
        env = {"SMTPD_PORTS": str(port)}
        if h.is_root():
            if shutil.which("setpriv") is None:
                self.skipTest("root without setpriv: cannot drop privileges")
            prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
            tmp = tempfile.mkdtemp(prefix="mailport-bind-")
            self.addCleanup(shutil.rmtree, tmp, True)
            os.chmod(tmp, 0o777)
            env["SMTPD_SPOOL"] = os.path.join(tmp, "spool")
        mp, err = self.start_fail(env, prefix=prefix)
        line = self.error_line(err, "cannot listen on 127.0.0.1:%d" % port)
        self.assertIn("Permission denied", line)

    def test_address_not_on_this_host(self):
        if not h.have_netns():
            self.skipTest("needs root and ip netns")
        # /32: an address on lo with a shorter prefix makes the whole prefix local
        with h.Netns(addrs=("198.51.100.10/32", "2001:db8::10/128")) as ns:
            p = h.free_port("127.0.0.1")
            cases = [
                ("198.51.100.99", "198.51.100.99:%d" % p, {}),
                ("2001:db8::99", "[2001:db8::99]:%d" % p, {}),
                ("198.51.100.10, 198.51.100.99", "198.51.100.99:%d" % p, {}),
            ]
            for hosts, ep, extra in cases:
                with self.subTest(hosts=hosts):
                    env = {"SMTPD_HOSTS": hosts, "SMTPD_PORTS": str(p)}
                    env.update(extra)
                    mp, err = self.start_fail(env, prefix=ns.prefix)
                    line = self.error_line(err, "cannot listen on " + ep)
                    self.assertIn("Cannot assign requested address", line)


if __name__ == "__main__":
    h.main()
