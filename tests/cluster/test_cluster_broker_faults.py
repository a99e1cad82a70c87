"""Broker faults seen from the cluster drills, reproduced in-process against the real broker.

A replica whose Raft loop stops (an invariant broke, the disk failed) must take its broker process
down (exit 1, ``broker.server.main``'s contract), or the group silently runs one member short while
the process keeps its ports and answers as if nothing happened. The failure is injected into the
real ``ReplicatedGroup`` (its apply step raises), so the only thing under test is what the broker
process does about a failed replica.
"""
from __future__ import annotations

import asyncio

import pytest

from mqbench.broker.layout import load_layout
from mqbench.broker.server.admin import create_topic
from mqbench.broker.server.main import Broker
from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.errors import InvariantViolation

OFFSET_FAULTS = 4250


def _failing_apply(self, entries):
    raise InvariantViolation("injected: applying committed entries failed")


@pytest.mark.realproc
@pytest.mark.parametrize("when", ["while serving", "while recovering at start-up"])
def test_a_failed_replica_stops_its_broker(tmp_path, monkeypatch, when):
    layout = load_layout("single").with_port_offset(OFFSET_FAULTS)
    store = tmp_path / "store"

    async def scenario() -> tuple[int, str]:
        broker = Broker(layout, "broker-a/n0", store, register_interval_ms=60_000)
        await broker.start()
        if when == "while serving":
            monkeypatch.setattr(ReplicatedGroup, "_apply", _failing_apply)
            await asyncio.sleep(1.5)  # elected by now
            with pytest.raises(Exception):
                await create_topic(broker.instance.addr, "FaultTopic", timeout_s=2)
        else:
            for i in range(3):  # committed entries that a restart applies again
                await create_topic(broker.instance.addr, f"FaultTopic{i}", timeout_s=5)
            await broker.close()
            monkeypatch.setattr(ReplicatedGroup, "_apply", _failing_apply)
            broker = Broker(layout, "broker-a/n0", store, register_interval_ms=60_000)
            await broker.start()
        try:
            return await asyncio.wait_for(broker.serve(asyncio.Event()), 10), str(broker.fatal_reason)
        except asyncio.TimeoutError:
            await broker.close()
            return -1, f"replica failed: {broker.group.failed}"

    code, reason = asyncio.run(scenario())
    assert "injected" in reason  # the fault really hit the replica
    assert code == 1, "the broker kept serving for 10 s with a failed replica" if code == -1 else code
