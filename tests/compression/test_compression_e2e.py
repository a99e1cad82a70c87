"""End to end: mqbench's producer and consumer against the reference broker as real processes
(``mqbench.cluster.launcher.up("single", ...)``): per-message compression, plain batches
consolidated on a BatchCQ topic, whole-batch compressed batches on an ordinary topic (stored plain,
one record per message) and on a BatchCQ topic (stored as ONE compressed record). Every message is
read back one by one with its own queue offset, properties and plain body, and what the broker
stored is checked in its store after the cluster is down."""
import asyncio

import pytest

from mqbench.admin.calls import create_topic
from mqbench.broker.formats import compression as comp
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP
from mqbench.broker.store.store import Store
from mqbench.client import ClientError, Consumer, OutgoingMessage, Producer
from mqbench.cluster import launcher
from mqbench.codecs.registry import parse_codec

PORT_OFFSET = 4610
INNER = SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH


def body(i, size):
    text = f'{{"device": "d-{i}", "readings": ['
    while len(text) < size:
        text += f'{{"t": {len(text)}, "v": 21.5}}, '
    return text[:size].encode()


def batch(topic, prefix, n, size=200):
    return [OutgoingMessage(topic, body(i, size + 10 * i), keys=[f"{prefix}{i}"], tags=f"t{i % 2}",
                            properties={"seq": str(i)}) for i in range(n)]


async def wait_routed(producer, topic, timeout_s=20.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await producer.routes.refresh(topic)
            return
        except ClientError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def consume(namesrv, group, topic, n, timeout_s=20.0):
    consumer = Consumer(namesrv, group, consume_from="first", suspend_timeout_ms=500, rebalance_interval_ms=500,
                        commit_interval_ms=200)
    consumer.subscribe(topic)
    got = {}
    async with consumer:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(got) < n and asyncio.get_running_loop().time() < deadline:
            for m in await consumer.receive(64, timeout_ms=200):
                got[m.queue_offset] = m
    return [got[k] for k in sorted(got)]


def stored_record(store_root, topic, offset):
    """The commitlog record the BatchCQ unit covering ``offset`` points at (cluster stopped)."""
    store = Store.open(store_root, "v5-dledger")
    try:
        unit, = store.queues.find(topic, 0).read_units(offset, 1)
        return store.read_message(unit.physical_offset, unit.size)
    finally:
        store.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("compression-e2e") / "cluster"
    state = launcher.up("single", directory, port_offset=PORT_OFFSET, wait_s=60)
    stopped = []

    def stop():
        if not stopped:
            launcher.down(state, timeout_s=10)
            stopped.append(True)
        return directory / "broker-a" / "n0" / "store"

    try:
        yield state, stop
    finally:
        stop()


def run(coro, timeout_s=90):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


@pytest.mark.realproc
def test_per_message_compression_and_batches_end_to_end(cluster):
    state, _stop = cluster
    namesrv = launcher.cluster_layout(state).namesrv_addr
    addr = launcher.leader(state, "broker-a").addr

    async def main():
        await create_topic(addr, "Batched", queues=1, attributes={"queue.type": "BatchCQ"})
        await create_topic(addr, "Plain", queues=1)
        async with Producer(namesrv, "PID_e2e_a", compression="zlib:5") as producer:
            await wait_routed(producer, "Batched")
            await wait_routed(producer, "Plain")
            small = await producer.send(OutgoingMessage("Batched", body(0, 100), keys=["small"]))
            big = await producer.send(OutgoingMessage("Batched", body(1, 6000), keys=["big"]))
            consolidated = await producer.send_batch(batch("Batched", "b", 16))
        async with Producer(namesrv, "PID_e2e_b", batch_compression="zstd:3") as producer:
            spread = await producer.send_batch(batch("Plain", "p", 5, 300))
        assert [r.queue_offset for r in (small, big, consolidated, spread)] == [0, 1, 2, 0]
        got = await consume(namesrv, "GID_e2e_a", "Batched", 18)
        assert [m.queue_offset for m in got] == list(range(18))
        assert [m.body for m in got[:2]] == [body(0, 100), body(1, 6000)]
        assert [(m.body, m.keys, m.tags, m.properties["seq"]) for m in got[2:]] == [
            (body(i, 200 + 10 * i), [f"b{i}"], f"t{i % 2}", str(i)) for i in range(16)]
        assert [m.msg_id for m in got[2:]] == consolidated.msg_ids
        plain = await consume(namesrv, "GID_e2e_b", "Plain", 5)
        assert [(m.queue_offset, m.body, m.keys) for m in plain] == [
            (i, body(i, 300 + 10 * i), [f"p{i}"]) for i in range(5)]

    run(main())


@pytest.mark.realproc
def test_whole_batch_compression_on_a_batch_topic_end_to_end(cluster):
    state, stop = cluster
    namesrv = launcher.cluster_layout(state).namesrv_addr
    addr = launcher.leader(state, "broker-a").addr

    async def main():
        await create_topic(addr, "Zipped", queues=1, attributes={"queue.type": "BatchCQ"})
        async with Producer(namesrv, "PID_e2e_c", batch_compression="zstd:3") as producer:
            await wait_routed(producer, "Zipped")
            first = await producer.send_batch(batch("Zipped", "z", 32))
            second = await producer.send_batch(batch("Zipped", "y", 3))
        assert (first.queue_offset, second.queue_offset) == (0, 32)
        got = await consume(namesrv, "GID_e2e_c", "Zipped", 35)
        assert [m.queue_offset for m in got] == list(range(35))
        assert [(m.body, m.keys, m.properties["seq"]) for m in got[:32]] == [
            (body(i, 200 + 10 * i), [f"z{i}"], str(i)) for i in range(32)]
        assert [m.keys for m in got[32:]] == [["y0"], ["y1"], ["y2"]]

    run(main())
    zipped = stored_record(stop(), "Zipped", 0)
    assert zipped.sysflag == INNER | comp.sysflag_bits(parse_codec("zstd")) and zipped.properties["INNER_NUM"] == "32"
    items = comp.inner_batch_items(zipped.body, zipped.sysflag)
    assert len(zipped.body) < len(comp.encode_client_batch(items, None)[0]) / 2   # stored compressed
