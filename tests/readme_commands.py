#!/usr/bin/env python3
"""Print one copy-paste block of README.md, read at run time so that CI runs
what the README says and never a copy of it.

  readme_commands.py run        the first sh block under "## Two commands"
  readme_commands.py test       the second sh block there
  readme_commands.py install:image | install:deb | install:source
                                the sh block under "### Container image",
                                "### Debian package" or "### From source" of
                                "## Install"
  readme_commands.py packages   the apt packages the run command installs

Exits 1 naming what it could not find."""
import os
import re
import shlex
import sys

INSTALL = {"install:image": "Container image", "install:deb": "Debian package",
           "install:source": "From source"}
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def section(text, heading, level):
    """The text under a heading (of that level) up to the next heading of the
    same or a higher level."""
    m = re.search(r"^%s %s[^\n]*\n" % ("#" * level, re.escape(heading)), text, re.M)
    if not m:
        sys.exit("readme_commands: README.md has no %s %s heading" % ("#" * level, heading))
    rest = text[m.end():]
    end = re.search(r"^#{1,%d} " % level, rest, re.M)
    return rest[:end.start()] if end else rest


def sh_blocks(text):
    return [b.strip("\n") for b in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)]


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    text = open(README, encoding="utf-8").read()
    what = argv[1]
    if what in ("run", "test", "packages"):
        blocks = sh_blocks(section(text, "Two commands", 2))
        if len(blocks) < 2:
            sys.exit("readme_commands: fewer than two sh blocks under ## Two commands")
        if what != "packages":
            print(blocks[0 if what == "run" else 1])
            return 0
        words = shlex.split(blocks[0].replace("\\\n", " "))
        if "install" not in words:
            sys.exit("readme_commands: the run command has no apt-get install")
        pkgs = []
        for w in words[words.index("install") + 1:]:
            if w in ("&&", ";", "||", "|"):
                break
            if not w.startswith("-"):
                pkgs.append(w)
        print("\n".join(pkgs))
        return 0
    if what in INSTALL:
        blocks = sh_blocks(section(section(text, "Install", 2), INSTALL[what], 3))
        if not blocks:
            sys.exit("readme_commands: no sh block under ### %s of ## Install" % INSTALL[what])
        print(blocks[0])
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
