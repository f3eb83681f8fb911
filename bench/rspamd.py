#!/usr/bin/python3
"""rspamd.py: what rspamd checks cost mailport, and what a slow rspamd does to
everything else (issue 15).

Part 1, rspamd off vs on. The script starts its own rspamd (Debian's 3.4, in
the foreground, its own LOCAL_CONFDIR/DBDIR/RUNDIR/LOGDIR under a temporary
directory, the normal worker on a free loopback port, stopped by its PID at
the end) and its own dnsmasq as the only DNS rspamd asks (a sender domain with
A, MX, SPF and DMARC records; every other name NXDOMAIN at once, nothing
forwarded). rspamd's local settings follow the project's deployment
(docker/k8s/components/rspamd/local.d: --rspamd-workers 2 normal workers,
milter_headers adding Authentication-Results, no Redis), with the controller,
proxy and fuzzy workers off. Messages (~1 KiB of plain text with From, To,
Date, Message-ID, MIME headers) arrive through a PROXY v1 header from
198.51.100.7 (--client-ip; rspamd skips SPF, RBLs and hostname checks for
loopback clients), so rspamd runs its full rule set: SPF and DMARC pass,
"no action", and mailport applies the Authentication-Results edit.
For each of off and on, mailport SMTPD_DELIVER=maildir on a fresh spool:
  - closed loop: --sessions (20) persistent sessions, each sending its share of
    --messages (40,000) back to back (MAIL/RCPT/DATA pipelined, then content and
    "." in one write): msg/s, end of data -> 250 p50/p90/p99 (the first
    --warmup-messages excluded), CPU per message of mailport and, separately,
    of rspamd (its whole process group) and dnsmasq;
  - open loop: --rate (200) msg/s on --open-sessions (20) sessions for
    --open-seconds (20) after --open-warmup (2), message k due at T0 + k/rate
    on session k mod N: p50/p90/p99/p99.9, achieved rate, the generator's lag.
Then the ratios on/off.

Part 2, rspamd slow: an HTTP stand-in (a thread here) answers every /checkv2
with {"action": "no action"} after --slow-delay (5 s). mailport with
SMTPD_RSPAMD_CONCURRENCY at its default (16) gets --slow-messages (50) messages
at once on as many sessions; meanwhile, every 50 ms: GET /livez on a new
connection to the side port, NOOP on an open SMTP session, EHLO/MAIL/RCPT/RSET
on another, and a new connection's 220. p50/p99/max of each, before and while
the checks wait; PASS when /livez and NOOP p99 stay under --target-ms (50) with
no probe failing. It also reports when each slow message got its reply
(expected: waves of 16 every 5 s) and what it was; run with the default
SMTPD_RSPAMD_TIMEOUT (20 s, counted from the end of data, queue included) and
again with --slow-timeouts' next value (60s).

Every run is bounded in count and time (per reply, per phase); the machine is
shared, so load average, PSI and the CPU used by other processes are recorded
around every phase. Reuses latency.py's helpers (mailport start/stop, replies,
percentiles) and benchlib.py (machine state, binary id). Writes
bench/results/rspamd-<stamp>.json.
Exit status 0 when part 2 passes (part 1 has no target), 1 otherwise, 2 when
it could not run.
"""

import argparse
import asyncio
import datetime
import email.utils
import http.server
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import latency as L  # noqa: E402  (free_port, proc_cpu_s, pct, start_mailport,
#                                   stop_mailport, reply, ticker, Stats)
from benchlib import binary_id, machine_state, run_main  # noqa: E402
from rspamd_servers import (body_text, message_wire, message_file, WORDS, DATE, STAMP, start_dns, dns_up, rspamd_conf, start_rspamd, group_pids, group_cpu_s, stop_group, ping, rspamd_check, wait_rspamd_ready, _comm, StandIn)  # noqa: E402,F401

ROOT = L.ROOT
CLK_TCK = L.CLK_TCK
CLEANUP = []        # run at exit, last first
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
DOMAIN = "example.org"              # the sender's domain: A, MX, SPF, DMARC in our DNS
HELO = "client.example.org"
MAIL_FROM = f"alice@{DOMAIN}"
RCPT = "bob@example.net"
perf = time.perf_counter


# ---------------------------------------------------------------- measuring

def time_wait(port):
    """TIME_WAIT sockets with `port` at either end, as two sets of (local,
    remote) address pairs: closed first by the side listening on port, closed
    first by the other side."""
    hexport = f":{port:04X}"
    srv, cli = set(), set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as fh:
                next(fh)
                for ln in fh:
                    x = ln.split(None, 4)
                    if x[3] != "06":
                        continue
                    if x[1].endswith(hexport):
                        srv.add((x[1], x[2]))
                    elif x[2].endswith(hexport):
                        cli.add((x[1], x[2]))
        except OSError:
            pass
    return srv, cli


async def time_wait_sampler(port, t_stop, seen, every=5.0):
    """Every `every` s (TIME_WAIT lasts 60 s, so nothing is missed): every
    TIME_WAIT pair seen on rspamd's port, i.e. the TCP connections closed."""
    while perf() < t_stop:
        srv, cli = time_wait(port)
        seen[0] |= srv
        seen[1] |= cli
        await asyncio.sleep(every)


def proc_user_sys(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def proc_stat_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]    # user nice system irq softirq (guest is in user)
    return busy / CLK_TCK, v[7] / CLK_TCK       # busy, steal


