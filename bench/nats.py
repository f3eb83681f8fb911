#!/usr/bin/python3
"""nats.py: what publishing into NATS JetStream before the 250 costs (issue 16,
SPEC 9), beside the spool and discard, in one run.

Configurations, each a fresh mailport (SMTPD_DELIVER and the NATS settings
below) and the same load:
  maildir     the durable reference: journal group commit, fsync, 250;
  discard     no storage at all (the ceiling);
  sync-r1     SMTPD_NATS_MODE=sync, SMTPD_DELIVER=discard: 250 after JetStream's
              acknowledgement from a replicas: 1 stream on one nats-server;
  sync-r3     the same into a replicas: 3 stream on a three-node cluster (three
              local nats-server processes with routes): the acknowledgement
              waits for a quorum of two file stores;
  forward-r1  (--forward) SMTPD_NATS_MODE=forward into the replicas: 1 stream:
              the maildir path plus publishing after the 250.
Load: a closed loop of --sessions (20) persistent SMTP sessions, each sending
its share of --messages (20,000) back to back (MAIL/RCPT/DATA pipelined, then
the ~1 KiB content and "." in one write). Figures: msg/s, end of data -> 250
p50/p90/p99 (the first --warmup messages excluded), mailport's CPU per message,
and the ratio of msg/s to maildir measured in the same run. The NATS servers
(Debian's nats-server, store dirs under a temporary directory, fsync as
nats-server does it by default: no fsync per message, every 2 minutes) and their
streams (tests/tools/nats_tool) are started by this script and stopped by PID.
The machine is shared: load and PSI are recorded around each configuration.
Writes bench/results/nats-<stamp>.json. Exit 0, or 2 when it could not run.

  /usr/bin/python3 bench/nats.py --mailport /tmp/rb/build/mailport \\
      --nats-tool build/tests/nats_tool
"""

import argparse
import asyncio
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import latency as L  # noqa: E402  (reply, pct, body_for, proc_cpu_s)
from benchlib import binary_id, free_port, machine_state, spawn_mailport, stop_mailport  # noqa: E402
import nats_cluster as nc  # noqa: E402  (nats-server children, nats_tool)

perf = time.perf_counter
SUBJECT = "mailport.bench"


def message(k, size):
    head = (f"From: a@bench.test\r\nTo: b@bench.test\r\nSubject: bench {k}\r\n"
            f"Message-ID: <{k}.{time.time_ns()}@bench.test>\r\n\r\n").encode()
    return head + L.body_for(max(64, size - len(head))) + b".\r\n"


