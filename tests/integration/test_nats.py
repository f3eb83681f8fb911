#!/usr/bin/python3
"""NATS JetStream (SPEC 9) against one real nats-server (Debian's 2.9) with
JetStream, started by this script on a loopback port of its own, its stream
created with libnats (tests/tools/nats_tool) and read back through a durable
pull consumer:

- forward mode: 250, then published (payload = the stored file byte for byte,
  Nats-Msg-Id, Mailport-Envelope, Mailport-Mail-From, one Mailport-Rcpt-To per
  recipient), marked delivered in meta/ and moved to cur/;
- forward mode while NATS is down: 250 from the spool, retried with the
  webhook's backoff until the server and its stream exist, then delivered;
- sync mode with SMTPD_DELIVER=discard: 250 after JetStream's acknowledgement
  and nothing on the local disk; sync mode with the server gone: 451 4.3.0;
- /status "nats", /metrics, /readyz 503 naming the missing stream until the
  test creates it; a server max_payload below SMTPD_MAX_MESSAGE_SIZE plus
  headers: exit 2 naming both numbers; bad settings: exit 2."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import nats_cluster as nc  # noqa: E402

SUBJECT = "mailport.messages"


def msg(n):
    return (b"Subject: nats %d\r\nMessage-Id: <%d@test>\r\n\r\nbody %d\r\n"
            b"..a dot-stuffed line\r\n" % (n, n, n))


class NatsCase(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        nc.require(self)
        self.cluster = nc.Cluster(1)
        self.addCleanup(self.cluster.close)
        self.node = self.cluster.nodes[0]

    def start(self, env=None, wait=True, stream="MAILPORT"):
        self.port = h.free_port()
        e = {"SMTPD_PORTS": str(self.port), "SMTPD_NATS_URL": self.node.url,
             "SMTPD_NATS_STREAM": stream, "SMTPD_MAX_MESSAGE_SIZE": "1000000",
             "SMTPD_WEBHOOK_RETRY_MIN": "1s", "SMTPD_WEBHOOK_RETRY_MAX": "2s",
             "SMTPD_NATS_TIMEOUT": "3s"}
        e.update(env or {})
        mp = self.new_mailport()
        mp.start(e, smtp_wait=None if wait else ("127.0.0.1", self.port))
        return mp

    def send(self, n=0, rcpts=("b@y.example",)):
        return h.send_message_to(self.port, msg(n), rcpts=rcpts, timeout=20)

    def send_ok(self, n=0, **kw):
        r = self.send(n, **kw)
        self.assertEqual(r[0], 250, r)
        return h.queued_id(r[1])

    def wait_for(self, pred, timeout, what, mp=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        self.fail("%s not within %s s%s" % (
            what, timeout, "; stderr:\n" + mp.stderr()[-3000:] if mp else ""))

    def cur_file(self, mp, mid):
        return os.path.join(mp.spool, "cur", mid)


class TestForward(NatsCase):
    def test_published_byte_exact_and_marked_delivered(self):
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        mp = self.start()
        mid = self.send_ok(1, rcpts=("b@y.example", "c@y.example"))
        self.wait_for(lambda: os.path.exists(self.cur_file(mp, mid)), 15, "delivered to cur/", mp)
        meta = mp.read_meta(mid)
        self.assertEqual(meta["delivery"]["state"], "delivered")
        self.assertEqual(meta["delivery"]["stream"], "MAILPORT")
        self.assertEqual(meta["delivery"]["attempts"], 1)
        msgs = self.cluster.dump("MAILPORT", "check1")
        self.assertEqual([m["id"] for m in msgs], [mid])
        m = msgs[0]
        with open(self.cur_file(mp, mid), "rb") as f:
            stored = f.read()
        self.assertEqual(m["data"], stored)  # byte for byte, Received header included
        self.assertTrue(stored.startswith(b"Return-Path: <a@x.example>\nReceived: "), stored[:80])
        self.assertIn(b"\n.a dot-stuffed line\n", stored)
        del meta["delivery"]
        self.assertEqual(m["envelope"], meta)  # the SPEC 5 envelope
        self.assertEqual(m["mail_from"], "a@x.example")
        self.assertEqual(m["rcpt"], ["b@y.example", "c@y.example"])
        st = mp.status()["nats"]
        self.assertEqual(set(st), {"connected", "server", "stream", "pending", "published",
                                   "failed", "last_error"})
        self.assertIs(st["connected"], True)
        self.assertEqual(st["server"], self.node.url)
        self.assertEqual(st["stream"], "MAILPORT")
        self.assertEqual(st["published"], 1)
        self.assertEqual(st["failed"], 0)
        self.assertEqual(st["pending"], 0)
        self.assertIsNone(st["last_error"])
        self.assertEqual(mp.status()["delivery"]["delivered"], 1)
        _, _, body = mp.http_get("/metrics")
        text = body.decode()
        self.assertIn("\nmailport_nats_published_total 1\n", text)
        self.assertIn("\nmailport_nats_connected 1\n", text)
        self.assertIn("\nmailport_nats_failed_total 0\n", text)
        self.assertIn('mailport_nats_publish_ack_duration_seconds_bucket{le="+Inf"} 1\n', text)
        self.assertIn("\nmailport_nats_publish_ack_duration_seconds_count 1\n", text)

    def test_outage_absorbed_by_the_spool(self):
        # No server at all: the spool takes the message, /readyz cannot
        # confirm the stream, publishing is retried.
        mp = self.start(wait=False)
        mid = self.send_ok(2)
        st, _, body = mp.http_get("/readyz")
        self.assertEqual(st, 503)
        self.assertIn(b"MAILPORT", body)
        self.assertIn(mid, mp.new_files())
        self.wait_for(lambda: mp.status()["nats"]["failed"] >= 1, 10, "a failed attempt", mp)
        self.assertEqual(mp.status()["delivery"]["pending"], 1)
        # The server comes up, then its stream: delivered, once.
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        self.wait_for(lambda: os.path.exists(self.cur_file(mp, mid)), 30, "delivered", mp)
        self.wait_for(lambda: mp.http_get("/readyz")[0] == 200, 10, "ready", mp)
        msgs = self.cluster.dump("MAILPORT", "check2")
        self.assertEqual([m["id"] for m in msgs], [mid])
        self.assertGreaterEqual(mp.read_meta(mid)["delivery"]["attempts"], 2)

    def test_kill9_restart_publishes_the_rest_once(self):
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        mp = self.start()
        ids = [self.send_ok(i) for i in range(30)]
        mp.kill9()
        mp2 = self.new_mailport()
        mp2.tmp, mp2.spool = mp.tmp, mp.spool  # the same spool
        env = dict(mp.env)
        env.pop("SMTPD_HTTP", None)
        mp2.start(env)
        self.wait_for(lambda: mp2.status()["delivery"]["pending"] == 0 and not mp2.new_files(),
                      30, "everything delivered", mp2)
        msgs = self.cluster.dump("MAILPORT", "check3")
        self.assertEqual(sorted(m["id"] for m in msgs), sorted(ids))


class TestSync(NatsCase):
    def test_discard_250_after_ack_nothing_on_disk(self):
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        spool = os.path.join(self.cluster.root, "no-spool-here")
        mp = self.start({"SMTPD_NATS_MODE": "sync", "SMTPD_DELIVER": "discard",
                         "SMTPD_SPOOL": spool, "TMPDIR": spool})
        ids = [self.send_ok(i, rcpts=("b@y.example", "c@y.example")) for i in range(5)]
        self.assertEqual(len(set(ids)), 5)
        # Acknowledged before the 250: already in the stream.
        self.assertEqual(self.cluster.count("MAILPORT"), 5)
        msgs = self.cluster.dump("MAILPORT", "check4")
        self.assertEqual([m["id"] for m in msgs], ids)
        for i, m in enumerate(msgs):
            self.assertTrue(m["data"].startswith(b"Return-Path: <a@x.example>\nReceived: "))
            self.assertTrue(m["data"].endswith(msg(i).replace(b"\r\n", b"\n").replace(
                b"\n..a", b"\n.a")), m["data"])
            self.assertEqual(m["envelope"]["id"], ids[i])
            self.assertEqual(m["envelope"]["rcpt_to"], ["b@y.example", "c@y.example"])
            self.assertEqual(m["rcpt"], ["b@y.example", "c@y.example"])
        self.assertFalse(os.path.exists(spool))
        st = mp.status()["nats"]
        self.assertEqual((st["published"], st["failed"]), (5, 0))

    def test_server_gone_is_451(self):
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        mp = self.start({"SMTPD_NATS_MODE": "sync", "SMTPD_NATS_TIMEOUT": "2s"})
        mid = self.send_ok(1)
        self.assertTrue(os.path.exists(self.cur_file(mp, mid)))  # maildir: kept, delivered
        self.assertEqual(mp.read_meta(mid)["delivery"]["state"], "delivered")
        self.node.kill9()
        t0 = time.monotonic()
        code, lines = self.send(2)
        self.assertEqual(code, 451, lines)
        self.assertIn("4.3.0", " ".join(lines))
        self.assertLess(time.monotonic() - t0, 8)
        self.assertEqual(mp.new_files(), [])
        self.wait_for(lambda: mp.http_get("/readyz")[0] == 503, 10, "not ready", mp)
        _, _, body = mp.http_get("/readyz")
        self.assertIn(b"NATS not connected", body)
        self.assertIs(mp.status()["nats"]["connected"], False)
        self.assertGreaterEqual(mp.status()["nats"]["failed"], 1)


def make_tls(d):
    """A CA and a server certificate for 127.0.0.1 (openssl), and a second CA
    that did not sign it. Returns (ca, other_ca, cert, key) paths."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)
    for name in ("ca", "other"):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=test %s" % name, "-keyout", name + ".key", "-out", name + ".pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
         "server.key", "-out", "server.csr")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return tuple(os.path.join(d, n) for n in ("ca.pem", "other.pem", "server.pem", "server.key"))


