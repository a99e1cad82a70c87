"""A malformed compressed body poisons no queue (issue 18, finding 4).

A single SEND flagged compressed (zlib as 0x1, or another codec in the compression-type bits) whose
body does not decompress is refused with MESSAGE_ILLEGAL; and a store that already holds one (written
by another broker) does not stop mqbench's consumer: it skips that message, reports it, and goes on.
"""
from __future__ import annotations

import asyncio
import time
import zlib

from mqbench.broker.remoting import codes
from mqbench.broker.store import record as rec
from mqbench.client import Consumer, OutgoingMessage, Producer
from test_broker_inprocess import InProcessCluster, request, run, send_v1_fields

ZLIB = rec.SYSFLAG_COMPRESSED                       # legacy type 0 = zlib, what 4.x writes
ZSTD = rec.SYSFLAG_COMPRESSED | (2 << rec.SYSFLAG_COMPRESSION_SHIFT)
UNKNOWN = rec.SYSFLAG_COMPRESSED | (7 << rec.SYSFLAG_COMPRESSION_SHIFT)


def test_send_flagged_compressed_with_a_body_that_does_not_decompress_is_refused(tmp_path):
    async def main():
        async with InProcessCluster(tmp_path, 1, subnet=20) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            for sysflag, body in ((ZLIB, b"this is not zlib at all"), (ZSTD, b"\x28\xb5\x2f\xfd garbage"),
                                  (UNKNOWN, zlib.compress(b"x" * 100)), (ZLIB, zlib.compress(b"x" * 100)[:-3])):
                answer = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Poison", sysFlag=sysflag), body)
                assert answer.code == codes.MESSAGE_ILLEGAL, (hex(sysflag), answer.code, answer.remark)
                assert "decompress" in answer.remark
            good = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Poison", sysFlag=ZLIB),
                                 zlib.compress(b"hello" * 50))
            assert good.code == codes.SUCCESS, good.remark
            assert leader.group.store.max_offset("Poison", 0) == 1   # only the good one was stored
    run(main())


def test_consumer_skips_and_reports_a_stored_message_it_cannot_decode(tmp_path):
    async def main():
        async with InProcessCluster(tmp_path, 1, subnet=21) as cluster:
            leader = await cluster.leader()
            await leader.ctx.ensure_topic("Held", queue_nums=1)
            deadline = time.monotonic() + 10
            while "Held" not in cluster.namesrv.routes.topic_queues:
                assert time.monotonic() < deadline, "Held never routed"
                await asyncio.sleep(0.02)
            async with Producer(cluster.namesrv_addr, "PID_poison") as producer:
                await producer.send(OutgoingMessage("Held", b"first"))
                # as another broker's store may hold it: straight into the group, no send-side check
                await leader.group.put(rec.Message("Held", b"not zlib", {"KEYS": "poison"}, queue_id=0,
                                                   sysflag=ZLIB))
                await producer.send(OutgoingMessage("Held", b"second"))
            consumer = Consumer(cluster.namesrv_addr, "GID_poison", consume_from="first", suspend_timeout_ms=500)
            consumer.subscribe("Held")
            got = []
            async with consumer:
                deadline = time.monotonic() + 15
                while len(got) < 2 and time.monotonic() < deadline:
                    got += await consumer.receive(32, timeout_ms=200)
            assert [m.body for m in got] == [b"first", b"second"]
            assert consumer.skipped_count == 1
            skipped = consumer.skipped[0]
            assert (skipped.topic, skipped.queue_id, skipped.queue_offset) == ("Held", 0, 1)
            assert "zlib" in skipped.reason
    run(main(), 60)
