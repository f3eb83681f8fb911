#!/usr/bin/python3
"""memory.py: mailport's peak memory while 200 clients each send a 20 MiB message at once (issue 14).

Starts mailport (SMTPD_DELIVER=maildir, a fresh spool in a temp dir under
--spool-parent, SMTPD_MAX_MESSAGE_SIZE large enough, SMTPD_MAX_CONNECTIONS
1000), opens --clients connections, takes each through EHLO, MAIL, RCPT and
DATA, waits until every one has its 354, then has them all stream their
message at once. Each message is distinct: a header naming its number, then a
body of printable lines (some beginning with ".", some a lone ".", so
dot-stuffing is exercised) assembled from a shared pool of 64 KiB segments in
an order drawn from a generator seeded with the message's number, with a line
naming the message and the part before every segment. Messages are streamed
from that generator (the client never holds more than the pool, 2 x 4 MiB).

mailport's memory: VmRSS of /proc/PID/status every 50 ms (the peak of those
samples, and when it happened) and VmHWM at the end (the kernel's high-water
mark of resident memory, read before mailport is stopped).

Check: every stored file in new/, minus mailport's leading Return-Path: line
and Received: trace header (its first line and the continuation lines that
begin with a tab), must equal the message as sent after dot-unstuffing and
with LF line ends, byte for byte; every message stored exactly once.

PASS when every message was stored byte-exact and the peak RSS (the larger of
VmHWM and the sampled peak) is under --target-mib (100 MiB). Loopback only;
bounded by --timeout (600 s) for the whole transfer; refuses to start without
--clients x --size-mib x --disk-factor of free space (+1 GiB) in the spool's
file system. Exit status 0 on PASS, 1 on FAIL, 2 when it could not run.
"""

import argparse
import asyncio
import datetime
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (binary_id, free_port, machine_state, run_main,  # noqa: E402,F401
                      spawn_mailport, stop_mailport)

HERE = os.path.dirname(os.path.abspath(__file__))
CLEANUP = []        # run at exit, last first
ROOT = os.path.dirname(HERE)
MIB = 1 << 20

# ---------------------------------------------------------------- the messages

# Bytes 0..255 -> printable ASCII (space .. ~), for random bytes to become text.
PRINTABLE = bytes(32 + (i % 95) for i in range(256))


class Pool:
    """NSEG segments of about SEG bytes of text lines, each in two forms: as
    stored (LF line ends, no stuffing) and as sent (CRLF, dot-stuffed)."""

    def __init__(self, nseg=64, seg=64 * 1024, seed=14):
        rng = random.Random(seed)
        self.lf, self.wire = [], []
        for _ in range(nseg):
            lines, size = [], 0
            while size < seg:
                r = rng.random()
                if r < 0.005:
                    line = b"."                     # a lone dot: must arrive as ".."
                elif r < 0.01:
                    line = b""                      # an empty line
                else:
                    n = rng.randrange(1, 120) if rng.random() < 0.97 else rng.randrange(120, 998)
                    line = rng.randbytes(n).translate(PRINTABLE)
                    if r < 0.06:
                        line = b"." + line          # a leading dot: sent doubled
                    line = line.rstrip(b" ")       # no trailing blanks (cosmetic)
                lines.append(line)
                size += len(line) + 1
            self.lf.append(b"\n".join(lines) + b"\n")
            self.wire.append(b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines) + b"\r\n")

    def __len__(self):
        return len(self.lf)


