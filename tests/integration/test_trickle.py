"""Clients that trickle (issue 4): a command sent one byte at a time does not
reset the command deadline, and a body sent below SMTPD_MIN_DATA_RATE runs into
SMTPD_DATA_TIMEOUT, while a client that keeps the rate up is not cut off.
Each test would pass only 'by luck' against a plain per-read idle timer: the
trickle interval is well below the timeout, so only a deadline catches it."""
import time

import mailport_harness as h


def trickle(c, data, interval, limit):
    """Send data one byte per interval until the peer closes or limit seconds
    pass. Returns (seconds elapsed, bytes sent, closed)."""
    t0 = time.monotonic()
    sent = 0
    for b in data:
        if time.monotonic() - t0 > limit:
            return time.monotonic() - t0, sent, False
        try:
            c.send(bytes([b]))
        except OSError:
            return time.monotonic() - t0, sent, True
        sent += 1
        time.sleep(interval)
    return time.monotonic() - t0, sent, False


class TestTrickle(h.MailportTestCase):
    def test_command_trickled_byte_by_byte_times_out(self):
        mp = self.mailport(env={"SMTPD_COMMAND_TIMEOUT": "2"})
        c = h.RawSMTP("127.0.0.1", int(mp.env["SMTPD_PORTS"]))
        self.addCleanup(c.close)
        c.expect("EHLO trickle.example", 250)
        # 40 bytes at 0.25 s each is 10 s: every gap is far below the 2 s timeout.
        cmd = b"MAIL FROM:<slow-slow-slow@example.org>\r\n"
        elapsed, sent, closed = trickle(c, cmd, 0.25, 8)
        c.settimeout(5)
        try:
            code, lines = c.reply()
        except Exception:
            code, lines = None, []
        self.assertEqual(code, 421, "want 421 4.4.2 after the command deadline, got %r" % lines)
        self.assertIn("4.4.2", lines[-1] if lines else "")
        self.assertLess(sent, len(cmd), "the whole trickled command was accepted")
        self.assertTrue(c.closed_by_peer(5))

    def test_data_below_min_rate_times_out(self):
        mp = self.mailport(env={"SMTPD_DATA_TIMEOUT": "2", "SMTPD_MIN_DATA_RATE": "1000"})
        c = h.RawSMTP("127.0.0.1", int(mp.env["SMTPD_PORTS"]))
        self.addCleanup(c.close)
        c.expect("EHLO trickle.example", 250)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.org>", 250)
        c.expect("DATA", 354)
        body = b"Subject: slow\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n"
        elapsed, sent, closed = trickle(c, body, 0.2, 10)
        c.settimeout(5)
        try:
            code, lines = c.reply()
        except Exception:
            code, lines = None, []
        self.assertEqual(code, 421, "want 421 4.4.2 at the data deadline, got %r" % lines)
        self.assertLess(sent, len(body))
        self.assertEqual(mp.new_files(), [], "a timed-out message must not be stored")

    def test_steady_client_is_not_cut_off(self):
        # 2 s data timeout, 1000 B/s minimum; the client sends 2000 bytes every
        # 0.5 s (4000 B/s) for 4 s: twice the timeout, but at the rate required.
        mp = self.mailport(env={"SMTPD_DATA_TIMEOUT": "2", "SMTPD_MIN_DATA_RATE": "1000"})
        c = h.RawSMTP("127.0.0.1", int(mp.env["SMTPD_PORTS"]))
        self.addCleanup(c.close)
        c.expect("EHLO steady.example", 250)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.org>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: steady\r\n\r\n")
        for _ in range(8):
            c.send((b"y" * 998 + b"\r\n") * 2)
            time.sleep(0.5)
        c.send(b".\r\n")
        c.settimeout(5)
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        self.assertEqual(len(mp.new_files()), 1)


if __name__ == "__main__":
    h.main()
