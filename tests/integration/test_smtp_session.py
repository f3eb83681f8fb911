#!/usr/bin/python3
"""SMTP sessions against the real binary (SPEC 4, 5): smtplib and raw sockets,
what lands in the Maildir spool and its envelope, reply codes with enhanced
status codes, dot-unstuffing, the line-length limit, the command timeout,
SMTPD_DELIVER=discard, IPv6, swaks."""

import datetime
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

MSG = (b"From: Alice <a@x.example>\r\n"
       b"To: Bob <b@y.example>\r\n"
       b"Subject: hello\r\n"
       b"\r\n"
       b"line one\r\n"
       b"Gr\xc3\xbc\xc3\x9fe, 8bit\r\n"
       b"\r\n"
       b"last line\r\n")

ENVELOPE_KEYS = {"id", "mail_from", "rcpt_to", "client", "helo", "local", "auth_user", "tls",
                 "proxy", "size", "received_at"}


def parse_rfc3339(s):
    return datetime.datetime.fromisoformat(s.replace("z", "Z").replace("Z", "+00:00"))


class SessionCase(h.MailportTestCase):
    def start(self, env=None, hosts="127.0.0.1"):
        env = dict(env or {})
        self.port = h.free_port(hosts.split(",")[0].strip())
        env.setdefault("SMTPD_HOSTS", hosts)
        env.setdefault("SMTPD_PORTS", str(self.port))
        env.setdefault("SMTPD_MAX_MESSAGE_SIZE", "1M")
        self.mp = self.mailport(env)
        self.t0 = time.time()
        return self.mp

    def raw(self, addr="127.0.0.1"):
        c = h.RawSMTP(addr, self.port)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220, c.greeting)
        return c

    def smtp(self, addr="127.0.0.1", helo="client.example"):
        s = smtplib.SMTP(local_hostname=helo, timeout=5)
        code, msg = s.connect(addr, self.port)
        self.assertEqual(code, 220)
        self.assertTrue(msg.decode().startswith("mx.test.example ESMTP mailport"), msg)
        self.addCleanup(self._close_smtp, s)
        return s

    @staticmethod
    def _close_smtp(s):
        try:
            s.quit()
        except Exception:
            s.close()

    def assert_code(self, reply, code, enhanced):
        c, lines = reply
        self.assertEqual(c, code, lines)
        self.assertTrue(lines[-1].startswith("%d %s" % (code, enhanced)),
                        "want %d %s, got %r" % (code, enhanced, lines))

    def check_stored(self, mid, mail_from, rcpts, content, helo, client_port, client_addr="127.0.0.1",
                     local_addr="127.0.0.1", esmtp=True):
        """The message mid is in new/ as Return-Path + Received + content (LF line
        ends), and meta/<mid>.json holds its envelope."""
        self.assertIsNotNone(mid, "no id in the 250 reply")
        self.assertIn(mid, self.mp.new_files())
        raw = self.mp.read_new(mid)
        text = raw.decode("utf-8")
        self.assertNotIn("\r", text, "stored message has CR characters")
        rp, received, rest = h.split_stored(text)
        self.assertEqual(rp, "Return-Path: <%s>" % mail_from)
        self.assertIn(helo, received)
        self.assertIn("mx.test.example", received)
        self.assertRegex(received, r"\bwith %s\b" % ("ESMTP" if esmtp else "SMTP"))
        self.assertEqual(rest.encode("utf-8"), content.replace(b"\r\n", b"\n"))

        meta = self.mp.read_meta(mid)
        missing = ENVELOPE_KEYS - set(meta)
        self.assertEqual(missing, set(), "meta lacks fields: %r" % meta)
        self.assertEqual(meta["id"], mid)
        self.assertEqual(meta["mail_from"], mail_from)
        self.assertEqual(meta["rcpt_to"], list(rcpts))
        self.assertEqual(meta["client"], {"address": client_addr, "port": client_port})
        self.assertEqual(meta["helo"], helo)
        self.assertEqual(meta["local"], {"address": local_addr, "port": self.port})
        self.assertIsNone(meta["auth_user"])
        self.assertIsNone(meta["tls"])
        self.assertIsNone(meta["proxy"])
        self.assertEqual(meta["size"], len(content), "size counts CRLF as 2, after unstuffing")
        self.assertRegex(meta["received_at"], h.RFC3339)
        t = parse_rfc3339(meta["received_at"]).timestamp()
        self.assertTrue(self.t0 - 2 <= t <= time.time() + 2,
                        "received_at %s not now" % meta["received_at"])
        return meta

    def only_messages(self, n):
        new, meta = self.mp.new_files(), self.mp.meta_files()
        self.assertEqual(len(new), n, new)
        self.assertEqual(sorted(m[:-len(".json")] for m in meta if m.endswith(".json")), new)
        stray = [m for m in meta if not m.endswith(".json")]
        self.assertEqual(stray, [], "stray files in meta/")
        return new


