#!/usr/bin/python3
"""Issue 17: the web UI in a real browser. Debian's chromium (headless, as root
with --no-sandbox) is driven by the npm package puppeteer-core (pinned in
tests/browser/package-lock.json, installed with `npm ci` into the build
directory once; no browser download). tests/browser/ui_test.js holds the
browser side of each scenario and asks this side for what needs Python:
smtplib sends, the API's view, and a local HTTP server that a message's HTML
tries to reach and must never reach."""

import hashlib
import http.client
import http.server
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
FIXTURES = os.path.join(HERE, "..", "fixtures", "mime")
CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node") or shutil.which("nodejs")
NPM = shutil.which("npm")
TOKEN = "ui-t0ken"


def tools_dir():
    """node_modules for ui_test.js: `npm ci` once into the build directory, from
    the lock file (tests/browser/install.sh; npm checks the registry's hashes)."""
    base = os.path.join(os.environ.get("MAILPORT_BUILD_DIR") or tempfile.gettempdir(),
                        "npm", "browser")
    subprocess.run(["bash", os.path.join(BROWSER_DIR, "install.sh"), base], check=True,
                   timeout=600)
    return base


class Trap(http.server.BaseHTTPRequestHandler):
    """The "remote" server of the hostile HTML: every request is counted."""
    hits = []

    def do_GET(self):
        Trap.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a")

    do_POST = do_GET

    def log_message(self, *a):
        pass


class PrefixProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy that serves mailport's side port under /mail/ (as nginx
    with `location /mail/ { proxy_pass http://mailport/; }` would), streaming
    bodies through so /events works; paths outside the prefix are 404 and
    recorded."""
    upstream = None
    outside = []

    def do_GET(self):
        if not self.path.startswith("/mail/"):
            PrefixProxy.outside.append(self.path)
            self.send_error(404)
            return
        up = http.client.HTTPConnection("127.0.0.1", PrefixProxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection")}
        headers["Host"] = "127.0.0.1:%d" % PrefixProxy.upstream
        try:
            up.request(self.command, self.path[len("/mail"):], headers=headers)
            r = up.getresponse()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            while True:
                data = r.read1(65536)
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
        except OSError:
            pass
        finally:
            up.close()

    do_DELETE = do_GET

    def log_message(self, *a):
        pass


class BrowserCase(h.PortCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(CHROMIUM):
            self.skipTest("chromium not installed (apt-get install chromium)")
        if NODE is None or NPM is None:
            self.skipTest("node/npm not installed")
        self.modules = tools_dir()
        Trap.hits = []
        self.trap = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trap)
        threading.Thread(target=self.trap.serve_forever, daemon=True).start()
        self.addCleanup(self.trap.server_close)
        self.addCleanup(self.trap.shutdown)

    def start(self, env=None):
        self.token = (env or {}).get("SMTPD_HTTP_TOKEN")
        return super().start(env)

    def api(self, method, path):
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        st, _, body = self.mp.http(method, path, headers=headers)
        return st, body

    # -- what the browser side asks for
    def smtp(self, msg):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.send_message(msg)
        st, body = self.api("GET", "/messages?limit=1")
        self.assertEqual(st, 200)
        return json.loads(body)["messages"][0]["id"]

    def message(self, subject):
        m = EmailMessage()
        m["From"] = "app@x.example"
        m["To"] = "dev@y.example"
        m["Subject"] = subject
        return m

    def answer(self, q):
        if q["ask"] == "send":
            kind = q["kind"]
            if kind == "plain":
                m = self.message(q["subject"])
                m.set_content("plain body\n")
                return {"id": self.smtp(m)}
            if kind == "evil":
                trap = "http://127.0.0.1:%d" % self.trap.server_address[1]
                m = self.message("evil html")
                m.set_content("text part\n")
                m.add_alternative(
                    "<html><body><p>visible text</p>"
                    "<script>window.marker = 1; document.body.setAttribute('data-marker','1');"
                    "parent.document.title = 'PWNED'; fetch('%s/script');"
                    "new Image().src = '%s/script-img';</script>"
                    "<img src=\"nonexistent.png\" onerror=\"window.marker=2;"
                    "fetch('%s/onerror')\">"
                    "<img src=\"%s/remote.png\">"
                    "<link rel=stylesheet href=\"%s/style.css\">"
                    "<div style=\"background:url(%s/bg.png)\">styled</div>"
                    "</body></html>" % ((trap,) * 6), subtype="html")
                return {"id": self.smtp(m)}
            if kind == "attachment":
                data = os.urandom(70000) + b"\x00\r\n\x00end"
                m = self.message("with attachment")
                m.set_content("see attached\n")
                m.add_attachment(data, maintype="application", subtype="octet-stream",
                                 filename="report-2026.bin")
                return {"id": self.smtp(m), "filename": "report-2026.bin",
                        "sha256": hashlib.sha256(data).hexdigest()}
            if kind == "cid":
                with open(os.path.join(FIXTURES, "logo.png.bin"), "rb") as f:
                    png = f.read()
                width = int.from_bytes(png[16:20], "big")
                height = int.from_bytes(png[20:24], "big")
                m = self.message("inline image")
                m.set_content("text\n")
                m.add_alternative("<html><body><p>logo:</p><img src=\"cid:logo@x.example\">"
                                  "</body></html>", subtype="html")
                m.get_payload()[1].add_related(png, maintype="image", subtype="png",
                                               cid="<logo@x.example>")
                return {"id": self.smtp(m), "width": width, "height": height}
        if q["ask"] == "bulk":
            ids = []
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as c:
                for i in range(q["n"]):
                    m = self.message("bulk %02d" % i)
                    m.set_content("bulk\n")
                    c.send_message(m)
            st, body = self.api("GET", "/messages?limit=%d" % q["n"])
            ids = [e["id"] for e in json.loads(body)["messages"]][::-1]
            return {"ids": ids}
        if q["ask"] == "hits":
            return {"hits": len(Trap.hits), "paths": Trap.hits}
        if q["ask"] == "total":
            st, body = self.api("GET", "/messages")
            return {"total": json.loads(body)["total"]}
        if q["ask"] == "delete":
            st, _ = self.api("DELETE", "/messages/" + q["id"])
            return {"status": st}
        raise AssertionError("unknown ask %r" % q)

    def scenario(self, name, url=None):
        url = url or "http://127.0.0.1:%d/" % self.mp.http_port
        args = [NODE, os.path.join(BROWSER_DIR, "ui_test.js"), name, url]
        if self.token:
            args.append(self.token)
        env = dict(os.environ, NODE_PATH=os.path.join(self.modules, "node_modules"))
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=self.modules)
        timer = threading.Timer(120, p.terminate)
        timer.start()
        result = None
        try:
            for line in p.stdout:
                msg = json.loads(line)
                if "result" in msg:
                    result = msg
                    break
                p.stdin.write(json.dumps(self.answer(msg)) + "\n")
                p.stdin.flush()
            p.wait(timeout=30)
        finally:
            timer.cancel()
            # SIGTERM first: ui_test.js then kills its browser (which puppeteer
            # starts in a process group of its own) before it exits.
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            err = p.stderr.read()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.assertIsNotNone(result, "ui_test.js gave no result; stderr:\n" + err[-3000:])
        self.assertEqual(result["result"], "ok", result.get("error", "") + "\n" + err[-2000:])
        return result


class TestBrowser(BrowserCase):
    def test_loads_clean_and_new_mail_appears_live(self):
        self.start()
        r = self.scenario("live")
        self.assertLess(r["took"], 2000)

    def test_html_runs_no_script_and_loads_nothing_remote(self):
        self.start()
        self.scenario("sandbox")
        self.assertEqual(Trap.hits, [])

    def test_attachment_download_and_cid_image(self):
        self.start()
        self.scenario("attachments")

    def test_paging(self):
        self.start()
        self.scenario("paging")

    def test_keys_delete_and_delete_all(self):
        self.start()
        self.scenario("delete")
        st, body = self.api("GET", "/messages")
        self.assertEqual(json.loads(body)["total"], 0)

    def test_behind_a_reverse_proxy_under_a_path_prefix(self):
        self.start()
        PrefixProxy.upstream = self.mp.http_port
        PrefixProxy.outside = []
        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrefixProxy)
        proxy.daemon_threads = True
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        self.addCleanup(proxy.server_close)
        self.addCleanup(proxy.shutdown)
        self.scenario("live", url="http://127.0.0.1:%d/mail/" % proxy.server_address[1])
        self.assertEqual(PrefixProxy.outside, [])

    def test_token_prompt(self):
        self.start({"SMTPD_HTTP_TOKEN": TOKEN})
        self.scenario("token")


if __name__ == "__main__":
    h.main(timeout=290)
