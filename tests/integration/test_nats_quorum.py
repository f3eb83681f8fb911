#!/usr/bin/python3
"""Sync mode with the stream's quorum lost (issue 16, SPEC 9).

A three-node JetStream cluster of Debian's nats-server (own ports, config
files, store directories, `cluster {}` routes) and a replicas: 3 stream made
by this test. mailport runs with SMTPD_NATS_MODE=sync and SMTPD_DELIVER=
discard: the 250 comes only after JetStream's acknowledgement. Messages sent
while the cluster is whole get 250; then two of the three nodes are stopped
(SIGTERM: nats-server 2.9 buffers its stores in memory and fsyncs only now and
then, so a SIGKILL of two of three nodes can lose what JetStream had already
acknowledged; that is JetStream's durability, which sync mode inherits and the
README states, not what this test is about), the stream loses its quorum, and every message gets 451 4.3.0
within SMTPD_NATS_TIMEOUT (plus a margin); /readyz stays consistent with the
connection. The nodes come back, 250s resume, and the stream leader's copy,
read message by message, holds every message that got a 250 (nothing
acknowledged that is not in the stream), each exactly once. Not a consumer:
nats-server 2.9.10 can leave the node that stayed up alone with a diverged
copy (a message it appended alone, answered 451, where the healed cluster
committed the next acknowledged one), and a consumer placed on that node reads
that copy; see nats_cluster.leader_copy."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport_harness as h  # noqa: E402
import nats_cluster as nc  # noqa: E402

SUBJECT = "mailport.sync"
STREAM = "SYNCQ"


def msg(n):
    return b"Subject: quorum %d\r\n\r\nbody %d\r\n" % (n, n)


class TestQuorum(h.MailportTestCase):
    def setUp(self):
        super().setUp()
        nc.require(self)
        self.cluster = nc.Cluster(3)
        self.addCleanup(self.cluster.close)

    def send(self, n):
        return h.send_message_to(self.port, msg(n), timeout=30)

    def test_quorum_lost_is_451_and_nothing_acknowledged_is_missing(self):
        self.cluster.start()
        self.cluster.create_stream(STREAM, SUBJECT, 3)
        self.port = h.free_port()
        spool = os.path.join(self.cluster.root, "no-spool")
        mp = self.mailport({"SMTPD_PORTS": str(self.port), "SMTPD_NATS_URL": self.cluster.urls(),
                            "SMTPD_NATS_STREAM": STREAM, "SMTPD_NATS_SUBJECT": SUBJECT,
                            "SMTPD_NATS_MODE": "sync", "SMTPD_DELIVER": "discard",
                            "SMTPD_SPOOL": spool, "SMTPD_NATS_TIMEOUT": "2s",
                            "SMTPD_MAX_MESSAGE_SIZE": "1000000"})
        acked, refused, phase = [], [], {}
        for i in range(20):
            code, lines = self.send(i)
            self.assertEqual(code, 250, lines)
            acked.append(h.queued_id(lines))
            phase[acked[-1]] = "whole #%d" % i
        # Two of three nodes go: no quorum for the stream (nor for the meta
        # layer). Whatever node mailport used, it reconnects to the survivor.
        for nd in self.cluster.nodes[:2]:
            nd.stop()
        n451 = 0
        for i in range(20, 30):
            t0 = time.monotonic()
            code, lines = self.send(i)
            took = time.monotonic() - t0
            if code == 250:  # a publish the survivor still stored before it noticed
                acked.append(h.queued_id(lines))
                phase[acked[-1]] = "after the kill #%d" % i
                continue
            self.assertEqual(code, 451, lines)
            self.assertIn("4.3.0", " ".join(lines))
            self.assertLess(took, 2 + 3, "451 only after %.1f s" % took)
            refused.append(i)
            n451 += 1
        self.assertGreaterEqual(n451, 8, "quorum lost, yet %d of 10 got 250" % (10 - n451))
        st = mp.status()["nats"]
        self.assertGreaterEqual(st["failed"], n451)
        self.assertIsNotNone(st["last_error"])
        # The cluster heals: 250s again.
        for nd in self.cluster.nodes[:2]:
            nd.start()
        deadline = time.monotonic() + 60
        healed = False
        i = 100
        while time.monotonic() < deadline:
            code, lines = self.send(i)
            i += 1
            if code == 250:
                acked.append(h.queued_id(lines))
                phase[acked[-1]] = "the first after the return (#%d)" % (i - 1)
                healed = True
                break
            time.sleep(0.5)
        self.assertTrue(healed, "no 250 within 60 s of the nodes' return; stderr:\n%s"
                        % mp.stderr()[-3000:])
        for k in range(5):
            code, lines = self.send(200 + k)
            self.assertEqual(code, 250, lines)
            acked.append(h.queued_id(lines))
            phase[acked[-1]] = "healed #%d" % (200 + k)
        msgs = self.cluster.leader_copy(STREAM)
        ids = [m["id"] for m in msgs]
        self.assertEqual(len(ids), len(set(ids)), "duplicates in the stream")
        missing = set(acked) - set(ids)
        self.assertEqual(missing, set(), "acknowledged with 250 but not in the stream: %s; "
                         "the stream: %s; NATS dirs: %s; mailport stderr:\n%s"
                         % (sorted(phase[m] for m in missing), ids, self.cluster.root,
                            mp.stderr()[-3000:]))
        self.assertFalse(os.path.exists(spool))
        print("\n%d acknowledged, all in the stream; %d answered 451 without quorum; "
              "%d messages in the stream" % (len(acked), n451, len(ids)))


if __name__ == "__main__":
    # Up to 60 s waiting for the healed cluster, and the reads after it.
    h.main(timeout=180)
