#!/usr/bin/python3
"""scale.py: ten thousand concurrent sessions against mailport (issue 8, target 3).

Runs bench/loadgen against a fresh mailport for each scenario, so that memory
freed by an earlier one (glibc keeps it) does not hide the cost of the next:

  discard, saturating   10,000 sessions, 500 of them sending as fast as answered
  discard, 2,000 msg/s  the same 500 senders at about 2,000 messages/s in total
  maildir, 500 msg/s    100 senders at about 500 messages/s, every 250 after fsync

and, for comparison, the memory per idle session of the peers (smtp-sink,
Haraka, aiosmtpd) with 10,000 idle sessions and no mail. Prints a summary and
writes bench/results/scale-<stamp>.json. Every run is bounded (loadgen -T).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import bench

HERE = bench.HERE


def run_loadgen(loadgen, server, args, tmp, name, timeout):
    out = os.path.join(tmp, f"{name}.json")
    argv = [loadgen, "-p", str(server.port), "-P", str(server.proc.pid), "-j", out,
            "-T", str(timeout)] + args
    if server.http_port:
        argv += ["-x", f"127.0.0.1:{server.http_port}"]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(argv), "error": "timeout"}
    res = {"command": " ".join(argv), "wall_s": round(time.monotonic() - t0, 1),
           "stdout": r.stdout, "rc": r.returncode}
    if r.stderr.strip():
        res["stderr"] = r.stderr.strip()[:500]
    try:
        with open(out) as f:
            res["result"] = json.load(f)
    except (OSError, ValueError) as e:
        res["error"] = f"no result: {e}"
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailport", default=os.path.join(bench.ROOT, "build-bench", "mailport"))
    ap.add_argument("--loadgen", default=os.path.join(HERE, "loadgen"))
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--base-port", type=int, default=25000)
    ap.add_argument("--spool-parent", default="/var/tmp")
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()

    for p in (a.mailport, a.loadgen):
        if not os.access(p, os.X_OK):
            print(f"scale: {p} missing", file=sys.stderr)
            return 1
    tmp = tempfile.mkdtemp(prefix="mailport-scale-")
    spool_root = tempfile.mkdtemp(prefix="mailport-scale-spool-", dir=a.spool_parent)
    n = str(a.sessions)
    t = str(a.seconds)
    port = a.base_port
    scenarios = [
        ("discard-saturating", {"SMTPD_DELIVER": "discard"}, ["-n", n, "-a", "500", "-t", t]),
        ("discard-2000", {"SMTPD_DELIVER": "discard"}, ["-n", n, "-a", "500", "-t", t, "-r", "2000"]),
        ("maildir-500", {"SMTPD_DELIVER": "maildir"}, ["-n", n, "-a", "100", "-t", t, "-r", "500"]),
    ]
    results = {}
    for name, extra, lg in scenarios:
        port += 1
        env = bench.mailport_env(port, port + 1000, extra)
        sv = bench.Server(f"mailport-{name}", f"mailport {name}", [a.mailport], env=env, port=port,
                          http_port=port + 1000,
                          spool_base=spool_root if extra["SMTPD_DELIVER"] == "maildir" else None)
        if not sv.start(tmp):
            results[name] = {"error": "mailport did not start"}
            continue
        try:
            results[name] = run_loadgen(a.loadgen, sv, lg, tmp, name, 120)
        finally:
            sv.stop()
        print(f"== mailport {name}\n{results[name].get('stdout', results[name].get('error'))}", flush=True)

    if a.peers:
        peers = []
        port += 1
        peers.append(bench.Server("smtp-sink", "smtp-sink",
                                  ["smtp-sink", "-u", "nobody", "-m", "20000", f"127.0.0.1:{port}", "1024"],
                                  port=port))
        hb = bench.find_haraka()
        if hb:
            port += 1
            try:
                d = bench.haraka_instance(tmp, port, hb)
                peers.append(bench.Server("haraka", "Haraka", [hb, "-c", d], cwd=d, port=port))
            except (OSError, subprocess.SubprocessError):
                pass
        if bench.aiosmtpd_ok():
            port += 1
            peers.append(bench.Server("aiosmtpd", "aiosmtpd",
                                      ["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l",
                                       f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"], port=port))
        for sv in peers:
            if not sv.start(tmp):
                results[f"idle-{sv.key}"] = {"error": "did not start"}
                continue
            try:
                results[f"idle-{sv.key}"] = run_loadgen(a.loadgen, sv, ["-n", n, "-a", "0", "-t", "1"],
                                                        tmp, sv.key, 120)
            finally:
                sv.stop()
            print(f"== {sv.label}, idle only\n{results[f'idle-{sv.key}'].get('stdout', '')}", flush=True)

    lines = ["| scenario | idle sessions | bytes per idle session | msg/s | p50 ms | p99 ms | max ms "
             "| /livez max ms (fail) | NOOP max ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        x = r.get("result")
        if not x:
            lines.append(f"| {name} | failed: {r.get('error', '')} | | | | | | | |")
            continue
        lv = x.get("livez")
        lvmax = max((p["max_ms"] for p in lv.values()), default=-1) if lv else None
        lvfail = sum(p["failed"] + p["over_100ms"] for p in lv.values()) if lv else None
        nmax = max(p["max_ms"] for p in x["noop"].values())
        busy = x["senders"] > 0
        lines.append(
            f"| {name} | {x['idle']:,} | {x['bytes_per_idle_session']:,.0f} | "
            f"{x['msg_per_s']:,.0f} | " if busy else
            f"| {name} | {x['idle']:,} | {x['bytes_per_idle_session']:,.0f} | - | ")
        if busy:
            lines[-1] += (f"{x['lat_ms']['p50']:.2f} | {x['lat_ms']['p99']:.2f} | {x['lat_ms']['max']:.1f} | "
                          f"{lvmax:.1f} ({lvfail}) | {nmax:.1f} |" if lv else
                          f"{x['lat_ms']['p50']:.2f} | {x['lat_ms']['p99']:.2f} | {x['lat_ms']['max']:.1f} | - | "
                          f"{nmax:.1f} |")
        else:
            lines[-1] += f"- | - | - | {'-' if lvmax is None else f'{lvmax:.1f} ({lvfail})'} | {nmax:.1f} |"
    tbl = "\n".join(lines)
    print()
    print(tbl)
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(a.out, f"scale-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "mailport_git": bench.version_of(["git", "-C", bench.ROOT, "describe", "--always",
                                                     "--dirty"]),
                   "results": results, "table_markdown": tbl}, f, indent=1)
    with open(os.path.join(a.out, f"scale-{stamp}.md"), "w") as f:
        f.write(tbl + "\n")
    print(f"\nresults: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(spool_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
