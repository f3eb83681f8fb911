#!/usr/bin/python3
"""SMTPD_FILTER (SPEC 5): filters written as shell scripts decide over each
message before its reply. Exit 0 accepts, 75 answers 451 4.3.0, anything else
554 5.7.1, the first stdout line is the reply text; a hung filter is killed
after SMTPD_FILTER_TIMEOUT (451); a filter that floods stdout or never reads
stdin cannot hang the session; the local port tells endpoints apart."""

import json
import os
import stat
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = b"Subject: filtered\r\nFrom: a@x.example\r\n\r\nhello filter\r\n"


class FilterCase(h.MailportTestCase):
    def script(self, mp, name, body):
        path = os.path.join(mp.tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, stat.S_IRWXU)
        return path

    def start(self, body, env=None, ports=None):
        mp = self.new_mailport()
        env = dict(env or {})
        self.ports = ports or [h.free_port()]
        env.setdefault("SMTPD_PORTS", ":".join(str(p) for p in self.ports))
        env["SMTPD_FILTER"] = self.script(mp, "filter.sh", body)
        mp.start(env)
        return mp

    def send(self, data=MSG, port=None, rcpts=("b@y.example",)):
        c = h.RawSMTP("127.0.0.1", port or self.ports[0], timeout=20)
        try:
            return h.send_message_raw(c, "a@x.example", list(rcpts), h.dot_stuff(data))
        finally:
            c.close()

    def assert_reply(self, reply, code, enhanced, text=None):
        self.assertEqual(reply[0], code, reply)
        last = reply[1][-1]
        self.assertTrue(last.startswith("%d %s " % (code, enhanced)), reply)
        if text is not None:
            self.assertEqual(last[len("%d %s " % (code, enhanced)):], text)


class TestVerdicts(FilterCase):
    def test_accept(self):
        mp = self.start("cat >/dev/null; exit 0")
        r = self.send()
        self.assert_reply(r, 250, "2.0.0")
        mid = h.queued_id(r[1])
        self.assertIn(mid, mp.new_files())
        st = mp.status()
        self.assertEqual(st["filter"]["accepted"], 1)

    def test_accept_with_text_keeps_the_id(self):
        mp = self.start("cat >/dev/null; echo 'clean, score 0.1'; exit 0")
        r = self.send()
        self.assert_reply(r, 250, "2.0.0")
        self.assertTrue(r[1][-1].startswith("250 2.0.0 clean, score 0.1: queued as "), r)
        self.assertIn(h.queued_id(r[1]), mp.new_files())

    def test_tempfail(self):
        mp = self.start("cat >/dev/null; echo 'greylisted, come back later'; exit 75")
        r = self.send()
        self.assert_reply(r, 451, "4.3.0", "greylisted, come back later")
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.meta_files(), [])
        self.assertEqual(mp.status()["filter"]["tempfailed"], 1)

    def test_reject_with_text(self):
        mp = self.start("cat >/dev/null; echo 'spam score 12.3'; echo 'second line'; exit 1")
        r = self.send()
        self.assert_reply(r, 554, "5.7.1", "spam score 12.3")
        self.assertEqual(mp.new_files(), [])
        st = mp.status()
        self.assertEqual(st["messages"]["rejected"], 1)
        self.assertEqual(st["filter"]["rejected"], 1)

    def test_reject_without_text_and_session_goes_on(self):
        mp = self.start("cat >/dev/null; exit 2")
        c = h.RawSMTP("127.0.0.1", self.ports[0])
        try:
            r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG)
            self.assertEqual(r[0], 554, r)
            self.assertTrue(r[1][-1].startswith("554 5.7.1 "), r)
            # The transaction ended; the session did not.
            c.expect("RSET", 250)
            c.expect("NOOP", 250)
        finally:
            c.close()
        self.assertEqual(mp.new_files(), [])

    def test_stderr_goes_to_the_log(self):
        mp = self.start("cat >/dev/null; echo 'looked at it' >&2; exit 0")
        self.assert_reply(self.send(), 250, "2.0.0")
        deadline = time.monotonic() + 3
        while "looked at it" not in mp.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("filter stderr", mp.stderr())
        self.assertIn("looked at it", mp.stderr())

    def test_what_the_filter_sees(self):
        mp = self.new_mailport()
        out = os.path.join(mp.tmp, "seen")
        port = h.free_port()
        self.ports = [port]
        body = ('env | grep "^SMTPD_" | sort > %s.env; cat > %s.msg; exit 0' % (out, out))
        mp.start({"SMTPD_PORTS": str(port), "SMTPD_FILTER": self.script(mp, "f.sh", body),
                  "SMTPD_HTTP_TOKEN": "tok-secret"})
        r = self.send(rcpts=("b@y.example", "c@z.example"))
        self.assert_reply(r, 250, "2.0.0")
        mid = h.queued_id(r[1])
        with open(out + ".env") as f:
            env = dict(l.split("=", 1) for l in f.read().splitlines())
        self.assertEqual(env["SMTPD_MAIL_FROM"], "a@x.example")
        self.assertEqual(env["SMTPD_RCPT_TO"], "b@y.example,c@z.example")
        self.assertEqual(json.loads(env["SMTPD_RCPT_TO_JSON"]), ["b@y.example", "c@z.example"])
        self.assertEqual(env["SMTPD_CLIENT_ADDR"], "127.0.0.1")
        self.assertEqual(env["SMTPD_LOCAL_ADDR"], "127.0.0.1")
        self.assertEqual(env["SMTPD_LOCAL_PORT"], str(port))
        self.assertEqual(env["SMTPD_HELO"], "client.example")
        self.assertEqual(env["SMTPD_AUTH_USER"], "")
        self.assertEqual(env["SMTPD_TLS"], "")
        self.assertEqual(env["SMTPD_MESSAGE_ID"], mid)
        self.assertEqual(env["SMTPD_SIZE"], str(len(MSG)))
        # mailport's own settings (a secret among them) are not passed on.
        self.assertNotIn("SMTPD_HTTP_TOKEN", env)
        self.assertNotIn("SMTPD_FILTER", env)
        # The message exactly as stored, trace headers included.
        with open(out + ".msg", "rb") as f:
            self.assertEqual(f.read(), mp.read_new(mid))


