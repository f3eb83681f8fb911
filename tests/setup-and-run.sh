#!/usr/bin/env bash
# Install what is missing (Debian 12, as root), build mailport with
# AddressSanitizer + UndefinedBehaviorSanitizer, and run the whole test suite
# under ctest. This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libuv1-dev libmicrohttpd-dev libjansson-dev libssl-dev
      libcurl4-openssl-dev libcrypt-dev libcmocka-dev python3 swaks curl iproute2 postfix
      openssl whois clang-14 libclang-rt-14-dev llvm-14)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	# postfix only for smtp-source/smtp-sink: "No configuration" starts no daemon.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD=${BUILD_DIR:-build}
echo "== building ($BUILD, ASan+UBSan)"
cmake -S . -B "$BUILD" -DMAILPORT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

# The README's run command builds Release (NDEBUG, -O3): -Werror must hold there too.
echo "== building build-release (the README's run command, compile only)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" --target mailport

echo "== tests"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 300)

# Issue 4: every libFuzzer target (SMTP core, endpoint lists, PROXY header) under
# ASan+UBSan with clang for 60 s in all; any crash or leak fails the run.
echo "== fuzzing (60 s)"
bash tests/fuzz/run-fuzzers.sh "${FUZZ_SECONDS:-60}"
