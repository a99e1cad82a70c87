"""Producer compression options and consumer decompression, over the wire, against the real name
server and the scripted test broker of ``tests/client/conftest.py``.

``AwareBroker`` is that scripted broker taught the whole-batch contract of
``mqbench.broker.formats.compression`` exactly as the reference broker must follow it: a compressed
SEND_BATCH body is checked with ``decode_client_batch``; on a BatchCQ topic its stored body is kept
as ONE inner-batch record with the codec's sysflag bits, elsewhere the messages are stored one by
one, plain. The unmodified scripted broker stands for a broker that does not know the form.
"""
import asyncio
import importlib.util
import re
import zlib
from pathlib import Path

import pytest

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats import compression as comp
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.client import ClientError, Consumer, OutgoingMessage, Producer
from mqbench.codecs.registry import parse_codec
from mqbench.errors import CorruptDataError, UserError

_spec = importlib.util.spec_from_file_location(
    "client_scripted_broker", Path(__file__).resolve().parents[1] / "client" / "conftest.py")
scripted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scripted)


class AwareBroker(scripted.ScriptedBroker):
    async def on_send(self, cmd, channel):
        h = headers.send_header(cmd)
        if cmd.code != codes.SEND_BATCH_MESSAGE or not h.sys_flag & record_layout.SYSFLAG_COMPRESSED:
            return await super().on_send(cmd, channel)
        self.requests.append(cmd)
        try:
            batch = comp.decode_client_batch(cmd.body, h.sys_flag)
        except CorruptDataError as exc:
            return cmd.response_to(codes.MESSAGE_ILLEGAL, str(exc))
        props = rec.decode_properties(h.properties or "")
        base = dict(topic=h.topic, queue_id=h.queue_id, born_timestamp_ms=h.born_timestamp_ms)
        if h.topic in self.inner_batch_topics:
            inner = {"INNER_NUM": str(batch.count), "INNER_BASE": str(self.max_offset(h.topic, h.queue_id))}
            msg = rec.Message(body=batch.stored_body, properties={**props, **inner}, **base,
                              sysflag=record_layout.SYSFLAG_NEED_UNWRAP | record_layout.SYSFLAG_INNER_BATCH | batch.sysflag_bits)
            first = self.append(msg, batch.count)
            ids = rec.message_id(self.store_host, msg.physical_offset)
        else:
            first, ids = None, []
            for item in batch.items:
                inner = rec.Message(body=item.body, properties=item.properties, flag=item.flag, **base)
                offset = self.append(inner)
                first = offset if first is None else first
                ids.append(rec.message_id(self.store_host, inner.physical_offset))
            ids = ",".join(ids)
        return cmd.response_to(codes.SUCCESS, None, {"msgId": ids, "queueId": h.queue_id, "queueOffset": first})


async def add_broker(cluster, cls=AwareBroker, **kwargs):
    broker = cls("g0", **kwargs)
    await broker.start()
    response = await broker.register(cluster.namesrv_addr)
    assert response.code == codes.SUCCESS, response.remark
    cluster.brokers.append(broker)
    return broker


def run(coro, timeout_s=20):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def fast_consumer(addr, group, **kwargs):
    options = dict(consume_from="first", suspend_timeout_ms=300, pull_error_backoff_ms=50,
                   rebalance_interval_ms=200, heartbeat_interval_ms=1000, commit_interval_ms=100)
    options.update(kwargs)
    return Consumer(addr, group, **options)


async def receive_n(consumer, n, timeout_s=5.0):
    got = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        got += await consumer.receive(64, timeout_ms=100)
    return got


def order_body(i, size):
    text = f'{{"order_id": "o-{i}", "status": "paid", "items": ['
    while len(text) < size:
        text += f'{{"sku": "s{len(text) % 97}", "qty": 1}}, '
    return text[:size].encode()


