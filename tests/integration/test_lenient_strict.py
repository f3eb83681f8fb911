"""Lenient where real clients need it, strict where attackers probe (issue 13):
Python's smtplib doubling SMTPUTF8 delivers; MAIL's AUTH= is taken when AUTH is
offered; a 5,000-octet line is stored byte-exact by default and refused with
SMTPD_MAX_LINE_LENGTH=1000; a client whose input is waiting before the greeting
is an early talker even with no greet delay; a BDAT chunk larger than the
message size limit by itself is refused 552 and counted."""
import base64
import email.message
import json
import os
import shutil
import signal
import smtplib
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import tls_helpers  # noqa: E402


class Case(h.PortCase):
    def stored(self, mid):
        path = os.path.join(self.mp.spool, "new", mid)
        self.assertTrue(h.wait_for(lambda: os.path.exists(path), 3.0), mid)
        with open(path, "rb") as f:
            return f.read()

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(s.close)
        f = s.makefile("rb")
        return s, f

    def users_file(self):
        d = tempfile.mkdtemp(prefix="mailport-lenient-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "users")
        with open(path, "w") as f:
            f.write("alice:%s\n" % tls_helpers.sha512("secret"))
        return path

    def greeted(self):
        """A raw session past its greeting and EHLO."""
        s, f = self.raw()
        self.reply(f)
        s.sendall(b"EHLO c.example\r\n")
        self.reply(f)
        return s, f

    def start_auth(self, **more):
        env = {"SMTPD_AUTH": "optional", "SMTPD_AUTH_INSECURE": "1",
               "SMTPD_AUTH_USERS_FILE": self.users_file()}
        env.update(more)
        return self.start(env)

    def reply(self, f):
        lines = []
        while True:
            l = f.readline()
            lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return lines


class TestRealClients(Case):
    def test_smtplib_doubled_smtputf8(self):
        self.start()
        msg = email.message.EmailMessage()
        msg["From"] = "jürgen@bücher.example"
        msg["To"] = "b@y.example"
        msg["Subject"] = "grüße"
        msg.set_content("hallo\n")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
            # send_message adds SMTPUTF8 itself for a non-ASCII address.
            refused = s.send_message(msg, mail_options=["SMTPUTF8"])
        self.assertEqual(refused, {})
        st, _, body = self.mp.http_get("/messages")
        self.assertEqual(json.loads(body)["messages"][0]["mail_from"], "jürgen@bücher.example")

    def test_auth_param_jakarta_and_perl_style(self):
        self.start_auth()
        s, f = self.greeted()
        # Not authenticated: AUTH=<mailbox> is taken and means "<>" (RFC 4954 5).
        s.sendall(b"MAIL FROM:<a@x.example> AUTH=boss+2Bx@x.example\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))
        s.sendall(b"RSET\r\nMAIL FROM:<a@x.example> AUTH=<>\r\n")
        self.reply(f)
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))
        s.sendall(b"RSET\r\nMAIL FROM:<a@x.example> AUTH=bad+zz\r\n")
        self.reply(f)
        self.assertTrue(self.reply(f)[-1].startswith(b"501 5.5.4"))
        # Authenticated: kept in the envelope as auth_param.
        s.sendall(b"RSET\r\nAUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n")
        self.reply(f)
        self.assertTrue(self.reply(f)[-1].startswith(b"235 "))
        s.sendall(b"MAIL FROM:<a@x.example> AUTH=boss+2Bx@x.example\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))
        s.sendall(b"RCPT TO:<b@y.example>\r\nDATA\r\n")
        self.reply(f)
        self.assertTrue(self.reply(f)[-1].startswith(b"354 "))
        s.sendall(b"Subject: p\r\n\r\nx\r\n.\r\n")
        r = self.reply(f)[-1]
        self.assertTrue(r.startswith(b"250 "), r)
        mid = h.queued_id([r.decode()])
        with open(os.path.join(self.mp.spool, "meta", mid + ".json")) as fh:
            env = json.load(fh)
        self.assertEqual(env["auth_user"], "alice")
        self.assertEqual(env["auth_param"], "boss+x@x.example")



class TestAuthAny(Case):
    def test_any_credentials_for_catchers(self):
        self.start({"SMTPD_AUTH": "any", "SMTPD_AUTH_INSECURE": "1"})
        self.assertIn("SMTPD_AUTH=any", self.mp.stderr())
        for user, password in (("ci-bot", "whatever"), ("x@y.example", "")):
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as c:
                c.ehlo("c.example")
                if password:
                    self.assertEqual(c.login(user, password)[0], 235)
                else:
                    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(
                        b"\0" + user.encode() + b"\0").decode())
                    self.assertEqual(code, 235)
                c.sendmail("a@x.example", ["b@y.example"], "Subject: any\r\n\r\nx\r\n")
            st, _, body = self.mp.http_get("/messages?limit=1")
            self.assertEqual(json.loads(body)["messages"][0]["auth_user"], user)

    def test_any_with_a_users_file_is_a_config_error(self):
        r = h.run(["--check-config"], env={"SMTPD_AUTH": "any",
                                           "SMTPD_AUTH_USERS_FILE": self.users_file()})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("SMTPD_AUTH", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = h.run(["--check-config"], env={"SMTPD_TLS": "any"})
        self.assertEqual(r.returncode, 2, r.stderr)


class TestAuthBruteForce(Case):
    def auth(self, password, source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                     source_address=(source, 0))
        try:
            f = s.makefile("rb")
            self.reply(f)
            s.sendall(b"EHLO c.example\r\n")
            self.reply(f)
            s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + password) + b"\r\n")
            return self.reply(f)[-1]
        finally:
            s.close()

    def test_failures_count_per_address_across_sessions(self):
        self.start_auth(SMTPD_AUTH_MAX_FAILURES="3")
        # Each guess on a new connection: reconnecting does not reset the count.
        for _ in range(3):
            self.assertTrue(self.auth(b"guess").startswith(b"535 "))
        r = self.auth(b"guess")
        self.assertTrue(r.startswith(b"454 4.7.0"), r)
        # Blocked means blocked: even the right password waits.
        self.assertTrue(self.auth(b"secret").startswith(b"454 4.7.0"))
        # Another address is not affected.
        self.assertTrue(self.auth(b"guess", source="127.0.0.2").startswith(b"535 "))
        self.assertTrue(self.auth(b"secret", source="127.0.0.2").startswith(b"235 "))
        st, _, text = self.mp.http_get("/metrics")
        self.assertIn(b"\nmailport_auth_failures_total 4\n", text)
        self.assertIn(b"\nmailport_auth_blocked_total 2\n", text)
        self.assertIn("AUTH blocked for this address", self.mp.stderr())


