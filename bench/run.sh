#!/bin/bash
# bench/run.sh: the one benchmark command (issue 8). See bench/README.md.
#
# Builds a Release mailport in build-bench/, compiles the load generator, then
# in one run: the side-by-side table (bench/bench.py: smtp-sink, mailport
# discard and maildir, Postfix's durable path (a private instance that holds
# every message), Haraka, aiosmtpd under Postfix's smtp-source) and the
# scale test (bench/scale.py: 10,000 concurrent sessions). Prints figures and
# writes bench/results/*.json; it never fails a build and is not part of ctest.
# Loopback only. Takes about 8 minutes on 2 cores (--quick: about 2).
set -u
CALLER_DIR=$(pwd)
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
INSTALL=0
SCALE=1
TABLE=1
BENCH_ARGS=
SCALE_ARGS=
MAILPORT=

usage() {
	cat <<'EOF'
usage: bench/run.sh [--install] [--quick] [--no-peers] [--no-scale] [--no-table]
                    [--mailport PATH] [--anchors] [bench.py options]
  --install   first install what is missing: Postfix (apt: smtp-source/smtp-sink and the
              postfix daemons for the durable anchor), python3-aiosmtpd (apt), libuv1-dev
              (apt), Haraka (npm, into bench/.haraka)
  --quick     one round with fewer messages, and 2,000 sessions in the scale test
  --no-peers  only smtp-sink, mailport and Postfix durable (skip Haraka and aiosmtpd)
  --no-scale  skip the 10,000-session test
  --no-table  skip the smtp-source table
  --mailport PATH  measure this binary; do not build one
  --anchors   issue 14's table only: smtp-sink, mailport discard, mailport maildir and
              Postfix durable (a private postfix -c instance that holds every message),
              -s 10/100 with and without -d (= --no-peers --no-scale --variants none); ~5 min
Other options go to bench/bench.py (e.g. --repeat 5, --messages 40000, --variants all,
--no-postfix, --maildir-env KEY=VALUE, --durable KEY).
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--install) INSTALL=1 ;;
	--quick)
		BENCH_ARGS="$BENCH_ARGS --repeat 1 --messages 8000"
		SCALE_ARGS="$SCALE_ARGS --sessions 2000 --seconds 5"
		;;
	--no-peers)
		BENCH_ARGS="$BENCH_ARGS --no-peers"
		SCALE_ARGS="$SCALE_ARGS --no-peers"
		;;
	--no-scale) SCALE=0 ;;
	--mailport)
		shift
		MAILPORT=${1:?--mailport needs a path}
		;;
	--anchors)
		BENCH_ARGS="$BENCH_ARGS --no-peers --variants none"
		SCALE=0
		;;
	--no-table) TABLE=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) BENCH_ARGS="$BENCH_ARGS $1" ;;
	esac
	shift
done

if [ "$INSTALL" = 1 ]; then
	echo "== installing the reference tools"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y postfix python3-aiosmtpd libuv1-dev \
		pkg-config cmake build-essential >/dev/null || echo "apt-get install failed (continuing)"
	if command -v npm >/dev/null 2>&1; then
		mkdir -p bench/.haraka
		(cd bench/.haraka && npm install --no-audit --no-fund Haraka >/dev/null 2>&1) ||
			echo "npm install Haraka failed (Haraka will be skipped)"
	else
		echo "npm not found: Haraka will be skipped"
	fi
fi

if [ -n "$MAILPORT" ]; then
	case $MAILPORT in /*) ;; *) MAILPORT=$CALLER_DIR/$MAILPORT ;; esac
	if [ ! -x "$MAILPORT" ]; then
		echo "bench: no executable mailport at $MAILPORT"
		exit 1
	fi
	echo "== using $MAILPORT (not building)"
else
	echo "== building Release mailport in $BUILD"
	if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$BUILD.log" 2>&1 &&
		cmake --build "$BUILD" --target mailport -j"$(nproc)" >>"$BUILD.log" 2>&1; }; then
		tail -20 "$BUILD.log"
		echo "bench: the build failed (log in $BUILD.log): nothing measured"
		exit 1
	fi
	MAILPORT=$BUILD/mailport
fi

# shellcheck disable=SC2046
if [ "$SCALE" = 1 ] && echo "== compiling bench/loadgen" && ! cc -O2 -std=c17 -Wall -Wextra -o bench/loadgen bench/loadgen.c \
	$(pkg-config --cflags --libs libuv); then
	echo "bench: cannot compile bench/loadgen.c (libuv1-dev?): skipping the scale test"
	SCALE=0
fi

# The scale test holds 10,000 sessions: both ends need a descriptor each.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
echo "== open files limit: $(ulimit -n)"

status=0
if [ "$TABLE" = 1 ]; then
	echo "== smtp-source table"
	# shellcheck disable=SC2086
	/usr/bin/python3 bench/bench.py --mailport "$MAILPORT" $BENCH_ARGS || status=1
fi
if [ "$SCALE" = 1 ]; then
	echo "== scale: concurrent sessions"
	# shellcheck disable=SC2086
	/usr/bin/python3 bench/scale.py --mailport "$MAILPORT" $SCALE_ARGS || status=1
fi
exit $status
