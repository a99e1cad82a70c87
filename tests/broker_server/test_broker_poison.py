"""A malformed compressed body poisons no queue (issue 18, finding 4).

A single SEND flagged compressed (zlib as 0x1, or another codec in the compression-type bits) whose
body does not decompress is refused with MESSAGE_ILLEGAL; and a store that already holds one (written
by another broker) does not stop mqbench's consumer: it skips that message, reports it, and goes on.
"""
from __future__ import annotations

import asyncio
import time
import zlib

from mqbench.broker.formats import codes
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.client import Consumer, OutgoingMessage, Producer
from test_broker_inprocess import InProcessCluster, request, run, send_v1_fields

ZLIB = record_layout.SYSFLAG_COMPRESSED                       # legacy type 0 = zlib, what 4.x writes
ZSTD = record_layout.SYSFLAG_COMPRESSED | (2 << record_layout.SYSFLAG_COMPRESSION_SHIFT)
UNKNOWN = record_layout.SYSFLAG_COMPRESSED | (7 << record_layout.SYSFLAG_COMPRESSION_SHIFT)


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


def test_a_huge_batch_is_refused_without_holding_up_the_loop(tmp_path):
    """Finding 7: one batch of 150,000 one-byte messages held the event loop for 35.7 s (the name
    server expired the broker). Now it is refused while walking the body, and a small request sent
    at the same time is answered within a bound; a batch at the bound is stored."""
    from mqbench.broker.server.handlers_send import BATCH_MESSAGES_MAX
    from mqbench.broker.formats.batch import BatchItem, encode_batch

    huge = encode_batch([BatchItem(b"x")] * 150_000)
    at_bound = encode_batch([BatchItem(b"y", {"KEYS": str(i)}) for i in range(BATCH_MESSAGES_MAX)])

    async def timed(coro):
        started = time.monotonic()
        result = await coro
        return result, time.monotonic() - started

    async def main():
        async with InProcessCluster(tmp_path, 1, subnet=22) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            ok = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Big"), b"warm-up")
            assert ok.code == codes.SUCCESS
            probe = {"topic": "Big", "queueId": 0}
            (big, big_s), (small, small_s) = await asyncio.gather(
                timed(request(addr, codes.SEND_BATCH_MESSAGE, send_v1_fields("Big", batch=True), huge, 60_000)),
                timed(request(addr, codes.GET_MAX_OFFSET, probe)))
            assert big.code == codes.MESSAGE_ILLEGAL and "split" in big.remark, big.remark
            assert small.code == codes.SUCCESS
            assert small_s < 3, f"a small request waited {small_s:.1f} s behind the batch"
            stored = await request(addr, codes.SEND_BATCH_MESSAGE, send_v1_fields("Big", batch=True), at_bound, 60_000)
            assert stored.code == codes.SUCCESS, stored.remark
            assert leader.group.store.max_offset("Big", 0) == 1 + BATCH_MESSAGES_MAX
    run(main(), 120)
