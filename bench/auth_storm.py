#!/usr/bin/python3
"""auth_storm.py: does a storm of wrong AUTH passwords delay other clients' 250? (issue 12)

mailport runs (Release binary, SMTPD_DELIVER=maildir on a fresh spool under
/var/tmp, SMTPD_AUTH=optional, SMTPD_AUTH_INSECURE=1, a users file with one
yescrypt user whose check costs tens of ms), and in each round:

  (a) quiet: the measuring client sends the smtp-source load (-s 20 -m 2000
      -l 1024: 20 concurrent sessions, 2,000 messages of 1 KiB) and timestamps
      each message's final "." and its 250: end-of-data-to-250 latency;
  (b) storm: the same, while 50 clients hammer AUTH PLAIN with wrong passwords
      in a loop (a new connection per attempt, so the growing delay of one
      session's failures does not slow them; bounded by --storm-seconds).

smtp-source cannot report that latency, hence the client here (asyncio, one
process); the attackers run in a second process so that they do not hold up
its event loop. --smtp-source adds a real `smtp-source -s 20 -m 2000 -l 1024`
alongside as extra load in both phases. It prints p50/p99 for (a) and (b) and
the ratio (b)/(a); the issue's target is p99 within 1.5x. --compare runs a
second binary (e.g. a build before the change) in the same rounds, interleaved.

Loopback only; every wait is bounded (per read --timeout, per phase
--phase-timeout, the storm --storm-seconds). Never part of ctest. Exit status:
0 when figures were printed, 1 when nothing could be measured.
"""

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except OSError:
        return None


def thread_ticks(pid):
    """CPU ticks of the server by thread: the loop (the main thread), the
    AUTH workers (named mailport-auth) and the rest (libuv's pool: fsync)."""
    out = {"loop": 0, "auth": 0, "other": 0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            rest = rest.split()
            ticks = int(rest[11]) + int(rest[12])
        except (OSError, ValueError, IndexError):
            continue
        comm = head.split("(", 1)[1]
        key = "loop" if tid == str(pid) else "auth" if comm == "mailport-auth" else "other"
        out[key] += ticks
    return out


def pct(values, p):
    """The p-th percentile, nearest rank."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def make_hash(password, method, cost):
    """A hash made by mkpasswd (package whois): yescrypt or bcrypt of the given
    cost, or SHA-512 with `cost` rounds; without mkpasswd SHA-512 with many
    rounds (Python's crypt), else openssl passwd -6 (5,000 rounds)."""
    if shutil.which("mkpasswd"):
        r = subprocess.run(["mkpasswd", "-m", {"sha512": "sha512crypt"}.get(method, method),
                            "-R", str(cost), password],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return r.stdout.strip()
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=200000))
    except ImportError:
        r = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True,
                           text=True, timeout=30, check=True)
        return r.stdout.strip()


def check_cost_ms(hash_):
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
    except ImportError:
        return None
    t0 = time.perf_counter()
    for _ in range(5):
        crypt.crypt("wrong", hash_)
    return (time.perf_counter() - t0) / 5 * 1000


# ---------------------------------------------------------------- SMTP, asyncio

async def reply(reader, timeout):
    """One SMTP reply: (code, last line)."""
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), line


async def expect(reader, want, timeout):
    code, line = await reply(reader, timeout)
    if code != want:
        raise RuntimeError("want %d, got %r" % (want, line))


