#!/usr/bin/python3
"""Inbound recipient policy (SPEC 8, issue 15) against the real binary:
SMTPD_DOMAINS (served domain, *.subdomains, the apex of a wildcard, other
domains: 554 5.7.1 at RCPT) with smtplib, swaks and raw SMTP; an authenticated
session relays to other domains but still meets the recipients file at home;
SMTPD_RECIPIENTS_FILE (exact, @domain, case-insensitive, quoted local parts,
unknown: 550 5.1.1); reloads on SIGHUP and on a file change within a few
seconds; a bad file keeps the old table and the log says why (with its line);
/status "policy" and /metrics mailport_rcpt_refused_total; refused commands
logged; 20 unknown users end the session; start-up errors (a bad SMTPD_DOMAINS,
a missing or malformed file: exit 2, one line naming the variable)."""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import tls_helpers as t  # noqa: E402

MSG = b"Subject: policy\r\n\r\nhello\r\n"
SWAKS = shutil.which("swaks")
PASSWORD = "s3cret-policy"


def metric(text, name, labels=""):
    m = re.search(r"^%s%s (\d+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return int(m.group(1)) if m else None


class PolicyCase(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="mailport-policy-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text, atomic=False):
        path = os.path.join(self.dir, name)
        if atomic:  # a new inode, as an editor's save or a ConfigMap swap
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)
        return path

    def start(self, env):
        self.port = h.free_port()
        e = {"SMTPD_PORTS": str(self.port)}
        e.update(env)
        self.mp = self.mailport(e)
        return self.mp

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example", timeout=10)
        self.addCleanup(self._close, s)
        return s

    @staticmethod
    def _close(s):
        try:
            s.quit()
        except Exception:
            s.close()

    def raw(self):
        c = h.RawSMTP("127.0.0.1", self.port, timeout=10)
        self.addCleanup(c.close)
        c.expect("EHLO client.example", 250)
        c.expect("MAIL FROM:<a@client.example>", 250)
        return c

    def rcpt(self, c, addr):
        code, lines = c.cmd("RCPT TO:<%s>" % addr)
        return "%d %s" % (code, lines[-1][4:])

    def swaks(self, to, *extra):
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % self.port, "--from",
                            "a@client.example", "--to", to, "--helo", "client.example"]
                           + list(extra), capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def metas(self):
        return [self.mp.read_meta(f[:-5]) for f in self.mp.meta_files()]

    def policy(self):
        return self.mp.status()["policy"]


