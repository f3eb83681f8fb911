#!/usr/bin/python3
"""bench.py: mailport side by side with Postfix's smtp-sink, Haraka and aiosmtpd.

Every server is driven by Postfix's smtp-source (`smtp-source -s S -m M -l 1024
[-d] 127.0.0.1:PORT`) for S in 10 and 100, with and without -d (-d: many
messages per connection; without it one connection per message). For each case
it measures messages per second (M / wall time of smtp-source) and the SERVER's
CPU time per message: utime+stime of the server process from /proc/<pid>/stat
before and after, divided by M, in microseconds. smtp-source itself burns about
one of the two cores, so CPU per message is the figure that counts.

Each server is started, warmed up, measured in the four cases, stopped; that is
one round, and the rounds are repeated (--repeat) with the servers interleaved
so that drift on a noisy machine hits them all alike. The table shows the median
of the rounds; the JSON file holds every round.

Loopback only. Every wait is bounded; the whole run stops starting new cases
once --budget seconds are spent. Exit status: 0 when the table was printed
(whatever the figures), 1 when nothing could be measured. Never part of ctest.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import binary_id, machine_state  # noqa: E402
from servers import (proc_stat, proc_cpu_ns, proc_rss_kib, wait_banner, http_get, mailport_accepted, Server, postfix_main_cf, cgroup_dir, cgroup_cpu, cgroup_pids, proc_tree_cpu_s, PostfixServer, postfix_ok, POSTFIX_MASTER_CF, version_of)  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")

CASES = [(10, False), (10, True), (100, False), (100, True)]


def mailport_env(port, http_port, extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPD_") and k != "UV_THREADPOOL_SIZE"}
    env.update({
        "SMTPD_HOSTS": "127.0.0.1",
        "SMTPD_PORTS": str(port),
        "SMTPD_HTTP": f"127.0.0.1:{http_port}",
        "SMTPD_HOSTNAME": "bench.test",
        "SMTPD_MAX_CONNECTIONS": "20000",
        "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "20000",
    })
    env.update(extra)
    return env


def haraka_instance(tmp, port, haraka_bin):
    """A minimal Haraka instance: one process, one plugin that accepts every
    recipient and returns OK from the queue hook (discard), warnings only."""
    d = os.path.join(tmp, "haraka")
    subprocess.run([haraka_bin, "-i", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60, check=True)
    shutil.copy(os.path.join(HERE, "haraka", "bench_accept.js"), os.path.join(d, "plugins"))
    with open(os.path.join(d, "config", "plugins"), "w") as f:
        f.write("bench_accept\n")
    with open(os.path.join(d, "config", "smtp.ini"), "w") as f:
        f.write(f"[main]\nlisten=127.0.0.1:{port}\nnodes=0\n")
    with open(os.path.join(d, "config", "log.ini"), "w") as f:
        f.write("[main]\nlevel=warn\ntimestamps=false\nformat=default\n")
    return d


def find_haraka():
    for cand in (os.environ.get("HARAKA_BIN"),
                 os.path.join(HERE, ".haraka", "node_modules", ".bin", "haraka"),
                 shutil.which("haraka")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def aiosmtpd_ok():
    try:
        return subprocess.run(["/usr/bin/python3", "-c", "import aiosmtpd"], timeout=30,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def build_servers(args, tmp, skipped):
    servers = []
    port = args.base_port
    http = args.base_port + 1000

    def next_ports():
        nonlocal port, http
        port += 1
        http += 1
        return port, http

    p, _ = next_ports()
    servers.append(Server("smtp-sink", "smtp-sink (Postfix)",
                          ["smtp-sink", "-u", "nobody", f"127.0.0.1:{p}", "1024"], port=p))
    p, h = next_ports()
    servers.append(Server("mailport-discard", "mailport discard",
                          [args.mailport], env=mailport_env(p, h, {"SMTPD_DELIVER": "discard"}),
                          port=p, http_port=h,
                          note="SMTPD_DELIVER=discard, default log level (info) to a file"))
    if args.variants in ("log", "all"):
        p, h = next_ports()
        servers.append(Server("mailport-discard-warn", "mailport discard, log warn",
                              [args.mailport],
                              env=mailport_env(p, h, {"SMTPD_DELIVER": "discard",
                                                      "SMTPD_LOG_LEVEL": "warn"}),
                              port=p, http_port=h,
                              note="as above with SMTPD_LOG_LEVEL=warn: the cost of per-message logging"))
    for i, spec in enumerate(args.compare):
        path, _, label = spec.partition(":")
        p, h = next_ports()
        servers.append(Server(f"compare{i + 1}-discard", f"{label or path} discard",
                              [path], env=mailport_env(p, h, {"SMTPD_DELIVER": "discard"}),
                              port=p, http_port=h,
                              note=f"--compare {spec}: another mailport binary, discard"))
    spool_root = tempfile.mkdtemp(prefix="mailport-bench-spool-", dir=args.spool_parent)
    maildir_env = dict(kv.split("=", 1) for kv in args.maildir_env)
    for i, spec in enumerate(args.compare_maildir):
        path, _, label = spec.partition(":")
        p, h = next_ports()
        d = os.path.join(spool_root, f"compare{i + 1}")
        os.makedirs(d)
        servers.append(Server(f"compare{i + 1}-maildir", f"{label or path} maildir",
                              [path], env=mailport_env(p, h, {"SMTPD_DELIVER": "maildir", **maildir_env}),
                              port=p, http_port=h, spool_base=d, m_scale=args.maildir_scale,
                              note=f"--compare-maildir {spec}: another mailport binary, maildir"))
    p, h = next_ports()
    spool = os.path.join(spool_root, "default")
    os.makedirs(spool)
    servers.append(Server("mailport-maildir", "mailport maildir",
                          [args.mailport],
                          env=mailport_env(p, h, {"SMTPD_DELIVER": "maildir", **maildir_env}),
                          port=p, http_port=h, spool_base=spool, m_scale=args.maildir_scale,
                          note=f"SMTPD_DELIVER=maildir, a fresh spool under {spool_root} (local disk) "
                               "per start; every 250 after the message and its envelope are fsynced"
                               + (f"; extra env {maildir_env}" if maildir_env else "")))
    if args.postfix:
        ok, why = postfix_ok()
        if not ok:
            skipped["postfix-durable"] = why
        else:
            p, _ = next_ports()
            d = os.path.join(spool_root, "postfix")
            os.makedirs(d)
            servers.append(PostfixServer(
                "postfix-durable", "Postfix durable (hold)", p, d,
                process_limit=args.postfix_process_limit, m_scale=args.maildir_scale,
                main_cf_extra=args.postfix_set,
                note=f"Postfix {why}, private instance (postfix -c DIR) per start under {d}, "
                     f"127.0.0.1:{p}, smtpd_peername_lookup = no, every message held "
                     "(smtpd_end_of_data_restrictions = check_client_access static:HOLD): "
                     "smtpd + cleanup + the queue file's fsync + rename into hold/, nothing "
                     f"delivered; default_process_limit = {args.postfix_process_limit}; "
                     "maillog_file through postlogd; CPU of the whole instance from a cgroup"
                     + (f"; main.cf overrides {args.postfix_set}" if args.postfix_set else "")))
    if args.variants == "all":
        p, h = next_ports()
        spool2 = os.path.join(spool_root, "tp64")
        os.makedirs(spool2)
        servers.append(Server("mailport-maildir-tp64", "mailport maildir, 64 pool threads",
                              [args.mailport],
                              env=mailport_env(p, h, {"SMTPD_DELIVER": "maildir",
                                                      "UV_THREADPOOL_SIZE": "64"}),
                              port=p, http_port=h, spool_base=spool2, m_scale=args.maildir_scale,
                              note="as above with UV_THREADPOOL_SIZE=64: more fsyncs in flight, "
                                   "which the ext4 journal commits together"))
    if args.peers:
        hb = find_haraka()
        if hb is None:
            skipped["haraka"] = "not installed (bench/run.sh --install, or npm install Haraka in bench/.haraka)"
        else:
            p, _ = next_ports()
            try:
                d = haraka_instance(tmp, p, hb)
                servers.append(Server("haraka", "Haraka (discard)", [hb, "-c", d], cwd=d, port=p,
                                      m_scale=args.peer_scale,
                                      note="nodes=0 (one process), plugin bench/haraka/bench_accept.js, log warn"))
            except (OSError, subprocess.SubprocessError) as e:
                skipped["haraka"] = f"instance setup failed: {e}"
        if aiosmtpd_ok():
            p, _ = next_ports()
            servers.append(Server("aiosmtpd", "aiosmtpd (Sink)",
                                  ["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{p}",
                                   "-c", "aiosmtpd.handlers.Sink"], port=p, m_scale=args.peer_scale,
                                  note="Debian python3-aiosmtpd under /usr/bin/python3"))
        else:
            skipped["aiosmtpd"] = "python3-aiosmtpd not importable by /usr/bin/python3"
    if args.servers:
        keep = set(args.servers.split(","))
        servers = [sv for sv in servers if sv.key in keep or sv.key == "smtp-sink"]
    return servers, spool_root


# ---------------------------------------------------------------- one case

def run_source(port, s, m, d, size, timeout):
    argv = ["smtp-source", "-s", str(s), "-m", str(m), "-l", str(size)]
    if d:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        return argv, time.perf_counter() - t0, -1, f"timeout after {timeout}s"
    wall = time.perf_counter() - t0
    return argv, wall, p.returncode, err.decode(errors="replace").strip()


def measure(server, s, d, m, size, timeout):
    acc0 = server.accepted()
    c0 = server.cpu()
    ru0 = os.times()
    argv, wall, rc, err = run_source(server.port, s, m, d, size, timeout)
    ru1 = os.times()
    c1 = server.cpu()
    acc1 = server.accepted()
    du, ds = c1["user_s"] - c0["user_s"], c1["sys_s"] - c0["sys_s"]
    r = {
        "command": " ".join(argv),
        "messages": m,
        "wall_s": round(wall, 4),
        "msg_per_s": round(m / wall, 1) if wall > 0 else None,
        "server_cpu_ticks": round((du + ds) * CLK_TCK),
        "server_cpu_us_per_msg": round((du + ds) * 1e6 / m, 2),
        "server_user_us_per_msg": round(du * 1e6 / m, 2),
        "server_sys_us_per_msg": round(ds * 1e6 / m, 2),
        "server_minflt_per_msg": (round((c1["minflt"] - c0["minflt"]) / m, 3)
                                  if c0.get("minflt") is not None and c1.get("minflt") is not None
                                  else None),
        "server_cpu_us_per_msg_schedstat": (round((c1["ns"] - c0["ns"]) / 1e3 / m, 2)
                                            if c0.get("ns") is not None and c1.get("ns") is not None
                                            else None),
        "client_cpu_s": round((ru1.children_user + ru1.children_system)
                              - (ru0.children_user + ru0.children_system), 3),
        "server_rss_kib": server.rss_kib(),
        "rc": rc,
        "ok": rc == 0 and not err,
    }
    if c0.get("tree_s") is not None and c1.get("tree_s") is not None:
        # Postfix: the same CPU summed over the master's process tree (cross-check).
        r["server_cpu_us_per_msg_tree"] = round((c1["tree_s"] - c0["tree_s"]) * 1e6 / m, 2)
    if c1.get("procs") is not None:
        r["server_processes"] = c1["procs"]
    if err:
        r["stderr"] = err[:500]
    if acc0 is not None and acc1 is not None:
        r["server_counted"] = acc1 - acc0
        if acc1 - acc0 != m:
            r["ok"] = False
    return r


# ---------------------------------------------------------------- table

def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def summarize(results, servers_order):
    """Median per server and case over the successful rounds."""
    summary = {}
    for key in servers_order:
        for (s, d) in CASES:
            runs = [r for r in results.get(key, {}).get(f"s{s}{'d' if d else ''}", []) if r.get("ok")]
            if not runs:
                continue
            summary[(key, s, d)] = {
                "msg_per_s": statistics.median(r["msg_per_s"] for r in runs),
                "cpu_us": statistics.median(r["server_cpu_us_per_msg"] for r in runs),
                "cpu_us_sched": (statistics.median(r["server_cpu_us_per_msg_schedstat"] for r in runs)
                                 if all(r["server_cpu_us_per_msg_schedstat"] is not None for r in runs)
                                 else None),
                "rounds": len(runs),
            }
    return summary


def table(summary, servers, base="smtp-sink"):
    lines = ["| server | -s | -d | msg/s | server CPU us/msg | (schedstat) | msg/s ÷ smtp-sink | CPU ÷ smtp-sink |",
             "|---|---:|:-:|---:|---:|---:|---:|---:|"]
    for (s, d) in CASES:
        b = summary.get((base, s, d))
        for sv in servers:
            x = summary.get((sv.key, s, d))
            if x is None:
                lines.append(f"| {sv.label} | {s} | {'yes' if d else 'no'} | failed | | | | |")
                continue
            rt = x["msg_per_s"] / b["msg_per_s"] if b else None
            rc = x["cpu_us"] / b["cpu_us"] if b and b["cpu_us"] else None
            lines.append(f"| {sv.label} | {s} | {'yes' if d else 'no'} | {fmt(x['msg_per_s'])} | "
                         f"{fmt(x['cpu_us'], 1)} | {fmt(x['cpu_us_sched'], 1)} | "
                         f"{fmt(rt, 2)} | {fmt(rc, 2)} |")
    return "\n".join(lines)


def maildir_vs_discard(summary):
    lines = []
    for d in (False, True):
        a = summary.get(("mailport-maildir", 100, d))
        b = summary.get(("mailport-discard", 100, d))
        if a and b:
            lines.append(f"- maildir / discard throughput at -s 100{' -d' if d else ''}: "
                         f"{a['msg_per_s']:,.0f} / {b['msg_per_s']:,.0f} = {a['msg_per_s'] / b['msg_per_s']:.2f} "
                         f"(target >= 0.50)")
    return "\n".join(lines)


def durable_ratios(summary, durable="mailport-maildir", postfix="postfix-durable",
                   discard="mailport-discard"):
    """The durable path against its anchors: msg/s ÷ Postfix durable and ÷
    mailport discard, CPU per message ÷ Postfix's, and -s 100 against -s 10."""
    def cell(a, b, field, nd=2):
        if not a or not b or not b[field]:
            return "-"
        return f"{a[field] / b[field]:.{nd}f}"

    cases = [(10, False), (10, True), (100, False), (100, True)]
    head = "| ratio | " + " | ".join(f"-s {s}{' -d' if d else ''}" for s, d in cases) + " |"
    rows = [head, "|---|" + "---:|" * len(cases)]

    def row(label, a_key, b_key, field):
        vals = [cell(summary.get((a_key, s, d)), summary.get((b_key, s, d)), field) for s, d in cases]
        if all(v == "-" for v in vals):
            return
        rows.append(f"| {label} | " + " | ".join(vals) + " |")

    row(f"{durable} msg/s ÷ {postfix}", durable, postfix, "msg_per_s")
    row(f"{durable} msg/s ÷ {discard}", durable, discard, "msg_per_s")
    row(f"{durable} CPU/msg ÷ {postfix}", durable, postfix, "cpu_us")
    row(f"{postfix} msg/s ÷ {discard}", postfix, discard, "msg_per_s")
    if len(rows) == 2:
        return ""
    lines = rows + [""]
    for key in (durable, postfix):
        parts = []
        for d in (False, True):
            a, b = summary.get((key, 100, d)), summary.get((key, 10, d))
            if a and b:
                parts.append(f"{'-d' if d else 'new conn.'} {a['msg_per_s']:,.0f} / {b['msg_per_s']:,.0f} = "
                             f"{a['msg_per_s'] / b['msg_per_s']:.2f}")
        if parts:
            lines.append(f"- {key} msg/s at -s 100 ÷ -s 10: " + "; ".join(parts))
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailport", default=os.path.join(ROOT, "build-bench", "mailport"))
    ap.add_argument("--messages", type=int, default=20000, help="M for the fast servers")
    ap.add_argument("--maildir-scale", type=float, default=0.25, help="M factor for maildir")
    ap.add_argument("--peer-scale", type=float, default=0.3, help="M factor for Haraka and aiosmtpd")
    ap.add_argument("--size", type=int, default=1024, help="smtp-source -l")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget", type=float, default=480, help="seconds; no case starts after")
    ap.add_argument("--base-port", type=int, default=24000)
    ap.add_argument("--spool-parent", default="/var/tmp")
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    ap.add_argument("--variants", choices=["none", "log", "all"], default="log",
                    help="extra mailport rows: log = discard with SMTPD_LOG_LEVEL=warn; "
                         "all = also maildir with UV_THREADPOOL_SIZE=64")
    ap.add_argument("--compare", action="append", default=[], metavar="PATH[:LABEL]",
                    help="add discard rows for another mailport binary (e.g. a candidate build)")
    ap.add_argument("--compare-maildir", action="append", default=[], metavar="PATH[:LABEL]",
                    help="add maildir rows for another mailport binary")
    ap.add_argument("--servers", default="",
                    help="comma-separated keys to run (smtp-sink always runs: it is the base), "
                         "e.g. mailport-discard,compare1-discard")
    ap.add_argument("--no-postfix", dest="postfix", action="store_false",
                    help="skip the Postfix durable anchor (a private postfix -c instance)")
    ap.add_argument("--postfix-process-limit", type=int, default=200,
                    help="default_process_limit of the Postfix instance (>= the largest -s)")
    ap.add_argument("--postfix-set", action="append", default=[], metavar="PARAM=VALUE",
                    help="extra main.cf setting for the Postfix instance (repeatable)")
    ap.add_argument("--maildir-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the mailport maildir servers (e.g. a journal setting)")
    ap.add_argument("--durable", default="mailport-maildir", metavar="KEY",
                    help="the mailport server whose figures the durable ratios use")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()

    for tool in ("smtp-source", "smtp-sink"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found (bench/run.sh --install installs Postfix's tools)", file=sys.stderr)
            return 1
    if not os.access(a.mailport, os.X_OK):
        print(f"bench: no mailport binary at {a.mailport}", file=sys.stderr)
        return 1

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mailport-bench-")
    skipped = {}
    servers, spool_root = build_servers(a, tmp, skipped)
    results = {}
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                           if l.startswith("model name")), None),
        "mailport": a.mailport,
        "mailport_binary": binary_id(a.mailport),
        "mailport_git": version_of(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
        "postfix": version_of(["dpkg-query", "-W", "-f", "${Version}", "postfix"]),
        "haraka": ((version_of([find_haraka(), "-v"]) or "").split("Version:")[-1].strip() or None)
                  if a.peers and find_haraka() else None,
        "aiosmtpd": (version_of(["/usr/bin/python3", "-c", "import aiosmtpd; print(aiosmtpd.__version__)"])
                     if a.peers and aiosmtpd_ok() else None),
        "libuv": version_of(["pkg-config", "--modversion", "libuv"]),
        "size": a.size,
        "repeat": a.repeat,
        "clk_tck": CLK_TCK,
        "servers": {s.key: {"label": s.label, "argv": s.argv, "note": s.note,
                            "env": {k: v for k, v in (s.env or {}).items()
                                    if k.startswith("SMTPD_") or k == "UV_THREADPOOL_SIZE"}}
                    for s in servers},
    }
    meta["machine_before"] = machine_state()
    out_of_budget = False
    try:
        for rnd in range(a.repeat):
            for sv in servers:
                if time.monotonic() - started > a.budget:
                    out_of_budget = True
                    break
                if not sv.start(tmp):
                    print(f"bench: {sv.label} did not start (log in {tmp})", file=sys.stderr)
                    skipped.setdefault(sv.key, "did not start")
                    continue
                try:
                    # Warm up: JITs, allocator arenas, the spool's directories.
                    run_source(sv.port, 10, 300, True, a.size, 60)
                    run_source(sv.port, 10, 100, False, a.size, 60)
                    # and at the larger session count: Postfix forks an smtpd and
                    # a cleanup per concurrent session, once, not in the figures.
                    run_source(sv.port, 100, 300, True, a.size, 60)
                    for (s, d) in CASES:
                        if time.monotonic() - started > a.budget:
                            out_of_budget = True
                            break
                        m = max(500, int(a.messages * sv.m_scale))
                        r = measure(sv, s, d, m, a.size, timeout=120)
                        r["round"] = rnd
                        results.setdefault(sv.key, {}).setdefault(f"s{s}{'d' if d else ''}", []).append(r)
                        flag = "" if r["ok"] else f"  FAILED rc={r['rc']} {r.get('stderr', '')[:120]}"
                        print(f"round {rnd + 1}/{a.repeat} {sv.label:38s} -s {s:3d} {'-d' if d else '  '} "
                              f"{r['msg_per_s']:9,.0f} msg/s {r['server_cpu_us_per_msg']:8.1f} us/msg"
                              f"{flag}", flush=True)
                finally:
                    sv.stop()
            if out_of_budget:
                print(f"bench: budget of {a.budget:.0f}s spent, stopping early", file=sys.stderr)
                break
    finally:
        for sv in servers:
            sv.stop()
        shutil.rmtree(spool_root, ignore_errors=True)

    meta["machine_after"] = machine_state()
    summary = summarize(results, [s.key for s in servers])
    if not summary:
        print("bench: nothing measured", file=sys.stderr)
        return 1
    tbl = table(summary, servers)
    extra = maildir_vs_discard(summary)
    ratios = durable_ratios(summary, a.durable)
    if ratios:
        extra = (extra + "\n\n" if extra else "") + ratios
    for sv in servers:
        if isinstance(sv, PostfixServer):
            meta["servers"][sv.key]["cpu_method"] = sv.cpu_method
    elapsed = time.monotonic() - started
    head = (f"{meta['date']}  {meta['cpus']} CPUs ({meta['cpu_model']}), kernel {meta['kernel']}, "
            f"mailport {meta['mailport_git']}, Postfix {meta['postfix']}, Haraka {meta['haraka']}, "
            f"aiosmtpd {meta['aiosmtpd']}; smtp-source -l {a.size}; median of {a.repeat} rounds; "
            f"{elapsed:.0f} s")
    head += f"; binary {meta['mailport_binary']}"
    head += f"; machine before {meta['machine_before']}, after {meta['machine_after']}"
    pf = meta["servers"].get("postfix-durable", {}).get("cpu_method")
    if pf:
        head += f"; Postfix CPU: {pf}"
    print()
    print(head)
    print()
    print(tbl)
    if extra:
        print()
        print(extra)
    for k, why in skipped.items():
        print(f"- skipped {k}: {why}")

    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc = {
        "meta": meta,
        "elapsed_s": round(elapsed, 1),
        "skipped": skipped,
        "summary": [{"server": k, "s": s, "d": d, **v} for (k, s, d), v in summary.items()],
        "runs": results,
        "table_markdown": tbl,
    }
    path = os.path.join(a.out, f"results-{stamp}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(a.out, f"table-{stamp}.md"), "w") as f:
        f.write(head + "\n\n" + tbl + "\n" + ("\n" + extra + "\n" if extra else ""))
    print(f"\nresults: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _on_sigterm(signum, frame):
    # Unwind through main()'s finally: the servers, Postfix's instance included, are stopped.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(main())
