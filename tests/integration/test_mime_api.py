#!/usr/bin/python3
"""The MIME side of the messages API (SPEC 3, issue 17) through a real mailport,
with the MIME fixtures of tests/fixtures/mime sent by smtplib:
- GET /messages/{id} "parts": decoded text (quoted-printable UTF-8, ISO-8859-1,
  Shift_JIS), html_available, attachments with RFC 2231 file names;
- GET /messages/{id}/parts/{part}: the decoded bytes, byte-identical, with the
  content type and an RFC 6266 Content-Disposition for attachments; 404 for an
  unknown part or message, 405 for another method;
- GET /messages/{id}/html: cid: rewritten to relative part URLs that resolve,
  the CSP and nosniff headers, ?remote=1;
- GET /messages?q=: plain, from:/to:/subject: prefixes, quoted phrases, case,
  RFC 2047 subjects, total exact, limit/offset/before on the filtered set;
- DELETE /messages: 204 and the spool empty, over more than two pages;
- the token and Host rules on every new route;
- a malformed message still lists, shows raw, and the server stays up;
- SMTPD_WEBHOOK_FORMAT=parsed posts the envelope, subject, text, html and the
  attachments with their decoded bytes in base64, signed."""

import base64
import json
import os
import smtplib
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

FIX = os.path.join(h.SOURCE_DIR, "tests", "fixtures", "mime")
TOKEN = "mime-t0ken"
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
CSP_REMOTE = ("default-src 'none'; img-src 'self' data: https: http:; "
              "style-src 'unsafe-inline'; sandbox")


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


class MimeCase(h.PortCase):
    token = None

    def start_env(self):
        return {"SMTPD_HTTP_TOKEN": self.token} if self.token else {}

    def send(self, data, mail_from="sender@example.com", rcpts=("rcpt@example.net",)):
        """Send raw bytes with smtplib; return the new message's id (from the 250)."""
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        try:
            s.ehlo()
            self.assertEqual(s.mail(mail_from)[0], 250)
            for r in rcpts:
                self.assertEqual(s.rcpt(r)[0], 250)
            code, reply = s.data(data.replace(b"\n", b"\r\n"))
        finally:
            s.quit()
        self.assertEqual(code, 250, reply)
        mid = h.queued_id([reply.decode()])
        self.assertIsNotNone(mid, reply)
        return mid

    def api(self, method, path, token=None, host=None):
        headers = {}
        tok = token if token is not None else self.token
        if tok:
            headers["Authorization"] = "Bearer " + tok
        if host:
            headers["Host"] = host
        return self.mp.http(method, path, headers=headers)

    def get_json(self, path, want=200):
        st, hdr, body = self.api("GET", path)
        self.assertEqual(st, want, body)
        self.assertEqual(hdr["content-type"], "application/json")
        return json.loads(body)

    def search(self, q, **params):
        params["q"] = q
        return self.get_json("/messages?" + urllib.parse.urlencode(params))


