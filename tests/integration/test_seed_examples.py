#!/usr/bin/python3
"""The seed page's five SMTPD_HOSTS/SMTPD_PORTS examples actually bound and greeted
on 127.0.0.1, ::1 and 127.0.0.2 (the seed's 192.168.0.1 replaced by 127.0.0.2),
with two free ports in place of 2525/3535; every expected endpoint greets, every
other address/port combination is refused, each listener is logged once, and
/status lists exactly these listeners. Plus the issue's Done example."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

ADDRS = ["127.0.0.1", "::1", "127.0.0.2"]

# ports with 2525 -> P1 and 3535 -> P2; expected (address, port index) pairs.
SEED = [
    ("{1}", [(0, 1), (1, 1), (2, 1)]),
    ("{1}:{2}", [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]),
    ("{1}, {2}", [(0, 1), (1, 2), (2, 2)]),
    ("{1}, {2}, {1}", [(0, 1), (1, 2), (2, 1)]),
    ("{1}, {1}:{2}, {1}", [(0, 1), (1, 1), (1, 2), (2, 1)]),
]


class TestSeedBound(h.MailportTestCase):
    def run_example(self, hosts_idx, ports_tpl, want_pairs):
        p1, p2 = h.free_ports(2, *ADDRS)
        pmap = {1: p1, 2: p2}
        hosts = ", ".join(ADDRS[i] for i in hosts_idx)
        ports = ports_tpl.format(None, p1, p2)
        want = {(ADDRS[a], pmap[p]) for a, p in want_pairs}
        mp = self.mailport({"SMTPD_HOSTS": hosts, "SMTPD_PORTS": ports})
        ctx = "SMTPD_HOSTS=%r SMTPD_PORTS=%r" % (hosts, ports)

        # every combination: expected ones greet, the others are refused
        for addr in ADDRS:
            for port in (p1, p2):
                state, line = h.connect_state(addr, port)
                if (addr, port) in want:
                    self.assertEqual(state, "open", "%s: %s should greet" % (ctx, h.hostport(addr, port)))
                    self.assertTrue(line.startswith("220 mx.test.example ESMTP mailport"),
                                    "%s: greeting %r" % (ctx, line))
                else:
                    self.assertEqual(state, "refused", "%s: %s should not listen (got %r)"
                                     % (ctx, h.hostport(addr, port), line))

        # one `listening on` line per endpoint, none else (the HTTP port is not one of them)
        logged = [e for e in mp.listening_lines() if not e.endswith(":%d" % mp.http_port)]
        self.assertEqual(sorted(logged), sorted(h.hostport(a, p) for a, p in want),
                         "%s: stderr:\n%s" % (ctx, mp.stderr()))

        # /status lists exactly these listeners
        st = mp.status()
        got = []
        for l in st["listeners"]:
            got.append((l["address"], l["port"]))
            fam = "ipv6" if ":" in l["address"] else "ipv4"
            self.assertEqual(l["family"], fam, l)
            self.assertIs(l["any"], False, l)
            self.assertEqual(l["state"], "listening", l)
            self.assertEqual(l["tls"], "none", l)
            for k in ("connections_active", "connections_total", "messages_accepted"):
                self.assertIsInstance(l[k], int, l)
        self.assertEqual(sorted(got), sorted(want), "%s: /status listeners %r" % (ctx, st["listeners"]))
        self.assertEqual(len(got), len(set(got)), "duplicate listeners in /status")
        self.assertEqual(mp.stop(), 0)

    def test_example_1_one_port_everywhere(self):
        self.run_example([0, 1, 2], *SEED[0])

    def test_example_2_two_ports_everywhere(self):
        self.run_example([0, 1, 2], *SEED[1])

    def test_example_3_second_port_repeats(self):
        self.run_example([0, 1, 2], *SEED[2])

    def test_example_4_port_per_host(self):
        self.run_example([0, 1, 2], *SEED[3])

    def test_example_5_mixed(self):
        self.run_example([0, 1, 2], *SEED[4])

    def test_issue_done_example(self):
        """SMTPD_HOSTS='127.0.0.1, ::1' SMTPD_PORTS='P1, P2' serves 127.0.0.1:P1 and [::1]:P2 only."""
        self.run_example([0, 1], "{1}, {2}", [(0, 1), (1, 2)])

    def test_listeners_closed_after_stop(self):
        p1, p2 = h.free_ports(2, *ADDRS)
        mp = self.mailport({"SMTPD_HOSTS": "127.0.0.1, ::1, 127.0.0.2",
                            "SMTPD_PORTS": "%d:%d" % (p1, p2)})
        self.assertEqual(mp.stop(), 0)
        for addr in ADDRS:
            for port in (p1, p2):
                self.assertEqual(h.connect_state(addr, port)[0], "refused")
        self.assertEqual(h.connect_state("127.0.0.1", mp.http_port)[0], "refused")


if __name__ == "__main__":
    h.main()
