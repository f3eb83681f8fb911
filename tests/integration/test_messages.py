#!/usr/bin/python3
"""The messages API (SPEC 3) round trip: list newest first with limit/offset,
one message with its parsed headers, the raw file as message/rfc822, DELETE,
404 for unknown and hostile ids, the Bearer token (health and status stay
open), and the state after webhook delivery."""

import json
import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

TOKEN = "t0ken-for-tests"


def msg(n, subject=None):
    subject = subject or "message %d" % n
    return (b"Subject: " + subject.encode() + b"\r\nFrom: Sender <a@x.example>\r\n"
            b"X-Long: a folded\r\n\tvalue %d\r\n\r\nbody %d\r\n" % (n, n))


class MessagesCase(h.PortCase):
    def send(self, n, subject=None):
        return self.send_raw(msg(n, subject))

    def api(self, method, path, token=None):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return self.mp.http(method, path, headers=headers)

    def get_json(self, path, token=None, want=200):
        st, hdr, body = self.api("GET", path, token)
        self.assertEqual(st, want, body)
        self.assertEqual(hdr["content-type"], "application/json")
        return json.loads(body)


class TestRoundTrip(MessagesCase):
    def test_list_get_raw_delete(self):
        mp = self.start()
        ids = [self.send(i) for i in range(3)]
        data = self.get_json("/messages")
        self.assertEqual(data["total"], 3)
        got = [m["id"] for m in data["messages"]]
        self.assertEqual(got, list(reversed(ids)))  # newest first
        first = data["messages"][0]
        self.assertEqual(first["subject"], "message 2")
        self.assertEqual(first["state"], "new")
        meta = mp.read_meta(ids[2])
        for k, v in meta.items():
            self.assertEqual(first[k], v)

        page = self.get_json("/messages?limit=1&offset=1")
        self.assertEqual(page["total"], 3)
        self.assertEqual([m["id"] for m in page["messages"]], [ids[1]])
        self.assertEqual(self.get_json("/messages?limit=0")["messages"], [])
        self.assertEqual(self.get_json("/messages?offset=10")["messages"], [])
        self.get_json("/messages?limit=x", want=400)
        self.get_json("/messages?limit=100000", want=400)

        one = self.get_json("/messages/" + ids[0])
        self.assertEqual(one["id"], ids[0])
        self.assertEqual(one["state"], "new")
        self.assertEqual(one["subject"], "message 0")
        names = [x["name"] for x in one["headers"]]
        self.assertEqual(names, ["Return-Path", "Received", "Subject", "From", "X-Long"])
        hdrs = {x["name"]: x["value"] for x in one["headers"]}
        self.assertEqual(hdrs["Return-Path"], "<a@x.example>")
        self.assertEqual(hdrs["From"], "Sender <a@x.example>")
        self.assertEqual(hdrs["X-Long"], "a folded\tvalue 0")
        self.assertIn("(mailport) with ESMTP id " + ids[0], hdrs["Received"])

        st, hdr, raw = self.api("GET", "/messages/%s/raw" % ids[1])
        self.assertEqual(st, 200)
        self.assertEqual(hdr["content-type"], "message/rfc822")
        self.assertEqual(hdr["x-content-type-options"], "nosniff")
        self.assertEqual(raw, mp.read_new(ids[1]))
        st, hdr, raw = self.api("HEAD", "/messages/%s/raw" % ids[1])
        self.assertEqual(st, 200)
        self.assertEqual(int(hdr["content-length"]), len(mp.read_new(ids[1])))

        st, _, body = self.api("DELETE", "/messages/" + ids[1])
        self.assertEqual(st, 204, body)
        self.assertEqual(body, b"")
        self.assertNotIn(ids[1], mp.new_files())
        self.assertNotIn(ids[1] + ".json", mp.meta_files())
        err = self.get_json("/messages/" + ids[1], want=404)
        self.assertIn("error", err)
        st, _, _ = self.api("DELETE", "/messages/" + ids[1])
        self.assertEqual(st, 404)
        st, _, _ = self.api("GET", "/messages/%s/raw" % ids[1])
        self.assertEqual(st, 404)
        self.assertEqual(self.get_json("/messages")["total"], 2)

    def test_methods_and_unknown_ids(self):
        self.start()
        mid = self.send(0)
        st, hdr, _ = self.api("POST", "/messages")
        self.assertEqual(st, 405)
        self.assertEqual(hdr["allow"], "GET, HEAD, DELETE")  # DELETE /messages: delete all
        st, hdr, _ = self.api("PUT", "/messages/" + mid)
        self.assertEqual(st, 405)
        self.assertEqual(hdr["allow"], "GET, HEAD, DELETE")
        st, hdr, _ = self.api("DELETE", "/messages/%s/raw" % mid)
        self.assertEqual(st, 405)
        hostile = ["/messages/..", "/messages/..%2f..%2fetc%2fpasswd", "/messages/.hidden",
                   "/messages/%2e%2e/raw", "/messages/" + urllib.parse.quote("../meta/x", ""),
                   "/messages/nope", "/messages/%s/headers" % mid, "/messages/" + "x" * 300]
        for p in hostile:
            st, hdr, body = self.api("GET", p)
            self.assertEqual(st, 404, p)
            self.assertEqual(hdr["content-type"], "application/json", p)
            self.assertIn("error", json.loads(body))
            st, _, _ = self.api("DELETE", p)
            self.assertIn(st, (404, 405), p)
        self.assertEqual(self.get_json("/messages")["total"], 1)

    def test_token(self):
        self.start({"SMTPD_HTTP_TOKEN": TOKEN})
        mid = self.send(0)
        for path in ("/messages", "/messages/" + mid, "/messages/%s/raw" % mid):
            st, hdr, _ = self.api("GET", path)
            self.assertEqual(st, 401, path)
            self.assertIn("Bearer", hdr.get("www-authenticate", ""))
            st, _, _ = self.api("GET", path, token="wrong")
            self.assertEqual(st, 401, path)
            st, _, _ = self.api("GET", path, token=TOKEN)
            self.assertEqual(st, 200, path)
        st, _, _ = self.api("DELETE", "/messages/" + mid)
        self.assertEqual(st, 401)
        self.assertIn(mid, self.mp.new_files())
        st, _, _ = self.api("DELETE", "/messages/" + mid, token=TOKEN)
        self.assertEqual(st, 204)
        for path in ("/status", "/livez", "/healthz", "/readyz"):
            st, _, _ = self.api("GET", path)
            self.assertEqual(st, 200, path)

    def test_states_after_delivery(self):
        rcv = Receiver(lambda req, r: 400 if b"refuse me" in req.raw() else 200)
        self.addCleanup(rcv.close)
        mp = self.start({"SMTPD_WEBHOOK_URL": rcv.url})
        ok = self.send(0)
        bad = self.send(1, subject="refuse me")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {m["id"]: m["state"] for m in self.get_json("/messages")["messages"]}
            if states == {ok: "delivered", bad: "failed"}:
                break
            time.sleep(0.05)
        self.assertEqual(states, {ok: "delivered", bad: "failed"})
        one = self.get_json("/messages/" + bad)
        self.assertEqual(one["delivery"]["state"], "failed")
        self.assertTrue(one["delivery"]["reason"].startswith("HTTP 400"))
        st, _, raw = self.api("GET", "/messages/%s/raw" % ok)
        self.assertEqual(st, 200)
        with open(os.path.join(mp.spool, "cur", ok), "rb") as f:
            self.assertEqual(raw, f.read())
        # A message a mail reader marked seen (Maildir info) is still found.
        os.rename(os.path.join(mp.spool, "cur", ok), os.path.join(mp.spool, "cur", ok + ":2,S"))
        self.assertEqual(self.get_json("/messages/" + ok)["state"], "delivered")
        st, _, _ = self.api("DELETE", "/messages/" + ok)
        self.assertEqual(st, 204)
        st, _, _ = self.api("DELETE", "/messages/" + bad)
        self.assertEqual(st, 204)
        self.assertEqual(self.get_json("/messages")["total"], 0)
        self.assertEqual(os.listdir(os.path.join(mp.spool, "cur")), [])
        self.assertEqual(os.listdir(os.path.join(mp.spool, "failed")), [])

    def test_discard_is_empty(self):
        self.start({"SMTPD_DELIVER": "discard"})
        self.send(0)
        self.assertEqual(self.get_json("/messages"), {"total": 0, "messages": []})


