#!/usr/bin/env bash
# Build mailport with ThreadSanitizer and run the unit and integration tests
# under it (the HTTP side port answers on libmicrohttpd's own thread; this
# checks the loop/HTTP split has no data race). Not part of the default suite:
# TSan doubles the build; run it after touching stats, httpd or threads.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-tsan -DMAILPORT_TSAN=ON >/dev/null
cmake --build build-tsan -j"$(nproc)"
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 exitcode=66"
cd build-tsan
ctest --output-on-failure -j"$(nproc)" -L 'unit|integration'
