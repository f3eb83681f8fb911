"""rspamd_servers: the processes bench/rspamd.py runs (a dnsmasq with the test
zone, a real rspamd with its own configuration, a slow stand-in), how it
measures and stops them, and the messages it sends. Loopback only; everything stopped by PID."""
import email.utils
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import latency as L  # noqa: E402

CLK_TCK = L.CLK_TCK
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
DOMAIN = "example.org"              # the sender's domain: A, MX, SPF, DMARC in our DNS
HELO = "client.example.org"
MAIL_FROM = f"alice@{DOMAIN}"
RCPT = "bob@example.net"
perf = time.perf_counter


# ---------------------------------------------------------------- processes

def start_dns(work, port, client_ip):
    a, b, c, d = client_ip.split(".")
    args = [DNSMASQ, "--keep-in-foreground", "--log-facility=-", f"--port={port}",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--local=/#/", "--pid-file=" + os.path.join(work, "dnsmasq.pid"),
            f"--host-record={DOMAIN},{client_ip}", f"--host-record={HELO},{client_ip}",
            f"--mx-host={DOMAIN},{HELO},10",
            f"--ptr-record={d}.{c}.{b}.{a}.in-addr.arpa,{HELO}",
            f"--txt-record={DOMAIN},v=spf1 ip4:{client_ip} -all",
            f"--txt-record=_dmarc.{DOMAIN},v=DMARC1; p=none"]
    log = open(os.path.join(work, "dnsmasq.log"), "wb")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    log.close()
    return p


def dns_up(port):
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x10\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(q, ("127.0.0.1", port))
            r = s.recv(4096)
            return r[:2] == b"\x12\x34" and r[7] >= 1
        except OSError:
            return False


def rspamd_conf(conf, port, dns_port, workers, milter_headers):
    local = os.path.join(conf, "local.d")
    for d in (local, *(os.path.join(conf, x) for x in ("run", "db", "log"))):
        os.makedirs(d, exist_ok=True)
    files = {
        "worker-normal.inc": f'bind_socket = "127.0.0.1:{port}";\n'
                             + (f"count = {workers};\n" if workers else ""),
        "worker-controller.inc": "enabled = false;\n",
        "worker-proxy.inc": "enabled = false;\n",
        "worker-fuzzy.inc": "enabled = false;\ncount = -1;\n",
        "options.inc": f'dns {{\n  nameserver = ["127.0.0.1:{dns_port}"];\n  timeout = 1s;\n'
                       '  retransmits = 2;\n}\n',
        "milter_headers.conf": "use = [%s];\n" % ", ".join(
            f'"{h.strip()}"' for h in milter_headers.split(",") if h.strip()),
        "redis.conf": "",
        "logging.inc": 'type = "file";\nlevel = "notice";\n',
    }
    for name, text in files.items():
        with open(os.path.join(local, name), "w") as f:
            f.write(text)


def start_rspamd(conf):
    args = [RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf", "--var=LOCAL_CONFDIR=" + conf,
            "--var=RUNDIR=" + os.path.join(conf, "run"), "--var=DBDIR=" + os.path.join(conf, "db"),
            "--var=LOGDIR=" + os.path.join(conf, "log")]
    if os.geteuid() == 0:
        args += ["-u", "root", "-g", "root", "-i"]
    log = open(os.path.join(conf, "stdout.log"), "wb")
    # Its own process group (= its PID): the workers are counted and stopped with it.
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    log.close()
    return p