class TestParts(MimeCase):
    def setUp(self):
        super().setUp()
        self.start()
        self.nested = self.send(fixture("nested.eml"))

    def test_parts_json(self):
        m = self.get_json("/messages/" + self.nested)
        p = m["parts"]
        self.assertEqual(p["text"], "Hello world \u2013 caf\u00e9, this is the plain text part"
                                    " with a soft line break.\n")
        self.assertIs(p["html_available"], True)
        self.assertEqual(p["attachments"], [
            {"part": "2", "filename": "\u20ac rates 2026.pdf", "content_type": "application/pdf",
             "size": len(fixture("report.pdf.bin")), "content_id": None,
             "disposition": "attachment"},
            {"part": "3", "filename": "logo.png", "content_type": "image/png",
             "size": len(fixture("logo.png.bin")), "content_id": "logo@mailport.test",
             "disposition": "inline"}])
        # the existing fields are still there; the subject is decoded (RFC 2047)
        self.assertEqual(m["subject"], "Nested caf\u00e9 report")
        self.assertEqual(m["id"], self.nested)
        self.assertTrue(any(x["name"] == "Subject" for x in m["headers"]))

    def test_part_download(self):
        st, hdr, body = self.api("GET", "/messages/%s/parts/2" % self.nested)
        self.assertEqual(st, 200, body)
        self.assertEqual(body, fixture("report.pdf.bin"))
        self.assertEqual(hdr["content-type"], "application/pdf")
        self.assertEqual(hdr["content-disposition"],
                         "attachment; filename=\"___ rates 2026.pdf\"; "
                         "filename*=UTF-8''%E2%82%AC%20rates%202026.pdf")
        self.assertEqual(hdr["x-content-type-options"], "nosniff")
        st, hdr, body = self.api("GET", "/messages/%s/parts/3" % self.nested)
        self.assertEqual((st, body), (200, fixture("logo.png.bin")))
        self.assertEqual(hdr["content-type"], "image/png")
        # the text body: decoded, in its own charset, not a download
        st, hdr, body = self.api("GET", "/messages/%s/parts/1.1" % self.nested)
        self.assertEqual(st, 200)
        self.assertEqual(hdr["content-type"], "text/plain; charset=UTF-8")
        self.assertNotIn("content-disposition", hdr)
        self.assertIn("caf\u00e9".encode(), body)
        # the HTML body part opened directly cannot run either
        st, hdr, _ = self.api("GET", "/messages/%s/parts/1.2" % self.nested)
        self.assertEqual(hdr["content-security-policy"], CSP)
        st, hdr, _ = self.api("HEAD", "/messages/%s/parts/2" % self.nested)
        self.assertEqual((st, hdr["content-length"]), (200, str(len(fixture("report.pdf.bin")))))

    def test_unknown_part_and_message(self):
        for path in ("/messages/%s/parts/9" % self.nested, "/messages/%s/parts/1" % self.nested,
                     "/messages/%s/parts/2.1" % self.nested,
                     "/messages/%s/parts/..%%2F..%%2Fx" % self.nested,
                     "/messages/nope/parts/1", "/messages/nope/html",
                     "/messages/..%2Fmeta/html"):
            st, hdr, body = self.api("GET", path)
            self.assertEqual(st, 404, path)
            self.assertEqual(hdr["content-type"], "application/json")
            self.assertIn("error", json.loads(body))
        for method in ("POST", "DELETE", "PUT"):
            for path in ("/messages/%s/parts/2" % self.nested, "/messages/%s/html" % self.nested):
                st, hdr, body = self.api(method, path)
                self.assertEqual(st, 405, (method, path))
                self.assertEqual(hdr["allow"], "GET, HEAD")

    def test_html(self):
        st, hdr, body = self.api("GET", "/messages/%s/html" % self.nested)
        self.assertEqual(st, 200, body)
        self.assertEqual(hdr["content-type"], "text/html; charset=utf-8")
        self.assertEqual(hdr["content-security-policy"], CSP)
        self.assertEqual(hdr["x-content-type-options"], "nosniff")
        html = body.decode()
        self.assertIn('<img src="parts/3" alt="logo">', html)
        self.assertNotIn("cid:", html)
        self.assertIn("caf\u00e9", html)
        # the relative URL resolves, from the HTML's own URL, to the image
        url = urllib.parse.urljoin("/messages/%s/html" % self.nested, "parts/3")
        st, _, img = self.api("GET", url)
        self.assertEqual((st, img), (200, fixture("logo.png.bin")))
        st, hdr, _ = self.api("GET", "/messages/%s/html?remote=1" % self.nested)
        self.assertEqual(hdr["content-security-policy"], CSP_REMOTE)
        st, hdr, _ = self.api("GET", "/messages/%s/html?remote=0" % self.nested)
        self.assertEqual(hdr["content-security-policy"], CSP)
        # a message without HTML
        plain = self.send(fixture("latin1.eml"))
        st, _, body = self.api("GET", "/messages/%s/html" % plain)
        self.assertEqual(st, 404, body)


