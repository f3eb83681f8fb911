#!/usr/bin/python3
"""/metrics (issue 7): Prometheus text format with HELP and TYPE for every family,
names prefixed mailport_ and counters ending in _total; connections refused by
reason, messages rejected by reply code class, TLS handshakes and failures, the
end-of-data to 250 histogram, per-listener labels; the readiness probe and the loop
lag histogram (issue 12); consistent with /status."""

import os
import re
import smtplib
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = b"Subject: metrics\r\n\r\nhello\r\n"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? '
                    r'([-+]?[0-9.eE+-]+|[-+]Inf|NaN)$')


def parse(text):
    """{family: {"type":…, "help":…, "samples": [(name, labels dict, value)]}}; checks
    that HELP and TYPE come first and once."""
    fams, order = {}, []
    current = None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            assert name not in fams, "family %s twice" % name
            fams[name] = {"help": help_, "type": None, "samples": []}
            current = name
            order.append(name)
        elif line.startswith("# TYPE "):
            name, typ = line[7:].split(" ", 1)
            assert name == current, "TYPE %s without its HELP" % name
            fams[name]["type"] = typ
        else:
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            name = m.group(1)
            base = re.sub(r"_(bucket|sum|count)$", "", name) \
                if fams.get(current, {}).get("type") == "histogram" else name
            assert base == current, "sample %s outside its family %s" % (name, current)
            labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', m.group(3) or ""))
            fams[current]["samples"].append((name, labels, float(m.group(5))))
    return fams


