#!/usr/bin/python3
"""Command line and configuration (SPEC 1, 2): --help, --version, --check-config,
the seed page's five examples resolved, `*`, every malformed setting -> exit 2
with one stderr line naming the variable, _FILE, flag over env, conflicts,
unknown SMTPD_* warnings. --check-config binds nothing, so it may name any
address (even the seed's 192.168.0.1, or `*` in the root namespace)."""

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

# Every setting of SPEC 1-7 (variable, flag).
SPEC_VARIABLES = [
    "SMTPD_HOSTS", "SMTPD_PORTS", "SMTPD_HTTP", "SMTPD_HTTP_TOKEN", "SMTPD_HOSTNAME",
    "SMTPD_MAX_MESSAGE_SIZE", "SMTPD_MAX_RECIPIENTS", "SMTPD_MAX_CONNECTIONS",
    "SMTPD_MAX_CONNECTIONS_PER_CLIENT", "SMTPD_COMMAND_TIMEOUT", "SMTPD_DATA_TIMEOUT",
    "SMTPD_GREET_DELAY", "SMTPD_BARE_LF", "SMTPD_SPOOL", "SMTPD_DELIVER", "SMTPD_FILTER",
    "SMTPD_FILTER_TIMEOUT", "SMTPD_WEBHOOK_URL", "SMTPD_WEBHOOK_FORMAT", "SMTPD_WEBHOOK_SECRET",
    "SMTPD_WEBHOOK_TIMEOUT", "SMTPD_WEBHOOK_KEEP", "SMTPD_WEBHOOK_RETRY_MIN",
    "SMTPD_WEBHOOK_RETRY_MAX", "SMTPD_WEBHOOK_MAX_AGE", "SMTPD_WEBHOOK_CONCURRENCY",
    "SMTPD_WEBHOOK_SYNC", "SMTPD_TLS", "SMTPD_TLS_CERT", "SMTPD_TLS_KEY", "SMTPD_TLS_PORTS",
    "SMTPD_AUTH", "SMTPD_AUTH_USERS_FILE", "SMTPD_AUTH_INSECURE", "SMTPD_SHUTDOWN_GRACE",
    "SMTPD_PROXY_PORTS", "SMTPD_PROXY_TRUSTED", "SMTPD_LOG_FORMAT", "SMTPD_LOG_LEVEL",
]


def flag_of(var):
    return "--" + var[len("SMTPD_"):].lower().replace("_", "-")


LINE_RE = re.compile(r"^(?:(\d+\.\d+\.\d+\.\d+)|\[([0-9a-fA-F:.]+(?:%[\w.-]+)?)\]):(\d+) (ipv4|ipv6)$")

# Hosts of the seed page with 192.168.0.1 replaced by 127.0.0.2 (tests bind them elsewhere).
HOSTS = "127.0.0.1, ::1, 127.0.0.2"
A, B, C = "127.0.0.1:%d ipv4", "[::1]:%d ipv6", "127.0.0.2:%d ipv4"

# (ports, expected endpoints in the order host items and ports are written)
SEED = [
    ("2525", [A % 2525, B % 2525, C % 2525]),
    ("2525:3535", [A % 2525, A % 3535, B % 2525, B % 3535, C % 2525, C % 3535]),
    ("2525, 3535", [A % 2525, B % 3535, C % 3535]),
    ("2525, 3535, 2525", [A % 2525, B % 3535, C % 2525]),
    ("2525, 2525:3535, 2525", [A % 2525, B % 2525, B % 3535, C % 2525]),
]


def check(env=None, args=()):
    return h.run(["--check-config"] + list(args), env=env)


