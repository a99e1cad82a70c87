"""A new term or vote is written (``currterm``, replaced and fsynced: tens of ms under load) in a
worker thread, not on the event loop, and still before the Ready's messages go out: a vote is
durable before it is answered (Raft's safety), and the loop keeps serving while it is written.

Three replicas of ``RaftDriver`` in one event loop over loopback TCP and DLedger files, as in
``test_raft_driver``. Each storage's term/vote write waits (up to 2 s) for a loop callback
scheduled just before it: had it run on the loop thread, the callback could not have run and the
write records a stall. The transport records, for every granted vote it sends, whether the voter's
``currterm`` on disk already held that vote."""
from __future__ import annotations

import asyncio
import random
import threading

from mqbench.broker.formats import dledger as fmt
from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.driver import RaftDriver
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import HardState, Message, MsgType, Role
from mqbench.broker.store.dledger_storage import DLedgerStorage

from raft_peers import connect_all

IDS = (1, 2, 3)


class SlowTermStorage(DLedgerStorage):
    """``set_hard_state`` that, when term or vote change, waits for a loop callback first."""

    def __init__(self, *args, loop: asyncio.AbstractEventLoop, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop = loop
        self.writes: list[bool] = []     # per term/vote write: whether the loop ran meanwhile

    def set_hard_state(self, state: HardState) -> None:
        persisted = self.initial_state()
        if (state.term, state.vote) != (persisted.term, persisted.vote):
            ran = threading.Event()
            self.loop.call_soon_threadsafe(ran.set)
            self.writes.append(ran.wait(2.0))
        super().set_hard_state(state)


class RecordingTransport(RaftTransport):
    """The real transport; each granted VOTE_RESP is checked against the voter's file first."""

    def __init__(self, *args, storage_dir, granted: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage_dir = storage_dir
        self.granted = granted

    def send(self, m: Message) -> None:
        if m.type == MsgType.VOTE_RESP and not m.reject:
            term, vote = fmt.dledger_currterm((self.storage_dir / "currterm").read_bytes(), where="test")
            self.granted.append((m.src, m.term, (term, vote) == (m.term, f"n{m.dst}")))
        super().send(m)


def test_a_vote_is_written_off_the_loop_and_durable_before_it_is_answered(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        granted: list = []
        drivers, storages = {}, {}
        for i in IDS:
            config = RaftConfig.from_ms(i, IDS, tick_ms=10, heartbeat_ms=20, election_ms=200,
                                        durability=Durability.QUORUM_MEMORY)
            storages[i] = SlowTermStorage(tmp_path / f"dledger-n{i}", data_segment_bytes=1 << 20, loop=loop)
            transport = RecordingTransport(i, {}, lambda m: None, storage_dir=tmp_path / f"dledger-n{i}",
                                           granted=granted)
            await transport.start()
            drivers[i] = RaftDriver(RaftNode(config, storages[i], random.Random(i)), storages[i], transport)
        connect_all({i: d.transport for i, d in drivers.items()})
        for d in drivers.values():
            d.start()
        try:
            async def elected():
                while not (any(d.node.role == Role.LEADER for d in drivers.values()) and granted):
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(elected(), 10)
        finally:
            for d in drivers.values():
                await d.halt()
            for s in storages.values():
                s.close()
        writes = [w for s in storages.values() for w in s.writes]
        assert writes and all(writes), f"a term/vote write held the event loop: {writes}"
        assert granted and all(durable for _voter, _term, durable in granted), granted
    asyncio.run(main())