class TestEndpoints(FilterCase):
    def test_per_port_decision(self):
        p1, p2 = h.free_ports(2)
        mp = self.start('cat >/dev/null\n'
                        'if [ "$SMTPD_LOCAL_PORT" = "%d" ]; then\n'
                        '  echo "port %d takes no mail from outside"; exit 1\n'
                        'fi\n'
                        'exit 0' % (p2, p2), ports=[p1, p2])
        self.assert_reply(self.send(port=p1), 250, "2.0.0")
        self.assert_reply(self.send(port=p2), 554, "5.7.1", "port %d takes no mail from outside"
                          % p2)
        self.assertEqual(len(mp.new_files()), 1)
        meta = mp.read_meta(mp.new_files()[0])
        self.assertEqual(meta["local"]["port"], p1)


class TestHostile(FilterCase):
    def test_hang_is_killed_after_the_timeout(self):
        mp = self.start("cat >/dev/null; sleep 31.789; exit 0", {"SMTPD_FILTER_TIMEOUT": "2s"})
        result = {}

        def client():
            t0 = time.monotonic()
            result["reply"] = self.send()
            result["secs"] = time.monotonic() - t0

        th = threading.Thread(target=client)
        th.start()
        # Meanwhile the loop serves everyone else.
        time.sleep(0.5)
        st, _, _ = mp.http_get("/livez")
        self.assertEqual(st, 200)
        c = h.RawSMTP("127.0.0.1", self.ports[0])
        c.expect("EHLO other.example", 250)
        c.close()
        th.join(15)
        self.assert_reply(result["reply"], 451, "4.3.0")
        self.assertGreaterEqual(result["secs"], 1.8)
        self.assertLess(result["secs"], 8)
        self.assertEqual(mp.new_files(), [])
        self.assertEqual(mp.status()["filter"]["timeouts"], 1)
        # The filter and what it started are gone (the process group was killed).
        time.sleep(0.3)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        cmd = f.read()
                except OSError:
                    continue
                self.assertNotIn(b"31.789", cmd, "filter child %s survived" % pid)
        self.assertIn("filter timed out", mp.stderr())

    def test_drain_kills_a_hung_filter_at_the_grace(self):
        mp = self.start("cat >/dev/null; sleep 32.456; exit 0",
                        {"SMTPD_SHUTDOWN_GRACE": "1s", "SMTPD_FILTER_TIMEOUT": "60s"})
        c = h.RawSMTP("127.0.0.1", self.ports[0], timeout=10)
        self.addCleanup(c.close)
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        mp.proc.send_signal(15)
        # The filter is killed when the grace ends: the client gets 451, not 250.
        code, lines = c.reply()
        self.assertEqual(code, 451, lines)
        self.assertEqual(mp.wait_exit(10), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(mp.new_files(), [])

    def test_flood_stdout(self):
        mp = self.start("echo 'flooding'; head -c 10485760 /dev/zero | tr '\\0' x;"
                        " head -c 2000000 /dev/zero >&2; cat >/dev/null; exit 0")
        t0 = time.monotonic()
        c = h.RawSMTP("127.0.0.1", self.ports[0], timeout=20)
        try:
            r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG)
            self.assert_reply(r, 250, "2.0.0")
            self.assertTrue(r[1][-1].startswith("250 2.0.0 flooding: queued as"), r)
            # The session is intact: a second message in it.
            r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG, ehlo=None)
            self.assert_reply(r, 250, "2.0.0")
        finally:
            c.close()
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(len(mp.new_files()), 2)

    def test_never_reads_stdin(self):
        line = b"0123456789" * 9 + b"\r\n"
        big = b"Subject: big\r\n\r\n" + line * (5 * 1024 * 1024 // len(line))
        mp = self.start("echo 'did not look'; exit 0")
        t0 = time.monotonic()
        r = self.send(big)
        self.assert_reply(r, 250, "2.0.0")
        self.assertLess(time.monotonic() - t0, 15)
        mid = h.queued_id(r[1])
        self.assertEqual(mp.read_meta(mid)["size"], len(big))
        self.assertTrue(mp.read_new(mid).endswith(line.replace(b"\r\n", b"\n")))

    def test_never_reads_stdin_and_rejects(self):
        line = b"abcdefghij" * 9 + b"\r\n"
        big = b"Subject: big\r\n\r\n" + line * (5 * 1024 * 1024 // len(line))
        mp = self.start("sleep 0.2; echo 'refused unread'; exit 1")
        r = self.send(big)
        self.assert_reply(r, 554, "5.7.1", "refused unread")
        self.assertEqual(mp.new_files(), [])

    def test_missing_command(self):
        mp = self.new_mailport()
        self.ports = [h.free_port()]
        mp.start({"SMTPD_PORTS": str(self.ports[0]),
                  "SMTPD_FILTER": os.path.join(mp.tmp, "no-such-filter")})
        r = self.send()
        # /bin/sh says 127: not 0, not 75, so a refusal, as SPEC 5 reads.
        self.assertEqual(r[0], 554, r)


if __name__ == "__main__":
    h.main()
