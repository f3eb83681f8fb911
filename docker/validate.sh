#!/usr/bin/env bash
# Offline checks of the container and cluster files (issue 7), no engine, no
# cluster, no registry but Debian's and npm's:
#   - docker-compose.yml: `docker-compose config -q` (Debian's docker-compose),
#     as written and with its commented TLS/secrets/Redis examples switched on;
#     the rspamd service only under the "rspamd" profile (so `up` never pulls
#     it), mailport's SMTPD_RSPAMD_URL empty unless given, and with
#     docker-compose.rspamd.yml set and waiting for rspamd's health check;
#   - docker/k8s, docker/k8s/loadbalancer, docker/k8s/example and
#     docker/k8s/rspamd (and loadbalancer/ with the rspamd component):
#     `kubectl kustomize` renders them, and docker/k8s-check.mjs type-checks
#     every object with the npm package kubernetes-models (plus our rules:
#     securityContext, probes and their timeouts, grace, PDB, NetworkPolicy,
#     spread over nodes, Secrets the manifests do not create only as optional,
#     rspamd as a sidecar with /ping probes, writable DBDIR/RUNDIR, resources,
#     mailport pointed at it); base/ and the overlays built for production hold
#     no Secret (example/ alone does);
#   - rspamd's local settings (docker/k8s/components/rspamd/local.d, mounted by
#     compose, the ConfigMap in Kubernetes): `rspamadm configtest` and
#     `configdump` (Debian's rspamd) show the workers and headers relied on;
#   - NATS (issue 16): the compose "nats" profile (one JetStream node, the
#     stream-creating one-shot, docker-compose.nats.yml) and
#     docker/k8s/overlays/nats (3-node StatefulSet, stream Job, mailport as a
#     Deployment): rendered and type-checked like the rest, nats-server -t on
#     both config files, max_payload against SMTPD_MAX_MESSAGE_SIZE, names and
#     ports that must agree;
#   - Dockerfile: `dockerfile-utils lint` (npm), and every -dev package CI
#     builds with (the README run command) is installed by the build stage too.
# npm packages go to docker/.validate/ (git-ignored). Exits non-zero on any
# failure, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== validate: $*"; }
die() { echo "validate: FAIL: $*" >&2; exit 1; }
t0=$(date +%s)

# ---------------------------------------------------------------- tools
if ! command -v docker-compose >/dev/null; then
	step "installing docker-compose"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
