#!/usr/bin/python3
"""latency.py: end-of-data-to-250 latency at a fixed offered load (issue 14).

Starts mailport (default SMTPD_DELIVER=maildir on a fresh spool under
--spool-parent: every 250 after the message is durable) and drives it with an
open-loop load generator: --connections persistent SMTP sessions (asyncio,
one process), message k scheduled at T0 + k / --rate and sent on session
k mod N, whether or not earlier messages were answered (a session busy with an
earlier message sends late; that lateness is reported, never hidden). Each
message: MAIL, RCPT, DATA pipelined when the server offers PIPELINING, the
354, then the content and the final "\\r\\n.\\r\\n" in one write; latency is from
just before that write to the 250 read (time.perf_counter). Messages are
--size bytes of printable lines (like smtp-source -l).

Prints p50/p90/p99/p99.9/max of end-of-data -> 250 over the messages
scheduled after --warmup, the achieved rate (250s per second over the
measured window), the server's CPU per message, and how well the generator
kept up: send lag (actual start of a message's MAIL minus its scheduled
time) p50/p99/max, over all messages and over those whose session was free
when they fell due (the generator's own lateness), and the event loop's own
oversleep (a 10 ms ticker).
Also scheduled -> 250 (latency including any lag: the figure a client that
could not wait would see). PASS when p99 < --target-ms (10 ms) and the
achieved rate is within 2 % of the offered one; the generator's lag is
reported with a warning when its p99 exceeds --max-lag-ms, as then the
figures say more about the client than about the server. The generator runs
at nice -5 (--client-nice) once mailport has started, so that on a shared
machine less of its own scheduling delay lands in the figures.

Loopback only; bounded: --seconds + --warmup + 60 s in all, 10 s per reply.
Exit status 0 on PASS, 1 on FAIL, 2 when it could not run.
"""

import argparse
import asyncio
import datetime
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (binary_id, free_port, machine_state, run_main,  # noqa: E402,F401
                      spawn_mailport, stop_mailport)

HERE = os.path.dirname(os.path.abspath(__file__))
CLEANUP = []        # run at exit, last first
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    i = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def body_for(size):
    """size bytes (CRLF counted) of printable lines, no line starting with '.'."""
    line = (b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"
            b"abcdefghijkl\r\n")                      # 78 + CRLF
    out = bytearray()
    while len(out) + len(line) <= size:
        out += line
    rest = size - len(out)
    if rest >= 2:
        out += b"y" * (rest - 2) + b"\r\n"
    return bytes(out)


# ---------------------------------------------------------------- server

def start_mailport(binary, spool, port, http_port, deliver, extra_env, log):
    settings = {
        "SMTPD_HOSTS": "127.0.0.1",
        "SMTPD_PORTS": str(port),
        "SMTPD_HTTP": f"127.0.0.1:{http_port}",
        "SMTPD_HOSTNAME": "bench.test",
        "SMTPD_DELIVER": deliver,
        "SMTPD_SPOOL": spool,
        "SMTPD_MAX_CONNECTIONS": "2000",
        "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "2000",
    }
    return spawn_mailport(binary, port, settings, log, extra_env)


# ---------------------------------------------------------------- client

async def reply(reader, timeout=10.0):
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    return int(lines[-1][:3]), b"".join(lines)


class Stats:
    def __init__(self):
        self.records = []         # (k, t_sched, t_start, t_eod, t_250, session_was_busy)
        self.errors = []
        self.loop_oversleep = []


async def session(c, n_conn, port, rate, t0, t_stop, body, stats):
    perf = time.perf_counter
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        code, _ = await reply(r)
        if code != 220:
            raise RuntimeError(f"greeting {code}")
        w.write(f"EHLO lat{c}.bench.test\r\n".encode())
        code, text = await reply(r)
        if code != 250:
            raise RuntimeError(f"EHLO {code}")
        pipelining = b"PIPELINING" in text.upper()
    except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
        stats.errors.append(f"session {c}: {type(e).__name__}: {e}")
        return
    j = 0
    prev_250 = 0.0
    try:
        while True:
            k = j * n_conn + c
            j += 1
            t_sched = t0 + k / rate
            if t_sched >= t_stop:
                break
            now = perf()
            if t_sched > now:
                await asyncio.sleep(t_sched - now)
            t_start = perf()
            head = f"MAIL FROM:<lat@bench.test>\r\nRCPT TO:<rcpt{k}@bench.test>\r\nDATA\r\n".encode()
            if pipelining:
                w.write(head)
                for want in (250, 250, 354):
                    code, text = await reply(r)
                    if code != want:
                        raise RuntimeError(f"message {k}: {text[:80]!r}")
            else:
                for cmd, want in zip(head.split(b"\r\n")[:3], (250, 250, 354)):
                    w.write(cmd + b"\r\n")
                    code, text = await reply(r)
                    if code != want:
                        raise RuntimeError(f"message {k}: {text[:80]!r}")
            data = (f"Subject: latency {k}\r\nMessage-ID: <lat-{k}@bench.test>\r\n\r\n".encode()
                    + body + b".\r\n")
            t_eod = perf()
            w.write(data)
            code, text = await reply(r)
            t_250 = perf()
            if code != 250:
                raise RuntimeError(f"message {k} end of data: {text[:80]!r}")
            # Was this session still busy with the previous message when this
            # one was due? Then its lateness is the server's, not the generator's.
            stats.records.append((k, t_sched, t_start, t_eod, t_250, prev_250 > t_sched))
            prev_250 = t_250
        w.write(b"QUIT\r\n")
        await asyncio.wait_for(reply(r, 5), 5)
    except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
        stats.errors.append(f"session {c}: {type(e).__name__}: {e}")
    finally:
        w.close()


