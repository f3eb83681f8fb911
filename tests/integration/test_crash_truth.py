#!/usr/bin/python3
"""Crash truth (SPEC 5, issue 14): what a 250 promises holds whatever happens.

test_kill9_under_load: 20,000 distinct messages from 50 concurrent clients while
mailport is killed with SIGKILL 10 times at random moments and restarted on the
same port and spool each time. After a clean stop and one more start
(recovery), on disk: every message that got a 250 is in new/ (or cur/) exactly
once, byte-exact (trace headers, then the message as sent after dot-unstuffing,
with LF line ends), with its envelope meta/<name>.json (mail_from, rcpt_to,
size), under the name its "queued as" id gave; every stored file, acknowledged
or not, is one complete sent message; no file lacks its envelope; no envelope
is left without its message.

test_failed_sync_batch: mailport runs with tests/faultinject/fsync_fault.c
preloaded; a trigger file armed just before 20 concurrent final dots makes the
next sync of the spool fail with EIO: at least one message gets 451 4.3.0, every 250 is
stored exactly once after a restart without the shim, nothing answered 451 is
in new/, cur/ or meta/, mailport goes on storing and its log names the error.

Knobs (environment): MAILPORT_CRASH_SEED (printed on every run, to reproduce
the kill moments and the messages), MAILPORT_CRASH_MESSAGES (20000),
MAILPORT_CRASH_CLIENTS (50), MAILPORT_CRASH_KILLS (10), MAILPORT_CRASH_BUDGET
(seconds for the sending phase, 170), MAILPORT_CRASH_KEEP=1 keeps the spool.
"""

import hashlib
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


SEED = env_int("MAILPORT_CRASH_SEED", int.from_bytes(os.urandom(4), "big") % 1000000)
MESSAGES = env_int("MAILPORT_CRASH_MESSAGES", 20000)
CLIENTS = env_int("MAILPORT_CRASH_CLIENTS", 50)
KILLS = env_int("MAILPORT_CRASH_KILLS", 10)
SEND_BUDGET = float(env_int("MAILPORT_CRASH_BUDGET", 170))
SCRIPT_TIMEOUT = env_int("MAILPORT_CRASH_SCRIPT_TIMEOUT", 840)  # ctest's TIMEOUT is 900
RESTART_TIMEOUT = 60.0  # a start over a large spool (recovery) may take a while under ASan
REPLY_TIMEOUT = 30.0    # one SMTP reply while 50 clients share the disk
BIG_EVERY = 2000        # every 2000th message is ~1 MiB (10 of 20,000)

TOKEN_RE = re.compile(rb"^Subject: crash-truth (T\d+-(\d+))\r?\n", re.M)
FILL = (b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 "
        b"the quick brown fox jumps over the lazy dog, ") * 24