class TestSmtplib(SessionCase):
    def test_ehlo_message_lands(self):
        self.start()
        s = self.smtp()
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        f = s.esmtp_features
        for kw in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking"):
            self.assertIn(kw, f, "EHLO lacks %s: %r" % (kw.upper(), f))
        self.assertEqual(f["size"].strip(), "1048576")
        code, _ = s.mail("a@x.example")
        self.assertEqual(code, 250)
        for r in ("b@y.example", "c@z.example"):
            self.assertEqual(s.rcpt(r)[0], 250)
        client_port = s.sock.getsockname()[1]
        code, resp = s.data(MSG)
        self.assertEqual(code, 250, resp)
        resp = resp.decode()
        self.assertTrue(resp.startswith("2.0.0"), resp)
        mid = h.queued_id([resp])
        self.check_stored(mid, "a@x.example", ["b@y.example", "c@z.example"], MSG, "client.example",
                          client_port)
        self.only_messages(1)

    def test_helo_message_lands(self):
        self.start()
        s = self.smtp(helo="helo.example")
        self.assertEqual(s.helo()[0], 250)
        client_port = s.sock.getsockname()[1]
        self.assertEqual(s.mail("a@x.example")[0], 250)
        self.assertEqual(s.rcpt("b@y.example")[0], 250)
        code, resp = s.data(MSG)
        self.assertEqual(code, 250, resp)
        self.check_stored(h.queued_id([resp.decode()]), "a@x.example", ["b@y.example"], MSG,
                          "helo.example", client_port, esmtp=False)

    def test_sendmail(self):
        self.start()
        s = self.smtp()
        refused = s.sendmail("a@x.example", ["b@y.example"], MSG)
        self.assertEqual(refused, {})
        new = self.only_messages(1)
        meta = self.mp.read_meta(new[0])
        self.assertEqual(meta["rcpt_to"], ["b@y.example"])
        self.assertEqual(meta["size"], len(MSG))

    def test_several_messages_one_connection(self):
        self.start()
        s = self.smtp()
        s.ehlo()
        client_port = s.sock.getsockname()[1]
        ids = []
        for i in range(3):
            body = MSG + b"message %d\r\n" % i
            self.assertEqual(s.mail("a%d@x.example" % i)[0], 250)
            self.assertEqual(s.rcpt("b%d@y.example" % i)[0], 250)
            code, resp = s.data(body)
            self.assertEqual(code, 250, resp)
            mid = h.queued_id([resp.decode()])
            self.check_stored(mid, "a%d@x.example" % i, ["b%d@y.example" % i], body, "client.example",
                              client_port)
            ids.append(mid)
        self.assertEqual(len(set(ids)), 3, ids)
        self.assertEqual(sorted(ids), self.only_messages(3))

    def test_ipv6_session(self):
        self.start(hosts="::1")
        s = self.smtp(addr="::1")
        s.ehlo()
        client_port = s.sock.getsockname()[1]
        s.mail("a@x.example")
        s.rcpt("b@y.example")
        code, resp = s.data(MSG)
        self.assertEqual(code, 250, resp)
        self.check_stored(h.queued_id([resp.decode()]), "a@x.example", ["b@y.example"], MSG,
                          "client.example", client_port, client_addr="::1", local_addr="::1")

    def test_discard(self):
        self.start({"SMTPD_DELIVER": "discard"})
        s = self.smtp()
        s.ehlo()
        for _ in range(2):
            s.mail("a@x.example")
            s.rcpt("b@y.example")
            code, resp = s.data(MSG)
            self.assertEqual(code, 250, resp)
            self.assertTrue(resp.decode().startswith("2.0.0"), resp)
        self.assertEqual(self.mp.new_files(), [])
        self.assertEqual(self.mp.meta_files(), [])
        tmpdir = os.path.join(self.mp.spool, "tmp")
        if os.path.isdir(tmpdir):
            self.assertEqual(os.listdir(tmpdir), [])


