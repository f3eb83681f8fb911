#!/usr/bin/env bash
# Build every libFuzzer target of mailport with clang (ASan + UBSan) and run it
# for a share of TOTAL_SECONDS on a copy of its checked-in corpus.
#
#   tests/fuzz/run-fuzzers.sh [TOTAL_SECONDS] [TARGET...]
#
# TOTAL_SECONDS (default 60) is split evenly over the targets run (at least 1 s
# each): with the four targets below, 60 gives 15 s each. TARGET names select
# some of the table's targets (default: all of them).
#
# Exit status: 0 every target ran clean; 1 a target found a crash, a leak, a
# sanitizer report, a timeout or an out-of-memory (its input is printed and
# kept); 2 setup or build failure (no clang, no fuzzer runtime, a compile
# error). With FUZZ_SKIP_WITHOUT_CLANG=1 a missing clang/fuzzer runtime exits 77
# (skip) instead of 2.
#
# Packages (Debian 12): clang-14 (or `clang`) and libclang-rt-14-dev, which holds
# libclang_rt.fuzzer, .asan and .ubsan (libclang-common-14-dev only *recommends*
# it, so `apt-get install --no-install-recommends clang` alone cannot link
# -fsanitize=fuzzer). llvm-14 (llvm-symbolizer) is optional, for symbolized
# stack traces:
#   apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev llvm-14
#
# Environment: CC (default: clang, else clang-14); FUZZ_WORKDIR (default: a new
# temp dir; kept when something was found, removed otherwise unless FUZZ_KEEP=1);
# FUZZ_EXTRA_ARGS (more libFuzzer flags, e.g. -jobs=2); FUZZ_RSS_LIMIT_MB (2048).
set -uo pipefail

# ---------------------------------------------------------------- the targets
# name | sources besides tests/fuzz/fuzz_<name>.c | dictionary in tests/fuzz (optional)
#      | pkg-config modules to compile and link with (optional)
#      | most seconds for this target (optional: a slow library's share kept small)
# The corpus is tests/fuzz/corpus/<name>; the dictionary defaults to <name>.dict.
TARGETS=(
	"smtp_proto|src/core/smtp_proto.c src/core/smtp_data.c src/core/smtp_parse.c src/core/smtp_auth.c src/core/buf.c src/core/policy.c|smtp.dict"
	"endpoint|src/core/endpoint.c src/core/endpoint_parse.c src/core/buf.c|"
	"proxy_proto|src/core/proxy_proto.c|"
	"policy|src/core/policy.c|"
	"mime|src/store/mime.c -Isrc/store||gmime-3.0 jansson|5"
)

# shellcheck disable=SC2054  # the commas are part of -fsanitize=
CFLAGS_FUZZ=(-std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=all -Isrc/core)

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2

total=${1:-60}
shift || true
if ! [[ $total =~ ^[0-9]+$ ]] || [ "$total" -lt 1 ]; then
	echo "usage: $0 [TOTAL_SECONDS] [TARGET...]" >&2
	exit 2
fi

setup_fail() {
	echo "run-fuzzers: $*" >&2
	if [ "${FUZZ_SKIP_WITHOUT_CLANG:-0}" = 1 ]; then
		echo "run-fuzzers: SKIP (FUZZ_SKIP_WITHOUT_CLANG=1)" >&2
		exit 77
	fi
	exit 2
}

