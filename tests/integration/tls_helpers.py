"""Helpers for the TLS and AUTH integration tests (test_tls.py, test_auth.py):
certificates made with the openssl CLI, client TLS contexts that accept any
certificate, fingerprints, crypt(3) hashes through libcrypt, and a raw SMTP
client that can switch to TLS in the middle (for STARTTLS by hand)."""

import base64
import ctypes
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import time

import mailport_harness as h


def have_openssl():
    return shutil.which("openssl") is not None


def make_cert(dirpath, name, cn="mx.test.example", key_type="ec"):
    """A self-signed certificate and its key (PEM); returns (cert, key) paths."""
    cert = os.path.join(dirpath, name + ".crt")
    key = os.path.join(dirpath, name + ".key")
    args = ["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
            "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % cn, "-keyout", key, "-out", cert]
    if key_type == "ec":
        args += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    else:
        args += ["-newkey", "rsa:2048"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return cert, key


def install(src, dst):
    """Replace dst by src's content atomically (how a secret rotation looks)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def client_context(minimum=None, maximum=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def der_fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(cert_path):
    with open(cert_path) as f:
        return der_fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))


def sock_fingerprint(sslsock):
    return der_fingerprint(sslsock.getpeercert(binary_form=True))


def cert_text(der):
    """`openssl x509 -text` of a DER certificate."""
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der,
                       capture_output=True, timeout=30, check=True)
    return r.stdout.decode()


# ---------------------------------------------------------------- crypt(3)

_libcrypt = None


def _lib():
    global _libcrypt
    if _libcrypt is None:
        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt_gensalt.restype = ctypes.c_char_p
        lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                      ctypes.c_int]
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        _libcrypt = lib
    return _libcrypt


def crypt_hash(password, prefix="$y$", rounds=0):
    """A crypt(3) hash made by libcrypt itself ($y$ yescrypt, $6$, $2b$ bcrypt)."""
    lib = _lib()
    salt = lib.crypt_gensalt(prefix.encode(), rounds, None, 0)
    if not salt:
        raise RuntimeError("crypt_gensalt(%s) failed" % prefix)
    out = lib.crypt(password.encode(), salt)
    if not out or out.startswith(b"*"):
        raise RuntimeError("crypt failed")
    return out.decode()


def yescrypt(password):
    """mkpasswd -m yescrypt (whois package) when there, else libcrypt directly."""
    if shutil.which("mkpasswd"):
        r = subprocess.run(["mkpasswd", "-m", "yescrypt", "--stdin"], input=password + "\n",
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and r.stdout.startswith("$y$"):
            return r.stdout.strip()
    return crypt_hash(password, "$y$")


def sha512(password):
    """openssl passwd -6."""
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.strip()


def bcrypt(password, rounds=5):
    return crypt_hash(password, "$2b$", rounds)


def plain_b64(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------- raw client

class TLSRaw(h.RawSMTP):
    """RawSMTP that can wrap its socket in TLS (after a 220 to STARTTLS, or at
    once for implicit TLS: pass read_greeting=False, then starttls_now())."""

    def starttls_now(self, ctx=None):
        if self.buf:
            raise AssertionError("unread bytes before the TLS handshake: %r" % self.buf)
        self.sock = (ctx or client_context()).wrap_socket(self.sock)
        return self.sock

    def silent_for(self, seconds):
        """True when nothing arrives within seconds (and the connection stays up)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        if data:
            self.buf += data
        return False


def implicit(port, ctx=None, timeout=5.0):
    """A TLSRaw on an implicit TLS port, greeting read."""
    c = TLSRaw("127.0.0.1", port, timeout=timeout, read_greeting=False)
    c.starttls_now(ctx)
    c.greeting = c.reply()
    return c


def wait_log(mp, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in mp.stderr():
            return True
        time.sleep(0.05)
    return False
