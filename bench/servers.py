"""servers: the servers bench.py measures and how their CPU is read: process
facts from /proc, the Server class (a process started, probed, stopped), and
the Postfix durable anchor (a private `postfix -c` instance that holds every
message, its CPU summed in a cgroup over its whole process tree)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout.strip() or r.stderr.strip())
        return text.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


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
