#!/usr/bin/python3
"""rspamd's verdict on every message (SPEC 8), against a real rspamd (Debian's
3.4) and a real authoritative DNS (dnsmasq), both started and stopped by this
script on loopback ports of their own, with their configuration, run and data
directories under its temporary directory.

Two test domains carry SPF, DKIM (a key made here) and DMARC records; messages
are DKIM-signed with python3-dkim and arrive through a PROXY header from a
non-local address (198.51.100.7), since rspamd does not check SPF for loopback
clients. Cases: SPF pass / fail, DKIM pass / broken body, DMARC pass / reject,
GTUBE (554 5.7.1, nothing stored), rspamd's Authentication-Results added from
its milter block, a forged Authentication-Results claiming our name removed
(one of another server kept), the verdict in meta/, /messages and the webhook's
JSON, SMTPD_VERDICT_JSON seen by a filter, the counters in /status and
/metrics, and rspamd stopped: 451 4.7.1, or with SMTPD_RSPAMD_FAIL=accept
stored with "verdict": null and a warning."""

import base64
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

try:
    import dkim  # Debian's python3-dkim (only under /usr/bin/python3)
except ImportError:
    dkim = None

RSPAMD = shutil.which("rspamd") or ("/usr/bin/rspamd" if os.access("/usr/bin/rspamd", os.X_OK)
                                    else None)
DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None)
OPENSSL = shutil.which("openssl")

CLIENT_IP = "198.51.100.7"  # where the PROXY header says the client is
HOSTNAME = "mx.test.example"  # the harness's SMTPD_HOSTNAME: our authserv-id
GOOD, BAD = "good.test", "bad.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Set by setUpModule.
ENV = {}


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("%s not ready after %d s" % (what, timeout))


def _ping(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ping" % port, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _dns_up(port):
    """A TXT query for good.test answered (dnsmasq is serving)."""
    q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x04good\x04test\x00"
         + b"\x00\x10\x00\x01")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(4096)
        return r[:2] == b"\x12\x34" and r[7] >= 1
    except OSError:
        return False
    finally:
        s.close()


