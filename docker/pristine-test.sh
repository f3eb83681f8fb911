#!/usr/bin/env bash
# Prove the README on a fresh Debian 12 machine (issue 11, SPEC 7): every
# command is read out of README.md now (tests/readme_commands.py), never copied,
# and run in a new container of localhost/debian:bookworm, which is what
# `debootstrap --variant=minbase bookworm` gives and nothing more
# (docker/podman-lib.sh makes it, and the Dockerfile's slim base beside it).
#
#   1. run:    the run command, with SMTPD_PORTS/SMTPD_HTTP on free loopback
#              ports (host networking: the container's ports are this
#              machine's): /readyz answers 200, a message sent with smtplib
#              lands in spool/new, SIGTERM, exit 0; then, in the same container,
#              the "From source" block (cmake --install) and its `mailport --version`.
#   2. deb:    the "Debian package" block in another fresh container, which
#              builds, installs and runs the .deb; the .deb is then installed
#              in a third fresh container that has no build tools: --version,
#              --check-config, the man page, and `systemd-analyze verify` on
#              the unit (systemd and man-db installed there for that check).
#   3. image:  the "Container image" block with `docker` played by podman
#              (no Docker engine here), the image run inside a network
#              namespace of our own, so its 0.0.0.0 listeners see loopback
#              only: /readyz, a message into the volume, SIGTERM, exit 0.
#   4. test:   the test command, to its closing `N passed, 0 failed` line.
#
# Run as root on Debian 12; about 12 minutes on a machine that never ran it.
# Env: PRISTINE_ONLY="run deb image test" (a subset, for working on one step),
# PRISTINE_KEEP=1 keeps the work dir (logs, tree).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== pristine: $*"; }
die() { echo "pristine: FAIL: $*" >&2; exit 1; }
since() { echo $(( $(date +%s) - $1 )); }
t_start=$(date +%s)
ONLY=${PRISTINE_ONLY:-run deb image test}
want() { [[ " $ONLY " == *" $1 "* ]]; }

WORK=$(mktemp -d /tmp/mailport-pristine.XXXXXX)
. docker/podman-lib.sh
PY=/usr/bin/python3
[ -x "$PY" ] || die "$PY is missing"
NAMES=()
VOLUME_OURS=0
NS=mp-pristine-$$
cleanup() {
	local n
	for n in "${NAMES[@]}"; do
		podman rm -f -t 0 "$n" >/dev/null 2>&1 || true
	done
	if [ "$VOLUME_OURS" = 1 ]; then
		podman volume rm -f mailport-spool >/dev/null 2>&1 || true
		podman rmi -f localhost/mailport:latest >/dev/null 2>&1 || true
	fi
	ip netns del "$NS" 2>/dev/null || true
	if [ "${PRISTINE_KEEP:-0}" = 1 ]; then
		echo "pristine: work dir kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
podman_setup
base_images

# The tree as a clone would have it (tracked and new files, with .git for the
# commit in --version), without this machine's build directories.
mkdir -p "$WORK/tree" "$WORK/out"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
	[ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -c | tar -x -C "$WORK/tree"
cp -a .git "$WORK/tree/.git"

block() { "$PY" tests/readme_commands.py "$1" || die "README.md: no $1 block"; }
free_ports() {
	"$PY" -c '
import socket
ps = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ps.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ps))'
}
# This machine's trust in TLS: where an egress proxy re-signs HTTPS (a CA of
# the machine's own in /usr/local/share/ca-certificates), a fresh container must
# trust it too to reach the npm registry. The bundle is passed as SSL_CERT_FILE
# (read by OpenSSL and Python); no package comes with it, and apt uses HTTP.
CA_OPTS=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null &&
	[ -s /etc/ssl/certs/ca-certificates.crt ]; then
	CA_OPTS=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
		-e SSL_CERT_FILE=/run/host-ca.crt -e NODE_EXTRA_CA_CERTS=/run/host-ca.crt)
fi
# A fresh container of the pristine base with the tree copied to /w, running
# the bash script in $WORK/$1.sh. Extra podman options follow the name.
start() {
	local name=$1
	shift
	NAMES+=("$name")
	podman run -d --name "$name" --privileged --network host --runtime runc \
		--ulimit nofile=20000:20000 --ulimit nproc=4096:4096 "${CA_OPTS[@]}" \
		-v "$WORK/tree:/src:ro" -v "$WORK/out:/out" -v "$WORK/$name.sh:/run.sh:ro" "$@" \
		"$PRISTINE_BASE" bash -c 'cp -a /src /w && cd /w && bash /run.sh' >/dev/null ||
		die "podman run $name"
}
finish() { # name: wait, keep the log, print the exit code
	local code
	code=$(podman wait "$1")
	podman logs "$1" >"$WORK/$1.log" 2>&1 || true
	echo "$code"
}
logtail() { tail -n "${2:-40}" "$WORK/$1.log" >&2; }

