"""The failover soak: messages through a 3-replica group while its leader is SIGKILLed and restarted.

What must hold (``mqbench.bench.kills.soak``): every acknowledged message is consumed (none
lost), every number is consumed at least once, nothing unknown arrives, and the committed consumer
offsets read from the leader between kills never go backwards. The default run is a bounded slice
(10,000 messages, 2 kills); the full soak (100,000 messages, a kill every few seconds) is ``slow``.
"""
from __future__ import annotations

import asyncio

import pytest

from mqbench.bench.kills import _body, _seq_of, soak

OFFSET_SLICE = 4210
OFFSET_FULL = 4220


def test_soak_bodies_round_trip_and_reject_strangers():
    body = _body("ab12cd34", 4321, 100)
    assert len(body) == 100 and _seq_of("ab12cd34", body) == 4321
    assert _seq_of("ab12cd34", _body("ab12cd34", 7, 0)) == 7  # shorter than the header: header only
    assert _seq_of("other", body) is None
    assert _seq_of("ab12cd34", b"soak ab12cd34 12x4 ") is None
    assert _seq_of("ab12cd34", b"") is None


def check(result, messages: int, kills: int) -> None:
    assert len(result.kills) == kills, result.kills
    assert result.acked == messages
    assert result.lost == [], f"{len(result.lost)} acknowledged messages never consumed: {result.lost[:20]}"
    assert result.consumed == messages
    assert result.unexpected == []
    assert result.offset_readings >= 2 * kills
    assert result.offset_rewinds == [], result.offset_rewinds
    assert len({k.instance for k in result.kills}) >= 1
    for event in result.kills:
        assert event.failover_ms is not None, f"no send acknowledged after killing {event.instance}"


@pytest.mark.realproc
def test_soak_slice_raft3_two_leader_kills(cluster_factory):
    state = cluster_factory("raft3", OFFSET_SLICE)
    result = asyncio.run(soak(state, "broker-a", messages=10_000, kills=2, batch=8, senders=8,
                              drain_timeout_s=60, heal_timeout_s=30, produce_timeout_s=50))
    check(result, 10_000, 2)
    print(f"soak slice: {result.duration_s:.1f} s, {result.send_failures} failed sends re-sent, "
          f"{result.duplicates} duplicates, failovers {[round(k.failover_ms) for k in result.kills]} ms")


@pytest.mark.realproc
@pytest.mark.slow
def test_soak_full_raft3_100k_with_a_kill_every_few_seconds(cluster_factory):
    state = cluster_factory("raft3", OFFSET_FULL)
    result = asyncio.run(soak(state, "broker-a", messages=100_000, kills=12, batch=1, senders=32,
                              drain_timeout_s=180, heal_timeout_s=60, produce_timeout_s=1200))
    check(result, 100_000, 12)
    print(f"full soak: {result.duration_s:.1f} s, {result.send_failures} failed sends re-sent, "
          f"{result.duplicates} duplicates, failovers {[round(k.failover_ms) for k in result.kills]} ms")


OFFSET_TRANSFER = 4230