class Meter:
    """CPU seconds of mailport, rspamd's group, dnsmasq, this process and the
    whole machine between two snapshots (others = machine - ours)."""

    def __init__(self, mailport_pid, rspamd_pgid, dns_pid):
        self.pids = (mailport_pid, rspamd_pgid, dns_pid)

    def snap(self):
        m, r, d = self.pids
        ru = resource.getrusage(resource.RUSAGE_SELF)
        busy, steal = proc_stat_cpu()
        mu, ms = proc_user_sys(m)
        return {"t": perf(), "mailport": L.proc_cpu_s(m), "mailport_user": mu, "mailport_sys": ms,
                "rspamd": group_cpu_s(r) if r else 0.0,
                "dnsmasq": L.proc_cpu_s(d) if d else 0.0,
                "client": ru.ru_utime + ru.ru_stime, "busy": busy, "steal": steal,
                "state": machine_state()}

    @staticmethod
    def diff(a, b, messages):
        wall = b["t"] - a["t"]
        d = {k: b[k] - a[k] for k in ("mailport", "mailport_user", "mailport_sys", "rspamd",
                                      "dnsmasq", "client", "busy", "steal")}
        ours = d["mailport"] + d["rspamd"] + d["dnsmasq"] + d["client"]
        per = (lambda s: round(s * 1e6 / messages, 1)) if messages else (lambda s: None)
        return {"wall_s": round(wall, 2),
                "mailport_cpu_us_per_msg": per(d["mailport"]),
                "mailport_user_sys_us_per_msg": [per(d["mailport_user"]), per(d["mailport_sys"])],
                "rspamd_cpu_us_per_msg": per(d["rspamd"]),
                "dnsmasq_cpu_us_per_msg": per(d["dnsmasq"]),
                "client_cpu_us_per_msg": per(d["client"]),
                "cpu_s": {k: round(v, 2) for k, v in d.items()},
                "machine_busy_cores": round(d["busy"] / wall, 2) if wall > 0 else None,
                "others_cores": round((d["busy"] - ours) / wall, 2) if wall > 0 else None,
                "steal_cores": round(d["steal"] / wall, 2) if wall > 0 else None,
                "machine_before": a["state"], "machine_after": b["state"]}


def summary(v):
    v = sorted(v)
    return {"n": len(v), "p50": L.pct(v, 50), "p90": L.pct(v, 90), "p99": L.pct(v, 99),
            "p99.9": L.pct(v, 99.9), "max": v[-1] if v else None}