class Domains(PolicyCase):
    def setUp(self):
        super().setUp()
        self.start({"SMTPD_DOMAINS": "example.org, *.example.org, Example.NET"})

    def test_raw_replies(self):
        c = self.raw()
        want = {
            "bob@example.org": "250 2.1.5 Ok",
            "BOB@EXAMPLE.ORG": "250 2.1.5 Ok",
            "bob@example.org.": "250 2.1.5 Ok",
            "bob@eu.sales.example.org": "250 2.1.5 Ok",   # any depth
            "bob@example.net": "250 2.1.5 Ok",            # listed in capitals
            "bob@www.example.net": "554 5.7.1 Relay access denied",  # no *.example.net
            "bob@badexample.org": "554 5.7.1 Relay access denied",
            "bob@elsewhere.example": "554 5.7.1 Relay access denied",
            "bob@[127.0.0.1]": "554 5.7.1 Relay access denied",
            "postmaster": "250 2.1.5 Ok",                 # RFC 5321 4.5.1
        }
        got = {a: self.rcpt(c, a) for a in want}
        self.assertEqual(got, want)
        # The refusals are logged as refused commands (never their arguments).
        refused = re.compile(r' info \[\w+\] command refused .*command=RCPT '
                             r'reply="554 5.7.1 Relay access denied"$', re.M)
        log = h.wait_for(lambda: len(refused.findall(self.mp.stderr())) == 4 and
                         self.mp.stderr())
        self.assertTrue(log, self.mp.stderr())
        # Accepted commands are not "refused", and no address reaches the log.
        self.assertEqual(log.count("command refused"), 4, log)
        self.assertNotIn("example", log.split("ready:")[1].replace("client.example", ""))

    def test_smtplib_mixed_recipients(self):
        s = self.smtp()
        refused = s.sendmail("a@client.example",
                             ["bob@example.org", "eve@elsewhere.example", "carol@a.example.org"],
                             MSG)
        self.assertEqual(refused, {"eve@elsewhere.example": (554, b"5.7.1 Relay access denied")})
        (meta,) = self.metas()
        self.assertEqual(meta["rcpt_to"], ["bob@example.org", "carol@a.example.org"])
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail("a@client.example", ["eve@elsewhere.example"], MSG)
        self.assertEqual(cm.exception.recipients["eve@elsewhere.example"][0], 554)
        self.assertEqual(len(self.metas()), 1)
        st = self.policy()
        self.assertEqual(st["domains"], 3)
        self.assertEqual(st["refused"], {"relay": 2, "unknown_user": 0})
        self.assertIsNone(st["file_mtime"])  # no recipients file
        self.assertEqual(st["recipients"], 0)
        _, _, body = self.mp.http_get("/metrics")
        text = body.decode()
        self.assertEqual(metric(text, "mailport_rcpt_refused_total", '{reason="relay"}'), 2)
        self.assertEqual(metric(text, "mailport_rcpt_refused_total", '{reason="unknown_user"}'), 0)
        self.assertIn("# TYPE mailport_rcpt_refused_total counter", text)

    @h.unittest.skipUnless(SWAKS, "swaks not installed")
    def test_swaks(self):
        rc, out = self.swaks("eve@elsewhere.example", "--quit-after", "RCPT")
        self.assertEqual(rc, 24, out)  # swaks: no RCPTs accepted
        self.assertIn("<** 554 5.7.1 Relay access denied", out)
        rc, out = self.swaks("bob@sub.example.org")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.metas()[0]["rcpt_to"], ["bob@sub.example.org"])
        # --pipeline: the refused RCPT in the middle of a pipelined group.
        rc, out = self.swaks("bob@example.org,eve@elsewhere.example,carol@example.net",
                             "--pipeline")
        self.assertEqual(rc, 0, out)
        self.assertIn("<** 554 5.7.1 Relay access denied", out)
        rcpts = sorted(m["rcpt_to"] for m in self.metas())
        self.assertIn(["bob@example.org", "carol@example.net"], rcpts)