@pytest.mark.realproc
def test_consumer_final_commit_reaches_the_leader_after_a_leadership_move(cluster_factory):
    """Consume everything, move leadership away and back (preferred leader), consume more, close:
    the committed offsets on the leader must then be the queues' ends."""
    from mqbench.client import Consumer, OutgoingMessage, Producer
    from mqbench.cluster import launcher
    from mqbench.cluster.control import committed_offsets, ensure_topic, max_offsets, wait_healthy

    state = cluster_factory("raft3", OFFSET_TRANSFER)
    namesrv = launcher.cluster_layout(state).namesrv_addr

    async def consume(consumer, want: set[bytes]) -> None:
        while want:
            for msg in await consumer.receive(256, timeout_ms=500):
                want.discard(msg.body)

    async def scenario() -> tuple[dict, dict]:
        await ensure_topic(state, "broker-a", "MoveTopic")
        bodies = [f"m{i}".encode() for i in range(300)]
        async with Producer(namesrv, "PID_move") as producer:
            for body in bodies[:200]:
                await producer.send(OutgoingMessage("MoveTopic", body))
            consumer = Consumer(namesrv, "GID_move", consume_from="first", pull_error_backoff_ms=200,
                                rebalance_interval_ms=120_000)
            consumer.subscribe("MoveTopic")
            await consumer.start()
            await asyncio.wait_for(consume(consumer, set(bodies[:200])), 30)
            first = await wait_healthy(state, "broker-a", 30)
            assert first.host == "h1"  # the preferred leader
            launcher.kill(state, first.name)
            moved = await wait_healthy_without(state, first.name)
            # The consumer's pulls to the dead leader fail and refresh its route to the new leader.
            deadline = asyncio.get_running_loop().time() + 30
            while consumer.routes.cached("MoveTopic").brokers["broker-a"].master_addr != moved.addr:
                assert asyncio.get_running_loop().time() < deadline, "consumer never followed the failover"
                await asyncio.sleep(0.1)
            launcher.start(state, first.name)
            deadline = asyncio.get_running_loop().time() + 30
            while (await wait_healthy(state, "broker-a", 30)).name != first.name:  # preferred leader back
                assert asyncio.get_running_loop().time() < deadline, "preferred leader did not take over"
                await asyncio.sleep(0.2)
            for body in bodies[200:]:
                await producer.send(OutgoingMessage("MoveTopic", body))
            await asyncio.wait_for(consume(consumer, set(bodies[200:])), 30)
            await consumer.close()
        leader = await wait_healthy(state, "broker-a", 30)
        return (await committed_offsets(leader.addr, "GID_move", "MoveTopic"),
                await max_offsets(leader.addr, "MoveTopic"))

    async def wait_healthy_without(state, victim: str):
        from mqbench.cluster.control import current_leader

        row = await current_leader(state, "broker-a", 30)
        while row.name == victim:
            await asyncio.sleep(0.1)
            row = await current_leader(state, "broker-a", 30)
        return row

    committed, ends = asyncio.run(scenario())
    assert committed == ends


OFFSET_CRASH = 4240


@pytest.mark.realproc
@pytest.mark.parametrize("durability", ["memory", pytest.param("fsync", marks=pytest.mark.slow)])
def test_whole_group_sigkilled_at_once_loses_no_acknowledged_message(cluster_factory, durability):
    """All three replicas SIGKILLed together while 16 senders run, then restarted: every send that
    was acknowledged is still there (a process crash keeps the page cache, so even ``memory``
    durability must lose nothing)."""
    from mqbench.client import Consumer, OutgoingMessage, Producer
    from mqbench.cluster import launcher
    from mqbench.cluster.control import NETWORK_ERRORS, ensure_topic, wait_healthy

    state = cluster_factory("raft3", OFFSET_CRASH, durability=durability)
    namesrv = launcher.cluster_layout(state).namesrv_addr

    async def scenario() -> tuple[set[int], set[int]]:
        await ensure_topic(state, "broker-a", "CrashTopic")
        acked: set[int] = set()
        killed = asyncio.Event()
        async with Producer(namesrv, "PID_crash", send_timeout_ms=1000, retries=0) as producer:
            async def sender(first: int) -> None:
                i = first
                while True:
                    try:
                        await producer.send(OutgoingMessage("CrashTopic", f"m{i}".encode()))
                    except NETWORK_ERRORS:
                        if killed.is_set():
                            return  # the group is down
                        await asyncio.sleep(0.05)  # e.g. a leadership transfer: send the same number again
                        continue
                    acked.add(i)
                    i += 16

            senders = [asyncio.create_task(sender(k)) for k in range(16)]
            deadline = asyncio.get_running_loop().time() + 30
            while len(acked) < 500:
                assert asyncio.get_running_loop().time() < deadline, f"only {len(acked)} sends acknowledged in 30 s"
                await asyncio.sleep(0.05)
            assert sorted(await asyncio.to_thread(launcher.kill, state, "broker-a")) == \
                ["broker-a/n0", "broker-a/n1", "broker-a/n2"]
            killed.set()
            await asyncio.gather(*senders)
        await asyncio.to_thread(launcher.start, state, "broker-a")
        await wait_healthy(state, "broker-a", 60)
        got: set[int] = set()
        consumer = Consumer(namesrv, "GID_crash", consume_from="first")
        consumer.subscribe("CrashTopic")
        async with consumer:
            deadline = asyncio.get_running_loop().time() + 30
            while not acked <= got and asyncio.get_running_loop().time() < deadline:
                got.update(int(m.body[1:]) for m in await consumer.receive(256, timeout_ms=500))
        return acked, got

    acked, got = asyncio.run(scenario())
    assert len(acked) >= 500
    lost = sorted(acked - got)
    assert not lost, f"{len(lost)} acknowledged messages lost after a whole-group crash: {lost[:20]}"
