#!/usr/bin/env bash
# Rewrite README.md's settings table from `mailport --help-markdown`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/mailport}
python3 - "$bin" <<'PY'
import re, subprocess, sys
md = subprocess.run([sys.argv[1], "--help-markdown"], capture_output=True, text=True, check=True).stdout
p = "README.md"
s = open(p, encoding="utf-8").read()
s = re.sub(r"(<!-- settings:begin -->\n).*?(<!-- settings:end -->)",
           lambda m: m.group(1) + md + m.group(2), s, flags=re.S)
open(p, "w", encoding="utf-8").write(s)
PY