async def ticker(t_stop, stats, period=0.01):
    perf = time.perf_counter
    while perf() < t_stop:
        t = perf()
        await asyncio.sleep(period)
        stats.loop_oversleep.append(perf() - t - period)


async def run(port, rate, n_conn, total_s, body, stats, lead=0.5):
    t0 = time.perf_counter() + lead            # time for the sessions to say EHLO
    t_stop = t0 + total_s
    tasks = [asyncio.create_task(session(c, n_conn, port, rate, t0, t_stop, body, stats))
             for c in range(n_conn)]
    tasks.append(asyncio.create_task(ticker(t_stop, stats)))
    await asyncio.gather(*tasks)
    return t0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailport", default=os.path.join(ROOT, "build-bench", "mailport"))
    ap.add_argument("--rate", type=float, default=1000.0, help="offered messages per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds at the same rate, not counted")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024,
                    help="message body bytes (CRLF counted; plus a 2-line header, as smtp-source -l)")
    ap.add_argument("--deliver", default="maildir", help="SMTPD_DELIVER (maildir = durable)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for mailport (e.g. a journal setting)")
    ap.add_argument("--target-ms", type=float, default=10.0, help="PASS when p99 is under this")
    ap.add_argument("--max-lag-ms", type=float, default=2.0,
                    help="warn when the generator's send lag p99 exceeds this")
    ap.add_argument("--client-nice", type=int, default=-5,
                    help="nice increment for the generator once mailport has started (default -5, "
                         "needs root, ignored otherwise; 0 to leave it): on a shared machine, less "
                         "of the generator's own scheduling delay in the figures")
    ap.add_argument("--spool-parent", default="/var/tmp")
    ap.add_argument("--json", help="default bench/results/latency-<stamp>.json")
    a = ap.parse_args()

    if not os.access(a.mailport, os.X_OK):
        print(f"latency: no mailport binary at {a.mailport}", file=sys.stderr)
        return 2
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    if lim[0] < a.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(lim[1], a.connections + 1000), lim[1]))
    work = tempfile.mkdtemp(prefix="mailport-latency-", dir=a.spool_parent)
    spool = os.path.join(work, "spool")
    logpath = os.path.join(work, "mailport.log")
    CLEANUP.append(lambda: shutil.rmtree(work, ignore_errors=True))
    log = open(logpath, "wb")
    port, http_port = free_port(), free_port()
    proc, ok = start_mailport(a.mailport, spool, port, http_port, a.deliver, a.env, log)
    CLEANUP.append(lambda: stop_mailport(proc))
    if not ok:
        stop_mailport(proc)
        log.close()
        print(f"latency: mailport did not start:\n{open(logpath, errors='replace').read()[-2000:]}",
              file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 2

    nice_applied = 0
    if a.client_nice:
        try:
            os.nice(a.client_nice)          # mailport keeps the nice value it started with
            nice_applied = a.client_nice
        except OSError:
            print(f"latency: cannot change nice by {a.client_nice} (not root?): left at 0", file=sys.stderr)
    body = body_for(a.size)
    stats = Stats()
    machine_before = machine_state()
    total_s = a.warmup + a.seconds
    cpu0 = proc_cpu_s(proc.pid)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    timed_out = False
    t0 = None
    try:
        t0 = asyncio.run(asyncio.wait_for(run(port, a.rate, a.connections, total_s, body, stats),
                                          total_s + 60))
    except asyncio.TimeoutError:
        timed_out = True
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1 = proc_cpu_s(proc.pid)
    machine_after = machine_state()
    alive = proc.poll() is None
    stop_mailport(proc)
    log.close()
    try:
        stored = len(os.listdir(os.path.join(spool, "new"))) if a.deliver == "maildir" else None
    except OSError:
        stored = None
    shutil.rmtree(work, ignore_errors=True)

    if t0 is None:
        t0 = min((rec[1] for rec in stats.records), default=0)
    w_start = t0 + a.warmup
    w_end = t0 + total_s
    meas = [rec for rec in stats.records if rec[1] >= w_start]
    offered = int(a.rate * a.seconds)
    lat = sorted((rec[4] - rec[3]) * 1e3 for rec in meas)
    sched = sorted((rec[4] - rec[1]) * 1e3 for rec in meas)
    lag = sorted((rec[2] - rec[1]) * 1e3 for rec in meas)
    lag_free = sorted((rec[2] - rec[1]) * 1e3 for rec in meas if not rec[5])
    n_busy = sum(1 for rec in meas if rec[5])
    over = sorted(x * 1e3 for x in stats.loop_oversleep)
    last = max((rec[4] for rec in meas), default=w_end)
    window = max(w_end, last) - w_start
    achieved = len(meas) / window if window > 0 else 0.0
    cpu_us = (cpu1 - cpu0) * 1e6 / len(stats.records) if stats.records else None
    client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)

    def summary(v):
        return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
                "p99.9": pct(v, 99.9), "max": v[-1] if v else None}

    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mailport": a.mailport,
        "mailport_binary": binary_id(a.mailport),
        "deliver": a.deliver,
        "extra_env": a.env,
        "rate_offered": a.rate,
        "connections": a.connections,
        "client_nice": nice_applied,
        "size": a.size,
        "warmup_s": a.warmup,
        "seconds": a.seconds,
        "messages_sent_total": len(stats.records),
        "messages_measured": len(meas),
        "messages_offered_in_window": offered,
        "stored_files": stored,
        "rate_achieved": round(achieved, 1),
        "eod_to_250_ms": summary(lat),
        "scheduled_to_250_ms": summary(sched),
        "send_lag_ms": summary(lag),
        "send_lag_session_free_ms": summary(lag_free),
        "messages_due_while_session_busy": n_busy,
        "loop_oversleep_ms": summary(over),
        "server_cpu_us_per_msg": round(cpu_us, 1) if cpu_us is not None else None,
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_share": round(client_cpu / total_s, 3),
        "errors": stats.errors[:20],
        "timed_out": timed_out,
        "mailport_alive_at_end": alive,
        "machine_before": machine_before,
        "machine_after": machine_after,
    }
    rate_ok = achieved >= 0.98 * a.rate and len(meas) >= 0.98 * offered
    p99 = pct(lat, 99)
    lat_ok = p99 is not None and p99 < a.target_ms
    gen_ok = (pct(lag_free, 99) or 0) <= a.max_lag_ms
    verdict = "PASS" if lat_ok and rate_ok and not stats.errors and not timed_out and alive else "FAIL"
    res.update({"latency_target_met": lat_ok, "rate_ok": rate_ok, "generator_kept_up": gen_ok,
                "verdict": verdict})

    def f(v):
        return "-" if v is None else f"{v:.2f}"

    print(f"mailport {a.deliver}, offered {a.rate:g} msg/s on {a.connections} sessions for "
          f"{a.seconds:g} s (+{a.warmup:g} s warm-up), {a.size}-byte messages, generator at nice "
          f"{nice_applied}; {binary_id(a.mailport)}")
    print(f"measured {len(meas):,} of {offered:,} offered; achieved {achieved:,.1f} msg/s; "
          f"{len(stats.records):,} sent in all, {stored if stored is not None else '-'} stored; "
          f"server CPU {f(cpu_us)} us/msg; client CPU {client_cpu:.1f} s "
          f"({100 * client_cpu / total_s:.0f} % of a core)")
    for name, v in (("end of data -> 250", lat), ("scheduled -> 250", sched),
                    ("send lag, all", lag), ("send lag, session was free", lag_free),
                    ("loop oversleep (10 ms tick)", over)):
        print(f"{name:28s} ms: p50 {f(pct(v, 50))}  p90 {f(pct(v, 90))}  p99 {f(pct(v, 99))}  "
              f"p99.9 {f(pct(v, 99.9))}  max {f(v[-1] if v else None)}")
    print(f"{n_busy:,} of {len(meas):,} messages fell due while their session still waited for "
          f"the previous 250 (the server's lateness, in 'send lag, all' and 'scheduled -> 250')")
    print(f"machine: before {machine_before}, after {machine_after}")
    for e in stats.errors[:5]:
        print(f"  error: {e}")
    if not gen_ok:
        print(f"WARNING: the generator lagged (send lag p99 {f(pct(lag_free, 99))} ms > {a.max_lag_ms:g} ms "
              "on sessions that were free): the client, not only the server, shapes these figures")
    why = []
    if not lat_ok:
        why.append(f"p99 {f(p99)} ms >= {a.target_ms:g} ms")
    if not rate_ok:
        why.append(f"achieved {achieved:,.0f} of {a.rate:g} msg/s")
    if stats.errors:
        why.append(f"{len(stats.errors)} session errors")
    if timed_out:
        why.append("timed out")
    if not alive:
        why.append("mailport died")
    print(f"{verdict}: p99 end of data -> 250 under {a.target_ms:g} ms at {a.rate:g} msg/s"
          + (f" ({'; '.join(why)})" if why else ""))

    out = a.json or os.path.join(HERE, "results",
                                 f"latency-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"results: {out}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    run_main(main, CLEANUP)