def log(msg):
    sys.stderr.write("crash_truth: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- the messages

def token_of(i):
    return "T%d-%06d" % (SEED, i)


def envelope_of(i):
    """(mail_from, [rcpt_to...]) of message i: distinct per message, some with two
    recipients, so a swapped envelope shows."""
    rcpts = ["r%d@y.example" % i]
    if i % 5 == 0:
        rcpts.append("cc%d@z.example" % i)
    return "s%d@x.example" % i, rcpts


def content_of(i):
    """Message i as the client means it (CRLF line ends, before dot-stuffing):
    deterministic from SEED and i. Sizes 200 B .. 64 KiB (log-uniform), every
    BIG_EVERY-th ~1 MiB; about a third carry lines that need dot-stuffing
    (".", "..", ".x", "..."), which the server must unstuff."""
    rng = random.Random(SEED * 1000003 + i)
    tok = token_of(i).encode()
    if i % BIG_EVERY == BIG_EVERY - 1:
        size = 1000000 + rng.randrange(100000)
    else:
        size = int(math.exp(rng.uniform(math.log(200), math.log(65536))))
    dots = rng.random() < 0.35
    mail_from, rcpts = envelope_of(i)
    parts = [b"From: <%s>\r\nTo: <%s>\r\nSubject: crash-truth %s\r\nMessage-Id: <%s@crash.test>\r\n"
             b"\r\n%s first body line\r\n" % (mail_from.encode(), rcpts[0].encode(), tok, tok, tok)]
    have = len(parts[0])
    n = 0
    while have < size:
        n += 1
        r = rng.random()
        if dots and r < 0.08:
            line = rng.choice((b".", b"..", b"...", b". %s %d" % (tok, n), b".leading dot %d" % n))
        elif r < 0.1:
            line = b""
        else:
            off = rng.randrange(64)
            ln = rng.randrange(10, 200 if r < 0.95 else 990)
            line = b"%d " % n + FILL[off:off + ln]
        parts.append(line + b"\r\n")
        have += len(line) + 2
    parts.append(b"%s last line\r\n" % tok)
    if dots:
        parts.append(b".\r\n")  # the body ends with a line that is a single dot
    return b"".join(parts)


def stored_form(content):
    """What the spool keeps after the trace headers: LF line ends."""
    return content.replace(b"\r\n", b"\n")


def digest(b):
    return hashlib.sha256(b).hexdigest()


def split_trace(data):
    """(trace header bytes, rest) of a stored file: Return-Path: first, then
    Received: with its continuation lines; raises ValueError otherwise."""
    if not data.startswith(b"Return-Path: "):
        raise ValueError("does not start with Return-Path: %r" % data[:120])
    nl = data.find(b"\n")
    if nl < 0 or not data.startswith(b"Received:", nl + 1):
        raise ValueError("second header is not Received: %r" % data[:300])
    pos = data.find(b"\n", nl + 1)
    while pos >= 0 and data[pos + 1:pos + 2] in (b" ", b"\t"):
        pos = data.find(b"\n", pos + 1)
    if pos < 0:
        raise ValueError("trace headers never end: %r" % data[:300])
    return data[:pos + 1], data[pos + 1:]


# ---------------------------------------------------------------- spool reading

def list_dir(spool, sub):
    d = os.path.join(spool, sub)
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if not n.startswith("."))


def read_file(spool, sub, name):
    with open(os.path.join(spool, sub, name), "rb") as f:
        return f.read()


class SpoolAudit:
    """Every stored message of the spool (new/ and cur/), checked against what
    was sent: expected[i] = (sha256 of the stored form, size, mail_from, rcpts).
    Collects problems instead of stopping at the first one."""

    def __init__(self, spool, expected):
        self.spool = spool
        self.expected = expected
        self.problems = []
        self.by_index = {}   # i -> [(sub, name)]
        self.files = 0

    def problem(self, msg):
        self.problems.append(msg)

    def run(self):
        for sub in ("new", "cur"):
            for name in list_dir(self.spool, sub):
                self.files += 1
                self.check_file(sub, name)
        self.check_envelopes_have_messages()
        return self

    def check_file(self, sub, name):
        where = "%s/%s" % (sub, name)
        data = read_file(self.spool, sub, name)
        try:
            trace, rest = split_trace(data)
        except ValueError as e:
            self.problem("%s: %s" % (where, e))
            return
        m = TOKEN_RE.search(rest[:4096])
        if not m or not m.group(1).startswith(b"T%d-" % SEED):
            self.problem("%s (%d bytes): no token of this run, a partial or foreign file: %r"
                         % (where, len(data), rest[:200]))
            return
        i = int(m.group(2))
        if i not in self.expected:
            self.problem("%s: token %s was never sent" % (where, m.group(1)))
            return
        self.by_index.setdefault(i, []).append((sub, name))
        want_digest, want_size, mail_from, rcpts = self.expected[i]
        if digest(rest) != want_digest:
            self.problem("%s: message %d is not byte-exact (%d bytes stored after the trace "
                         "headers, %d expected): %s"
                         % (where, i, len(rest), len(stored_form(content_of(i))),
                            first_difference(rest, stored_form(content_of(i)))))
        if not trace.startswith(b"Return-Path: <%s>\n" % mail_from.encode()):
            self.problem("%s: Return-Path of message %d is not <%s>: %r"
                         % (where, i, mail_from, trace[:120]))
        try:
            with open(os.path.join(self.spool, "meta", name + ".json"), "rb") as f:
                meta = json.loads(f.read())
        except FileNotFoundError:
            self.problem("%s: no envelope meta/%s.json" % (where, name))
            return
        except ValueError as e:
            self.problem("%s: meta/%s.json is not JSON: %s" % (where, name, e))
            return
        got = (meta.get("id"), meta.get("mail_from"), meta.get("rcpt_to"), meta.get("size"))
        want = (name, mail_from, rcpts, want_size)
        if got != want:
            self.problem("%s: envelope (id, mail_from, rcpt_to, size) is %r, want %r"
                         % (where, got, want))

    def check_envelopes_have_messages(self):
        """An envelope whose message is nowhere (new/, cur/, failed/, tmp/) is a
        trace of a message that was not stored: half-visible."""
        present = set()
        for sub in ("new", "cur", "failed", "tmp"):
            present.update(list_dir(self.spool, sub))
        tmp = set(list_dir(self.spool, "tmp"))
        self.tmp_files = len(tmp)
        self.tmp_envelopes = 0
        for m in list_dir(self.spool, "meta"):
            if m.endswith(".json") and m[:-5] not in present:
                self.problem("meta/%s: an envelope without its message" % m)
            elif m.endswith(".json") and m[:-5] in tmp:
                self.tmp_envelopes += 1  # Maildir: tmp/ is not visible; cleaned after 36 h


