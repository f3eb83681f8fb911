"""benchlib: what every benchmark in bench/ records next to its figures: the
machine's load (it is shared) and which binary was measured."""
import datetime
import os
import signal
import socket
import subprocess
import sys
import time


def machine_state():
    """Load average and pressure stall figures (the machine is shared)."""
    out = {}
    try:
        with open("/proc/loadavg") as f:
            out["loadavg"] = " ".join(f.read().split()[:3])
    except OSError:
        pass
    for res in ("cpu", "io"):
        try:
            with open(f"/proc/pressure/{res}") as f:
                out[f"psi_{res}_some_avg10"] = float(f.readline().split()[1].split("=")[1])
        except (OSError, IndexError, ValueError):
            pass
    return out


def binary_id(path):
    """What was measured: the binary's mtime and the start of its sha256 (the
    tree's git state at run time need not be the binary's source)."""
    import hashlib
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return None
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return f"{path} (built {mtime.isoformat(timespec='seconds')}, sha256 {digest})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_mailport(binary, port, settings, log, extra_env=()):
    """Start mailport with SMTPD_* = settings (the caller's environment minus its
    own SMTPD_*), then wait for its 220 on 127.0.0.1:port. (proc, ready)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPD_")}
    env.update(settings)
    env.update(kv.split("=", 1) for kv in extra_env)
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if proc.poll() is not None:
            return proc, False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return proc, True
        except OSError:
            time.sleep(0.1)
    return proc, False


def stop_mailport(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_main(main, cleanup):
    """sys.exit(main()), and whatever happens (an exception, ^C, SIGTERM, a
    closed stdout) the cleanup functions run, last first: the servers a tool
    started are stopped and its spool removed."""
    def on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main())
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception:       # noqa: BLE001 - best effort at exit
                pass