class TestCharsets(MimeCase):
    def test_text_decoded(self):
        self.start()
        cases = {
            "latin1.eml": ("Gr\u00fc\u00dfe aus K\u00f6ln, \u00e0 bient\u00f4t \u00a3 10\n",
                           "Gr\u00fc\u00dfe aus K\u00f6ln"),
            "sjis.eml": ("\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3002\u65e5\u672c\u8a9e"
                         "\u306e\u30c6\u30b9\u30c8\u3067\u3059\u3002", "\u30c6\u30b9\u30c8"),
        }
        for name, (text, subject) in cases.items():
            mid = self.send(fixture(name))
            m = self.get_json("/messages/" + mid)
            self.assertEqual(m["parts"]["text"], text, name)
            self.assertEqual(m["subject"], subject, name)
            self.assertEqual(m["parts"]["attachments"], [])
        mid = self.send(fixture("rfc2231.eml"))
        atts = self.get_json("/messages/" + mid)["parts"]["attachments"]
        self.assertEqual([a["filename"] for a in atts],
                         ["\u00dcbersicht \u65e5\u672c.txt", "plain name.bin"])
        st, hdr, body = self.api("GET", "/messages/%s/parts/%s" % (mid, atts[0]["part"]))
        self.assertEqual((st, body), (200, b"attached text"))
        self.assertIn("filename*=UTF-8''%C3%9Cbersicht%20%E6%97%A5%E6%9C%AC.txt",
                      hdr["content-disposition"])

    def test_malformed(self):
        self.start()
        raw = fixture("malformed.eml")
        mid = self.send(raw)
        listed = self.get_json("/messages")
        self.assertEqual([m["id"] for m in listed["messages"]], [mid])
        m = self.get_json("/messages/" + mid)
        self.assertIn("parts", m)
        self.assertIsInstance(m["parts"]["attachments"], list)
        st, hdr, body = self.api("GET", "/messages/%s/raw" % mid)
        self.assertEqual(st, 200)
        # smtplib ends the data with a line end when it has none
        self.assertTrue(body.rstrip(b"\n").endswith(raw), body[-200:])
        for a in m["parts"]["attachments"]:
            st, _, _ = self.api("GET", "/messages/%s/parts/%s" % (mid, a["part"]))
            self.assertEqual(st, 200)
        st, _, _ = self.api("GET", "/messages/%s/html" % mid)
        self.assertEqual(st, 200 if m["parts"]["html_available"] else 404)
        # garbage that is barely a message at all
        for junk in (b"\n\n\n", b"no header line at all\n" * 3,
                     b"Content-Type: multipart/mixed; boundary=x\n\n--x\n--x\n--x--\n"):
            jid = self.send(junk)
            m = self.get_json("/messages/" + jid)
            self.assertIn("parts", m)
        self.assertEqual(self.get_json("/messages")["total"], 4)
        self.assertTrue(self.mp.alive())


