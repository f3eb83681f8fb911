#!/usr/bin/python3
"""Real SMTP clients deliver to mailport (SPEC 4, 5; issue 4): Python smtplib,
swaks (--pipeline, --protocol SMTP, --data from a file with 8-bit UTF-8),
curl's SMTP client and Postfix's smtp-source for concurrency (one connection
per message, -d reusing connections, -r several recipients). Every test checks
what landed in new/ and meta/, not only the client's exit status.

Plus raw-socket checks of the extensions those clients rely on: CHUNKING with
pipelined BDAT chunks, SIZE= over the limit refused at once, SMTPUTF8 addresses
with and without the parameter, and the error counter that drops a client after
too many bad commands (421 4.7.0).

A test whose tool is not installed is skipped; the script exits 77 (skip) when
none of swaks, curl and smtp-source is installed."""

import os
import re
import select
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

SWAKS = shutil.which("swaks")
CURL = shutil.which("curl")
SMTP_SOURCE = shutil.which("smtp-source") or (
    "/usr/sbin/smtp-source" if os.access("/usr/sbin/smtp-source", os.X_OK) else None)

ENVELOPE_KEYS = {"id", "mail_from", "rcpt_to", "client", "helo", "local", "auth_user", "tls",
                 "proxy", "size", "received_at"}


def crlf_size(stored_body):
    """SPEC 5 size: the message as received (dot-unstuffed), CRLF counted as 2."""
    return len(stored_body) + stored_body.count(b"\n")


class ClientCase(h.PortCase):
    def start_env(self):
        return {"SMTPD_MAX_MESSAGE_SIZE": "1M"}

    def tmpfile(self, name, data):
        d = tempfile.mkdtemp(prefix="mailport-clients-")
        self.addCleanup(shutil.rmtree, d, True)
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def tool(self, cmd, timeout=40, ok=True):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        out = r.stdout.decode("utf-8", "replace")
        if ok:
            self.assertEqual(r.returncode, 0, "%s exited %d:\n%s" % (cmd[0], r.returncode, out[-3000:]))
        return r.returncode, out

    def raw(self):
        c = h.RawSMTP("127.0.0.1", self.port, timeout=8)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220, c.greeting)
        return c

    def assert_code(self, reply, code, enhanced):
        c, lines = reply
        self.assertEqual(c, code, lines)
        self.assertTrue(lines[-1].startswith("%d %s" % (code, enhanced)),
                        "want %d %s, got %r" % (code, enhanced, lines))

    def only_messages(self, n):
        """Exactly n messages in new/, each with its meta/<id>.json, nothing else."""
        new, meta = self.mp.new_files(), self.mp.meta_files()
        self.assertEqual(len(new), n, "new/ holds %d files, want %d" % (len(new), n))
        self.assertEqual(sorted(meta), sorted(m + ".json" for m in new), "meta/ does not match new/")
        return new

    def stored(self, mid, mail_from, rcpts, helo=None, esmtp=True):
        """Check the stored file and its envelope; returns (body bytes, meta)."""
        raw = self.mp.read_new(mid)
        self.assertNotIn(b"\r", raw, "CR in the stored message")
        rp, received, rest = h.split_stored(raw.decode("utf-8"))
        self.assertEqual(rp, "Return-Path: <%s>" % mail_from)
        self.assertIn("mx.test.example", received)
        self.assertRegex(received, r"\bwith %s\b" % ("ESMTP" if esmtp else "SMTP"))
        self.assertIn(mid, received)
        body = rest.encode("utf-8")
        meta = self.mp.read_meta(mid)
        self.assertEqual(ENVELOPE_KEYS - set(meta), set(), meta)
        self.assertEqual(meta["id"], mid)
        self.assertEqual(meta["mail_from"], mail_from)
        self.assertEqual(meta["rcpt_to"], list(rcpts))
        self.assertEqual(meta["client"]["address"], "127.0.0.1")
        self.assertEqual(meta["local"], {"address": "127.0.0.1", "port": self.port})
        if helo is not None:
            self.assertEqual(meta["helo"], helo)
            self.assertIn(helo, received)
        self.assertEqual(meta["size"], crlf_size(body), "size counts CRLF as 2")
        self.assertRegex(meta["received_at"], h.RFC3339)
        return body, meta


# ---------------------------------------------------------------- Python smtplib

