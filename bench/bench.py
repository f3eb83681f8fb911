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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")

CASES = [(10, False), (10, True), (100, False), (100, True)]


# ---------------------------------------------------------------- process facts

def proc_stat(pid):
    """(utime, stime, minflt) of the whole process, all threads: utime and
    stime in clock ticks, fields 14 and 15 of /proc/<pid>/stat, minflt field 10."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state).
    return int(rest[11]), int(rest[12]), int(rest[7])


def proc_cpu_ns(pid):
    """Sum of sum_exec_runtime (ns) over the live threads: a finer cross-check
    of the tick-based figure (threads that exited in between are missed)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        return None
    return total


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def wait_banner(port, timeout, proc):
    """Connect until the server greets with 220, bounded by timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                data = s.recv(512)
                if data.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    try:
                        s.recv(512)
                    except OSError:
                        pass
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def http_get(port, path, timeout=2.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


def mailport_accepted(http_port):
    text = http_get(http_port, "/metrics")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("mailport_messages_accepted_total"):
            return int(float(line.split()[-1]))
    return None


# ---------------------------------------------------------------- servers

class Server:
    """One server under test: how to start it and how to check its count."""

    def __init__(self, key, label, argv, env=None, cwd=None, port=None, http_port=None,
                 spool_base=None, m_scale=1.0, note=""):
        self.key, self.label, self.argv = key, label, argv
        self.env, self.cwd, self.port, self.http_port = env, cwd, port, http_port
        self.spool_base, self.m_scale, self.note = spool_base, m_scale, note
        self.spool = None
        self.starts = 0
        self.proc = None
        self.log = None

    def start(self, tmp):
        if self.spool_base:
            # A fresh spool for every start: deleting thousands of files between
            # cases would make ext4 slower at creating the next ones
            # (recently_deleted() in the inode allocator) and bias the figures.
            self.starts += 1
            self.spool = os.path.join(self.spool_base, f"spool-{self.starts}")
            self.env["SMTPD_SPOOL"] = self.spool
        self.log = open(os.path.join(tmp, f"{self.key}.log"), "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        if not wait_banner(self.port, 20, self.proc):
            self.stop()
            return False
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def cpu(self):
        """CPU used so far: user and system seconds, minor faults, and the
        nanosecond cross-check (schedstat of the live threads)."""
        pid = self.proc.pid
        u, st, minflt = proc_stat(pid)
        return {"user_s": u / CLK_TCK, "sys_s": st / CLK_TCK, "minflt": minflt,
                "ns": proc_cpu_ns(pid)}

    def rss_kib(self):
        try:
            return proc_rss_kib(self.proc.pid)
        except OSError:
            return None

    def accepted(self):
        """Messages the server itself counted, when it can tell (else None)."""
        if self.spool:
            try:
                return len(os.listdir(os.path.join(self.spool, "new")))
            except OSError:
                return None
        if self.http_port:
            return mailport_accepted(self.http_port)
        return None



# ---------------------------------------------------------------- Postfix

POSTFIX_MASTER_CF = """\
# bench.py: a private Postfix instance, loopback only, nothing delivered.
{listen} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_main_cf(base, process_limit, extra=()):
    """main.cf of a private instance under base/ (conf/, queue/, data/, maillog).

    Every message is put on hold at the end of DATA, so smtpd, cleanup (which
    writes the queue file and fsyncs it before smtpd answers 250) and the
    rename into hold/ all run, and the queue manager never delivers anything."""
    host = socket.gethostname()
    return "\n".join([
        "# bench.py: a private Postfix instance (postfix -c THIS_DIR); /etc/postfix is not used.",
        "compatibility_level = 3.6",
        f"queue_directory = {base}/queue",
        f"data_directory = {base}/data",
        "command_directory = /usr/sbin",
        "daemon_directory = /usr/lib/postfix/sbin",
        "shlib_directory = /usr/lib/postfix",
        "meta_directory = /etc/postfix",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "myhostname = bench.test",
        "mydomain = bench.test",
        "myorigin = bench.test",
        # smtp-source sends from and to foo@<the machine's hostname>.
        f"mydestination = bench.test, localhost, {host}",
        "relay_domains =",
        "local_recipient_maps =",
        "alias_maps =",
        "alias_database =",
        "mynetworks = 127.0.0.0/8",
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        "smtpd_peername_lookup = no",
        "smtpd_end_of_data_restrictions = check_client_access static:HOLD",
        f"default_process_limit = {process_limit}",
        # Logged through postlogd to a file of the instance: Postfix's own logging
        # is counted in its CPU as mailport's is in mailport's (no syslogd here).
        f"maillog_file = {base}/maillog",
        "biff = no",
        *[f"{k.strip()} = {v.strip()}" for k, v in (kv.split("=", 1) for kv in extra)],
        "",
    ])


