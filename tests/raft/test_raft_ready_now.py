"""``RaftDriver.ready_now``: a Ready handled inside the transport read (or the proposal) that
caused it, not in the Ready loop's next turn, which under load came after every other callback of
that poll (5-25 ms on a leader between a quorum's APP_RESP and the commit of every send)."""
from __future__ import annotations

import asyncio
import errno
import random

from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.driver import RaftDriver
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import Role

from raft_peers import connect_all

IDS = (1, 2, 3)


class FailingOnce(MemoryStorage):
    """A storage whose next append fails with ENOSPC once ``fail`` is set."""

    __slots__ = ("fail",)

    def __init__(self):
        self.fail = False
        super().__init__()

    def append(self, entries):
        if self.fail and entries:
            self.fail = False
            raise OSError(errno.ENOSPC, "no space left on device")
        super().append(entries)


async def _group():
    drivers, applied, in_read = {}, {i: [] for i in IDS}, {i: False for i in IDS}
    for i in IDS:
        config = RaftConfig.from_ms(i, IDS, tick_ms=10, heartbeat_ms=20, election_ms=200,
                                    durability=Durability.QUORUM_MEMORY)
        storage = FailingOnce()
        transport = RaftTransport(i, {}, lambda m: None)
        await transport.start()
        drivers[i] = RaftDriver(RaftNode(config, storage, random.Random(i)), storage, transport,
                                apply=lambda entries, i=i: applied[i].extend((e.index, in_read[i]) for e in entries))
        handle = transport.on_read

        def traced(i=i, handle=handle):
            in_read[i] = True
            try:
                handle()
            finally:
                in_read[i] = False
        transport.on_read = traced
    connect_all({i: d.transport for i, d in drivers.items()})
    for d in drivers.values():
        d.start()
    return drivers, applied


async def _leader(drivers) -> RaftDriver:
    while True:
        leaders = [d for d in drivers.values() if d.node.role == Role.LEADER]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.01)


async def _applied(applied, leader_id, indexes):
    while not set(indexes) <= {i for i, _ in applied[leader_id]}:
        await asyncio.sleep(0.005)
    return {i: inside for i, inside in applied[leader_id] if i in indexes}


def test_a_proposal_goes_out_at_once_and_commits_inside_the_quorum_read():
    async def main():
        drivers, applied = await _group()
        try:
            leader = await asyncio.wait_for(_leader(drivers), 10)
            await asyncio.sleep(0.1)          # the new term's first entry committed everywhere
            sent = leader.bytes_sent
            indexes = leader.propose([b"m-%d" % n for n in range(20)])
            leader.ready_now()
            assert leader.bytes_sent > sent       # the APPs went out inside the call
            inside = await asyncio.wait_for(_applied(applied, leader.node.id, indexes), 10)
            assert all(inside.values())           # applied inside the read of the quorum's APP_RESP
        finally:
            for d in drivers.values():
                await d.halt()
    asyncio.run(main())


def test_a_ready_whose_step_fails_goes_to_the_loop_and_is_applied_there():
    async def main():
        drivers, applied = await _group()
        try:
            leader = await asyncio.wait_for(_leader(drivers), 10)
            await asyncio.sleep(0.1)
            leader.storage.fail = True
            indexes = leader.propose([b"x-%d" % n for n in range(5)])
            leader.ready_now()                    # the append fails here: handed to the loop
            assert not leader.storage.fail and leader.failed is None
            inside = await asyncio.wait_for(_applied(applied, leader.node.id, indexes), 10)
            assert sorted(inside) == indexes and leader.failed is None
            later = leader.propose([b"y"])
            leader.ready_now()
            assert (await asyncio.wait_for(_applied(applied, leader.node.id, later), 10))[later[0]]
        finally:
            for d in drivers.values():
                await d.halt()
    asyncio.run(main())


def test_an_idle_loop_is_not_woken_for_what_a_read_or_a_tick_handles():
    """A follower's APPs and heartbeats are handled at the end of their read and its ticks in the
    tick task (``ready_now``): its Ready loop gets no turn of its own per round or per tick."""
    async def main():
        drivers, applied = await _group()
        try:
            leader = await asyncio.wait_for(_leader(drivers), 10)
            await asyncio.sleep(0.1)
            wakes = {i: 0 for i in IDS}
            for i, d in drivers.items():
                real_set = d._wake.set

                def counted(i=i, real_set=real_set):
                    wakes[i] += 1
                    real_set()
                d._wake.set = counted
            for n in range(10):
                indexes = leader.propose([b"r-%d" % n])
                leader.ready_now()
                await asyncio.wait_for(_applied(applied, leader.node.id, indexes), 10)
            await asyncio.sleep(0.1)              # ten ticks, five heartbeats
            followers = [i for i in IDS if i != leader.node.id]
            assert [wakes[i] for i in followers] == [0, 0]
            assert all(d.node.log.committed >= indexes[0] for d in drivers.values())
        finally:
            for d in drivers.values():
                await d.halt()
    asyncio.run(main())
