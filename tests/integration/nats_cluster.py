"""NATS JetStream for the tests (SPEC 9): Debian's nats-server started as
children on loopback ports of their own, one node or a three-node JetStream
cluster (a `cluster {}` block with routes), each with its config file and
store directory under a temporary directory; and tests/tools/nats_tool (built
by CMake) to create streams and read them back through a durable pull
consumer. nats-server 2.9 takes options such as max_payload only from a config
file (-c FILE)."""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import mailport_harness as h

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None)


def nats_tool():
    """The built tests/tools/nats_tool, or None."""
    for d in (os.environ.get("MAILPORT_BUILD_DIR"), os.path.join(h.SOURCE_DIR, "build")):
        if d:
            p = os.path.join(d, "tests", "nats_tool")
            if os.access(p, os.X_OK):
                return p
    return None


def require(tc):
    """Skip (or fail with MAILPORT_NO_SKIP=1) without nats-server or nats_tool."""
    missing = [n for n, v in (("nats-server", NATS_SERVER), ("nats_tool", nats_tool())) if not v]
    if missing:
        msg = "missing: %s (apt-get install nats-server; build tests/tools)" % ", ".join(missing)
        if os.environ.get("MAILPORT_NO_SKIP") == "1":
            raise AssertionError(msg)
        tc.skipTest(msg)


def _wait_port(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Node:
    def __init__(self, root, name, port, cluster_port, routes, max_payload, cluster_name,
                 extra=(), scheme="nats"):
        self.name = name
        self.port = port
        self.url = "%s://127.0.0.1:%d" % (scheme, port)
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "nats.conf")
        self.log = os.path.join(self.dir, "nats.log")
        lines = [
            'server_name: "%s"' % name,
            'listen: "127.0.0.1:%d"' % port,
            "max_payload: %d" % max_payload,
            'jetstream { store_dir: "%s" }' % os.path.join(self.dir, "js"),
        ] + list(extra)
        if cluster_port:
            lines.append('cluster { name: "%s"\n  listen: "127.0.0.1:%d"\n  routes: [%s] }' % (
                cluster_name, cluster_port,
                ", ".join('"nats-route://127.0.0.1:%d"' % r for r in routes)))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        logf.close()
        if not _wait_port(self.port):
            raise AssertionError("nats-server %s did not listen; log:\n%s" % (
                self.name, self.log_text()[-3000:]))

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Cluster:
    """n nodes (1: a single JetStream server; 3: a cluster with routes)."""

    def __init__(self, n=3, max_payload=8 * 1024 * 1024, extra=(), scheme="nats", tool_url=None):
        """extra: more config lines for every node (tls {}, authorization {});
        scheme: of the nodes' URLs; tool_url(node) -> the URL nats_tool uses."""
        self.root = tempfile.mkdtemp(prefix="mailport-nats-")
        ports = h.free_ports(2 * n, "127.0.0.1")
        client, route = ports[:n], ports[n:]
        name = "mailport-test-%d" % os.getpid()
        self.nodes = []
        for i in range(n):
            routes = [route[k] for k in range(n) if k != i] if n > 1 else []
            self.nodes.append(Node(self.root, "n%d" % (i + 1), client[i],
                                   route[i] if n > 1 else 0, routes, max_payload, name,
                                   extra, scheme))
        self.tool_url = tool_url

    def start(self):
        for nd in self.nodes:
            nd.start()
        return self

    def urls(self):
        return ",".join(nd.url for nd in self.nodes)

    def alive_url(self):
        for nd in self.nodes:
            if nd.alive():
                return self.tool_url(nd) if self.tool_url else nd.url
        raise AssertionError("no NATS node alive")

    def close(self):
        for nd in self.nodes:
            try:
                nd.kill9()
            except Exception:
                pass
        if not os.environ.get("MAILPORT_TEST_KEEP_TMP"):
            shutil.rmtree(self.root, ignore_errors=True)

    # -- nats_tool
    def tool(self, *args, timeout=90):
        env = dict(os.environ)
        if getattr(self, "ca", None):
            env["NATS_CA"] = self.ca
        r = subprocess.run([nats_tool()] + list(args), capture_output=True, timeout=timeout,
                           env=env)
        if r.returncode != 0:
            raise AssertionError("nats_tool %s: exit %d: %s" % (
                " ".join(args), r.returncode, r.stderr.decode("utf-8", "replace")))
        return r.stdout

    def create_stream(self, stream, subject, replicas):
        self.tool("create", self.alive_url(), stream, subject, str(replicas), timeout=90)

    def count(self, stream):
        return int(self.tool("count", self.alive_url(), stream).decode().strip())

    def dump(self, stream, durable):
        """Every message of the stream, read through a durable pull consumer
        (acknowledged after reading): a list of dicts with seq, id, envelope
        (parsed), mail_from, rcpt and data (bytes)."""
        return self._lines(self._settled(lambda a: (
            "dump", self.alive_url(), stream, durable if a == 0 else "%s%d" % (durable, a))))

    def leader_copy(self, stream):
        """Every message of the stream as its leader has it, read by sequence
        (nats_tool get; same dicts as dump). A consumer reads the copy of the
        replica it was placed on: after a quorum loss nats-server 2.9.10 can
        leave the replica that stayed up alone holding a message it appended
        then (one that was answered 451) in place of one a later leader
        acknowledged; the leader's copy is the one the acknowledgements came
        from."""
        return self._lines(self._settled(lambda a: ("get", self.alive_url(), stream)))

    def _settled(self, args):
        """self.tool(*args(attempt)). Just after a cluster healed, the
        JetStream API may time out or answer 10008 ("JetStream system
        temporarily unavailable") while leaders are elected: the reader, not
        mailport, retries. dump gives each attempt a durable of its own, so a
        reader that failed half way (having acknowledged some) never hides
        messages from the next one."""
        for attempt in range(6):
            try:
                return self.tool(*args(attempt), timeout=180)
            except AssertionError as e:
                if attempt == 5 or not any(w in str(e) for w in ("Timeout", "(10008)")):
                    raise
                time.sleep(3)

    @staticmethod
    def _lines(text):
        out = []
        for line in text.splitlines():
            d = json.loads(line)
            d["data"] = base64.b64decode(d["data"])
            d["envelope"] = json.loads(d["envelope"]) if d.get("envelope") else None
            out.append(d)
        return out
