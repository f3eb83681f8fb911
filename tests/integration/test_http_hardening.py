"""The side port refuses what attackers probe with (issue 13): a NUL or any
control octet in the path, raw or percent-encoded, is 400 and never reaches a
message; ids are matched exactly."""
import json
import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402


class TestControlOctets(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        smtp_port = h.free_port()
        self.mp = self.mailport({"SMTPD_PORTS": str(smtp_port)})
        self.port = self.mp.http_port
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="c.example",
                          timeout=5) as s:
            s.sendmail("a@x.example", ["b@y.example"], "Subject: keep me\r\n\r\nhi\r\n")
        st, _, body = self.mp.http_get("/messages")
        self.assertEqual(st, 200)
        self.id = json.loads(body)["messages"][0]["id"]

    def req(self, method, path):
        return h.http_exchange(self.port, ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                           "Connection: close\r\n\r\n" % (method, path))
                               .encode("latin-1"))

    def still_there(self):
        st, _, body = self.mp.http_get("/messages/%s" % self.id)
        self.assertEqual(st, 200, body)

    def test_percent_encoded_nul_and_controls(self):
        for method, path in (("GET", "/messages/%s%%00.json/raw" % self.id),
                             ("GET", "/messages/%s%%00" % self.id),
                             ("DELETE", "/messages/%s%%00/../../whatever" % self.id),
                             ("DELETE", "/messages/%s%%0a" % self.id),
                             ("GET", "/status%%01"),
                             ("GET", "/messages/%s%%7f" % self.id),
                             ("GET", "/messages?limit=%00")):
            st, head, body = self.req(method, path)
            self.assertEqual(st, 400, "%s %s: %r %r" % (method, path, head, body[:200]))
            self.assertIn("error", json.loads(body))
        self.still_there()

    def test_raw_control_octets_in_the_request_line(self):
        for line in (b"GET /messages/" + self.id.encode() + b"\x00.json/raw HTTP/1.1",
                     b"DELETE /messages/" + self.id.encode() + b"\x00/x HTTP/1.1",
                     b"GET /livez\x00 HTTP/1.1", b"GET /sta\x01tus HTTP/1.1"):
            st, head, _ = h.http_exchange(self.port, line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(st, 400, "%r: %r" % (line, head))
        self.still_there()

    def test_ids_match_exactly(self):
        for suffix in (".json", "x", "/", ":2,S", "%20"):
            st, _, body = self.mp.http_get("/messages/%s%s" % (self.id, suffix))
            self.assertIn(st, (400, 404), "%s%s answered %d: %s" % (self.id, suffix, st, body))
        self.still_there()


if __name__ == "__main__":
    h.main()
