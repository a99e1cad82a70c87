"""POP state survives a leader's SIGKILL (real processes, raft3): every message popped and not acked
comes back after its invisible time (never before), no acked one does, nothing is lost.

The kill comes after the merge window (``spans.MERGE_WINDOW_MS``) of the last pop: a message
popped less than that before a failover comes back at once instead (``broker/pop/spans.py``; the
engine tests cover that case)."""
from __future__ import annotations

import asyncio
import time

import pytest

from mqbench.broker.pop.spans import MERGE_WINDOW_MS
from mqbench.client import OutgoingMessage, PopConsumer, Producer
from mqbench.cluster import launcher
from mqbench.cluster.drills import _kill, current_leader, ensure_topic, wait_healthy

TOPIC, GROUP = "PopFailover", "GID_pop_failover"
COUNT = 40
INVISIBLE_MS = 8000


async def _receive(consumer: PopConsumer, want: int, timeout_s: float) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += await consumer.receive(64, timeout_ms=300)
    return got


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_unacked_pop_messages_come_back_after_a_leader_sigkill_and_acked_ones_do_not(cluster_factory,
                                                                                     free_port_offset):
    state = cluster_factory("raft3", free_port_offset("raft3"))
    namesrv = launcher.cluster_layout(state).namesrv_addr

    async def main():
        await wait_healthy(state, "broker-a", 60)
        await ensure_topic(state, "broker-a", TOPIC)
        async with Producer(namesrv, "PID_pop_failover") as producer:
            for i in range(COUNT):
                await producer.send(OutgoingMessage(TOPIC, b"body-%d" % i, keys=[f"k{i}"]))
        first = PopConsumer(namesrv, GROUP, invisible_time_ms=INVISIBLE_MS, poll_time_ms=1000)
        first.subscribe(TOPIC)
        async with first:
            held = await _receive(first, COUNT, 30)
            popped_ms = time.time() * 1000
        keys = [m.keys[0] for m in held]
        assert sorted(keys) == sorted(f"k{i}" for i in range(COUNT)), "not every message was popped once"
        acked = held[: COUNT // 2]
        unacked = {m.keys[0] for m in held[COUNT // 2:]}
        ack_consumer = PopConsumer(namesrv, GROUP, invisible_time_ms=INVISIBLE_MS)
        ack_consumer.subscribe(TOPIC)
        await ack_consumer.ack(acked)       # answered: these must never come back
        await ack_consumer.close()
        await asyncio.sleep((MERGE_WINDOW_MS + 500) / 1000)       # every checkpoint written
        victim = (await current_leader(state, "broker-a", 10)).name
        await _kill(state, victim)
        deadline = time.monotonic() + 60
        while (await current_leader(state, "broker-a", 60)).name == victim:
            assert time.monotonic() < deadline, "no new leader"
            await asyncio.sleep(0.2)
        second = PopConsumer(namesrv, GROUP, invisible_time_ms=60_000, poll_time_ms=1000)
        second.subscribe(TOPIC)
        async with second:
            back = await _receive(second, len(unacked), 60)
            back_ms = time.time() * 1000
            extra = await _receive(second, 1, 3 + INVISIBLE_MS / 1000)   # nothing else, not even later
        got = [m.keys[0] for m in back]
        assert sorted(got) == sorted(unacked), (sorted(got), sorted(unacked))
        assert extra == [], [m.keys for m in extra]
        for m in back:
            assert m.reconsume_times == 1 and m.topic == TOPIC
            # redelivered (stored on the retry topic) no earlier than its invisible time allowed
            assert m.store_timestamp_ms >= popped_ms - 2000 + INVISIBLE_MS, (m.keys, m.store_timestamp_ms - popped_ms)
        assert back_ms - popped_ms >= INVISIBLE_MS - 2000
        await second.ack(back)

    asyncio.run(asyncio.wait_for(main(), 240))
