#!/usr/bin/python3
"""Logs (SPEC 7): one line per event on stderr; SMTPD_LOG_FORMAT=json makes every
line of a whole run (start-up warnings and fatal errors included) one JSON object
with the stable fields ts, level, msg and, for a session, session, client and
listener; SMTPD_LOG_LEVEL filters; hostile client input never breaks a line; and
no password or AUTH payload ever appears, at any level."""

import base64
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = b"Subject: logs\r\n\r\nhello\r\n"
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LEVELS = ("debug", "info", "warn", "error")
SECRET = "S3cret-Passw0rd-xyzzy"


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key in %r" % keys)
    return dict(pairs)


def parse_json_lines(text):
    """Every non-empty line a JSON object without duplicate keys."""
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        o = json.loads(line, object_pairs_hook=no_duplicates)
        if not isinstance(o, dict):
            raise ValueError("not an object: %r" % line)
        out.append(o)
    return out



def wait_for(pred, timeout=3.0):
    return h.wait_for(pred, timeout)


class LogCase(h.PortCase):
    def idle(self):
        wait_for(lambda: self.mp.status()["connections"]["active"] == 0)

    def stop(self):
        self.idle()
        self.assertEqual(self.mp.stop(), 0, self.mp.stderr())
        return self.mp.stderr()

    def check_object(self, o, line):
        for k in ("ts", "level", "msg"):
            self.assertIn(k, o, line)
            self.assertIsInstance(o[k], str, line)
        self.assertRegex(o["ts"], TS)
        self.assertIn(o["level"], LEVELS)
        for k, v in o.items():
            self.assertIsInstance(v, str, "field %s of %r is not a string" % (k, o))


class TestJSON(LogCase):
    def test_whole_run_is_json(self):
        """Start-up (with an unknown-variable warning), two sessions, a message,
        a bad command, SIGTERM: every line one JSON object with stable fields."""
        mp = self.start({"SMTPD_LOG_FORMAT": "json", "SMTPD_NOT_A_SETTING": "1"})
        listener = "127.0.0.1:%d" % self.port
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=5)
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.docmd("BOGUS")
        s.quit()
        c = h.RawSMTP("127.0.0.1", self.port)
        c.expect("EHLO other.example", 250)
        c.expect("QUIT", 221)
        c.close()
        err = self.stop()
        objs = parse_json_lines(err)
        for o in objs:
            self.check_object(o, o)
        msgs = [o["msg"] for o in objs]
        self.assertTrue(any("SMTPD_NOT_A_SETTING" in m and o["level"] == "warn"
                            for m, o in zip(msgs, objs)), msgs)
        self.assertIn("listening on %s" % listener, msgs)
        self.assertTrue(any(m.startswith("mailport") and "ready" in m for m in msgs), msgs)
        self.assertIn("mailport stopped", msgs)
        sess = [o for o in objs if "session" in o]
        ids = []
        for o in sess:
            self.assertRegex(o["session"], r"^[0-9a-f]{8}$")
            self.assertRegex(o["client"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(o["listener"], listener)
            if o["session"] not in ids:
                ids.append(o["session"])
        self.assertEqual(len(ids), 2, "two connections, two session ids: %r" % sess)
        for sid in ids:
            events = [o["msg"] for o in sess if o["session"] == sid]
            self.assertEqual(events[0], "connect", events)
            self.assertEqual(events[-1], "disconnect", events)
            clients = {o["client"] for o in sess if o["session"] == sid}
            self.assertEqual(len(clients), 1, clients)
        stored = [o for o in sess if o["msg"] == "message stored"]
        self.assertEqual(len(stored), 1, sess)
        self.assertEqual(stored[0]["from"], "a@x.example")
        self.assertIn(stored[0]["id"], mp.new_files())
        self.assertEqual(stored[0]["size"], str(len(MSG)))

    def test_hostile_input_keeps_one_object_per_line(self):
        """Control characters, quotes, backslashes, invalid UTF-8 and a fake JSON
        field from the client end up escaped inside their string."""
        mp = self.start({"SMTPD_LOG_FORMAT": "json", "SMTPD_LOG_LEVEL": "debug"})
        c = h.RawSMTP("127.0.0.1", self.port)
        c.send(b'EHLO a"b\\c\x01\x1b[31m\xff\xfe","level":"error\r\n')
        c.reply()
        c.send(b'MAIL FROM:<"x\\"\x7f"@y.example>\r\n')
        c.reply()
        c.send("RCPT TO:<ü@例え.jp>\r\n".encode())
        c.reply()
        c.expect("QUIT", 221)
        c.close()
        err = self.stop()
        objs = parse_json_lines(err)
        for o in objs:
            self.check_object(o, o)
        self.assertTrue(any(o["level"] == "debug" for o in objs), "no debug line at debug level")
        self.assertFalse(any(o["level"] == "error" for o in objs), objs)
        self.assertNotIn("\x1b", err)

    def test_fatal_error_is_json_too(self):
        """A start-up failure after the configuration is read: the one fatal
        line is a JSON object (level error) naming the endpoint; exit 1."""
        port = h.free_port()
        hold = socket.socket()
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind(("127.0.0.1", port))
        hold.listen(1)
        self.addCleanup(hold.close)
        r = h.run([], env={"SMTPD_LOG_FORMAT": "json", "SMTPD_PORTS": str(port),
                           "SMTPD_HTTP": "off", "SMTPD_SPOOL": tempfile.mkdtemp()}, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)
        objs = parse_json_lines(r.stderr)
        self.assertEqual(objs[-1]["level"], "error")
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, objs[-1]["msg"])

    def test_config_errors(self):
        """A setting that cannot be read leaves the format itself in doubt: SPEC
        1's plain `mailport: SMTPD_X: ...` line, exit 2. Once the settings are
        read, a bad endpoint list is reported in the format they chose."""
        r = h.run(["--check-config"], env={"SMTPD_LOG_FORMAT": "json",
                                           "SMTPD_MAX_RECIPIENTS": "many"})
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"^mailport: SMTPD_MAX_RECIPIENTS: ")
        r = h.run(["--check-config"], env={"SMTPD_LOG_FORMAT": "json", "SMTPD_PORTS": "25x"})
        self.assertEqual(r.returncode, 2)
        o = parse_json_lines(r.stderr)
        self.assertEqual(len(o), 1, r.stderr)
        self.assertEqual(o[0]["level"], "error")
        self.assertTrue(o[0]["msg"].startswith("SMTPD_PORTS: "), o)


