"""A webhook receiver for the integration tests: Python's http.server on
127.0.0.1 in a thread, answering each POST as a policy decides, recording every
request (headers, body, the answer it got). Standard library only."""

import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time


class Request:
    def __init__(self, path, headers, body):
        self.path = path
        pairs = list(headers.items()) if hasattr(headers, "items") else list(headers)
        self.headers = {k.lower(): v for k, v in pairs}
        # Every header in order, repeated ones too (one X-Mailport-Rcpt-To per recipient).
        self.header_list = [(k.lower(), v) for k, v in pairs]
        self.body = body
        self.time = time.time()
        self.status = None  # what it was answered

    @property
    def id(self):
        return self.headers.get("x-mailport-id")

    def json(self):
        return json.loads(self.body)

    def raw(self):
        """The message: the body itself (raw format) or the base64 "raw" (JSON)."""
        if self.headers.get("content-type", "").startswith("application/json"):
            return base64.b64decode(self.json()["raw"])
        return self.body

    def signature_ok(self, secret):
        ts = self.headers.get("x-mailport-timestamp")
        sig = self.headers.get("x-mailport-signature", "")
        if ts is None or not sig.startswith("sha256="):
            return False
        want = hmac.new(secret.encode(), ts.encode() + b"." + self.body,
                        hashlib.sha256).hexdigest()
        return hmac.compare_digest(sig[len("sha256="):], want)


class Receiver:
    """policy(request, receiver) -> status, or (status, delay_seconds, body)."""

    def __init__(self, policy=None):
        self.policy = policy or (lambda req, rcv: 200)
        self.lock = threading.Lock()
        self.requests = []
        self.arrived = []  # ids, as requests arrive (before they are answered)
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Request(self.path, list(self.headers.items()), body)
                with rcv.lock:
                    rcv.arrived.append(req.id)
                try:
                    ans = rcv.policy(req, rcv)
                except Exception as e:  # a broken policy answers 599, visibly
                    ans = (599, 0, repr(e).encode())
                ans = (ans,) if isinstance(ans, int) else tuple(ans)
                status = ans[0]
                delay = ans[1] if len(ans) > 1 else 0
                text = ans[2] if len(ans) > 2 else b""
                if delay:
                    time.sleep(delay)
                req.status = status
                with rcv.lock:
                    rcv.requests.append(req)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client killed with SIGKILL resets its keep-alive connection.
                if not isinstance(sys.exc_info()[1], OSError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def arrivals(self, mid=None):
        """Requests arrived so far (for mid, or all), the current one included:
        what a policy counts, since answers may be delayed."""
        with self.lock:
            return sum(1 for i in self.arrived if mid is None or i == mid)

    def attempts(self, mid):
        return [r for r in self.snapshot() if r.id == mid]

    def delivered_ids(self):
        """Ids that got a 2xx at least once."""
        return {r.id for r in self.snapshot() if r.status and 200 <= r.status < 300}

    def wait(self, pred, timeout=10.0, step=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred(self)
            if v:
                return v
            time.sleep(step)
        return pred(self)