class TestSmtplib(ClientCase):
    def test_sendmail_recipients_and_leading_dots(self):
        """smtplib EHLO + sendmail: three recipients, a multi-line body with
        leading dots (smtplib dot-stuffs, mailport unstuffs)."""
        self.start()
        body = (b"From: a@x.example\r\nTo: b@y.example\r\nSubject: dots\r\n\r\n"
                b".leading dot\r\n..two dots\r\n.\r\n...\r\n. space\r\nmiddle . dot\r\n.\r\n"
                b"last line\r\n")
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="smtplib.example", timeout=10)
        self.addCleanup(s.close)
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        self.assertTrue(s.does_esmtp)
        rcpts = ["b@y.example", "c@y.example", "d@z.example"]
        refused = s.sendmail("a@x.example", rcpts, body)
        self.assertEqual(refused, {})
        # a second message on the same connection, as str: smtplib turns its
        # LF line ends into CRLF and adds the final line end
        refused = s.sendmail("a2@x.example", ["e@y.example"], "Subject: two\n\n.x\n.\nend")
        self.assertEqual(refused, {})
        self.assertEqual(s.quit()[0], 221)
        new = self.only_messages(2)
        by_from = {self.mp.read_meta(m)["mail_from"]: m for m in new}
        got, meta = self.stored(by_from["a@x.example"], "a@x.example", rcpts, helo="smtplib.example")
        self.assertEqual(got, body.replace(b"\r\n", b"\n"))
        self.assertEqual(meta["size"], len(body))
        got, _ = self.stored(by_from["a2@x.example"], "a2@x.example", ["e@y.example"])
        self.assertEqual(got, b"Subject: two\n\n.x\n.\nend\n")
        self.assertEqual(self.mp.status()["messages"]["accepted"], 2)

    def test_smtputf8_addresses(self):
        """smtplib with mail_options=["SMTPUTF8"] (RFC 6531): UTF-8 addresses are
        accepted and stored as UTF-8 in the envelope and Return-Path."""
        self.start()
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="utf8.example", timeout=10)
        self.addCleanup(s.close)
        s.ehlo()
        self.assertTrue(s.has_extn("smtputf8"))
        sender, rcpt = "j\u00f6rg@b\u00fccher.example", "\u7528\u6237@\u4f8b\u5b50.example"
        body = "Subject: utf8\r\n\r\nGr\u00fc\u00dfe\r\n".encode("utf-8")
        refused = s.sendmail(sender, [rcpt, "ascii@y.example"], body, mail_options=["SMTPUTF8"])
        self.assertEqual(refused, {})
        s.quit()
        new = self.only_messages(1)
        got, _ = self.stored(new[0], sender, [rcpt, "ascii@y.example"], helo="utf8.example")
        self.assertEqual(got, body.replace(b"\r\n", b"\n"))


# ---------------------------------------------------------------- swaks