def http_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def set_nice(n):
    """This thread's nice value (Linux: per thread); children started later
    from it inherit it, so it is put back to 0 before starting servers."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, n)
        return n
    except OSError:
        return os.getpriority(os.PRIO_PROCESS, 0)


# ---------------------------------------------------------------- SMTP client

async def connect(port, proxy_ip, name, timeout=10.0):
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    if proxy_ip:
        lport = w.get_extra_info("sockname")[1]
        w.write(f"PROXY TCP4 {proxy_ip} 127.0.0.1 {lport} {port}\r\n".encode())
    code, text = await L.reply(r, timeout)
    if code != 220:
        raise RuntimeError(f"greeting {text[:80]!r}")
    w.write(f"EHLO {name}\r\n".encode())
    code, text = await L.reply(r, timeout)
    if code != 250 or b"PIPELINING" not in text.upper():
        raise RuntimeError(f"EHLO {text[:80]!r}")
    return r, w


async def transaction(r, w, data, timeout):
    """MAIL, RCPT, DATA pipelined, then the content and "." in one write.
    Returns (t_start, t_eod, t_reply, code)."""
    t_start = perf()
    w.write(f"MAIL FROM:<{MAIL_FROM}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
    for want in (250, 250, 354):
        code, text = await L.reply(r, timeout)
        if code != want:
            raise RuntimeError(f"expected {want}: {text[:100]!r}")
    t_eod = perf()
    w.write(data)
    code, text = await L.reply(r, timeout)
    return t_start, t_eod, perf(), code


async def quit_(r, w):
    try:
        w.write(b"QUIT\r\n")
        await asyncio.wait_for(L.reply(r, 5), 5)
    except (OSError, asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        w.close()


async def connect_all(port, proxy_ip, n, prefix, errors):
    res = await asyncio.gather(*(connect(port, proxy_ip, f"{prefix}{i}.{DOMAIN}")
                                 for i in range(n)), return_exceptions=True)
    ok = []
    for i, c in enumerate(res):
        if isinstance(c, BaseException):
            errors.append(f"connect {prefix}{i}: {type(c).__name__}: {c}")
        else:
            ok.append(c)
    return ok


async def closed_loop(port, proxy_ip, sessions, messages, size, budget_s, timeout, tw=None):
    """sessions x (messages / sessions), each session as fast as its replies come.
    tw = (rspamd's port, [set, set]): TIME_WAIT pairs on that port are collected."""
    errors, recs = [], []
    conns = await connect_all(port, proxy_ip, sessions, "closed", errors)
    per = messages // max(1, sessions)
    payload = [message_wire(k, size) for k in range(64)]
    t0 = perf()
    t_stop = t0 + budget_s

    async def one(i, r, w):
        try:
            for j in range(per):
                if perf() >= t_stop:
                    break
                k = j * sessions + i
                rec = await transaction(r, w, payload[k % 64], timeout)
                recs.append((k,) + rec)
            await quit_(r, w)
        except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            errors.append(f"session {i}: {type(e).__name__}: {e}")
            w.close()

    sampler = (asyncio.create_task(time_wait_sampler(tw[0], t_stop, tw[1])) if tw else None)
    await asyncio.gather(*(one(i, r, w) for i, (r, w) in enumerate(conns)))
    t1 = perf()
    if sampler:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    return t0, t1, recs, errors, t_stop


async def open_loop(port, proxy_ip, sessions, rate, total_s, size, timeout):
    """Message k due at T0 + k/rate on session k mod N, answered or not."""
    errors, recs = [], []
    conns = await connect_all(port, proxy_ip, sessions, "open", errors)
    payload = [message_wire(k, size) for k in range(64)]
    stats = L.Stats()
    t0 = perf() + 0.2
    t_stop = t0 + total_s

    async def one(c, r, w):
        prev = 0.0
        try:
            j = 0
            while True:
                k = j * sessions + c
                j += 1
                t_sched = t0 + k / rate
                if t_sched >= t_stop:
                    break
                if t_sched > perf():
                    await asyncio.sleep(t_sched - perf())
                rec = await transaction(r, w, payload[k % 64], timeout)
                recs.append((k, t_sched) + rec + (prev > t_sched,))
                prev = rec[2]
            await quit_(r, w)
        except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            errors.append(f"session {c}: {type(e).__name__}: {e}")
            w.close()

    tasks = [one(c, r, w) for c, (r, w) in enumerate(conns)]
    await asyncio.gather(L.ticker(t_stop, stats), *tasks)
    return t0, recs, errors, stats.loop_oversleep


# ---------------------------------------------------------------- part 1

class Env:
    """The shared pieces: binary, rspamd, dnsmasq, where spools go."""

    def __init__(self, a, work, rspamd_port, rspamd_proc, dns_proc):
        self.a, self.work = a, work
        self.rspamd_port, self.rspamd, self.dns = rspamd_port, rspamd_proc, dns_proc


def mailport_up(E, name, extra):
    """A mailport on a fresh spool: a plain port (for latency.py's start-up
    probe and the probes here) and a PROXY port (for the load)."""
    work = tempfile.mkdtemp(prefix=f"mailport-rspamd-{name}-", dir=E.a.spool_parent)
    spool = os.path.join(work, "spool")
    logpath = os.path.join(work, "mailport.log")
    log = open(logpath, "wb")
    port, pport, http_port = L.free_port(), L.free_port(), L.free_port()
    env = [f"SMTPD_PORTS={port}:{pport}", f"SMTPD_PROXY_PORTS={pport}",
           "SMTPD_PROXY_TRUSTED=127.0.0.1/32"] + extra + E.a.env
    proc, ok = L.start_mailport(E.a.mailport, spool, port, http_port, "maildir", env, log)
    srv = {"proc": proc, "work": work, "spool": spool, "log": log, "logpath": logpath,
           "port": port, "pport": pport, "http": http_port, "env": env}
    CLEANUP.append(lambda: mailport_down(srv))
    if not ok:
        mailport_down(srv)
        raise RuntimeError(f"mailport did not start ({name}):\n"
                           + open(logpath, errors="replace").read()[-2000:])
    return srv


def mailport_down(srv):
    if srv.get("down"):
        return
    srv["down"] = True
    L.stop_mailport(srv["proc"])
    srv["log"].close()
    try:            # mailport's warnings about rspamd (at most 10, kept in the JSON)
        with open(srv["logpath"], errors="replace") as fh:
            srv["rspamd_log"] = [ln.strip()[:300] for ln in fh if "rspamd" in ln
                                 and ("warn" in ln.lower() or "did not answer" in ln)][:10]
    except OSError:
        srv["rspamd_log"] = []
    shutil.rmtree(srv["work"], ignore_errors=True)


def stored(srv):
    try:
        return len(os.listdir(os.path.join(srv["spool"], "new")))
    except OSError:
        return None


def rspamd_env(E, mode):
    return [f"SMTPD_RSPAMD_URL=http://127.0.0.1:{E.rspamd_port}"] if mode == "on" else []


def codes_of(recs, idx):
    out = {}
    for rec in recs:
        out[str(rec[idx])] = out.get(str(rec[idx]), 0) + 1
    return out


def phase_closed(E, mode):
    a = E.a
    srv = mailport_up(E, f"closed-{mode}", rspamd_env(E, mode))
    meter = Meter(srv["proc"].pid, E.rspamd.pid, E.dns.pid)
    set_nice(a.client_nice)
    tw0 = time_wait(E.rspamd_port)
    seen = [set(), set()]
    s0 = meter.snap()
    try:
        t0, t1, recs, errors, _ = asyncio.run(asyncio.wait_for(
            closed_loop(srv["pport"], a.client_ip, a.sessions, a.messages, a.size,
                        a.closed_budget, a.reply_timeout,
                        (E.rspamd_port, seen) if mode == "on" else None),
            a.closed_budget + a.reply_timeout + 30))
        timed_out = False
    except asyncio.TimeoutError:
        t0 = t1 = None
        recs, errors, timed_out = [], ["phase timed out"], True
    s1 = meter.snap()
    tw1 = time_wait(E.rspamd_port)
    seen[0] |= tw1[0]
    seen[1] |= tw1[1]
    set_nice(0)
    status = http_json(srv["http"], "/status")
    alive = srv["proc"].poll() is None
    n_stored = stored(srv)
    mailport_down(srv)
    recs.sort(key=lambda rec: rec[2])            # by end of data
    meas = recs[a.warmup_messages:]
    lat = [(rec[3] - rec[2]) * 1e3 for rec in meas]
    wall = (t1 - t0) if t0 is not None else None
    res = {"mode": mode, "sessions": a.sessions, "messages_planned": a.messages,
           "messages_answered": len(recs), "reply_codes": codes_of(recs, 4),
           "stored_files": n_stored, "wall_s": round(wall, 2) if wall else None,
           "msg_per_s": round(len(recs) / wall, 1) if wall else None,
           "eod_to_reply_ms": summary(lat), "warmup_messages_excluded": a.warmup_messages,
           "cpu": Meter.diff(s0, s1, len(recs)), "errors": errors[:20], "timed_out": timed_out,
           "budget_hit": bool(wall and wall >= a.closed_budget),
           # TCP connections to rspamd closed during the run (TIME_WAIT pairs on its
           # port, sampled every 5 s; a pair reused within the run counts once), by
           # which side closed first: about one per check = no keep-alive
           "rspamd_port_connections_closed": (
               {"closed_by_rspamd": len(seen[0] - tw0[0]),
                "closed_by_mailport": len(seen[1] - tw0[1])} if mode == "on" else None),
           "mailport_alive_at_end": alive,
           "rspamd_status": (status or {}).get("rspamd"),
           "loop_lag_ms_max": (status or {}).get("loop_lag_ms_max"),
           "mailport_rspamd_warnings": srv.get("rspamd_log")}
    return res


def phase_open(E, mode):
    a = E.a
    srv = mailport_up(E, f"open-{mode}", rspamd_env(E, mode))
    meter = Meter(srv["proc"].pid, E.rspamd.pid, E.dns.pid)
    total = a.open_warmup + a.open_seconds
    set_nice(a.client_nice)
    s0 = meter.snap()
    try:
        t0, recs, errors, oversleep = asyncio.run(asyncio.wait_for(
            open_loop(srv["pport"], a.client_ip, a.open_sessions, a.rate, total, a.size,
                      a.reply_timeout), total + a.reply_timeout + 30))
        timed_out = False
    except asyncio.TimeoutError:
        t0, recs, errors, oversleep, timed_out = None, [], ["phase timed out"], [], True
    s1 = meter.snap()
    set_nice(0)
    status = http_json(srv["http"], "/status")
    alive = srv["proc"].poll() is None
    n_stored = stored(srv)
    mailport_down(srv)
    # rec: (k, t_sched, t_start, t_eod, t_reply, code, session_was_busy)
    w_start = (t0 or 0) + a.open_warmup
    meas = [rec for rec in recs if rec[1] >= w_start]
    offered = int(a.rate * a.open_seconds)
    last = max((rec[4] for rec in meas), default=w_start + a.open_seconds)
    window = max(w_start + a.open_seconds, last) - w_start
    lag_free = [(rec[2] - rec[1]) * 1e3 for rec in meas if not rec[6]]
    res = {"mode": mode, "rate_offered": a.rate, "sessions": a.open_sessions,
           "seconds": a.open_seconds, "warmup_s": a.open_warmup,
           "messages_sent_total": len(recs), "messages_measured": len(meas),
           "messages_offered_in_window": offered, "stored_files": n_stored,
           "reply_codes": codes_of(recs, 5),
           "rate_achieved": round(len(meas) / window, 1) if window > 0 else None,
           "eod_to_reply_ms": summary([(rec[4] - rec[3]) * 1e3 for rec in meas]),
           "scheduled_to_reply_ms": summary([(rec[4] - rec[1]) * 1e3 for rec in meas]),
           "send_lag_session_free_ms": summary(lag_free),
           "messages_due_while_session_busy": sum(1 for rec in meas if rec[6]),
           "loop_oversleep_ms": summary([x * 1e3 for x in oversleep]),
           "cpu": Meter.diff(s0, s1, len(recs)), "errors": errors[:20], "timed_out": timed_out,
           "mailport_alive_at_end": alive, "rspamd_status": (status or {}).get("rspamd"),
           "loop_lag_ms_max": (status or {}).get("loop_lag_ms_max"),
           "mailport_rspamd_warnings": srv.get("rspamd_log")}
    return res


# ---------------------------------------------------------------- part 2

async def probe_loop(fn, t_stop, out, errs, every=0.05):
    """fn() -> {name: seconds} once per tick; a failure is recorded, not fatal."""
    nxt = perf()
    while perf() < t_stop:
        t = perf()
        try:
            for name, dt in (await asyncio.wait_for(fn(), 10)).items():
                out.setdefault(name, []).append((t, dt))
        except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            errs.append((t, f"{type(e).__name__}: {e}"))
        nxt = max(nxt + every, perf())
        await asyncio.sleep(max(0.0, nxt - perf()))


async def slow_case(srv, a, timeout_s):
    errors = []
    senders = await connect_all(srv["pport"], a.client_ip, a.slow_messages, "slow", errors)
    noop_r, noop_w = await connect(srv["port"], None, "noop.bench.test")
    cmd_r, cmd_w = await connect(srv["port"], None, "cmd.bench.test")
    payload = message_wire(0, a.size)
    samples, perrs = {}, {}

    async def livez():
        t = perf()
        r, w = await asyncio.open_connection("127.0.0.1", srv["http"])
        w.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = await r.read(4096)
        while data and b"\r\n\r\n" not in data:
            more = await r.read(4096)
            if not more:
                break
            data += more
        dt = perf() - t
        w.close()
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"/livez {data[:40]!r}")
        return {"livez": dt}

    async def noop():
        t = perf()
        noop_w.write(b"NOOP\r\n")
        code, text = await L.reply(noop_r, 10)
        if code != 250:
            raise RuntimeError(f"NOOP {text[:60]!r}")
        return {"noop": perf() - t}

    async def cmds():
        out = {}
        for name, line in (("ehlo", "EHLO cmd.bench.test"), ("mail", f"MAIL FROM:<{MAIL_FROM}>"),
                           ("rcpt", f"RCPT TO:<{RCPT}>"), ("rset", "RSET")):
            t = perf()
            cmd_w.write(line.encode() + b"\r\n")
            code, text = await L.reply(cmd_r, 10)
            if code != 250:
                raise RuntimeError(f"{name} {text[:60]!r}")
            out[name] = perf() - t
        return out

    async def greet():
        t = perf()
        r, w = await asyncio.open_connection("127.0.0.1", srv["port"])
        code, text = await L.reply(r, 10)
        dt = perf() - t
        if code != 220:
            raise RuntimeError(f"greeting {text[:60]!r}")
        await quit_(r, w)
        return {"connect_220": dt}

    t_probe0 = perf()
    t_stop_probes = t_probe0 + a.slow_baseline + timeout_s + a.slow_delay + 30   # hard bound
    probes = [asyncio.create_task(probe_loop(fn, t_stop_probes, samples,
                                             perrs.setdefault(name, [])))
              for name, fn in (("livez", livez), ("noop", noop), ("cmds", cmds), ("greet", greet))]

    # Probes run alone first (baseline), then every sender sends one message.
    await asyncio.sleep(a.slow_baseline)
    results = []

    async def one(i, r, w):
        try:
            rec = await transaction(r, w, payload, timeout_s + a.slow_delay + 20)
            results.append((i,) + rec)
            await quit_(r, w)
        except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            errors.append(f"sender {i}: {type(e).__name__}: {e}")
            w.close()

    t_load0 = perf()
    await asyncio.gather(*(one(i, r, w) for i, (r, w) in enumerate(senders)))
    t_load1 = perf()
    await asyncio.sleep(0.5)
    for p in probes:
        p.cancel()
    await asyncio.gather(*probes, return_exceptions=True)
    await quit_(noop_r, noop_w)
    await quit_(cmd_r, cmd_w)
    return {"t_probe0": t_probe0, "t_load0": t_load0, "t_load1": t_load1, "results": results,
            "errors": errors, "samples": samples, "probe_errors": perrs}


