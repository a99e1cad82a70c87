"""The replicator between two real reference clusters (scheme C's dr-c and dr-c-standby): every
message copied queue to queue, and a consumer group's offsets translated onto the standby."""
import asyncio
import os

import pytest

from mqbench.cluster import control
from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.dr import cluster as drcluster
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_ORIGIN
from mqbench.dr.replicator import Replicator

pytestmark = pytest.mark.realproc

TOPIC = "ReplOrders"


def test_messages_and_consumer_offsets_reach_the_standby_cluster(tmp_path):
    offset = 3000 + (os.getpid() % 200) * 100 + 80
    active = drcluster.up("dr-c", tmp_path / "a", port_offset=offset, wait_s=60)
    try:
        standby = drcluster.up("dr-c-standby", tmp_path / "b", port_offset=offset, wait_s=60)
        try:
            asyncio.run(asyncio.wait_for(_body(active, standby), 90))
        finally:
            drcluster.down(standby)
    finally:
        drcluster.down(active)


async def _body(active, standby):
    await control.ensure_topic(active.state, "broker-a", TOPIC)
    await control.ensure_topic(standby.state, "broker-b", TOPIC)
    async with Producer(active.namesrv_addr, "PID_repl") as producer:
        for i in range(40):
            await producer.send(OutgoingMessage(TOPIC, f"m{i}".encode(), keys=[f"k{i}"]))
    consumer = Consumer(active.namesrv_addr, "GID_repl", consume_from="first", commit_interval_ms=100)
    consumer.subscribe(TOPIC)
    consumed = []
    async with consumer:
        while len(consumed) < 15:
            consumed += await consumer.receive(15 - len(consumed), timeout_ms=1000)
    # close() committed the group's offsets on room1: 15 of 40 consumed
    async with Replicator(active.namesrv_addr, standby.namesrv_addr, [TOPIC], ["GID_repl"],
                          suspend_timeout_ms=500, offset_sync_interval_ms=60_000) as replicator:
        for _ in range(200):
            if replicator.stats.copied == 40:
                break
            await asyncio.sleep(0.05)
        assert replicator.stats.copied == 40
        assert await replicator.sync_offsets() > 0
        assert sum((await replicator.lag()).values()) == 0
    # the same group on the standby gets exactly the 25 it had not consumed, copies that name their origin
    rest = Consumer(standby.namesrv_addr, "GID_repl", consume_from="first")
    rest.subscribe(TOPIC)
    got = []
    async with rest:
        for _ in range(30):
            got += await rest.receive(64, timeout_ms=200)
            if len(got) >= 25:
                await asyncio.sleep(0.5)
                got += await rest.receive(64, timeout_ms=200)
                break
    assert sorted(m.body for m in got) == sorted({f"m{i}".encode() for i in range(40)} - {m.body for m in consumed})
    assert all(m.properties[PROPERTY_MQBENCH_ORIGIN].startswith("broker-a:") for m in got)
