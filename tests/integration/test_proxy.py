#!/usr/bin/python3
"""PROXY protocol v1 and v2 (SPEC 7): SMTPD_PROXY_PORTS, SMTPD_PROXY_TRUSTED, the
5 s header timeout, v2 LOCAL and v1 UNKNOWN, and the carried client address in the
envelope, the Received header, the logs, the per-client limit and /status.

Headers are built by hand (v2 with struct.pack) and sent over raw sockets; the
"load balancer" is this test, bound to a chosen 127.x source address."""

import json
import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
MSG = b"Subject: proxied\r\n\r\nhello through the balancer\r\n"


def v1(src, dst, sport, dport, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src=None, dst=None, sport=0, dport=0, cmd=0x1, tlvs=b"", fam=None):
    """A version 2 header; src None gives an empty address block (UNSPEC)."""
    if src is None:
        block, famb = b"", 0x00
    elif ":" in src:
        block = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                 + struct.pack("!HH", sport, dport))
        famb = 0x21
    else:
        block = (socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
                 + struct.pack("!HH", sport, dport))
        famb = 0x11
    if fam is not None:
        famb = fam
    block += tlvs
    return V2_SIG + struct.pack("!BBH", 0x20 | cmd, famb, len(block)) + block


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


class ProxyCase(h.MailportTestCase):
    def start(self, env=None, trusted="127.0.0.1/32", plain_port=False):
        """One PROXY listener on 127.0.0.1 (and a plain one with plain_port)."""
        self.pport = h.free_port("127.0.0.1")
        self.plain = h.free_port("127.0.0.1") if plain_port else None
        ports = "%d:%d" % (self.pport, self.plain) if plain_port else str(self.pport)
        e = {"SMTPD_PORTS": ports, "SMTPD_PROXY_PORTS": str(self.pport),
             "SMTPD_PROXY_TRUSTED": trusted}
        e.update(env or {})
        self.mp = self.mailport(e)
        return self.mp

    def sock(self, source="127.0.0.1", port=None, timeout=5.0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port or self.pport))
        self.addCleanup(s.close)
        return s

    def smtp_over(self, s, first=b""):
        """A RawSMTP on an already connected (and PROXY-headed) socket."""
        c = h.RawSMTP.__new__(h.RawSMTP)
        c.sock = s
        c.buf = first
        c.greeting = c.reply()
        return c

    def send_through(self, header, source="127.0.0.1", pipelined=b""):
        s = self.sock(source)
        s.sendall(header + pipelined)
        c = self.smtp_over(s)
        self.assertEqual(c.greeting[0], 220, c.greeting)
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG,
                               ehlo=None if pipelined else "client.example")
        self.assertEqual(r[0], 250, r)
        c.expect("QUIT", 221)
        return h.queued_id(r[1])

    def assert_closed_silently(self, s, within=2.0):
        s.settimeout(within)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            self.fail("connection not closed within %.1f s" % within)
        self.assertEqual(data, b"", "the server spoke to a refused PROXY connection")

    def wait_idle(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.mp.status()["connections"]["active"] == 0:
                return
            time.sleep(0.05)


class TestCarriedAddress(ProxyCase):
    def test_v1_tcp4_envelope_received_logs(self):
        mp = self.start({"SMTPD_LOG_FORMAT": "json"})
        mid = self.send_through(v1("198.51.100.7", "203.0.113.1", 40000, 25))
        meta = mp.read_meta(mid)
        self.assertEqual(meta["client"], {"address": "198.51.100.7", "port": 40000})
        # local stays the listener's own address; the header's destination is proxy's
        self.assertEqual(meta["local"], {"address": "127.0.0.1", "port": self.pport})
        self.assertEqual(meta["proxy"], {"source": {"address": "198.51.100.7", "port": 40000},
                                         "destination": {"address": "203.0.113.1", "port": 25}})
        _, received, _ = h.split_stored(mp.read_new(mid).decode())
        self.assertIn("[198.51.100.7]", received)
        self.assertNotIn("127.0.0.1", received)
        self.wait_idle()
        objs = [json.loads(l) for l in h.stderr_lines(mp.stderr())]
        sess = [o for o in objs if "session" in o]
        self.assertTrue(sess)
        for o in sess:
            self.assertEqual(o.get("client"), "198.51.100.7:40000", o)
        connect = [o for o in sess if o["msg"] == "connect"]
        self.assertEqual(len(connect), 1, sess)
        self.assertEqual(connect[0].get("proxy"), "v1")
        self.assertTrue(connect[0].get("proxy_peer", "").startswith("127.0.0.1:"), connect)

    def test_v2_tcp4_tlvs_then_smtp(self):
        """The header with its TLVs, then SMTP once greeted."""
        mp = self.start({"SMTPD_LOG_LEVEL": "debug"})
        hdr = v2("198.51.100.8", "203.0.113.1", 40001, 25,
                 tlvs=tlv(0x01, b"smtp") + tlv(0xEA, b"\x01vpce-0123456789") + tlv(0x04, b""))
        s = self.sock()
        s.sendall(hdr)
        c = self.smtp_over(s)
        self.assertEqual(c.greeting[0], 220)
        s.sendall(b"EHLO client.example\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG, ehlo=None)
        self.assertEqual(r[0], 250, r)
        meta = mp.read_meta(h.queued_id(r[1]))
        self.assertEqual(meta["client"], {"address": "198.51.100.8", "port": 40001})
        self.assertEqual(meta["helo"], "client.example")

    def test_smtp_in_the_headers_segment_is_an_early_talker(self):
        """SPEC 4: input already waiting when the greeting would be written,
        here the client's first command in the PROXY header's own segment, is
        answered 554 5.5.0 even with no greet delay."""
        self.start()
        s = self.sock()
        s.sendall(v2("198.51.100.9", "203.0.113.1", 40003, 25) + b"EHLO client.example\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"554 5.5.0"), data)

    def test_v2_tcp6(self):
        mp = self.start()
        mid = self.send_through(v2("2001:db8::7", "2001:db8::1", 40002, 2525))
        meta = mp.read_meta(mid)
        self.assertEqual(meta["client"], {"address": "2001:db8::7", "port": 40002})
        self.assertEqual(meta["proxy"]["destination"], {"address": "2001:db8::1", "port": 2525})
        _, received, _ = h.split_stored(mp.read_new(mid).decode())
        self.assertIn("IPv6:2001:db8::7", received)

    def test_v4_mapped_shown_as_ipv4(self):
        """SPEC 7: IPv4 clients never carry a ::ffff: prefix, even when the
        balancer writes them v4-mapped."""
        mp = self.start()
        mid = self.send_through(v2("::ffff:198.51.100.9", "::ffff:203.0.113.1", 40003, 25))
        meta = mp.read_meta(mid)
        self.assertEqual(meta["client"]["address"], "198.51.100.9")
        self.assertEqual(meta["proxy"]["destination"]["address"], "203.0.113.1")
        mid = self.send_through(v1("::ffff:198.51.100.10", "::1", 40004, 25))
        self.assertEqual(mp.read_meta(mid)["client"]["address"], "198.51.100.10")
        self.assertNotIn("::ffff:", mp.stderr())

    def test_header_split_across_reads(self):
        """The parser resumes: a header that arrives a few bytes at a time."""
        mp = self.start()
        hdr = v2("198.51.100.11", "203.0.113.1", 40005, 25)
        s = self.sock()
        for i in range(0, len(hdr), 5):
            s.sendall(hdr[i:i + 5])
            time.sleep(0.02)
        c = self.smtp_over(s)
        self.assertEqual(c.greeting[0], 220)
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG)
        self.assertEqual(mp.read_meta(h.queued_id(r[1]))["client"]["address"], "198.51.100.11")
        v1hdr = v1("198.51.100.12", "203.0.113.1", 40006, 25)
        s = self.sock()
        for b in v1hdr:
            s.sendall(bytes([b]))
        c = self.smtp_over(s)
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG)
        self.assertEqual(mp.read_meta(h.queued_id(r[1]))["client"]["address"], "198.51.100.12")


class TestLocal(ProxyCase):
    def test_v2_local_uses_the_real_peer(self):
        """v2 LOCAL is a balancer's own health check: the connection's own
        addresses apply and the envelope has no proxy."""
        mp = self.start()
        mid = self.send_through(v2(cmd=0x0))
        meta = mp.read_meta(mid)
        self.assertEqual(meta["client"]["address"], "127.0.0.1")
        self.assertIsNone(meta["proxy"])

    def test_v2_proxy_unspec_and_v1_unknown(self):
        mp = self.start()
        for hdr in (v2(cmd=0x1), b"PROXY UNKNOWN\r\n",
                    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
            mid = self.send_through(hdr)
            meta = mp.read_meta(mid)
            self.assertEqual(meta["client"]["address"], "127.0.0.1", hdr)
            self.assertIsNone(meta["proxy"])

    def test_health_check_probe(self):
        """A TCP health check that sends LOCAL and hangs up at the greeting."""
        mp = self.start()
        s = self.sock()
        s.sendall(v2(cmd=0x0))
        self.assertTrue(s.recv(100).startswith(b"220 "))
        s.close()
        self.wait_idle()
        self.assertTrue(mp.alive())


class TestRefused(ProxyCase):
    def test_untrusted_peer_closed(self):
        """SMTPD_PROXY_TRUSTED=127.0.0.2/32: a connection from 127.0.0.1 is closed
        without a word, even with a valid header; one from 127.0.0.2 works."""
        mp = self.start(trusted="127.0.0.2/32", env={"SMTPD_LOG_FORMAT": "json"})
        s = self.sock("127.0.0.1")
        s.sendall(v1("198.51.100.7", "203.0.113.1", 40000, 25))
        self.assert_closed_silently(s)
        mid = self.send_through(v1("198.51.100.7", "203.0.113.1", 40000, 25), source="127.0.0.2")
        self.assertEqual(mp.read_meta(mid)["client"]["address"], "198.51.100.7")
        self.wait_idle()
        st = mp.status()
        self.assertEqual(st["connections"]["refused"], 1)
        objs = [json.loads(l) for l in h.stderr_lines(mp.stderr())]
        refused = [o for o in objs if o["msg"] == "connection refused"]
        self.assertEqual(len(refused), 1, objs)
        self.assertIn("SMTPD_PROXY_TRUSTED", refused[0]["reason"])
        self.assertTrue(refused[0]["client"].startswith("127.0.0.1:"))

    def test_garbage_closed_at_once(self):
        mp = self.start()
        for junk in (b"EHLO client.example\r\n", b"GET / HTTP/1.1\r\n\r\n",
                     b"PROXY TCP4 198.51.100.7 203.0.113.1 40000 25\n",
                     b"PROXY TCP4 198.51.100.7 203.0.113.1 99999 25\r\n",
                     V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,   # version 3
                     v2("198.51.100.7", "203.0.113.1", 1, 2, fam=0x12),  # UDP
                     V2_SIG + b"\x21\x11\xff\xff",                   # 64 KiB block
                     b"PROXY UNKNOWN " + b"x" * 120):                # no CRLF in 107
            s = self.sock()
            t = time.monotonic()
            s.sendall(junk)
            self.assert_closed_silently(s)
            self.assertLess(time.monotonic() - t, 1.5, junk)
        self.wait_idle()
        self.assertTrue(mp.alive())

    def test_header_timeout(self):
        """5 s for the header, counted from the connection; a partial header does
        not buy more time."""
        mp = self.start()
        s1 = self.sock(timeout=10)
        s2 = self.sock(timeout=10)
        s2.sendall(V2_SIG[:8])
        t = time.monotonic()
        self.assert_closed_silently(s1, within=8)
        took = time.monotonic() - t
        self.assert_closed_silently(s2, within=2)
        self.assertGreater(took, 4.0)
        self.assertLess(took, 7.0)
        self.assertIn("no PROXY header within 5 s", mp.stderr())

    def test_plain_listener_unaffected(self):
        """Only the listeners on SMTPD_PROXY_PORTS expect a header."""
        mp = self.start(plain_port=True)
        c = h.RawSMTP("127.0.0.1", self.plain)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220)
        r = h.send_message_raw(c, "a@x.example", ["b@y.example"], MSG)
        self.assertEqual(mp.read_meta(h.queued_id(r[1]))["client"]["address"], "127.0.0.1")
        # a PROXY header on the plain listener is just a bad command
        self.assertEqual(c.cmd("PROXY TCP4 198.51.100.7 203.0.113.1 40000 25")[0], 500)
        listeners = {l["port"]: l for l in mp.status()["listeners"]}
        self.assertIs(listeners[self.pport]["proxy"], True)
        self.assertIs(listeners[self.plain]["proxy"], False)
        self.assertIn("listening on 127.0.0.1:%d (PROXY protocol)" % self.pport, mp.stderr())

    def test_per_client_limit_uses_carried_address(self):
        """Many clients share one balancer: the limit counts the carried address.
        Two sessions of 198.51.100.7 are fine, a third is refused 421 4.7.0,
        while 198.51.100.8 through the same balancer is still welcome."""
        mp = self.start({"SMTPD_MAX_CONNECTIONS_PER_CLIENT": "2"})
        held = []
        for port in (1001, 1002):
            s = self.sock()
            s.sendall(v1("198.51.100.7", "203.0.113.1", port, 25))
            held.append(self.smtp_over(s))
            self.assertEqual(held[-1].greeting[0], 220)
        s = self.sock()
        s.sendall(v1("198.51.100.7", "203.0.113.1", 1003, 25))
        c = self.smtp_over(s)
        self.assertEqual(c.greeting[0], 421, c.greeting)
        self.assertTrue(c.greeting[1][0].startswith("421 4.7.0"), c.greeting)
        mid = self.send_through(v1("198.51.100.8", "203.0.113.1", 1004, 25))
        self.assertEqual(mp.read_meta(mid)["client"]["address"], "198.51.100.8")
        for c in held:
            c.expect("QUIT", 221)

    def test_drain_closes_waiting_connection(self):
        mp = self.start()
        s = self.sock(timeout=10)
        s.sendall(b"PROXY TCP4 198.51")
        time.sleep(0.2)
        mp.proc.terminate()
        self.assert_closed_silently(s, within=3)
        self.assertEqual(mp.wait_exit(10), 0, mp.stderr())


class TestImplicitTLS(ProxyCase):
    def test_header_then_tls_in_one_segment(self):
        """On a port that is both SMTPD_TLS_PORTS and SMTPD_PROXY_PORTS the header
        comes first in plaintext (as HAProxy sends it), and the TLS ClientHello
        may share its segment."""
        import ssl
        port = h.free_port()
        env = {"SMTPD_TLS_PORTS": str(port)}
        r = h.run(["--check-config"], env=dict(env, SMTPD_PORTS=str(port),
                                                SMTPD_PROXY_PORTS=str(port),
                                                SMTPD_PROXY_TRUSTED="127.0.0.1"))
        if r.returncode != 0:
            self.skipTest("implicit TLS is not available: %s" % r.stderr.strip())
        self.pport = port
        e = {"SMTPD_PORTS": str(port), "SMTPD_PROXY_PORTS": str(port),
             "SMTPD_PROXY_TRUSTED": "127.0.0.1/32"}
        e.update(env)
        mp = self.mailport(e)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out)
        s = self.sock(timeout=10)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        s.sendall(v2("198.51.100.20", "203.0.113.1", 40020, 465) + out.read())

        def pump():
            data = out.read()
            if data:
                s.sendall(data)
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("closed by the server")
            inc.write(chunk)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        s.sendall(out.read())
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                try:
                    buf += tls.read(65536)
                except ssl.SSLWantReadError:
                    pump()
            l, buf = buf.split(b"\r\n", 1)
            return l

        def send(cmd):
            tls.write(cmd)
            s.sendall(out.read())

        self.assertTrue(line().startswith(b"220 "))
        for cmd, want in ((b"EHLO client.example\r\n", b"250 "),
                          (b"MAIL FROM:<a@x.example>\r\n", b"250 "),
                          (b"RCPT TO:<b@y.example>\r\n", b"250 "), (b"DATA\r\n", b"354 "),
                          (MSG + b".\r\n", b"250 ")):
            send(cmd)
            while True:
                l = line()
                if l[3:4] == b" ":
                    break
            self.assertTrue(l.startswith(want), (cmd, l))
        mid = h.queued_id([l.decode()])
        meta = mp.read_meta(mid)
        self.assertEqual(meta["client"], {"address": "198.51.100.20", "port": 40020})
        self.assertIsNotNone(meta["tls"])
        send(b"QUIT\r\n")


