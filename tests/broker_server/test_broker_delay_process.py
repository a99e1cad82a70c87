"""Delayed messages through the real broker process (``--delay on``, the default): a delay-level
send and a timer send arrive once, never before their time; a batch carrying a delay is refused;
``--delay off`` stores a delayed message as sent (consumable at once)."""
from __future__ import annotations

import asyncio
import time

import pytest

from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.client.connections import ClientError
from mqbench.cluster import launcher
from mqbench.errors import PeerError


async def create_topic(leader_addr: str, topic: str) -> None:
    from mqbench.admin.calls import create_topic as create
    await create(leader_addr, topic, queues=2)


async def send_retrying(producer: Producer, message: OutgoingMessage, deadline: float):
    while True:   # the route appears with the broker's next registration
        try:
            return await producer.send(message)
        except (PeerError, ClientError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def consume(namesrv: str, topic: str, wanted: int, within_s: float) -> list[tuple[float, object]]:
    consumer = Consumer(namesrv, f"GID_{topic}", consume_from="first", suspend_timeout_ms=500)
    consumer.subscribe(topic)
    got = []
    deadline = time.monotonic() + within_s
    async with consumer:
        while len(got) < wanted and time.monotonic() < deadline:
            for m in await consumer.receive(32, 300):
                got.append((time.time() * 1000, m))
        # anything delivered twice would show up in the next moment
        for m in await consumer.receive(32, 700):
            got.append((time.time() * 1000, m))
    return got


@pytest.mark.realproc
def test_delay_level_and_timer_messages_arrive_once_and_never_early(tmp_path, free_port_offset):
    state = launcher.up("single", tmp_path / "cluster", port_offset=free_port_offset("single"), wait_s=30)
    try:
        namesrv = launcher.cluster_layout(state).namesrv_addr
        leader_addr = launcher.leader(state, "broker-a").addr

        async def scenario():
            await create_topic(leader_addr, "Delayed")
            deadline = time.monotonic() + 15
            async with Producer(namesrv, "PID_delay") as producer:
                level_sent_ms = time.time() * 1000
                await send_retrying(producer, OutgoingMessage("Delayed", b"level-1", delay_level=1), deadline)
                timer_sent_ms = time.time() * 1000
                await send_retrying(producer, OutgoingMessage("Delayed", b"timer-700", delay_ms=700), deadline)
                with pytest.raises(ClientError, match="cannot carry delay properties"):
                    await producer.send_batch([OutgoingMessage("Delayed", b"b0", properties={"DELAY": "2"}),
                                               OutgoingMessage("Delayed", b"b1")])
            got = await consume(namesrv, "Delayed", 2, 20)
            return level_sent_ms, timer_sent_ms, got

        level_sent_ms, timer_sent_ms, got = asyncio.run(asyncio.wait_for(scenario(), 60))
        bodies = [m.body for _, m in got]
        assert sorted(bodies) == [b"level-1", b"timer-700"]          # once each; the refused batch is absent
        arrival = {m.body: at for at, m in got}
        assert arrival[b"level-1"] >= level_sent_ms + 1000           # level 1 is 1 s
        assert arrival[b"timer-700"] >= timer_sent_ms + 700
        by_body = {m.body: m for _, m in got}
        assert by_body[b"timer-700"].store_timestamp_ms >= int(timer_sent_ms) + 700 - 5   # re-put at its time
    finally:
        launcher.down(state, timeout_s=10)
    assert "Traceback" not in state.processes["broker-a/n0"].log_path.read_text()


@pytest.mark.realproc
def test_delay_off_stores_delayed_messages_as_sent(tmp_path, free_port_offset):
    state = launcher.up("single", tmp_path / "cluster", port_offset=free_port_offset("single"), wait_s=30,
                        extra_args=["--delay", "off"])
    try:
        namesrv = launcher.cluster_layout(state).namesrv_addr
        leader_addr = launcher.leader(state, "broker-a").addr

        async def scenario():
            await create_topic(leader_addr, "Undelayed")
            async with Producer(namesrv, "PID_nodelay") as producer:
                await send_retrying(producer, OutgoingMessage("Undelayed", b"as-sent", delay_ms=60_000),
                                    time.monotonic() + 15)
            return await consume(namesrv, "Undelayed", 1, 10)

        got = asyncio.run(asyncio.wait_for(scenario(), 40))
        assert [m.body for _, m in got] == [b"as-sent"]    # a minute early: the feature is off
    finally:
        launcher.down(state, timeout_s=10)