class TestSearch(MimeCase):
    def test_q(self):
        self.start()
        ids = {}
        ids["nested"] = self.send(fixture("nested.eml"), "bounce@example.com",
                                  ["bob@example.org"])
        ids["latin1"] = self.send(fixture("latin1.eml"))
        ids["sjis"] = self.send(fixture("sjis.eml"))
        for i in range(5):
            ids["plain%d" % i] = self.send(
                b"From: Zed <zed@example.com>\nTo: team@example.net\n"
                b"Subject: Weekly report %d\n\nbody alice\n" % i)

        def found(q, **kw):
            r = self.search(q, **kw)
            return r["total"], [m["id"] for m in r["messages"]]

        self.assertEqual(found("alice"), (1, [ids["nested"]]))      # From header
        self.assertEqual(found("ALICE@EXAMPLE.COM"), (1, [ids["nested"]]))
        self.assertEqual(found("from:bounce@"), (1, [ids["nested"]]))  # envelope sender
        self.assertEqual(found("to:bob"), (1, [ids["nested"]]))
        self.assertEqual(found("from:bob"), (0, []))
        self.assertEqual(found("subject:caf\u00e9"), (1, [ids["nested"]]))  # RFC 2047
        self.assertEqual(found("subject:GR\u00dc\u00dfE"), (1, [ids["latin1"]]))
        self.assertEqual(found("\u30c6\u30b9\u30c8"), (1, [ids["sjis"]]))
        self.assertEqual(found("subject:\"weekly report 3\""), (1, [ids["plain3"]]))
        self.assertEqual(found("subject:weekly to:team from:zed")[0], 5)
        self.assertEqual(found("subject:weekly to:nobody"), (0, []))
        self.assertEqual(found("body"), (0, []))  # bodies are not searched
        # paging over the filtered set: total exact, newest first, cursor and offset
        newest = [ids["plain%d" % i] for i in range(4, -1, -1)]
        self.assertEqual(found("weekly", limit=2), (5, newest[:2]))
        self.assertEqual(found("weekly", limit=2, offset=2), (5, newest[2:4]))
        self.assertEqual(found("weekly", limit=10, before=newest[1]), (5, newest[2:]))
        self.assertEqual(found("weekly", limit=1, offset=1, before=newest[1]), (5, [newest[3]]))
        st, _, body = self.api("GET", "/messages?q=weekly&before=nope")
        self.assertEqual(st, 400, body)
        st, _, body = self.api("GET", "/messages?q=" + "+".join("t%d" % i for i in range(17)))
        self.assertEqual(st, 400, body)
        # an empty q is the whole list
        r = self.get_json("/messages?q=")
        self.assertEqual(r["total"], 8)
        # a message stored after a search is found by the next one; a deleted one not
        late = self.send(b"Subject: late arrival\n\nx\n")
        self.assertEqual(found("late"), (1, [late]))
        st, _, _ = self.api("DELETE", "/messages/" + late)
        self.assertEqual(st, 204)
        self.assertEqual(found("late"), (0, []))
        # after a restart the index is rebuilt, and so is the search text
        self.mp.stop()
        self.mp.start(env=self.mp.env)
        self.assertEqual(found("subject:weekly")[0], 5)
        self.assertEqual(found("alice"), (1, [ids["nested"]]))


class TestDeleteAll(MimeCase):
    def test_delete_all(self):
        """1,100 messages: more than two of delete-all's 512-message pages."""
        self.start()
        n = 1100
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        for i in range(n):
            self.assertEqual(s.sendmail("a@x.example", ["b@y.example"],
                                        b"Subject: m %d\r\n\r\nbody\r\n" % i), {})
        s.quit()
        self.assertEqual(self.get_json("/messages")["total"], n)
        self.assertEqual(len(self.mp.new_files()), n)
        st, hdr, body = self.api("DELETE", "/messages")
        self.assertEqual((st, body), (204, b""))
        self.assertEqual(self.get_json("/messages"), {"total": 0, "messages": []})
        self.assertEqual(self.mp.new_files(), [])
        self.assertEqual(self.mp.meta_files(), [])
        st, _, _ = self.api("DELETE", "/messages/")
        self.assertEqual(st, 204)  # empty: still 204
        st, hdr, _ = self.api("POST", "/messages")
        self.assertEqual(st, 405)
        # the spool still works afterwards
        mid = self.send(b"Subject: after\n\nx\n")
        self.assertEqual([m["id"] for m in self.get_json("/messages")["messages"]], [mid])


