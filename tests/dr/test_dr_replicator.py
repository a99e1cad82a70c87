"""The scheme C replicator between two in-process clusters: a real name server each and the client
suite's scripted brokers (tests/client/conftest.py), over real loopback sockets."""
import asyncio
import importlib.util
from pathlib import Path

import pytest

from mqbench.dr.netem import DelayProxy, LinkSettings
from mqbench.broker.formats import codes
from mqbench.client import OutgoingMessage, Producer
from mqbench.dr.offsets import QueueKey
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_ORIGIN, PROPERTY_MQBENCH_ORIGIN_MSG_ID
from mqbench.dr.replicator import Replicator
from mqbench.errors import UserError

_spec = importlib.util.spec_from_file_location("client_fixtures", Path(__file__).parents[1] / "client" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

TOPIC = "Orders"


def run(coro, timeout_s=30):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def two_clusters(queue_nums=4):
    source, target = fixtures.Cluster(), fixtures.Cluster()
    await source.__aenter__()
    await target.__aenter__()
    src = await source.add_broker("broker-a", cluster="room1", queue_nums=queue_nums)
    dst = await target.add_broker("broker-b", cluster="room2", queue_nums=queue_nums)
    return source, target, src, dst


async def close(*clusters):
    for cluster in clusters:
        await cluster.__aexit__(None, None, None)


async def produce(namesrv, count, start=0, **fields):
    acked = []
    async with Producer(namesrv, "PID_app") as producer:
        for i in range(start, start + count):
            result = await producer.send(OutgoingMessage(TOPIC, f"m{i}".encode(), **fields))
            acked.append((result.queue.queue_id, result.queue_offset, f"m{i}".encode()))
    return acked


async def wait_for(predicate, timeout_s=10.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def per_queue(broker):
    return {q: [m.body for m in broker.stored(TOPIC) if m.queue_id == q] for q in range(broker.queue_nums)}


def test_copies_every_message_queue_to_queue_with_user_properties_and_origin():
    async def body():
        source, target, src, dst = await two_clusters()
        try:
            await produce(source.namesrv_addr, 40, tags="paid", keys=["k1"], properties={"shop": "7"},
                          delay_level=0)
            async with Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], suspend_timeout_ms=200) as rep:
                # the target stores a copy before the replicator hears its answer and counts it
                await wait_for(lambda: len(dst.stored(TOPIC)) == 40 and rep.stats.copied >= 40)
                assert rep.stats.copied == 40
                assert await rep.lag() == {QueueKey(TOPIC, "broker-a", q): 0 for q in range(4)}
            return per_queue(src), per_queue(dst), dst.stored(TOPIC), src.stored(TOPIC)
        finally:
            await close(source, target)

    src_queues, dst_queues, copies, originals = run(body())
    assert src_queues == dst_queues  # same queue, same order
    original = {m.body: m for m in originals}
    for copy in copies:
        assert copy.properties["TAGS"] == "paid" and copy.properties["KEYS"] == "k1"
        assert copy.properties["shop"] == "7"
        src_msg = original[copy.body]
        assert copy.properties[PROPERTY_MQBENCH_ORIGIN] == f"broker-a:{src_msg.queue_id}:{src_msg.queue_offset}"
        assert copy.properties[PROPERTY_MQBENCH_ORIGIN_MSG_ID] == src_msg.properties["UNIQ_KEY"]
        assert copy.properties["UNIQ_KEY"] != src_msg.properties["UNIQ_KEY"]


def test_consumer_offsets_are_translated_and_never_moved_backwards():
    async def body():
        source, target, src, dst = await two_clusters()
        try:
            dst.append(fixtures.rec.Message(topic=TOPIC, body=b"local", queue_id=0))  # target q0 starts at 1
            await produce(source.namesrv_addr, 16)
            async with Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], ["GID_app"],
                                  suspend_timeout_ms=200, offset_sync_interval_ms=60_000) as rep:
                await wait_for(lambda: rep.stats.copied == 16)
                src.offsets[("GID_app", TOPIC, 0)] = 2  # consumed q0 offsets 0, 1
                src.offsets[("GID_app", TOPIC, 1)] = 4  # consumed all of q1
                assert await rep.sync_offsets() == 2
                first = dict(dst.offsets)
                dst.offsets[("GID_app", TOPIC, 1)] = 99  # the target's consumers went further already
                src.offsets[("GID_app", TOPIC, 0)] = 3
                await rep.sync_offsets()
                return first, dict(dst.offsets)
        finally:
            await close(source, target)

    first, second = run(body())
    assert first == {("GID_app", TOPIC, 0): 3, ("GID_app", TOPIC, 1): 4}  # q0: copy of offset 2 sits at 3
    assert second == {("GID_app", TOPIC, 0): 4, ("GID_app", TOPIC, 1): 99}