class RecipientsFile(PolicyCase):
    FILE = ("# who exists\n"
            "Bob@Example.org\n"
            "   alice@example.org   # surrounded by blanks, with a comment\r\n"
            "\n"
            "\"john doe\"@example.org\n"
            "@Lists.Example.ORG\n")

    def test_exact_domain_case_unknown(self):
        path = self.write("recipients", self.FILE)
        self.start({"SMTPD_RECIPIENTS_FILE": path})  # SMTPD_DOMAINS empty: every domain
        c = self.raw()
        want = {
            "bob@example.org": "250 2.1.5 Ok",
            "BOB@EXAMPLE.ORG": "250 2.1.5 Ok",
            "\"bob\"@example.org": "250 2.1.5 Ok",
            "Alice@Example.Org": "250 2.1.5 Ok",
            "\"John Doe\"@example.org": "250 2.1.5 Ok",
            "anyone@lists.example.org": "250 2.1.5 Ok",
            "ANYONE@LISTS.EXAMPLE.ORG": "250 2.1.5 Ok",
            "anyone@eu.lists.example.org": "550 5.1.1 User unknown",
            "dave@example.org": "550 5.1.1 User unknown",
            "bob@elsewhere.example": "550 5.1.1 User unknown",
        }
        got = {a: self.rcpt(c, a) for a in want}
        self.assertEqual(got, want)
        st = self.policy()
        self.assertEqual((st["domains"], st["recipients"], st["recipient_domains"]), (0, 3, 1))
        mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(os.stat(path).st_mtime)))
        self.assertEqual(st["file_mtime"], mtime)
        self.assertRegex(st["file_mtime"], h.RFC3339)
        self.assertEqual(st["refused"], {"relay": 0, "unknown_user": 3})
        self.assertRegex(self.mp.stderr(), r"recipient policy: every domain, 3 address\(es\) "
                         r"and 1 @domain line\(s\) from ")
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail("a@client.example", ["nobody@example.org"], MSG)
        self.assertEqual(cm.exception.recipients["nobody@example.org"],
                         (550, b"5.1.1 User unknown"))
        self.assertEqual(s.sendmail("a@client.example", ["BOB@example.org"], MSG), {})
        self.assertEqual([m["rcpt_to"] for m in self.metas()], [["BOB@example.org"]])

    @h.unittest.skipUnless(SWAKS, "swaks not installed")
    def test_swaks_unknown_user(self):
        path = self.write("recipients", self.FILE)
        self.start({"SMTPD_DOMAINS": "example.org, lists.example.org",
                    "SMTPD_RECIPIENTS_FILE": path})
        rc, out = self.swaks("dave@example.org", "--quit-after", "RCPT")
        self.assertEqual(rc, 24, out)
        self.assertIn("<** 550 5.1.1 User unknown", out)
        rc, out = self.swaks("eve@elsewhere.example", "--quit-after", "RCPT")
        self.assertEqual(rc, 24, out)
        self.assertIn("<** 554 5.7.1 Relay access denied", out)
        rc, out = self.swaks("someone@Lists.example.org")
        self.assertEqual(rc, 0, out)
        _, _, body = self.mp.http_get("/metrics")
        text = body.decode()
        self.assertEqual(metric(text, "mailport_rcpt_refused_total", '{reason="relay"}'), 1)
        self.assertEqual(metric(text, "mailport_rcpt_refused_total", '{reason="unknown_user"}'), 1)
        self.assertEqual(metric(text, "mailport_policy_recipients"), 3)

    def test_harvest_ends_the_session(self):
        """Refused recipients count towards the 20-error limit (as Postfix)."""
        path = self.write("recipients", "bob@example.org\n")
        self.start({"SMTPD_RECIPIENTS_FILE": path})
        c = self.raw()
        for i in range(19):
            self.assertEqual(self.rcpt(c, "guess%d@example.org" % i), "550 5.1.1 User unknown")
        self.assertEqual(c.cmd("RCPT TO:<guess19@example.org>")[0], 550)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed_by_peer())


class Authenticated(PolicyCase):
    def start_auth(self):
        users = self.write("users", "alice:%s\n" % t.sha512(PASSWORD))
        rcpts = self.write("recipients", "bob@example.org\n")
        self.start({"SMTPD_DOMAINS": "example.org", "SMTPD_RECIPIENTS_FILE": rcpts,
                    "SMTPD_AUTH": "optional", "SMTPD_AUTH_USERS_FILE": users,
                    "SMTPD_AUTH_INSECURE": "1"})

    def setUp(self):
        super().setUp()
        if not t.have_openssl():
            self.skipTest("openssl CLI not installed")

    def test_relay_after_auth_smtplib(self):
        self.start_auth()
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@client.example", ["eve@elsewhere.example"], MSG)
        s.login("alice", PASSWORD)
        # Other domains: relayed, the file does not apply there.
        self.assertEqual(s.sendmail("alice@example.org", ["eve@elsewhere.example"], MSG), {})
        # At home the file still applies to an authenticated client (Postfix).
        refused = s.sendmail("alice@example.org", ["dave@example.org", "bob@example.org"], MSG)
        self.assertEqual(refused, {"dave@example.org": (550, b"5.1.1 User unknown")})
        metas = sorted(self.metas(), key=lambda m: m["rcpt_to"])
        self.assertEqual([m["rcpt_to"] for m in metas],
                         [["bob@example.org"], ["eve@elsewhere.example"]])
        self.assertEqual({m["auth_user"] for m in metas}, {"alice"})

    @h.unittest.skipUnless(SWAKS, "swaks not installed")
    def test_relay_after_auth_swaks(self):
        self.start_auth()
        rc, out = self.swaks("eve@elsewhere.example", "--quit-after", "RCPT")
        self.assertEqual(rc, 24, out)
        rc, out = self.swaks("eve@elsewhere.example", "--auth", "PLAIN", "--auth-user", "alice",
                             "--auth-password", PASSWORD)
        self.assertEqual(rc, 0, out)
        self.assertIn("235 2.7.0 Authentication successful", out)
        (meta,) = self.metas()
        self.assertEqual((meta["rcpt_to"], meta["auth_user"]), (["eve@elsewhere.example"], "alice"))