def phase_slow(E, timeout_setting):
    a = E.a
    stand = StandIn(a.slow_delay)
    CLEANUP.append(stand.close)
    extra = [f"SMTPD_RSPAMD_URL=http://127.0.0.1:{stand.port}"]
    if timeout_setting:
        extra.append(f"SMTPD_RSPAMD_TIMEOUT={timeout_setting}")
    timeout_s = 20.0
    if timeout_setting:
        t = timeout_setting.strip()
        mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
        timeout_s = float(t[:-1]) * mult if mult else float(t)
    srv = mailport_up(E, "slow", extra)
    meter = Meter(srv["proc"].pid, 0, 0)
    set_nice(a.client_nice)
    s0 = meter.snap()
    try:
        out = asyncio.run(asyncio.wait_for(slow_case(srv, a, timeout_s),
                                           a.slow_baseline + timeout_s + a.slow_delay + 60))
        timed_out = False
    except asyncio.TimeoutError:
        out, timed_out = None, True
    s1 = meter.snap()
    set_nice(0)
    status = http_json(srv["http"], "/status")
    alive = srv["proc"].poll() is None
    n_stored = stored(srv)
    mailport_down(srv)
    stand.close()
    res = {"rspamd_timeout": timeout_setting or "20 (default)", "delay_s": a.slow_delay,
           "messages": a.slow_messages, "timed_out": timed_out, "mailport_alive_at_end": alive,
           "stored_files": n_stored, "stand_in": {"requests": stand.requests,
                                                  "answered": stand.answered,
                                                  "gave_up_by_mailport": stand.broken,
                                                  "max_in_flight": stand.max},
           "rspamd_status": (status or {}).get("rspamd"),
           "loop_lag_ms_max": (status or {}).get("loop_lag_ms_max"),
           "mailport_rspamd_warnings": srv.get("rspamd_log"),
           "cpu": Meter.diff(s0, s1, a.slow_messages)}
    if out is None:
        return res
    res["errors"] = out["errors"][:20]
    replies = sorted((rec[3] - rec[2], rec[4]) for rec in out["results"])
    res["replies"] = [{"eod_to_reply_s": round(dt, 3), "code": c} for dt, c in replies]
    res["reply_codes"] = codes_of(out["results"], 4)
    waves = {}
    for dt, c in replies:
        key = int(dt / a.slow_delay + 0.5)
        w = waves.setdefault(key, {"n": 0, "codes": {}, "min_s": dt, "max_s": dt})
        w["n"] += 1
        w["codes"][str(c)] = w["codes"].get(str(c), 0) + 1
        w["max_s"] = round(max(w["max_s"], dt), 3)
        w["min_s"] = round(min(w["min_s"], dt), 3)
    res["waves"] = {f"~{k * a.slow_delay:g}s": v for k, v in sorted(waves.items())}
    t_l0, t_l1 = out["t_load0"], out["t_load1"]
    res["load_window_s"] = round(t_l1 - t_l0, 2)
    probes = {}
    for name, v in out["samples"].items():
        base = [dt * 1e3 for t, dt in v if t < t_l0]
        during = [dt * 1e3 for t, dt in v if t_l0 <= t <= t_l1]
        probes[name] = {"baseline": summary(base), "during": summary(during)}
    res["probes_ms"] = probes
    res["probe_failures"] = {k: len(v) for k, v in out["probe_errors"].items()}
    res["probe_failure_samples"] = {k: [e for _, e in v[:3]] for k, v in out["probe_errors"].items()
                                    if v}
    p99 = {k: (probes.get(k, {}).get("during") or {}).get("p99") for k in ("livez", "noop")}
    ok = (all(v is not None and v < a.target_ms for v in p99.values())
          and not any(res["probe_failures"].values()) and alive)
    res["verdict"] = "PASS" if ok else "FAIL"
    return res