class CheckConfigMixin:
    def assert_check(self, env, want, args=(), ordered=False):
        r = check(env, args)
        self.assertEqual(r.returncode, 0, "env %r args %r: exit %d, stderr %r"
                         % (env, args, r.returncode, r.stderr))
        got = r.stdout.splitlines()
        if ordered:
            self.assertEqual(got, want, "env %r" % (env,))
        else:
            self.assertEqual(collections.Counter(got), collections.Counter(want),
                             "env %r: stdout %r" % (env, r.stdout))
        return r

    def assert_config_error(self, env, names, args=(), run_mode=False):
        """exit 2, exactly one non-empty stderr line, starting `mailport: `, naming
        one of `names` (a variable or flag), nothing on stdout."""
        if isinstance(names, str):
            names = [names]
        argv = list(args) if run_mode else ["--check-config"] + list(args)
        if run_mode:
            env = dict(env)
            env.setdefault("SMTPD_HTTP", "off")
            env.setdefault("SMTPD_SPOOL", os.path.join(self.tmp, "spool"))
        r = h.run(argv, env=env, timeout=15)
        lines = h.stderr_lines(r.stderr)
        ctx = "env %r args %r: exit %d, stdout %r, stderr %r" % (env, args, r.returncode,
                                                                 r.stdout, r.stderr)
        self.assertEqual(r.returncode, 2, ctx)
        self.assertEqual(len(lines), 1, "want exactly one stderr line; " + ctx)
        self.assertTrue(lines[0].startswith("mailport: "), ctx)
        self.assertTrue(any(n in lines[0] for n in names),
                        "the error line names none of %r; %s" % (names, ctx))
        if not run_mode:
            self.assertEqual(r.stdout, "", ctx)
        return lines[0]


