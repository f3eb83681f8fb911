"""benchlib: what every benchmark in bench/ records next to its figures: the
machine's load (it is shared) and which binary was measured."""
import datetime
import os


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