class Reload(PolicyCase):
    def test_sighup_change_and_bad_file(self):
        path = self.write("recipients", "bob@example.org\n")
        self.start({"SMTPD_DOMAINS": "example.org", "SMTPD_RECIPIENTS_FILE": path})
        c = self.raw()  # a live session sees each new table at its next RCPT
        self.assertEqual(self.rcpt(c, "carol@example.org"), "550 5.1.1 User unknown")

        # SIGHUP (same size, so only the signal reloads it before the watch sees it).
        self.write("recipients", "bob@example.org\ncarol@example.org\n")
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(h.wait_for(lambda: "recipient policy reloaded (SIGHUP)" in
                                   self.mp.stderr() or "reloaded (the file changed)" in
                                   self.mp.stderr(), timeout=10), self.mp.stderr())
        self.assertEqual(self.rcpt(c, "carol@example.org"), "250 2.1.5 Ok")
        self.assertEqual(self.policy()["recipients"], 2)

        # A change on disk, no signal: picked up within a few seconds (rename: new inode).
        t0 = time.monotonic()
        self.write("recipients", "@example.org\n", atomic=True)
        self.assertTrue(h.wait_for(lambda: self.policy()["recipient_domains"] == 1, timeout=10),
                        self.mp.stderr())
        self.assertLess(time.monotonic() - t0, 8)
        self.assertIn("recipient policy reloaded (the file changed): 1 domain pattern(s), "
                      "0 address(es) and 1 @domain line(s)", self.mp.stderr())
        self.assertEqual(self.rcpt(c, "anyone@example.org"), "250 2.1.5 Ok")

        # A bad file: the old table stays, one warning names the line.
        self.write("recipients", "bob@example.org\n# fine so far\nnot an address\n",
                   atomic=True)
        self.assertTrue(h.wait_for(lambda: self.policy()["reload_failures"] == 1, timeout=10),
                        self.mp.stderr())
        st = self.policy()
        self.assertRegex(st["reload_error"], r"^SMTPD_RECIPIENTS_FILE: .* line 3: ")
        warn = [l for l in self.mp.stderr().splitlines() if "not reloaded" in l]
        self.assertEqual(len(warn), 1, self.mp.stderr())
        self.assertRegex(warn[0], r" warn recipient policy not reloaded \(the file changed\), "
                         r"the old table stays in use: SMTPD_RECIPIENTS_FILE: \S+ line 3: "
                         r"\\?\"not an address\\?\"")
        self.assertEqual(self.rcpt(c, "anyone@example.org"), "250 2.1.5 Ok")  # old table
        time.sleep(2.5)  # the watch does not retry the same bad file
        self.assertEqual(self.policy()["reload_failures"], 1)
        # SIGHUP reads it again (and refuses it again).
        self.mp.proc.send_signal(signal.SIGHUP)
        self.assertTrue(h.wait_for(lambda: self.policy()["reload_failures"] == 2, timeout=10))

        # Fixed: taken, the error cleared.
        self.write("recipients", "bob@example.org\n", atomic=True)
        self.assertTrue(h.wait_for(lambda: self.policy()["reload_error"] is None, timeout=10))
        self.assertEqual(self.rcpt(c, "anyone@example.org"), "550 5.1.1 User unknown")
        self.assertEqual(self.rcpt(c, "bob@example.org"), "250 2.1.5 Ok")
        _, _, body = self.mp.http_get("/metrics")
        text = body.decode()
        self.assertEqual(metric(text, "mailport_policy_reloads_total"), 3)
        self.assertEqual(metric(text, "mailport_policy_reload_failures_total"), 2)

    def test_file_removed_then_back(self):
        path = self.write("recipients", "bob@example.org\n")
        self.start({"SMTPD_RECIPIENTS_FILE": path})
        os.unlink(path)
        self.assertTrue(h.wait_for(lambda: self.policy()["reload_failures"] == 1, timeout=10))
        self.assertIn("No such file or directory", self.policy()["reload_error"])
        c = self.raw()
        self.assertEqual(self.rcpt(c, "bob@example.org"), "250 2.1.5 Ok")  # old table
        time.sleep(2.5)
        self.assertEqual(self.policy()["reload_failures"], 1)  # reported once
        self.write("recipients", "carol@example.org\n")
        self.assertTrue(h.wait_for(lambda: self.policy()["reload_error"] is None, timeout=10))
        self.assertEqual(self.rcpt(c, "carol@example.org"), "250 2.1.5 Ok")