# ---------------------------------------------------------------- printing

def f(v, nd=2):
    return "-" if v is None else f"{v:,.{nd}f}"


def ratio(x, y):
    return round(x / y, 2) if x is not None and y else None


def print_closed(r):
    e, c = r["eod_to_reply_ms"], r["cpu"]
    print(f"  closed {r['mode']:3s}: {r['messages_answered']:,} answered ({r['reply_codes']}), "
          f"{r['stored_files']} stored, {f(r['msg_per_s'], 0)} msg/s in {f(r['wall_s'], 1)} s; "
          f"eod->reply ms p50 {f(e['p50'])} p90 {f(e['p90'])} p99 {f(e['p99'])} max {f(e['max'])}")
    us, sy = c["mailport_user_sys_us_per_msg"]
    print(f"             CPU us/msg: mailport {f(c['mailport_cpu_us_per_msg'], 0)} "
          f"(user {f(us, 0)}, "
          f"sys {f(sy, 0)}), rspamd "
          f"{f(c['rspamd_cpu_us_per_msg'], 0)}, dnsmasq {f(c['dnsmasq_cpu_us_per_msg'], 0)}, "
          f"client {f(c['client_cpu_us_per_msg'], 0)}; others {f(c['others_cores'])} cores, "
          f"steal {f(c['steal_cores'])}; load {c['machine_before'].get('loadavg')} -> "
          f"{c['machine_after'].get('loadavg')}, PSI cpu "
          f"{c['machine_before'].get('psi_cpu_some_avg10')} -> "
          f"{c['machine_after'].get('psi_cpu_some_avg10')}")
    tw = r.get("rspamd_port_connections_closed")
    if tw:
        print(f"             TCP connections to rspamd closed during the run: {tw} "
              f"({sum(tw.values()) / max(1, r['messages_answered']):.2f} per message)")
    print_checks(r)


