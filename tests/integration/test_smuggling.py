#!/usr/bin/python3
"""SMTP smuggling against the real binary (SPEC 4; CVE-2023-51764/51765/51766).

Only <CR><LF>.<CR><LF> ends DATA. For every fake terminator SPEC 4 lists
(<LF>.<CR><LF>, <CR><LF>.<LF>, <LF>.<LF>, <CR>.<CR>), plus <CR><LF>.<CR>,
<CR>.<CR><LF>, <CR><LF>.<CR><CR><LF> and NUL tricks, ONE message is sent over a
raw socket: "before" + fake terminator + a smuggled
"MAIL FROM:<evil@x>/RCPT TO:<victim@y>/DATA/..." transaction, then the one real
<CR><LF>.<CR><LF>. The proof that nothing was split:
  - the replies to the whole pipelined stream, read until the server closes,
    are exactly 250 250 354 250 221: one 250 for the end of data, no 250/354
    for the smuggled commands;
  - exactly one new file in new/ and one in meta/, whose envelope has only
    the real sender and recipient;
  - the stored body is the content as SPEC 4/5 define it (a bare LF is a line
    end in normalize mode, bare CRs dropped, dot-unstuffed, LF line ends):
    compared byte for byte with a small reference model, so the smuggled
    commands are in the body as text, and no CR is in the file.
With SMTPD_BARE_LF=reject the variants containing a bare LF are refused
550 5.5.2, nothing is stored, and a following message in the same stream is
accepted; the variants without a bare LF are stored as in normalize mode.

Each variant is sent as one send() of the whole stream, in irregular small
pieces, and byte by byte around the fake terminator (TCP_NODELAY plus a short
pause, so the server sees separate reads)."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

# (name, fake terminator)
VARIANTS = [
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("LF.LF", b"\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.CR.CRLF", b"\r\n.\r\r\n"),
    ("CRLF.NUL.CRLF", b"\r\n.\x00\r\n"),
    ("CRLF.CR.NUL.LF", b"\r\n.\r\x00\n"),
    ("CRLF.NUL.LF", b"\r\n.\x00\n"),
    ("CRLF.NUL-dot.CRLF", b"\r\n\x00.\r\n"),
]

SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
            b"From: evil@x\r\nSubject: smuggled\r\n\r\nafter\r\n")

ENVELOPE = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
CLEAN = b"Subject: clean\r\n\r\nclean message\r\n"


def content_for(name, sep):
    """The DATA content (ends with CRLF); the real terminator is '.\\r\\n' after it."""
    return (b"From: a@x.example\r\nSubject: smuggle " + name.encode() + b"\r\n\r\nbefore" + sep
            + SMUGGLED)


def model(content):
    """What SPEC 4/5 say is stored for DATA content in normalize mode: CRLF and a
    bare LF are line ends (stored as LF), a bare CR is dropped and the octet
    after it does not start a line, a leading dot is removed (dot-unstuffing,
    also after a bare LF). Other octets (NUL, 8-bit) are kept."""
    out = bytearray()
    start = True
    i, n = 0, len(content)
    while i < n:
        c = content[i]
        if c == 0x0D:
            if i + 1 < n and content[i + 1] == 0x0A:
                out.append(0x0A)
                i += 2
                start = True
            else:
                i += 1
                start = False
            continue
        if c == 0x0A:
            out.append(0x0A)
            start = True
        elif start and c == 0x2E:
            start = False
        else:
            out.append(c)
            start = False
        i += 1
    return bytes(out)


def has_bare_lf(data):
    return any(data[i] == 0x0A and (i == 0 or data[i - 1] != 0x0D) for i in range(len(data)))


def pieces_irregular(data):
    sizes = (1, 3, 2, 5, 1, 7, 4, 11)
    out, i, k = [], 0, 0
    while i < len(data):
        out.append(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def pieces_around(data, marker, radius=24):
    """One piece up to shortly before marker, single bytes around it, then the rest."""
    at = data.index(marker)
    lo, hi = max(0, at - radius), min(len(data), at + len(marker) + radius)
    return [data[:lo]] + [data[i:i + 1] for i in range(lo, hi)] + [data[hi:]]


class Conn(h.RawSMTP):
    def send_pieces(self, pieces, pause=0.002):
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert len(pieces) < 2000
        for p in pieces:
            if p:
                self.sock.sendall(p)
                time.sleep(pause)

    def replies_until_eof(self, timeout=8.0, limit=50):
        """All replies until the server closes the connection (bounded)."""
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < limit:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                got.append(self.reply())
            except h.SMTPError as e:
                if "connection closed" in str(e) and not self.buf:
                    return got
                raise
            except socket.timeout:
                raise AssertionError("server did not close within %.0f s; replies so far %r"
                                     % (timeout, got))
        raise AssertionError("more than %d replies: %r" % (limit, got))


class SmugglingCase(h.MailportTestCase):
    bare_lf = None  # SMTPD_BARE_LF; None = default (normalize)

    def setUp(self):
        super().setUp()
        env = {"SMTPD_MAX_MESSAGE_SIZE": "1M"}
        if self.bare_lf:
            env["SMTPD_BARE_LF"] = self.bare_lf
        self.port = h.free_port()
        env["SMTPD_PORTS"] = str(self.port)
        self.mp = self.mailport(env)

    def conn(self):
        c = Conn("127.0.0.1", self.port, timeout=8)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220, c.greeting)
        c.expect("EHLO client.example", 250)
        return c

    def accepted(self):
        return self.mp.status()["messages"]["accepted"]

    def check_one_stored(self, before_new, before_meta, content, name):
        """Exactly one new message since before_*; it holds model(content) and the
        real envelope only. Returns its id."""
        new = sorted(set(self.mp.new_files()) - before_new)
        meta = sorted(set(self.mp.meta_files()) - before_meta)
        self.assertEqual(len(new), 1, "%s: want exactly one stored message, got %r" % (name, new))
        self.assertEqual(meta, [new[0] + ".json"], "%s: meta/ does not match new/" % name)
        mid = new[0]
        raw = self.mp.read_new(mid)
        self.assertNotIn(b"\r", raw, "%s: a CR reached the stored file" % name)
        rp, _received, rest = h.split_stored(raw.decode("utf-8"))
        self.assertEqual(rp, "Return-Path: <a@x.example>")
        want = model(content)
        self.assertEqual(rest.encode("utf-8"), want, "%s: stored body differs" % name)
        # the smuggled commands are content, in the one message
        self.assertIn(b"MAIL FROM:<evil@x>\nRCPT TO:<victim@y>\nDATA\n", want)
        env = self.mp.read_meta(mid)
        self.assertEqual(env["mail_from"], "a@x.example", name)
        self.assertEqual(env["rcpt_to"], ["b@y.example"], name)
        self.assertEqual(env["size"], len(want) + want.count(b"\n"),
                         "%s: size is the content with CRLF line ends" % name)
        return mid

    def run_variant(self, name, sep, split):
        content = content_for(name, sep)
        stream = ENVELOPE + content + b".\r\n"
        rejected = self.bare_lf == "reject" and has_bare_lf(content)
        if rejected:
            # the session goes on: a clean message follows in the same stream
            stream += ENVELOPE + CLEAN + b".\r\n"
        stream += b"QUIT\r\n"
        before_new, before_meta = set(self.mp.new_files()), set(self.mp.meta_files())
        acc0 = self.accepted()
        c = self.conn()
        if split == "one":
            c.send(stream)
        elif split == "irregular":
            c.send_pieces(pieces_irregular(stream))
        else:
            c.send_pieces(pieces_around(stream, sep))
        replies = c.replies_until_eof()
        codes = [r[0] for r in replies]
        if not rejected:
            self.assertEqual(codes, [250, 250, 354, 250, 221],
                             "%s/%s: replies %r" % (name, split, replies))
            self.assertTrue(replies[3][1][-1].startswith("250 2.0.0"), replies[3])
            mid = self.check_one_stored(before_new, before_meta, content, name)
            self.assertEqual(h.queued_id(replies[3][1]), mid)
            self.assertEqual(self.accepted(), acc0 + 1)
        else:
            self.assertEqual(codes, [250, 250, 354, 550, 250, 250, 354, 250, 221],
                             "%s/%s: replies %r" % (name, split, replies))
            self.assertTrue(replies[3][1][-1].startswith("550 5.5.2"), replies[3])
            new = sorted(set(self.mp.new_files()) - before_new)
            self.assertEqual(len(new), 1, "%s: only the clean message is stored: %r" % (name, new))
            self.assertEqual(h.queued_id(replies[7][1]), new[0])
            raw = self.mp.read_new(new[0])
            self.assertTrue(raw.endswith(b"\n\nclean message\n"), raw)
            self.assertNotIn(b"evil", raw)
            self.assertEqual(self.mp.read_meta(new[0])["rcpt_to"], ["b@y.example"])
            self.assertEqual(sorted(set(self.mp.meta_files()) - before_meta), [new[0] + ".json"])
            self.assertEqual(self.accepted(), acc0 + 1)

    def all_variants(self, split):
        for name, sep in VARIANTS:
            with self.subTest(variant=name, split=split):
                self.run_variant(name, sep, split)


class TestSmugglingNormalize(SmugglingCase):
    def test_variants_one_send(self):
        self.all_variants("one")

    def test_variants_irregular_pieces(self):
        self.all_variants("irregular")

    def test_variants_byte_by_byte_around_terminator(self):
        self.all_variants("around")

    def test_one_session_many_variants(self):
        """All variants in one message, then a second message on the same
        connection: still exactly two messages, two 250s."""
        before = set(self.mp.new_files())
        content = b"Subject: all\r\n\r\nstart\r\n"
        for name, sep in VARIANTS:
            content += b"v-" + name.encode() + sep + SMUGGLED
        stream = ENVELOPE + content + b".\r\n" + ENVELOPE + CLEAN + b".\r\nQUIT\r\n"
        c = self.conn()
        c.send_pieces(pieces_irregular(stream), pause=0.001)
        replies = c.replies_until_eof()
        self.assertEqual([r[0] for r in replies], [250, 250, 354, 250, 250, 250, 354, 250, 221],
                         replies)
        new = sorted(set(self.mp.new_files()) - before)
        self.assertEqual(len(new), 2, new)
        ids = [h.queued_id(replies[3][1]), h.queued_id(replies[7][1])]
        self.assertEqual(sorted(ids), new)
        first = self.mp.read_new(ids[0])
        self.assertNotIn(b"\r", first)
        self.assertTrue(first.endswith(model(content)), first[-400:])
        self.assertEqual(first.count(b"MAIL FROM:<evil@x>"), len(VARIANTS))
        for m in new:
            self.assertEqual(self.mp.read_meta(m)["rcpt_to"], ["b@y.example"])

    def test_bare_cr_never_stored(self):
        """Stray CRs anywhere (headers, body, line starts, before a CRLF, at the
        end of a piece) are dropped, never stored."""
        content = (b"From: a@x.example\r\nSubject: c\rr\r\n\r\n\rline\r\n"
                   b"a\r\r\nb\r\r\r\nc\rd\re\r\n.\rx\r\n\r\n\r\r\nend\r\n")
        stream = ENVELOPE + content + b".\r\nQUIT\r\n"
        for split in ("one", "bytes"):
            with self.subTest(split=split):
                before_new, before_meta = set(self.mp.new_files()), set(self.mp.meta_files())
                c = self.conn()
                if split == "one":
                    c.send(stream)
                else:
                    c.send_pieces([stream[i:i + 1] for i in range(len(stream))], pause=0.001)
                codes = [r[0] for r in c.replies_until_eof()]
                self.assertEqual(codes, [250, 250, 354, 250, 221])
                new = sorted(set(self.mp.new_files()) - before_new)
                self.assertEqual(len(new), 1)
                raw = self.mp.read_new(new[0])
                self.assertNotIn(b"\r", raw)
                self.assertTrue(raw.endswith(b"\nSubject: cr\n\nline\na\nb\ncde\nx\n\n\nend\n"),
                                raw)
                self.assertTrue(raw.endswith(b"\n" + model(content)), raw)
                self.assertEqual(sorted(set(self.mp.meta_files()) - before_meta),
                                 [new[0] + ".json"])

    def test_bdat_chunk_with_fake_terminators(self):
        """Inside BDAT, terminators of any kind and commands are content: one
        message, stored verbatim but for line ends (CRLF, also across a chunk
        border, stored as LF) and bare CRs (dropped, also at a chunk's end)."""
        before = set(self.mp.new_files())
        body = (b"Subject: bdat\r\n\r\nbefore\r\n.\r\n" + SMUGGLED + b"x\n.\r\nRSET\r\n"
                b"bare\rcr\r.\r\r\nend\r\n")
        cut1 = body.index(b"\r\n.\r\n") + 1        # between CR and LF
        cut2 = body.index(b"bare\r") + 5             # right after a bare CR
        chunks = [body[:cut1], body[cut1:cut2], body[cut2:]]
        c = self.conn()
        c.send(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
               + b"BDAT %d\r\n" % len(chunks[0]) + chunks[0]
               + b"BDAT %d\r\n" % len(chunks[1]) + chunks[1]
               + b"BDAT %d LAST\r\n" % len(chunks[2]) + chunks[2] + b"QUIT\r\n")
        replies = c.replies_until_eof()
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 250, 250, 221], replies)
        new = sorted(set(self.mp.new_files()) - before)
        self.assertEqual(len(new), 1, new)
        self.assertEqual(h.queued_id(replies[4][1]), new[0])
        raw = self.mp.read_new(new[0])
        self.assertNotIn(b"\r", raw)
        want = body.replace(b"\r\n", b"\n").replace(b"\r", b"")
        self.assertTrue(raw.endswith(b"\n" + want), raw)
        self.assertIn(b"\nbarecr.\nend\n", raw)
        self.assertEqual(self.mp.read_meta(new[0])["rcpt_to"], ["b@y.example"])


class TestSmugglingReject(SmugglingCase):
    bare_lf = "reject"

    def test_variants_one_send(self):
        self.all_variants("one")

    def test_variants_irregular_pieces(self):
        self.all_variants("irregular")

    def test_variants_byte_by_byte_around_terminator(self):
        self.all_variants("around")

    def test_rejected_counter(self):
        """A bare-LF refusal counts in messages.rejected, and the session
        continues with commands, not content."""
        st0 = self.mp.status()["messages"]
        c = self.conn()
        c.send(ENVELOPE + b"Subject: x\r\n\r\na\nb\r\n.\r\n")
        self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 354])
        r = c.reply()
        self.assertEqual(r[0], 550, r)
        self.assertTrue(r[1][-1].startswith("550 5.5.2"), r)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        st = self.mp.status()["messages"]
        self.assertEqual(st["rejected"], st0["rejected"] + 1)
        self.assertEqual(st["accepted"], st0["accepted"])
        self.assertEqual(self.mp.new_files(), [])


if __name__ == "__main__":
    h.main()