# ---------------------------------------------------------------- pick targets
selected=()
warnings=()
for t in "${TARGETS[@]}"; do
	name=${t%%|*}
	if [ ! -f "tests/fuzz/fuzz_${name}.c" ]; then
		warnings+=("target ${name} is in the table but tests/fuzz/fuzz_${name}.c does not exist: skipped")
		continue
	fi
	if [ $# -eq 0 ]; then
		selected+=("$t")
	else
		for want in "$@"; do
			[ "$want" = "$name" ] && selected+=("$t")
		done
	fi
done
for f in tests/fuzz/fuzz_*.c; do
	[ -f "$f" ] || continue
	name=$(basename "$f" .c)
	name=${name#fuzz_}
	listed=0
	for t in "${TARGETS[@]}"; do
		[ "${t%%|*}" = "$name" ] && listed=1
	done
	[ "$listed" = 1 ] || warnings+=("$f is not in the TARGETS table of $0: not fuzzed")
done
for w in "${warnings[@]}"; do
	echo "run-fuzzers: WARNING: $w" >&2
done
if [ ${#selected[@]} -eq 0 ]; then
	echo "run-fuzzers: no such target: $* (have: $(for t in "${TARGETS[@]}"; do printf '%s ' "${t%%|*}"; done))" >&2
	exit 2
fi
per=$((total / ${#selected[@]}))
[ "$per" -lt 1 ] && per=1

# ---------------------------------------------------------------- compiler
CC=${CC:-}
if [ -z "$CC" ]; then
	if command -v clang >/dev/null 2>&1; then CC=clang
	elif command -v clang-14 >/dev/null 2>&1; then CC=clang-14
	else setup_fail "clang not found (apt-get install -y clang-14 libclang-rt-14-dev)"
	fi
fi
command -v "$CC" >/dev/null 2>&1 || setup_fail "CC=$CC not found"

if [ -n "${FUZZ_WORKDIR:-}" ]; then
	work=$FUZZ_WORKDIR
	mkdir -p "$work" || exit 2
	own_work=0
else
	work=$(mktemp -d /tmp/mailport-fuzz.XXXXXX) || exit 2
	own_work=1
fi
found=0

# libFuzzer runtime present? (a one-line target, so the message is clear)
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n){(void)d;(void)n;return 0;}\n' \
	>"$work/probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" >"$work/probe.log" 2>&1; then
	cat "$work/probe.log" >&2
	[ "$own_work" = 1 ] && rm -rf "$work"
	setup_fail "$CC cannot link -fsanitize=fuzzer,address,undefined: install libclang-rt-14-dev (the compiler-rt runtimes)"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
echo "run-fuzzers: $CC, ${#selected[@]} target(s), ${per} s each, work dir $work"

for t in "${selected[@]}"; do
	IFS='|' read -r name sources dict pkgs cap <<<"$t"
	secs=$per
	if [ -n "$cap" ] && [ "$cap" -lt "$secs" ]; then secs=$cap; fi
	pkgflags=()
	if [ -n "$pkgs" ]; then
		# shellcheck disable=SC2086  # pkgs is a list of module names
		if ! read -r -a pkgflags <<<"$(pkg-config --cflags --libs $pkgs)"; then
			summary+=("${name}: BUILD FAILED (pkg-config $pkgs)")
			found=2
			continue
		fi
	fi
	src="tests/fuzz/fuzz_${name}.c"
	bin="$work/fuzz_${name}"
	log="$work/${name}.log"
	art="$work/artifacts_${name}/"
	corpus="$work/corpus_${name}"
	echo
	echo "=== ${name}: build"
	# shellcheck disable=SC2086  # sources is a space-separated list by design
	if ! "$CC" "${CFLAGS_FUZZ[@]}" "$src" $sources "${pkgflags[@]}" -o "$bin" 2>"$work/${name}.build.log"; then
		cat "$work/${name}.build.log" >&2
		echo "run-fuzzers: build of ${name} failed" >&2
		summary+=("${name}: BUILD FAILED")
		found=2
		continue
	fi
	rm -rf "$corpus" "$art"
	mkdir -p "$corpus" "$art"
	if [ -d "tests/fuzz/corpus/${name}" ]; then
		cp -R "tests/fuzz/corpus/${name}/." "$corpus/"
	fi
	seeds=$(find "$corpus" -type f | wc -l)
	[ -z "$dict" ] && dict="${name}.dict"
	dict_args=()
	if [ -f "tests/fuzz/${dict}" ]; then
		dict_args=("-dict=$ROOT/tests/fuzz/${dict}")
	else
		dict="(none)"
	fi
	echo "=== ${name}: ${secs} s on ${seeds} seed(s), dictionary ${dict}"
	# shellcheck disable=SC2086  # FUZZ_EXTRA_ARGS is a list of flags
	timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -print_final_stats=1 \
		-detect_leaks=1 -timeout=10 -rss_limit_mb="${FUZZ_RSS_LIMIT_MB:-2048}" \
		-artifact_prefix="$art" "${dict_args[@]}" ${FUZZ_EXTRA_ARGS:-} "$corpus" >"$log" 2>&1
	rc=$?
	execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
	rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
	rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
	last=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' | tail -1)
	after=$(find "$corpus" -type f | wc -l)
	grep 'stat::' "$log"
	echo "${name}: ${last:-no coverage line}; corpus ${seeds} -> ${after} files"
	findings=$(find "$art" -type f ! -name 'slow-unit-*' 2>/dev/null | sort)
	if [ "$rc" -ne 0 ] || [ -n "$findings" ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
		found=1
		echo "!!! ${name}: FAILED (libFuzzer exit ${rc})" >&2
		grep -E -A40 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|==[0-9]+== ?ERROR|deadly signal|ALARM|out-of-memory' "$log" | head -80 >&2
		for f in $findings; do
			echo "--- finding: $f ($(wc -c <"$f") bytes); first bytes:" >&2
			od -A d -c "$f" | head -12 >&2
			echo "--- reproduce: $bin $f   (minimize: $bin -minimize_crash=1 -runs=100000 $f)" >&2
		done
		[ -z "$findings" ] && echo "--- no artifact written; see $log" >&2
		summary+=("${name}: FAILED exit ${rc}, $(echo "$findings" | grep -c . || true) finding(s), execs ${execs:-?}")
	else
		summary+=("${name}: ok, ${secs} s, stat::number_of_executed_units: ${execs:-?} (${rate:-?}/s), ${last:-?}, corpus ${seeds} -> ${after}, peak rss ${rss:-?} MB")
	fi
done

echo
echo "=== run-fuzzers summary"
for s in "${summary[@]}"; do
	echo "  $s"
done
for w in "${warnings[@]}"; do
	echo "  WARNING: $w"
done
if [ "$found" -ne 0 ]; then
	echo "run-fuzzers: FAILED; work dir kept: $work" >&2
	exit "$found"
fi
if [ "${FUZZ_KEEP:-0}" = 1 ] || [ "$own_work" = 0 ]; then
	echo "run-fuzzers: OK; work dir kept: $work"
else
	rm -rf "$work"
	echo "run-fuzzers: OK"
fi
exit 0
