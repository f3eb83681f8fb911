#!/bin/bash
# $src and $MP_ENV hold options on purpose: they are split into words.
# shellcheck disable=SC2086
# bench/profile.sh: the profile behind bench/RESULTS.md (issue 8), reproducible.
#
#   bench/profile.sh [--quick] [--journal]
#
# Builds build-bench-prof/ (Release, -O3 as shipped, plus -g and frame pointers
# so that callgrind and perf can name inlined code), then under a fixed
# smtp-source load, and writes everything to bench/results/profile-<stamp>.txt:
#   1. callgrind (instructions are counted, so the figures repeat on a noisy
#      machine): Ir per message and the top functions, and malloc/free/write
#      calls per message, for mailport discard (-s 10 -d; -s 10; -d with
#      SMTPD_LOG_LEVEL=warn), mailport maildir (-s 10 -d) and smtp-sink.
#      Counters are zeroed after a warm-up (callgrind_control -z) and dumped
#      after the measured load (-d), so start-up is not counted.
#   2. strace -c -f: system calls per message (discard -d, discard, maildir -d,
#      smtp-sink -d and without).
#   3. perf record -e cpu-clock -g (this VM has no hardware counters): where the
#      CPU goes, kernel included, for discard and maildir at -s 100 -d.
#   4. Struct sizes (gdb on the -g binary): the memory of an idle session.
#   5. bench/fsync_batch on the spool's disk (with --journal also on a journaled
#      ext4 on a loop device, mounted under /mnt and removed afterwards).
# Loopback only; every run is bounded by smtp-source's message count and timeout.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PROF=$ROOT/build-bench-prof
BIN=$PROF/mailport
M=2000
MD=1000
JOURNAL=0
for a in "$@"; do
	case $a in
	--quick) M=500 MD=300 ;;
	--journal) JOURNAL=1 ;;
	*) echo "usage: bench/profile.sh [--quick] [--journal]"; exit 2 ;;
	esac
done
for t in valgrind callgrind_control strace perf smtp-source smtp-sink gdb; do
	command -v $t >/dev/null || { echo "profile: $t is missing"; exit 1; }
done
mkdir -p bench/results
OUT=bench/results/profile-$(date +%Y%m%d-%H%M%S).txt
TMP=$(mktemp -d /tmp/mailport-profile-XXXXXX)
SPOOLP=$(mktemp -d /var/tmp/mailport-profile-spool-XXXXXX)
PORT=27100
trap 'rm -rf "$TMP" "$SPOOLP"' EXIT
exec > >(tee "$OUT") 2>&1

echo "== build $PROF (Release -O3, -g -fno-omit-frame-pointer)"
cmake -S "$ROOT" -B "$PROF" -DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_C_FLAGS="-g -fno-omit-frame-pointer" >"$TMP/build.log" 2>&1 &&
	cmake --build "$PROF" --target mailport -j"$(nproc)" >>"$TMP/build.log" 2>&1 ||
	{ tail -20 "$TMP/build.log"; exit 1; }
cc -O2 -pthread -o bench/fsync_batch bench/fsync_batch.c || exit 1
echo "mailport $(git -C "$ROOT" describe --always --dirty 2>/dev/null), $(date -u +%FT%TZ)"

wait_port() { # port: until it greets (bounded)
	for _ in $(seq 150); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# The server's environment; @PORT@ and @HTTP@ are filled in per run.
MP_ENV="SMTPD_HOSTS=127.0.0.1 SMTPD_PORTS=@PORT@ SMTPD_HTTP=127.0.0.1:@HTTP@ \
SMTPD_HOSTNAME=bench.test SMTPD_MAX_CONNECTIONS=20000 SMTPD_MAX_CONNECTIONS_PER_CLIENT=20000"

# Sets argv from the arguments with the placeholders filled in.
fill() {
	argv=("${@//@PORT@/$PORT}")
	argv=("${argv[@]//@HTTP@/$((PORT + 1000))}")
}

# callgrind NAME "SMTP-SOURCE ARGS" MESSAGES -- server argv (the server listens on $PORT)
callgrind() {
	local name=$1 src=$2 m=$3
	shift 4
	PORT=$((PORT + 2))
	local argv
	fill "$@"
	rm -f "$TMP/cg.$name"*
	# valgrind must run the server itself, not env(1): the environment first.
	local pre=() i=0
	if [ "${argv[0]}" = env ]; then
		pre=(env)
		i=1
		while [[ "${argv[$i]}" == *=* ]]; do
			pre+=("${argv[$i]}")
			i=$((i + 1))
		done
	fi
	"${pre[@]}" valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$name" "${argv[@]:$i}" \
		>"$TMP/$name.log" 2>&1 &
	local vp=$!
	wait_port $PORT || { echo "$name: did not start"; kill $vp; return; }
	timeout 300 smtp-source -s 10 -m 200 $src -l 1024 127.0.0.1:$PORT
	sleep 0.3
	callgrind_control -z $vp >/dev/null
	timeout 600 smtp-source -m "$m" $src -l 1024 127.0.0.1:$PORT
	sleep 0.3
	callgrind_control -d $vp >/dev/null
	kill -TERM $vp
	wait $vp 2>/dev/null
	echo
	echo "---- callgrind: $name: smtp-source -m $m $src -l 1024"
	/usr/bin/python3 bench/cgstat.py "$TMP/cg.$name.1" "$m" 20
}

echo
echo "================ 1. callgrind (Ir = instructions executed in user space)"
callgrind discard-d "-s 10 -d" $M -- env $MP_ENV SMTPD_DELIVER=discard "$BIN"
callgrind discard "-s 10" $M -- env $MP_ENV SMTPD_DELIVER=discard "$BIN"
callgrind discard-d-logwarn "-s 10 -d" $M -- env $MP_ENV SMTPD_DELIVER=discard \
	SMTPD_LOG_LEVEL=warn "$BIN"
callgrind maildir-d "-s 10 -d" $MD -- env $MP_ENV SMTPD_DELIVER=maildir \
	SMTPD_SPOOL="$SPOOLP/cg" "$BIN"
# smtp-sink as root needs -u; "-u root" keeps it controllable by callgrind_control.
callgrind smtp-sink-d "-s 10 -d" $M -- smtp-sink -u root 127.0.0.1:@PORT@ 1024
callgrind smtp-sink "-s 10" $M -- smtp-sink -u root 127.0.0.1:@PORT@ 1024

# strace NAME "SRC ARGS" MESSAGES -- server argv
strace_c() {
	local name=$1 src=$2 m=$3
	shift 4
	PORT=$((PORT + 2))
	local argv
	fill "$@"
	"${argv[@]}" >"$TMP/$name.log" 2>&1 &
	local sp=$!
	wait_port $PORT || { echo "$name: did not start"; kill $sp; return; }
	timeout 300 smtp-source -s 10 -m 200 $src -l 1024 127.0.0.1:$PORT
	strace -c -f -p $sp -o "$TMP/strace.$name" &
	local st=$!
	sleep 1
	timeout 600 smtp-source -m "$m" $src -l 1024 127.0.0.1:$PORT
	sleep 0.5
	kill -INT $st
	wait $st 2>/dev/null
	kill -TERM $sp
	wait $sp 2>/dev/null
	echo
	echo "---- strace -c -f: $name: smtp-source -m $m $src -l 1024: calls per message"
	awk -v m="$m" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
		calls = $4; name = $NF; if (name == "total") { total = calls; next }
		if (calls / m >= 0.01) printf "  %8.2f  %s\n", calls / m, name }
		END { printf "  %8.2f  all system calls\n", total / m }' "$TMP/strace.$name"
}

