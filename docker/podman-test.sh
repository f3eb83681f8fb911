#!/usr/bin/env bash
# Prove the image works on a machine with no Docker engine (SPEC 7, issue 7):
#   1. make a local debian:bookworm-slim with debootstrap from Debian's mirror
#      (no registry is reachable) and `podman import` it; kept between runs
#      (docker/podman-lib.sh, shared with docker/pristine-test.sh);
#   2. `podman build --isolation=chroot` the Dockerfile (--format docker keeps the
#      HEALTHCHECK, which the OCI format has no field for);
#   3. check the image: user 65532, ports, volume, env defaults, labels,
#      HEALTHCHECK, entrypoint;
#   4. run it with runc, explicit nofile/nproc ulimits and host networking on
#      loopback ports of its own, wait for the HEALTHCHECK command to pass, send a
#      message with smtplib and find it in the volume, then SIGTERM it with an idle
#      session open (421 4.3.2) and check it exits 0 within the grace;
#   5. again with a read-only root filesystem, no capabilities and
#      no-new-privileges, on the same volume.
# Run as root on Debian 12. Fails loudly (non-zero, with the reason) on any step.
# Env: MAILPORT_IMAGE (default localhost/mailport:test), MAILPORT_KEEP_IMAGE=1
# keeps the built image, DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${MAILPORT_IMAGE:-localhost/mailport:test}
GRACE=5
t_start=$(date +%s)
step() { echo "== podman-test: $*"; }
die() { echo "podman-test: FAIL: $*" >&2; exit 1; }
since() { echo $(( $(date +%s) - $1 )); }

# ---------------------------------------------------------------- tools
WORK=$(mktemp -d /tmp/mailport-podman.XXXXXX)
. docker/podman-lib.sh
podman_setup
PY=/usr/bin/python3
[ -x "$PY" ] || die "$PY is missing"

# No systemd here to run the HEALTHCHECK on a timer: this script plays the
# orchestrator and runs the image's HEALTHCHECK itself (podman healthcheck run).
# (podman 4.3 still logs that it cannot reach systemd for the timer: harmless,
# and kept out of the output unless the run fails.)
RUN_OPTS=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network host
	--health-interval=disable)

NAME=mailport-podman-test-$$
VOLUME=mailport-podman-test-$$
cleanup() {
	podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
	podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
	if [ "${MAILPORT_KEEP_IMAGE:-0}" != 1 ]; then
		podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- base image
t0=$(date +%s)
base_images
BASE=$SLIM_BASE
t_base=$(since "$t0")
step "base image ready in ${t_base}s"

# ---------------------------------------------------------------- build
t0=$(date +%s)
step "podman build --isolation=chroot -t $IMAGE"
podman build --isolation=chroot --format docker --pull=never \
	--build-arg DEBIAN_IMAGE="$BASE" \
	--build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	--build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
	{ tail -n 40 "$WORK/build.log" >&2; die "podman build failed"; }
t_build=$(since "$t0")
step "image built in ${t_build}s ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"

# ---------------------------------------------------------------- the image's metadata
podman image inspect "$IMAGE" >"$WORK/inspect.json"
"$PY" - "$WORK/inspect.json" <<'PY' || die "image metadata"
import json, sys
img = json.load(open(sys.argv[1]))[0]
cfg = img["Config"]
labels = cfg.get("Labels") or {}
env = dict(e.split("=", 1) for e in cfg.get("Env", []))
hc = img.get("Healthcheck") or img.get("HealthCheck") or cfg.get("Healthcheck") or {}
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
want(cfg.get("User") == "65532:65532", "User is %r, want 65532:65532" % cfg.get("User"))
want(set(cfg.get("ExposedPorts", {})) == {"2525/tcp", "8080/tcp"}, "ExposedPorts %r" % cfg.get("ExposedPorts"))
want(set(cfg.get("Volumes", {})) == {"/var/spool/mailport"}, "Volumes %r" % cfg.get("Volumes"))
for k, v in (("SMTPD_HOSTS", "0.0.0.0"), ("SMTPD_HTTP", "0.0.0.0:8080"), ("SMTPD_SPOOL", "/var/spool/mailport")):
    want(env.get(k) == v, "ENV %s=%r, want %r" % (k, env.get(k), v))
want(hc.get("Test") == ["CMD", "mailport", "--healthcheck"], "HEALTHCHECK %r" % hc)
want(cfg.get("Entrypoint") == ["mailport"], "Entrypoint %r" % cfg.get("Entrypoint"))
want(cfg.get("StopSignal") in ("SIGTERM", "15"), "StopSignal %r" % cfg.get("StopSignal"))
for k in ("title", "description", "version", "revision", "created"):
    want(labels.get("org.opencontainers.image." + k), "label org.opencontainers.image.%s missing" % k)
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("image metadata ok: user 65532, ports 2525 8080, volume, env, labels, HEALTHCHECK")
PY
# Only the binary and its libraries: no compiler, no headers, no shell tools added.
podman run --rm "${RUN_OPTS[@]}" --entrypoint /bin/sh "$IMAGE" -c \
	'! command -v cc && ! command -v cmake && ! ls /usr/include/uv.h 2>/dev/null && ldd /usr/local/bin/mailport' \
	>"$WORK/ldd.txt" 2>&1 || { cat "$WORK/ldd.txt" >&2; die "the runtime stage has build tools or a missing library"; }
grep -q "not found" "$WORK/ldd.txt" && die "missing library: $(grep 'not found' "$WORK/ldd.txt")"

# ---------------------------------------------------------------- run it
ports=$("$PY" -c '
import socket
ps = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ps.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ps))')
read -r SMTP_PORT HTTP_PORT <<<"$ports"
podman volume create "$VOLUME" >/dev/null

