#!/usr/bin/python3
"""Non-loopback addresses, `*` and the ANY addresses, inside a network namespace
of our own (needs root and `ip netns`; else exit 77).

The outer script creates the namespace mailport-test-<pid>, brings its lo up with
198.51.100.10/24 and 2001:db8::10/64 (nodad), then re-runs itself inside the
namespace with --inner, so the server, the clients and the HTTP checks all live
there; the namespace is deleted in any case."""

import json
import os
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

V4 = "198.51.100.10"
V6 = "2001:db8::10"
ALL = ["127.0.0.1", V4, "::1", V6]
MSG = b"Subject: netns\r\n\r\nhello from the namespace\r\n"


class TestNetns(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        if os.environ.get("MAILPORT_TEST_IN_NETNS") != "1":
            self.skipTest(h.ENV_SKIP + "run through the outer script")

    def greets(self, addr, port):
        state, line = h.connect_state(addr, port)
        return state == "open" and bool(line) and line.startswith("220 ")

    def send(self, addr, port):
        s = smtplib.SMTP(addr, port, local_hostname="ns-client.example", timeout=5)
        try:
            s.ehlo()
            s.mail("a@x.example")
            s.rcpt("b@y.example")
            client = s.sock.getsockname()
            code, resp = s.data(MSG)
            self.assertEqual(code, 250, resp)
        finally:
            s.quit()
        return h.queued_id([resp.decode()]), client

    def test_star_check_config(self):
        r = h.run(["--check-config"], env={"SMTPD_HOSTS": "*"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(r.stdout.splitlines()),
                         sorted(["127.0.0.1:2525 ipv4", "198.51.100.10:2525 ipv4",
                                 "[::1]:2525 ipv6", "[2001:db8::10]:2525 ipv6"]))

    def test_star_bound(self):
        p = h.free_port(*ALL)
        mp = self.mailport({"SMTPD_HOSTS": "*", "SMTPD_PORTS": str(p)})
        for a in ALL:
            self.assertTrue(self.greets(a, p), "%s does not greet" % h.hostport(a, p))
        st = mp.status()
        got = sorted((l["address"], l["port"], l["family"], l["any"], l["state"]) for l in st["listeners"])
        want = sorted((a, p, "ipv6" if ":" in a else "ipv4", False, "listening") for a in ALL)
        self.assertEqual(got, want)
        self.assertEqual(sorted(mp.listening_lines()), sorted(h.hostport(a, p) for a in ALL))
        mid, client = self.send(V6, p)
        meta = mp.read_meta(mid)
        self.assertEqual(meta["local"], {"address": V6, "port": p})
        self.assertEqual(meta["client"], {"address": client[0], "port": client[1]})

    def test_specific_addresses(self):
        p1, p2 = h.free_ports(2, *ALL)
        mp = self.mailport({"SMTPD_HOSTS": "%s, %s" % (V4, V6), "SMTPD_PORTS": "%d, %d" % (p1, p2)})
        want = {(V4, p1), (V6, p2)}
        for a in ALL:
            for p in (p1, p2):
                state = h.connect_state(a, p)[0]
                if (a, p) in want:
                    self.assertEqual(state, "open", h.hostport(a, p))
                else:
                    self.assertEqual(state, "refused", h.hostport(a, p))
        st = mp.status()
        self.assertEqual(sorted((l["address"], l["port"], l["any"]) for l in st["listeners"]),
                         sorted([(V4, p1, False), (V6, p2, False)]))
        for addr, port in want:
            mid, client = self.send(addr, port)
            meta = mp.read_meta(mid)
            self.assertEqual(meta["local"], {"address": addr, "port": port})
            self.assertEqual(meta["client"]["address"], client[0])
            self.assertEqual(meta["helo"], "ns-client.example")

    def test_any_addresses(self):
        p = h.free_port(*ALL)
        mp = self.mailport({"SMTPD_HOSTS": "0.0.0.0, ::", "SMTPD_PORTS": str(p)})
        st = mp.status()
        got = sorted((l["address"], l["port"], l["family"], l["any"]) for l in st["listeners"])
        self.assertEqual(got, sorted([("0.0.0.0", p, "ipv4", True), ("::", p, "ipv6", True)]))
        self.assertEqual(sorted(mp.listening_lines()), sorted(["0.0.0.0:%d" % p, "[::]:%d" % p]))
        for a in ALL:
            self.assertTrue(self.greets(a, p), "%s does not greet" % h.hostport(a, p))
        # `local` of a session on an ANY listener is ambiguous in the SPEC: section 5
        # says "local is always the listener's own address" (0.0.0.0 / ::), section 2
        # says a session knows "the local address and port it arrived on" (the
        # concrete address, getsockname). Both are accepted; the one seen is printed.
        listener_addr = {V4: "0.0.0.0", V6: "::"}
        for addr in (V4, V6):
            with self.subTest(addr=addr):
                mid, client = self.send(addr, p)
                meta = mp.read_meta(mid)
                self.assertEqual(meta["client"]["address"], client[0],
                                 "client address (IPv4 never ::ffff:)")
                self.assertEqual(meta["local"]["port"], p)
                self.assertIn(meta["local"]["address"], (addr, listener_addr[addr]),
                              "local of a session on an ANY listener")
                print("NOTE: session to %s on listener %s stored local.address %r"
                      % (addr, listener_addr[addr], meta["local"]["address"]))
        st = mp.status()
        l4 = [l for l in st["listeners"] if l["address"] == "0.0.0.0"][0]
        l6 = [l for l in st["listeners"] if l["address"] == "::"][0]
        self.assertGreaterEqual(l4["messages_accepted"], 1)
        self.assertGreaterEqual(l6["messages_accepted"], 1)

    def test_ipv6_any_is_ipv6_only(self):
        p = h.free_port(*ALL)
        self.mailport({"SMTPD_HOSTS": "::", "SMTPD_PORTS": str(p)})
        self.assertTrue(self.greets(V6, p))
        self.assertTrue(self.greets("::1", p))
        self.assertEqual(h.connect_state(V4, p)[0], "refused", ":: must be bound IPv6-only")
        self.assertEqual(h.connect_state("127.0.0.1", p)[0], "refused", ":: must be bound IPv6-only")

    def test_ipv4_any_with_ipv6_specific(self):
        p = h.free_port(*ALL)
        self.mailport({"SMTPD_HOSTS": "0.0.0.0, ::1", "SMTPD_PORTS": str(p)})
        for a in ("127.0.0.1", V4, "::1"):
            self.assertTrue(self.greets(a, p), a)
        self.assertEqual(h.connect_state(V6, p)[0], "refused")

    def test_any_conflict_in_run_mode(self):
        p = h.free_port(*ALL)
        for hosts in ("0.0.0.0, %s" % V4, "%s, 0.0.0.0" % V4, "::, %s" % V6):
            with self.subTest(hosts=hosts):
                r = h.run([], env={"SMTPD_HOSTS": hosts, "SMTPD_PORTS": str(p), "SMTPD_HTTP": "off",
                                   "SMTPD_SPOOL": "/tmp/mailport-netns-never-used"}, timeout=10)
                self.assertEqual(r.returncode, 2, r.stderr)
                lines = h.stderr_lines(r.stderr)
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn("already in use", lines[0])

    def test_http_on_any_and_healthcheck(self):
        for http_host in ("0.0.0.0", "::"):
            with self.subTest(http=http_host):
                p = h.free_port(*ALL)
                hp = h.free_port(*ALL)
                http = ("[::]:%d" if http_host == "::" else "0.0.0.0:%d") % hp
                mp = self.mailport({"SMTPD_PORTS": str(p), "SMTPD_HTTP": http})
                probe = V4 if http_host == "0.0.0.0" else V6
                st, _, body = mp.http("GET", "/status", host=probe, port=hp)
                self.assertEqual(st, 200)
                r = h.run(["--healthcheck"], env={"SMTPD_HTTP": http}, timeout=10)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(mp.stop(), 0)
                r = h.run(["--healthcheck"], env={"SMTPD_HTTP": http}, timeout=10)
                self.assertEqual(r.returncode, 1, r.stderr)


def outer():
    if h.binary() is None:
        print("SKIP: mailport binary not built")
        return h.SKIP
    if not h.have_netns():
        print("SKIP: needs root and `ip netns`")
        return h.SKIP
    try:
        ns = h.Netns()
        ns.__enter__()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print("SKIP: cannot set up a network namespace: %s" % e)
        return h.SKIP
    try:
        r = ns.run_script(os.path.abspath(__file__), ["--inner"], timeout=52,
                          env={"MAILPORT_TEST_IN_NETNS": "1", "MAILPORT_TEST_SCRIPT_TIMEOUT": "48",
                               "MAILPORT_BIN": os.path.abspath(h.binary())})
        sys.stdout.write(r.stdout)
        return r.returncode
    except subprocess.TimeoutExpired as e:
        sys.stdout.write((e.output or b"").decode("utf-8", "replace") if isinstance(e.output, bytes)
                         else (e.output or ""))
        print("FAIL: the tests inside the namespace did not finish in time")
        return 1
    finally:
        ns.delete()


if __name__ == "__main__":
    if "--inner" in sys.argv:
        h.main(timeout=int(os.environ.get("MAILPORT_TEST_SCRIPT_TIMEOUT", "48")))
    else:
        sys.exit(outer())