def first_difference(got, want):
    n = min(len(got), len(want))
    k = next((j for j in range(n) if got[j] != want[j]), n)
    return "first difference at byte %d: got %r, want %r" % (k, got[k:k + 60], want[k:k + 60])


# ---------------------------------------------------------------- the clients

class Run:
    """The shared state of one load run."""

    def __init__(self, n, deadline):
        self.n = n
        self.deadline = deadline
        self.lock = threading.Lock()
        self.next_index = 0
        self.acked = {}        # i -> queued id
        self.unacked = {}      # i -> why
        self.expected = {}     # i -> (digest, size, mail_from, rcpts)
        self.stop = threading.Event()
        self.port = None
        self.connects = 0
        self.refused = 0
        self.client_errors = []

    def take(self):
        with self.lock:
            if self.next_index >= self.n or self.stop.is_set() or time.monotonic() > self.deadline:
                return None
            i = self.next_index
            self.next_index += 1
            return i

    def handed_out(self):
        with self.lock:
            return self.next_index


class Refused(Exception):
    """A command of the transaction answered otherwise than expected."""


class Client(threading.Thread):
    def __init__(self, run, k):
        super().__init__(daemon=True, name="client%d" % k)
        self.run_ = run
        self.k = k
        self.rng = random.Random(SEED * 7919 + k)
        self.conn = None
        self.left_on_conn = 0

    def connect(self):
        run = self.run_
        while not run.stop.is_set() and time.monotonic() < run.deadline:
            try:
                c = h.RawSMTP("127.0.0.1", run.port, timeout=REPLY_TIMEOUT, read_greeting=False)
            except OSError:
                # refused while mailport restarts
                with run.lock:
                    run.refused += 1
                time.sleep(0.02 + self.rng.random() * 0.08)
                continue
            try:
                greeting = c.reply()  # a reset before the greeting: killed meanwhile
                if greeting[0] != 220:
                    raise h.SMTPError("greeting %r" % (greeting,))
                c.expect("EHLO client%d.crash.test" % self.k, 250)
            except (OSError, h.SMTPError):
                c.close()
                time.sleep(0.02)
                continue
            with run.lock:
                run.connects += 1
            self.conn = c
            self.left_on_conn = self.rng.randrange(10, 120)
            return True
        return False

    def abort(self):
        """From another thread: wake a client blocked on its socket."""
        c = self.conn
        if c is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def send_one(self, i):
        """The reply (code, lines) to the final dot of message i; a command
        refused on the way raises Refused, a broken connection OSError or
        h.SMTPError."""
        content = content_of(i)
        mail_from, rcpts = envelope_of(i)
        with self.run_.lock:
            self.run_.expected[i] = (digest(stored_form(content)), len(content), mail_from, rcpts)
        c = self.conn
        for line, want in ([("MAIL FROM:<%s>" % mail_from, 250)] +
                           [("RCPT TO:<%s>" % r, 250) for r in rcpts] + [("DATA", 354)]):
            code, lines = c.cmd(line)
            if code != want:
                raise Refused("%s: %s" % (line.split(":")[0], " ".join(lines)[:100]))
        c.send(h.dot_stuff(content) + b".\r\n")
        return c.reply()

    def run(self):
        run = self.run_
        try:
            while True:
                if self.conn is None and not self.connect():
                    return
                i = run.take()
                if i is None:
                    return
                try:
                    code, lines = self.send_one(i)
                except Refused as e:
                    with run.lock:
                        run.unacked[i] = "refused %s" % e
                    self.drop()
                    continue
                except (OSError, h.SMTPError) as e:
                    # the connection broke before the reply: not acknowledged
                    with run.lock:
                        run.unacked[i] = "broken: %s" % str(e)[:80]
                    self.drop()
                    continue
                with run.lock:
                    if code == 250:
                        run.acked[i] = h.queued_id(lines)
                    else:
                        run.unacked[i] = "%d %s" % (code, " ".join(lines)[:100])
                if code != 250:
                    self.drop()
                    continue
                self.left_on_conn -= 1
                if self.left_on_conn <= 0:
                    try:
                        self.conn.cmd("QUIT")
                    except (OSError, h.SMTPError):
                        pass
                    self.drop()
        except Exception as e:  # a bug of the test itself: report it, never hang
            with run.lock:
                run.client_errors.append("%s: %r" % (self.name, e))
        finally:
            self.drop()


