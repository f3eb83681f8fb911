"""A real client from the field delivers (issue 13): nodemailer, the npm
package most Node.js applications send mail with, authenticates with PLAIN and
LOGIN and sends a message with a non-ASCII subject and a long HTML line. The
package is fetched from the npm registry (the test tools' source) into the build
directory once, its checksum checked against the registry's; Node.js comes from
Debian (the test command installs `nodejs`)."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import tls_helpers  # noqa: E402

VERSION = "6.9.16"
NODE = shutil.which("node") or shutil.which("nodejs")

SCRIPT = r"""
const nodemailer = require(process.argv[2]);
const [port, method] = [Number(process.argv[3]), process.argv[4]];
const t = nodemailer.createTransport({host: "127.0.0.1", port, secure: false, ignoreTLS: true,
    auth: {user: "alice", pass: "secret", method}, name: "node.example"});
t.sendMail({from: "app@x.example", to: ["b@y.example", "c@y.example"],
    subject: "Grüße aus Node " + method,
    html: "<p>" + "x".repeat(5000) + "</p>", text: "hallo"})
  .then(info => { console.log(JSON.stringify({response: info.response})); })
  .catch(e => { console.error(String(e)); process.exit(1); });
"""


def nodemailer_dir():
    """The unpacked package, fetched once into the build directory."""
    base = os.path.join(os.environ.get("MAILPORT_BUILD_DIR") or tempfile.gettempdir(),
                        "npm", "nodemailer-" + VERSION)
    main = os.path.join(base, "package", "lib", "nodemailer.js")
    if os.path.exists(main):
        return os.path.join(base, "package")
    meta = json.load(urllib.request.urlopen(
        "https://registry.npmjs.org/nodemailer/" + VERSION, timeout=30))
    data = urllib.request.urlopen(meta["dist"]["tarball"], timeout=60).read()
    if hashlib.sha1(data).hexdigest() != meta["dist"]["shasum"]:
        raise AssertionError("nodemailer tarball checksum mismatch")
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=base)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = [m for m in tf.getmembers()
                   if m.isfile() or m.isdir()
                   if not (m.name.startswith("/") or ".." in m.name.split("/"))]
        tf.extractall(tmp, members=members)
    os.replace(os.path.join(tmp, "package"), os.path.join(base, "package"))
    shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(base, "package")


class TestNodemailer(h.MailportTestCase):
    def test_nodemailer_delivers_with_auth(self):
        if NODE is None:
            self.skipTest("node (Debian's nodejs) not installed")
        pkg = nodemailer_dir()
        port = h.free_port()
        d = tempfile.mkdtemp(prefix="mailport-node-")
        self.addCleanup(shutil.rmtree, d, True)
        users = os.path.join(d, "users")
        with open(users, "w") as f:
            f.write("alice:%s\n" % tls_helpers.sha512("secret"))
        script = os.path.join(d, "send.js")
        with open(script, "w") as f:
            f.write(SCRIPT)
        mp = self.mailport({"SMTPD_PORTS": str(port), "SMTPD_AUTH": "optional",
                            "SMTPD_AUTH_INSECURE": "1", "SMTPD_AUTH_USERS_FILE": users})
        for method in ("PLAIN", "LOGIN"):
            r = subprocess.run([NODE, script, pkg, str(port), method], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("250", json.loads(r.stdout)["response"])
        st, _, body = mp.http_get("/messages")
        msgs = json.loads(body)["messages"]
        self.assertEqual(len(msgs), 2)
        for m in msgs:
            self.assertEqual(m["auth_user"], "alice")
            self.assertEqual(m["rcpt_to"], ["b@y.example", "c@y.example"])
            self.assertEqual(m["helo"], "node.example")
            raw = mp.read_new(m["id"])
            self.assertIn(b"x" * 5000, raw.replace(b"=\n", b""))


if __name__ == "__main__":
    h.main()