# ---------------------------------------------------------------- 1. run + from source
if want run; then
	t0=$(date +%s)
	read -r SMTP_PORT HTTP_PORT <<<"$(free_ports)"
	step "run command (SMTP 127.0.0.1:$SMTP_PORT, HTTP 127.0.0.1:$HTTP_PORT), then From source"
	{
		echo 'set -u'
		echo 'bash -c "$MAILPORT_RUN_CMD"; rc=$?'
		echo 'echo "== run command exited $rc"; [ $rc = 0 ] || exit 10'
		echo 'echo "== From source"'
		echo 'bash -ec "$MAILPORT_SOURCE_CMD" || exit 11'
		echo 'test -x /usr/local/bin/mailport && test -s /usr/local/share/man/man8/mailport.8.gz &&'
		echo '  test -s /usr/local/lib/systemd/system/mailport.service && test -s /usr/local/etc/default/mailport || exit 12'
		echo 'echo "== From source installed"'
	} >"$WORK/pristine-run.sh"
	start pristine-run -e MAILPORT_RUN_CMD="$(block run)" -e MAILPORT_SOURCE_CMD="$(block install:source)" \
		-e SMTPD_PORTS="$SMTP_PORT" -e SMTPD_HTTP="127.0.0.1:$HTTP_PORT"
	# apt, the build and the start: minutes on a new machine, bounded at 15.
	"$PY" - "$SMTP_PORT" "$HTTP_PORT" pristine-run <<'PY' || { podman logs pristine-run 2>&1 | tail -n 40 >&2; die "run command"; }
import smtplib, subprocess, sys, time, urllib.error, urllib.request
smtp_port, http_port, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 900
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:%d/readyz" % http_port, timeout=2).status == 200:
            break
    except (urllib.error.URLError, OSError):
        pass
    running = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", name],
                             capture_output=True, text=True).stdout.strip()
    assert running == "true", "the container stopped before /readyz answered 200"
    assert time.monotonic() < deadline, "/readyz did not answer 200 within 15 minutes"
    time.sleep(1)
print("/readyz 200")
subject = "pristine %d" % time.time()
with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.example", timeout=10) as s:
    s.sendmail("a@x.example", ["b@y.example"], "Subject: %s\r\n\r\nhello\r\n" % subject)
for _ in range(50):
    r = subprocess.run(["podman", "exec", name, "bash", "-c",
                        'grep -l "^Subject: %s" /w/spool/new/* 2>/dev/null' % subject],
                       capture_output=True, text=True)
    if r.stdout.strip():
        print("stored:", r.stdout.strip())
        break
    time.sleep(0.1)
else:
    raise AssertionError("the message is not in spool/new")
# SIGTERM to mailport (the run command's last step), found by name.
subprocess.run(["podman", "exec", name, "bash", "-c",
                'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = mailport ] && kill -TERM ${p#/proc/}; done'],
               check=True)
PY
	code=$(finish pristine-run)
	grep -q "^== run command exited 0$" "$WORK/pristine-run.log" || { logtail pristine-run; die "the run command did not exit 0 after SIGTERM"; }
	[ "$code" = 0 ] || { logtail pristine-run; die "From source block (exit $code)"; }
	grep -E "^mailport [0-9.]+ \(commit [0-9a-f]{12}" "$WORK/pristine-run.log" ||
		{ logtail pristine-run; die "From source: mailport --version names no commit"; }
	step "run command and From source: OK in $(since "$t0")s"
fi

