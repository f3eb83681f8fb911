#!/usr/bin/env bash
# Install what is missing (Debian 12, as root), build mailport with
# AddressSanitizer + UndefinedBehaviorSanitizer, and run the whole test suite
# under ctest. This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# The run command's packages and what the tests use, found by running this
# script in a pristine Debian 12 container
# (docker/pristine-test.sh does so in CI), not by reading a list: with
# --no-install-recommends nothing comes along unasked, so every tool is here.
#   libnet-ssleay-perl: swaks's STARTTLS and AUTH (a Recommends of swaks)
#   postfix: smtp-source/smtp-sink ("No configuration" starts no daemon)
#   whois: mkpasswd; openssl: certificates and hashes; iproute2: ip netns;
#   util-linux: unshare, nsenter, setpriv; clang/llvm: the libFuzzer run;
#   systemd, man-db: systemd-analyze verify and man on the installed files;
#   nodejs, ca-certificates: nodemailer (fetched from the npm registry by its
#   test) as a real client; Debian's npm is not needed for one package.
#   chromium, npm: the web UI's browser tests (test_browser.py; puppeteer-core
#   from the npm registry by `npm ci`, no browser download).
#   rspamd, dnsmasq-base, python3-dkim: test_rspamd.py's real rspamd, its
#   authoritative test DNS (the binary alone: the dnsmasq package would also
#   install and start a system DNS service), and DKIM-signed messages.
# The first line is the README run command's list (test_readme.py checks it).
PKGS=(build-essential cmake pkg-config libuv1-dev libmicrohttpd-dev libjansson-dev libssl-dev
      libcurl4-openssl-dev libcrypt-dev libnats-dev libgmime-3.0-dev
      libcmocka-dev python3 swaks libnet-ssleay-perl curl iproute2 postfix
      openssl whois util-linux systemd man-db git clang-14 libclang-rt-14-dev llvm-14
      nodejs ca-certificates rspamd dnsmasq-base python3-dkim nats-server chromium)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm installs the browser tests' puppeteer-core; a Node.js that brings its
# own npm (and conflicts with Debian's package) is fine as it is.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	# postfix only for smtp-source/smtp-sink: "No configuration" starts no daemon.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD=${BUILD_DIR:-build}
echo "== building ($BUILD, ASan+UBSan)"
cmake -S . -B "$BUILD" -DMAILPORT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

# The README's run command builds Release (NDEBUG, -O3): -Werror must hold there too.
echo "== building build-release (the README's run command, compile only)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" --target mailport

# Issue 17: the browser tests' npm packages (puppeteer-core; Debian's chromium
# is the browser), with `npm ci` from the lock file into the build directory.
echo "== npm ci (tests/browser)"
bash tests/browser/install.sh "$BUILD/npm/browser"

echo "== tests"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# A test skipped for a missing tool fails here: this command installs them all.
export MAILPORT_NO_SKIP=1
(cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 300) | tee "$BUILD/ctest.log"
ntests=$(sed -nE 's/.*tests passed, 0 tests failed out of ([0-9]+).*/\1/p' "$BUILD/ctest.log" | tail -n1)
[ -n "$ntests" ] || { echo "setup-and-run: no ctest summary" >&2; exit 1; }

# Issue 4: every libFuzzer target (SMTP core, endpoint lists, PROXY header) under
# ASan+UBSan with clang for 60 s in all; any crash or leak fails the run.
echo "== fuzzing (60 s)"
bash tests/fuzz/run-fuzzers.sh "${FUZZ_SECONDS:-60}"
nfuzz=$(ls tests/fuzz/fuzz_*.c | wc -l)
echo "setup-and-run: ctest $ntests, fuzzers $nfuzz"
echo "$((ntests + nfuzz)) passed, 0 failed"
