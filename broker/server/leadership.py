"""``Leadership``: a replica following its Raft node's role, term and known leader.

``check()`` (called after every Ready, proposal and retried step) looks at (role, term, leader);
on a change it fails the pending writes that can no longer be acknowledged here (``Proposals.fail``:
every write not of the current term when this replica leads, all of them otherwise; an entry of an
earlier term may be overwritten by the new term's entries even if this replica leads again),
wakes ``wait_leader`` once a leader is known, and calls ``on_change(role name, term, leader id or
None)`` (exceptions logged). ``notify()`` calls it without a change (the replica stopped).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.types import Role

from .proposals import Proposals

log = logging.getLogger("mqbench.broker.replicated")

ROLE_NAMES = {Role.LEADER: "leader", Role.FOLLOWER: "follower", Role.CANDIDATE: "candidate",
              Role.PRE_CANDIDATE: "candidate"}


class Leadership:
    """See module doc."""

    def __init__(self, node: RaftNode, proposals: Proposals):
        self.node = node
        self.proposals = proposals
        self.on_change: Callable[[str, int, int | None], None] | None = None
        self._known = asyncio.Event()
        self._seen = (node.role, node.term, node.lead)

    @property
    def role(self) -> str:
        return ROLE_NAMES[self.node.role]

    def check(self) -> None:
        node = self.node
        now = (node.role, node.term, node.lead)
        if now == self._seen:
            return
        self._seen = now
        if self.proposals:
            self.proposals.fail("leadership lost before the entry was committed",
                                keep_term=node.term if node.role == Role.LEADER else None)
        if node.lead:
            self._known.set()
        self.notify()

    def notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.role, self.node.term, self.node.lead or None)
            except Exception:
                log.exception("on_role_change callback failed")

    async def wait_leader(self, timeout_s: float) -> int:
        """The leader's node id once one is known (asyncio.TimeoutError after ``timeout_s``)."""
        async def known() -> int:
            while not self.node.lead:
                self._known.clear()
                await self._known.wait()
            return self.node.lead
        return await asyncio.wait_for(known(), timeout_s)