class TestText(LogCase):
    def test_session_lines(self):
        mp = self.start({"SMTPD_LOG_LEVEL": "debug"})
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=5)
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.docmd("HELO", "evil\x01\x1bname")
        s.quit()
        err = self.stop()
        line_re = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (debug|info|warn|error) ")
        for line in err.splitlines():
            self.assertRegex(line, line_re)
            self.assertNotRegex(line, r"[\x00-\x08\x0a-\x1f\x7f]")
        sess = [l for l in err.splitlines() if re.search(r" \[[0-9a-f]{8}\] ", l)]
        self.assertTrue(sess)
        for l in sess:
            self.assertRegex(l, r" client=127\.0\.0\.1:\d+ listener=127\.0\.0\.1:%d" % self.port)
        self.assertTrue(any(" connect " in l or l.endswith(" connect") or " connect client=" in l
                            for l in sess), sess)


class TestLevels(LogCase):
    def session_and_refusal(self):
        """One normal session (info lines) and one refused connection (a warn line)."""
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=5)
        extra = h.RawSMTP("127.0.0.1", self.port, read_greeting=False)
        extra.settimeout(5)
        code, _ = extra.reply()
        self.assertEqual(code, 421)
        extra.close()
        s.sendmail("a@x.example", ["b@y.example"], MSG)
        s.quit()

    def levels_of(self, level):
        self.start({"SMTPD_LOG_FORMAT": "json", "SMTPD_LOG_LEVEL": level,
                    "SMTPD_MAX_CONNECTIONS": "1"})
        self.session_and_refusal()
        return [o["level"] for o in parse_json_lines(self.stop())]

    def test_debug(self):
        got = set(self.levels_of("debug"))
        self.assertTrue({"debug", "info", "warn"} <= got, got)

    def test_info(self):
        got = set(self.levels_of("info"))
        self.assertEqual(got, {"info", "warn"})

    def test_warn(self):
        got = self.levels_of("warn")
        self.assertTrue(got, "the refused connection is a warning")
        self.assertEqual(set(got), {"warn"})

    def test_error(self):
        self.assertEqual(self.levels_of("error"), [])


