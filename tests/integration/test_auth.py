#!/usr/bin/python3
"""SMTP AUTH (SPEC 6) against the real binary: PLAIN and LOGIN with smtplib and
swaks over STARTTLS and implicit TLS, a users file of yescrypt, SHA-512 and
bcrypt hashes, AUTH only under TLS (538) unless SMTPD_AUTH_INSECURE, required
and optional modes, the growing delay of failures, protocol errors, long
initial responses, checks off the loop, a storm of wrong passwords that does
not hold up another client's mail (issue 12: checks have their own pool),
passwords never logged, the users file reloaded on SIGHUP, start-up errors, and
the "Done means" check: swaks --tls --auth PLAIN delivers a message whose
envelope names the user and the TLS version."""

import base64
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import tls_helpers as t  # noqa: E402

MSG = b"Subject: auth\r\n\r\nhello\r\n"
PASSWORDS = {"alice": "s3cret-yes", "bob": "hunter2-sha", "carol": "bcrypt pass"}


class AuthCase(h.MailportTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mailport-auth-")
        cls.users = os.path.join(cls.dir, "users")
        if t.have_openssl():
            cls.cert, cls.key = t.make_cert(cls.dir, "srv")
            with open(cls.users, "w") as f:
                f.write("# mailport users\n")
                f.write("alice:%s\n" % t.yescrypt(PASSWORDS["alice"]))
                f.write("bob:%s\n" % t.sha512(PASSWORDS["bob"]))
                f.write("carol:%s\n" % t.bcrypt(PASSWORDS["carol"]))
                f.write("long:%s\n" % t.yescrypt("L" * 500))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        if not t.have_openssl():
            self.skipTest("openssl CLI not installed")

    def start(self, env=None, users=None, tls_port=True):
        """Ports: [0] STARTTLS (SMTPD_TLS=optional unless env says), [1] implicit TLS."""
        self.ports = h.free_ports(2 if tls_port else 1)
        e = {"SMTPD_PORTS": ":".join(map(str, self.ports)), "SMTPD_TLS": "optional",
             "SMTPD_TLS_CERT": self.cert, "SMTPD_TLS_KEY": self.key, "SMTPD_AUTH": "optional",
             "SMTPD_AUTH_USERS_FILE": users or self.users}
        if tls_port:
            e["SMTPD_TLS_PORTS"] = str(self.ports[1])
        e.update(env or {})
        self.mp = self.mailport({k: v for k, v in e.items()})
        return self.mp

    def smtp(self, tls=True):
        s = smtplib.SMTP("127.0.0.1", self.ports[0], local_hostname="client.example", timeout=20)
        self.addCleanup(self._close, s)
        s.ehlo()
        if tls:
            s.starttls(context=t.client_context())
            s.ehlo()
        return s

    def raw(self):
        c = t.implicit(self.ports[1], timeout=20)
        self.addCleanup(c.close)
        c.expect("EHLO client.example", 250)
        return c

    @staticmethod
    def _close(s):
        try:
            s.quit()
        except Exception:
            s.close()

    def metas(self):
        return [self.mp.read_meta(f[:-5]) for f in self.mp.meta_files()]


class Mechanisms(AuthCase):
    def test_done_means_swaks_tls_auth_plain(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        self.start({"SMTPD_AUTH": "required"})
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.ports[0], "--tls",
                            "--auth", "PLAIN", "--auth-user", "alice", "--auth-password",
                            PASSWORDS["alice"], "--from", "a@x.example", "--to", "b@y.example"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("235 2.7.0 Authentication successful", r.stdout)
        (meta,) = self.metas()
        self.assertEqual(meta["auth_user"], "alice")
        self.assertTrue(meta["tls"]["version"].startswith("TLSv1."), meta)
        self.assertTrue(meta["tls"]["cipher"], meta)
        stored = self.mp.read_new(meta["id"]).decode()
        self.assertIn("with ESMTPSA id", stored.split("\n\n")[0])
        self.assertRegex(self.mp.stderr(), r"authenticated .*user=alice mechanism=PLAIN")

    def test_filter_sees_user_and_tls(self):
        """Issue 5: the authenticated user (and TLS) are passed to filters."""
        out = os.path.join(self.dir, "filter.out")
        self.start({"SMTPD_FILTER": 'echo "$SMTPD_AUTH_USER $SMTPD_TLS" > %s' % out})
        s = self.smtp()
        s.login("carol", PASSWORDS["carol"])
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        with open(out) as f:
            self.assertRegex(f.read(), r"^carol TLSv1\.[23]\n$")

    def test_swaks_login_on_implicit_port(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        self.start()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.ports[1], "--tlsc",
                            "--auth", "LOGIN", "--auth-user", "bob", "--auth-password",
                            PASSWORDS["bob"], "--from", "a@x.example", "--to", "b@y.example"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("334 VXNlcm5hbWU6", r.stdout)
        (meta,) = self.metas()
        self.assertEqual(meta["auth_user"], "bob")
        self.assertEqual(meta["local"]["port"], self.ports[1])

    def test_smtplib_login_each_hash(self):
        self.start()
        for user, pw in PASSWORDS.items():
            for mech in ("PLAIN", "LOGIN"):
                s = self.smtp()
                self.assertIn("PLAIN", s.esmtp_features["auth"])
                self.assertIn("LOGIN", s.esmtp_features["auth"])
                s.user, s.password = user, pw
                auth = s.auth_plain if mech == "PLAIN" else s.auth_login
                code, msg = s.auth(mech, auth, initial_response_ok=(mech == "PLAIN"))
                self.assertEqual(code, 235, (user, mech, msg))
                self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        users = sorted(m["auth_user"] for m in self.metas())
        self.assertEqual(users, sorted(list(PASSWORDS) * 2))

    def test_wrong_password_and_unknown_user(self):
        # smtplib tries PLAIN then LOGIN: six failures from one address, past the
        # per-address limit (SMTPD_AUTH_MAX_FAILURES, tested in test_lenient_strict).
        self.start({"SMTPD_AUTH_MAX_FAILURES": "0"})
        for user, pw in (("alice", "nope"), ("nobody", "x"), ("bob", PASSWORDS["alice"])):
            s = self.smtp()
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login(user, pw)
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.8"), cm.exception)
            # The session goes on, unauthenticated.
            self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        self.assertTrue(all(m["auth_user"] is None for m in self.metas()))

    def test_long_initial_response(self):
        """RFC 4954: AUTH lines up to 12288 octets, beyond the 512 of commands."""
        self.start()
        c = self.raw()
        ir = t.plain_b64("long", "L" * 500)
        self.assertGreater(len(ir), 600)  # over the 512 of a command line
        code, lines = c.cmd("AUTH PLAIN " + ir)
        self.assertEqual((code, lines), (235, ["235 2.7.0 Authentication successful"]))
        c2 = self.raw()
        c2.expect("AUTH PLAIN", 334)
        code, lines = c2.cmd(t.plain_b64("long", "L" * 500))
        self.assertEqual(code, 235, lines)
        c3 = self.raw()
        code, lines = c3.cmd("AUTH PLAIN " + "A" * 13000)
        self.assertEqual((code, lines), (500, ["500 5.5.6 Line too long"]))
        c3.expect("NOOP", 250)


class Policy(AuthCase):
    def test_only_under_tls(self):
        self.start()
        s = self.smtp(tls=False)
        self.assertFalse(s.has_extn("auth"))
        self.assertTrue(s.has_extn("starttls"))
        code, msg = s.docmd("AUTH", "PLAIN " + t.plain_b64("alice", PASSWORDS["alice"]))
        self.assertEqual(code, 538, msg)
        self.assertTrue(msg.startswith(b"5.7.11"), msg)
        s.starttls(context=t.client_context())
        s.ehlo()
        self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
        s.login("alice", PASSWORDS["alice"])
        s.ehlo()
        self.assertFalse(s.has_extn("auth"), "AUTH offered again once authenticated")
        code, msg = s.docmd("AUTH", "PLAIN " + t.plain_b64("alice", PASSWORDS["alice"]))
        self.assertEqual(code, 503, msg)

    def test_insecure(self):
        self.start({"SMTPD_TLS": None, "SMTPD_TLS_CERT": None, "SMTPD_TLS_KEY": None,
                    "SMTPD_AUTH_INSECURE": "1", "SMTPD_AUTH": "required"}, tls_port=False)
        s = self.smtp(tls=False)
        self.assertFalse(s.has_extn("starttls"))
        self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
        code, msg = s.docmd("MAIL FROM:<a@x.example>")
        self.assertEqual(code, 530, msg)
        s.login("carol", PASSWORDS["carol"])
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        (meta,) = self.metas()
        self.assertEqual(meta["auth_user"], "carol")
        self.assertIsNone(meta["tls"])
        stored = self.mp.read_new(meta["id"]).decode()
        self.assertIn("with ESMTPA id", stored.split("\n\n")[0])

    def test_required(self):
        self.start({"SMTPD_AUTH": "required"})
        s = self.smtp()
        code, msg = s.docmd("MAIL FROM:<a@x.example>")
        self.assertEqual((code, msg), (530, b"5.7.0 Authentication required"))
        s.login("bob", PASSWORDS["bob"])
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})

    def test_optional(self):
        self.start()
        s = self.smtp()
        self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], MSG), {})
        (meta,) = self.metas()
        self.assertIsNone(meta["auth_user"])
        self.assertIsNotNone(meta["tls"])

    def test_protocol_errors(self):
        self.start()
        c = self.raw()
        self.assertEqual(c.cmd("AUTH CRAM-MD5"), (504, ["504 5.5.4 Unrecognized authentication type"]))
        self.assertEqual(c.cmd("AUTH PLAIN !!!!"), (501, ["501 5.5.2 Cannot decode response"]))
        c.expect("AUTH LOGIN", 334)
        self.assertEqual(c.cmd("*"), (501, ["501 5.7.0 Authentication aborted"]))
        c.expect("MAIL FROM:<a@x.example>", 250)
        self.assertEqual(c.cmd("AUTH PLAIN " + t.plain_b64("alice", PASSWORDS["alice"])),
                         (503, ["503 5.5.1 Error: MAIL transaction in progress"]))
        c.expect("RSET", 250)
        c.expect("AUTH PLAIN " + t.plain_b64("alice", PASSWORDS["alice"]), 235)
        self.assertEqual(c.cmd("AUTH LOGIN"), (503, ["503 5.5.1 Error: already authenticated"]))

    def test_failures_cost_growing_delay(self):
        self.start()
        c = self.raw()
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            code, lines = c.cmd("AUTH PLAIN " + t.plain_b64("alice", "wrong"))
            took.append(time.monotonic() - t0)
            self.assertEqual((code, lines), (535, ["535 5.7.8 Authentication credentials invalid"]))
        self.assertGreaterEqual(took[0], 0.9)
        self.assertGreaterEqual(took[1], 1.9)
        self.assertGreaterEqual(took[2], 3.9)
        self.assertLess(took[0], 1.9)
        self.assertLess(took[2], 6.0)
        # A success afterwards is not delayed.
        t0 = time.monotonic()
        c.expect("AUTH PLAIN " + t.plain_b64("alice", PASSWORDS["alice"]), 235)
        self.assertLess(time.monotonic() - t0, 0.9)
        # Another session does not pay for this one's failures, and was never
        # blocked by them (the delay is a timer, not a sleep).
        c2 = self.raw()
        t0 = time.monotonic()
        c2.expect("AUTH PLAIN " + t.plain_b64("alice", "wrong"), 535)
        self.assertLess(time.monotonic() - t0, 1.9)
        self.assertEqual(self.mp.stderr().count("authentication failed"), 4)

    def test_checks_run_off_the_loop(self):
        """A slow hash (bcrypt cost 14) does not hold up other sessions."""
        users = os.path.join(self.dir, "slow")
        with open(users, "w") as f:
            f.write("slow:%s\n" % t.bcrypt("pw", rounds=14))
        self.start(users=users)
        c = self.raw()
        done = {}

        def auth():
            t0 = time.monotonic()
            done["reply"] = c.cmd("AUTH PLAIN " + t.plain_b64("slow", "pw"))
            done["took"] = time.monotonic() - t0

        th = threading.Thread(target=auth)
        th.start()
        time.sleep(0.2)
        worst = 0.0
        while th.is_alive():
            c2 = self.raw()
            t0 = time.monotonic()
            c2.expect("NOOP", 250)
            worst = max(worst, time.monotonic() - t0)
            c2.close()
            time.sleep(0.05)
        th.join(30)
        self.assertEqual(done["reply"][0], 235, done)
        self.assertGreater(done["took"], 0.3, "bcrypt cost 14 should take a while")
        # A loop blocked by the hash would hold a NOOP for most of its time.
        self.assertLess(worst, min(0.5, done["took"] / 2),
                        "the loop stalled while a hash was checked (%.2f s of %.2f s)"
                        % (worst, done["took"]))

    def test_auth_storm_does_not_block_mail(self):
        """Issue 12: several clients guessing passwords at once (bounded: 6
        clients, 3 attempts each, a new connection per attempt) while another
        client sends mail. Correctness only, no timing: every message gets its
        250 and every guess its own 535 (not a 454: 6 checks in flight fit the
        pool's queue)."""
        # SMTPD_AUTH_MAX_FAILURES=0: all guesses come from 127.0.0.1, and the
        # per-address limit (issue 13) would answer 454 from the 6th failure
        # on; this test is about the checks' pool.
        self.start({"SMTPD_TLS": None, "SMTPD_TLS_CERT": None, "SMTPD_TLS_KEY": None,
                    "SMTPD_AUTH_INSECURE": "1", "SMTPD_AUTH_MAX_FAILURES": "0"}, tls_port=False)
        clients, attempts = 6, 3
        replies, errors = [], []
        lock = threading.Lock()

        def guess(n):
            for i in range(attempts):
                try:
                    s = smtplib.SMTP("127.0.0.1", self.ports[0], local_hostname="guess.example",
                                     timeout=30)
                    try:
                        s.ehlo()
                        code, msg = s.docmd(
                            "AUTH", "PLAIN " + t.plain_b64("alice", "wrong-%d-%d" % (n, i)))
                        with lock:
                            replies.append((code, msg))
                    finally:
                        s.close()
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(repr(e))

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(clients)]
        for th in threads:
            th.start()
        try:
            s = self.smtp(tls=False)
            for i in range(5):
                body = MSG + b"storm %d\r\n" % i
                self.assertEqual(s.sendmail("a@x.example", ["b@y.example"], body), {})
        finally:
            for th in threads:
                th.join(60)
        self.assertFalse(any(th.is_alive() for th in threads), "a guessing client hung")
        self.assertEqual(errors, [])
        self.assertEqual(len(replies), clients * attempts)
        for code, msg in replies:
            self.assertEqual((code, msg), (535, b"5.7.8 Authentication credentials invalid"))
        self.assertEqual(len(self.metas()), 5)
        self.assertTrue(all(m["auth_user"] is None for m in self.metas()))
        self.assertEqual(self.mp.stderr().count("authentication failed"), clients * attempts)
        self.assertNotIn("authentication unavailable", self.mp.stderr())

    def test_passwords_never_logged(self):
        self.start({"SMTPD_LOG_LEVEL": "debug"})
        pw = PASSWORDS["alice"]
        c = self.raw()
        c.expect("AUTH PLAIN " + t.plain_b64("alice", "Wr0ngPassw0rd"), 535)
        c.expect("AUTH LOGIN", 334)
        c.expect(t.b64("alice"), 334)
        c.expect(t.b64(pw), 235)
        c2 = self.raw()
        c2.cmd("AUTH PLAIN not-base64-Secret")
        c2.expect("AUTH PLAIN " + t.plain_b64("alice", pw), 235)
        self.mp.stop()
        err = self.mp.stderr()
        for secret in (pw, "Wr0ngPassw0rd", t.b64(pw), t.plain_b64("alice", pw),
                       t.plain_b64("alice", "Wr0ngPassw0rd"), "not-base64-Secret"):
            self.assertNotIn(secret, err)
        self.assertIn("user=alice", err)  # the successful user is named


