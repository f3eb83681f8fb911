#!/usr/bin/env bash
# Install the browser tests' npm packages (puppeteer-core, pinned by
# package-lock.json) into DIR/node_modules with `npm ci`, unless the same lock
# file is installed there already. No browser is downloaded: the tests drive
# Debian's chromium. Used by tests/setup-and-run.sh and test_browser.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:?usage: install.sh DIR}"
stamp="$dir/node_modules/.mailport-lock"
if [ -f "$stamp" ] && cmp -s "$stamp" "$here/package-lock.json"; then
	exit 0
fi
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
(cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
cp "$here/package-lock.json" "$stamp"
