"""Install like a real daemon (issue 11, SPEC 7): `cmake --install` into a
staging root puts the binary, mailport(8), the systemd unit and
/etc/default/mailport where they belong; the man page and the defaults file
come from the settings table, so they name exactly the settings and defaults of
--help and the README; the unit is hardened and `systemd-analyze verify`
accepts it; --version names the commit and the libraries. (The .deb is built
and installed in a pristine container by docker/pristine-test.sh.)"""
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

BUILD = os.environ.get("MAILPORT_BUILD_DIR")


def help_settings(text):
    """(flag, variable, default) of every setting in --help."""
    return re.findall(r"^  --([a-z0-9-]+) .*\((SMTPD_[A-Z0-9_]+), default (.*?)(?:, image .*)?\)$",
                      text, re.M)


class TestInstall(h.MailportTestCase):
    @classmethod
    def setUpClass(cls):
        if not BUILD or shutil.which("cmake") is None:
            raise unittest.SkipTest("needs MAILPORT_BUILD_DIR (set by ctest) and cmake")
        cls.root = tempfile.mkdtemp(prefix="mailport-install-")
        # The prefix is whatever the build was configured with (/usr/local by default).
        cache = open(os.path.join(BUILD, "CMakeCache.txt")).read()
        cls.prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", cache, re.M).group(1)
        env = dict(os.environ, DESTDIR=cls.root)
        r = subprocess.run(["cmake", "--install", BUILD], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout + r.stderr)
        cls.installed = r.stdout

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def path(self, rel):
        return os.path.join(self.root, self.prefix.lstrip("/"), rel)

    def etc_default(self):
        # GNUInstallDirs: sysconfdir is /etc under the prefix /usr, PREFIX/etc otherwise.
        etc = "/etc" if self.prefix == "/usr" else os.path.join(self.prefix, "etc")
        return os.path.join(self.root, etc.lstrip("/"), "default", "mailport")

    def test_files_in_place(self):
        binpath = self.path("bin/mailport")
        self.assertTrue(os.access(binpath, os.X_OK), self.installed)
        for p in (self.path("share/man/man8/mailport.8.gz"),
                  self.path("lib/systemd/system/mailport.service"), self.etc_default()):
            self.assertTrue(os.path.isfile(p) and os.path.getsize(p) > 0, p)
        r = subprocess.run([binpath, "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_man_page_is_the_settings_table(self):
        man = gzip.open(self.path("share/man/man8/mailport.8.gz"), "rt").read()
        self.assertEqual(man, h.run(["--help-man"]).stdout,
                         "the installed man page is not what --help-man prints")
        helptext = h.run(["--help"]).stdout
        settings = help_settings(helptext)
        self.assertGreater(len(settings), 30, helptext[:400])
        # Every setting of --help, with its variable and default, and nothing else.
        man_flags = re.findall(r"^\.TP\n\\fB\\-\\-([a-z0-9\\-]+)\\fR", man, re.M)
        man_flags = [f.replace("\\-", "-") for f in man_flags]
        self.assertEqual(man_flags, [f for f, _, _ in settings])
        for flag, var, default in settings:
            m = re.search(r"^\.TP\n\\fB\\-\\-%s\\fR .*?\\fB%s\\fR\n(.*?)\n\.br\nDefault: (.*?)(?:; in the container image: .*?)?\.\n"
                          % (re.escape(flag.replace("-", "\\-")), var), man, re.M | re.S)
            self.assertIsNotNone(m, "%s / %s not in the man page" % (flag, var))
            self.assertEqual(m.group(2).replace("\\-", "-").replace("\\e", "\\"), default, var)
        # It renders as a man page without a warning from groff.
        if shutil.which("groff"):
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=man,
                               capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stderr), (0, ""), "groff warnings")
        if shutil.which("man"):
            r = subprocess.run(["man", "-l", self.path("share/man/man8/mailport.8.gz")],
                               capture_output=True, text=True, env=dict(os.environ, MANWIDTH="100"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("SMTPD_MAX_MESSAGE_SIZE", r.stdout)

    def test_defaults_file_lists_every_setting(self):
        text = open(self.etc_default()).read()
        settings = help_settings(h.run(["--help"]).stdout)
        lines = re.findall(r"^#(SMTPD_[A-Z0-9_]+)=(.*)$", text, re.M)
        self.assertEqual([v for v, _ in lines], [v for _, v, _ in settings])
        for (var, value), (_, _, default) in zip(lines, settings):
            if value:
                self.assertEqual(value, default, var)
        # Nothing is set by the file as shipped: every line is a comment or blank.
        self.assertEqual([l for l in text.splitlines() if l and not l.startswith("#")], [])

    def test_unit_is_hardened(self):
        unit = open(self.path("lib/systemd/system/mailport.service")).read()
        keys = dict(re.findall(r"^([A-Za-z]+)=(.*)$", unit, re.M))
        want = {
            "Type": "exec", "DynamicUser": "yes", "StateDirectory": "mailport",
            "ProtectSystem": "strict", "NoNewPrivileges": "yes",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "ExecStart": os.path.join(self.prefix, "bin/mailport"),
            "ExecReload": "/bin/sh -c \"kill -HUP $MAINPID\"", "KillSignal": "SIGTERM",
            "EnvironmentFile": "-" + self.etc_default()[len(self.root):],
            "Environment": "SMTPD_SPOOL=/var/lib/mailport",
        }
        for k, v in want.items():
            self.assertEqual(keys.get(k), v, k)
        # The stop timeout covers the default drain grace.
        grace = int(re.search(r"default (\d+)", [l for l in h.run(["--help"]).stdout.splitlines()
                                                 if "SMTPD_SHUTDOWN_GRACE" in l][0]).group(1))
        self.assertGreater(int(keys["TimeoutStopSec"]), grace)

    def test_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze not installed")
        # verify checks that ExecStart exists and that man:mailport(8) resolves:
        # point both at the staging root.
        d = tempfile.mkdtemp(prefix="mailport-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        unit = open(self.path("lib/systemd/system/mailport.service")).read()
        unit = re.sub(r"^ExecStart=.*$", "ExecStart=" + self.path("bin/mailport"), unit, flags=re.M)
        with open(os.path.join(d, "mailport.service"), "w") as f:
            f.write(unit)
        env = dict(os.environ, MANPATH=self.path("share/man"))
        r = subprocess.run(["systemd-analyze", "verify", os.path.join(d, "mailport.service")],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("mailport.service:", r.stderr, r.stderr)
        # The checker has teeth: a misspelt directive is reported.
        with open(os.path.join(d, "mailport.service"), "a") as f:
            f.write("\n[Service]\nProtectSystm=strict\n")
        r = subprocess.run(["systemd-analyze", "verify", os.path.join(d, "mailport.service")],
                           capture_output=True, text=True, env=env)
        self.assertIn("ProtectSystm", r.stdout + r.stderr)

    def test_version_names_commit_and_libraries(self):
        r = h.run(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.match(r"^mailport (\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40}(-dirty)?|unknown)\) "
                     r"libuv/(\S+) libmicrohttpd/(\S+) OpenSSL/(\S+) jansson/(\S+) libcurl/(\S+)\n$",
                     r.stdout)
        self.assertIsNotNone(m, r.stdout)
        if shutil.which("git") and os.path.isdir(os.path.join(h.SOURCE_DIR, ".git")):
            head = subprocess.run(["git", "-C", h.SOURCE_DIR, "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
            if head:
                self.assertTrue(head.startswith(m.group(2).split("-")[0]), (head, r.stdout))
        # The library versions are the ones loaded at run time: libuv's matches
        # what pkg-config says of the installed library.
        if shutil.which("pkg-config"):
            uv = subprocess.run(["pkg-config", "--modversion", "libuv"], capture_output=True,
                                text=True).stdout.strip()
            if uv:
                self.assertEqual(m.group(4), uv)


if __name__ == "__main__":
    h.main()