class TestLongLines(Case):
    LINE = bytes((97 + i % 26) for i in range(5000))

    def send_data(self):
        s, f = self.greeted()
        s.sendall(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
        for _ in range(3):
            self.reply(f)
        s.sendall(b"Subject: long\r\n\r\n" + self.LINE + b"\r\nend\r\n.\r\n")
        return self.reply(f)[-1].decode()

    def send_bdat(self):
        s, f = self.raw()
        self.reply(f)
        body = b"Subject: long\r\n\r\n" + self.LINE + b"\r\n"
        s.sendall(b"EHLO c.example\r\n")
        self.reply(f)
        s.sendall(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
                  b"BDAT %d LAST\r\n" % len(body) + body)
        for _ in range(2):
            self.reply(f)
        return self.reply(f)[-1].decode()

    def test_stored_byte_exact_by_default(self):
        self.start()
        for send in (self.send_data, self.send_bdat):
            r = send()
            self.assertTrue(r.startswith("250 "), r)
            self.assertIn(b"\n\n" + self.LINE + b"\n", self.stored(h.queued_id([r])))

    def test_refused_with_a_limit(self):
        self.start({"SMTPD_MAX_LINE_LENGTH": "1000"})
        for send in (self.send_data, self.send_bdat):
            r = send()
            self.assertTrue(r.startswith("500 5.5.6"), r)
        self.assertEqual(os.listdir(os.path.join(self.mp.spool, "new")), [])


class TestRefusalsLogged(Case):
    def test_refused_commands_at_info_without_payloads(self):
        self.start_auth()
        s, f = self.greeted()
        s.sendall(b"MAIL FROM:<a@x.example> FOO=1\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"555 "))
        s.sendall(b"AUTH PLAIN c2VjcmV0LXBheWxvYWQ=!!\r\n")
        self.reply(f)
        for i in range(30):
            s.sendall(b"BOGUS%d\r\n" % i)
            r = self.reply(f)[-1]
            if not r.startswith(b"5"):
                break
        log = ""
        for _ in range(30):
            log = self.mp.stderr()
            if log.count("command refused") >= 20:
                break
            time.sleep(0.1)
        lines = [l for l in log.splitlines() if "command refused" in l]
        # Only refusals: the accepted EHLO is not one (it used to be logged
        # as one, with its argument, using up the budget).
        self.assertFalse(any("command=EHLO" in l for l in lines), lines[:3])
        self.assertTrue(any("command=MAIL" in l and "555 5.5.4 Unsupported option: FOO" in l
                            for l in lines), lines[:3])
        self.assertTrue(any("command=AUTH" in l for l in lines), lines[:3])
        self.assertTrue(any('command="?"' in l or "command=?" in l for l in lines), lines[:5])
        self.assertNotIn("c2VjcmV0LXBheWxvYWQ", log)
        # 20 refusals end the session (421), so all 20 are logged and the
        # "further ... not logged" line, the cap's safety net, is not reached.
        self.assertEqual(len(lines), 20, lines)
        self.assertEqual(log.count("further refused commands not logged"), 0)


class TestRecipientLimitLogged(Case):
    def test_452_past_the_limit_is_logged(self):
        """SPEC 4: every refused command is logged, the 452 past
        SMTPD_MAX_RECIPIENTS too (it is not counted as an error)."""
        self.start({"SMTPD_MAX_RECIPIENTS": "1"})
        s, f = self.greeted()
        s.sendall(b"MAIL FROM:<a@x.example>\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))
        s.sendall(b"RCPT TO:<b@y.example>\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))
        s.sendall(b"RCPT TO:<c@y.example>\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"452 4.5.3"))
        lines = []
        for _ in range(30):
            lines = [l for l in self.mp.stderr().splitlines() if "command refused" in l]
            if lines:
                break
            time.sleep(0.1)
        self.assertTrue(any("command=RCPT" in l and "452 4.5.3 Too many recipients" in l
                            for l in lines), lines)


class TestStrict(Case):
    def test_early_talker_without_greet_delay(self):
        """Input waiting when the greeting would be written: 554 5.5.0 and
        closed. The server is stopped while the client connects and talks, so
        the input is certainly there when it accepts."""
        self.start()
        os.kill(self.mp.proc.pid, signal.SIGSTOP)
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.addCleanup(s.close)
            s.sendall(b"EHLO early.example\r\n")
            time.sleep(0.2)
        finally:
            os.kill(self.mp.proc.pid, signal.SIGCONT)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"554 5.5.0"), data)
        self.assertNotIn(b"220 ", data)
        # Logged as a refusal that names the verb the early bytes start with.
        lines = [l for l in self.mp.stderr().splitlines() if "command refused" in l]
        self.assertTrue(any("command=EHLO" in l and "554 5.5.0" in l for l in lines), lines)
        # A polite client is served as ever.
        with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as c:
            self.assertEqual(c.noop()[0], 250)

    def test_bdat_chunk_over_the_limit(self):
        self.start({"SMTPD_MAX_MESSAGE_SIZE": "10000"})
        s, f = self.greeted()
        s.sendall(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
                  b"BDAT 20000 LAST\r\n" + b"x" * 20000)
        for _ in range(2):
            self.reply(f)
        r = self.reply(f)[-1]
        self.assertTrue(r.startswith(b"552 5.3.4"), r)
        st, _, body = self.mp.http_get("/status")
        self.assertEqual(json.loads(body)["messages"]["rejected"], 1)
        # The session stays in step.
        s.sendall(b"NOOP\r\n")
        self.assertTrue(self.reply(f)[-1].startswith(b"250 "))

    def test_max_connections_fit_the_open_files_limit(self):
        """RLIMIT_NOFILE too low for SMTPD_MAX_CONNECTIONS: the effective maximum
        is lowered, a warning names both numbers, /status shows it, and /livez
        keeps answering when the SMTP side is full."""
        self.port = h.free_port()
        self.mp = self.mailport({"SMTPD_PORTS": str(self.port)},
                                prefix=("prlimit", "--nofile=200:200"))
        st, _, body = self.mp.http_get("/status")
        limits = json.loads(body)["limits"]
        self.assertEqual(limits["open_files"], 200)
        self.assertLess(limits["max_connections"], 1000)
        self.assertGreater(limits["max_connections"], 0)
        self.assertRegex(self.mp.stderr(), r"SMTPD_MAX_CONNECTIONS is 1000 but the open files "
                                           r"limit \(RLIMIT_NOFILE\) is 200")
        socks = []
        try:
            for _ in range(limits["max_connections"] + 5):
                c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                socks.append(c)
                c.recv(512)
            self.assertEqual(self.mp.http_get("/livez")[0], 200)
        finally:
            for c in socks:
                c.close()

    def test_tls12_offers_aead_with_forward_secrecy_only(self):
        import ssl
        self.start({"SMTPD_TLS": "optional"})

        def handshake(ciphers):
            ctx = tls_helpers.client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as c:
                try:
                    c.starttls(context=ctx)
                except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError):
                    return None
                return c.sock.cipher()[0]
        for cbc in ("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA",
                    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384",
                    "AES128-GCM-SHA256:AES256-SHA"):
            self.assertIsNone(handshake(cbc), cbc)
        got = handshake("ALL")
        self.assertIsNotNone(got)
        self.assertRegex(got, r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")


if __name__ == "__main__":
    h.main()