class TestRaw(SessionCase):
    def send(self, c, mail_from, rcpts, content, ehlo="client.example"):
        reply = h.send_message_raw(c, mail_from, rcpts, h.dot_stuff(content), ehlo=ehlo)
        self.assert_code(reply, 250, "2.0.0")
        return h.queued_id(reply[1])

    def test_greeting(self):
        self.start()
        c = self.raw()
        self.assertEqual(c.greeting[1], ["220 mx.test.example ESMTP mailport"])

    def test_dot_stuffing_round_trip(self):
        self.start()
        c = self.raw()
        content = (b"Subject: dots\r\n\r\n.hidden\r\n..two dots\r\n.\r\n...\r\n"
                   b" .\r\n.x.\r\nend\r\n")
        port = c.sock.getsockname()[1]
        mid = self.send(c, "a@x.example", ["b@y.example"], content)
        self.check_stored(mid, "a@x.example", ["b@y.example"], content, "client.example", port)

    def test_empty_body_and_null_sender(self):
        self.start()
        c = self.raw()
        port = c.sock.getsockname()[1]
        content = b"Subject: bounce\r\n\r\n"
        mid = self.send(c, "", ["postmaster@y.example"], content)
        meta = self.check_stored(mid, "", ["postmaster@y.example"], content, "client.example", port)
        self.assertEqual(meta["mail_from"], "")

    def test_rset(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<old@x.example>", 250)
        c.expect("RCPT TO:<old@y.example>", 250)
        self.assert_code(c.cmd("RSET"), 250, "2.0.0")
        self.assert_code(c.cmd("DATA"), 503, "5.5.1")
        self.assert_code(c.cmd("RCPT TO:<x@y.example>"), 503, "5.5.1")
        port = c.sock.getsockname()[1]
        mid = self.send(c, "new@x.example", ["new@y.example"], MSG, ehlo=None)
        self.check_stored(mid, "new@x.example", ["new@y.example"], MSG, "client.example", port)
        self.only_messages(1)

    def test_noop_vrfy_quit(self):
        self.start()
        c = self.raw()
        self.assert_code(c.cmd("NOOP"), 250, "2.0.0")
        c.expect("EHLO client.example", 250)
        self.assert_code(c.cmd("NOOP"), 250, "2.0.0")
        self.assert_code(c.cmd("NOOP ignored parameter"), 250, "2.0.0")
        self.assertEqual(c.cmd("VRFY someone")[0], 252)
        self.assert_code(c.cmd("QUIT"), 221, "2.0.0")
        self.assertTrue(c.closed_by_peer(3), "connection still open after QUIT")

    def test_commands_case_insensitive(self):
        self.start()
        c = self.raw()
        c.expect("ehlo client.example", 250)
        c.expect("mail from:<a@x.example>", 250)
        c.expect("rcpt to:<b@y.example>", 250)
        c.expect("data", 354)
        c.send(MSG + b".\r\n")
        self.assert_code(c.reply(), 250, "2.0.0")

    def test_error_replies(self):
        self.start()
        c = self.raw()
        self.assert_code(c.cmd("FOO bar"), 500, "5.5.2")
        self.assert_code(c.cmd("EHLO"), 501, "5.5.4")
        c.expect("EHLO client.example", 250)
        self.assert_code(c.cmd("RCPT TO:<b@y.example>"), 503, "5.5.1")
        self.assert_code(c.cmd("DATA"), 503, "5.5.1")
        self.assert_code(c.cmd("MAIL TO:<a@x.example>"), 501, "5.5.4")
        c.expect("MAIL FROM:<a@x.example>", 250)
        self.assert_code(c.cmd("MAIL FROM:<a@x.example>"), 503, "5.5.1")
        self.assert_code(c.cmd("DATA"), 503, "5.5.1")
        self.assert_code(c.cmd("RCPT FOR:<b@y.example>"), 501, "5.5.4")
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        self.assert_code(c.reply(), 250, "2.0.0")
        self.only_messages(1)

    def test_address_syntax(self):
        """SPEC 4 and the lead's contract: syntax errors are 501 5.5.4, e.g. MAIL FROM
        without angle brackets. (Postfix answers 501 5.1.7 / 501 5.1.3 here; if that is
        the intended behaviour the SPEC deviation must be documented and this test changed.)"""
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        self.assert_code(c.cmd("MAIL FROM:a@x.example"), 501, "5.5.4")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example"), 501, "5.5.4")
        c.expect("MAIL FROM:<a@x.example>", 250)
        self.assert_code(c.cmd("RCPT TO:b@y.example"), 501, "5.5.4")
        self.assert_code(c.cmd("RCPT TO:<b@y.example"), 501, "5.5.4")
        c.expect("RCPT TO:<b@y.example>", 250)

    def test_command_line_limit(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        # exactly 512 octets including CRLF is allowed
        line = "NOOP " + "x" * (512 - 2 - 5)
        self.assertEqual(len(line) + 2, 512)
        self.assert_code(c.cmd(line), 250, "2.0.0")
        # 513 is not
        self.assert_code(c.cmd(line + "y"), 500, "5.5.6")
        self.assert_code(c.cmd("NOOP"), 250, "2.0.0")
        # 600 octets: one 500 5.5.6, and the session stays in sync
        self.assert_code(c.cmd("NOOP " + "z" * 593), 500, "5.5.6")
        self.assert_code(c.cmd("FOO"), 500, "5.5.2")
        # a MAIL command that is too long does not start a transaction
        self.assert_code(c.cmd("MAIL FROM:<" + "a" * 600 + "@x.example>"), 500, "5.5.6")
        self.assert_code(c.cmd("RCPT TO:<b@y.example>"), 503, "5.5.1")

    def test_huge_command_line(self):
        """100 KB without a line end: refused once, without buffering it all."""
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.send(b"NOOP " + b"x" * 100000 + b"\r\n")
        self.assert_code(c.reply(), 500, "5.5.6")
        self.assert_code(c.cmd("FOO"), 500, "5.5.2")
        port = c.sock.getsockname()[1]
        mid = self.send(c, "a@x.example", ["b@y.example"], MSG, ehlo=None)
        self.check_stored(mid, "a@x.example", ["b@y.example"], MSG, "client.example", port)

    def test_pipelining(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"
               "DATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        c.send(MSG + b".\r\nMAIL FROM:<d@x.example>\r\nRCPT TO:<e@y.example>\r\nDATA\r\n")
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 354])
        c.send(MSG + b".\r\nQUIT\r\n")
        self.assert_code(c.reply(), 250, "2.0.0")
        self.assertEqual(c.reply()[0], 221)
        new = self.only_messages(2)
        rcpts = sorted(tuple(self.mp.read_meta(m)["rcpt_to"]) for m in new)
        self.assertEqual(rcpts, [("b@y.example", "c@y.example"), ("e@y.example",)])

    def test_only_crlf_dot_crlf_ends_data(self):
        """No SMTP smuggling: <LF>.<CR><LF>, <CR><LF>.<LF>, <LF>.<LF>, <CR>.<CR> never end data."""
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        for i, sep in enumerate([b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r"]):
            with self.subTest(sep=sep):
                c.expect("MAIL FROM:<a@x.example>", 250)
                c.expect("RCPT TO:<b@y.example>", 250)
                c.expect("DATA", 354)
                c.send(b"Subject: smuggle " + str(i).encode() + b"\r\n\r\nbefore" + sep +
                       b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n"
                       b"Subject: smuggled\r\n\r\nafter\r\n.\r\n")
                r = c.reply()
                self.assert_code(r, 250, "2.0.0")
                # the next reply must answer our next command, not a smuggled one
                self.assert_code(c.cmd("XSYNC"), 500, "5.5.2")
                mid = h.queued_id(r[1])
                text = self.mp.read_new(mid).decode()
                self.assertIn("before", text)
                self.assertIn("smuggled", text)
                self.assertIn("after", text)
        new = self.only_messages(4)
        for m in new:
            self.assertEqual(self.mp.read_meta(m)["rcpt_to"], ["b@y.example"])

    def test_command_timeout(self):
        self.start({"SMTPD_COMMAND_TIMEOUT": "1"})
        c = self.raw()
        t = time.monotonic()
        c.settimeout(6)
        r = c.reply()
        took = time.monotonic() - t
        self.assert_code(r, 421, "4.4.2")
        self.assertGreater(took, 0.7, "timed out too early")
        self.assertTrue(c.closed_by_peer(3), "not closed after 421")
        # a busy client is not timed out
        c2 = self.raw()
        for _ in range(4):
            time.sleep(0.4)
            self.assert_code(c2.cmd("NOOP"), 250, "2.0.0")

    def test_command_timeout_in_transaction(self):
        self.start({"SMTPD_COMMAND_TIMEOUT": "1s"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.settimeout(6)
        self.assert_code(c.reply(), 421, "4.4.2")
        self.assertTrue(c.closed_by_peer(3))
        self.assertEqual(self.mp.new_files(), [])

    def test_bdat(self):
        """CHUNKING is advertised, so BDAT must work (RFC 3030)."""
        self.start()
        c = self.raw()
        r = c.expect("EHLO client.example", 250)
        self.assertTrue(any("CHUNKING" in l for l in r[1]))
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        part1, part2 = MSG[:20], MSG[20:]
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        self.assertEqual(c.reply()[0], 250)
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        port = c.sock.getsockname()[1]
        self.check_stored(h.queued_id(r[1]), "a@x.example", ["b@y.example"], MSG, "client.example", port)


class TestLimits(SessionCase):
    def test_message_too_large(self):
        self.start({"SMTPD_MAX_MESSAGE_SIZE": "1K"})
        c = self.raw()
        r = c.expect("EHLO client.example", 250)
        self.assertIn("SIZE 1024", [l[4:] for l in r[1]])
        big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(big + b".\r\n")
        self.assert_code(c.reply(), 552, "5.3.4")
        self.assert_code(c.cmd("FOO"), 500, "5.5.2")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=5000"), 552, "5.3.4")
        self.assertEqual(self.mp.new_files(), [])
        # a small one still goes through
        reply = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG, ehlo=None)
        self.assert_code(reply, 250, "2.0.0")

    def test_too_many_recipients(self):
        self.start({"SMTPD_MAX_RECIPIENTS": "2"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b1@y.example>", 250)
        c.expect("RCPT TO:<b2@y.example>", 250)
        self.assert_code(c.cmd("RCPT TO:<b3@y.example>"), 452, "4.5.3")
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual(self.mp.read_meta(h.queued_id(r[1]))["rcpt_to"], ["b1@y.example", "b2@y.example"])

    def test_text_line_too_long(self):
        # RFC 5321's 1000 octets, when asked for (the default has no limit).
        self.start({"SMTPD_MAX_LINE_LENGTH": "1000"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\nok\r\n.\r\n")
        self.assert_code(c.reply(), 500, "5.5.6")
        self.assert_code(c.cmd("FOO"), 500, "5.5.2")
        self.assertEqual(self.mp.new_files(), [])


def sized(n):
    """A message of exactly n octets (CRLF line ends, lines of at most 100 octets)."""
    hdr = b"Subject: sized\r\n\r\n"
    rest = n - len(hdr)
    lines = []
    while rest > 0:
        k = min(100, rest) if rest - min(100, rest) != 1 else 99
        lines.append(b"x" * (k - 2) + b"\r\n")
        rest -= k
    body = hdr + b"".join(lines)
    assert len(body) == n, (len(body), n)
    return body


class TestBoundaries(SessionCase):
    def tx(self, c, content, stuff=True):
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send((h.dot_stuff(content) if stuff else content) + b".\r\n")
        return c.reply()

    def test_size_boundary(self):
        self.start({"SMTPD_MAX_MESSAGE_SIZE": "1K"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        r = self.tx(c, sized(1024))
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual(self.mp.read_meta(h.queued_id(r[1]))["size"], 1024)
        self.assert_code(self.tx(c, sized(1025)), 552, "5.3.4")
        # dot-stuffing does not count: 1024 octets after unstuffing, more on the wire
        dotted = sized(1024).replace(b"\r\nx", b"\r\n.", 5)
        self.assertEqual(len(dotted), 1024)
        r = self.tx(c, dotted)
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual(self.mp.read_meta(h.queued_id(r[1]))["size"], 1024)
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=1024"), 250, "2.1.0")
        self.assert_code(c.cmd("RSET"), 250, "2.0.0")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=1025"), 552, "5.3.4")
        st = self.mp.status()["messages"]
        self.assertEqual((st["accepted"], st["rejected"], st["bytes"]), (2, 1, 2048))

    def test_over_size_body_is_not_parsed_as_commands(self):
        self.start({"SMTPD_MAX_MESSAGE_SIZE": "1K"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        body = b"Subject: x\r\n\r\n" + b"QUIT\r\nRSET\r\nMAIL FROM:<e@x.example>\r\n" * 100
        self.assert_code(self.tx(c, body), 552, "5.3.4")
        self.assert_code(c.cmd("XSYNC"), 500, "5.5.2")
        self.assertEqual(self.mp.new_files(), [])

    def test_text_line_boundary(self):
        self.start({"SMTPD_MAX_LINE_LENGTH": "1000"})
        c = self.raw()
        c.expect("EHLO client.example", 250)
        line1000 = b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n"
        r = self.tx(c, line1000)
        self.assert_code(r, 250, "2.0.0")
        self.assert_code(self.tx(c, b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n"), 500, "5.5.6")
        self.assertEqual(len(self.mp.new_files()), 1)

    def test_bdat_is_verbatim(self):
        """BDAT content is not dot-stuffed: '.' lines are stored as sent."""
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        port = c.sock.getsockname()[1]
        body = b"Subject: bdat\r\n\r\n.\r\n..x\r\nend\r\n"
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        self.check_stored(h.queued_id(r[1]), "a@x.example", ["b@y.example"], body, "client.example", port)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.send(b"BDAT 0 LAST\r\n")
        self.assert_code(c.reply(), 250, "2.0.0")
        # BDAT out of sequence: the chunk is still read (RFC 3030), then 503
        c.send(b"BDAT 10\r\nQUIT\r\nQUIT\r")
        self.assert_code(c.reply(), 503, "5.5.1")
        self.assert_code(c.cmd("XSYNC"), 500, "5.5.2")

    def test_ehlo_resets_transaction(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("EHLO client.example", 250)
        self.assert_code(c.cmd("RCPT TO:<b@y.example>"), 503, "5.5.1")

    def test_addresses_and_parameters(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect('MAIL FROM:<"john doe"@x.example> SIZE=100 BODY=8BITMIME', 250)
        c.expect("RCPT TO:<postmaster>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        r = c.reply()
        mid = h.queued_id(r[1])
        meta = self.mp.read_meta(mid)
        self.assertEqual(meta["mail_from"], '"john doe"@x.example')
        self.assertEqual(meta["rcpt_to"], ["postmaster"])
        self.assertTrue(self.mp.read_new(mid).startswith(b'Return-Path: <"john doe"@x.example>\n'))
        c.expect("MAIL FROM:<\u00fcser@b\u00fccher.example> SMTPUTF8", 250)
        c.expect("RCPT TO:<\u7528\u6237@x.example>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        r = c.reply()
        meta = self.mp.read_meta(h.queued_id(r[1]))
        self.assertEqual(meta["mail_from"], "\u00fcser@b\u00fccher.example")
        self.assertEqual(meta["rcpt_to"], ["\u7528\u6237@x.example"])
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> FOO=bar"), 555, "5.5.4")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=abc"), 501, "5.5.4")

    def test_quit_and_disconnect_mid_transaction(self):
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        self.assert_code(c.cmd("QUIT"), 221, "2.0.0")
        c2 = self.raw()
        c2.expect("EHLO client.example", 250)
        c2.expect("MAIL FROM:<a@x.example>", 250)
        c2.expect("RCPT TO:<b@y.example>", 250)
        c2.expect("DATA", 354)
        c2.send(b"Subject: cut\r\n\r\npartial")
        c2.close()
        time.sleep(0.3)
        self.assertEqual(self.mp.new_files(), [])
        self.assertEqual(os.listdir(os.path.join(self.mp.spool, "tmp")), [])
        self.assertEqual(self.mp.http_get("/livez")[0], 200)

    def test_default_hostname(self):
        self.start({"SMTPD_HOSTNAME": None})
        c = self.raw()
        import socket
        self.assertEqual(c.greeting[1], ["220 %s ESMTP mailport" % socket.gethostname()])
        self.assertEqual(self.mp.status()["hostname"], socket.gethostname())


class TestConcurrency(SessionCase):
    def test_concurrent_clients(self):
        import threading
        self.start()
        errors = []

        def client(n):
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="c%d.example" % n, timeout=10)
                for k in range(5):
                    s.sendmail("a%d@x.example" % n, ["b@y.example"],
                               b"Subject: c%d-%d\r\n\r\n" % (n, k) + b"y" * 900 + b"\r\n")
                s.quit()
            except Exception as e:  # noqa: BLE001
                errors.append("client %d: %r" % (n, e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        new = self.only_messages(100)
        subjects = set()
        for m in new:
            text = self.mp.read_new(m).decode()
            subjects.add(re.search(r"Subject: (c\d+-\d)", text).group(1))
        self.assertEqual(len(subjects), 100)
        st = self.mp.status()
        self.assertEqual(st["messages"]["accepted"], 100)
        self.assertEqual(st["connections"]["total"], 20)


class TestSwaks(SessionCase):
    def swaks(self, *extra):
        if shutil.which("swaks") is None:
            self.skipTest("swaks not installed")
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(self.port), "--from", "a@x.example",
               "--to", "b@y.example", "--ehlo", "swaks.example", "--header", "Subject: swaks",
               "--body", "Body from swaks\nsecond line\n"] + list(extra)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout)
        return r.stdout

    def test_swaks(self):
        self.start()
        out = self.swaks()
        new = self.only_messages(1)
        meta = self.mp.read_meta(new[0])
        self.assertEqual(meta["helo"], "swaks.example")
        self.assertEqual(meta["mail_from"], "a@x.example")
        self.assertEqual(meta["rcpt_to"], ["b@y.example"])
        text = self.mp.read_new(new[0]).decode()
        self.assertIn("\nSubject: swaks\n", text)
        self.assertIn("\nBody from swaks\nsecond line\n", text)
        self.assertIn(new[0], out)

    def test_swaks_pipeline(self):
        self.start()
        self.swaks("--pipeline")
        self.only_messages(1)


if __name__ == "__main__":
    h.main()