# ---------------------------------------------------------------- 2. deb
if want deb; then
	t0=$(date +%s)
	step "Debian package block"
	{
		echo 'set -u'
		echo 'bash -ec "$MAILPORT_DEB_CMD" || exit 10'
		echo 'cp build-deb/mailport_*_amd64.deb /out/ || exit 11'
	} >"$WORK/pristine-deb.sh"
	rm -f "$WORK"/out/*.deb
	start pristine-deb -e MAILPORT_DEB_CMD="$(block install:deb)"
	code=$(finish pristine-deb)
	[ "$code" = 0 ] || { logtail pristine-deb; die "Debian package block (exit $code)"; }
	deb=$(cd "$WORK/out" && ls mailport_*_amd64.deb)
	step "built $deb; installing it where nothing else is"
	cat >"$WORK/pristine-debinst.sh" <<'EOF'
set -eu
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /out/mailport_*_amd64.deb >/dev/null
! command -v cc >/dev/null || { echo "a compiler came with the package"; exit 1; }
mailport --version
mailport --check-config
test -s /etc/default/mailport && grep -q '^#SMTPD_HOSTS=127.0.0.1$' /etc/default/mailport
grep -qx /etc/default/mailport /var/lib/dpkg/info/mailport.conffiles
# systemd-analyze and man only for the checks below, after the package.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd man-db >/dev/null
systemd-analyze verify /usr/lib/systemd/system/mailport.service
man -w mailport
MANWIDTH=80 man mailport 2>/dev/null | grep -q "SMTPD_MAX_MESSAGE_SIZE"
echo "== deb installed and verified"
EOF
	start pristine-debinst
	code=$(finish pristine-debinst)
	[ "$code" = 0 ] || { logtail pristine-debinst; die "installing the .deb in a pristine container (exit $code)"; }
	grep -E "^mailport [0-9.]+ \(commit [0-9a-f]{12}" "$WORK/pristine-debinst.log" ||
		{ logtail pristine-debinst; die "the .deb's mailport --version names no commit"; }
	step "Debian package: OK in $(since "$t0")s"
fi

# ---------------------------------------------------------------- 3. image
if want image; then
	t0=$(date +%s)
	step "Container image block (docker played by podman, the run in netns $NS)"
	podman volume exists mailport-spool && die "a volume mailport-spool exists already: not ours, not touched"
	podman image exists localhost/mailport:latest && die "an image localhost/mailport exists already: not ours, not touched"
	VOLUME_OURS=1
	# The Dockerfile's FROM debian:bookworm-slim, from the local slim base.
	podman tag "$SLIM_BASE" docker.io/library/debian:bookworm-slim
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	cat >"$WORK/image.sh" <<EOF
docker() {
	case "\$1" in
	build) shift; podman build --isolation=chroot --format docker --pull=never "\$@" ;;
	run) shift; podman run --name pristine-image --network ns:/run/netns/$NS "\$@" ;;
	*) echo "docker \$1: not played here" >&2; return 1 ;;
	esac
}
set -e
$(block install:image)
EOF
	NAMES+=(pristine-image)
	bash "$WORK/image.sh" >"$WORK/image.log" 2>&1 &
	image_pid=$!
	image_fail() { kill "$image_pid" 2>/dev/null; tail -n 40 "$WORK/image.log" >&2; die "Container image block: $*"; }
	subject="pristine image $$ $(date +%s)"
	# Only the client runs in the namespace (ip netns exec makes its own mount
	# namespace, where runc finds no cgroups); podman stays outside.
	ip netns exec "$NS" "$PY" - "$subject" <<'PY' || image_fail "readiness or SMTP"
import smtplib, sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 600
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2).status == 200:
            break
    except (urllib.error.URLError, OSError):
        pass
    assert time.monotonic() < deadline, "/readyz did not answer 200 within 10 minutes"
    time.sleep(1)
print("/readyz 200 (image, 0.0.0.0:8080 inside the namespace)")
with smtplib.SMTP("127.0.0.1", 2525, local_hostname="client.example", timeout=10) as s:
    s.sendmail("a@x.example", ["b@y.example"], "Subject: %s\r\n\r\nhello\r\n" % sys.argv[1])
PY
	spool=$(podman volume inspect --format '{{.Mountpoint}}' mailport-spool) || image_fail "no volume mailport-spool"
	for _ in $(seq 1 50); do
		grep -qs "^Subject: $subject" "$spool"/new/* && break
		sleep 0.1
	done
	grep -qs "^Subject: $subject" "$spool"/new/* || image_fail "the message is not in the volume's new/"
	step "stored in the volume mailport-spool; SIGTERM"
	podman kill --signal TERM pristine-image >/dev/null || image_fail "podman kill"
	rc=0
	wait "$image_pid" || rc=$?
	[ "$rc" = 0 ] || { tail -n 40 "$WORK/image.log" >&2; die "docker run did not exit 0 after SIGTERM (exit $rc)"; }
	podman rmi docker.io/library/debian:bookworm-slim >/dev/null 2>&1 || true
	step "Container image: OK in $(since "$t0")s"
fi

# ---------------------------------------------------------------- 4. test
if want test; then
	t0=$(date +%s)
	step "test command (the whole suite, in a fresh container)"
	{
		echo 'set -u'
		echo 'bash -c "$MAILPORT_TEST_CMD"'
	} >"$WORK/pristine-test.sh"
	start pristine-test -e MAILPORT_TEST_CMD="$(block test)"
	code=$(finish pristine-test)
	last=$(grep -v '^\s*$' "$WORK/pristine-test.log" | tail -n1)
	[ "$code" = 0 ] || { logtail pristine-test 80; die "the test command exited $code"; }
	[[ "$last" =~ ^[0-9]+\ passed,\ 0\ failed$ ]] || { logtail pristine-test; die "the test command did not end with 'N passed, 0 failed' (last line: $last)"; }
	step "test command: $last, in $(since "$t0")s"
fi

step "OK in $(since "$t_start")s"
echo "pristine: $(echo $ONLY | wc -w) passed, 0 failed"