# One container run: start, wait for health, send, find, drain.
# $1 = label, rest = extra podman run options.
run_once() {
	local label=$1
	shift
	step "run ($label): SMTP 127.0.0.1:$SMTP_PORT, HTTP 127.0.0.1:$HTTP_PORT"
	podman run -d --name "$NAME" "${RUN_OPTS[@]}" "$@" \
		-e SMTPD_HOSTS=127.0.0.1 -e SMTPD_PORTS="$SMTP_PORT" \
		-e SMTPD_HTTP="127.0.0.1:$HTTP_PORT" -e SMTPD_HOSTNAME=mx.podman.test \
		-e SMTPD_SHUTDOWN_GRACE="$GRACE" -e SMTPD_LOG_FORMAT=json \
		-v "$VOLUME:/var/spool/mailport" "$IMAGE" >/dev/null 2>"$WORK/run.err" ||
		{ cat "$WORK/run.err" >&2; die "podman run ($label) failed"; }
	local t0 i ok=0
	t0=$(date +%s)
	for i in $(seq 1 100); do
		# The image's own HEALTHCHECK command, as an orchestrator runs it.
		if podman healthcheck run "$NAME" >/dev/null 2>&1; then
			ok=1
			break
		fi
		[ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] ||
			{ podman logs "$NAME" >&2; die "container exited before it was healthy ($label)"; }
		sleep 0.2
	done
	[ $ok = 1 ] || { podman logs "$NAME" >&2; die "HEALTHCHECK never passed ($label)"; }
	step "healthy after $(since "$t0")s; the entrypoint runs as $(podman exec "$NAME" sh -c 'id -u'):$(podman exec "$NAME" sh -c 'id -g'), PID 1 is $(podman exec "$NAME" cat /proc/1/comm)"
	[ "$(podman exec "$NAME" sh -c 'id -u')" = 65532 ] || die "not running as 65532"
	[ "$(podman exec "$NAME" cat /proc/1/comm)" = mailport ] || die "mailport is not PID 1"

	local spool
	spool=$(podman volume inspect --format '{{.Mountpoint}}' "$VOLUME")
	"$PY" - "$SMTP_PORT" "$HTTP_PORT" "$spool" "$NAME" "$GRACE" "$label" <<'PY' || { podman logs "$NAME" >&2; die "SMTP round trip or drain ($label)"; }
import json, os, smtplib, socket, subprocess, sys, time, urllib.request
smtp_port, http_port, spool, name, grace, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
status = json.load(urllib.request.urlopen("http://127.0.0.1:%d/status" % http_port, timeout=5))
assert status["ready"] is True, status
body = "Subject: podman %s\r\n\r\nthrough the container\r\n" % label
with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.example", timeout=10) as s:
    code, _ = s.ehlo()
    assert code == 250
    s.sendmail("a@x.example", ["b@y.example"], body)
    s.quit()
found = None
for _ in range(50):
    for f in os.listdir(os.path.join(spool, "new")):
        with open(os.path.join(spool, "new", f), "rb") as fh:
            if ("Subject: podman %s\n" % label).encode() in fh.read():
                found = f
    if found:
        break
    time.sleep(0.1)
assert found, "message not found in the volume's new/"
meta = json.load(open(os.path.join(spool, "meta", found + ".json")))
assert meta["client"]["address"] == "127.0.0.1" and meta["rcpt_to"] == ["b@y.example"], meta
st = os.stat(os.path.join(spool, "new", found))
assert st.st_uid == 65532, "stored as uid %d" % st.st_uid
print("stored %s in the volume (uid %d)" % (found, st.st_uid))

# SIGTERM with an idle session open: 421 4.3.2 at once, exit 0 within the grace.
c = socket.create_connection(("127.0.0.1", smtp_port), timeout=10)
f = c.makefile("rb")
assert f.readline().startswith(b"220 ")
c.sendall(b"EHLO client.example\r\n")
while True:
    l = f.readline()
    if l[3:4] == b" ":
        break
t = time.monotonic()
stop = subprocess.Popen(["podman", "stop", "-t", str(grace + 5), name], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
line = f.readline()
assert line.startswith(b"421 4.3.2"), line
assert stop.wait(timeout=grace + 15) == 0
took = time.monotonic() - t
code = subprocess.run(["podman", "inspect", "--format", "{{.State.ExitCode}}", name],
                      capture_output=True, text=True).stdout.strip()
assert code == "0", "exit code %s after SIGTERM" % code
assert took < grace, "took %.1fs, the grace is %ds" % (took, grace)
print("SIGTERM: idle session got %r, exit 0 after %.2fs (grace %ds)" % (line.strip().decode(), took, grace))
PY
	# Every log line is one JSON object (SMTPD_LOG_FORMAT=json), start-up included.
	podman logs "$NAME" 2>&1 | "$PY" -c '
import json, sys
n = 0
for l in sys.stdin:
    if l.strip():
        json.loads(l); n += 1
assert n > 3
print("%d JSON log lines" % n)' || die "log lines are not JSON ($label)"
	podman rm "$NAME" >/dev/null 2>&1
}

t0=$(date +%s)
run_once "default"
run_once "read-only" --read-only --cap-drop=ALL --security-opt=no-new-privileges
t_run=$(since "$t0")

# Build stages of earlier runs are kept a day as layer cache, then dropped, so
# repeated runs on one machine do not fill its disk.
podman image prune -f --filter until=24h >/dev/null 2>&1 || true

step "OK: base ${t_base}s, build ${t_build}s, runs ${t_run}s, total $(since "$t_start")s"