def group_pids(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid:
            out.append((int(d), rest))
    return out


def group_cpu_s(pgid):
    """utime+stime of every live process of the group, plus what the leader
    reaped (cutime+cstime)."""
    total = 0
    for pid, rest in group_pids(pgid):
        total += int(rest[11]) + int(rest[12])
        if pid == pgid:
            total += int(rest[13]) + int(rest[14])
    return total / CLK_TCK


def stop_group(p, timeout=15):
    """SIGTERM to the leader's PID (rspamd stops its workers), then SIGKILL to
    whatever of its group is left."""
    if p is None:
        return
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for pid, _ in group_pids(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ping(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def rspamd_check(port, data, client_ip):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/checkv2", data=data, headers={
        "IP": client_ip, "Helo": HELO, "From": MAIL_FROM, "Rcpt": RCPT, "MTA-Name": "bench.test"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_rspamd_ready(p, conf, port, client_ip, budget):
    """/ping answers, then the hyperscan compile (hs_helper, into DBDIR) has
    settled: no new file in DBDIR and the hs_helper idle for 3 s. Then a few
    direct checks warm the worker up. Returns seconds taken, or None."""
    t0 = time.monotonic()
    end = t0 + budget
    while not ping(port):
        if p.poll() is not None or time.monotonic() > end:
            return None
        time.sleep(0.3)
    db = os.path.join(conf, "db")
    last, stable_since = None, time.monotonic()
    while time.monotonic() < end:
        if p.poll() is not None:
            return None
        helper = sum(int(r[11]) + int(r[12]) for pid, r in group_pids(p.pid)
                     if _comm(pid).startswith("rspamd: hs_helper"))
        state = (len(os.listdir(db)), helper)
        if state != last:
            last, stable_since = state, time.monotonic()
        elif time.monotonic() - stable_since >= 3:
            break
        time.sleep(0.5)
    else:
        return None
    for k in range(20):
        rspamd_check(port, message_file(k), client_ip)
    return time.monotonic() - t0


def _comm(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class StandIn:
    """An HTTP server for /checkv2 that answers "no action" after `delay`
    seconds; counts requests and the most in flight at once."""

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.now = self.max = self.requests = self.answered = self.broken = 0
        self.arrivals = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                with outer.lock:
                    outer.requests += 1
                    outer.now += 1
                    outer.max = max(outer.max, outer.now)
                    outer.arrivals.append(perf())
                try:
                    time.sleep(outer.delay)
                    body = (b'{"action":"no action","score":0.0,"required_score":15.0,'
                            b'"is_skipped":false,"symbols":{}}')
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    with outer.lock:
                        outer.answered += 1
                except OSError:
                    with outer.lock:
                        outer.broken += 1      # mailport gave up on it (timeout)
                finally:
                    with outer.lock:
                        outer.now -= 1

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128      # socketserver's 5 overflows when 16 connect at once

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- messages

WORDS = ("the quarterly figures for the northern region are attached please check the "
         "totals before our meeting on thursday morning and tell me if anything looks "
         "wrong we still need the numbers from the warehouse team and a short note on "
         "the delayed shipments from last month thanks again for pulling this together "
         "so quickly").split()
DATE = email.utils.formatdate(usegmt=True)
STAMP = int(time.time())


def body_text(k, size):
    out, line, i = [], "", k * 7
    total = 0
    while total + len(line) + 2 < size:
        w = WORDS[i % len(WORDS)]
        i += 1
        if len(line) + len(w) + 1 > 72:
            out.append(line)
            total += len(line) + 2
            line = ""
        line = f"{line} {w}" if line else w
    out.append(line)
    return "\r\n".join(out) + "\r\n"


def message_wire(k, size):
    """~size bytes on the wire (CRLF; no line begins with '.') and the final '.'."""
    head = (f"Date: {DATE}\r\nFrom: Alice Example <{MAIL_FROM}>\r\nTo: Bob Example <{RCPT}>\r\n"
            f"Subject: Quarterly figures, part {k}\r\nMessage-ID: <{STAMP}.{k}@{DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n")
    return (head + body_text(k % 64, max(64, size - len(head) - 3))).encode() + b".\r\n"


def message_file(k, size=1024):
    """The same message as rspamd sees it from mailport (LF, trace headers)."""
    data = message_wire(k, size)[:-3].replace(b"\r\n", b"\n")
    return (f"Return-Path: <{MAIL_FROM}>\nReceived: from {HELO} ([198.51.100.7]) by bench.test "
            f"with ESMTP id warm{k}; {DATE}\n").encode() + data
