"""``RaftReplica``: one Raft replica in a broker process, on asyncio (the glue of the adapters).

It drives a ``RaftNode`` with the event loop: a tick every ``config.tick_ms``, every message the
``RaftTransport`` receives, and every Ready handled in the documented order: ``storage.persist``
(entries, term/vote, fsync when the durability mode asks), then the messages go to the transport,
then committed entries go to ``apply`` (the broker's state machine: the commitlog dispatch), then
``advance``. Storage calls run on the loop thread (an fsync blocks it; group commit keeps them
few).

``await propose(data)`` resolves with the entry's index once it is committed and applied here,
raises ``NotLeader``/``ProposalDropped`` at once when this replica cannot take it, and
``ProposalDropped`` later if a new leader overwrote the entry.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from .node import RaftNode
from .transport import RaftTransport
from .types import Entry, Message, ProposalDropped, Role


class RaftReplica:
    def __init__(self, node: RaftNode, storage, transport: RaftTransport,
                 apply: Callable[[Entry], None] | None = None):
        self.node = node
        self.storage = storage
        self.transport = transport
        self.apply = apply
        self._pending: dict[int, tuple[int, asyncio.Future]] = {}
        self._ticker: asyncio.Task | None = None
        self.closed = False
        transport.on_message = self.on_message

    @property
    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER

    async def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        period_s = self.node.config.tick_ms / 1000
        while not self.closed:
            await asyncio.sleep(period_s)
            self.node.tick()
            self._process()

    def on_message(self, m: Message) -> None:
        if not self.closed:
            self.node.step(m)
            self._process()

    async def propose(self, data: bytes, timeout_ms: int | None = None) -> int:
        index = self.node.propose(data)
        future = asyncio.get_running_loop().create_future()
        self._pending[index] = (self.node.term, future)
        self._process()
        if timeout_ms is None:
            return await future
        return await asyncio.wait_for(future, timeout_ms / 1000)

    def transfer_leadership(self, target: int) -> None:
        self.node.transfer_leadership(target)
        self._process()

    def _process(self) -> None:
        node = self.node
        while not self.closed and node.has_ready():
            rd = node.ready()
            self.storage.persist(rd)
            for m in rd.messages:
                self.transport.send(m)
            for entry in rd.committed_entries:
                if self.apply is not None:
                    self.apply(entry)
                waiting = self._pending.pop(entry.index, None)
                if waiting is not None and not waiting[1].done():
                    term, future = waiting
                    if entry.term == term:
                        future.set_result(entry.index)
                    else:
                        future.set_exception(ProposalDropped(f"entry {entry.index} was replaced by a new leader"))
            node.advance(rd)

    async def close(self) -> None:
        """Stop ticking and serving; close the transport and the storage."""
        self.closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(ProposalDropped("replica closed"))
        await self.transport.close()
        self.storage.close()