def test_per_message_compression_follows_rocketmqs_threshold_and_zlib_form():
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, queue_nums=1)
            small, exact = order_body(1, 4095), order_body(2, 4096)
            async with Producer(cluster.namesrv_addr, compression="zlib:5") as producer:
                await producer.send(OutgoingMessage("Orders", small, keys=["small"]))
                await producer.send(OutgoingMessage("Orders", exact, keys=["exact"]))
            stored = {m.properties["KEYS"]: m for m in broker.stored("Orders")}
            assert stored["small"].sysflag == 0 and stored["small"].body == small
            # zlib is sent as RocketMQ 4.x and the C++ client send it: flag 0x1, zlib stream at level 5
            assert stored["exact"].sysflag == record_layout.SYSFLAG_COMPRESSED
            assert stored["exact"].body == zlib.compress(exact, 5)
            consumer = fast_consumer(cluster.namesrv_addr, "GID_z")
            consumer.subscribe("Orders")
            async with consumer:
                got = await receive_n(consumer, 2)
            assert sorted((m.keys[0], m.body) for m in got) == [("exact", exact), ("small", small)]
    run(main())


@pytest.mark.parametrize("spec,bits", [("zstd:3", 0x201), ("lz4", 0x101), ("snappy", 0x401)])
def test_other_codecs_carry_their_type_bits_and_threshold_zero_compresses_all(spec, bits):
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, queue_nums=1)
            async with Producer(cluster.namesrv_addr, compression=spec, compress_over_bytes=0) as producer:
                await producer.send(OutgoingMessage("Orders", b"tiny body"))
                await producer.send(OutgoingMessage("Orders", order_body(3, 9000)))
            assert [m.sysflag for m in broker.stored("Orders")] == [bits, bits]
            consumer = fast_consumer(cluster.namesrv_addr, "GID_c")
            consumer.subscribe("Orders")
            async with consumer:
                got = await receive_n(consumer, 2)
            assert sorted(m.body for m in got) == sorted([b"tiny body", order_body(3, 9000)])
            assert [m.queue_offset for m in sorted(got, key=lambda m: m.queue_offset)] == [0, 1]
    run(main())


@pytest.mark.parametrize("spec", ["zlib:5", "zstd:3", "lz4"])
def test_whole_batch_compression_on_a_batch_topic_reads_back_message_by_message(spec):
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, queue_nums=1, topics=("Orders",), inner_batch_topics=("Batched",))
            async with Producer(cluster.namesrv_addr, batch_compression=spec) as producer:
                await producer.send(OutgoingMessage("Batched", b"single first", keys=["s0"]))
                first = await producer.send_batch([OutgoingMessage("Batched", order_body(i, 300 + i), keys=[f"k{i}"],
                                                                   tags=f"t{i % 2}", properties={"seq": str(i)})
                                                   for i in range(16)])
                second = await producer.send_batch([OutgoingMessage("Batched", order_body(i, 50), keys=[f"x{i}"])
                                                    for i in range(4)])
            assert (first.queue_offset, second.queue_offset) == (1, 17)
            codec = parse_codec(spec)
            records = broker.stored("Batched")
            assert [r.sysflag for r in records] == [0] + [0xC0 | comp.sysflag_bits(codec)] * 2
            plain_bytes = sum(22 + len(order_body(i, 300 + i)) + 60 for i in range(16))
            assert len(records[1].body) < plain_bytes / 2            # stored compressed, as sent
            consumer = fast_consumer(cluster.namesrv_addr, "GID_b")
            consumer.subscribe("Batched", "t0 || t1")
            consumer_all = fast_consumer(cluster.namesrv_addr, "GID_all")
            consumer_all.subscribe("Batched")
            async with consumer_all:
                got = sorted(await receive_n(consumer_all, 21), key=lambda m: m.queue_offset)
            assert [m.queue_offset for m in got] == list(range(21))
            assert got[0].body == b"single first"
            assert [(m.body, m.keys, m.tags, m.properties["seq"]) for m in got[1:17]] == [
                (order_body(i, 300 + i), [f"k{i}"], f"t{i % 2}", str(i)) for i in range(16)]
            assert [m.msg_id for m in got[1:17]] == first.msg_ids      # each message keeps its own UNIQ_KEY
            assert [m.keys for m in got[17:]] == [[f"x{i}"] for i in range(4)]
            async with consumer:
                tagged = await receive_n(consumer, 16)
            assert sorted(m.queue_offset for m in tagged) == list(range(1, 17))
    run(main())