def premade_id(i):
    """Ids of our format, in arrival order with i (a few per second)."""
    return "%d.M%06dP4242Q%d.mx.test.example" % (1700000000 + i // 7, (i % 7) * 1000, i)


def write_premade(spool, n, sub="cur"):
    """n messages written straight into <spool>/<sub>/ with their envelopes in
    meta/ (SPEC 5), as a previous run would have left them."""
    for d in ("tmp", "new", "cur", "meta"):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    ids = []
    for i in range(n):
        mid = premade_id(i)
        body = (b"Return-Path: <a@x.example>\nReceived: from client.example ([127.0.0.1])\n"
                b"\tby mx.test.example (mailport) with ESMTP id " + mid.encode() +
                b";\n\tTue, 14 Nov 2023 22:13:20 +0000\nSubject: premade %d\n\nbody\n" % i)
        with open(os.path.join(spool, sub, mid), "wb") as f:
            f.write(body)
        meta = {"id": mid, "mail_from": "a@x.example", "rcpt_to": ["b@y.example"],
                "client": {"address": "127.0.0.1", "port": 40000}, "helo": "client.example",
                "local": {"address": "127.0.0.1", "port": 2525}, "auth_user": None,
                "tls": None, "proxy": None, "size": 20, "received_at": "2023-11-14T22:13:20.000Z"}
        with open(os.path.join(spool, "meta", mid + ".json"), "w") as f:
            f.write(json.dumps(meta, separators=(",", ":")) + "\n")
        ids.append(mid)
    return ids


class TestIndexListing(MessagesCase):
    """GET /messages from the spool's index (issue 12): the before= cursor,
    an exact total through deletes and moves, and a large spool."""

    def page_all(self, step):
        """Every message, newest first, through pages chained by before=."""
        got, before = [], None
        while True:
            q = "/messages?limit=%d" % step + ("&before=" + before if before else "")
            page = self.get_json(q)
            got.extend((m["id"], m["state"]) for m in page["messages"])
            if len(page["messages"]) < step:
                return got, page["total"]
            before = page["messages"][-1]["id"]

    def test_before_cursor(self):
        self.start()
        ids = [self.send(i) for i in range(7)]
        newest_first = list(reversed(ids))
        for step in (1, 2, 3, 7, 50):
            got, total = self.page_all(step)
            self.assertEqual([g[0] for g in got], newest_first, step)
            self.assertEqual(total, 7)
        # before and offset together; the cursor is strictly older
        page = self.get_json("/messages?limit=2&offset=1&before=" + ids[5])
        self.assertEqual([m["id"] for m in page["messages"]], [ids[3], ids[2]])
        self.assertEqual(self.get_json("/messages?before=" + ids[0])["messages"], [])
        # the entry is the same JSON whichever way the page was reached
        by_offset = self.get_json("/messages?limit=1&offset=2")["messages"][0]
        by_cursor = self.get_json("/messages?limit=1&before=" + ids[5])["messages"][0]
        self.assertEqual(by_offset, by_cursor)
        # an id that is not in the spool, or not an id at all: 400 with a JSON error
        for bad in ("1.M1P1Q1.nowhere", "..%2fx", "a%20b", "x" * 300):
            err = self.get_json("/messages?before=" + bad, want=400)
            self.assertIn("error", err)

    def test_total_exact_after_deletes_and_moves(self):
        rcv = Receiver(lambda req, r: 400 if b"refuse me" in req.raw() else 200)
        self.addCleanup(rcv.close)
        mp = self.start({"SMTPD_WEBHOOK_URL": rcv.url})
        ids = [self.send(i, subject="refuse me" if i % 3 == 0 else None) for i in range(9)]
        want = {mid: "failed" if i % 3 == 0 else "delivered" for i, mid in enumerate(ids)}
        states = h.wait_for(lambda: dict(self.page_all(4)[0]) == want and want, timeout=15)
        self.assertTrue(states, self.page_all(4))
        self.assertEqual(self.get_json("/messages")["total"], 9)
        for mid in (ids[0], ids[4], ids[8]):
            st, _, _ = self.api("DELETE", "/messages/" + mid)
            self.assertEqual(st, 204)
            del want[mid]
        got, total = self.page_all(2)
        self.assertEqual(total, 6)
        self.assertEqual(dict(got), want)
        self.assertEqual([g[0] for g in got], [m for m in reversed(ids) if m in want])
        # A message taken away behind mailport's back is dropped when a page
        # finds it gone, and the page is still full.
        os.unlink(os.path.join(mp.spool, "cur", ids[7]))
        del want[ids[7]]
        page = self.get_json("/messages?limit=3")
        self.assertEqual([m["id"] for m in page["messages"]], [ids[6], ids[5], ids[3]])
        self.assertEqual(page["total"], 5)
        got, total = self.page_all(2)
        self.assertEqual((dict(got), total), (want, 5))

    def test_large_spool(self):
        """20,000 delivered messages left by an earlier run: the index is built
        once at start, and a page of one lists the newest (no timing asserted:
        that belongs to the benchmarks)."""
        spool = os.path.join(self.new_mailport().tmp, "big-spool")
        n = 20000
        ids = write_premade(spool, n)
        self.start({"SMTPD_SPOOL": spool})
        page = self.get_json("/messages?limit=1")
        self.assertEqual(page["total"], n)
        self.assertEqual(len(page["messages"]), 1)
        top = page["messages"][0]
        self.assertEqual(top["id"], ids[-1])
        self.assertEqual(top["state"], "delivered")
        self.assertEqual(top["subject"], "premade %d" % (n - 1))
        self.assertEqual(top["mail_from"], "a@x.example")
        page = self.get_json("/messages?limit=2&before=" + ids[-1])
        self.assertEqual([m["id"] for m in page["messages"]], [ids[-2], ids[-3]])
        page = self.get_json("/messages?limit=1&offset=%d" % (n - 1))
        self.assertEqual([m["id"] for m in page["messages"]], [ids[0]])
        # a new message is the newest, and counted
        mid = self.send(0)
        page = self.get_json("/messages?limit=1")
        self.assertEqual((page["total"], page["messages"][0]["id"]), (n + 1, mid))


if __name__ == "__main__":
    h.main()
