#!/usr/bin/python3
"""cgstat.py: per-message figures from a callgrind output file.

usage: cgstat.py CALLGRIND_OUT MESSAGES [TOP]

Prints instructions (Ir) per message in total, the TOP functions by self cost
and by inclusive cost, and how many times per message the allocator and a few
system-call wrappers were called (callgrind records call counts, so this counts
malloc/free per message exactly, which perf cannot). Reads the plain callgrind
format: name compression "(id) name", cost lines "pos cost" after fn=, and
"calls=N pos" followed by the inclusive cost line of that call.
"""

import collections
import re
import sys

WATCH = ["malloc", "calloc", "realloc", "free", "memmove", "memcpy",
         "__libc_write", "write", "writev", "__libc_writev", "read", "__libc_read", "epoll_wait",
         "epoll_ctl", "accept4", "close", "__close", "clock_gettime", "__clock_gettime",
         "fwrite", "_IO_fwrite", "vsnprintf", "__vsnprintf_internal", "snprintf", "strftime",
         "uv_try_write", "uv_write", "uv_read_start", "uv_read_stop", "uv_timer_start",
         "uv_timer_stop", "uv__io_start", "uv__io_stop", "getpeername", "setsockopt",
         "log_event", "log_event.part.0", "session_alloc", "smtp_proto_feed", "buf_append",
         "smtp_proto_new", "smtp_proto_free", "deliver_job_new", "spool_store"]


def parse(path):
    names = {}
    self_cost = collections.Counter()
    incl_calls = collections.Counter()  # caller -> sum of inclusive cost of its calls
    calls = collections.Counter()       # callee -> number of calls
    fn = None
    cfn = None
    pending_call = False
    total = None
    rx_name = re.compile(r"^\((\d+)\)(?: (.*))?$")

    def resolve(v):
        m = rx_name.match(v)
        if not m:
            return v
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
            return m.group(2)
        return names.get(m.group(1), v)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    incl_calls[fn] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                continue
            if line.startswith("fn="):
                fn = resolve(line[3:])
            elif line.startswith("cfn="):
                cfn = resolve(line[4:])
            elif line.startswith("calls="):
                n = int(line[6:].split()[0])
                calls[cfn] += n
                pending_call = True
            elif line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    if total is None:
        total = sum(self_cost.values())
    incl = {k: self_cost[k] + incl_calls[k] for k in set(self_cost) | set(incl_calls)}
    return total, self_cost, incl, calls


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, msgs = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    total, self_cost, incl, calls = parse(path)
    print(f"{path}: {total:,} Ir for {msgs} messages = {total / msgs:,.0f} Ir per message")
    print(f"\nTop {top} by self cost (Ir per message, share):")
    for name, c in self_cost.most_common(top):
        print(f"  {c / msgs:10,.0f}  {100 * c / total:5.1f}%  {name}")
    print(f"\nTop {top} by inclusive cost (Ir per message, share):")
    skip = {"main", "server_run", "(below main)", "__libc_start_main", "uv_run", "0x000000000001ab70"}
    shown = 0
    for name, c in sorted(incl.items(), key=lambda kv: -kv[1]):
        if name in skip or name.startswith("__libc_start") or name.startswith("0x"):
            continue
        print(f"  {c / msgs:10,.0f}  {100 * c / total:5.1f}%  {name}")
        shown += 1
        if shown >= top:
            break
    print("\nCalls per message:")
    for name in WATCH:
        if calls.get(name):
            print(f"  {calls[name] / msgs:8.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