def cgroup_dir(name):
    """A new cgroup to count a process tree's CPU, reaped children included:
    cgroup v1 cpuacct (ns counters) when mounted, else cgroup v2. None when
    neither can be created (not root, read-only /sys/fs/cgroup)."""
    for root, kind in (("/sys/fs/cgroup/cpuacct", "v1"), ("/sys/fs/cgroup/unified", "v2"),
                       ("/sys/fs/cgroup", "v2")):
        probe = "cpuacct.usage" if kind == "v1" else "cgroup.controllers"
        if not os.path.exists(os.path.join(root, probe)):
            continue
        d = os.path.join(root, name)
        try:
            os.mkdir(d)
        except OSError:
            continue
        if kind == "v2" and not os.path.exists(os.path.join(d, "cpu.stat")):
            os.rmdir(d)
            continue
        return d, kind
    return None, None


def cgroup_cpu(d, kind):
    """(user s, system s, total ns) of everything that ever ran in the cgroup."""
    if kind == "v1":
        def rd(f):
            with open(os.path.join(d, f)) as fh:
                return int(fh.read().split()[0])
        return rd("cpuacct.usage_user") / 1e9, rd("cpuacct.usage_sys") / 1e9, rd("cpuacct.usage")
    vals = {}
    with open(os.path.join(d, "cpu.stat")) as f:
        for line in f:
            k, v = line.split()
            vals[k] = int(v)
    return vals["user_usec"] / 1e6, vals["system_usec"] / 1e6, vals["usage_usec"] * 1000