@unittest.skipUnless(SWAKS, "swaks not installed")
class TestSwaks(ClientCase):
    def swaks(self, *args):
        cmd = [SWAKS, "--server", "127.0.0.1", "--port", str(self.port), "--timeout", "15"] + list(args)
        return self.tool(cmd)[1]

    def test_pipeline_several_recipients(self):
        """swaks --pipeline: MAIL, both RCPTs and DATA go out as one group and
        the replies come back in order (swaks checks each; exit 0)."""
        self.start()
        out = self.swaks("--pipeline", "--from", "a@x.example", "--to", "b@y.example,c@y.example",
                         "--ehlo", "pipe.example", "--header", "Subject: pipelined",
                         "--body", "pipelined body\nline 2\n")
        lines = out.splitlines()
        sent = [i for i, l in enumerate(lines) if l.startswith(" -> ")]
        got = [i for i, l in enumerate(lines) if l.startswith("<-  ")]

        def idx(prefix):
            return next(i for i, l in enumerate(lines) if l.startswith(prefix))
        # the whole group was written before the first reply to it was read
        self.assertLess(idx(" -> DATA"), idx("<-  250 2.1.0"), out)
        # replies in order: MAIL, RCPT, RCPT, DATA
        after = [lines[i][4:8] for i in got if i > idx(" -> DATA")][:4]
        self.assertEqual(after, ["250 ", "250 ", "250 ", "354 "], out)
        self.assertTrue(sent and got)
        new = self.only_messages(1)
        self.assertIn(new[0], out)
        body, _ = self.stored(new[0], "a@x.example", ["b@y.example", "c@y.example"], helo="pipe.example")
        self.assertIn(b"\nSubject: pipelined\n", b"\n" + body)
        self.assertIn(b"\n\npipelined body\nline 2\n", body)

    def test_protocol_smtp_helo(self):
        """swaks --protocol SMTP speaks HELO: stored 'with SMTP', helo recorded."""
        self.start()
        out = self.swaks("--protocol", "SMTP", "--port", str(self.port), "--from", "h@x.example",
                         "--to", "b@y.example", "--helo", "helo.example", "--header", "Subject: helo")
        self.assertRegex(out, r"(?m)^ -> HELO helo\.example$")
        self.assertNotRegex(out, r"(?m)^ -> EHLO")
        new = self.only_messages(1)
        self.stored(new[0], "h@x.example", ["b@y.example"], helo="helo.example", esmtp=False)

    def test_data_file_8bit_utf8(self):
        """swaks --data @file: an 8-bit UTF-8 body with leading dots arrives
        byte for byte. (swaks 2020 cannot add BODY=8BITMIME to MAIL FROM;
        mailport accepts 8-bit data either way, as Postfix does.)"""
        self.start()
        data = ("From: a@x.example\r\nTo: b@y.example\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u20ac 5\r\n.punkt am Anfang\r\n"
                "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\r\nende\r\n").encode("utf-8")
        path = self.tmpfile("utf8.eml", data)
        out = self.swaks("--from", "a@x.example", "--to", "b@y.example", "--ehlo", "eight.example",
                         "--data", "@" + path)
        self.assertIn(" -> ..punkt am Anfang", out, "swaks did not dot-stuff")
        new = self.only_messages(1)
        body, _ = self.stored(new[0], "a@x.example", ["b@y.example"], helo="eight.example")
        want = data.replace(b"\r\n", b"\n")
        # swaks may append an empty line before the final dot
        self.assertIn(body, (want, want + b"\n"), body)


# ---------------------------------------------------------------- curl

@unittest.skipUnless(CURL, "curl not installed")
class TestCurl(ClientCase):
    def test_curl_upload(self):
        self.start()
        data = (b"From: a@x.example\r\nTo: b@y.example\r\nSubject: curl\r\n\r\n"
                b".leading dot\r\nbody line\r\n..\r\nend\r\n")
        path = self.tmpfile("msg.eml", data)
        self.tool([CURL, "-sS", "--max-time", "20",
                   "smtp://127.0.0.1:%d/curl.example" % self.port,
                   "--mail-from", "a@x.example", "--mail-rcpt", "b@y.example",
                   "--mail-rcpt", "c@y.example", "-T", path])
        new = self.only_messages(1)
        body, meta = self.stored(new[0], "a@x.example", ["b@y.example", "c@y.example"],
                                 helo="curl.example")
        self.assertEqual(body, data.replace(b"\r\n", b"\n"))
        self.assertEqual(meta["size"], len(data))


# ---------------------------------------------------------------- Postfix smtp-source

@unittest.skipUnless(SMTP_SOURCE, "smtp-source (postfix) not installed")
class TestSmtpSource(ClientCase):
    # -l 1024: twelve lines "<digit>" + 77 X and one of 64 X, 1024 octets on the
    # wire counting CRLF, then the line end that ends the data
    PAYLOAD_RE = re.compile(rb"\A(?:\dX{77}\n){12}X{64}\n\Z")

    def source(self, *args, messages=200):
        cmd = [SMTP_SOURCE] + list(args) + ["-s", "20", "-m", str(messages), "-l", "1024",
                                            "-M", "source.example",
                                            "-f", "from@x.example", "-t", "to@y.example",
                                            "127.0.0.1:%d" % self.port]
        t = time.monotonic()
        _, out = self.tool(cmd, timeout=50)
        self.assertLess(time.monotonic() - t, 50)
        return out

    def check_all(self, n, rcpts=("to@y.example",)):
        new = self.only_messages(n)
        total = 0
        for m in new:
            body, meta = self.stored(m, "from@x.example", list(rcpts), helo="source.example",
                                     esmtp=False)
            head, sep, payload = body.partition(b"\n\n")
            self.assertEqual(sep, b"\n\n", body[:300])
            self.assertIn(b"From: <from@x.example>\n", head + b"\n")
            self.assertEqual(crlf_size(payload), 1024 + 2, payload[-100:])
            self.assertRegex(payload, self.PAYLOAD_RE)
            total += meta["size"]
        st = self.mp.status()
        self.assertEqual(st["messages"]["accepted"], n)
        self.assertEqual(st["messages"]["rejected"], 0)
        self.assertEqual(st["messages"]["bytes"], total)
        return st

    def test_parallel_one_connection_per_message(self):
        """-s 20 -m 200: 20 parallel sessions, a new connection per message."""
        self.start()
        self.source()
        st = self.check_all(200)
        self.assertEqual(st["connections"]["total"], 200)
        self.assertEqual(st["connections"]["active"], 0)

    def test_reuse_connections_with_counter(self):
        """-d: the sessions keep their connection (20 connections for 200
        messages); -c prints a running counter that must reach 200."""
        self.start()
        out = self.source("-d", "-c")
        # the counter is printed as "1\r2\r...200\r\n"
        counts = [int(x) for x in re.findall(r"(?:^|\r)(\d+)(?=\r)", out)]
        self.assertEqual(counts, list(range(1, 201)), out[-300:])
        st = self.check_all(200)
        self.assertEqual(st["connections"]["total"], 20)

    def test_several_recipients(self):
        """-r 3: three recipients per transaction, in the order sent."""
        self.start()
        self.source("-d", "-r", "3", messages=60)
        self.check_all(60, rcpts=("3to@y.example", "2to@y.example", "to@y.example"))


