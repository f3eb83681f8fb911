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
    # The test command installs everything the run command does, and more.
    run_pkgs = subprocess.run([sys.executable, os.path.join(SRC, "tests", "readme_commands.py"),
                               "packages"], capture_output=True, text=True, check=True).stdout.split()
    if "libuv1-dev" not in run_pkgs or "cmake" not in run_pkgs:
        print("FAIL: the README run command's packages were not read:", run_pkgs)
        return 1
    setup = open(os.path.join(SRC, "tests", "setup-and-run.sh"), encoding="utf-8").read()
    m = re.search(r"^PKGS=\((.*?)\)", setup, re.M | re.S)
    test_pkgs = m.group(1).split() if m else []
    lacking = [p for p in run_pkgs if p not in test_pkgs]
    if not test_pkgs or lacking:
        print("FAIL: tests/setup-and-run.sh PKGS lacks the run command's", lacking or run_pkgs)
        return 1
    if "libcmocka-dev" in run_pkgs:
        print("FAIL: the run command installs cmocka; it needs only the binary's build dependencies")
        return 1
    print(f"2 passed, 0 failed ({len(names)} settings in README and --help;"
          f" {len(run_pkgs)} run-command packages in the test command's list)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