def print_checks(r):
    st = r.get("rspamd_status") or {}
    if st.get("enabled"):
        checks = {k: v for k, v in (st.get("checks") or {}).items() if v}
        print(f"             rspamd checks {checks}, failures {st.get('failures')}, timeouts "
              f"{st.get('timeouts')}, check latency avg {f(st.get('latency_ms_avg'))} ms")
    for w in (r.get("mailport_rspamd_warnings") or [])[:2]:
        print(f"             mailport: {w}")
    for err in r["errors"][:3]:
        print(f"             error: {err}")


def print_open(r):
    e, c, lag = r["eod_to_reply_ms"], r["cpu"], r["send_lag_session_free_ms"]
    print(f"  open   {r['mode']:3s}: {f(r['rate_offered'], 0)} msg/s offered, "
          f"{f(r['rate_achieved'], 1)} achieved, {r['messages_measured']:,} measured "
          f"({r['reply_codes']}); eod->reply ms p50 {f(e['p50'])} p90 {f(e['p90'])} "
          f"p99 {f(e['p99'])} p99.9 {f(e['p99.9'])} max {f(e['max'])}")
    us, sy = c["mailport_user_sys_us_per_msg"]
    print(f"             CPU us/msg: mailport {f(c['mailport_cpu_us_per_msg'], 0)} "
          f"(user {f(us, 0)}, "
          f"sys {f(sy, 0)}), rspamd {f(c['rspamd_cpu_us_per_msg'], 0)}; "
          "generator lag p99 (session free) "
          f"{f(lag['p99'])} ms, {r['messages_due_while_session_busy']} due while busy; others "
          f"{f(c['others_cores'])} cores; load {c['machine_before'].get('loadavg')} -> "
          f"{c['machine_after'].get('loadavg')}, PSI cpu "
          f"{c['machine_before'].get('psi_cpu_some_avg10')} -> "
          f"{c['machine_after'].get('psi_cpu_some_avg10')}")
    print_checks(r)


