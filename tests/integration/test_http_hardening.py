"""The side port refuses what attackers probe with (issue 13): a NUL or any
control octet in the path, raw or percent-encoded, is 400 and never reaches a
message; ids are matched exactly."""
import json
import os
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402


def raw_request(port, data, timeout=3):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else 0


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
        return raw_request(self.port, ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                                       "\r\n\r\n" % (method, path)).encode("latin-1"))

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
            resp = self.req(method, path)
            self.assertEqual(status_of(resp), 400, "%s %s: %r" % (method, path, resp[:200]))
            body = resp.partition(b"\r\n\r\n")[2]
            self.assertIn("error", json.loads(body))
        self.still_there()

    def test_raw_control_octets_in_the_request_line(self):
        for line in (b"GET /messages/" + self.id.encode() + b"\x00.json/raw HTTP/1.1",
                     b"DELETE /messages/" + self.id.encode() + b"\x00/x HTTP/1.1",
                     b"GET /livez\x00 HTTP/1.1", b"GET /sta\x01tus HTTP/1.1"):
            resp = raw_request(self.port, line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(status_of(resp), 400, "%r: %r" % (line, resp[:200]))
        self.still_there()

    def test_ids_match_exactly(self):
        for suffix in (".json", "x", "/", ":2,S", "%20"):
            st, _, body = self.mp.http_get("/messages/%s%s" % (self.id, suffix))
            self.assertIn(st, (400, 404), "%s%s answered %d: %s" % (self.id, suffix, st, body))
        self.still_there()


if __name__ == "__main__":
    h.main()