class StartupErrors(PolicyCase):
    def run_mp(self, env, args=()):
        e = {"SMTPD_SPOOL": os.path.join(self.dir, "spool"), "SMTPD_HTTP": "off",
             "SMTPD_PORTS": str(h.free_port())}
        e.update(env)
        return h.run(list(args), env=e, timeout=20)

    def one_line(self, r, want_prefix):
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = h.stderr_lines(r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith(want_prefix), lines[0])
        return lines[0]

    def test_bad_domains(self):
        for value, why in (("example.org,,example.net", "empty item"),
                           ("exa mple.org", '"exa mple.org" is not a domain name'),
                           ("a.*.example.org", "* is only allowed as a whole first label"),
                           ("@example.org", "write the domain without @")):
            for args in ((), ("--check-config",)):
                r = self.run_mp({"SMTPD_DOMAINS": value}, args)
                line = self.one_line(r, "mailport: SMTPD_DOMAINS: ")
                self.assertIn(why, line)
        r = self.run_mp({}, ("--domains", "x..y"))
        self.one_line(r, "mailport: --domains: ")

    def test_missing_or_bad_file(self):
        missing = os.path.join(self.dir, "nope")
        for args in ((), ("--check-config",)):
            r = self.run_mp({"SMTPD_RECIPIENTS_FILE": missing}, args)
            self.assertEqual(self.one_line(r, "mailport: SMTPD_RECIPIENTS_FILE: "),
                             "mailport: SMTPD_RECIPIENTS_FILE: cannot read %s: "
                             "No such file or directory" % missing)
        bad = self.write("bad", "bob@example.org\n*@example.org\n")
        r = self.run_mp({"SMTPD_RECIPIENTS_FILE": bad})
        self.assertEqual(self.one_line(r, "mailport: SMTPD_RECIPIENTS_FILE: "),
                         'mailport: SMTPD_RECIPIENTS_FILE: %s line 2: "*@example.org": '
                         'write @example.org for a whole domain' % bad)
        r = self.run_mp({"SMTPD_RECIPIENTS_FILE": self.dir})
        self.assertIn("is not a regular file", self.one_line(r, "mailport: SMTPD_RECIPIENTS_FILE"))
        # Nothing was bound: the spool was not even created.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "spool")))
        ok = self.write("ok", "bob@example.org\n")
        r = self.run_mp({"SMTPD_RECIPIENTS_FILE": ok}, ("--check-config",))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_help_names_the_choices(self):
        r = h.run(["--help"])
        self.assertEqual(r.returncode, 0)
        text = " ".join(r.stdout.split())
        self.assertIn("--domains LIST (SMTPD_DOMAINS, default every domain)", text)
        self.assertIn("but not example.org itself", text)
        self.assertIn("unless the session authenticated", text)
        self.assertIn("--recipients-file FILE (SMTPD_RECIPIENTS_FILE, default none)", text)
        self.assertIn("from authenticated sessions too", text)


if __name__ == "__main__":
    h.main(timeout=240)