def test_whole_batch_compression_on_an_ordinary_topic_is_stored_plain_per_message():
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, queue_nums=1)
            async with Producer(cluster.namesrv_addr, batch_compression="zstd:3") as producer:
                result = await producer.send_batch([OutgoingMessage("Orders", order_body(i, 200), keys=[f"k{i}"])
                                                    for i in range(5)])
            assert result.queue_offset == 0 and len(result.offset_msg_id.split(",")) == 5
            assert [(m.sysflag, m.body) for m in broker.stored("Orders")] == [(0, order_body(i, 200)) for i in range(5)]
    run(main())


def test_a_broker_that_does_not_know_compressed_batches_refuses_them():
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, cls=scripted.ScriptedBroker, queue_nums=1,
                                      inner_batch_topics=("Batched",))
            async with Producer(cluster.namesrv_addr, batch_compression="zlib:5", retries=0) as producer:
                for topic in ("Orders", "Batched"):
                    with pytest.raises(ClientError, match="SYSTEM_ERROR"):
                        await producer.send_batch([OutgoingMessage(topic, b"m%d" % i) for i in range(3)])
            assert broker.stored("Orders") == [] and broker.stored("Batched") == []
    run(main())


def test_a_compressed_record_that_does_not_decompress_is_skipped_and_reported():
    """Issue 18: it used to stop the queue for good; RocketMQ's client skips such a message."""
    async def main():
        async with scripted.Cluster() as cluster:
            broker = await add_broker(cluster, queue_nums=1)
            broker.append(rec.Message(topic="Orders", body=b"fine", properties={"KEYS": "ok"}))
            broker.append(rec.Message(topic="Orders", body=b"\x28\xb5\x2f\xfd garbage", sysflag=0x201))
            broker.append(rec.Message(topic="Orders", body=b"after", properties={"KEYS": "ok2"}))
            consumer = fast_consumer(cluster.namesrv_addr, "GID_bad")
            consumer.subscribe("Orders")
            got = []
            async with consumer:
                for _ in range(50):
                    got += await consumer.receive(8, timeout_ms=100)
                    if len(got) >= 2:
                        break
            assert [m.body for m in got] == [b"fine", b"after"]
            assert consumer.skipped_count == 1
            assert consumer.skipped[0].queue_offset == 1
            assert re.search(r"Orders offset 1 at offset \d+: compressed body: zstd", consumer.skipped[0].reason)
    run(main())


def test_bad_compression_options_are_user_errors():
    with pytest.raises(UserError, match="compression: unknown codec 'gzip'"):
        Producer("127.0.0.1:1", compression="gzip")
    with pytest.raises(UserError, match="batch_compression: zstd level"):
        Producer("127.0.0.1:1", batch_compression="zstd:99")
    with pytest.raises(UserError, match="compress_over_bytes"):
        Producer("127.0.0.1:1", compression="zlib", compress_over_bytes=-1)
    with pytest.raises(UserError, match="not both"):
        Producer("127.0.0.1:1", compression="zlib", codec=parse_codec("lz4"))
    with pytest.raises(UserError, match="codec spec"):
        Producer("127.0.0.1:1", compression=5)
    producer = Producer("127.0.0.1:1", compression="none", batch_compression=parse_codec("none"))
    assert producer.codec is None and producer.batch_codec is None
