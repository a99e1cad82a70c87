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

from mqbench.broker.cluster_secret import SECRET_FILE, read_secret_file
from mqbench.broker.layout import load_layout
from mqbench.admin.calls import create_topic
from mqbench.broker.server.main import Broker
from mqbench.broker.remoting.server import RemotingServer
from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.cluster import launcher
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
            with pytest.raises(Exception):  # noqa: B017 - a timeout or an error answer: either shows the fault
                await create_topic(broker.instance.addr, "FaultTopic", timeout_s=2)
        else:
            for i in range(3):  # committed entries that a restart applies again
                await create_topic(broker.instance.addr, f"FaultTopic{i}", timeout_s=5)
            await broker.close()
            monkeypatch.setattr(ReplicatedGroup, "_apply", _failing_apply)
            broker = Broker(layout, "broker-a/n0", store, register_interval_ms=60_000)
            await broker.start()
        try:
            return await asyncio.wait_for(broker.serve(asyncio.Event()), 5), str(broker.fatal_reason)
        except asyncio.TimeoutError:
            await broker.close()
            return -1, f"replica failed: {broker.group.failed}"

    code, reason = asyncio.run(scenario())
    assert "injected" in reason  # the fault really hit the replica
    assert code == 1, "the broker kept serving for 5 s with a failed replica" if code == -1 else code


async def _serve_with_failing_apply(layout, store) -> tuple[int, str]:
    broker = Broker(layout, "broker-a/n0", store, register_interval_ms=60_000)
    await broker.start()
    try:
        return await asyncio.wait_for(broker.serve(asyncio.Event()), 5), str(broker.fatal_reason)
    except asyncio.TimeoutError:
        await broker.close()
        return -1, f"replica failed: {broker.group.failed}"


@pytest.mark.realproc
def test_a_replica_failing_while_recovering_after_sigkill_stops_its_broker(tmp_path, monkeypatch):
    """A real broker process commits entries and is SIGKILLed, so its applied mark lags its log;
    restarted, the replica re-applies at once - inside ``Broker.start()``, before the broker has
    wired its role-change callback - and that apply fails."""
    state = launcher.up("single", tmp_path / "cluster", port_offset=OFFSET_FAULTS + 1, wait_s=60)
    try:
        addr = state.processes["broker-a/n0"].addr

        async def write() -> None:
            for i in range(20):
                await create_topic(addr, f"FaultTopic{i}", timeout_s=5)

        asyncio.run(write())
        assert launcher.kill(state, "broker-a/n0") == ["broker-a/n0"]
    finally:
        launcher.down(state, timeout_s=5)
    monkeypatch.setattr(ReplicatedGroup, "_apply", _failing_apply)
    layout = load_layout("single").with_port_offset(OFFSET_FAULTS + 1)
    code, reason = asyncio.run(_serve_with_failing_apply(layout, tmp_path / "cluster" / "broker-a" / "n0" / "store"))
    assert "injected" in reason  # the fault really hit the replica
    assert code == 1, "the broker kept serving for 5 s with a failed replica" if code == -1 else code


@pytest.mark.realproc
@pytest.mark.parametrize("bind_delay_s", [0.0, 0.5], ids=["prompt-bind", "slow-bind"])
def test_a_follower_failing_as_it_rejoins_stops_its_broker(tmp_path, monkeypatch, bind_delay_s):
    """raft3 from real processes; one follower is SIGKILLed while the group takes writes, then
    restarted in-process with a failing apply: the leader feeds it committed entries as soon as
    its Raft port listens, which can be before ``Broker.start()`` has wired its role-change
    callback (the failover benchmark once saw such a broker keep serving for 18 minutes on a loaded
    machine). ``slow-bind`` widens that window as load does: the client port's bind (the real
    ``RemotingServer.start``) is entered 0.5 s late."""
    state = launcher.up("raft3", tmp_path / "cluster", port_offset=OFFSET_FAULTS + 2, wait_s=60)
    try:
        leader = launcher.leader(state, "broker-a")
        follower = next(n for n in ("broker-a/n0", "broker-a/n1", "broker-a/n2") if n != leader.name)
        assert launcher.kill(state, follower) == [follower]

        async def write() -> None:
            for i in range(20):
                await create_topic(leader.addr, f"FaultTopic{i}", timeout_s=5)

        asyncio.run(write())
        monkeypatch.setattr(ReplicatedGroup, "_apply", _failing_apply)
        if bind_delay_s:
            real_start = RemotingServer.start

            async def late_start(self, *args, **kwargs):
                await asyncio.sleep(bind_delay_s)
                return await real_start(self, *args, **kwargs)

            monkeypatch.setattr(RemotingServer, "start", late_start)
        layout = load_layout("raft3").with_port_offset(OFFSET_FAULTS + 2)
        store = tmp_path / "cluster" / "broker-a" / follower.split("/")[1] / "store"

        async def rejoin() -> tuple[int, str]:
            # the cluster's Raft peers only talk to a replica that holds the cluster secret
            secret = read_secret_file(tmp_path / "cluster" / SECRET_FILE)
            broker = Broker(layout, follower, store, register_interval_ms=60_000, cluster_secret=secret)
            await broker.start()
            try:
                return await asyncio.wait_for(broker.serve(asyncio.Event()), 5), str(broker.fatal_reason)
            except asyncio.TimeoutError:
                await broker.close()
                return -1, f"replica failed: {broker.group.failed}"

        code, reason = asyncio.run(rejoin())
    finally:
        launcher.down(state, timeout_s=5)
    assert "injected" in reason  # the fault really hit the replica
    assert code == 1, "the broker kept serving for 5 s with a failed replica" if code == -1 else code
