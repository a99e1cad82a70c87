"""Consumer-offset commits replicated as snapshots: one log record for many commits.

A commit per record made the broker's own bookkeeping as large as the users' traffic (an orders
run stored 4,314 offset records beside 6,015 messages). RocketMQ persists offsets every few
seconds; DLedger copies them every 10 s and so rewinds them on failover. Here every commit still
goes through the Raft log before it is acknowledged, but commits share records:

==========================  ==================================================================
event                       what happens
==========================  ==================================================================
commit (waited for)         joins the next snapshot; if none is in flight, it is proposed now
commit (``lazy``: from a    joins the next snapshot; if none is in flight and no timer is set,
pull, nobody waits)         a timer proposes it ``interval_ms`` after the previous one went
snapshot committed          its committers return; if commits are waiting, the next snapshot
                            goes now (one waited for is among them) or at its timer
snapshot failed             its committers get the error (``LeadershipLost``, ``NotLeader``)
``stop()``                  the timer is cancelled, waiting committers get ``LeadershipLost``
==========================  ==================================================================

A snapshot (``entries.OffsetsSnapshot``) carries, per (group, topic, queue), the highest offset
committed since the previous one that is above the applied offset; more than
``SNAPSHOT_OFFSETS_MAX`` go as several records of one proposal. So at most one snapshot is in
flight, and records per second are bounded by 1 / round trip for waited-for commits and by
1000 / ``interval_ms`` for lazy ones, whatever the number of groups and queues.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from mqbench.errors import MqbenchError

from .entries import SNAPSHOT_OFFSETS_MAX, OffsetsSnapshot, meta_message

OFFSET_SNAPSHOT_MS = 200

log = logging.getLogger(__name__)

Key = tuple[str, str, int]   # (group, topic, queue id)


class OffsetSnapshots:
    """One replica's offset snapshots. ``propose(records, None)`` is the group's proposal call
    (a future resolved when the records are committed and applied); ``lost(reason)`` builds the
    exception waiting committers get when the replica stops."""

    def __init__(self, store, propose: Callable, lost: Callable[[str], Exception],
                 interval_ms: int = OFFSET_SNAPSHOT_MS):
        self.store = store
        self.propose = propose
        self.lost = lost
        self.interval_ms = interval_ms
        self._wanted: dict[Key, int] = {}
        self._next: asyncio.Future | None = None     # what the next snapshot's committers wait on
        self._flying = False
        self._urgent = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_s = float("-inf")

    async def commit(self, key: Key, offset: int, lazy: bool) -> None:
        """Return once a snapshot holding ``offset`` (or more) for ``key`` is applied."""
        future = self._join(key, offset)
        if future is None:
            return
        if not lazy:
            self._urgent = True
            self._send()
        elif not self._flying:
            self._arm()
        await asyncio.shield(future)

    def note(self, key: Key, offset: int) -> None:
        """A lazy commit nobody waits for (a pull's commit offset): it joins the next snapshot as
        ``commit(key, offset, lazy=True)`` does, with no future, Task or shield of its own (one per
        pull cost the broker more than the pull's read). A snapshot that fails is logged once."""
        if self._join(key, offset) is not None and not self._flying:
            self._arm()

    def _join(self, key: Key, offset: int) -> asyncio.Future | None:
        """Put ``offset`` into the next snapshot; the future its committers wait on (None when the
        applied offset is already there)."""
        if offset <= self.store.query_offset(*key):
            return None
        self._wanted[key] = max(self._wanted.get(key, -1), offset)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_log_failure)
        return self._next

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            delay_s = max(0.0, self._last_s + self.interval_ms / 1000 - loop.time())
            self._timer = loop.call_later(delay_s, self._send)

    def _send(self) -> None:
        """Propose the next snapshot unless one is in flight (its end sends this one)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flying or self._next is None:
            return
        wanted, self._wanted = self._wanted, {}
        future, self._next = self._next, None
        self._urgent = False
        pending = [(k, v) for k, v in wanted.items() if v > self.store.query_offset(*k)]
        if not pending:
            future.set_result(None)
            return
        try:
            prepare = self.store.replicated.prepare_record
            records = [prepare(meta_message(OffsetsSnapshot(dict(pending[i:i + SNAPSHOT_OFFSETS_MAX]))))
                       for i in range(0, len(pending), SNAPSHOT_OFFSETS_MAX)]
            proposal = self.propose(records, None)
        except (MqbenchError, OSError) as exc:
            future.set_exception(exc)
            return
        self._flying = True
        self._last_s = asyncio.get_running_loop().time()
        proposal.add_done_callback(lambda done: self._sent(done, future))

    def _sent(self, proposal: asyncio.Future, future: asyncio.Future) -> None:
        self._flying = False
        if not future.done():
            if proposal.cancelled():
                future.set_exception(self.lost("replica stopped"))
            elif proposal.exception() is not None:
                future.set_exception(proposal.exception())
            else:
                future.set_result(None)
        if self._next is None:
            return
        if self._urgent:
            self._send()
        else:
            self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        future, self._next = self._next, None
        self._wanted.clear()
        if future is not None and not future.done():
            future.set_exception(self.lost("replica stopped"))


def _log_failure(future: asyncio.Future) -> None:
    """A snapshot's failure, retrieved (waiting committers get it too) and logged once."""
    if not future.cancelled() and future.exception() is not None:
        log.info("offset snapshot not committed: %s", future.exception())