# ---------------------------------------------------------------- the tests

def asan_runtime(binary):
    """The ASan runtime the binary is linked with (to come first in LD_PRELOAD)."""
    try:
        out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"libasan\.so\S*\s+=>\s+(\S+)", out)
    return m.group(1) if m else None


class CrashTruthCase(h.MailportTestCase):
    def start_mp(self, spool, port, extra=None, timeout=RESTART_TIMEOUT, wait=True):
        mp = self.new_mailport()
        env = {"SMTPD_PORTS": str(port), "SMTPD_SPOOL": spool, "SMTPD_SPOOL_MIN_FREE": "0",
               "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "1000"}
        env.update(extra or {})
        mp.start(env, wait=False)
        mp.spool = spool
        if wait:
            mp.wait_ready(timeout=timeout)
        return mp

    def recover_and_stop(self, spool, port):
        """Start once more over the spool (recovery), wait for /readyz, stop
        cleanly; returns the /messages total the recovered server lists."""
        mp = self.start_mp(spool, port)
        st, _, body = mp.http_get("/messages?limit=1", timeout=30)
        self.assertEqual(st, 200, body[:300])
        total = json.loads(body)["total"]
        self.assertEqual(mp.stop(timeout=60), 0, mp.stderr()[-4000:])
        rep = mp.sanitizer_report()
        self.assertIsNone(rep, rep and rep[-6000:])
        return total


class TestCrashTruth(CrashTruthCase):
    def test_kill9_under_load(self):
        log("seed %d (MAILPORT_CRASH_SEED=%d reproduces the messages and kill moments), "
            "%d messages, %d clients, %d kills, budget %.0f s"
            % (SEED, SEED, MESSAGES, CLIENTS, KILLS, SEND_BUDGET))
        t0 = time.monotonic()
        first = self.new_mailport()
        spool = first.spool
        port = h.free_port()
        mp = self.start_mp(spool, port)
        run = Run(MESSAGES, t0 + SEND_BUDGET)
        run.port = port

        # Kill k fires when the clients have taken threshold_k messages, or at the
        # same fraction of the time budget if the rate is lower than hoped, then
        # after a random extra delay: the moments land all over the run. About
        # one kill in five is "early": it hits the restart before it, a random
        # moment after the spawn, before /readyz (start-up recovery, replay).
        krng = random.Random(SEED)
        lo, hi = max(1, MESSAGES // 20), max(2, MESSAGES * 19 // 20)
        thresholds = sorted(krng.randrange(lo, hi) for _ in range(KILLS))
        delays = [krng.uniform(0.0, 0.25) for _ in range(KILLS)]
        early = [k > 0 and krng.random() < 0.2 for k in range(KILLS)]
        early_delays = [krng.uniform(0.0, 0.15) for _ in range(KILLS)]  # ready takes ~0.15 s here
        log("kill thresholds %s, extra delays %s, early kills (delay after the spawn) %s"
            % (thresholds, ["%.3f" % d for d in delays],
               {k: "%.3f" % early_delays[k] for k in range(KILLS) if early[k]}))

        clients = [Client(run, k) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        kills = []
        died = None
        ready = True
        try:
            for k, thr in enumerate(thresholds):
                if early[k]:
                    time.sleep(early_delays[k])
                else:
                    if not ready:
                        mp.wait_ready(timeout=RESTART_TIMEOUT)
                    t_k = t0 + SEND_BUDGET * thr / MESSAGES
                    while (run.handed_out() < thr and time.monotonic() < t_k
                           and time.monotonic() < run.deadline):
                        if not mp.alive():
                            break
                        time.sleep(0.005)
                    time.sleep(delays[k])
                if not mp.alive():
                    died = mp
                    break
                with run.lock:
                    at = (run.next_index, len(run.acked))
                mp.kill9()
                kills.append((round(time.monotonic() - t0, 2), at[0], at[1],
                               "early" if early[k] else "load"))
                mp = self.start_mp(spool, port, wait=False)
                ready = False
            if died is None:
                mp.wait_ready(timeout=RESTART_TIMEOUT)
            while not died and any(c.is_alive() for c in clients):
                if time.monotonic() > run.deadline + REPLY_TIMEOUT + 10:
                    break
                if not mp.alive():
                    died = mp
                    break
                time.sleep(0.05)
        finally:
            run.stop.set()
            if died is not None or any(c.is_alive() for c in clients):
                for c in clients:
                    c.abort()
            for c in clients:
                c.join(max(0.1, run.deadline + REPLY_TIMEOUT + 20 - time.monotonic()))
        t_send = time.monotonic() - t0
        if died is not None:
            log("mailport died without being killed (exit %s) after %d kill(s), %.1f s "
                "into the run; its stderr:\n%s" % (died.proc.returncode, len(kills), t_send,
                                                   died.stderr()[-6000:]))
        self.assertIsNone(died, "seed %d: mailport died without being killed (exit %s)"
                          % (SEED, died and died.proc.returncode))
        self.assertEqual([c.name for c in clients if c.is_alive()], [], "clients still running")
        self.assertEqual(run.client_errors, [], "the test's own clients failed")
        log("kills (seconds, messages taken, acknowledged, kind): %s" % kills)
        self.assertEqual(len(kills), KILLS, "not every kill happened")
        done = len(run.acked) + len(run.unacked)
        log("sent %d of %d messages in %.1f s (%.0f msg/s under this build): %d acknowledged, "
            "%d not (%d connects, %d refused attempts)"
            % (done, MESSAGES, t_send, done / max(t_send, 0.001), len(run.acked),
               len(run.unacked), run.connects, run.refused))
        if done < MESSAGES:
            log("WARNING: only %d of %d messages within the %.0f s budget; "
                "MAILPORT_CRASH_MESSAGES lowers the count" % (done, MESSAGES, SEND_BUDGET))
        self.assertGreater(len(run.acked), done // 2, "most messages should get their 250")
        why = {}
        for v in run.unacked.values():
            key = v.split(":")[0][:40]
            why[key] = why.get(key, 0) + 1
        log("not acknowledged, by reason: %s" % why)
        # Replies other than 250 are only expected for connections that broke.
        odd = {i: v for i, v in run.unacked.items() if not v.startswith("broken")}
        self.assertEqual(len(odd), 0, "seed %d: replies other than 250 while mailport was up: %s"
                         % (SEED, sorted(odd.items())[:20]))
        self.assertNotIn(None, run.acked.values(), "a 250 without 'queued as <id>'")

        # A clean stop, then recovery, then the disk.
        self.assertEqual(mp.stop(timeout=60), 0, mp.stderr()[-4000:])
        listed = self.recover_and_stop(spool, port)
        t_audit = time.monotonic()
        audit = SpoolAudit(spool, run.expected).run()
        problems = audit.problems
        for i, qid in sorted(run.acked.items()):
            where = audit.by_index.get(i, [])
            if len(where) != 1:
                problems.append("acknowledged message %d (queued as %s) is stored %d times: %s"
                                % (i, qid, len(where), where))
            elif where[0][1] != qid:
                problems.append("acknowledged message %d: queued as %s but stored as %s/%s"
                                % (i, qid, where[0][0], where[0][1]))
        for i in run.unacked:
            where = audit.by_index.get(i, [])
            if len(where) > 1:
                problems.append("unacknowledged message %d is stored %d times: %s"
                                % (i, len(where), where))
        stored_unacked = sum(1 for i in run.unacked if i in audit.by_index)
        log("spool: %d files in new/+cur/ (%d acknowledged, %d unacknowledged but complete), "
            "/messages listed %d; %d leftover files in tmp/ (%d with an envelope in meta/); "
            "audit %.1f s; total %.1f s"
            % (audit.files, len(run.acked), stored_unacked, listed, audit.tmp_files,
               audit.tmp_envelopes,
               time.monotonic() - t_audit, time.monotonic() - t0))
        if listed != audit.files:
            problems.append("/messages lists %d messages, new/+cur/ hold %d" % (listed, audit.files))
        if os.environ.get("MAILPORT_CRASH_KEEP") == "1":
            log("spool kept in %s" % spool)
            first.tmp = "/nonexistent-kept"  # cleanup() must not remove it
        if problems:
            self.fail("seed %d: %d problem(s):\n  %s" % (SEED, len(problems),
                                                           "\n  ".join(problems[:40])))


class TestFailedSync(CrashTruthCase):
    BATCH = 20

    def setUp(self):
        super().setUp()
        self.shim = h.fsync_fault_lib()
        if self.shim is None:
            self.skipTest("the fsync fault library is not built (MAILPORT_FSYNC_FAULT_LIB)")

    def open_in_data(self, port, i):
        """A connection of message i, its body sent, all but the final dot."""
        c = h.RawSMTP("127.0.0.1", port, timeout=REPLY_TIMEOUT)
        self.addCleanup(c.close)
        mail_from, rcpts = self.envelope(i)
        c.expect("EHLO batch%d.crash.test" % i, 250)
        c.expect("MAIL FROM:<%s>" % mail_from, 250)
        for r in rcpts:
            c.expect("RCPT TO:<%s>" % r, 250)
        c.expect("DATA", 354)
        c.send(h.dot_stuff(self.content(i)))
        return c

    def envelope(self, i):
        return "sync%d-%d@x.example" % (SEED, i), ["r%d@y.example" % i]

    def content(self, i):
        tok = token_of(i).encode()
        body = b"".join(b"%s line %03d of the batch message\r\n" % (tok, n) for n in range(40))
        return (b"Subject: crash-truth %s\r\n\r\n%s first body line\r\n.leading dot\r\n%s"
                % (tok, tok, body))

    def spool_tokens(self, spool, sub):
        """{name: token or None} of a spool directory (meta/ by its mail_from)."""
        out = {}
        for name in list_dir(spool, sub):
            data = read_file(spool, sub, name)
            m = re.search(rb"sync%d-(\d+)@" % SEED if sub == "meta"
                          else rb"Subject: crash-truth T%d-(\d+)" % SEED, data)
            out[name] = int(m.group(1)) if m else None
        return out

    def test_failed_sync_batch(self):
        log("seed %d" % SEED)
        mp = self.new_mailport()
        spool = os.path.realpath(mp.spool)
        os.makedirs(spool, exist_ok=True)
        port = h.free_port()
        trigger = os.path.join(mp.tmp, "failsync.trigger")
        flog = os.path.join(mp.tmp, "failsync.log")
        asan = asan_runtime(self.bin)
        opts = os.environ.get("ASAN_OPTIONS", "")
        env = {"SMTPD_PORTS": str(port), "SMTPD_SPOOL": spool, "SMTPD_SPOOL_MIN_FREE": "0",
               "LD_PRELOAD": "%s:%s" % (asan, self.shim) if asan else self.shim,
               "MAILPORT_FAULT_FSYNC_TRIGGER": trigger, "MAILPORT_FAULT_FSYNC_PATH": spool,
               "MAILPORT_FAULT_FSYNC_COUNT": "1", "MAILPORT_FAULT_FSYNC_LOG": flog}
        if not asan:  # a build without ASan, or ldd did not say: let ASan not object
            env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"
        mp.start(env, wait=False)
        mp.wait_ready(timeout=RESTART_TIMEOUT)
        mp.spool = spool

        # All 20 bodies in, then the trigger, then the 20 final dots at once.
        conns = [self.open_in_data(port, i) for i in range(self.BATCH)]
        time.sleep(0.3)  # let the server take in every body before the trigger
        with open(trigger, "w"):
            pass
        for c in conns:
            c.send(b".\r\n")
        replies = {}
        for i, c in enumerate(conns):
            try:
                replies[i] = c.reply()
            except (OSError, h.SMTPError) as e:
                replies[i] = (None, [str(e)])
        for c in conns:
            c.close()
        log("replies: %s" % {i: r[1][-1][:60] for i, r in replies.items()})
        try:
            with open(flog) as f:
                failed = [l.strip() for l in f if l.strip().endswith(" EIO")]
        except FileNotFoundError:
            failed = []
        log("failed syncs: %s" % failed)
        self.assertFalse(os.path.exists(trigger), "no sync of the spool after the trigger")
        self.assertTrue(failed, "the shim failed no sync")
        acked = {i: h.queued_id(r[1]) for i, r in replies.items() if r[0] == 250}
        refused = [i for i, r in replies.items() if r[0] != 250]
        for i in refused:
            code, lines = replies[i]
            self.assertEqual(code, 451, (i, lines))
            self.assertTrue(lines[-1].startswith("451 4.3.0"), (i, lines))
        self.assertTrue(refused, "a failed sync answered no message 451: %s" % replies)
        self.assertNotIn(None, acked.values(), replies)

        # mailport goes on: the next message is stored; its log names the error.
        c = h.RawSMTP("127.0.0.1", port, timeout=REPLY_TIMEOUT)
        self.addCleanup(c.close)
        after = self.BATCH
        mail_from, rcpts = self.envelope(after)
        r = h.send_message_raw(c, mail_from, rcpts, h.dot_stuff(self.content(after)),
                               ehlo="after.crash.test")
        c.close()
        self.assertEqual(r[0], 250, r)
        acked[after] = h.queued_id(r[1])
        err = mp.stderr()
        self.assertTrue("Input/output error" in err or "EIO" in err,
                        "the log does not name the error:\n%s" % err[-3000:])

        # While it runs: nothing answered 451 in new/ or cur/.
        for sub in ("new", "cur"):
            visible = self.spool_tokens(spool, sub)
            for i in refused:
                self.assertNotIn(i, visible.values(), "message %d answered 451 is in %s/" % (i, sub))

        # Restart without the shim; then the disk.
        self.assertEqual(mp.stop(timeout=30), 0, mp.stderr()[-4000:])
        self.recover_and_stop(spool, port)
        stored = {}
        for sub in ("new", "cur"):
            for name, i in self.spool_tokens(spool, sub).items():
                self.assertIsNotNone(i, "%s/%s is not a message of this test" % (sub, name))
                stored.setdefault(i, []).append((sub, name))
        metas = self.spool_tokens(spool, "meta")
        for i, qid in acked.items():
            self.assertEqual(len(stored.get(i, [])), 1, "message %d (250, queued as %s) stored %r"
                             % (i, qid, stored.get(i)))
            sub, name = stored[i][0]
            self.assertEqual(name, qid)
            _, rest = split_trace(read_file(spool, sub, name))
            self.assertEqual(rest, stored_form(self.content(i)), "message %d not byte-exact" % i)
            meta = json.loads(read_file(spool, "meta", name + ".json"))
            mail_from, rcpts = self.envelope(i)
            self.assertEqual((meta["id"], meta["mail_from"], meta["rcpt_to"], meta["size"]),
                             (name, mail_from, rcpts, len(self.content(i))))
        for i in refused:
            self.assertNotIn(i, stored, "message %d answered 451 is stored: %r" % (i, stored.get(i)))
            self.assertNotIn(i, metas.values(), "message %d answered 451 has an envelope" % i)
        self.assertEqual(sorted(stored), sorted(acked))


if __name__ == "__main__":
    h.main(timeout=SCRIPT_TIMEOUT)
