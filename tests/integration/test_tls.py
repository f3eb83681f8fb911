#!/usr/bin/python3
"""TLS (SPEC 6) against the real binary: STARTTLS with smtplib, implicit TLS
with SMTP_SSL, swaks --tls / --tlsc, openssl s_client -starttls smtp, the
STARTTLS injection (CVE-2011-0411), SMTPD_TLS=required, certificate reload by
SIGHUP and by a changed file (seen by fingerprint, old sessions keep going), a
bad certificate on reload, the handshake timeout, the self-signed certificate,
TLS 1.3 minimum and cipher list, the envelope's "tls", and start-up errors."""

import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import tls_helpers as t  # noqa: E402

MSG = b"Subject: tls\r\n\r\nhello over TLS\r\n"


class TLSCase(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        if not t.have_openssl():
            self.skipTest("openssl CLI not installed")
        self.dir = self.mkdtemp()
        self.cert, self.key = t.make_cert(self.dir, "a")

    def mkdtemp(self):
        d = tempfile.mkdtemp(prefix="mailport-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start(self, env=None, ports=1, tls_ports=0, cert=True):
        """mailport on `ports` plain ports then `tls_ports` implicit TLS ports."""
        self.ports = h.free_ports(ports + tls_ports)
        e = {"SMTPD_PORTS": ":".join(str(p) for p in self.ports)}
        if tls_ports:
            e["SMTPD_TLS_PORTS"] = ",".join(str(p) for p in self.ports[ports:])
        if cert:
            e["SMTPD_TLS_CERT"] = self.cert
            e["SMTPD_TLS_KEY"] = self.key
        e.update(env or {})
        self.mp = self.mailport(e)
        return self.mp

    def smtp(self, port=None):
        s = smtplib.SMTP("127.0.0.1", port or self.ports[0], local_hostname="client.example",
                         timeout=10)
        self.addCleanup(self._close, s)
        return s

    def smtp_ssl(self, port, ctx=None):
        s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example", timeout=10,
                             context=ctx or t.client_context())
        self.addCleanup(self._close, s)
        return s

    @staticmethod
    def _close(s):
        try:
            s.quit()
        except Exception:
            s.close()

    def only_meta(self):
        files = self.mp.meta_files()
        self.assertEqual(len(files), 1, files)
        return self.mp.read_meta(files[0][:-len(".json")])

    def listener(self, port):
        for l in self.mp.status()["listeners"]:
            if l["port"] == port:
                return l
        raise AssertionError("no listener on %d" % port)

    def starttls_fingerprint(self):
        s = self.smtp()
        s.ehlo()
        s.starttls(context=t.client_context())
        return t.sock_fingerprint(s.sock), s


class StartTLS(TLSCase):
    def test_smtplib_starttls_and_envelope(self):
        self.start({"SMTPD_TLS": "optional"})
        self.assertEqual(self.listener(self.ports[0])["tls"], "starttls")
        s = self.smtp()
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        self.assertTrue(s.has_extn("starttls"))
        code, msg = s.starttls(context=t.client_context())
        self.assertEqual((code, msg), (220, b"2.0.0 Ready to start TLS"))
        self.assertEqual(t.sock_fingerprint(s.sock), t.file_fingerprint(self.cert))
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again under TLS")
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        meta = self.only_meta()
        self.assertEqual(meta["tls"]["version"], "TLSv1.3")
        self.assertTrue(meta["tls"]["cipher"].startswith("TLS_"), meta)
        self.assertIsNone(meta["auth_user"])
        stored = self.mp.read_new(meta["id"]).decode()
        self.assertIn("with ESMTPS id", stored.split("\n\n")[0])
        err = self.mp.stderr()
        self.assertRegex(err, r"tls established .*version=TLSv1\.3 cipher=TLS_")
        # STARTTLS a second time: 503, not a second handshake.
        code, msg = s.docmd("STARTTLS")
        self.assertEqual(code, 503, msg)

    def test_plaintext_when_tls_optional(self):
        self.start({"SMTPD_TLS": "optional"})
        s = self.smtp()
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        self.assertIsNone(self.only_meta()["tls"])

    def test_off_means_not_offered(self):
        self.start({}, cert=False)
        self.assertEqual(self.listener(self.ports[0])["tls"], "none")
        s = self.smtp()
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        code, text = s.docmd("STARTTLS")
        self.assertEqual(code, 454)  # RFC 3207 / issue 5: TLS unavailable
        self.assertTrue(text.startswith(b"4.7.0"), text)

    def test_required(self):
        self.start({"SMTPD_TLS": "required"})
        s = self.smtp()
        s.ehlo()
        code, msg = s.docmd("MAIL FROM:<a@x.example>")
        self.assertEqual(code, 530, msg)
        self.assertTrue(msg.startswith(b"5.7.0"), msg)
        s.starttls(context=t.client_context())
        s.ehlo()
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})

    def test_injection_discarded(self):
        """CVE-2011-0411: RSET pipelined behind STARTTLS is never answered."""
        self.start({"SMTPD_TLS": "optional"})
        c = t.TLSRaw("127.0.0.1", self.ports[0])
        self.addCleanup(c.close)
        c.expect("EHLO client.example", 250)
        c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 220, lines)
        # Nothing else came in plaintext ...
        self.assertEqual(c.buf, b"")
        c.starttls_now()
        # ... nor after the handshake: the RSET and MAIL were thrown away.
        self.assertTrue(c.silent_for(1.5), "a reply to injected plaintext: %r" % c.buf)
        code, lines = c.cmd("RCPT TO:<b@y.example>")
        self.assertEqual(code, 503, lines)  # no EHLO yet: state was reset
        c.expect("EHLO client.example", 250)
        code, lines = c.cmd("RCPT TO:<b@y.example>")
        self.assertEqual((code, lines), (503, ["503 5.5.1 Error: need MAIL command"]))
        self.assertIn("plaintext pipelined after STARTTLS discarded", self.mp.stderr())

    def test_openssl_s_client(self):
        self.start({"SMTPD_TLS": "optional"})
        for extra in ([], ["-brief"]):
            r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-crlf", "-ign_eof",
                                "-connect", "127.0.0.1:%d" % self.ports[0]] + extra,
                               input=b"NOOP\nQUIT\n", capture_output=True, timeout=30)
            out = (r.stdout + r.stderr).decode("utf-8", "replace")
            self.assertIn("TLSv1.3", out)
            self.assertIn("250 2.0.0 Ok", out)
            self.assertIn("CN = mx.test.example", out)
            self.assertIn("221 2.0.0 Bye", out)

    def test_swaks(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        self.start({"SMTPD_TLS": "optional"}, tls_ports=1)
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.ports[0], "--tls",
                            "--to", "b@y.example", "--from", "a@x.example"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("TLS started", r.stdout)
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.ports[1], "--tlsc",
                            "--to", "b@y.example", "--from", "a@x.example"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("TLS started", r.stdout)
        self.assertNotIn("STARTTLS", r.stdout)
        metas = [self.mp.read_meta(f[:-5]) for f in self.mp.meta_files()]
        self.assertEqual(len(metas), 2)
        self.assertEqual(sorted(m["local"]["port"] for m in metas), sorted(self.ports))
        for m in metas:
            self.assertTrue(m["tls"]["version"].startswith("TLSv1."), m)


class Implicit(TLSCase):
    def test_smtp_ssl(self):
        self.start({}, tls_ports=1)
        plain, tls = self.ports
        self.assertEqual(self.listener(plain)["tls"], "none")
        self.assertEqual(self.listener(tls)["tls"], "implicit")
        s = self.smtp_ssl(tls)
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        self.assertEqual(t.sock_fingerprint(s.sock), t.file_fingerprint(self.cert))
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        meta = self.only_meta()
        self.assertEqual(meta["tls"]["version"], "TLSv1.3")
        self.assertEqual(meta["local"]["port"], tls)
        # The plain listener stays plain.
        s2 = self.smtp(plain)
        s2.ehlo()
        self.assertFalse(s2.has_extn("starttls"))

    def test_plaintext_client_on_tls_port(self):
        self.start({}, tls_ports=1)
        sock = socket.create_connection(("127.0.0.1", self.ports[1]), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(b"EHLO client.example\r\n")
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        self.assertNotIn(b"220", data)
        self.assertNotIn(b"250", data)
        self.assertTrue(t.wait_log(self.mp, "tls handshake failed"), self.mp.stderr())

    def test_handshake_timeout(self):
        self.start({"SMTPD_COMMAND_TIMEOUT": "2", "SMTPD_TLS": "optional"}, tls_ports=1)
        # Implicit: connect, say nothing.
        t0 = time.monotonic()
        c = t.TLSRaw("127.0.0.1", self.ports[1], read_greeting=False)
        self.addCleanup(c.close)
        self.assertTrue(c.closed_by_peer(timeout=8), "silent client not dropped")
        took = time.monotonic() - t0
        self.assertGreater(took, 1.5)
        self.assertLess(took, 5.0)
        self.assertEqual(c.buf, b"")
        # STARTTLS, then silence mid-handshake.
        c2 = t.TLSRaw("127.0.0.1", self.ports[0])
        self.addCleanup(c2.close)
        c2.expect("EHLO client.example", 250)
        c2.expect("STARTTLS", 220)
        t0 = time.monotonic()
        self.assertTrue(c2.closed_by_peer(timeout=8))
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(self.mp.stderr().count("tls handshake timeout"), 2)

    def test_min_version_and_ciphers(self):
        self.start({"SMTPD_TLS_MIN_VERSION": "TLSv1.3"}, tls_ports=1)
        with self.assertRaises((ssl.SSLError, OSError)):
            t.implicit(self.ports[1], t.client_context(maximum=ssl.TLSVersion.TLSv1_2))
        c = t.implicit(self.ports[1], t.client_context(minimum=ssl.TLSVersion.TLSv1_3))
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220)
        self.assertEqual(c.sock.version(), "TLSv1.3")

    def test_tls12_cipher_list(self):
        cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
        self.start({"SMTPD_TLS_CIPHERS": cipher}, tls_ports=1)
        s = self.smtp_ssl(self.ports[1], t.client_context(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(s.sock.version(), "TLSv1.2")
        self.assertEqual(s.sock.cipher()[0], cipher)
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        self.assertEqual(self.only_meta()["tls"], {"version": "TLSv1.2", "cipher": cipher})


class SelfSigned(TLSCase):
    def test_generated_when_no_cert(self):
        self.start({"SMTPD_TLS": "optional"}, tls_ports=1, cert=False)
        self.assertIn("generated a self-signed ECDSA P-256 certificate", self.mp.stderr())
        fp, s = self.starttls_fingerprint()
        c = self.smtp_ssl(self.ports[1])
        der = c.sock.getpeercert(binary_form=True)
        self.assertEqual(t.der_fingerprint(der), fp)  # one certificate for both
        text = t.cert_text(der)
        self.assertIn("CN = mx.test.example", text)
        self.assertIn("DNS:mx.test.example", text)
        self.assertIn("IP Address:127.0.0.1", text)
        self.assertIn("prime256v1", text)
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        # SIGHUP has no file to read: the certificate stays.
        self.mp.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertEqual(self.starttls_fingerprint()[0], fp)


class Reload(TLSCase):
    def test_sighup_reload_keeps_old_sessions(self):
        self.start({"SMTPD_TLS": "optional"})
        fp_a = t.file_fingerprint(self.cert)
        fp, old = self.starttls_fingerprint()
        self.assertEqual(fp, fp_a)
        old.ehlo()
        b_cert, b_key = t.make_cert(self.dir, "b", cn="mx.test.example", key_type="rsa")
        t.install(b_key, self.key)
        t.install(b_cert, self.cert)
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(t.wait_log(self.mp, "TLS certificate reloaded"), self.mp.stderr())
        fp_new, new = self.starttls_fingerprint()
        self.assertEqual(fp_new, t.file_fingerprint(b_cert))
        self.assertNotEqual(fp_new, fp_a)
        # The session that started with the old certificate goes on.
        self.assertEqual(old.sendmail("a@x.example", ["b@y.example"], MSG), {})
        new.ehlo()
        self.assertEqual(new.sendmail("a@x.example", ["c@y.example"], MSG), {})

    def test_changed_files_picked_up_without_signal(self):
        self.start({"SMTPD_TLS": "optional"})
        b_cert, b_key = t.make_cert(self.dir, "b")
        # Key first, then the certificate: the half-rotated state is refused
        # (or not seen), the finished one is taken.
        t.install(b_key, self.key)
        t.install(b_cert, self.cert)
        want = t.file_fingerprint(b_cert)
        deadline = time.monotonic() + 15
        fp = None
        while time.monotonic() < deadline:
            fp, s = self.starttls_fingerprint()
            if fp == want:
                break
            time.sleep(0.5)
        self.assertEqual(fp, want, self.mp.stderr())
        self.assertIn("the certificate files changed", self.mp.stderr())

    def test_bad_certificate_refused_old_stays(self):
        self.start({"SMTPD_TLS": "optional"})
        fp_a = t.file_fingerprint(self.cert)
        with open(self.cert + ".bad", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        t.install(self.cert + ".bad", self.cert)
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(t.wait_log(self.mp, "TLS certificate not reloaded, the old one stays"),
                        self.mp.stderr())
        self.assertIn("SMTPD_TLS_CERT:", self.mp.stderr())
        fp, s = self.starttls_fingerprint()
        self.assertEqual(fp, fp_a)
        s.ehlo()
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        # A certificate whose key is not the one in SMTPD_TLS_KEY: refused too.
        b_cert, _ = t.make_cert(self.dir, "b")
        t.install(b_cert, self.cert)
        self.mp.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.mp.stderr().count("not reloaded") < 2:
            time.sleep(0.05)
        self.assertIn("does not match the certificate", self.mp.stderr())
        self.assertEqual(self.starttls_fingerprint()[0], fp_a)
        # The watcher does not retry the same refused files every few seconds.
        time.sleep(3.5)
        self.assertEqual(self.mp.stderr().count("not reloaded"), 2, self.mp.stderr())


class StartupErrors(TLSCase):
    def run_bad(self, env, code, want):
        port = h.free_port()
        e = {"SMTPD_PORTS": str(port), "SMTPD_HTTP": "off", "SMTPD_SPOOL": self.dir + "/sp"}
        e.update(env)
        r = h.run([], env=e, timeout=30)
        self.assertEqual(r.returncode, code, r.stderr)
        lines = h.stderr_lines(r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("mailport: "), lines)
        self.assertIn(want, lines[0])
        self.assertEqual(h.connect_state("127.0.0.1", port, timeout=1)[0], "refused")

    def test_errors(self):
        other_cert, other_key = t.make_cert(self.dir, "other")
        self.run_bad({"SMTPD_TLS": "optional", "SMTPD_TLS_CERT": self.dir + "/missing.pem",
                      "SMTPD_TLS_KEY": self.key}, 1, "SMTPD_TLS_CERT: cannot read")
        self.run_bad({"SMTPD_TLS": "optional", "SMTPD_TLS_CERT": self.cert,
                      "SMTPD_TLS_KEY": self.dir + "/missing.key"}, 1,
                     "SMTPD_TLS_KEY: cannot read")
        self.run_bad({"SMTPD_TLS": "required", "SMTPD_TLS_CERT": self.cert,
                      "SMTPD_TLS_KEY": other_key}, 1,
                     "SMTPD_TLS_KEY: %s does not match the certificate" % other_key)
        self.run_bad({"SMTPD_TLS": "optional", "SMTPD_TLS_CERT": self.cert,
                      "SMTPD_TLS_KEY": self.key, "SMTPD_TLS_CIPHERS": "NOPE"}, 2,
                     "SMTPD_TLS_CIPHERS")
        self.run_bad({"SMTPD_TLS_PORTS": "1"}, 2, "SMTPD_TLS_PORTS: port 1 is not the port")
        self.run_bad({"SMTPD_TLS_KEY": self.key}, 2, "SMTPD_TLS_KEY is set but SMTPD_TLS_CERT")
        # A certificate given while no listener speaks TLS is not even read.
        port = h.free_port()
        mp = self.mailport({"SMTPD_PORTS": str(port), "SMTPD_TLS_CERT": "/nonexistent"})
        self.assertEqual(h.connect_state("127.0.0.1", port)[0], "open")
        self.assertIn("SMTPD_TLS_CERT is set, but no listener speaks TLS", mp.stderr())
        mp.stop()


if __name__ == "__main__":
    h.main(timeout=240)