class TestSecurity(NatsCase):
    def test_tls_verified_by_smtpd_nats_ca(self):
        d = tempfile.mkdtemp(prefix="mailport-nats-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        ca, other, cert, key = make_tls(d)
        self.cluster = nc.Cluster(1, extra=['tls { cert_file: "%s"\n  key_file: "%s" }'
                                            % (cert, key)], scheme="tls")
        self.cluster.ca = ca
        self.addCleanup(self.cluster.close)
        self.node = self.cluster.nodes[0]
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        mp = self.start({"SMTPD_NATS_CA": ca})
        self.assertTrue(self.node.url.startswith("tls://"))
        mid = self.send_ok(1)
        self.wait_for(lambda: os.path.exists(self.cur_file(mp, mid)), 15, "delivered", mp)
        self.assertEqual([m["id"] for m in self.cluster.dump("MAILPORT", "tls")], [mid])
        self.assertEqual(mp.status()["nats"]["server"], self.node.url)
        # A CA that did not sign the server's certificate: no connection.
        mp2 = self.start({"SMTPD_NATS_CA": other}, wait=False)
        time.sleep(2)
        st = mp2.status()["nats"]
        self.assertIs(st["connected"], False)
        self.assertEqual(mp2.http_get("/readyz")[0], 503)
        mid2 = self.send_ok(2)  # forward mode: the spool takes it
        self.assertIn(mid2, mp2.new_files())

    def test_user_password_in_the_url(self):
        self.cluster = nc.Cluster(1, extra=['authorization { user: "mp"\n  password: "s3cret" }'],
                                  tool_url=lambda nd: nd.url.replace("nats://", "nats://mp:s3cret@"))
        self.addCleanup(self.cluster.close)
        self.node = self.cluster.nodes[0]
        self.cluster.start()
        self.cluster.create_stream("MAILPORT", SUBJECT, 1)
        good = self.node.url.replace("nats://", "nats://mp:s3cret@")
        mp = self.start({"SMTPD_NATS_URL": good, "SMTPD_NATS_MODE": "sync"})
        mid = self.send_ok(1)
        self.assertEqual([m["id"] for m in self.cluster.dump("MAILPORT", "auth")], [mid])
        # The password never reaches /status or the log.
        self.assertNotIn("s3cret", json.dumps(mp.status()))
        self.assertNotIn("s3cret", mp.stderr())
        bad = self.node.url.replace("nats://", "nats://mp:wrong@")
        mp2 = self.start({"SMTPD_NATS_URL": bad, "SMTPD_NATS_MODE": "sync"}, wait=False)
        code, lines = self.send(2)
        self.assertEqual(code, 451, lines)
        self.assertIs(mp2.status()["nats"]["connected"], False)


class TestReadiness(NatsCase):
    def test_readyz_names_the_missing_stream_until_it_exists(self):
        self.cluster.start()
        mp = self.start(wait=False, stream="LATER")
        self.wait_for(lambda: mp.status()["nats"]["connected"], 10, "connected", mp)
        self.wait_for(lambda: mp.http_get("/readyz")[0] == 503, 5, "503", mp)
        st, _, body = mp.http_get("/readyz")
        self.assertEqual(st, 503)
        self.assertIn(b"NATS stream LATER does not exist", body)
        self.assertEqual(mp.status()["nats"]["last_error"], "stream LATER not found")
        self.cluster.create_stream("LATER", SUBJECT, 1)
        self.wait_for(lambda: mp.http_get("/readyz")[0] == 200, 10, "ready", mp)

    def test_max_payload_too_small_is_exit_2(self):
        self.cluster = nc.Cluster(1, max_payload=1024 * 1024)
        self.addCleanup(self.cluster.close)
        self.node = self.cluster.nodes[0]
        self.cluster.start()
        mp = self.new_mailport()
        mp.start({"SMTPD_NATS_URL": self.node.url, "SMTPD_MAX_MESSAGE_SIZE": "2000000"},
                 wait=False)
        self.assertEqual(mp.wait_exit(20), 2)
        err = mp.stderr()
        self.assertIn("max_payload is 1048576", err)
        self.assertIn("SMTPD_MAX_MESSAGE_SIZE 2000000", err)
        # Below it (with room for the headers): it starts.
        mp2 = self.new_mailport()
        port = h.free_port()
        mp2.start({"SMTPD_NATS_URL": self.node.url, "SMTPD_MAX_MESSAGE_SIZE": "900000",
                   "SMTPD_PORTS": str(port)}, smtp_wait=("127.0.0.1", port))
        time.sleep(0.5)
        self.assertTrue(mp2.alive(), mp2.stderr())

    def test_bad_settings_exit_2(self):
        cases = [
            ({"SMTPD_NATS_URL": "http://127.0.0.1:4222"}, "SMTPD_NATS_URL"),
            ({"SMTPD_NATS_URL": "nats://a,,nats://b"}, "SMTPD_NATS_URL"),
            ({"SMTPD_NATS_URL": "nats://127.0.0.1:1", "SMTPD_NATS_MODE": "later"},
             "SMTPD_NATS_MODE"),
            ({"SMTPD_NATS_URL": "nats://127.0.0.1:1", "SMTPD_WEBHOOK_URL": "http://x/"},
             "SMTPD_WEBHOOK_URL"),
            ({"SMTPD_NATS_URL": "nats://127.0.0.1:1", "SMTPD_DELIVER": "discard"},
             "SMTPD_NATS_MODE"),
            ({"SMTPD_NATS_URL": "nats://127.0.0.1:1", "SMTPD_NATS_TIMEOUT": "0"},
             "SMTPD_NATS_TIMEOUT"),
        ]
        for env, name in cases:
            r = h.run(["--check-config"], env=env)
            self.assertEqual(r.returncode, 2, (env, r.stderr))
            self.assertIn(name, r.stderr, env)
            self.assertEqual(len(h.stderr_lines(r.stderr)), 1, r.stderr)
        # Files the settings name, checked when NATS is set up: exit 2 too.
        self.cluster.start()
        for env, want in (({"SMTPD_NATS_CREDS": "/nonexistent/mp.creds"},
                           "SMTPD_NATS_CREDS: cannot read /nonexistent/mp.creds"),
                          ({"SMTPD_NATS_CA": "/nonexistent/ca.pem"},
                           "SMTPD_NATS_CA: set, but no SMTPD_NATS_URL is tls://")):
            mp = self.new_mailport()
            env = dict(env, SMTPD_NATS_URL=self.node.url, SMTPD_MAX_MESSAGE_SIZE="100000")
            mp.start(env, wait=False)
            self.assertEqual(mp.wait_exit(20), 2, mp.stderr())
            self.assertIn(want, mp.stderr())


if __name__ == "__main__":
    # 22 s alone here (ten cases, each with its own NATS server).
    h.main(timeout=150)