class TestMetrics(h.MailportTestCase):
    def test_families_and_values(self):
        p1, p2, tls_port = h.free_ports(3)
        env = {"SMTPD_PORTS": "%d:%d" % (p1, p2), "SMTPD_PROXY_PORTS": str(p2),
               "SMTPD_PROXY_TRUSTED": "127.0.0.2/32", "SMTPD_MAX_MESSAGE_SIZE": "1000",
               "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "2"}
        tls = h.run(["--check-config"], env=dict(env, SMTPD_PORTS="%d:%d:%d" % (p1, p2, tls_port),
                                                  SMTPD_TLS_PORTS=str(tls_port))).returncode == 0
        if tls:
            env.update(SMTPD_PORTS="%d:%d:%d" % (p1, p2, tls_port), SMTPD_TLS_PORTS=str(tls_port))
        mp = self.mailport(env)
        # The readiness probe's first run (issue 12) measures the spool's free space.
        self.assertTrue(h.wait_for(lambda: "free_bytes" in mp.status()["readiness"]["spool"], 5))

        # 3 accepted, 1 refused 552 (5xx) at its end
        s = smtplib.SMTP("127.0.0.1", p1, local_hostname="client.example", timeout=5)
        for _ in range(3):
            s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.mail("a@x.example")  # no SIZE=: the limit is found at the end of the data
        s.rcpt("b@y.example")
        code, _ = s.data(b"Subject: big\r\n\r\n" + b"x" * 2000)
        self.assertEqual(code, 552)
        # refused: the third connection of one client, an untrusted PROXY peer
        c2 = h.RawSMTP("127.0.0.1", p1)
        c3 = h.RawSMTP("127.0.0.1", p1)
        self.assertEqual(c3.greeting[0], 421)
        c3.close()
        c2.close()
        u = socket.create_connection(("127.0.0.1", p2), timeout=5)
        self.assertEqual(u.recv(10), b"")
        u.close()
        s.quit()
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as t:
                    self.assertTrue(t.recv(100).startswith(b"220"))
            with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
                raw.sendall(b"EHLO not-tls\r\n")
                raw.settimeout(5)
                try:
                    while raw.recv(100):
                        pass
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        while mp.status()["connections"]["active"] and time.monotonic() < deadline:
            time.sleep(0.05)

        st, hdr, body = mp.http_get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hdr["content-type"].startswith("text/plain; version=0.0.4"), hdr)
        fams = parse(body.decode())
        for name, f in fams.items():
            self.assertTrue(name.startswith(("mailport_", "process_")), name)
            self.assertRegex(name, r"^[a-z][a-z0-9_]*$")
            self.assertIn(f["type"], ("counter", "gauge", "histogram"), name)
            self.assertTrue(f["help"].strip(), name)
            if f["type"] == "counter":
                self.assertTrue(name.endswith("_total"), name)
            self.assertTrue(f["samples"], "family %s without samples" % name)
        status = mp.status()

        def values(fam, label):
            return {l[label]: v for _, l, v in fams[fam]["samples"]}

        refused = values("mailport_connections_refused_total", "reason")
        self.assertEqual(refused["max_connections_per_client"], 1, refused)
        self.assertEqual(refused["proxy_untrusted"], 1, refused)
        self.assertEqual(refused["max_connections"], 0, refused)
        self.assertEqual(sum(refused.values()), status["connections"]["refused"])
        rejected = values("mailport_messages_rejected_total", "class")
        self.assertEqual(rejected, {"4xx": 0, "5xx": 1})
        self.assertEqual(sum(rejected.values()), status["messages"]["rejected"])

        hist = fams["mailport_message_accept_duration_seconds"]
        self.assertEqual(hist["type"], "histogram")
        buckets = [(l["le"], v) for n, l, v in hist["samples"] if n.endswith("_bucket")]
        self.assertEqual(buckets[-1][0], "+Inf")
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "buckets are not cumulative")
        count = [v for n, _, v in hist["samples"] if n.endswith("_count")][0]
        total = [v for n, _, v in hist["samples"] if n.endswith("_sum")][0]
        self.assertEqual(count, 3)
        self.assertEqual(counts[-1], count)
        self.assertGreater(total, 0)
        self.assertLess(total, 10)

        # group commit (issue 14): every stored message went through the journal,
        # and no more journal syncs than messages were needed for that
        committed = fams["mailport_journal_messages_total"]["samples"][0][2]
        syncs = fams["mailport_journal_syncs_total"]["samples"][0][2]
        self.assertEqual(committed, status["messages"]["accepted"])
        self.assertGreaterEqual(syncs, 1)
        self.assertLessEqual(syncs, committed)
        self.assertEqual(fams["mailport_journal_sync_failures_total"]["samples"][0][2], 0)

        per = {(l["address"], l["port"]): v
               for _, l, v in fams["mailport_listener_messages_accepted_total"]["samples"]}
        self.assertEqual(per[("127.0.0.1", str(p1))], 3)
        self.assertEqual(per[("127.0.0.1", str(p2))], 0)
        if tls:
            self.assertEqual(fams["mailport_tls_handshakes_total"]["samples"][0][2], 1)
            self.assertEqual(fams["mailport_tls_handshake_failures_total"]["samples"][0][2], 1)

        # issue 12: the readiness probe and the loop's lag, consistent with /status
        def one(fam, typ):
            self.assertEqual(fams[fam]["type"], typ, fam)
            return fams[fam]["samples"][0][2]
        self.assertEqual(refused["out_of_memory"], 0, refused)
        self.assertEqual(one("mailport_readiness_probe_ok", "gauge"), 1)
        self.assertEqual(one("mailport_readiness_probe_failures_total", "counter"), 0)
        self.assertEqual(one("mailport_spool_min_free_bytes", "gauge"), 100 << 20)
        free = one("mailport_spool_free_bytes", "gauge")
        self.assertGreater(free, 100 << 20)
        self.assertEqual(status["readiness"]["spool"]["min_free_bytes"], 100 << 20)
        self.assertGreater(status["readiness"]["spool"]["free_bytes"], 100 << 20)
        lag = fams["mailport_loop_lag_seconds"]
        self.assertEqual(lag["type"], "histogram")
        les = [l["le"] for n, l, _ in lag["samples"] if n.endswith("_bucket")]
        self.assertEqual(les, ["0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5",
                               "+Inf"])
        lag_counts = [v for n, _, v in lag["samples"] if n.endswith("_bucket")]
        self.assertEqual(lag_counts, sorted(lag_counts), "lag buckets are not cumulative")
        self.assertEqual([v for n, _, v in lag["samples"] if n.endswith("_count")][0],
                         lag_counts[-1])
        self.assertIsInstance(status["loop_lag_ms_max"], (int, float))
        self.assertGreaterEqual(status["loop_lag_ms_max"], 0)


if __name__ == "__main__":
    h.main()
