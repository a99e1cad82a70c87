"""``RaftDriver`` (the one driver of the Raft core) without the broker: three replicas in one
event loop over loopback TCP and DLedger files: election, concurrent proposals awaited to commit,
identical files, a leader stopped and another taking over."""
from __future__ import annotations

import asyncio
import random

from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.store.dledger_storage import DLedgerStorage
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.progress import ProgressState
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.driver import RaftDriver
from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import ProposalDropped, Role

from raft_peers import connect_all

IDS = (1, 2, 3)


class Replica:
    """A driver, its storage, and futures for proposals awaited to commit (what a user of the
    driver adds: the broker's ``Proposals`` does the same with more detail)."""

    def __init__(self, config: RaftConfig, storage: DLedgerStorage, transport: RaftTransport, applied: list):
        self.storage = storage
        self.applied = applied
        self.waiting: dict[int, tuple[int, asyncio.Future]] = {}
        self.driver = RaftDriver(RaftNode(config, storage, random.Random(config.node_id)), storage, transport,
                                 apply=self._apply)
        self.node = self.driver.node
        self.transport = transport
        self.closed = False

    @property
    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER

    def _apply(self, entries) -> None:
        for entry in entries:
            self.applied.append(entry)
            term, future = self.waiting.pop(entry.index, (None, None))
            if future is not None and not future.done():
                if entry.term == term:
                    future.set_result(entry.index)
                else:
                    future.set_exception(ProposalDropped(f"entry {entry.index} was replaced"))

    async def propose(self, data: bytes) -> int:
        [index] = self.driver.propose([data])
        future = asyncio.get_running_loop().create_future()
        self.waiting[index] = (self.node.term, future)
        return await future

    async def close(self) -> None:
        self.closed = True
        await self.driver.halt()
        self.storage.close()


async def _group(tmp_path, durability: Durability):
    applied = {i: [] for i in IDS}
    replicas = {}
    for i in IDS:
        config = RaftConfig.from_ms(i, IDS, tick_ms=10, heartbeat_ms=20, election_ms=200, durability=durability)
        storage = DLedgerStorage(tmp_path / f"dledger-n{i}", data_segment_bytes=1 << 20)
        transport = RaftTransport(i, {}, lambda m: None)
        await transport.start()
        replicas[i] = Replica(config, storage, transport, applied[i])
    connect_all({i: r.transport for i, r in replicas.items()})
    for r in replicas.values():
        r.driver.start()
    return replicas, applied


async def _leader(replicas, timeout_s: float = 10.0) -> Replica:
    async def wait():
        while True:
            leaders = [r for r in replicas.values() if not r.closed and r.is_leader]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.01)
    return await asyncio.wait_for(wait(), timeout_s)


def test_replicas_elect_commit_and_fail_over(tmp_path):
    async def main():
        replicas, applied = await _group(tmp_path, Durability.QUORUM_FSYNCED)
        try:
            leader = await _leader(replicas)
            indices = await asyncio.wait_for(
                asyncio.gather(*(leader.propose(b"rec-%d" % n) for n in range(50))), 10)
            assert indices == sorted(indices) and len(set(indices)) == 50

            async def all_applied(count):
                while not all(len([e for e in applied[i] if e.data]) >= count
                              for i in IDS if not replicas[i].closed):
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(all_applied(50), 10)
            first = leader.node.id
            await leader.close()
            new = await _leader(replicas)
            assert new.node.id != first
            await asyncio.wait_for(new.propose(b"after-failover"), 10)
            survivors = [i for i in IDS if i != first]
            await asyncio.wait_for(all_applied(51), 10)
            logs = [[(e.index, e.term, e.data) for e in applied[i]] for i in survivors]
            assert logs[0] == logs[1]
            assert [e.data for e in applied[survivors[0]] if e.data][:50] == [b"rec-%d" % n for n in range(50)]
        finally:
            for r in replicas.values():
                if not r.closed:
                    await r.close()
        reopened = DLedgerStorage(tmp_path / f"dledger-n{survivors[0]}", data_segment_bytes=1 << 20)
        assert b"after-failover" in [e.data for e in reopened.entries(1, reopened.last_index() + 1)]
    asyncio.run(main())


def test_a_follower_refuses_proposals(tmp_path):
    async def main():
        replicas, _ = await _group(tmp_path, Durability.QUORUM_MEMORY)
        try:
            leader = await _leader(replicas)
            follower = next(r for r in replicas.values() if r is not leader)
            from mqbench.broker.raft.types import NotLeader
            try:
                await follower.propose(b"x")
            except NotLeader as exc:
                assert exc.leader in (0, leader.node.id)
            else:
                raise AssertionError("a follower accepted a proposal")
        finally:
            for r in replicas.values():
                if not r.closed:
                    await r.close()
    asyncio.run(main())


class StampingStorage(MemoryStorage):
    """A storage that stamps what it stores (as the broker's commitlog fills in offsets), idempotent
    like restamping, and keeps what it was given to append."""

    def __init__(self):
        self.given: list[bytes] = []
        super().__init__()

    def append(self, entries):
        self.given.extend(e.data for e in entries if e.data)
        super().append([e if not e.data or e.data.endswith(b"@%d" % e.index)
                        else e._replace(data=e.data + b"@%d" % e.index) for e in entries])

    def sync(self) -> None:
        pass


def test_appends_carry_the_entries_as_the_leader_stored_them():
    """The leader sends what its storage wrote (stamped), not what was proposed, so a follower is
    given the leader's bytes and stores them unchanged."""
    async def main():
        ids = (1, 2)
        storages = {i: StampingStorage() for i in ids}
        drivers = {}
        for i in ids:
            config = RaftConfig.from_ms(i, ids, tick_ms=10, heartbeat_ms=20, election_ms=200)
            transport = RaftTransport(i, {}, lambda m: None)
            await transport.start()
            drivers[i] = RaftDriver(RaftNode(config, storages[i], random.Random(i)), storages[i], transport)
        connect_all({i: d.transport for i, d in drivers.items()})
        try:
            for d in drivers.values():
                d.start()
            drivers[1].campaign()
            # until the follower takes appends as they are proposed (not probed, nothing in flight)
            while not (drivers[1].node.role == Role.LEADER and drivers[1].node.prs[2].state == ProgressState.REPLICATE
                       and drivers[1].node.prs[2].match == drivers[1].node.log.last_index()):
                await asyncio.sleep(0.01)
            indexes = drivers[1].propose([b"a", b"b"])
            while storages[2].last_index() < indexes[-1]:
                await asyncio.sleep(0.01)
            assert storages[2].given == [b"a@%d" % indexes[0], b"b@%d" % indexes[1]]
            assert [e.data for e in storages[2].entries(indexes[0], indexes[-1] + 1)] == \
                [e.data for e in storages[1].entries(indexes[0], indexes[-1] + 1)]
        finally:
            for d in drivers.values():
                await d.halt()
    asyncio.run(asyncio.wait_for(main(), 20))