def print_slow(r):
    print(f"  SMTPD_RSPAMD_TIMEOUT={r['rspamd_timeout']}: {r['messages']} messages, stand-in "
          f"{r['stand_in']}, replies {r.get('reply_codes')}, stored {r['stored_files']}, "
          f"load window {r.get('load_window_s')} s")
    for k, w in (r.get("waves") or {}).items():
        print(f"    {k:>5s}: {w['n']:3d} replies {w['codes']}, {w['min_s']:.2f}-{w['max_s']:.2f} s "
              "after end of data")
    for name, p in (r.get("probes_ms") or {}).items():
        b, d = p["baseline"], p["during"]
        print(f"    {name:12s} ms  baseline p50 {f(b['p50'])} p99 {f(b['p99'])} (n {b['n']})   "
              f"during p50 {f(d['p50'])} p99 {f(d['p99'])} max {f(d['max'])} (n {d['n']})")
    c = r["cpu"]
    print(f"    probe failures {r.get('probe_failures')}; /status rspamd {r['rspamd_status']}; "
          f"loop_lag_ms_max {r['loop_lag_ms_max']}; mailport CPU {c['cpu_s']['mailport']} s; "
          f"load {c['machine_before'].get('loadavg')} -> {c['machine_after'].get('loadavg')}, "
          f"PSI cpu {c['machine_before'].get('psi_cpu_some_avg10')} -> "
          f"{c['machine_after'].get('psi_cpu_some_avg10')}")
    for w in (r.get("mailport_rspamd_warnings") or [])[:2]:
        print(f"    mailport: {w}")
    for err in (r.get("errors") or [])[:3]:
        print(f"    error: {err}")
    print(f"    {r.get('verdict', 'FAIL')}: /livez and NOOP p99 while rspamd is slow under "
          f"the target")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailport", default=os.path.join(ROOT, "build-bench", "mailport"))
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every mailport")
    ap.add_argument("--parts", default="1,2", help="1 (off vs on), 2 (slow), or 1,2")
    ap.add_argument("--rounds", type=int, default=1, help="part 1 rounds (off/on interleaved)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=40000, help="closed loop, in all")
    ap.add_argument("--warmup-messages", type=int, default=200)
    ap.add_argument("--closed-budget", type=float, default=300.0,
                    help="seconds; a closed run stops starting messages after this")
    ap.add_argument("--rate", type=float, default=200.0, help="open loop, msg/s")
    ap.add_argument("--open-sessions", type=int, default=20)
    ap.add_argument("--open-seconds", type=float, default=20.0)
    ap.add_argument("--open-warmup", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=1024, help="bytes per message on the wire")
    ap.add_argument("--reply-timeout", type=float, default=30.0, help="part 1, per reply")
    ap.add_argument("--client-ip", default="198.51.100.7",
                    help="source address in the PROXY header ('' for plain loopback sessions)")
    ap.add_argument("--rspamd-workers", type=int, default=2,
                    help="normal workers (the deployment's count; 0: rspamd's default)")
    ap.add_argument("--rspamd-milter-headers", default="authentication-results",
                    help="milter_headers routines rspamd asks mailport to apply (the deployment's; "
                         "'' for none: no header edit, no file rewrite)")
    ap.add_argument("--rspamd-start-budget", type=float, default=180.0)
    ap.add_argument("--slow-delay", type=float, default=5.0)
    ap.add_argument("--slow-messages", type=int, default=50)
    ap.add_argument("--slow-baseline", type=float, default=1.0,
                    help="seconds of probes before the slow messages are sent")
    ap.add_argument("--slow-timeouts", default=",60s",
                    help="SMTPD_RSPAMD_TIMEOUT values for part 2 (empty: the default, 20)")
    ap.add_argument("--target-ms", type=float, default=50.0)
    ap.add_argument("--client-nice", type=int, default=-5,
                    help="the client's nice value while it measures (as latency.py; root)")
    ap.add_argument("--spool-parent", default="/var/tmp")
    ap.add_argument("--json", help="default bench/results/rspamd-<stamp>.json")
    a = ap.parse_args()
    parts = {p.strip() for p in a.parts.split(",")}

    if not os.access(a.mailport, os.X_OK):
        print(f"rspamd.py: no mailport binary at {a.mailport}", file=sys.stderr)
        return 2
    if "1" in parts and not (os.access(RSPAMD, os.X_OK) and os.access(DNSMASQ, os.X_OK)):
        print("rspamd.py: part 1 needs rspamd and dnsmasq (apt-get install rspamd dnsmasq)",
              file=sys.stderr)
        return 2
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * max(a.sessions, a.open_sessions, a.slow_messages) + 200
    if lim[0] < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(lim[1], need), lim[1]))
    client_ip = a.client_ip or None
    a.client_ip = client_ip
    work = tempfile.mkdtemp(prefix="mailport-rspamd-bench-", dir="/tmp")
    CLEANUP.append(lambda: shutil.rmtree(work, ignore_errors=True))
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "mailport_binary": binary_id(a.mailport), "args": vars(a),
           "machine_start": machine_state(), "nproc": os.cpu_count()}
    print(f"mailport: {res['mailport_binary']}; machine {res['machine_start']}")

    rspamd_proc = dns_proc = None
    rspamd_port = None
    if "1" in parts:
        dns_port = L.free_port()
        dns_proc = start_dns(work, dns_port, client_ip or "198.51.100.7")
        CLEANUP.append(lambda: stop_group(dns_proc))
        end = time.monotonic() + 15
        while not dns_up(dns_port) and dns_proc.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        if not dns_up(dns_port):
            print("rspamd.py: dnsmasq did not answer:\n"
                  + open(os.path.join(work, "dnsmasq.log"), errors="replace").read()[-1500:],
                  file=sys.stderr)
            return 2
        conf = os.path.join(work, "rspamd")
        rspamd_port = L.free_port()
        rspamd_conf(conf, rspamd_port, dns_port, a.rspamd_workers, a.rspamd_milter_headers)
        rspamd_proc = start_rspamd(conf)
        CLEANUP.append(lambda: stop_group(rspamd_proc))
        took = wait_rspamd_ready(rspamd_proc, conf, rspamd_port, client_ip or "127.0.0.1",
                                 a.rspamd_start_budget)
        if took is None:
            log = os.path.join(conf, "log", "rspamd.log")
            print("rspamd.py: rspamd not ready:\n"
                  + (open(log, errors="replace").read()[-1500:] if os.path.exists(log) else ""),
                  file=sys.stderr)
            return 2
        ver = subprocess.run([RSPAMD, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip().splitlines()[0]
        probe = rspamd_check(rspamd_port, message_file(1, a.size), client_ip or "127.0.0.1")
        workers = [_comm(pid) for pid, _ in group_pids(rspamd_proc.pid)]
        res["rspamd"] = {"version": ver, "ready_after_s": round(took, 1), "processes": workers,
                         "sample_verdict": {"action": probe.get("action"),
                                            "score": probe.get("score"),
                                            "symbols": sorted(probe.get("symbols", {}))}}
        print(f"{ver}: ready after {took:.1f} s, processes {workers}; a bench message from "
              f"{client_ip or 'loopback'}: {probe.get('action')} {probe.get('score')} "
              f"{sorted(probe.get('symbols', {}))}")

        E = Env(a, work, rspamd_port, rspamd_proc, dns_proc)
        res["part1"] = {"closed": [], "open": []}
        for rnd in range(a.rounds):
            order = ("off", "on") if rnd % 2 == 0 else ("on", "off")
            print(f"part 1, round {rnd + 1}/{a.rounds}: closed loop {a.sessions} sessions x "
                  f"{a.messages // a.sessions} messages of {a.size} bytes; open loop {a.rate:g} "
                  f"msg/s on {a.open_sessions} sessions for {a.open_seconds:g} s")
            for mode in order:
                r = phase_closed(E, mode)
                r["round"] = rnd + 1
                res["part1"]["closed"].append(r)
                print_closed(r)
            for mode in order:
                r = phase_open(E, mode)
                r["round"] = rnd + 1
                res["part1"]["open"].append(r)
                print_open(r)
        # Ratios on/off, medians over rounds.
        cl = {m: [r for r in res["part1"]["closed"] if r["mode"] == m] for m in ("off", "on")}
        op = {m: [r for r in res["part1"]["open"] if r["mode"] == m] for m in ("off", "on")}

        def mc(rs, *path):
            vals = []
            for r in rs:
                v = r
                for p in path:
                    v = (v or {}).get(p)
                vals.append(v)
            return med(vals)

        summ = {}
        for key, rs, path in (
                ("closed_msg_per_s", cl, ("msg_per_s",)),
                ("closed_p50_ms", cl, ("eod_to_reply_ms", "p50")),
                ("closed_p90_ms", cl, ("eod_to_reply_ms", "p90")),
                ("closed_p99_ms", cl, ("eod_to_reply_ms", "p99")),
                ("closed_mailport_cpu_us_per_msg", cl, ("cpu", "mailport_cpu_us_per_msg")),
                ("closed_rspamd_cpu_us_per_msg", cl, ("cpu", "rspamd_cpu_us_per_msg")),
                ("open_rate_achieved", op, ("rate_achieved",)),
                ("open_p50_ms", op, ("eod_to_reply_ms", "p50")),
                ("open_p99_ms", op, ("eod_to_reply_ms", "p99")),
                ("open_mailport_cpu_us_per_msg", op, ("cpu", "mailport_cpu_us_per_msg")),
                ("open_rspamd_cpu_us_per_msg", op, ("cpu", "rspamd_cpu_us_per_msg"))):
            off, on = mc(rs["off"], *path), mc(rs["on"], *path)
            # (rspamd idles while off: no ratio for its CPU)
            summ[key] = {"off": off, "on": on,
                         "on_over_off": None if "rspamd" in key else ratio(on, off)}
        res["part1"]["summary"] = summ
        print(f"part 1 summary (median of {a.rounds} round(s)):     off          on   on/off")
        for key, v in summ.items():
            print(f"  {key:34s} {f(v['off']):>10s}  {f(v['on']):>10s}  {f(v['on_over_off'])}")

    verdict = None
    if "2" in parts:
        res["part2"] = []
        print(f"part 2: a stand-in answering after {a.slow_delay:g} s, {a.slow_messages} messages "
              f"at once, SMTPD_RSPAMD_CONCURRENCY default (16); probes every 50 ms")
        for t in a.slow_timeouts.split(","):
            r = phase_slow(Env(a, work, None, None, None), t.strip())
            res["part2"].append(r)
            print_slow(r)
        verdict = "PASS" if all(r.get("verdict") == "PASS" for r in res["part2"]) else "FAIL"
        res["part2_verdict"] = verdict
        print(f"{verdict}: /livez and NOOP p99 under {a.target_ms:g} ms while rspamd is slow")

    stop_group(rspamd_proc)
    stop_group(dns_proc)
    res["machine_end"] = machine_state()
    out = a.json or os.path.join(HERE, "results",
                                 f"rspamd-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"results: {out}")
    return 0 if verdict in (None, "PASS") else 1


if __name__ == "__main__":
    run_main(main, CLEANUP)
