"""README.md's settings table is exactly what `mailport --help-markdown` prints,
and --help names every variable of that table: help, README and parsing come from
one table and cannot drift. Regenerate with: tests/update-readme.sh"""
import os
import re
import subprocess
import sys

BIN = os.environ["MAILPORT_BIN"]
SRC = os.environ["MAILPORT_SOURCE_DIR"]


def main():
    md = subprocess.run([BIN, "--help-markdown"], capture_output=True, text=True, check=True).stdout
    readme = open(os.path.join(SRC, "README.md"), encoding="utf-8").read()
    m = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme, re.S)
    if not m:
        print("FAIL: README.md has no settings markers")
        return 1
    if m.group(1) != md:
        print("FAIL: README settings table differs from mailport --help-markdown;"
              " run tests/update-readme.sh")
        return 1
    helptext = subprocess.run([BIN, "--help"], capture_output=True, text=True, check=True).stdout
    names = re.findall(r"^\| `(SMTPD_[A-Z_]+)` \| `(--[a-z-]+)` \|", md, re.M)
    if len(names) < 30:
        print(f"FAIL: only {len(names)} settings in the markdown table")
        return 1
    missing = [n for n, f in names if n not in helptext or f not in helptext]
    if missing:
        print("FAIL: --help lacks", missing)
        return 1
    print(f"1 passed, 0 failed ({len(names)} settings in README and --help)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
