"""End to end over the real replicated group: three replicas on loopback, delayed messages put
through the leader the broker's way (``rewrite_for_delay`` then ``put``), ``LeaderDelay`` wired to
each replica's callbacks, the leader halted mid-burst: the next leader delivers the rest, nothing
twice, nothing early."""
from __future__ import annotations

import asyncio
import random
import time

from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.broker.formats.record import Message
from mqbench.broker.timer import DelayConfig, rewrite_for_delay
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.timer.wiring import LeaderDelay

FAST = dict(tick_ms=10, heartbeat_ms=20, election_ms=200)
CFG = DelayConfig(delay_levels="1s 3s", window_max=8, deliver_concurrency=4, poll_interval_ms=20)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def open_cluster(root, size=3):
    peers = {i: ("127.0.0.1", 0) for i in range(1, size + 1)}
    groups = {}
    for i in peers:
        groups[i] = await ReplicatedGroup.open(root / f"n{i - 1}", self_id=i, peers=dict(peers),
                                               rng=random.Random(i), store_host=("127.0.0.1", 10911 + 10 * i), **FAST)
        peers[i] = groups[i].raft_address
    for i, g in groups.items():
        for j, addr in peers.items():
            if j != i:
                g.set_peer_address(j, addr)
    delays = {}
    for i, g in groups.items():
        d = delays[i] = LeaderDelay(g, config=CFG)
        g.on_role_change = d.on_role_change
        g.on_commit = d.on_commit
    return groups, delays


async def wait_leader(groups, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders = [g for g in groups.values() if g.is_leader and g.leader_ready]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no leader")


def delivered(group, topic, queues):
    out = []
    for q in range(queues):
        res = group.store.read_queue(topic, q, 0, 10_000, 64 << 20)
        out += [m for m in res.messages if PROPERTY_MQBENCH_DELAY_SOURCE in m.properties]
    return out


def test_leader_halted_mid_burst_next_leader_delivers_the_rest_once(tmp_path):
    async def main():
        groups, delays = await open_cluster(tmp_path)
        try:
            leader = await wait_leader(groups)
            due = {}
            rng = random.Random(7)
            for i in range(120):
                body = b"d%d" % i
                if i % 3 == 0:
                    msg = Message("Orders", body, {"DELAY": str(1 + i % 2)}, queue_id=i % 2)
                    stored = rewrite_for_delay(msg, now_ms=wall_ms(), config=CFG)
                    result = await leader.put(stored)
                    stamped = leader.store.read_queue(stored.topic, stored.queue_id, result.queue_offset, 1)
                    due[body] = stamped.messages[0].store_timestamp_ms + CFG.level_delay_ms(1 + i % 2)
                else:
                    at = wall_ms() + 800 + rng.randint(0, 3200)     # in the future however slow the sends are
                    msg = Message("Orders", body, {"TIMER_DELIVER_MS": str(at)}, queue_id=i % 2)
                    await leader.put(rewrite_for_delay(msg, now_ms=wall_ms(), config=CFG))
                    due[body] = at
            # the followers keep their timer index caught up (no long catch-up on becoming leader)
            timers = leader.store.max_offset("rmq_sys_wheel_timer", 0)
            deadline = time.monotonic() + 5
            followers = [d for i, d in delays.items() if i != leader.self_id]
            while not all(d.indexer and d.indexer.index and d.indexer.index.next_queue_offset == timers
                          for d in followers) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert timers == 80 and all(d.indexer.index.next_queue_offset == timers for d in followers)
            assert delays[leader.self_id].indexer is None
            # halt the leader once it has delivered part of the burst
            service = delays[leader.self_id].service
            deadline = time.monotonic() + 10
            while service.stats.delivered < 25 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert 25 <= service.stats.delivered < 120, service.stats
            await leader.halt()
            await delays[leader.self_id].close()
            rest = {i: g for i, g in groups.items() if i != leader.self_id}
            new = await wait_leader(rest)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if len(delivered(new, "Orders", 2)) >= 120:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)               # a duplicate would show up here
            got = delivered(new, "Orders", 2)
            bodies = [m.body for m in got]
            assert len(bodies) == len(set(bodies)), "delivered twice"
            assert set(bodies) == set(due), (service.stats, delays[new.self_id].service.stats)
            assert all(m.store_timestamp_ms >= due[m.body] for m in got), "delivered early"
            stats = delays[new.self_id].service.stats
            assert stats.recoveries >= 1 and stats.delivered + stats.redelivered >= 1
            for g in rest.values():       # the surviving follower holds the same deliveries
                deadline = time.monotonic() + 5
                while len(delivered(g, "Orders", 2)) < 120 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert sorted(m.body for m in delivered(g, "Orders", 2)) == sorted(bodies)
        finally:
            for d in delays.values():
                await d.close()
            for g in groups.values():
                await g.close()
    asyncio.run(asyncio.wait_for(main(), 60))


def test_broker_restart_mid_burst_delivers_the_rest_once(tmp_path):
    """A one-replica group (a broker) stopped cleanly mid-burst and opened again on the same store:
    the reopened leader delivers the rest, nothing twice, nothing early."""
    async def open_one():
        group = await ReplicatedGroup.open(tmp_path / "n0", self_id=1, peers={1: ("127.0.0.1", 0)},
                                           rng=random.Random(1), **FAST)
        delay = LeaderDelay(group, config=CFG)
        group.on_role_change = delay.on_role_change
        group.on_commit = delay.on_commit
        await wait_leader({1: group})
        delay.on_role_change(group.role, group.term, group.leader_id)
        return group, delay

    async def main():
        group, delay = await open_one()
        due = {}
        for i in range(90):
            body = b"r%d" % i
            at = wall_ms() + 500 + (i * 37) % 1500
            await group.put(rewrite_for_delay(Message("Orders", body, {"TIMER_DELIVER_MS": str(at)}, queue_id=i % 2),
                                              now_ms=wall_ms(), config=CFG))
            due[body] = at
        deadline = time.monotonic() + 10
        while (delay.service is None or delay.service.stats.delivered < 20) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        old = delay.service
        await delay.close()
        await group.close()
        first_run = old.stats.delivered
        assert 20 <= first_run < 90
        group, delay = await open_one()
        try:
            deadline = time.monotonic() + 15
            while len(delivered(group, "Orders", 2)) < 90 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            got = delivered(group, "Orders", 2)
            bodies = [m.body for m in got]
            assert len(bodies) == len(set(bodies)) and set(bodies) == set(due)
            assert all(m.store_timestamp_ms >= due[m.body] for m in got), "delivered early"
            # puts cancelled by the stop may still have been committed: found, not delivered again.
            # A recovery's redelivered sources are re-put through the same path, so ``delivered``
            # already counts them (adding ``redelivered`` counted them twice: a flaky off-by-n).
            stats = delay.service.stats
            assert stats.delivered <= 90 - first_run
            assert stats.redelivered <= stats.delivered
        finally:
            await delay.close()
            await group.close()
    asyncio.run(asyncio.wait_for(main(), 60))