if ! command -v rspamadm >/dev/null; then
	step "installing rspamd (rspamadm checks the rspamd settings)"
	# No daemon from the package's postinst: the tests start their own rspamd.
	policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rspamd >/dev/null
	[ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
fi
command -v kubectl >/dev/null || die "kubectl is not installed"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed"
V=docker/.validate
mkdir -p "$V"
cat >"$V/package.json" <<'EOF'
{"private": true, "name": "mailport-validate", "version": "0.0.0",
 "dependencies": {"kubernetes-models": "5.1.0", "js-yaml": "4.1.0", "dockerfile-utils": "0.16.3"}}
EOF
if ! (cd "$V" && node -e 'require.resolve("kubernetes-models/package.json"); require.resolve("js-yaml"); require.resolve("dockerfile-utils/package.json")' 2>/dev/null); then
	step "npm install kubernetes-models js-yaml dockerfile-utils (in $V)"
	(cd "$V" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || die "npm install failed"
fi
cp docker/k8s-check.mjs "$V/k8s-check.mjs"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------- compose
step "docker-compose config (docker-compose.yml)"
docker-compose -f docker-compose.yml config -q || die "docker-compose.yml"
# The commented examples must be right too: switch them on and check again.
sed -E 's/^( *)# (SMTPD_[A-Z_]+: .*)$/\1\2/; s/^( *)# (secrets: \[.*\])$/\1\2/' docker-compose.yml |
	/usr/bin/python3 -c '
import re, sys
out, on, redis = [], False, False
for line in sys.stdin:
    if line.startswith("# secrets:"):
        on = True
    if on and line.startswith("#"):
        line = line[2:] if line.startswith("# ") else line[1:]
    # The commented Redis service for rspamd, and its volume.
    if line == "  # redis:\n":
        redis = True
    elif redis and not line.startswith("  #"):
        redis = False
    if redis or line == "  # redis-data: {}\n":
        line = "  " + line[4:]
    out.append(line)
sys.stdout.write("".join(out))' >"$TMP/docker-compose.yml"
grep -q '^ *SMTPD_TLS_CERT: /run/secrets/tls_cert' "$TMP/docker-compose.yml" &&
	grep -q '^secrets:' "$TMP/docker-compose.yml" &&
	grep -q '^  redis:$' "$TMP/docker-compose.yml" &&
	grep -q '^  redis-data: {}$' "$TMP/docker-compose.yml" || die "could not switch the compose examples on"
mkdir -p "$TMP/secrets"
(cd "$TMP" && docker-compose -f docker-compose.yml --project-directory "$PWD" --profile rspamd config -q) ||
	die "docker-compose.yml with its TLS/secrets/Redis examples switched on"
# rspamd (issue 15): under its profile only, so a plain `up` never pulls the
# image (and CI starts no compose project at all: podman-test.sh runs the
# mailport image by itself); mailport's SMTPD_RSPAMD_URL empty (off) unless
# given; the override points mailport at rspamd and waits for its /ping health
# check; the mounted settings are there.
step "docker-compose config: the rspamd profile and docker-compose.rspamd.yml"
env -u SMTPD_RSPAMD_URL docker-compose -f docker-compose.yml config >"$TMP/plain.yml" ||
	die "docker-compose.yml config"
SMTPD_RSPAMD_URL=http://rspamd:11333 docker-compose -f docker-compose.yml --profile rspamd config >"$TMP/env.yml" ||
	die "docker-compose.yml --profile rspamd config"
env -u SMTPD_RSPAMD_URL docker-compose -f docker-compose.yml -f docker-compose.rspamd.yml --profile rspamd config \
	>"$TMP/override.yml" || die "docker-compose.yml + docker-compose.rspamd.yml config"
/usr/bin/python3 - "$TMP" <<'PY' || die "the compose rspamd profile"
import os, sys, yaml
tmp = sys.argv[1]
load = lambda n: yaml.safe_load(open(os.path.join(tmp, n)))["services"]
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
plain, env, over = load("plain.yml"), load("env.yml"), load("override.yml")
r = plain.get("rspamd") or {}
want(r.get("profiles") == ["rspamd"], "the rspamd service is not under (only) the profile rspamd: %r" % r.get("profiles"))
want(not r.get("ports"), "rspamd publishes ports %r" % r.get("ports"))
hc = " ".join(r.get("healthcheck", {}).get("test", []))
want("GET /ping HTTP/" in hc and "/11333 " in hc, "rspamd's health check does not ask /ping on 11333: %r" % hc)
want(r.get("read_only") is True and "ALL" in (r.get("cap_drop") or []), "rspamd: not read-only, or keeps capabilities")
want(any(t.startswith("/run/rspamd:") for t in r.get("tmpfs", [])), "rspamd: no writable /run/rspamd")
vols = [v.split(":") for v in r.get("volumes", [])]
want(any(v[1] == "/var/lib/rspamd" for v in vols), "rspamd: no volume for /var/lib/rspamd")
local = [v[0] for v in vols if v[1] == "/etc/rspamd/local.d"]
want(local and os.path.isfile(os.path.join(local[0], "worker-normal.inc")), "rspamd: the local.d mount %r has no worker-normal.inc" % local)
m = plain["mailport"]
want(m["environment"].get("SMTPD_RSPAMD_URL") == "", "mailport's SMTPD_RSPAMD_URL is %r when not given, not empty (off)" % m["environment"].get("SMTPD_RSPAMD_URL"))
want("rspamd" not in (m.get("depends_on") or {}), "mailport depends on rspamd in docker-compose.yml: a plain `up` would need the profile")
want(env["mailport"]["environment"].get("SMTPD_RSPAMD_URL") == "http://rspamd:11333", "SMTPD_RSPAMD_URL from the environment is not passed to mailport")
om = over["mailport"]
want(om["environment"].get("SMTPD_RSPAMD_URL") == "http://rspamd:11333", "docker-compose.rspamd.yml: SMTPD_RSPAMD_URL is %r" % om["environment"].get("SMTPD_RSPAMD_URL"))
want((om.get("depends_on") or {}).get("rspamd", {}).get("condition") == "service_healthy", "docker-compose.rspamd.yml: mailport does not wait for rspamd's health check")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("rspamd: profile only, no published port, /ping health check, read-only; mailport's SMTPD_RSPAMD_URL off / passed through / set by the override, which waits for rspamd")
PY

# NATS JetStream (issue 16, SPEC 9): the nats service and the stream-creating
# one-shot only under the "nats" profile; mailport's SMTPD_NATS_URL empty (off)
# unless given; the override points mailport at nats:4222 and starts it once the
# one-shot has created the stream; the one-shot creates the stream and subject
# mailport publishes to; nats-server accepts the mounted config (-t) and its
# max_payload holds SMTPD_MAX_MESSAGE_SIZE plus mailport's header allowance.
step "docker-compose config: the nats profile and docker-compose.nats.yml"
env -u SMTPD_NATS_URL docker-compose -f docker-compose.yml --profile nats config >"$TMP/nats-plain.yml" ||
	die "docker-compose.yml --profile nats config"
env -u SMTPD_NATS_URL docker-compose -f docker-compose.yml -f docker-compose.nats.yml --profile nats config \
	>"$TMP/nats-override.yml" || die "docker-compose.yml + docker-compose.nats.yml config"
command -v nats-server >/dev/null || die "nats-server is not installed (apt-get install nats-server)"
nats-server -t -c docker/nats/nats.conf >/dev/null 2>&1 || die "nats-server -t rejects docker/nats/nats.conf"
printf 'max_payload: = 1\n' >"$TMP/bad-nats.conf"
! nats-server -t -c "$TMP/bad-nats.conf" >/dev/null 2>&1 || die "nats-server -t accepted a broken file"
/usr/bin/python3 - "$TMP" "$TMP/plain.yml" <<'PY' || die "the compose nats profile"
import os, re, sys, yaml
tmp = sys.argv[1]
load = lambda p: yaml.safe_load(open(p))["services"]
plain, prof, over = load(sys.argv[2]), load(os.path.join(tmp, "nats-plain.yml")), load(os.path.join(tmp, "nats-override.yml"))
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
n, j = prof.get("nats") or {}, prof.get("nats-stream") or {}
want(n.get("profiles") == ["nats"] and j.get("profiles") == ["nats"], "nats / nats-stream not under (only) the profile nats")
want(not n.get("ports"), "nats publishes ports %r" % n.get("ports"))
want(n.get("read_only") is True and "ALL" in (n.get("cap_drop") or []), "nats: not read-only, or keeps capabilities")
hc = " ".join(n.get("healthcheck", {}).get("test", []))
want("/healthz" in hc and ":8222" in hc, "nats's health check does not ask /healthz on 8222: %r" % hc)
vols = [v.split(":") for v in n.get("volumes", [])]
conf = [v[0] for v in vols if v[1] == "/etc/nats/nats.conf"]
want(conf and os.path.isfile(conf[0]), "nats: the config mount %r is not a file" % conf)
text = open(conf[0]).read() if conf and os.path.isfile(conf[0]) else ""
store = re.search(r"store_dir:\s*(\S+)", text)
want(store and any(v[1] == store.group(1) for v in vols if not v[0].startswith("/") and not v[0].startswith(".")),
     "nats: JetStream's store_dir %r is not on a named volume" % (store and store.group(1)))
mp = re.search(r"^max_payload:\s*(\d+)", text, re.M)
need = 26214400 + 16 * 1024 + 100 * 1024  # SMTPD_MAX_MESSAGE_SIZE default + headers (natspub_build.c)
want(mp and int(mp.group(1)) >= need, "max_payload %s is below SMTPD_MAX_MESSAGE_SIZE plus headers (%d): mailport would exit 2" % (mp and mp.group(1), need))
want((j.get("depends_on") or {}).get("nats", {}).get("condition") == "service_healthy", "nats-stream does not wait for nats's health check")
cmd = " ".join(j.get("command") or [])
want("stream add MAILPORT" in cmd and "--subjects mailport.messages" in cmd, "nats-stream does not create MAILPORT on mailport.messages: %r" % cmd)
want(j.get("environment", {}).get("NATS_URL") == "nats://nats:4222", "nats-stream's NATS_URL is not nats://nats:4222")
want(plain["mailport"]["environment"].get("SMTPD_NATS_URL") == "", "mailport's SMTPD_NATS_URL is not empty (off) when not given")
want("nats-stream" not in (plain["mailport"].get("depends_on") or {}), "mailport depends on nats-stream in docker-compose.yml: a plain `up` would need the profile")
om = over["mailport"]
want(om["environment"].get("SMTPD_NATS_URL") == "nats://nats:4222", "docker-compose.nats.yml: SMTPD_NATS_URL is %r" % om["environment"].get("SMTPD_NATS_URL"))
want((om.get("depends_on") or {}).get("nats-stream", {}).get("condition") == "service_completed_successfully",
     "docker-compose.nats.yml: mailport does not wait for the stream to be created")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("nats: profile only, no published port, /healthz check, read-only, store on a volume, max_payload %s; the one-shot creates MAILPORT after the health check; mailport's SMTPD_NATS_URL off / set by the override, which waits for the stream" % mp.group(1))
PY

# ---------------------------------------------------------------- kubernetes
# loadbalancer/ with the rspamd component, as an overlay of one's own combines
# them (written next to the npm packages, git-ignored).
mkdir -p "$V/lb-rspamd"
printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	'resources: [../../k8s/loadbalancer]' 'components: [../../k8s/components/rspamd]' \
	>"$V/lb-rspamd/kustomization.yaml"
for dir in docker/k8s docker/k8s/loadbalancer docker/k8s/example docker/k8s/rspamd "$V/lb-rspamd" docker/k8s/overlays/nats; do
	step "kubectl kustomize $dir | kubernetes-models"
	kubectl kustomize "$dir" >"$TMP/rendered.yaml" || die "kubectl kustomize $dir"
	cp "$TMP/rendered.yaml" "$TMP/rendered-${dir//\//_}.yaml"    # for teeth below
	(cd "$V" && node k8s-check.mjs <"$TMP/rendered.yaml") || die "$dir does not type-check"
	# Issue 12: no placeholder secret outside the example overlay.
	if [ "$dir" != docker/k8s/example ] && grep -q '^kind: Secret$' "$TMP/rendered.yaml"; then
		die "$dir renders a Secret: secrets belong in an overlay (see docker/k8s/example)"
	fi
done
grep -q '^kind: Secret$' <(kubectl kustomize docker/k8s/example) || die "docker/k8s/example makes no Secret"
# The checker must have teeth: each of these breakages of a rendered manifest
# must fail it (a wrong type, no readiness probe, a required Secret base/ does
# not make, the PROXY port shut by the NetworkPolicy, the HTTP side port open
# to all, no spread over nodes, liveness on a single sample, no probe timeout).
teeth() {
	local dir=$1 expr=$2
	sed "$expr" "$TMP/rendered-${dir//\//_}.yaml" >"$TMP/broken.yaml"
	if (cd "$V" && node k8s-check.mjs <"$TMP/broken.yaml" >/dev/null 2>&1); then
		die "k8s-check.mjs accepted $dir broken by sed '$expr'"
	fi
}
teeth docker/k8s 's/containerPort: 2525/containerPort: "2525x"/; s/readinessProbe:/readinessProbeX:/'
teeth docker/k8s '/optional: true/d'
teeth docker/k8s/loadbalancer 's/^\( *- port:\) 2526$/\1 2527/'
teeth docker/k8s 's/^\( *\)- podSelector: {}$/\1- namespaceSelector: {}/'
teeth docker/k8s 's/topologyKey: kubernetes.io\/hostname/topologyKey: topology.kubernetes.io\/zone/'
teeth docker/k8s '/livenessProbe:/,/failureThreshold/s/failureThreshold: 3/failureThreshold: 1/'
teeth docker/k8s '/timeoutSeconds: 2/d'
# rspamd (issue 15): probes not on /ping; a plain init container (it never
# completes); mailport pointed at the wrong port; no writable RUNDIR; root; no
# memory request; the sidecar's port opened by the NetworkPolicy; a ConfigMap
# that is not there; mailport pointed at a Service that is not there.
teeth docker/k8s/rspamd 's#path: /ping#path: /pong#'
teeth docker/k8s/rspamd '/restartPolicy: Always/d'
teeth docker/k8s/rspamd 's#http://127.0.0.1:11333#http://127.0.0.1:11334#'
teeth docker/k8s/rspamd 's#mountPath: /run/rspamd#mountPath: /run/rspamd-x#'
teeth docker/k8s/rspamd 's/runAsUser: 11333/runAsUser: 0/'
teeth docker/k8s/rspamd '/memory: 512Mi/d'
teeth docker/k8s/rspamd 's/^  ingress:$/&\n  - from:\n    - podSelector: {}\n    ports:\n    - port: 11333/'
teeth docker/k8s/rspamd '/- configMap:/,/name: rspamd-local/s/rspamd-local-[a-z0-9]*/rspamd-missing/'
teeth docker/k8s 's#^\(  SMTPD_SHUTDOWN_GRACE: .*\)$#\1\n  SMTPD_RSPAMD_URL: http://rspamd:11333#'

# NATS (issue 16): the rendered overlay's own facts, which no schema knows.
step "docker/k8s/overlays/nats: the NATS cluster, the stream Job, mailport as a Deployment"
POD_NAME=nats-0 nats-server -t -c docker/k8s/overlays/nats/nats.conf >/dev/null 2>&1 ||
	die "nats-server -t rejects docker/k8s/overlays/nats/nats.conf"
/usr/bin/python3 - "$TMP/rendered-docker_k8s_overlays_nats.yaml" <<'PY' || die "docker/k8s/overlays/nats"
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
get = lambda kind, name: next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
ss, dep, job = get("StatefulSet", "nats"), get("Deployment", "mailport"), get("Job", "nats-stream")
want(get("StatefulSet", "mailport") is None, "base/'s mailport StatefulSet is still there")
want(dep is not None and dep["spec"]["replicas"] >= 2, "mailport is not a Deployment with several replicas")
want(ss is not None and ss["spec"]["replicas"] == 3, "no 3-node nats StatefulSet")
if ss and dep and job:
    pod = ss["spec"]["template"]["spec"]
    c = pod["containers"][0]
    cmname = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cmname)["data"]["nats.conf"]
    store = re.search(r"store_dir:\s*(\S+)", conf).group(1)
    claims = {t["metadata"]["name"] for t in ss["spec"].get("volumeClaimTemplates", [])}
    want(any(m["mountPath"] == store and m["name"] in claims for m in c["volumeMounts"]),
         "JetStream's store_dir %s is not on a PersistentVolumeClaim" % store)
    svc = ss["spec"]["serviceName"]
    for i in range(3):
        want("nats-%d.%s:6222" % (i, svc) in conf, "nats.conf has no route to nats-%d.%s:6222" % (i, svc))
    want("$POD_NAME" in conf and any(e["name"] == "POD_NAME" for e in c.get("env", [])), "server_name is not the pod's name")
    mp = int(re.search(r"max_payload:\s*(\d+)", conf).group(1))
    m = dep["spec"]["template"]["spec"]["containers"][0]
    cm = {}
    for ef in m.get("envFrom", []):
        d = get("ConfigMap", ef["configMapRef"]["name"])
        cm.update(d["data"] if d else {})
    size = int(cm.get("SMTPD_MAX_MESSAGE_SIZE", 26214400))
    rcpt = int(cm.get("SMTPD_MAX_RECIPIENTS", 100))
    want(mp >= size + 16 * 1024 + rcpt * 1024, "max_payload %d is below SMTPD_MAX_MESSAGE_SIZE plus headers" % mp)
    url = cm.get("SMTPD_NATS_URL", "")
    host = re.match(r"^nats://([a-z0-9-]+):(\d+)$", url)
    want(host and get("Service", host.group(1)) and any(p["port"] == int(host.group(2)) for p in get("Service", host.group(1))["spec"]["ports"]),
         "SMTPD_NATS_URL %r is not a Service of these manifests with that port" % url)
    want(cm.get("SMTPD_NATS_MODE") == "sync" and cm.get("SMTPD_DELIVER") == "discard", "mailport is not in sync mode with SMTPD_DELIVER=discard")
    want(not any("spool" in (v.get("name") or "") for v in dep["spec"]["template"]["spec"].get("volumes", [])), "the Deployment still mounts a spool")
    cmd = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    stream, subject = cm.get("SMTPD_NATS_STREAM", "MAILPORT"), cm.get("SMTPD_NATS_SUBJECT", "mailport.messages")
    want("stream add %s " % stream in cmd and "--subjects %s " % subject in cmd and "--replicas 3" in cmd,
         "the Job does not create %s on %s with 3 replicas: %r" % (stream, subject, cmd))
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("nats overlay: 3 nodes with routes and JetStream on claims, max_payload %d; the Job creates the stream mailport uses; mailport a %d-replica Deployment in sync mode, no spool" % (mp, dep["spec"]["replicas"]))
PY
teeth docker/k8s/overlays/nats 's/runAsUser: 1000/runAsUser: 0/'
teeth docker/k8s/overlays/nats '/memory: 2Gi/d'

# ---------------------------------------------------------------- rspamd settings
step "rspamadm configtest/configdump docker/k8s/components/rspamd/local.d"
# Debian's rspamd with our local.d over its defaults, as the image does it
# (upstream defaults, then /etc/rspamd/local.d). configtest catches syntax;
# configdump shows the settings that mailport and the manifests rely on.
RSPAMD_DIR=docker/k8s/components/rspamd
rspamadm --var=LOCAL_CONFDIR="$PWD/$RSPAMD_DIR" configtest -c /etc/rspamd/rspamd.conf >"$TMP/configtest.log" 2>&1 ||
	{ cat "$TMP/configtest.log" >&2; die "rspamadm configtest $RSPAMD_DIR/local.d"; }
mkdir -p "$TMP/rspamd-bad/local.d"
cp "$RSPAMD_DIR"/local.d/* "$TMP/rspamd-bad/local.d/"
echo 'count = ;' >>"$TMP/rspamd-bad/local.d/worker-normal.inc"
if rspamadm --var=LOCAL_CONFDIR="$TMP/rspamd-bad" configtest -c /etc/rspamd/rspamd.conf >/dev/null 2>&1; then
	die "rspamadm configtest accepted a broken worker-normal.inc"
fi
rspamadm --var=LOCAL_CONFDIR="$PWD/$RSPAMD_DIR" configdump -c /etc/rspamd/rspamd.conf -C worker milter_headers \
	>"$TMP/configdump.json" 2>/dev/null || die "rspamadm configdump $RSPAMD_DIR/local.d"
/usr/bin/python3 - "$TMP/configdump.json" "$RSPAMD_DIR" <<'PY' || die "rspamd settings in $RSPAMD_DIR/local.d"
import json, os, sys
# configdump -C prints one JSON object per section.
text, dec, objs, i = open(sys.argv[1]).read(), json.JSONDecoder(), [], 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    objs.append(o)
workers = {k: v for o in objs for k, v in o.items() if isinstance(v, dict)}
headers = next((o for o in objs if "use" in o), {})
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
n, c, p = workers.get("normal", {}), workers.get("controller", {}), workers.get("rspamd_proxy", {})
want(n.get("bind_socket") == "*:11333", "the normal worker binds %r, not *:11333 (SMTPD_RSPAMD_URL, the probes)" % n.get("bind_socket"))
want(isinstance(n.get("count"), int) and n["count"] >= 1, "the normal worker's count %r is not pinned" % n.get("count"))
want(str(c.get("bind_socket", "")).split(":")[0] in ("localhost", "127.0.0.1"), "the controller binds %r, not loopback" % c.get("bind_socket"))
want(p.get("enabled") is False, "the milter proxy is not disabled")
want("authentication-results" in headers.get("use", []), "milter_headers does not add Authentication-Results")
# The ConfigMap generator ships every file that compose mounts, and only those.
files = sorted(os.listdir(os.path.join(sys.argv[2], "local.d")))
listed = sorted(l.strip()[len("- local.d/"):] for l in open(os.path.join(sys.argv[2], "kustomization.yaml"))
                if l.strip().startswith("- local.d/"))
want(files == listed, "the configMapGenerator lists %r, local.d holds %r" % (listed, files))
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("rspamd: normal worker *:11333 (count %d), controller on loopback, proxy off, Authentication-Results; the ConfigMap holds local.d's %d files"
      % (n["count"], len(files)))
PY

# ---------------------------------------------------------------- Dockerfile
step "dockerfile-utils lint Dockerfile"
out=$("$V/node_modules/.bin/dockerfile-utils" lint Dockerfile 2>&1) || { echo "$out" >&2; die "Dockerfile lint"; }
[ -z "$out" ] || { echo "$out" >&2; die "Dockerfile lint has findings"; }
printf 'FROM debian:bookworm-slim\nRUN true\nEXPOSE 99999\nENTRYPOINT\n' >"$TMP/Dockerfile.bad"
if "$V/node_modules/.bin/dockerfile-utils" lint "$TMP/Dockerfile.bad" >/dev/null 2>&1; then
	die "dockerfile-utils lint accepted a broken Dockerfile"
fi
step "the Dockerfile's build stage installs the README run command's packages"
# The image is built as the README's run command builds: the same packages
# (read out of README.md), and no test-only ones such as cmocka.
run_pkgs=$(/usr/bin/python3 tests/readme_commands.py packages) || die "README.md: no run command"
[ -n "$run_pkgs" ] || die "no packages in the README's run command"
for p in $run_pkgs; do
	grep -qE "(^|[[:space:]])$p([[:space:]]|\\\\|$)" Dockerfile || die "the Dockerfile's build stage lacks $p (the README's run command installs it)"
done
! grep -q libcmocka-dev Dockerfile || die "the Dockerfile installs libcmocka-dev: the image does not build the tests"

step "OK in $(( $(date +%s) - t0 ))s"