echo
echo "================ 2. system calls per message"
strace_c discard-d "-s 10 -d" $M -- env $MP_ENV SMTPD_DELIVER=discard "$BIN"
strace_c discard "-s 10" $M -- env $MP_ENV SMTPD_DELIVER=discard "$BIN"
strace_c maildir-d "-s 10 -d" $MD -- env $MP_ENV SMTPD_DELIVER=maildir \
	SMTPD_SPOOL="$SPOOLP/st" "$BIN"
strace_c smtp-sink-d "-s 10 -d" $M -- smtp-sink -u nobody 127.0.0.1:@PORT@ 1024
strace_c smtp-sink "-s 10" $M -- smtp-sink -u nobody 127.0.0.1:@PORT@ 1024

perf_rec() { # NAME "SRC" M -- argv
	local name=$1 src=$2 m=$3
	shift 4
	PORT=$((PORT + 2))
	local argv
	fill "$@"
	"${argv[@]}" >"$TMP/$name.log" 2>&1 &
	local sp=$!
	wait_port $PORT || { echo "$name: did not start"; kill $sp; return; }
	timeout 300 smtp-source -s 10 -m 200 $src -l 1024 127.0.0.1:$PORT
	perf record -e cpu-clock -F 2000 -g -p $sp -o "$TMP/perf.$name" >/dev/null 2>&1 &
	local pr=$!
	sleep 0.5
	timeout 600 smtp-source -m "$m" $src -l 1024 127.0.0.1:$PORT
	kill -INT $pr
	wait $pr 2>/dev/null
	kill -TERM $sp
	wait $sp 2>/dev/null
	echo
	echo "---- perf record -e cpu-clock: $name: smtp-source -m $m $src -l 1024 (self, top 25)"
	perf report -i "$TMP/perf.$name" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
		grep '%' | head -25
}

echo
echo "================ 3. perf (cpu-clock sampling, kernel included)"
perf_rec discard-s100-d "-s 100 -d" 20000 -- env $MP_ENV SMTPD_DELIVER=discard "$BIN"
perf_rec maildir-s100-d "-s 100 -d" 3000 -- env $MP_ENV SMTPD_DELIVER=maildir \
	SMTPD_SPOOL="$SPOOLP/perf" "$BIN"

echo
echo "================ 4. memory of a session (sizeof, bytes)"
gdb -batch -ex 'print sizeof(struct session)' -ex 'print sizeof(struct smtp_proto)' \
	-ex 'print sizeof(((struct smtp_proto *)0)->out)' -ex 'print sizeof(struct deliver_job)' \
	-ex 'print sizeof(uv_tcp_t)' -ex 'print sizeof(uv_timer_t)' "$BIN" 2>/dev/null |
	paste -d' ' - <(printf '%s\n' "struct session" "struct smtp_proto" \
		"smtp_proto.out (fixed output buffer)" "struct deliver_job" "uv_tcp_t" "uv_timer_t")
echo "(plus what the session allocates beside them: bench/scale.py measures the RSS per idle session)"

echo
echo "================ 5. fsync: what group commit can buy on this disk"
./bench/fsync_batch "$SPOOLP/fsb" $((M))
if [ "$JOURNAL" = 1 ]; then
	IMG=/var/tmp/mailport-profile-ext4j.img
	MNT=/mnt/mailport-profile-ext4j
	truncate -s 2G $IMG && mkfs.ext4 -q -F -N 1000000 $IMG && mkdir -p $MNT &&
		mount -o loop $IMG $MNT && {
		./bench/fsync_batch $MNT/fsb $((M))
		umount $MNT
	}
	rm -f $IMG
	rmdir $MNT 2>/dev/null
fi
echo
echo "profile written to $OUT"