async def sender(port, body, counter, total, lat, errors, timeout):
    """One session: messages until `total` have been taken, each timed from the
    write of its final "." to its 250."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        errors.append("connect: %r" % e)
        return
    try:
        await expect(reader, 220, timeout)
        writer.write(b"EHLO bench.example\r\n")
        await expect(reader, 250, timeout)
        while counter[0] < total:
            counter[0] += 1
            for cmd, want in ((b"MAIL FROM:<a@bench.example>\r\n", 250),
                              (b"RCPT TO:<b@bench.example>\r\n", 250), (b"DATA\r\n", 354)):
                writer.write(cmd)
                await expect(reader, want, timeout)
            t0 = time.perf_counter()
            writer.write(body)
            code, line = await reply(reader, timeout)
            t1 = time.perf_counter()
            if code != 250:
                errors.append("data: %r" % line)
                continue
            lat.append(t1 - t0)
        writer.write(b"QUIT\r\n")
        await reply(reader, timeout)
    except (OSError, ConnectionError, RuntimeError, asyncio.TimeoutError) as e:
        errors.append("session: %r" % e)
    finally:
        writer.close()


async def measure(port, sessions, messages, size, timeout, phase_timeout, warmup):
    line = b"X" * 78 + b"\r\n"
    text = b"Subject: bench\r\n\r\n" + line * max(1, (size - 20) // len(line))
    body = text + b".\r\n"
    # A few unmeasured messages first: connections, page cache, first spool files.
    await asyncio.wait_for(asyncio.gather(*[sender(port, body, [0], warmup // sessions + 1, [],
                                                    [], timeout) for _ in range(sessions)]),
                           phase_timeout)
    lat, errors, counter = [], [], [0]
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*[sender(port, body, counter, messages, lat, errors,
                                                       timeout) for _ in range(sessions)]),
                               phase_timeout)
    except asyncio.TimeoutError:
        errors.append("phase timeout")
    return lat, errors, time.monotonic() - t0


# ---------------------------------------------------------------- the attackers

async def attacker(port, deadline, stopfile, counts, timeout):
    auth = b"AUTH PLAIN " + base64.b64encode(b"\0victim\0wrong-password") + b"\r\n"
    while time.monotonic() < deadline and not os.path.exists(stopfile):
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
            try:
                await expect(reader, 220, timeout)
                writer.write(b"EHLO storm.example\r\n")
                await expect(reader, 250, timeout)
                writer.write(auth)
                code, _ = await reply(reader, timeout)
                counts[str(code)] = counts.get(str(code), 0) + 1
                counts["wait_s"] = counts.get("wait_s", 0.0) + time.monotonic() - t0
            finally:
                writer.close()
        except (OSError, ConnectionError, RuntimeError, asyncio.TimeoutError):
            counts["errors"] = counts.get("errors", 0) + 1
            await asyncio.sleep(0.1)


def attack_main(port, clients, seconds, stopfile, timeout):
    """The storm, in its own process: JSON counts on stdout when it ends."""
    counts = {}
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()

    async def run():
        await asyncio.gather(*[attacker(port, deadline, stopfile, counts, timeout)
                               for _ in range(clients)])

    asyncio.run(run())
    counts["seconds"] = round(time.monotonic() - t0, 1)
    t = os.times()
    counts["cpu_s"] = round(t.user + t.system, 2)
    print(json.dumps(counts), flush=True)


# ---------------------------------------------------------------- one phase

def start_server(binary, tmp, users, name):
    port, http = free_port(), free_port()
    spool = tempfile.mkdtemp(prefix="spool-", dir=tmp)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SMTPD_") and k != "UV_THREADPOOL_SIZE"}
    env.update({"SMTPD_HOSTS": HOST, "SMTPD_PORTS": str(port), "SMTPD_HTTP": f"{HOST}:{http}",
                "SMTPD_HOSTNAME": "bench.test", "SMTPD_SPOOL": spool,
                "SMTPD_DELIVER": "maildir", "SMTPD_AUTH": "optional",
                "SMTPD_AUTH_INSECURE": "1", "SMTPD_AUTH_USERS_FILE": users,
                "SMTPD_LOG_LEVEL": "warn", "SMTPD_MAX_CONNECTIONS": "20000",
                "SMTPD_MAX_CONNECTIONS_PER_CLIENT": "20000",
                # Every attacker is 127.0.0.1: without this the per-address
                # limit (issue 13; a warning, ignored, in older builds) would
                # refuse them before any check, and the pool would not be
                # what is measured.
                "SMTPD_AUTH_MAX_FAILURES": "0"})
    log = open(os.path.join(tmp, name + ".log"), "ab")
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    end = time.monotonic() + 20
    while time.monotonic() < end and proc.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    return proc, port, log, spool, http
        except OSError:
            time.sleep(0.1)
    stop_server(proc, log, spool)
    return None, None, None, None, None


def stop_server(proc, log, spool):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if log:
        log.close()
    if spool:
        shutil.rmtree(spool, ignore_errors=True)


def run_loadgen(a, port, http, pid, tmp, name):
    """bench/loadgen as the measuring client: -a senders for --seconds (at
    --rate msg/s in total when given), with /livez and NOOP probed every
    100 ms: what a health check sees during the storm."""
    out = os.path.join(tmp, name + ".loadgen.json")
    argv = [a.loadgen, "-p", str(port), "-n", str(a.sessions), "-a", str(a.sessions),
            "-t", str(a.seconds), "-l", str(a.size), "-P", str(pid), "-x", f"{HOST}:{http}",
            "-T", str(int(a.phase_timeout)), "-j", out]
    if a.rate:
        argv += ["-r", str(a.rate)]
    try:
        subprocess.run(argv, capture_output=True, text=True, timeout=a.phase_timeout + 30)
        with open(out) as f:
            j = json.load(f)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"n": 0, "nerrors": 1, "errors": ["loadgen: %r" % e]}
    lat = j["lat_ms"]
    res = {"n": lat["n"], "nerrors": j["mail_errors"], "errors": [],
           "seconds": j["send_s"], "msg_per_s": j["msg_per_s"], "p50_ms": lat["p50"],
           "p99_ms": lat["p99"], "max_ms": lat["max"]}
    for probe in ("livez", "noop"):
        ps = j.get(probe, {}).get("mail")
        if ps:
            res[probe] = {k: ps[k] for k in ("ok", "failed", "over_100ms", "p50_ms", "p99_ms",
                                             "max_ms")}
    return res


def phase(a, binary, tmp, users, storm, name):
    proc, port, log, spool, http = start_server(binary, tmp, users, name)
    if proc is None:
        return {"error": "server did not start (see %s.log)" % name}
    attack, extra, stopfile = None, None, os.path.join(tmp, name + ".stop")
    res = {}
    try:
        if storm:
            attack = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--attack", str(port),
                 str(a.attackers), str(a.storm_seconds), stopfile, str(a.timeout)],
                stdout=subprocess.PIPE, text=True)
            time.sleep(a.storm_warmup)  # let the storm reach its pace
        if a.smtp_source and shutil.which("smtp-source"):
            extra = subprocess.Popen(["smtp-source", "-s", str(a.sessions), "-m",
                                      str(a.messages), "-l", str(a.size), f"{HOST}:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, t0, th0 = cpu_ticks(proc.pid), time.monotonic(), thread_ticks(proc.pid)
        if a.client == "loadgen":
            res = run_loadgen(a, port, http, proc.pid, tmp, name)
        else:
            c0 = os.times()
            lat, errors, took = asyncio.run(measure(port, a.sessions, a.messages, a.size,
                                                    a.timeout, a.phase_timeout, a.warmup))
            c1 = os.times()
            res = {"n": len(lat), "errors": errors[:5], "nerrors": len(errors),
                   "seconds": round(took, 2),
                   "msg_per_s": round(len(lat) / took, 1) if took else None,
                   "p50_ms": pct(lat, 50) * 1000 if lat else None,
                   "p99_ms": pct(lat, 99) * 1000 if lat else None,
                   "max_ms": max(lat) * 1000 if lat else None,
                   "client_cpu_s": round(c1.user + c1.system - c0.user - c0.system, 2)}
        cpu1, th1 = cpu_ticks(proc.pid), thread_ticks(proc.pid)
        # Threads that exited in between are missed: a cross-check only.
        res["threads_cpu_s"] = {k: round((th1[k] - th0[k]) / CLK_TCK, 2) for k in th0}
        res.update({"server_cpu_s": (cpu1 - cpu0) / CLK_TCK if cpu0 is not None and cpu1 else None,
                    "wall_s": round(time.monotonic() - t0, 2)})
    finally:
        if extra is not None:
            try:
                extra.wait(timeout=a.phase_timeout)
            except subprocess.TimeoutExpired:
                extra.kill()
                extra.wait()
        if attack is not None:
            open(stopfile, "w").close()
            try:
                out, _ = attack.communicate(timeout=a.storm_seconds + 3 * a.timeout)
                res["storm"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            except (subprocess.TimeoutExpired, ValueError):
                attack.kill()
                attack.wait()
                res["storm"] = {"error": "the attackers did not report"}
        stop_server(proc, log, spool)
    return res


def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        port, clients, seconds, stopfile, timeout = sys.argv[2:7]
        attack_main(int(port), int(clients), float(seconds), stopfile, float(timeout))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailport", default=os.path.join(ROOT, "build-bench", "mailport"))
    ap.add_argument("--label", default="current")
    ap.add_argument("--compare", action="append", default=[], metavar="PATH:LABEL",
                    help="another binary, measured in the same rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=200, help="unmeasured messages per phase")
    ap.add_argument("--attackers", type=int, default=50)
    ap.add_argument("--storm-seconds", type=float, default=30.0)
    ap.add_argument("--storm-warmup", type=float, default=3.0)
    ap.add_argument("--hash", choices=("yescrypt", "bcrypt", "sha512"), default="yescrypt")
    ap.add_argument("--cost", type=int, default=None,
                    help="mkpasswd -R: yescrypt 6 (default; ~35 ms here), bcrypt 9, "
                         "sha512 40000 rounds (each ~30-40 ms here)")
    ap.add_argument("--client", choices=("python", "loadgen"), default="python",
                    help="the measuring client: python (--messages, closed loop) or "
                         "bench/loadgen (--seconds, optional --rate; adds /livez and NOOP)")
    ap.add_argument("--loadgen", default=os.path.join(HERE, "loadgen"))
    ap.add_argument("--seconds", type=float, default=5.0, help="loadgen: sending time")
    ap.add_argument("--rate", type=int, default=0, help="loadgen: messages/s in total")
    ap.add_argument("--smtp-source", action="store_true",
                    help="also run smtp-source -s S -m M -l SIZE as extra load")
    ap.add_argument("--timeout", type=float, default=30.0, help="per SMTP reply")
    ap.add_argument("--phase-timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    a.storm_seconds = min(a.storm_seconds, a.phase_timeout)

    binaries = [(a.mailport, a.label)]
    for c in a.compare:
        path, _, label = c.partition(":")
        binaries.append((path, label or path))
    for path, _ in binaries:
        if not os.access(path, os.X_OK):
            print("no binary at %s (build: cmake -S . -B build-bench "
                  "-DCMAKE_BUILD_TYPE=Release && cmake --build build-bench --target mailport)" % path,
                  file=sys.stderr)
            return 1
    if a.client == "loadgen" and not os.access(a.loadgen, os.X_OK):
        print("no %s: cc -O2 -o bench/loadgen bench/loadgen.c $(pkg-config --cflags --libs "
              "libuv)" % a.loadgen, file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="mailport-authstorm-", dir="/var/tmp")
    users = os.path.join(tmp, "users")
    if a.cost is None:
        a.cost = {"yescrypt": 6, "bcrypt": 9, "sha512": 40000}[a.hash]
    h = make_hash("the-right-one", a.hash, a.cost)
    with open(users, "w") as f:
        f.write("victim:%s\n" % h)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu_model": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                           if ln.startswith("model name")), None),
        "hash": h[:h.rfind("$")] + "$...", "check_ms": check_cost_ms(h),
        "args": vars(a),
    }
    print("auth_storm: %d CPUs (%s), one check costs %s ms (%s); %d sessions, %d messages "
          "of %d B; storm: %d clients, at most %.0f s" %
          (meta["cpus"], meta["cpu_model"], fmt(meta["check_ms"]), meta["hash"], a.sessions,
           a.messages, a.size, a.attackers, a.storm_seconds), flush=True)
    rounds = []
    try:
        for r in range(a.rounds):
            for path, label in binaries:
                for storm in (False, True):
                    name = "%s-r%d-%s" % (label, r + 1, "storm" if storm else "quiet")
                    res = phase(a, path, tmp, users, storm, name)
                    res.update({"round": r + 1, "label": label, "phase": "b" if storm else "a"})
                    rounds.append(res)
                    st = res.get("storm") if storm else None
                    lz = res.get("livez")
                    print("  %-28s n=%-5s p50 %8s ms  p99 %8s ms  max %8s ms  %7s msg/s  "
                          "server CPU %5s s %s%s%s%s" %
                          (name, res.get("n"), fmt(res.get("p50_ms"), 2),
                           fmt(res.get("p99_ms"), 2), fmt(res.get("max_ms"), 1),
                           fmt(res.get("msg_per_s"), 0), fmt(res.get("server_cpu_s"), 2),
                           json.dumps(res.get("threads_cpu_s")),
                           "  /livez p99 %s ms max %s ms" % (fmt(lz["p99_ms"], 1),
                                                            fmt(lz["max_ms"], 1)) if lz else "",
                           "  storm %s" % json.dumps(st) if st else "",
                           "  ERRORS %d %s" % (res["nerrors"], res["errors"][:2])
                           if res.get("nerrors") else ""), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n| binary | phase | p50 ms | p99 ms | (b)/(a) p50 | (b)/(a) p99 |")
    print("|---|---|---:|---:|---:|---:|")
    ok = False
    summary = {}
    for _, label in binaries:
        med = {}
        for ph in ("a", "b"):
            rs = [x for x in rounds if x["label"] == label and x["phase"] == ph
                  and x.get("p99_ms") is not None]
            med[ph] = {k: statistics.median([x[k] for x in rs]) if rs else None
                       for k in ("p50_ms", "p99_ms")}
        r50 = med["b"]["p50_ms"] / med["a"]["p50_ms"] if med["a"]["p50_ms"] and med["b"]["p50_ms"] else None
        r99 = med["b"]["p99_ms"] / med["a"]["p99_ms"] if med["a"]["p99_ms"] and med["b"]["p99_ms"] else None
        ok |= r99 is not None
        summary[label] = {"median": med, "ratio_p50": r50, "ratio_p99": r99}
        print("| %s | (a) quiet | %s | %s | | |" % (label, fmt(med["a"]["p50_ms"], 2),
                                                   fmt(med["a"]["p99_ms"], 2)))
        print("| %s | (b) AUTH storm | %s | %s | %s | **%s** |" %
              (label, fmt(med["b"]["p50_ms"], 2), fmt(med["b"]["p99_ms"], 2), fmt(r50, 2),
               fmt(r99, 2)))
    print("\nmedians of %d round(s); target: (b)/(a) p99 <= 1.5" % a.rounds)
    out = a.json or os.path.join(HERE, "results", "auth-storm-%s.json" %
                                 datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "rounds": rounds, "summary": summary}, f, indent=1)
    print("raw data: %s" % os.path.relpath(out, ROOT))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