class TestTokenAndHost(MimeCase):
    token = TOKEN

    def test_token(self):
        self.start()
        mid = self.send(fixture("nested.eml"))
        routes = [("GET", "/messages/%s/parts/2" % mid), ("GET", "/messages/%s/html" % mid),
                  ("GET", "/messages?q=alice"), ("GET", "/messages/" + mid),
                  ("DELETE", "/messages")]
        for method, path in routes:
            st, hdr, _ = self.api(method, path, token="")
            self.assertEqual(st, 401, path)
            self.assertIn("Bearer", hdr["www-authenticate"])
            st, _, _ = self.api(method, path, token="wrong")
            self.assertEqual(st, 401, path)
        for method, path in routes:
            st, _, body = self.api(method, path)
            self.assertEqual(st, 204 if method == "DELETE" else 200, (path, body))
        self.assertEqual(self.mp.new_files(), [])

    def test_host_without_token(self):
        self.token = None
        self.start()
        mid = self.send(fixture("nested.eml"))
        for path in ("/messages/%s/parts/2" % mid, "/messages/%s/html" % mid,
                     "/messages?q=alice"):
            st, _, body = self.api("GET", path, host="evil.example")
            self.assertIn(st, (403, 421), path)
            self.assertIn("error", json.loads(body))
            st, _, _ = self.api("GET", path, host="localhost")
            self.assertEqual(st, 200, path)
        st, _, _ = self.api("DELETE", "/messages", host="evil.example")
        self.assertIn(st, (403, 421))
        self.assertEqual(len(self.mp.new_files()), 1)


class TestWebhookParsed(MimeCase):
    def test_parsed(self):
        rcv = Receiver()
        self.addCleanup(rcv.close)
        self.start({"SMTPD_WEBHOOK_URL": rcv.url, "SMTPD_WEBHOOK_FORMAT": "parsed",
                    "SMTPD_WEBHOOK_SECRET": "s3cret", "SMTPD_WEBHOOK_RETRY_MIN": "1s"})
        mid = self.send(fixture("nested.eml"), "bounce@example.com", ["bob@example.org"])
        self.assertTrue(rcv.wait(lambda r: mid in r.delivered_ids()), rcv.snapshot())
        req = [r for r in rcv.snapshot() if r.id == mid][0]
        self.assertEqual(req.headers["content-type"], "application/json")
        self.assertTrue(req.signature_ok("s3cret"))
        j = req.json()
        self.assertEqual(sorted(j), ["attachments", "envelope", "html", "subject", "text"])
        self.assertEqual(j["envelope"]["id"], mid)
        self.assertEqual(j["envelope"]["mail_from"], "bounce@example.com")
        self.assertEqual(j["envelope"]["rcpt_to"], ["bob@example.org"])
        self.assertEqual(j["subject"], "Nested caf\u00e9 report")
        self.assertIn("soft line break", j["text"])
        self.assertIn('src="cid:logo@mailport.test"', j["html"])
        atts = j["attachments"]
        self.assertEqual([a["filename"] for a in atts], ["\u20ac rates 2026.pdf", "logo.png"])
        self.assertEqual(base64.b64decode(atts[0]["content"]), fixture("report.pdf.bin"))
        self.assertEqual(base64.b64decode(atts[1]["content"]), fixture("logo.png.bin"))
        self.assertEqual(atts[1]["content_id"], "logo@mailport.test")
        self.assertEqual(atts[0]["size"], len(fixture("report.pdf.bin")))
        # delivered, the message is in cur/: the MIME routes still find it
        self.assertTrue(h.wait_for(
            lambda: self.get_json("/messages/" + mid)["state"] == "delivered", timeout=5))
        st, _, body = self.api("GET", "/messages/%s/parts/2" % mid)
        self.assertEqual((st, body), (200, fixture("report.pdf.bin")))
        st, _, body = self.api("GET", "/messages/%s/html" % mid)
        self.assertEqual(st, 200)
        self.assertIn(b'src="parts/3"', body)
        # a malformed message is still posted, as JSON
        bad = self.send(fixture("malformed.eml"))
        self.assertTrue(rcv.wait(lambda r: bad in r.delivered_ids()), rcv.snapshot())
        req = [r for r in rcv.snapshot() if r.id == bad][0]
        self.assertIsInstance(req.json()["attachments"], list)


if __name__ == "__main__":
    h.main()