class TestInfo(h.MailportTestCase):
    def test_help_lists_every_setting(self):
        r = h.run(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", "--help wrote to stderr")
        missing = [v for v in SPEC_VARIABLES if v not in r.stdout]
        self.assertEqual(missing, [], "--help does not name these variables")
        missing = [flag_of(v) for v in SPEC_VARIABLES if flag_of(v) not in r.stdout]
        self.assertEqual(missing, [], "--help does not name these flags")
        for word in ("--check-config", "--healthcheck", "--version", "--help"):
            self.assertIn(word, r.stdout)
        # defaults are shown
        for default in ("2525", "127.0.0.1", "26214400|25M|25 MiB", "8080"):
            self.assertTrue(re.search(default, r.stdout), "default %s not in --help" % default)

    def test_help_variables_are_all_known(self):
        """Every SMTPD_ variable --help names is accepted without an unknown-variable warning."""
        r = h.run(["--help"])
        names = sorted(set(re.findall(r"\bSMTPD_[A-Z0-9_]+\b", r.stdout)))
        self.assertTrue(names)
        names = [n for n in names if not n.endswith("_FILE") and n != "SMTPD_"]
        for n in names:
            # an empty value means the default for every setting
            r = check({n: ""})
            if r.returncode == 0:
                self.assertNotRegex(r.stderr, r"(?i)unknown.*%s\b" % n,
                                    "%s from --help is reported unknown" % n)

    def test_version(self):
        r = h.run(["--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"\d+\.\d+")
        self.assertEqual(len(r.stdout.strip().splitlines()), 1, r.stdout)


class TestSeedExamples(CheckConfigMixin, h.MailportTestCase):
    def test_seed_examples_loopback(self):
        for ports, want in SEED:
            with self.subTest(ports=ports):
                self.assert_check({"SMTPD_HOSTS": HOSTS, "SMTPD_PORTS": ports}, want)

    def test_seed_examples_order(self):
        """endpoint.h: endpoints come in the order host items and their ports are written."""
        for ports, want in SEED:
            with self.subTest(ports=ports):
                self.assert_check({"SMTPD_HOSTS": HOSTS, "SMTPD_PORTS": ports}, want, ordered=True)

    def test_seed_examples_verbatim(self):
        """The seed's own hosts (192.168.0.1 is only resolved, never bound, here)."""
        for ports, want in SEED:
            want = [w.replace("127.0.0.2", "192.168.0.1") for w in want]
            with self.subTest(ports=ports):
                self.assert_check({"SMTPD_HOSTS": "127.0.0.1, ::1, 192.168.0.1",
                                   "SMTPD_PORTS": ports}, want)

    def test_seed_examples_as_flags(self):
        for ports, want in SEED:
            with self.subTest(ports=ports):
                self.assert_check({}, want, args=["--hosts", HOSTS, "--ports=" + ports])

    def test_defaults(self):
        self.assert_check({}, ["127.0.0.1:2525 ipv4"])
        self.assert_check({"SMTPD_HOSTS": "", "SMTPD_PORTS": ""}, ["127.0.0.1:2525 ipv4"])

    def test_forms(self):
        cases = [
            ({"SMTPD_HOSTS": "[::1]"}, ["[::1]:2525 ipv6"]),
            ({"SMTPD_HOSTS": "  127.0.0.1 ,   [::1]  ", "SMTPD_PORTS": " 2600 ,  2700 "},
             ["127.0.0.1:2600 ipv4", "[::1]:2700 ipv6"]),
            ({"SMTPD_HOSTS": "fe80::1%lo"}, ["[fe80::1%lo]:2525 ipv6"]),
            ({"SMTPD_HOSTS": "0.0.0.0, ::"}, ["0.0.0.0:2525 ipv4", "[::]:2525 ipv6"]),
            ({"SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": "1:65535"},
             ["127.0.0.1:1 ipv4", "127.0.0.1:65535 ipv4"]),
        ]
        for env, want in cases:
            with self.subTest(env=env):
                self.assert_check(env, want)

    def test_hostname_localhost(self):
        addrs = []
        for fam, _, _, _, sa in socket.getaddrinfo("localhost", None, 0, socket.SOCK_STREAM):
            a = sa[0]
            line = h.hostport(a, 2525) + (" ipv6" if fam == socket.AF_INET6 else " ipv4")
            if line not in addrs:
                addrs.append(line)
        self.assert_check({"SMTPD_HOSTS": "localhost"}, addrs)

    def test_star(self):
        r = check({"SMTPD_HOSTS": "*"})
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines, "`*` gave no listeners")
        got = set()
        for l in lines:
            m = LINE_RE.match(l)
            self.assertTrue(m, "bad line %r" % l)
            addr = m.group(1) or m.group(2)
            self.assertEqual(m.group(3), "2525")
            fam = m.group(4)
            self.assertEqual(fam, "ipv6" if ":" in addr else "ipv4", l)
            low = addr.lower()
            self.assertFalse(low.startswith("fe8") or low.startswith("fe9")
                             or low.startswith("fea") or low.startswith("feb"), "link-local: " + l)
            self.assertFalse(low.startswith("ff"), "multicast: " + l)
            self.assertFalse(low.startswith("::ffff:"), "v4-mapped: " + l)
            self.assertNotIn(low, ("::", "0.0.0.0"), "unspecified: " + l)
            if fam == "ipv4":
                first = int(addr.split(".")[0])
                self.assertFalse(224 <= first <= 239, "multicast: " + l)
            self.assertNotIn(l, got, "duplicate line " + l)
            got.add(l)
        self.assertIn("127.0.0.1:2525 ipv4", got)
        self.assertIn("[::1]:2525 ipv6", got)
        want = expected_star(2525)
        if want is not None:
            self.assertEqual(got, want, "`*` differs from `ip -j addr show up`")


def expected_star(port):
    """What `*` should give on this machine according to `ip -j addr`, or None."""
    if shutil.which("ip") is None:
        return None
    try:
        out = subprocess.run(["ip", "-j", "addr", "show", "up"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=5, text=True).stdout
        links = json.loads(out)
    except Exception:
        return None
    want = set()
    for link in links:
        if not link or "UP" not in link.get("flags", []):
            continue
        for ai in link.get("addr_info", []):
            a = ai.get("local")
            if not a:
                continue
            if ai.get("family") == "inet":
                if 224 <= int(a.split(".")[0]) <= 239:
                    continue
                want.add("%s:%d ipv4" % (a, port))
            elif ai.get("family") == "inet6":
                low = a.lower()
                if low.startswith(("fe8", "fe9", "fea", "feb", "ff", "::ffff:")) or low == "::":
                    continue
                want.add("[%s]:%d ipv6" % (a, port))
    return want


class TestErrors(CheckConfigMixin, h.MailportTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mailport-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_bad_ports(self):
        for value in ["25x", "0", "65536", "2525,,3535", "-1", "2525:", ":2525", "25 25",
                      "99999999999999999999", "2525;3535", ","]:
            with self.subTest(value=value):
                self.assert_config_error({"SMTPD_PORTS": value}, "SMTPD_PORTS")

    def test_bad_port_error_text(self):
        line = self.assert_config_error({"SMTPD_PORTS": "25x"}, "SMTPD_PORTS")
        self.assertIn('"25x"', line)

    def test_bad_hosts(self):
        for value in ["127.0.0.1:25", "127.0.0.1,,::1", "[::1", "::1]", "[::1]:25", ",",
                      "127.0.0.1, ", "fe80::1%nosuchif0"]:
            with self.subTest(value=value):
                self.assert_config_error({"SMTPD_HOSTS": value}, "SMTPD_HOSTS")

    def test_more_port_items_than_hosts(self):
        self.assert_config_error({"SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": "2525, 3535"},
                                 "SMTPD_PORTS")
        self.assert_config_error({"SMTPD_HOSTS": "127.0.0.1, ::1",
                                  "SMTPD_PORTS": "2525, 3535, 4545"}, "SMTPD_PORTS")

    def test_bad_values_by_kind(self):
        cases = [
            ("SMTPD_MAX_MESSAGE_SIZE", "12Q"),
            ("SMTPD_MAX_MESSAGE_SIZE", "-5"),
            ("SMTPD_MAX_MESSAGE_SIZE", "M"),
            ("SMTPD_MAX_RECIPIENTS", "ten"),
            ("SMTPD_COMMAND_TIMEOUT", "10x"),
            ("SMTPD_COMMAND_TIMEOUT", "5d"),
            ("SMTPD_COMMAND_TIMEOUT", "s"),
            ("SMTPD_DELIVER", "mbox"),
            ("SMTPD_LOG_LEVEL", "loud"),
            ("SMTPD_LOG_FORMAT", "xml"),
            ("SMTPD_AUTH_INSECURE", "maybe"),
            ("SMTPD_WEBHOOK_KEEP", "2"),
            ("SMTPD_HTTP", "bogus"),
            ("SMTPD_HTTP", "127.0.0.1"),
        ]
        for var, value in cases:
            with self.subTest(var=var, value=value):
                self.assert_config_error({var: value}, var)

    def test_good_values_by_kind(self):
        good = [
            {"SMTPD_MAX_MESSAGE_SIZE": "10M"}, {"SMTPD_MAX_MESSAGE_SIZE": "512k"},
            {"SMTPD_MAX_MESSAGE_SIZE": "1G"}, {"SMTPD_MAX_MESSAGE_SIZE": "1000"},
            {"SMTPD_COMMAND_TIMEOUT": "30"}, {"SMTPD_COMMAND_TIMEOUT": "30s"},
            {"SMTPD_COMMAND_TIMEOUT": "5m"}, {"SMTPD_COMMAND_TIMEOUT": "1h"},
            {"SMTPD_DELIVER": "discard"}, {"SMTPD_DELIVER": "maildir"},
            {"SMTPD_LOG_LEVEL": "debug"}, {"SMTPD_LOG_FORMAT": "json"},
            {"SMTPD_HTTP": "off"}, {"SMTPD_HTTP": "[::1]:8081"},
        ]
        for env in good:
            with self.subTest(env=env):
                self.assert_check(env, ["127.0.0.1:2525 ipv4"])

    def test_var_and_file_both(self):
        f = os.path.join(self.tmp, "ports")
        with open(f, "w") as fh:
            fh.write("2600\n")
        self.assert_config_error({"SMTPD_PORTS": "2525", "SMTPD_PORTS_FILE": f}, "SMTPD_PORTS")

    def test_unreadable_file(self):
        self.assert_config_error({"SMTPD_PORTS_FILE": os.path.join(self.tmp, "missing")},
                                 "SMTPD_PORTS_FILE")
        # a directory cannot be read as a value either (root ignores permission bits)
        self.assert_config_error({"SMTPD_HOSTS_FILE": self.tmp}, "SMTPD_HOSTS_FILE")

    def test_unknown_flag(self):
        self.assert_config_error({}, "--no-such-flag", args=["--no-such-flag"])
        self.assert_config_error({}, "--no-such-flag", args=["--no-such-flag=1"])

    def test_flag_without_value(self):
        self.assert_config_error({}, "--ports", args=["--ports"])

    def test_bad_flag_value(self):
        self.assert_config_error({}, ["--ports", "SMTPD_PORTS"], args=["--ports=25x"])
        self.assert_config_error({}, ["--ports", "SMTPD_PORTS"], args=["--ports", "0"])

    def test_errors_in_run_mode(self):
        """Without --check-config the same errors exit 2 before anything starts."""
        self.assert_config_error({"SMTPD_PORTS": "25x"}, "SMTPD_PORTS", run_mode=True)
        self.assert_config_error({"SMTPD_DELIVER": "mbox"}, "SMTPD_DELIVER", run_mode=True)
        self.assert_config_error({"SMTPD_HOSTS": "127.0.0.1", "SMTPD_PORTS": "1, 2"},
                                 "SMTPD_PORTS", run_mode=True)

    def test_conflicts(self):
        cases = [
            ("localhost, 127.0.0.1, ::1", "2525", ["127.0.0.1:2525"]),
            ("127.0.0.1, 127.0.0.1", "2525", ["127.0.0.1:2525"]),
            ("0.0.0.0, 127.0.0.1", "2525", ["127.0.0.1:2525", "0.0.0.0:2525"]),
            ("127.0.0.1, 0.0.0.0", "2525", ["127.0.0.1:2525", "0.0.0.0:2525"]),
            ("::, ::1", "2525", ["[::1]:2525", "[::]:2525"]),
            ("[::1], ::1", "2525", ["[::1]:2525"]),
            # within one port item the text may name the port instead of the endpoint
            ("127.0.0.1", "2525:2525", ["127.0.0.1:2525", "port 2525"]),
            ("127.0.0.1, ::1, 127.0.0.1", "2525, 3535, 3535:2525", ["127.0.0.1:2525"]),
        ]
        for hosts, ports, names in cases:
            with self.subTest(hosts=hosts, ports=ports):
                line = self.assert_config_error({"SMTPD_HOSTS": hosts, "SMTPD_PORTS": ports},
                                                names)
                self.assertIn("already in use", line)

    def test_no_conflict_across_families_or_ports(self):
        self.assert_check({"SMTPD_HOSTS": "0.0.0.0, ::1"}, ["0.0.0.0:2525 ipv4", "[::1]:2525 ipv6"])
        self.assert_check({"SMTPD_HOSTS": "0.0.0.0, 127.0.0.1", "SMTPD_PORTS": "2525, 3535"},
                          ["0.0.0.0:2525 ipv4", "127.0.0.1:3535 ipv4"])

    def test_conflict_in_run_mode_binds_nothing(self):
        p = h.free_port("127.0.0.1")
        self.assert_config_error({"SMTPD_HOSTS": "127.0.0.1, ::1, 127.0.0.1",
                                  "SMTPD_PORTS": "%d" % p}, hostport_names(p), run_mode=True)


def hostport_names(p):
    return ["127.0.0.1:%d" % p]


class TestSources(CheckConfigMixin, h.MailportTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mailport-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_file_variables(self):
        ports = self.write("ports", "2600, 2700\n")
        hosts = self.write("hosts", "127.0.0.1, ::1\n")
        self.assert_check({"SMTPD_PORTS_FILE": ports, "SMTPD_HOSTS_FILE": hosts},
                          ["127.0.0.1:2600 ipv4", "[::1]:2700 ipv6"])
        # no trailing newline works too
        ports = self.write("ports2", "2800")
        self.assert_check({"SMTPD_PORTS_FILE": ports}, ["127.0.0.1:2800 ipv4"])

    def test_file_value_is_validated(self):
        ports = self.write("ports", "25x\n")
        self.assert_config_error({"SMTPD_PORTS_FILE": ports}, ["SMTPD_PORTS"])

    def test_flag_beats_env(self):
        self.assert_check({"SMTPD_PORTS": "2525"}, ["127.0.0.1:3535 ipv4"], args=["--ports", "3535"])
        self.assert_check({"SMTPD_PORTS": "2525"}, ["127.0.0.1:3535 ipv4"], args=["--ports=3535"])
        ports = self.write("ports", "2600\n")
        self.assert_check({"SMTPD_PORTS_FILE": ports}, ["127.0.0.1:3535 ipv4"],
                          args=["--ports=3535"])
        self.assert_check({"SMTPD_HOSTS": "127.0.0.2"}, ["[::1]:2525 ipv6"], args=["--hosts", "::1"])

    def test_unknown_variable_warns(self):
        for var in ("SMTPD_PORT", "SMTPD_FOO", "SMTPD_HOST_FILE"):
            with self.subTest(var=var):
                r = check({var: "2600"})
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.splitlines(), ["127.0.0.1:2525 ipv4"])
                lines = h.stderr_lines(r.stderr)
                self.assertTrue(any(var.replace("_FILE", "") in l for l in lines),
                                "no warning naming %s: %r" % (var, r.stderr))
                self.assertEqual(len(lines), 1, r.stderr)

    def test_non_smtpd_variables_ignored(self):
        r = check({"HOME": "/nonexistent", "SMTP_PORTS": "1", "XSMTPD_FOO": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(h.stderr_lines(r.stderr), [])


if __name__ == "__main__":
    h.main()
