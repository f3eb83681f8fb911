#!/usr/bin/env bash
# Offline checks of the container and cluster files (issue 7), no engine, no
# cluster, no registry but Debian's and npm's:
#   - docker-compose.yml: `docker-compose config -q` (Debian's docker-compose),
#     as written and with its commented TLS/secrets examples switched on;
#   - docker/k8s, docker/k8s/loadbalancer and docker/k8s/example: `kubectl
#     kustomize` renders them, and docker/k8s-check.mjs type-checks every object
#     with the npm package kubernetes-models (plus our rules: securityContext,
#     probes and their timeouts, grace, PDB, NetworkPolicy, spread over nodes,
#     Secrets the manifests do not create only as optional); base/ and the
#     overlays built for production hold no Secret (example/ alone does);
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
out, on = [], False
for line in sys.stdin:
    if line.startswith("# secrets:"):
        on = True
    if on and line.startswith("#"):
        line = line[2:] if line.startswith("# ") else line[1:]
    out.append(line)
sys.stdout.write("".join(out))' >"$TMP/docker-compose.yml"
grep -q '^ *SMTPD_TLS_CERT: /run/secrets/tls_cert' "$TMP/docker-compose.yml" &&
	grep -q '^secrets:' "$TMP/docker-compose.yml" || die "could not switch the compose examples on"
mkdir -p "$TMP/secrets"
(cd "$TMP" && docker-compose -f docker-compose.yml --project-directory "$PWD" config -q) ||
	die "docker-compose.yml with its TLS/secrets examples switched on"

# ---------------------------------------------------------------- kubernetes
for dir in docker/k8s docker/k8s/loadbalancer docker/k8s/example; do
	step "kubectl kustomize $dir | kubernetes-models"
	kubectl kustomize "$dir" >"$TMP/rendered.yaml" || die "kubectl kustomize $dir"
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
	kubectl kustomize "$dir" | sed "$expr" >"$TMP/broken.yaml"
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
