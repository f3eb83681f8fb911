#!/usr/bin/env python3
"""Issue 17: the messages API's search and MIME costs, on a Release mailport.

1. Search over a spool of N pre-made messages (default 100,000 in cur/, each
   with its meta/ envelope; From, To and Subject vary): the first ?q= after the
   start (it builds every message's search text once), then SAMPLES sequential
   requests per phase on one keep-alive connection:
     list       GET /messages?limit=50                (the reference: no search)
     q-word     GET /messages?q=topic-42&limit=50     (1 % of the spool matches)
     q-one      GET /messages?q=subject:"bench 12345" (one match)
     q-prefix   GET /messages?q=from:user7@ to:team7  (two fields narrowed)
     q-none     GET /messages?q=nothing-matches
     q-cursor   GET /messages?q=topic-42&limit=50&before=<the 250th match>
   p50 / p99 / max per phase against the issue's target (p99 < 50 ms), and the
   ratio of each p99 to the list's.
2. One message of ~10 MiB with 20 attachments (random bytes, base64), sent by
   SMTP to a fresh mailport: GET /messages/{id} (parts: every attachment decoded
   once to count its size), GET /messages/{id}/parts/<one 500 KiB attachment>,
   and as the reference GET /messages/{id}/raw (the file sent as is): time per
   request (median and max of REPEAT) and mailport's peak RSS (VmHWM) before
   and after the parsing requests.

  bench/mime.py [--messages N] [--samples N] [--repeat N] [--bin PATH] [--json FILE]

Loopback only; every loop is bounded. Not a test: it prints."""
import argparse
import base64
import http.client
import json
import os
import random
import shutil
import smtplib
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

ROOT = os.path.dirname(HERE)