def test_refused_copies_are_retried_until_acknowledged_without_gaps_or_duplicates():
    async def body():
        source, target, src, dst = await two_clusters(queue_nums=1)  # one copy loop: failures in sequence
        try:
            await produce(source.namesrv_addr, 12)
            dst.fail_sends = [codes.SYSTEM_BUSY] * 7  # 3 + 3 + 1: the producer gives up twice
            async with Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], suspend_timeout_ms=200,
                                  retry_backoff_ms=10) as rep:
                await wait_for(lambda: len(dst.stored(TOPIC)) == 12)
                await asyncio.sleep(0.2)
                return sorted(m.body for m in dst.stored(TOPIC)), rep.stats.send_failures
        finally:
            await close(source, target)

    bodies, failures = run(body())
    assert bodies == sorted(f"m{i}".encode() for i in range(12))
    assert failures == 2


def test_restart_resumes_from_the_saved_map(tmp_path):
    state = tmp_path / "replicator.json"

    async def body():
        source, target, src, dst = await two_clusters()
        try:
            await produce(source.namesrv_addr, 10)
            async with Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], state_path=state,
                                  suspend_timeout_ms=200) as rep:
                await wait_for(lambda: rep.stats.copied == 10)
            await produce(source.namesrv_addr, 6, start=10)
            async with Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], state_path=state,
                                  suspend_timeout_ms=200) as rep:
                await wait_for(lambda: rep.stats.copied == 6)
                await asyncio.sleep(0.2)
                copied_again = rep.stats.copied
            return sorted(m.body for m in dst.stored(TOPIC)), copied_again
        finally:
            await close(source, target)

    bodies, copied_again = run(body())
    assert bodies == sorted(f"m{i}".encode() for i in range(16))
    assert copied_again == 6


def test_corrupt_state_file_is_reported_as_such(tmp_path):
    state = tmp_path / "replicator.json"
    state.write_text('{"schema": "mqbench.dr-offset-map/1", "pairs": 3}')

    async def body():
        source, target, _src, _dst = await two_clusters()
        try:
            await Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], state_path=state).start()
        finally:
            await close(source, target)

    with pytest.raises(UserError, match="pairs"):
        run(body())


@pytest.mark.parametrize("kwargs, message", [
    ({"topics": []}, "at least one topic"), ({"topics": ["../x"]}, "topic"),
    ({"topics": [TOPIC], "groups": ["bad group"]}, "group"), ({"topics": [TOPIC], "start": "middle"}, "start"),
])
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        Replicator("127.0.0.1:1", "127.0.0.1:2", **kwargs)


def test_room_loss_leaves_a_measured_loss_window_of_acknowledged_messages():
    """Scheme C in miniature: the replicator reads room1 across a 25 ms link; room1 is cut off right
    after a burst. The acknowledged messages the target lacks are exactly the replicator's lag."""

    async def body():
        source, target, src, dst = await two_clusters()
        proxy = DelayProxy(("127.0.0.1", 0), src.store_host, forward=LinkSettings(latency_ms=25), seed=1)
        listen = await proxy.start()
        try:
            rep = Replicator(source.namesrv_addr, target.namesrv_addr, [TOPIC], suspend_timeout_ms=300,
                             source_dial=lambda addr: f"{listen[0]}:{listen[1]}" if addr == src.addr else addr)
            await rep.start()
            acked = await produce(source.namesrv_addr, 10)
            await wait_for(lambda: len(dst.stored(TOPIC)) == 10)
            acked += await produce(source.namesrv_addr, 30, start=10)  # the burst
            proxy.cut()  # room1 is gone for the replicator
            await asyncio.sleep(0.3)
            copied = {m.body for m in dst.stored(TOPIC)}
            lag = sum(src.max_offset(TOPIC, q) - (rep.map.next_source_offset(QueueKey(TOPIC, "broker-a", q)) or 0)
                      for q in range(4))
            await rep.close()
            return acked, copied, lag
        finally:
            await proxy.close()
            await close(source, target)

    acked, copied, lag = run(body())
    lost = [b for _q, _o, b in acked if b not in copied]
    assert 0 < len(lost) <= 30
    assert len(lost) == lag
    assert copied <= {b for _q, _o, b in acked}
