#!/usr/bin/python3
"""Hostnames in SMTPD_HOSTS (SPEC 2), hermetic: the binary runs in a private mount
namespace (`unshare -m`, root only; else exit 77) where /etc/hosts,
/etc/nsswitch.conf and /etc/resolv.conf are bind-mounted from test files, so
resolution never leaves the machine.
- a name resolves to all its IPv4 and IPv6 addresses (seed: "If that contains
  a line like ::1 localhost ...");
- `localhost, 127.0.0.1, ::1` is the seed's "already in use" example;
- a name that resolves to nothing exits 2 naming it; a temporary resolver
  failure exits 1."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

HOSTS = """127.0.0.1 localhost
::1 localhost
127.0.0.3 multi.test
::1 multi.test
127.0.0.4 v4only.test
::1 v6only.test
"""

MOUNT = ('mount --bind "$MP_NSS" /etc/nsswitch.conf && mount --bind "$MP_HOSTS" /etc/hosts && '
         'mount --bind "$MP_RESOLV" /etc/resolv.conf && exec "$0" "$@"')


class ResolverCase(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        if not h.is_root() or not shutil.which("unshare"):
            self.skipTest("needs root and unshare(1) for a private mount namespace")
        self.tmp = tempfile.mkdtemp(prefix="mailport-resolver-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.files = {}
        for key, name, text in (("MP_HOSTS", "hosts", HOSTS),
                                ("MP_NSS", "nsswitch.conf", "hosts: files\n"),
                                ("MP_RESOLV", "resolv.conf",
                                 "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")):
            p = os.path.join(self.tmp, name)
            with open(p, "w") as f:
                f.write(text)
            self.files[key] = p
        self.prefix = ["unshare", "-m", "sh", "-c", MOUNT]
        r = h.run(["--version"], env=self.files, prefix=self.prefix)
        if r.returncode != 0:
            self.skipTest("private mount namespace not available: %s" % r.stderr.strip())

    def use_dns(self):
        with open(self.files["MP_NSS"], "w") as f:
            f.write("hosts: dns\n")

    def check(self, hosts, ports="2525"):
        env = dict(self.files)
        env.update({"SMTPD_HOSTS": hosts, "SMTPD_PORTS": ports})
        return h.run(["--check-config"], env=env, prefix=self.prefix)


class TestResolver(ResolverCase):
    def test_name_yields_all_addresses(self):
        for hosts, want in (("localhost", {"127.0.0.1:2525 ipv4", "[::1]:2525 ipv6"}),
                            ("multi.test", {"127.0.0.3:2525 ipv4", "[::1]:2525 ipv6"}),
                            ("v4only.test", {"127.0.0.4:2525 ipv4"}),
                            ("v6only.test", {"[::1]:2525 ipv6"})):
            with self.subTest(hosts=hosts):
                r = self.check(hosts)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(set(r.stdout.splitlines()), want)
                self.assertEqual(len(r.stdout.splitlines()), len(want))

    def test_ports_follow_the_host_item(self):
        """Every address a host item yields gets that item's ports."""
        r = self.check("127.0.0.1, multi.test", "2525, 3535:4545")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(set(r.stdout.splitlines()),
                         {"127.0.0.1:2525 ipv4", "127.0.0.3:3535 ipv4", "127.0.0.3:4545 ipv4",
                          "[::1]:3535 ipv6", "[::1]:4545 ipv6"})

    def test_seed_conflict(self):
        for hosts, endpoint in (("localhost, 127.0.0.1, ::1", "127.0.0.1:2525"),
                                ("multi.test, v6only.test", "[::1]:2525"),
                                ("multi.test, 127.0.0.3", "127.0.0.3:2525")):
            with self.subTest(hosts=hosts):
                r = self.check(hosts)
                self.assertEqual(r.returncode, 2, r.stderr)
                lines = h.stderr_lines(r.stderr)
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn("already in use", lines[0])
                self.assertIn(endpoint, lines[0])
                self.assertEqual(r.stdout, "")

    def test_unknown_name(self):
        r = self.check("127.0.0.1, nosuchhost.invalid")
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = h.stderr_lines(r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("SMTPD_HOSTS", lines[0])
        self.assertIn("nosuchhost.invalid", lines[0])

    def test_temporary_failure_exits_1(self):
        self.use_dns()  # nameserver 127.0.0.1:53, where nothing answers
        r = self.check("mail.example.com")
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = h.stderr_lines(r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("mail.example.com", lines[0])

    def test_name_bound(self):
        p = h.free_port("127.0.0.3", "::1")
        env = dict(self.files)
        env.update({"SMTPD_HOSTS": "multi.test", "SMTPD_PORTS": str(p)})
        mp = self.mailport(env, prefix=self.prefix)
        for addr in ("127.0.0.3", "::1"):
            state, line = h.connect_state(addr, p)
            self.assertEqual(state, "open", addr)
            self.assertTrue(line.startswith("220 "), line)
        self.assertEqual(h.connect_state("127.0.0.1", p)[0], "refused")
        self.assertEqual(sorted((l["address"], l["port"]) for l in mp.status()["listeners"]),
                         sorted([("127.0.0.3", p), ("::1", p)]))


if __name__ == "__main__":
    h.main()
