"""The writes a leader replica has proposed and is waiting for: their futures, settled when their
entries are applied (``PutResult``), or failed when they can no longer be acknowledged here.

* ``add(term, indexes, counts) -> future``: the entries ``indexes`` (consecutive, proposed together
  in ``term``) hold one write; ``counts`` are the messages per record (None: a metadata write,
  whose future resolves with None).
* ``add_each(term, indexes) -> future``: the entries ``indexes`` (consecutive, proposed together in
  ``term``) are as many single-message writes (the sends of one read); the future resolves with one
  ``PutResult`` per entry, or fails for all of them: they share their last entry's fate (an entry
  of ``term`` at the last index means every entry before it is the leader's too, Raft's log
  matching), as the records of one batch write do.
* ``settle(entries, errors)``: after ``entries`` were applied: each write whose last entry is among
  them resolves with its ``PutResult``, or fails with ``LeadershipLost`` when the entry applied
  carries another term (a new leader overwrote it), or with the apply error of that entry.
* ``fail(reason, keep_term=None)``: every pending write not of ``keep_term`` fails with
  ``LeadershipLost`` (a write of an earlier term can no longer be acknowledged here, even if this
  replica is leader again: its entry may be overwritten by the new term's entries).

``PutResult`` holds the offsets of the first record, read back from the entry as stored (every
replica stamped the same) with ``stored_body(index)``; ``msg_id`` joins the records' offsetMsgIds
with ",". ``LeadershipLost`` is the Raft core's ``NotLeader`` (the only one): the outcome of the
write is unknown, the client retries.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from mqbench import native
from mqbench.broker.formats.record import message_id
from mqbench.broker.formats.record_peek import peek_fields, physical_offsets
from mqbench.broker.raft.types import Entry, NotLeader
from mqbench.broker.remoting.prompt import PromptFuture, resolve

__all__ = ["LeadershipLost", "NotLeader", "Proposals", "PutResult"]


class LeadershipLost(NotLeader):
    """A pending write whose outcome is unknown: this replica stopped being leader (or closed)
    before it was committed. The entry may still be committed by the new leader."""

_sendpath = native.load("mqbench.broker.formats._sendpath")


@dataclass
class PutResult:
    msg_id: str                 # offsetMsgId; a batch of several records: the ids joined by ","
    queue_id: int
    queue_offset: int           # of the first message
    physical_offset: int        # of the first record
    count: int = 1              # messages stored
    msg_ids: list[str] = field(default_factory=list)
    index: int = 0              # Raft index of the last entry


@dataclass
class _Waiter:
    term: int
    first: int
    counts: list[int] | None     # messages per record for puts; None for metadata
    future: asyncio.Future
    each: bool = False           # one PutResult per entry (``add_each``)


class Proposals:
    """See module doc. ``leader()`` is the current leader's node id (0: unknown), named in the
    ``LeadershipLost`` errors; ``stored_body(index)`` reads an entry as this replica stored it,
    ``stored_bodies(lo, hi)`` (optional) the entries ``lo`` to ``hi - 1`` at once."""

    def __init__(self, node_id: int, store_host: tuple[str, int], leader: Callable[[], int],
                 stored_body: Callable[[int], bytes],
                 stored_bodies: Callable[[int, int], list[bytes]] | None = None):
        self.node_id = node_id
        self.store_host = store_host
        self._id_prefix = message_id(store_host, 0)[:-16]     # offsetMsgId = host hex + offset hex
        self._leader = leader
        self._stored_body = stored_body
        self._stored_bodies = stored_bodies      # entries [lo, hi) at once (``add_each``'s results)
        self._waiters: dict[int, _Waiter] = {}     # by the index of the write's last entry
        self.put_count = 0                         # messages acknowledged

    def __bool__(self) -> bool:
        return bool(self._waiters)

    def lost(self, reason: str) -> LeadershipLost:
        return LeadershipLost(self._leader(), node_id=self.node_id, reason=reason)

    def add(self, term: int, indexes: list[int], counts: list[int] | None) -> asyncio.Future:
        future = PromptFuture(loop=asyncio.get_running_loop())
        self._waiters[indexes[-1]] = _Waiter(term, indexes[0], counts, future)
        return future

    def add_each(self, term: int, indexes: list[int], counts: list[int] | None = None) -> asyncio.Future:
        """A write of several records answered one ``PutResult`` per record; ``counts``: the
        messages each record holds (an inner batch holds several), for ``put_count`` (None: 1 each)."""
        future = PromptFuture(loop=asyncio.get_running_loop())
        self._waiters[indexes[-1]] = _Waiter(term, indexes[0], counts, future, True)
        return future

    def settle(self, entries: list[Entry], errors: dict[int, Exception]) -> None:
        waiters = self._waiters
        if not waiters:
            return
        for entry in entries:
            waiter = waiters.pop(entry.index, None)
            if waiter is None or waiter.future.done():
                continue
            error = errors.get(entry.index)
            # resolve: a send handler waiting on it answers now, not a loop turn later (``prompt``)
            if entry.term != waiter.term:
                resolve(waiter.future, exc=self.lost(f"entry {entry.index} was replaced by a new leader"))
            elif error is not None:
                resolve(waiter.future, exc=error)
            elif waiter.each:
                results = self._results(waiter.first, entry.index)
                if waiter.counts is not None:       # _results counted one message per record
                    self.put_count += sum(waiter.counts) - len(results)
                resolve(waiter.future, results)
            elif waiter.counts is None:
                resolve(waiter.future, None)
            else:
                resolve(waiter.future, self._result(waiter.first, entry.index, waiter.counts))

    def _bodies(self, lo: int, hi: int) -> list[bytes]:
        if self._stored_bodies is not None:
            return self._stored_bodies(lo, hi)
        return [self._stored_body(index) for index in range(lo, hi)]

    def _result(self, first: int, last: int, counts: list[int]) -> PutResult:
        bodies = self._bodies(first, last + 1)      # one read for the write's entries, not one each
        _, queue_id, queue_offset, physical_offset, _ = peek_fields(bodies[0], 0)
        prefix = self._id_prefix
        ids = [f"{prefix}{offset:016X}" for offset in physical_offsets(bodies)]
        count = sum(counts)
        self.put_count += count
        return PutResult(",".join(ids), queue_id, queue_offset, physical_offset, count, ids, last)

    def _results(self, first: int, last: int) -> list[PutResult]:
        results, prefix = [], self._id_prefix
        bodies = self._bodies(first, last + 1)
        if _sendpath is not None and type(bodies) is list:
            built: list[PutResult] | None = _sendpath.put_results(bodies, first, prefix, PutResult)
            if built is not None:            # the loop below in C (_sendpath.c)
                self.put_count += len(built)
                return built
        for index, body in enumerate(bodies, first):
            _, queue_id, queue_offset, physical_offset, _ = peek_fields(body, 0)
            msg_id = f"{prefix}{physical_offset:016X}"
            results.append(PutResult(msg_id, queue_id, queue_offset, physical_offset, 1, [msg_id], index))
        self.put_count += len(results)
        return results

    def fail(self, reason: str, *, keep_term: int | None = None) -> None:
        waiters = self._waiters
        self._waiters = {i: w for i, w in waiters.items() if w.term == keep_term}
        for waiter in waiters.values():
            if waiter.term != keep_term and not waiter.future.done():
                waiter.future.set_exception(self.lost(reason))