class TestConfig(h.MailportTestCase):
    def check(self, env):
        return h.run(["--check-config"], env=env)

    def test_errors(self):
        cases = [
            ({"SMTPD_PROXY_PORTS": "2525"}, "SMTPD_PROXY_TRUSTED: must list"),
            ({"SMTPD_PROXY_PORTS": "2526", "SMTPD_PROXY_TRUSTED": "10.0.0.0/8"},
             "SMTPD_PROXY_PORTS: port 2526 is not the port of any listener"),
            ({"SMTPD_PROXY_PORTS": "25x", "SMTPD_PROXY_TRUSTED": "10.0.0.0/8"},
             "SMTPD_PROXY_PORTS: \"25x\" is not a comma-separated list"),
            ({"SMTPD_PROXY_PORTS": "2525", "SMTPD_PROXY_TRUSTED": "10.1.0.0/8"},
             "SMTPD_PROXY_TRUSTED: \"10.1.0.0/8\" has bits set past its prefix length /8"),
            ({"SMTPD_PROXY_PORTS": "2525", "SMTPD_PROXY_TRUSTED": "10.0.0.0/8,lb"},
             "SMTPD_PROXY_TRUSTED: \"lb\" is not an IPv4 or IPv6 address"),
        ]
        for env, want in cases:
            r = self.check(env)
            self.assertEqual(r.returncode, 2, (env, r.stderr))
            self.assertEqual(len(h.stderr_lines(r.stderr)), 1, r.stderr)
            self.assertIn(want, r.stderr)

    def test_valid(self):
        r = self.check({"SMTPD_PORTS": "2525:2526", "SMTPD_PROXY_PORTS": " 2526 ",
                        "SMTPD_PROXY_TRUSTED": "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32"})
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    h.main()