async def connect(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    code, _ = await L.reply(r, 10)
    if code != 220:
        raise RuntimeError("no greeting")
    w.write(b"EHLO bench.test\r\n")
    code, _ = await L.reply(r, 10)
    if code != 250:
        raise RuntimeError("EHLO refused")
    return r, w


async def closed_loop(port, sessions, messages, size, budget_s, timeout):
    conns = await asyncio.gather(*(connect(port) for _ in range(sessions)))
    per = messages // sessions
    payloads = [message(k, size) for k in range(64)]
    recs, errors, codes = [], [], {}
    t0 = perf()
    t_stop = t0 + budget_s

    async def one(i, r, w):
        try:
            for j in range(per):
                if perf() >= t_stop:
                    break
                k = j * sessions + i
                w.write(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
                for want in (250, 250, 354):
                    code, text = await L.reply(r, timeout)
                    if code != want:
                        raise RuntimeError(f"expected {want}: {text[:80]!r}")
                t_eod = perf()
                w.write(payloads[k % 64])
                code, _ = await L.reply(r, timeout)
                codes[code] = codes.get(code, 0) + 1
                recs.append((k, t_eod, perf(), code))
            w.write(b"QUIT\r\n")
            await L.reply(r, 5)
        except (OSError, asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            errors.append(f"session {i}: {type(e).__name__}: {e}")
        w.close()

    await asyncio.gather(*(one(i, r, w) for i, (r, w) in enumerate(conns)))
    return t0, perf(), recs, errors, codes


def run_config(a, name, settings, work):
    port, http = free_port(), free_port()
    spool = os.path.join(work, name + "-spool")
    env = {"SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": str(port),
           "SMTPD_HTTP": f"127.0.0.1:{http}", "SMTPD_HOSTNAME": "bench.test",
           "SMTPD_SPOOL": spool, "SMTPD_MAX_CONNECTIONS": "2000",
           "SMTPD_MAX_MESSAGE_SIZE": "1000000", "SMTPD_LOG_LEVEL": "warn"}
    env.update(settings)
    log = open(os.path.join(work, name + ".log"), "wb")
    proc, ready = spawn_mailport(a.mailport, port, env, log)
    if not ready:
        stop_mailport(proc)
        raise RuntimeError(f"{name}: mailport did not start; see {log.name}")
    try:
        before = machine_state()
        cpu0 = L.proc_cpu_s(proc.pid)
        t0, t1, recs, errors, codes = asyncio.run(
            closed_loop(port, a.sessions, a.messages, a.size, a.budget, a.timeout))
        cpu = L.proc_cpu_s(proc.pid) - cpu0
        after = machine_state()
    finally:
        stop_mailport(proc)
        log.close()
    ok = sorted((t_250 - t_eod) * 1e3 for k, t_eod, t_250, code in recs
                if code == 250 and k >= a.warmup)
    n250 = sum(1 for r in recs if r[3] == 250)
    return {
        "name": name, "settings": settings, "messages": len(recs), "accepted": n250,
        "codes": codes, "errors": errors[:10], "seconds": t1 - t0,
        "msg_per_s": n250 / (t1 - t0) if t1 > t0 else None,
        "eod_to_250_ms": {"p50": L.pct(ok, 50), "p90": L.pct(ok, 90), "p99": L.pct(ok, 99),
                          "max": ok[-1] if ok else None, "n": len(ok)},
        "cpu_us_per_msg": cpu / n250 * 1e6 if n250 else None,
        "machine_before": before, "machine_after": after,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mailport", required=True)
    p.add_argument("--nats-tool", default=None, help="tests/tools/nats_tool (default: build/)")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--budget", type=float, default=120.0, help="seconds per configuration")
    p.add_argument("--timeout", type=float, default=30.0, help="per reply")
    p.add_argument("--forward", action="store_true", help="also forward mode into replicas: 1")
    a = p.parse_args()
    if a.nats_tool:
        os.environ["MAILPORT_BUILD_DIR"] = os.path.dirname(os.path.dirname(
            os.path.abspath(a.nats_tool)))
    if not nc.NATS_SERVER or not nc.nats_tool():
        print("nats.py: needs nats-server and tests/tools/nats_tool (--nats-tool)")
        return 2
    work = tempfile.mkdtemp(prefix="mailport-bench-nats-")
    one, three = nc.Cluster(1), nc.Cluster(3)
    try:
        one.start()
        three.start()
        one.create_stream("BENCH", SUBJECT, 1)
        three.create_stream("BENCH", SUBJECT, 3)
        nats = {"SMTPD_NATS_SUBJECT": SUBJECT, "SMTPD_NATS_STREAM": "BENCH",
                "SMTPD_NATS_TIMEOUT": "10s"}
        configs = [
            ("maildir", {"SMTPD_DELIVER": "maildir"}),
            ("discard", {"SMTPD_DELIVER": "discard"}),
            ("sync-r1", dict(nats, SMTPD_DELIVER="discard", SMTPD_NATS_MODE="sync",
                             SMTPD_NATS_URL=one.urls())),
            ("sync-r3", dict(nats, SMTPD_DELIVER="discard", SMTPD_NATS_MODE="sync",
                             SMTPD_NATS_URL=three.urls())),
        ]
        if a.forward:
            configs.append(("forward-r1", dict(nats, SMTPD_DELIVER="maildir",
                                               SMTPD_NATS_MODE="forward",
                                               SMTPD_WEBHOOK_CONCURRENCY="64",
                                               SMTPD_NATS_URL=one.urls())))
        results = []
        for name, settings in configs:
            r = run_config(a, name, settings, work)
            results.append(r)
            e = r["eod_to_250_ms"]
            print(f"{name:10s} {r['msg_per_s'] or 0:8.0f} msg/s  eod->250 ms p50 {e['p50'] or 0:.2f} "
                  f"p90 {e['p90'] or 0:.2f} p99 {e['p99'] or 0:.2f}  cpu {r['cpu_us_per_msg'] or 0:.0f} "
                  f"us/msg  codes {r['codes']}  load {r['machine_before'].get('loadavg')}", flush=True)
        ref = results[0]["msg_per_s"] or 0
        for r in results:
            r["ratio_to_maildir"] = (r["msg_per_s"] or 0) / ref if ref else None
        print("ratio of msg/s to maildir: " + ", ".join(
            f"{r['name']} {r['ratio_to_maildir']:.2f}" for r in results))
        in_stream = {"sync-r1": one.count("BENCH"), "sync-r3": three.count("BENCH")}
        print(f"messages in the streams afterwards: {in_stream} (sync 250s: "
              f"{[r['accepted'] for r in results if r['name'].startswith('sync')]})")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = os.path.join(HERE, "results", f"nats-{stamp}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump({"args": vars(a), "binary": binary_id(a.mailport),
                       "nats_server": nc.NATS_SERVER, "results": results,
                       "in_stream": in_stream}, f, indent=1)
        print(f"wrote {out}")
        return 0
    finally:
        one.close()
        three.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