# ---------------------------------------------------------------- raw: CHUNKING, SIZE, SMTPUTF8, errors

class TestRawExtensions(ClientCase):
    def test_bdat_pipelined_chunks(self):
        """RFC 3030 with RFC 2920: MAIL, RCPT and three BDAT chunks (the last one
        LAST) in one write. Chunk borders split a CRLF and a UTF-8 sequence;
        content that looks like commands or terminators is just content."""
        self.start()
        c = self.raw()
        r = c.expect("EHLO client.example", 250)
        self.assertIn("CHUNKING", [l[4:] for l in r[1]])
        body = ("Subject: chunks\r\n\r\nfirst line\r\n.\r\nQUIT\r\n"
                "Gr\u00fc\u00dfe\r\nlast\r\n").encode("utf-8")
        cut1 = body.index(b"\r\n.\r\n") + 1          # between CR and LF
        cut2 = body.index("\u00fc".encode()) + 1      # inside a UTF-8 sequence
        chunks = [body[:cut1], body[cut1:cut2], body[cut2:]]
        stream = b"MAIL FROM:<a@x.example> BODY=8BITMIME\r\nRCPT TO:<b@y.example>\r\n"
        stream += b"BDAT %d\r\n" % len(chunks[0]) + chunks[0]
        stream += b"BDAT %d\r\n" % len(chunks[1]) + chunks[1]
        stream += b"BDAT %d LAST\r\n" % len(chunks[2]) + chunks[2]
        c.send(stream)
        replies = [c.reply() for _ in range(5)]
        self.assert_code(replies[0], 250, "2.1.0")
        self.assert_code(replies[1], 250, "2.1.5")
        for r in replies[2:4]:
            self.assertEqual(r[0], 250, replies)
        self.assert_code(replies[4], 250, "2.0.0")
        mid = h.queued_id(replies[4][1])
        self.assertEqual(self.only_messages(1), [mid])
        got, meta = self.stored(mid, "a@x.example", ["b@y.example"], helo="client.example")
        self.assertEqual(got, body.replace(b"\r\n", b"\n"))
        self.assertEqual(meta["size"], len(body))
        # BDAT and DATA do not mix in one transaction (RFC 3030 2)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        c.send(b"BDAT 5\r\nabcde")
        self.assertEqual(c.reply()[0], 250)
        self.assert_code(c.cmd("DATA"), 503, "5.5.1")
        self.assert_code(c.cmd("RSET"), 250, "2.0.0")
        self.assertEqual(len(self.mp.new_files()), 1)

    def test_size_parameter_refused_at_once(self):
        """MAIL FROM ... SIZE= over the limit: 552 5.3.4 at once, so a pipelined
        RCPT and DATA get 503 and no 354 is ever sent; at the limit it is fine."""
        self.start({"SMTPD_MAX_MESSAGE_SIZE": "10K"})
        c = self.raw()
        r = c.expect("EHLO client.example", 250)
        self.assertIn("SIZE 10240", [l[4:] for l in r[1]])
        c.send(b"MAIL FROM:<a@x.example> SIZE=10241\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
        self.assert_code(c.reply(), 552, "5.3.4")
        self.assert_code(c.reply(), 503, "5.5.1")
        self.assert_code(c.reply(), 503, "5.5.1")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=18446744073709551615"), 552, "5.3.4")
        self.assert_code(c.cmd("MAIL FROM:<a@x.example> SIZE=10240"), 250, "2.1.0")
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: fits\r\n\r\nsmall\r\n.\r\n")
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual(self.only_messages(1), [h.queued_id(r[1])])
        st = self.mp.status()["messages"]
        self.assertEqual((st["accepted"], st["rejected"]), (1, 0))

    def test_smtputf8_required_for_utf8_addresses(self):
        """RFC 6531: a UTF-8 address without MAIL ... SMTPUTF8 is 553 5.6.7 (in
        MAIL and in RCPT); with the parameter it is accepted and stored."""
        self.start()
        c = self.raw()
        c.expect("EHLO client.example", 250)
        self.assert_code(c.cmd("MAIL FROM:<j\u00f6rg@x.example>"), 553, "5.6.7")
        self.assert_code(c.cmd("RCPT TO:<b@y.example>"), 503, "5.5.1")
        c.expect("MAIL FROM:<a@x.example>", 250)
        self.assert_code(c.cmd("RCPT TO:<\u7528\u6237@y.example>"), 553, "5.6.7")
        c.expect("RCPT TO:<b@y.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: ascii\r\n\r\nx\r\n.\r\n")
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        self.assertEqual(self.mp.read_meta(h.queued_id(r[1]))["rcpt_to"], ["b@y.example"])
        c.expect("MAIL FROM:<j\u00f6rg@x.example> SMTPUTF8", 250)
        c.expect("RCPT TO:<\u7528\u6237@y.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: utf8\r\n\r\ny\r\n.\r\n")
        r = c.reply()
        self.assert_code(r, 250, "2.0.0")
        mid = h.queued_id(r[1])
        self.stored(mid, "j\u00f6rg@x.example", ["\u7528\u6237@y.example"], helo="client.example")
        self.assertTrue(self.mp.read_new(mid).startswith(
            "Return-Path: <j\u00f6rg@x.example>\n".encode("utf-8")))
        self.only_messages(2)

    def test_too_many_bad_commands(self):
        """The error counter: a client that keeps sending bad commands gets
        421 4.7.0 and is disconnected, its open transaction is not stored, and
        other clients are not affected. Each bad command is answered first."""
        self.start()
        other = self.raw()
        other.expect("EHLO other.example", 250)
        c = self.raw()
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@x.example>", 250)
        c.expect("RCPT TO:<b@y.example>", 250)
        answered = 0
        final = None
        for i in range(100):
            try:
                r = c.cmd("XBAD%d" % i)
            except (h.SMTPError, OSError) as e:
                self.fail("connection lost without 421 after %d bad commands: %r" % (answered, e))
            if r[0] != 500:
                final = r
                break
            self.assert_code(r, 500, "5.5.2")
            answered += 1
            # the bad command that hits the limit is answered, then 421 follows at once
            if not c.buf:
                ready, _, _ = select.select([c.sock], [], [], 0.05)
                if ready:
                    chunk = c.sock.recv(65536)
                    c.buf += chunk
            if c.buf:
                final = c.reply()
                break
            if i % 5 == 4:
                self.assert_code(c.cmd("NOOP"), 250, "2.0.0")  # good commands do not reset it
        if final is None:
            self.fail("still connected after 100 bad commands")
        self.assert_code(final, 421, "4.7.0")
        self.assertGreaterEqual(answered, 5, "dropped after only %d bad commands" % answered)
        self.assertLessEqual(answered, 50)
        self.assertTrue(c.closed_by_peer(5), "not closed after 421 4.7.0")
        self.assertEqual(self.mp.new_files(), [])
        # the other session is fine
        reply = h.send_message_raw(other, "a@x.example", ["b@y.example"],
                                   b"Subject: other\r\n\r\nok\r\n", ehlo=None)
        self.assert_code(reply, 250, "2.0.0")
        self.only_messages(1)


if __name__ == "__main__":
    if not (SWAKS or CURL or SMTP_SOURCE):
        print("SKIP: none of swaks, curl, smtp-source is installed")
        sys.exit(h.SKIP)
    h.main()