def _keygen(tmp):
    key = os.path.join(tmp, "dkim.pem")
    subprocess.run([OPENSSL, "genrsa", "-out", key, "1024"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    der = subprocess.run([OPENSSL, "rsa", "-in", key, "-pubout", "-outform", "DER"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30).stdout
    with open(key, "rb") as f:
        return f.read(), base64.b64encode(der).decode()


def _start_dns(tmp, port, pub):
    records = [
        # good.test: our client may send for it; bad.test: it may not.
        (GOOD, "v=spf1 ip4:%s -all" % CLIENT_IP),
        ("s1._domainkey." + GOOD, "v=DKIM1; k=rsa; p=" + pub),
        ("_dmarc." + GOOD, "v=DMARC1; p=reject"),
        (BAD, "v=spf1 ip4:192.0.2.1 -all"),
        ("s1._domainkey." + BAD, "v=DKIM1; k=rsa; p=" + pub),
        ("_dmarc." + BAD, "v=DMARC1; p=reject"),
    ]
    # --local=/#/: every other name is NXDOMAIN at once (rspamd's RBL and
    # reverse lookups), nothing is forwarded. --keep-in-foreground, not
    # --no-daemon: the latter serves TCP in the main process, stalling rspamd.
    args = [DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--port=%d" % port,
            "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--local=/#/", "--pid-file=" + os.path.join(tmp, "dnsmasq.pid")]
    args += ["--txt-record=%s,%s" % (name, text) for name, text in records]
    log = open(os.path.join(tmp, "dnsmasq.log"), "wb")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return p


def _rspamd_conf(conf, port, dns_port):
    local = os.path.join(conf, "local.d")
    for d in (local, os.path.join(conf, "run"), os.path.join(conf, "db"),
              os.path.join(conf, "log")):
        os.makedirs(d, exist_ok=True)
    files = {
        "worker-normal.inc": 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % port,
        # Controller, proxy and fuzzy off: only the normal worker listens.
        "worker-controller.inc": "enabled = false;\n",
        "worker-proxy.inc": "enabled = false;\n",
        "worker-fuzzy.inc": "enabled = false;\ncount = -1;\n",
        "options.inc": 'dns {\n  nameserver = ["127.0.0.1:%d"];\n  timeout = 1s;\n'
                       '  retransmits = 2;\n}\n' % dns_port,
        # rspamd's Authentication-Results, for every client; its own removal
        # of earlier results off, so that ours (RFC 8601 5) is what is seen.
        "milter_headers.conf": 'use = ["authentication-results"];\nskip_local = false;\n'
                               'skip_authenticated = false;\n'
                               'routines {\n  authentication-results {\n    remove = false;\n'
                               '  }\n}\n',
        "redis.conf": "",
        "logging.inc": 'type = "file";\nlevel = "notice";\n',
    }
    for name, text in files.items():
        with open(os.path.join(local, name), "w") as f:
            f.write(text)


def _start_rspamd(conf):
    args = [RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf",
            "--var=LOCAL_CONFDIR=" + conf, "--var=RUNDIR=" + os.path.join(conf, "run"),
            "--var=DBDIR=" + os.path.join(conf, "db"), "--var=LOGDIR=" + os.path.join(conf, "log")]
    if os.geteuid() == 0:
        args += ["-u", "root", "-g", "root", "-i"]  # -i: running as root is allowed
    log = open(os.path.join(conf, "stdout.log"), "wb")
    # Its own process group: the workers go with the main process.
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    log.close()
    return p


def _stop(p, group=False):
    if p is None or p.poll() is not None:
        return
    try:
        if group:
            os.killpg(p.pid, signal.SIGTERM)
        else:
            p.terminate()
        p.wait(timeout=10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            if group:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
        except ProcessLookupError:
            pass
        p.wait(timeout=5)


def setUpModule():
    missing = [n for n, v in (("rspamd", RSPAMD), ("dnsmasq", DNSMASQ), ("python3-dkim", dkim),
                              ("openssl", OPENSSL)) if v is None]
    if missing:
        raise unittest.SkipTest("not installed: " + ", ".join(missing))
    tmp = tempfile.mkdtemp(prefix="mailport-rspamd-")
    ENV["tmp"] = tmp
    ENV["key"], pub = _keygen(tmp)
    ENV["dns_port"] = dns_port = h.free_port()  # a UDP port is free where the TCP one is, mostly
    ENV["dns"] = _start_dns(tmp, dns_port, pub)
    _wait(lambda: _dns_up(dns_port) or ENV["dns"].poll() is not None, 10, "dnsmasq")
    if ENV["dns"].poll() is not None:
        raise AssertionError("dnsmasq exited: %s" % open(os.path.join(tmp, "dnsmasq.log")).read())
    conf = os.path.join(tmp, "rspamd")
    ENV["rspamd_port"] = port = h.free_port()
    _rspamd_conf(conf, port, dns_port)
    ENV["conf"] = conf
    ENV["rspamd"] = _start_rspamd(conf)
    _wait(lambda: _ping(port) or ENV["rspamd"].poll() is not None, 90, "rspamd")
    if ENV["rspamd"].poll() is not None:
        raise AssertionError("rspamd exited: %s" % open(os.path.join(conf, "stdout.log")).read())


def tearDownModule():
    _stop(ENV.get("rspamd"), group=True)
    _stop(ENV.get("dns"))
    if ENV.get("tmp") and not os.environ.get("MAILPORT_TEST_KEEP_TMP"):
        shutil.rmtree(ENV["tmp"], ignore_errors=True)


def message(mail_from_domain, subject, body="Hello, this is a test message.\r\n", sign=None,
            extra=b""):
    """A message (CRLF), DKIM-signed for the domain `sign` when given."""
    msg = ("Date: Fri, 27 Nov 2026 08:40:58 +0000\r\n"
           "From: Alice <alice@%s>\r\n"
           "To: Bob <bob@%s>\r\n"
           "Subject: %s\r\n"
           "Message-ID: <%d.%f@%s>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n"
           "\r\n" % (mail_from_domain, HOSTNAME, subject, os.getpid(), time.time(),
                     mail_from_domain)).encode() + body.encode()
    if sign:
        sig = dkim.sign(msg, b"s1", sign.encode(), ENV["key"],
                        include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
        msg = sig + msg
    return extra + msg


class RspamdCase(h.MailportTestCase):
    def start(self, env=None, url=None, filter_body=None, webhook=None):
        self.pport = h.free_port()
        e = {"SMTPD_PORTS": str(self.pport), "SMTPD_PROXY_PORTS": str(self.pport),
             "SMTPD_PROXY_TRUSTED": "127.0.0.1/32",
             "SMTPD_RSPAMD_URL": url or "http://127.0.0.1:%d" % ENV["rspamd_port"],
             "SMTPD_RSPAMD_TIMEOUT": "15"}
        mp = self.new_mailport()
        if filter_body is not None:
            path = os.path.join(mp.tmp, "filter.sh")
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + filter_body + "\n")
            os.chmod(path, stat.S_IRWXU)
            e["SMTPD_FILTER"] = path
        if webhook is not None:
            e["SMTPD_WEBHOOK_URL"] = webhook.url
        e.update(env or {})
        mp.start(e)
        return mp

    def send(self, data, mail_from, rcpt="bob@" + HOSTNAME):
        """One message through a PROXY header from CLIENT_IP; the final reply."""
        s = socket.create_connection(("127.0.0.1", self.pport), timeout=30)
        s.sendall(("PROXY TCP4 %s 127.0.0.1 40000 %d\r\n" % (CLIENT_IP, self.pport)).encode())
        c = h.RawSMTP.__new__(h.RawSMTP)
        c.sock, c.buf = s, b""
        try:
            c.greeting = c.reply()
            return h.send_message_raw(c, mail_from, [rcpt], h.dot_stuff(data),
                                      ehlo="client." + mail_from.split("@")[1])
        finally:
            c.close()

    def stored(self, mp, mid):
        """The stored file, in new/ or, once the webhook took it, cur/."""
        for sub in ("new", "cur"):
            p = os.path.join(mp.spool, sub, mid)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    return f.read().decode("utf-8", "replace")
        raise AssertionError("%s not stored; stderr:\n%s" % (mid, mp.stderr()[-3000:]))

    def headers(self, text):
        """The header block's fields, unfolded: [(name, value)]."""
        head = text.split("\n\n", 1)[0]
        out = []
        for line in head.split("\n"):
            if line[:1] in (" ", "\t") and out:
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            elif ":" in line:
                n, v = line.split(":", 1)
                out.append((n, v.strip()))
        return out

    def accepted(self, mp, reply):
        self.assertEqual(reply[0], 250, "%r; stderr:\n%s" % (reply, mp.stderr()[-3000:]))
        return h.queued_id(reply[1])


class TestVerdicts(RspamdCase):
    """One mailport with a filter and a webhook: every message's verdict in
    meta/, /messages, the webhook's JSON and the filter's environment."""

    def test_verdicts(self):
        rcv = Receiver()
        self.addCleanup(rcv.close)
        mp = self.start(filter_body='cat >/dev/null; printf "%s" "$SMTPD_VERDICT_JSON" '
                                    '> "$0.$SMTPD_MESSAGE_ID"; exit 0', webhook=rcv)
        filter_out = os.path.join(mp.tmp, "filter.sh.")

        # SPF, DKIM and DMARC pass; a forged Authentication-Results claiming
        # our name goes, another server's stays, rspamd's own is added.
        forged = ("Authentication-Results: %s; spf=pass smtp.mailfrom=x; dkim=pass\r\n"
                  "Authentication-Results: other.example; spf=pass\r\n" % HOSTNAME.upper())
        data = message(GOOD, "all good", sign=GOOD, extra=forged.encode())
        good = self.accepted(mp, self.send(data, "alice@" + GOOD))
        meta = mp.read_meta(good)
        v = meta["verdict"]
        self.assertEqual((v["spf"], v["dkim"], v["dmarc"]), ("pass", "pass", "pass"), v)
        self.assertEqual(set(v), {"action", "score", "required_score", "spf", "dkim", "dmarc",
                                  "symbols"})
        self.assertIn("R_SPF_ALLOW", v["symbols"])
        self.assertIn("R_DKIM_ALLOW", v["symbols"])
        self.assertIn(v["action"], ("no action", "greylist", "add header", "rewrite subject"))
        self.assertIsInstance(v["score"], float)
        text = self.stored(mp, good)
        self.assertTrue(text.startswith("Return-Path: <alice@%s>\nReceived: from " % GOOD), text)
        hdrs = self.headers(text)
        ars = [val for name, val in hdrs if name.lower() == "authentication-results"]
        ours = [a for a in ars if a.lower().startswith(HOSTNAME + ";")]
        self.assertEqual(len(ours), 1, ars)
        self.assertIn("spf=pass", ours[0])
        self.assertIn("dkim=pass", ours[0])
        self.assertIn("dmarc=pass", ours[0])
        self.assertNotIn("smtp.mailfrom=x", " ".join(ars))
        self.assertIn("other.example; spf=pass", ars)
        # rspamd's results sit right under our trace headers.
        self.assertEqual([n for n, _ in hdrs[:3]], ["Return-Path", "Received",
                                                    "Authentication-Results"])
        # The size stays the message's as received, though the file changed.
        self.assertEqual(meta["size"], len(data))
        self.assertNotIn("smtp.mailfrom=x", text)

        # SPF fail and DMARC reject (bad.test allows another address; p=reject).
        bad = self.send(message(BAD, "spf fails"), "alice@" + BAD)
        if bad[0] == 250:  # rspamd's rules decide the action, not this test
            v = mp.read_meta(h.queued_id(bad[1]))["verdict"]
            self.assertEqual((v["spf"], v["dmarc"]), ("fail", "fail"), v)
            self.assertIn("R_SPF_FAIL", v["symbols"])
            self.assertIn("DMARC_POLICY_REJECT", v["symbols"])
        else:
            self.assertIn(bad[0], (451, 554), bad)

        # DKIM with a broken body (signed, then changed): fail; SPF still
        # passes, aligned, so DMARC passes.
        signed = message(GOOD, "body changed", sign=GOOD)
        broken = self.accepted(mp, self.send(signed.replace(b"test message", b"TEST MESSAGE"),
                                             "alice@" + GOOD))
        v = mp.read_meta(broken)["verdict"]
        self.assertEqual((v["spf"], v["dkim"], v["dmarc"]), ("pass", "fail", "pass"), v)
        self.assertIn("R_DKIM_REJECT", v["symbols"])

        # GTUBE: rejected with rspamd's message, nothing stored. (Dot files are
        # the webhook's envelope updates in flight for earlier messages.)
        def envelopes():
            return {m for m in mp.meta_files() if not m.startswith(".")}

        before = envelopes()
        r = self.send(message(GOOD, "gtube", body=GTUBE + "\r\n", sign=GOOD), "alice@" + GOOD)
        self.assertEqual(r[0], 554, r)
        self.assertTrue(r[1][-1].startswith("554 5.7.1 "), r)
        self.assertIn("Gtube pattern", r[1][-1])
        self.assertEqual(envelopes(), before)

        # The filter saw each stored message's verdict (and never GTUBE's).
        for mid in (good, broken):
            with open(filter_out + mid) as f:
                self.assertEqual(json.load(f), mp.read_meta(mid)["verdict"])

        # /messages and the webhook carry the same verdict.
        st, _, body = mp.http_get("/messages/" + good)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["verdict"], mp.read_meta(good)["verdict"])
        rcv.wait(lambda r: good in r.delivered_ids() and broken in r.delivered_ids(), 20)
        posted = [q for q in rcv.snapshot() if q.id == good][0]
        self.assertEqual(posted.json()["envelope"]["verdict"], mp.read_meta(good)["verdict"])
        self.assertIn(b"Authentication-Results: " + HOSTNAME.encode(), posted.raw())

        # Counters: a reject, the others by their actions, no failure.
        s = mp.status()["rspamd"]
        self.assertTrue(s["enabled"])
        self.assertGreaterEqual(s["checks"]["reject"], 1)
        self.assertGreaterEqual(sum(s["checks"].values()), 4)
        self.assertEqual(s["failures"], 0)
        st, _, m = mp.http_get("/metrics")
        m = m.decode()
        self.assertIn('mailport_rspamd_checks_total{action="reject"}', m)
        self.assertIn('mailport_rspamd_failures_total{reason="timeout"} 0', m)
        self.assertIn("mailport_rspamd_check_duration_seconds_count ", m)


class TestOff(RspamdCase):
    def test_off(self):
        """Without SMTPD_RSPAMD_URL: "verdict": null, the forged header kept."""
        mp = self.mailport({})
        c = h.RawSMTP("127.0.0.1", int(mp.env["SMTPD_PORTS"]))
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], h.dot_stuff(
            b"Authentication-Results: mx.test.example; spf=pass\r\nSubject: x\r\n\r\nhi\r\n"))
        c.close()
        mid = self.accepted(mp, r)
        self.assertIsNone(mp.read_meta(mid)["verdict"])
        self.assertFalse(mp.status()["rspamd"]["enabled"])


class TestStandIn(RspamdCase):
    """An HTTP stand-in for rspamd (no rules, a delay of our choosing): the
    request itself, the concurrency bound with its queue, the timeout, and a
    drain with checks in flight."""

    def stand_in(self, delay, answer=b'{"action":"no action","score":0.5}'):
        import threading
        state = {"now": 0, "max": 0}
        lock = threading.Lock()

        def policy(req, rcv):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(delay)
            with lock:
                state["now"] -= 1
            return 200, 0, answer

        rcv = Receiver(policy)
        self.addCleanup(rcv.close)
        return rcv, state

    def parallel(self, n, make):
        import threading
        replies = [None] * n

        def one(i):
            try:
                replies[i] = self.send(make(i), "alice@" + GOOD)
            except Exception as e:  # noqa: BLE001 - reported below
                replies[i] = e
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        return replies

    def test_request_and_concurrency(self):
        rcv, state = self.stand_in(0.4)
        mp = self.start({"SMTPD_RSPAMD_CONCURRENCY": "2"}, url=rcv.url + "/")
        replies = self.parallel(5, lambda i: message(GOOD, "queued %d" % i))
        for r in replies:
            self.assertFalse(isinstance(r, Exception), r)
            self.assertEqual(r[0], 250, r)
        self.assertEqual(state["max"], 2)
        reqs = rcv.snapshot()
        self.assertEqual(len(reqs), 5)
        q = reqs[0]
        self.assertEqual(q.path, "/hook/checkv2")
        hdr = dict(q.header_list)
        self.assertEqual(hdr["ip"], CLIENT_IP)
        self.assertEqual(hdr["helo"], "client." + GOOD)
        self.assertEqual(hdr["from"], "alice@" + GOOD)
        self.assertEqual([v for k, v in q.header_list if k == "rcpt"], ["bob@" + HOSTNAME])
        self.assertEqual(hdr["mta-name"], HOSTNAME)
        self.assertTrue(hdr["user-agent"].startswith("mailport/"))
        self.assertNotIn("hostname", hdr)
        self.assertNotIn("user", hdr)
        self.assertNotIn("expect", hdr)
        # The body is the file as stored (nothing to edit here).
        self.assertEqual(q.body, mp.read_new(hdr["queue-id"]))
        v = mp.read_meta(hdr["queue-id"])["verdict"]
        self.assertEqual(v, {"action": "no action", "score": 0.5, "required_score": 0.0,
                             "spf": "none", "dkim": "none", "dmarc": "none", "symbols": {}})

    def test_timeout(self):
        rcv, _ = self.stand_in(4)
        mp = self.start({"SMTPD_RSPAMD_TIMEOUT": "1"}, url=rcv.url)
        t0 = time.monotonic()
        r = self.send(message(GOOD, "slow"), "alice@" + GOOD)
        self.assertEqual(r[0], 451, r)
        self.assertTrue(r[1][-1].startswith("451 4.7.1 "), r)
        self.assertLess(time.monotonic() - t0, 3.5)
        s = mp.status()["rspamd"]
        self.assertEqual((s["failures"], s["timeouts"]), (1, 1))
        self.assertEqual(mp.new_files(), [])

    def test_drain(self):
        """SIGTERM with checks in flight: each client gets 451, mailport
        exits 0 within its grace, nothing leaks (ASan)."""
        rcv, state = self.stand_in(6)
        mp = self.start({"SMTPD_SHUTDOWN_GRACE": "1", "SMTPD_RSPAMD_TIMEOUT": "30"}, url=rcv.url)
        import threading
        out = {}
        t = threading.Thread(target=lambda: out.update(r=self.parallel(2, lambda i: message(
            GOOD, "drained %d" % i))))
        t.start()
        rcv.wait(lambda r: r.arrivals() >= 2, 10)
        mp.proc.send_signal(signal.SIGTERM)
        t.join(30)
        self.assertEqual(mp.wait_exit(15), 0, mp.stderr()[-3000:])
        for r in out["r"]:
            self.assertFalse(isinstance(r, Exception), r)
            self.assertEqual(r[0], 451, r)
        self.assertEqual(mp.new_files(), [])


class TestZzStopped(RspamdCase):
    """Last (the name): rspamd is stopped for good here."""

    def test_stopped(self):
        _stop(ENV["rspamd"], group=True)
        self.assertFalse(_ping(ENV["rspamd_port"]))
        # Default SMTPD_RSPAMD_FAIL=tempfail: 451 4.7.1, nothing stored.
        mp = self.start()
        r = self.send(message(GOOD, "rspamd away", sign=GOOD), "alice@" + GOOD)
        self.assertEqual(r[0], 451, r)
        self.assertTrue(r[1][-1].startswith("451 4.7.1 "), r)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.status()["rspamd"]["failures"], 1)
        self.assertIn("rspamd did not answer", mp.stderr())

        # SMTPD_RSPAMD_FAIL=accept: stored, "verdict": null, a warning; what
        # claims our name is removed all the same, another server's stays.
        mp = self.start({"SMTPD_RSPAMD_FAIL": "accept", "SMTPD_LOG_FORMAT": "json"})
        forged = ("Authentication-Results: %s; dkim=pass\r\n"
                  "Authentication-Results: other.example; spf=pass\r\n" % HOSTNAME).encode()
        mid = self.accepted(mp, self.send(message(GOOD, "accepted anyway", extra=forged),
                                          "alice@" + GOOD))
        self.assertIsNone(mp.read_meta(mid)["verdict"])
        ars = [v for n, v in self.headers(self.stored(mp, mid))
               if n.lower() == "authentication-results"]
        self.assertEqual(ars, ["other.example; spf=pass"])
        warns = [json.loads(l) for l in mp.stderr().splitlines() if l.startswith("{")]
        warns = [w for w in warns if w.get("level") == "warn" and "rspamd" in w.get("msg", "")]
        self.assertTrue(warns, mp.stderr()[-2000:])
        self.assertEqual(warns[0].get("id"), mid)


if __name__ == "__main__":
    h.main(timeout=240)