class UsersFile(AuthCase):
    def test_sighup_reload(self):
        users = os.path.join(self.dir, "reload")
        shutil.copyfile(self.users, users)
        self.start(users=users)
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            s.login("dave", "d4ve")
        with open(users + ".new", "w") as f:
            f.write("dave:%s\n" % t.yescrypt("d4ve"))
        os.replace(users + ".new", users)
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(t.wait_log(self.mp, "AUTH users reloaded: 1 user(s)"), self.mp.stderr())
        self.smtp().login("dave", "d4ve")
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            self.smtp().login("alice", PASSWORDS["alice"])
        # A broken file is refused; the users loaded before stay.
        with open(users, "w") as f:
            f.write("eve:plaintext\n")
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(t.wait_log(self.mp, "AUTH users not reloaded"), self.mp.stderr())
        self.assertIn("SMTPD_AUTH_USERS_FILE: %s line 1" % users, self.mp.stderr())
        self.smtp().login("dave", "d4ve")

    def test_startup_errors(self):
        def bad(env, code, want):
            e = {"SMTPD_PORTS": str(h.free_port()), "SMTPD_HTTP": "off",
                 "SMTPD_SPOOL": os.path.join(self.dir, "sp"), "SMTPD_TLS": "optional",
                 "SMTPD_TLS_CERT": self.cert, "SMTPD_TLS_KEY": self.key}
            e.update(env)
            r = h.run([], env=e, timeout=30)
            self.assertEqual(r.returncode, code, r.stderr)
            lines = h.stderr_lines(r.stderr)
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn(want, lines[0])

        bad({"SMTPD_AUTH": "optional", "SMTPD_AUTH_USERS_FILE": "/nonexistent/users"}, 1,
            "SMTPD_AUTH_USERS_FILE: cannot read /nonexistent/users")
        broken = os.path.join(self.dir, "broken")
        with open(broken, "w") as f:
            f.write("ok:%s\nnocolon\n" % t.sha512("x"))
        bad({"SMTPD_AUTH": "required", "SMTPD_AUTH_USERS_FILE": broken}, 1,
            "SMTPD_AUTH_USERS_FILE: %s line 2: not user:hash" % broken)
        bad({"SMTPD_AUTH": "optional"}, 2, "SMTPD_AUTH_USERS_FILE: must name the users file")
        bad({"SMTPD_AUTH": "required", "SMTPD_AUTH_USERS_FILE": self.users, "SMTPD_TLS": "off",
             "SMTPD_TLS_CERT": None, "SMTPD_TLS_KEY": None}, 2, "SMTPD_AUTH: required needs TLS")


if __name__ == "__main__":
    h.main(timeout=240)