def message_pieces(pool, n, total, size):
    """Message n as (stored form, wire form) pieces; the stored form adds up to
    exactly `size` bytes. Lines made here never begin with a dot."""
    head = (f"From: <sender@bench.test>\nTo: <rcpt{n}@bench.test>\n"
            f"Subject: memory test {n} of {total}\nMessage-ID: <mem-{n}@bench.test>\n"
            f"X-Bench-Size: {size}\n\n").encode()
    yield head, head.replace(b"\n", b"\r\n")
    left = size - len(head)
    rng = random.Random(1_000_003 * (n + 1))
    k = 0
    while True:
        i = rng.randrange(len(pool))
        mark = f"-- message {n} part {k} segment {i}\n".encode()
        if len(mark) + len(pool.lf[i]) > left:
            break
        yield mark, mark.replace(b"\n", b"\r\n")
        yield pool.lf[i], pool.wire[i]
        left -= len(mark) + len(pool.lf[i])
        k += 1
    # Fill the rest with lines of 'x' (at most 99 + LF each), ending with LF.
    while left > 0:
        m = min(left, 100)
        line = b"x" * (m - 1) + b"\n"
        yield line, line[:-1] + b"\r\n"
        left -= m


def read_status(pid):
    """{'VmRSS': kib, 'VmHWM': kib, ...} from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Vm") or line.startswith("Rss"):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out


class Sampler(threading.Thread):
    """VmRSS every `period` s: peak and when it happened, relative to t0."""

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.stop_ev = threading.Event()
        self.peak_kib, self.peak_at, self.samples = 0, None, 0
        self.series = []          # (t, kib) every second, for the JSON
        self.t0 = time.monotonic()

    def run(self):
        last = -1.0
        while not self.stop_ev.is_set():
            try:
                rss = read_status(self.pid).get("VmRSS", 0)
            except OSError:
                break
            t = time.monotonic() - self.t0
            self.samples += 1
            if rss > self.peak_kib:
                self.peak_kib, self.peak_at = rss, t
            if t - last >= 1.0:
                self.series.append((round(t, 2), rss))
                last = t
            self.stop_ev.wait(self.period)


def start_mailport(binary, spool, port, http_port, max_size, log, extra_env=()):
    settings = {
        "SMTPD_HOSTS": "127.0.0.1",
        "SMTPD_PORTS": str(port),
        "SMTPD_HTTP": f"127.0.0.1:{http_port}",
        "SMTPD_HOSTNAME": "bench.test",
        "SMTPD_DELIVER": "maildir",
        "SMTPD_SPOOL": spool,
        "SMTPD_MAX_MESSAGE_SIZE": str(max_size),
        "SMTPD_MAX_CONNECTIONS": "1000",
        "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "1000",
    }
    return spawn_mailport(binary, port, settings, log, extra_env)


# ---------------------------------------------------------------- clients

async def reply(reader, timeout):
    """One SMTP reply (all its lines): (code, text)."""
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    return int(lines[-1][:3]), b"".join(lines).decode(errors="replace").strip()


class Client:
    def __init__(self, n):
        self.n = n
        self.state = "new"
        self.error = None
        self.sent = 0
        self.t_eod = self.t_250 = None
        self.final = None


async def run_client(c, port, pool, total, size, ready, go, timeout):
    w = None
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        for cmd, want in ((None, 220), (f"EHLO client{c.n}.bench.test", 250),
                          ("MAIL FROM:<sender@bench.test>", 250),
                          (f"RCPT TO:<rcpt{c.n}@bench.test>", 250), ("DATA", 354)):
            if cmd:
                w.write(cmd.encode() + b"\r\n")
            code, text = await reply(r, timeout)
            if code != want:
                raise RuntimeError(f"{cmd or 'greeting'}: {text}")
        c.state = "ready"
        ready()
        await go.wait()
        c.state = "sending"
        for _, wire in message_pieces(pool, c.n, total, size):
            w.write(wire)
            c.sent += len(wire)
            await w.drain()
        w.write(b".\r\n")
        c.t_eod = time.monotonic()
        await w.drain()
        code, text = await reply(r, timeout)
        c.t_250 = time.monotonic()
        c.final = text
        if code != 250:
            raise RuntimeError(f"end of data: {text}")
        c.state = "done"
        w.write(b"QUIT\r\n")
        try:
            await asyncio.wait_for(reply(r, 5), 5)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
    except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
        c.error = f"{type(e).__name__}: {e}"
        c.state = "failed"
    finally:
        if w is not None:
            w.close()


async def run_all(clients, port, pool, size, timeout, barrier_timeout):
    go = asyncio.Event()
    n_ready = 0
    t_all_ready = None

    def ready():
        nonlocal n_ready, t_all_ready
        n_ready += 1
        if n_ready == len(clients):
            t_all_ready = time.monotonic()
            go.set()

    tasks = [asyncio.create_task(run_client(c, port, pool, len(clients), size, ready, go, timeout))
             for c in clients]
    # Release the senders when all have their 354 or when the barrier times
    # out (then the ones that are ready go; the others are failures anyway).
    try:
        await asyncio.wait_for(go.wait(), barrier_timeout)
    except asyncio.TimeoutError:
        t_all_ready = time.monotonic()
        go.set()
    await asyncio.gather(*tasks)
    return t_all_ready


# ---------------------------------------------------------------- verification

def strip_trace(f):
    """Read past mailport's Return-Path: line and its Received: header (with
    continuation lines); return the first bytes after them, or None."""
    head = f.read(64 * 1024)
    pos = 0
    for name in (b"Return-Path:", b"Received:"):
        if not head.startswith(name, pos):
            return None
        pos = head.index(b"\n", pos) + 1
        if name == b"Received:":
            while head[pos:pos + 1] in (b"\t", b" "):
                pos = head.index(b"\n", pos) + 1
    return head[pos:]


def verify(spool, pool, total, size):
    """{n: 'ok' | why} for every stored file, and the files that matched no message."""
    newdir = os.path.join(spool, "new")
    got, strays = {}, []
    for name in sorted(os.listdir(newdir)):
        path = os.path.join(newdir, name)
        with open(path, "rb") as f:
            first = strip_trace(f)
            if first is None:
                strays.append(f"{name}: no Return-Path/Received trace header first")
                continue
            try:
                i = first.index(b"Message-ID: <mem-") + 17
                n = int(first[i:first.index(b"@", i)])
            except ValueError:
                strays.append(f"{name}: no Message-ID <mem-N@...>")
                continue
            if n in got:
                got[n] = f"stored twice (again as {name})"
                continue
            buf, off, why, seen = first, 0, "ok", 0
            for lf, _ in message_pieces(pool, n, total, size):
                need = len(lf)
                while len(buf) - off < need:
                    more = f.read(max(1 << 20, need))
                    if not more:
                        break
                    buf = buf[off:] + more
                    off = 0
                if buf[off:off + need] != lf:
                    why = f"differs within bytes {seen}..{seen + need} of the message"
                    break
                off += need
                seen += need
            if why == "ok":
                rest = buf[off:] + f.read(1)
                if rest:
                    why = f"{len(rest)}+ bytes more than sent"
            got[n] = why if why == "ok" else f"{name}: {why}"
    return got, strays


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailport", default=os.path.join(ROOT, "build-bench", "mailport"),
                    help="the mailport binary (default build-bench/mailport)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--size-mib", type=float, default=20.0, help="each message, as stored (LF)")
    ap.add_argument("--target-mib", type=float, default=100.0, help="PASS when peak RSS is under this")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole transfer")
    ap.add_argument("--spool-parent", default="/var/tmp")
    ap.add_argument("--disk-factor", type=float, default=2.0,
                    help="free space needed = clients x size x this + 1 GiB (2: room for a journal copy)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for mailport (e.g. a journal setting)")
    ap.add_argument("--keep", action="store_true", help="keep the spool and log")
    ap.add_argument("--json", help="write the figures here (default bench/results/memory-<stamp>.json)")
    a = ap.parse_args()

    if not os.access(a.mailport, os.X_OK):
        print(f"memory: no mailport binary at {a.mailport}", file=sys.stderr)
        return 2
    size = int(a.size_mib * MIB)
    need = int(a.clients * size * a.disk_factor) + (1 << 30)
    free = shutil.disk_usage(a.spool_parent).free
    if free < need:
        print(f"memory: {a.spool_parent} has {free / MIB:,.0f} MiB free, this run needs "
              f"{need / MIB:,.0f} MiB (--clients x --size-mib x --disk-factor + 1 GiB)", file=sys.stderr)
        return 2
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    if lim[0] < a.clients + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(lim[1], a.clients + 1000), lim[1]))

    t_gen = time.monotonic()
    pool = Pool()
    wire_max = max(sum(len(w) for _, w in message_pieces(pool, n, a.clients, size))
                   for n in range(min(a.clients, 3)))
    t_gen = time.monotonic() - t_gen
    max_size = 2 * size + 4 * MIB          # the wire form (CRLF, stuffing) with room to spare

    work = tempfile.mkdtemp(prefix="mailport-memory-", dir=a.spool_parent)
    spool = os.path.join(work, "spool")
    logpath = os.path.join(work, "mailport.log")
    if not a.keep:
        CLEANUP.append(lambda: shutil.rmtree(work, ignore_errors=True))
    log = open(logpath, "wb")
    port, http_port = free_port(), free_port()
    proc, ok = start_mailport(a.mailport, spool, port, http_port, max_size, log, a.env)
    CLEANUP.append(lambda: stop_mailport(proc))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mailport": a.mailport,
        "mailport_binary": binary_id(a.mailport),
        "clients": a.clients,
        "message_bytes_stored": size,
        "message_bytes_wire_approx": wire_max,
        "smtpd_max_message_size": max_size,
        "target_mib": a.target_mib,
        "extra_env": a.env,
        "spool": spool,
    }
    if not ok:
        stop_mailport(proc)
        log.close()
        print(f"memory: mailport did not start; log {logpath}:", file=sys.stderr)
        print(open(logpath, errors="replace").read()[-2000:], file=sys.stderr)
        return 2
    print(f"binary: {binary_id(a.mailport)}")
    print(f"mailport pid {proc.pid} on 127.0.0.1:{port}, spool {spool}; {a.clients} clients x "
          f"{size / MIB:g} MiB ({wire_max:,} bytes on the wire); pool made in {t_gen:.1f} s", flush=True)
    base = read_status(proc.pid)
    sampler = Sampler(proc.pid)
    sampler.start()

    machine_before = machine_state()
    clients = [Client(n) for n in range(a.clients)]
    t0 = time.monotonic()
    timed_out = False
    t_ready = None
    try:
        t_ready = asyncio.run(asyncio.wait_for(
            run_all(clients, port, pool, size, timeout=a.timeout, barrier_timeout=60), a.timeout))
    except asyncio.TimeoutError:
        timed_out = True
    t_end = time.monotonic()
    machine_after = machine_state()
    try:
        status = read_status(proc.pid)
    except OSError:
        status = {}
    sampler.stop_ev.set()
    sampler.join(timeout=5)
    alive = proc.poll() is None
    stop_mailport(proc)
    log.close()

    done = [c for c in clients if c.state == "done"]
    failed = [c for c in clients if c.state != "done"]
    sent_bytes = sum(c.sent for c in clients)
    hwm = status.get("VmHWM")
    peak_kib = max(hwm or 0, sampler.peak_kib)
    lat = sorted(c.t_250 - c.t_eod for c in done)

    t_ver = time.monotonic()
    got, strays = verify(spool, pool, a.clients, size)
    t_ver = time.monotonic() - t_ver
    exact = sum(1 for n, v in got.items() if v == "ok")
    bad = {n: v for n, v in got.items() if v != "ok"}
    missing = [c.n for c in done if c.n not in got]

    byte_exact = (exact == a.clients and not strays and not bad)
    rss_ok = peak_kib < a.target_mib * 1024
    verdict = "PASS" if byte_exact and rss_ok and not timed_out and alive else "FAIL"
    stream_s = t_end - (t_ready or t0)
    result.update({
        "mailport_alive_at_end": alive,
        "timed_out": timed_out,
        "clients_done": len(done),
        "clients_failed": {c.n: c.error or c.state for c in failed},
        "all_ready_after_s": round((t_ready or t0) - t0, 3),
        "stream_s": round(stream_s, 3),
        "sent_bytes": sent_bytes,
        "throughput_mib_s": round(sent_bytes / MIB / stream_s, 1) if stream_s > 0 else None,
        "eod_to_250_s": {"min": round(lat[0], 3), "p50": round(lat[len(lat) // 2], 3),
                         "max": round(lat[-1], 3)} if lat else None,
        "rss_start_kib": base.get("VmRSS"),
        "vmhwm_kib": hwm,
        "vmrss_end_kib": status.get("VmRSS"),
        "vmrss_sampled_peak_kib": sampler.peak_kib,
        "vmrss_sampled_peak_at_s": round(sampler.peak_at, 2) if sampler.peak_at is not None else None,
        "vmrss_samples": sampler.samples,
        "vmrss_series_1s": sampler.series,
        "vmpeak_kib": status.get("VmPeak"),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "stored_files": len(got) + len(strays),
        "stored_byte_exact": exact,
        "stored_bad": bad,
        "stored_strays": strays,
        "accepted_but_missing": missing,
        "verify_s": round(t_ver, 1),
        "client_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_target_met": rss_ok,
        "byte_exact": byte_exact,
        "verdict": verdict,
        "machine_before": machine_before,
        "machine_after": machine_after,
    })

    print(f"clients: {len(done)} of {a.clients} got 250 ({len(failed)} failed); all 354s after "
          f"{result['all_ready_after_s']:.1f} s; streamed {sent_bytes / MIB:,.0f} MiB in {stream_s:.1f} s "
          f"({result['throughput_mib_s']} MiB/s)")
    if lat:
        print(f"end of data -> 250: min {lat[0] * 1e3:,.0f} ms, median {lat[len(lat) // 2] * 1e3:,.0f} ms, "
              f"max {lat[-1] * 1e3:,.0f} ms")
    for c in failed[:5]:
        print(f"  client {c.n}: {c.error or c.state}")
    print(f"mailport RSS: start {base.get('VmRSS', 0) / 1024:,.1f} MiB; VmHWM {(hwm or 0) / 1024:,.1f} MiB; "
          f"sampled VmRSS peak {sampler.peak_kib / 1024:,.1f} MiB at {result['vmrss_sampled_peak_at_s']} s "
          f"({sampler.samples} samples every 50 ms); VmPeak {status.get('VmPeak', 0) / 1024:,.1f} MiB")
    print(f"stored: {len(got) + len(strays)} files, {exact} byte-exact, {len(bad)} different, "
          f"{len(strays)} unrecognized, {len(missing)} accepted but missing (verified in {t_ver:.0f} s)")
    for n, why in list(bad.items())[:5]:
        print(f"  message {n}: {why}")
    for s in strays[:5]:
        print(f"  {s}")
    print(f"machine: before {machine_before}, after {machine_after}")
    print(f"client side: max RSS {result['client_maxrss_kib'] / 1024:,.0f} MiB")
    why = []
    if not rss_ok:
        why.append(f"peak RSS {peak_kib / 1024:,.1f} MiB >= {a.target_mib:g} MiB")
    if not byte_exact:
        why.append("not every message stored byte-exact")
    if timed_out:
        why.append(f"timed out after {a.timeout:.0f} s")
    if not alive:
        why.append("mailport died")
    print(f"{verdict}: peak RSS under {a.target_mib:g} MiB with {a.clients} x {size / MIB:g} MiB at once"
          + (f" ({'; '.join(why)})" if why else ""))

    out = a.json or os.path.join(HERE, "results",
                                 f"memory-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"results: {out}")
    if a.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    run_main(main, CLEANUP)
