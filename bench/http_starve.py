#!/usr/bin/env python3
"""Health under HTTP stress (issue 12): a Release mailport over a spool of
N pre-made messages (default 300,000 in cur/, each with its meta/ envelope),
while
  - SLOW clients (default 300) hold the side port open, each having sent only
    "GET /livez HTTP/1.1\\r\\n" and replaced as soon as the server closes it,
  - 20 clients poll GET /messages?limit=50 back to back,
sample for DURATION seconds (default 30):
  - GET /livez and GET /readyz on new connections, every 50 ms each,
  - SMTP NOOP on one open session, every 50 ms,
and print p50/p99/max of each, and of the pollers' /messages, against the
issue's targets (health p99 < 100 ms, /messages p99 < 50 ms, NOOP p99 < 10 ms).
A baseline phase of the same samples with no load runs first, for the ratio.

  bench/http_starve.py [--messages N] [--slow N] [--duration S] [--bin PATH] [--json FILE]

Loopback only; every loop is bounded by the duration. Not a test: it prints."""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_spool(spool, n):
    """n messages in cur/ and their envelopes in meta/, named like mailport's
    ids (<sec>.M<usec>P<pid>Q<n>.<host>), oldest first."""
    for d in ("tmp", "new", "cur", "meta", "failed"):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    t0 = 1_700_000_000
    body = ("Return-Path: <a@x.example>\nReceived: from bench\nSubject: bench %d\n\n"
            "hello\n")
    for i in range(n):
        mid = "%d.M%06dP1Q%d.bench" % (t0 + i // 1000, i % 1000, i)
        with open(os.path.join(spool, "cur", mid), "w") as f:
            f.write(body % i)
        env = {"id": mid, "mail_from": "a@x.example", "rcpt_to": ["b@y.example"],
               "client": {"address": "127.0.0.1", "port": 40000}, "helo": "bench",
               "local": {"address": "127.0.0.1", "port": 2525}, "auth_user": None,
               "tls": None, "proxy": None, "size": 40,
               "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i // 1000)),
               "delivery": {"state": "delivered", "attempts": 1}}
        with open(os.path.join(spool, "meta", mid + ".json"), "w") as f:
            json.dump(env, f)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def summary(xs):
    return {"n": len(xs), "p50_ms": pct(xs, 50) * 1000, "p99_ms": pct(xs, 99) * 1000,
            "max_ms": max(xs) * 1000 if xs else float("nan")}


def http_get(port, path, timeout=5):
    t = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            r.read()
            ok = r.status == 200
    except Exception:
        ok = False
    return time.monotonic() - t, ok


class Sampler(threading.Thread):
    def __init__(self, fn, stop, every=0.05):
        super().__init__(daemon=True)
        self.fn, self.stop, self.every = fn, stop, every
        self.times, self.failures = [], 0

    def run(self):
        while not self.stop.is_set():
            dt, ok = self.fn()
            if ok:
                self.times.append(dt)
            else:
                self.failures += 1
            self.stop.wait(self.every)


def noop_sampler(smtp_port):
    s = socket.create_connection(("127.0.0.1", smtp_port), timeout=5)
    f = s.makefile("rb")
    f.readline()

    def one():
        t = time.monotonic()
        try:
            s.sendall(b"NOOP\r\n")
            ok = f.readline().startswith(b"250")
        except OSError:
            ok = False
        return time.monotonic() - t, ok
    return one


def slow_clients(port, n, stop, counter):
    """n connections that each send a probe's request line and stop; a closed
    one is replaced at once."""
    socks = []

    def new():
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /livez HTTP/1.1\r\n")
            c.setblocking(False)
            counter[0] += 1
            return c
        except OSError:
            return None
    for _ in range(n):
        socks.append(new())
    while not stop.is_set():
        for i, c in enumerate(socks):
            if c is None:
                socks[i] = new()
                continue
            try:
                if c.recv(65536) == b"":
                    raise OSError
            except BlockingIOError:
                continue
            except OSError:
                pass
            c.close()
            socks[i] = new()
        stop.wait(0.01)
    for c in socks:
        if c is not None:
            c.close()


def pollers(port, n, stop):
    results = []

    def loop():
        while not stop.is_set():
            dt, ok = http_get(port, "/messages?limit=50")
            results.append((dt, ok))
    ts = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
    return ts, results


def phase(http_port, smtp_port, duration, load, nslow):
    stop = threading.Event()
    extra = []
    counter = [0]
    poll_results = []
    if load:
        t = threading.Thread(target=slow_clients, args=(http_port, nslow, stop, counter),
                             daemon=True)
        t.start()
        extra.append(t)
        time.sleep(1.0)
        ts, poll_results = pollers(http_port, 20, stop)
        extra += ts
    samplers = {"livez": Sampler(lambda: http_get(http_port, "/livez"), stop),
                "readyz": Sampler(lambda: http_get(http_port, "/readyz"), stop),
                "noop": Sampler(noop_sampler(smtp_port), stop)}
    for s in samplers.values():
        s.start()
    time.sleep(duration)
    stop.set()
    for s in list(samplers.values()) + extra:
        s.join(timeout=10)
    out = {k: dict(summary(s.times), failures=s.failures) for k, s in samplers.items()}
    if load:
        out["messages"] = dict(summary([d for d, ok in poll_results if ok]),
                               failures=sum(1 for _, ok in poll_results if not ok))
        out["slow_connections_opened"] = counter[0]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-bench", "mailport"))
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.access(a.bin, os.X_OK):
        sys.exit("no mailport at %s: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release "
                 "-DBUILD_TESTING=OFF && cmake --build build-bench" % a.bin)
    work = tempfile.mkdtemp(prefix="mailport-starve-", dir="/var/tmp")
    try:
        spool = os.path.join(work, "spool")
        t = time.monotonic()
        make_spool(spool, a.messages)
        print("spool: %d messages in cur/ made in %.1f s" % (a.messages, time.monotonic() - t))
        hp, sp = free_port(), free_port()
        env = dict(os.environ, SMTPD_SPOOL=spool, SMTPD_HTTP="127.0.0.1:%d" % hp,
                   SMTPD_PORTS=str(sp), SMTPD_LOG_LEVEL="warn")
        t = time.monotonic()
        proc = subprocess.Popen([a.bin], env=env, stderr=open(os.path.join(work, "err"), "w"))
        try:
            deadline = time.monotonic() + 300
            while http_get(hp, "/readyz", timeout=1)[1] is False:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("mailport did not become ready: " +
                             open(os.path.join(work, "err")).read()[-2000:])
                time.sleep(0.2)
            print("ready after %.1f s (index built at start-up)" % (time.monotonic() - t))
            base = phase(hp, sp, min(10.0, a.duration), False, 0)
            loaded = phase(hp, sp, a.duration, True, a.slow)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    targets = {"livez": 100, "readyz": 100, "messages": 50, "noop": 10}
    print("\n%-9s %22s %34s %8s %6s" % ("", "idle p50/p99/max ms", "loaded p50/p99/max ms (n, fail)",
                                      "target", "ok"))
    for k in ("livez", "readyz", "noop", "messages"):
        b = base.get(k)
        l = loaded[k]
        bs = "%6.2f %6.2f %7.2f" % (b["p50_ms"], b["p99_ms"], b["max_ms"]) if b else "-"
        print("%-9s %22s %20s (%d, %d) %6d ms %6s" % (
            k, bs, "%6.2f %6.2f %7.2f" % (l["p50_ms"], l["p99_ms"], l["max_ms"]), l["n"],
            l["failures"], targets[k], "yes" if l["p99_ms"] < targets[k] and not l["failures"]
            else "NO"))
    print("slow connections opened (incl. replacements): %d" % loaded["slow_connections_opened"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"messages": a.messages, "slow": a.slow, "duration": a.duration,
                       "idle": base, "loaded": loaded}, f, indent=1)


if __name__ == "__main__":
    main()
