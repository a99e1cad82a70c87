"""Orderly (FIFO) POP: one holder per queue, replicated so that a failover keeps the order.

An orderly pop hands out the next messages of a queue to one consumer and locks the queue until
its invisible time passes (``orderCountInfo``: the same messages are then handed out again, one
attempt more). RocketMQ keeps these locks in broker memory and a JSON file; here each lock is a
record in the log (``records.OrderLock``, put before the pop is answered, and again when a change
of invisible time moves its end), and every replica keeps the newest lock per queue. So a new
leader keeps the queue locked for the holder, accepts the holder's acks (same handles), and only
after the invisible time hands the messages not acked out again, in order.

Acks commit the consumer offset to the first message of the lock not yet acked (a replicated
commit, answered once committed): acked messages never come back, on any leader. An ack out of
order (a later message of the lock before an earlier one: the offset cannot pass it) puts the
lock record again with its bitmap of acked messages (``OrderLock.bitmap``, answered once
committed), so when the earlier one is handed out again, on this leader or a new one, the acked
one is not (RocketMQ's ``ConsumerOrderInfo`` keeps that bitmap in broker memory and its file).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .records import OrderLock

if TYPE_CHECKING:
    from .engine import QueueView

QueueKey = tuple[str, str, int]


@dataclass
class Lock:
    record: OrderLock
    acked: set[int] = field(default_factory=set)

    @property
    def start(self) -> int:
        return self.record.start_offset

    @property
    def until_ms(self) -> int:
        return self.record.until_ms

    def bitmap(self) -> int:
        return sum(1 << i for i, o in enumerate(self.record.offsets) if o in self.acked)

    def skips(self, offset: int) -> bool:
        """Whether a pop again from this lock's start leaves ``offset`` out: acked under it, or
        within its range but not handed out by it (acked under an earlier lock, or filtered)."""
        offsets = self.record.offsets
        return bool(offsets) and offset <= offsets[-1] and (offset in self.acked or offset not in offsets)

    def next_unacked(self, committed: int) -> int:
        """The consumer offset this lock's acks allow: its first message not acked."""
        for offset in self.record.offsets:
            if offset >= committed and offset not in self.acked:
                return offset
        return self.record.offsets[-1] + 1


class OrderLocks:
    """The locks of every orderly queue (module doc); ``floor``: the offset a commit of an ack
    moved to, for pops before it is applied (leader memory)."""

    def __init__(self) -> None:
        self.locks: dict[QueueKey, Lock] = {}
        self.floor: dict[QueueKey, int] = {}

    def observe(self, rec: OrderLock) -> None:
        """A committed lock record (idempotent; an older one than held changes nothing)."""
        key = (rec.group, rec.topic, rec.queue_id)
        held = self.locks.get(key)
        if held is not None and (held.record.pop_time_ms, held.record.start_offset) > (rec.pop_time_ms,
                                                                                        rec.start_offset):
            return
        if held is not None and held.record == rec:
            return
        acked = set(rec.acked_offsets)
        if held is not None and held.start == rec.start_offset:
            acked |= held.acked
            if held.record.offsets == rec.offsets:             # acks are only ever added to a lock
                rec = replace(rec, bitmap=rec.bitmap | held.record.bitmap)
        self.locks[key] = Lock(rec, acked)

    def leader_changed(self) -> None:
        self.floor.clear()
        for lock in self.locks.values():
            # what was acked in order is in the consumer offset, out of order in the record's bitmap
            lock.acked = set(lock.record.acked_offsets)

    def start(self, key: QueueKey, committed: int) -> int:
        floor = self.floor.get(key)
        if floor is None:
            return committed
        if committed >= floor:
            del self.floor[key]          # the commit is applied: the store says it now
            return committed
        return floor

    def holder(self, key: QueueKey, start: int) -> Lock | None:
        """The lock of the queue if it still holds messages from ``start`` on (None: free or
        released: every message of it is committed)."""
        lock = self.locks.get(key)
        if lock is not None and lock.record.offsets and lock.record.offsets[-1] < start:
            del self.locks[key]
            return None
        return lock

    def take(self, rec: OrderLock) -> None:
        self.locks[(rec.group, rec.topic, rec.queue_id)] = Lock(rec)

    def release(self, key: QueueKey) -> None:
        self.locks.pop(key, None)

    def ack(self, key: QueueKey, ck_start: int, offset: int, view: "QueueView | None",
            commits: list[tuple[str, str, int, int]], records: list[OrderLock]) -> str:
        """An ack of ``offset`` under the lock that started at ``ck_start``: "orderly", or "late"
        when that lock is gone; appends the consumer offset to commit, or, for an ack out of order,
        the lock record with its bitmap to put (module doc)."""
        lock = self.locks.get(key)
        if lock is None or lock.start != ck_start:
            return "late"
        lock.acked.add(offset)
        committed = max(view.consumer_offset(*key) if view is not None else -1, self.floor.get(key, -1))
        target = lock.next_unacked(committed)
        if target > lock.record.offsets[-1]:
            del self.locks[key]
        if target > committed:
            self.floor[key] = target
            commits[:] = [c for c in commits if c[:3] != key] + [(*key, target)]
        if target <= offset and offset in lock.record.offsets:
            records[:] = [r for r in records if (r.group, r.topic, r.queue_id) != key] + \
                [replace(lock.record, bitmap=lock.bitmap())]
        return "orderly"

    def commits_failed(self, commits: list[tuple[str, str, int, int]]) -> None:
        for group, topic, queue_id, _ in commits:
            self.floor.pop((group, topic, queue_id), None)