def cgroup_pids(d):
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_tree_cpu_s(root_pid):
    """CPU seconds of root_pid and its live descendants, plus what they reaped:
    each live process's sum_exec_runtime (ns, /proc/PID/task/*/schedstat:
    per-process tick counts would lose up to a tick each, and Postfix runs
    hundreds of processes) plus its cutime+cstime (children it has reaped,
    theirs included; ticks, rounded once per parent)."""
    children = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(rest[1]), []).append((int(e), rest))

    def one(pid, rest):
        ns = proc_cpu_ns(pid)
        if ns is None:
            return (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / CLK_TCK
        return ns / 1e9 + (int(rest[13]) + int(rest[14])) / CLK_TCK

    try:
        with open(f"/proc/{root_pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total, stack, seen = one(root_pid, rest), [root_pid], {root_pid}
    while stack:
        pid = stack.pop()
        for cpid, rest in children.get(pid, []):
            if cpid in seen:
                continue
            seen.add(cpid)
            total += one(cpid, rest)
            stack.append(cpid)
    return total


class PostfixServer(Server):
    """Postfix's durable path as an anchor: a private instance (`postfix -c
    DIR start`) with its own config and queue directory, listening on
    127.0.0.1:PORT only, every message held (smtpd_end_of_data_restrictions =
    check_client_access static:HOLD), so smtpd, cleanup and the queue file's
    fsync all run and nothing is delivered. A fresh instance per start.

    CPU: the instance runs in a cgroup of its own (created here; `postfix
    start` is launched inside it, so the master and every process it forks
    are counted, exited and reaped ones included); the master's process tree
    (live processes' schedstat + what they reaped, cutime+cstime) is recorded
    as a cross-check. Without a cgroup the tree sum is the figure."""

    def __init__(self, key, label, port, base_dir, process_limit=200, m_scale=1.0, note="",
                 main_cf_extra=()):
        super().__init__(key, label, ["postfix", "-c", "DIR", "start"], port=port,
                         m_scale=m_scale, note=note)
        self.base_dir = base_dir
        self.process_limit = process_limit
        self.main_cf_extra = list(main_cf_extra)
        self.inst = None
        self.conf = None
        self.cg = None
        self.cg_kind = None
        self.master_pid = None
        self.cpu_method = None

    def _join_cgroup(self):
        # In the child between fork and exec: move it into the cgroup.
        with open(os.path.join(self.cg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def start(self, tmp):
        self.starts += 1
        self.inst = os.path.join(self.base_dir, f"inst-{self.starts}")
        self.conf = os.path.join(self.inst, "conf")
        os.makedirs(self.conf)
        # Postfix's daemons run as the postfix user and must reach queue/ and
        # data/: every directory above them must be searchable (mkdtemp is 0700).
        d = self.inst
        while True:
            os.chmod(d, os.stat(d).st_mode | 0o755)
            if d == self.base_dir or os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
        os.chmod(os.path.dirname(self.base_dir), os.stat(os.path.dirname(self.base_dir)).st_mode | 0o711)
        os.makedirs(os.path.join(self.inst, "queue"))   # root-owned; postfix makes the rest
        data = os.path.join(self.inst, "data")
        os.makedirs(data)
        try:
            shutil.chown(data, user="postfix")
        except (LookupError, OSError):
            pass
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(postfix_main_cf(self.inst, self.process_limit, self.main_cf_extra))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        self.argv = ["postfix", "-c", self.conf, "start"]
        self.cg, self.cg_kind = cgroup_dir(f"mailport-bench-postfix-{os.getpid()}-{self.starts}")
        self.cpu_method = (f"cgroup {self.cg_kind} ({self.cg})" if self.cg
                           else "process tree of the master (schedstat of the live processes "
                                "+ cutime/cstime of the reaped ones)")
        self.log = open(os.path.join(tmp, f"{self.key}.log"), "ab")
        try:
            r = subprocess.run(self.argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                               timeout=60, preexec_fn=self._join_cgroup if self.cg else None)
        except (OSError, subprocess.SubprocessError) as e:
            return self._fail(f"{' '.join(self.argv)}: {e}")
        if r.returncode != 0:
            return self._fail(f"{' '.join(self.argv)} exited with {r.returncode}")
        pidfile = os.path.join(self.inst, "queue", "pid", "master.pid")
        end = time.monotonic() + 20
        while time.monotonic() < end and self.master_pid is None:
            try:
                with open(pidfile) as f:
                    self.master_pid = int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.1)
        if self.master_pid is None:
            return self._fail(f"no {pidfile}")
        if not wait_banner(self.port, 20, None):
            return self._fail(f"no 220 greeting on 127.0.0.1:{self.port}")
        return True

    def _fail(self, why):
        """Say why on stderr with the end of the instance's log (the temp
        directories go at the end of the run), stop what was started."""
        tail = ""
        try:
            with open(os.path.join(self.inst, "maillog"), errors="replace") as f:
                tail = "".join(f.readlines()[-8:])
        except OSError:
            pass
        print(f"bench: Postfix instance {self.inst}: {why}\n{tail}", file=sys.stderr)
        self.stop()
        return False

    def stop(self):
        if self.conf is not None:
            try:
                subprocess.run(["postfix", "-c", self.conf, "stop"], stdin=subprocess.DEVNULL,
                               stdout=self.log or subprocess.DEVNULL,
                               stderr=self.log or subprocess.DEVNULL, timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
            # Wait (bounded) for the master and its children to go.
            end = time.monotonic() + 15
            while time.monotonic() < end:
                alive = (cgroup_pids(self.cg) if self.cg else
                         ([self.master_pid] if self.master_pid and os.path.exists(f"/proc/{self.master_pid}")
                          else []))
                if not alive:
                    break
                time.sleep(0.2)
            else:
                # Still there: these are processes of the instance started here.
                for pid in (cgroup_pids(self.cg) if self.cg else [self.master_pid]):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.5)
        if self.cg:
            try:
                os.rmdir(self.cg)
            except OSError:
                pass
        self.cg = None
        self.conf = None
        self.master_pid = None
        if self.log:
            self.log.close()
            self.log = None

    def cpu(self):
        tree = proc_tree_cpu_s(self.master_pid) if self.master_pid else None
        if self.cg:
            u, s, ns = cgroup_cpu(self.cg, self.cg_kind)
            return {"user_s": u, "sys_s": s, "ns": ns, "minflt": None, "tree_s": tree,
                    "procs": len(cgroup_pids(self.cg))}
        return {"user_s": tree or 0.0, "sys_s": 0.0, "ns": None, "minflt": None, "tree_s": tree}

    def rss_kib(self):
        pids = cgroup_pids(self.cg) if self.cg else ([self.master_pid] if self.master_pid else [])
        total = 0
        for pid in pids:
            try:
                total += proc_rss_kib(pid) or 0
            except OSError:
                pass
        return total or None

    def accepted(self):
        """Messages in the hold queue (each one fsynced before its 250)."""
        if self.inst is None:
            return None
        try:
            return len(os.listdir(os.path.join(self.inst, "queue", "hold")))
        except OSError:
            return None


def postfix_ok():
    """(True, version) when postfix and postconf are installed."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        return False, "postfix not installed (bench/run.sh --install, or apt-get install postfix)"
    v = version_of(["postconf", "-d", "-h", "mail_version"])
    return True, v


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


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout.strip() or r.stderr.strip())
        return text.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


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