class TestSecrets(LogCase):
    """Passwords and AUTH payloads are never logged (SPEC 7), at debug level
    too, in success and failure, PLAIN and LOGIN, initial response or not."""

    def forbidden(self, user="alice", password=SECRET):
        plain = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        return [password, plain, base64.b64encode(password.encode()).decode(), plain[:-4]]

    def assert_clean(self, err, forbidden):
        for f in forbidden:
            self.assertNotIn(f, err, "secret material %r in the log" % f)

    def test_auth_payload_when_auth_is_off(self):
        """AUTH not configured: the command is refused, and its argument, which
        may well be a real credential, is not echoed into the log."""
        mp = self.start({"SMTPD_LOG_LEVEL": "debug"})
        c = h.RawSMTP("127.0.0.1", self.port)
        c.expect("EHLO client.example", 250)
        plain = base64.b64encode(("\0alice\0%s" % SECRET).encode()).decode()
        code, _ = c.cmd("AUTH PLAIN " + plain)
        self.assertGreaterEqual(code, 500)
        c.cmd("AUTH LOGIN " + base64.b64encode(b"alice").decode())
        c.cmd(base64.b64encode(SECRET.encode()).decode())
        c.expect("QUIT", 221)
        c.close()
        self.assert_clean(self.stop(), self.forbidden())

    def auth_env(self):
        d = tempfile.mkdtemp(prefix="mailport-logs-")
        self.addCleanup(shutil.rmtree, d, True)
        if shutil.which("openssl") is None:
            self.skipTest("openssl is needed for a password hash")
        hashed = subprocess.run(["openssl", "passwd", "-6", SECRET], capture_output=True,
                                text=True, check=True).stdout.strip()
        users = os.path.join(d, "users")
        with open(users, "w") as f:
            f.write("alice:%s\n" % hashed)
        env = {"SMTPD_AUTH": "optional", "SMTPD_AUTH_INSECURE": "1",
               "SMTPD_AUTH_USERS_FILE": users, "SMTPD_LOG_LEVEL": "debug"}
        r = h.run(["--check-config"], env=env)
        if r.returncode != 0:
            self.skipTest("AUTH is not available in this build: %s" % r.stderr.strip())
        return env

    def test_auth_never_logged(self):
        env = self.auth_env()
        for fmt in ("text", "json"):
            with self.subTest(fmt=fmt):
                e = dict(env, SMTPD_LOG_FORMAT=fmt)
                mp = self.start(e)
                # PLAIN with an initial response: right, then wrong password
                c = h.RawSMTP("127.0.0.1", self.port)
                c.expect("EHLO client.example", 250)
                ok = base64.b64encode(("\0alice\0%s" % SECRET).encode()).decode()
                self.assertEqual(c.cmd("AUTH PLAIN " + ok)[0], 235)
                c.expect("QUIT", 221)
                c.close()
                c = h.RawSMTP("127.0.0.1", self.port, timeout=10)
                c.expect("EHLO client.example", 250)
                bad = base64.b64encode(("\0alice\0%sX" % SECRET).encode()).decode()
                self.assertEqual(c.cmd("AUTH PLAIN " + bad)[0], 535)
                # PLAIN without, then LOGIN step by step
                self.assertEqual(c.cmd("AUTH PLAIN")[0], 334)
                self.assertEqual(c.cmd(ok)[0], 235)
                c.expect("QUIT", 221)
                c.close()
                c = h.RawSMTP("127.0.0.1", self.port, timeout=10)
                c.expect("EHLO client.example", 250)
                self.assertEqual(c.cmd("AUTH LOGIN")[0], 334)
                self.assertEqual(c.cmd(base64.b64encode(b"alice").decode())[0], 334)
                self.assertEqual(c.cmd(base64.b64encode(SECRET.encode()).decode())[0], 235)
                c.expect("QUIT", 221)
                c.close()
                err = self.stop()
                self.assert_clean(err, self.forbidden() + [bad, base64.b64encode(
                    (SECRET + "X").encode()).decode(), SECRET + "X"])
                self.assertIn("alice", err)  # the user name is logged, the password not
                if fmt == "json":
                    parse_json_lines(err)


if __name__ == "__main__":
    h.main()