def make_spool(spool, n):
    """n messages in cur/ with envelopes in meta/, ids like mailport's, oldest
    first. Message i: From user<i % 1000>@x.example, To team<i % 50>@y.example,
    Subject "bench <i> topic-<i % 100>"."""
    for d in ("tmp", "new", "cur", "meta", "failed"):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    t0 = 1_700_000_000
    for i in range(n):
        mid = "%d.M%06dP1Q%d.bench" % (t0 + i // 1000, i % 1000, i)
        body = ("Return-Path: <bounce%d@x.example>\nReceived: from bench\n"
                "From: User %d <user%d@x.example>\nTo: team%d@y.example\n"
                "Subject: bench %d topic-%d\nMIME-Version: 1.0\n\nhello %d\n"
                % (i, i % 1000, i % 1000, i % 50, i, i % 100, i))
        with open(os.path.join(spool, "cur", mid), "w") as f:
            f.write(body)
        env = {"id": mid, "mail_from": "bounce%d@x.example" % i,
               "rcpt_to": ["team%d@y.example" % (i % 50)],
               "client": {"address": "127.0.0.1", "port": 40000}, "helo": "bench",
               "local": {"address": "127.0.0.1", "port": 2525}, "auth_user": None,
               "tls": None, "proxy": None, "size": len(body),
               "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                            time.gmtime(t0 + i // 1000))}
        with open(os.path.join(spool, "meta", mid + ".json"), "w") as f:
            json.dump(env, f)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def timed_get(conn, path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    if r.status != 200:
        raise RuntimeError("GET %s: %d %r" % (path, r.status, body[:200]))
    return dt, body


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return None


def start(binary, spool, log):
    smtp, http_port = benchlib.free_port(), benchlib.free_port()
    settings = {"SMTPD_SPOOL": spool, "SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": str(smtp),
                "SMTPD_HTTP": "127.0.0.1:%d" % http_port, "SMTPD_HOSTNAME": "bench.example",
                "SMTPD_MAX_MESSAGE_SIZE": "64M", "SMTPD_LOG_LEVEL": "warn"}
    proc, ready = benchlib.spawn_mailport(binary, smtp, settings, log)
    if not ready:
        raise RuntimeError("mailport did not start; see its log")
    return proc, smtp, http_port


def search_phases(binary, n, samples, tmp, log):
    spool = os.path.join(tmp, "spool-search")
    t = time.monotonic()
    make_spool(spool, n)
    made = time.monotonic() - t
    t = time.monotonic()
    proc, _, port = start(binary, spool, log)
    started = time.monotonic() - t
    out = {"messages": n, "spool_made_s": round(made, 1), "start_s": round(started, 2)}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rss0 = vm(proc.pid, "VmRSS")
        dt, body = timed_get(conn, "/messages?q=warm-up-builds-the-search-text&limit=1")
        out["first_search_ms"] = round(dt * 1000, 1)
        out["rss_kb_before_first_search"] = rss0
        out["rss_kb_after_first_search"] = vm(proc.pid, "VmRSS")
        q = urllib.parse.quote
        matches = json.loads(timed_get(conn, "/messages?q=topic-42&limit=500")[1])["messages"]
        cursor = matches[len(matches) // 2]["id"]
        phases = [
            ("list", "/messages?limit=50"),
            ("q-word", "/messages?q=topic-42&limit=50"),
            ("q-one", "/messages?q=" + q('subject:"bench 12345 "')),
            ("q-prefix", "/messages?q=" + q("from:user7@ to:team7")),
            ("q-none", "/messages?q=nothing-matches"),
            ("q-cursor", "/messages?q=topic-42&limit=50&before=" + cursor),
        ]
        res = {}
        for name, path in phases:
            times, total = [], None
            for _ in range(5):  # warm-up
                timed_get(conn, path)
            for _ in range(samples):
                dt, body = timed_get(conn, path)
                times.append(dt)
            d = json.loads(body)
            res[name] = {"path": path, "n": samples, "total": d["total"],
                         "returned": len(d["messages"]),
                         "p50_ms": pct(times, 50) * 1000, "p99_ms": pct(times, 99) * 1000,
                         "max_ms": max(times) * 1000}
        out["phases"] = res
        out["rss_kb_end"] = vm(proc.pid, "VmRSS")
        conn.close()
    finally:
        benchlib.stop_mailport(proc)
    shutil.rmtree(spool, ignore_errors=True)
    return out


def big_message(natt, att_size):
    rnd = random.Random(17)
    parts = ["From: big@x.example\r\nTo: b@y.example\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n--BOUNDARY\r\n"
             "Content-Type: text/plain; charset=utf-8\r\n\r\nTwenty attachments.\r\n"]
    atts = []
    for k in range(natt):
        data = rnd.randbytes(att_size)
        atts.append(data)
        b = base64.encodebytes(data).decode().replace("\n", "\r\n")
        parts.append("--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Disposition: attachment; filename=\"file%02d.bin\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n%s" % (k, b))
    parts.append("--BOUNDARY--\r\n")
    return "".join(parts).encode(), atts


def big_phase(binary, repeat, tmp, log):
    spool = os.path.join(tmp, "spool-big")
    msg, atts = big_message(20, 384 * 1024)
    proc, smtp, port = start(binary, spool, log)
    out = {"message_bytes": len(msg), "attachments": len(atts), "attachment_bytes": len(atts[0])}
    try:
        s = smtplib.SMTP("127.0.0.1", smtp, timeout=60)
        s.sendmail("big@x.example", ["b@y.example"], msg)
        s.quit()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mid = json.loads(timed_get(conn, "/messages")[1])["messages"][0]["id"]
        out["hwm_kb_after_receive"] = vm(proc.pid, "VmHWM")
        out["rss_kb_after_receive"] = vm(proc.pid, "VmRSS")
        for name, path in (("raw", "/messages/%s/raw" % mid),
                           ("message", "/messages/%s" % mid),
                           ("part", "/messages/%s/parts/11" % mid)):
            times = []
            for _ in range(repeat):
                dt, body = timed_get(conn, path)
                times.append(dt)
            if name == "message":
                p = json.loads(body)["parts"]
                ok = [a["size"] for a in p["attachments"]] == [len(a) for a in atts]
                out["sizes_correct"] = ok
            if name == "part":
                out["part_correct"] = body == atts[9]  # part 1 is the text
            out[name] = {"path": path, "n": repeat, "median_ms": pct(times, 50) * 1000,
                         "max_ms": max(times) * 1000, "bytes": len(body),
                         "hwm_kb_after": vm(proc.pid, "VmHWM")}
        conn.close()
    finally:
        benchlib.stop_mailport(proc)
    shutil.rmtree(spool, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "mailport"))
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mailport-bench-mime-", dir="/var/tmp")
    cleanup.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    log = open(os.path.join(tmp, "mailport.log"), "wb")
    result = {"binary": benchlib.binary_id(a.bin), "machine_before": benchlib.machine_state(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result["search"] = search_phases(a.bin, a.messages, a.samples, tmp, log)
    result["big"] = big_phase(a.bin, a.repeat, tmp, log)
    result["machine_after"] = benchlib.machine_state()
    s = result["search"]
    print("binary:", result["binary"])
    print("machine:", result["machine_before"], "->", result["machine_after"])
    print("search over %d messages (spool made in %.0f s, start %.2f s): first ?q= %.0f ms "
          "(builds the search text; RSS %d -> %d kB)"
          % (s["messages"], s["spool_made_s"], s["start_s"], s["first_search_ms"],
             s["rss_kb_before_first_search"], s["rss_kb_after_first_search"]))
    ref = s["phases"]["list"]["p99_ms"]
    print("%-9s %8s %8s %8s %8s %8s %9s  %s" % ("phase", "total", "rows", "p50 ms", "p99 ms",
                                               "max ms", "p99/list", "target p99 < 50 ms"))
    for name, r in s["phases"].items():
        print("%-9s %8d %8d %8.2f %8.2f %8.2f %9.2f  %s"
              % (name, r["total"], r["returned"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                 r["p99_ms"] / ref, "ok" if r["p99_ms"] < 50 else "MISSED"))
    b = result["big"]
    print("big message: %d bytes, %d attachments of %d bytes; sizes correct %s, part correct %s"
          % (b["message_bytes"], b["attachments"], b["attachment_bytes"], b["sizes_correct"],
             b["part_correct"]))
    print("  VmHWM after receive %d kB (RSS %d kB)" % (b["hwm_kb_after_receive"],
                                                      b["rss_kb_after_receive"]))
    for name in ("raw", "message", "part"):
        r = b[name]
        print("  %-8s median %8.2f ms  max %8.2f ms  %9d bytes  VmHWM after %d kB  (%.2f x raw)"
              % (name, r["median_ms"], r["max_ms"], r["bytes"], r["hwm_kb_after"],
                 r["median_ms"] / b["raw"]["median_ms"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


cleanup = []
if __name__ == "__main__":
    benchlib.run_main(main, cleanup)
