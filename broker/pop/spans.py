"""The leader's view of the queues it hands out: spans, the merge buffer and the consumer offset.

Every pop of a queue reserves a **span** ``[start, end)`` of it with its checkpoint (the offsets
handed out; tag-filtered ones are not in it). A span's checkpoint is first only in the leader's
memory (``buffered``): acks that come within the **merge window** are added to it in memory, so a
message popped and acked quickly costs no ck and no ack record (RocketMQ's
``PopBufferMergeService``). A ``flush`` decides what must be written:

=======================================  ===================================================
span                                     at a flush
=======================================  ===================================================
buffered, every offset acked, every      dropped: the consumer offset passes it (one offset
span below it resolved                   snapshot for all queues), nothing else is written
buffered, every offset acked, an         written as a ``done`` checkpoint (bitmap full,
unresolved span below it (a hole),       straight on the revive log: never revived), so its
acks waiting                             acks are durable without waiting for the hole
buffered, window closed (``window_ms``   written as a checkpoint through the timer, its
after the pop, or its revive time near), bitmap = the acks so far; the rest come back after
or acks waiting on a partial ack         the invisible time unless acked (ack records)
writing (its put is under way)           waits; an ack of it becomes an ack record
written (committed)                      resolved: the consumer offset may pass it
=======================================  ===================================================

The **consumer offset** committed for a queue is the start of its lowest span that is not
resolved (resolved: written, or buffered and acked in full), else the cursor's next offset. So a
failover loses nothing: a buffered span is never passed by the committed offset, and the new
leader hands its messages out again at once (attempt 1, without waiting for the invisible time:
what the merge window costs, and only for pops less than ``window_ms`` old). Offsets above the
committed one that written checkpoints cover are skipped by the new leader (``PopEngine``'s
``covered``): their unacked messages come back through the revive, their acked ones never.

**What an ack's answer promises**: an ack is answered only once it is durable on a quorum: its
ack record is committed, or the checkpoint written with it in its bitmap, or the consumer offset
past its span. An ack merged in memory therefore waits for the next flush (``tickets``), which
runs as soon as acks wait, batched with all the others (one proposal for the records, one offset
snapshot). The flush does no I/O here: ``flush`` returns a ``FlushPlan``; the adapter puts it and
calls ``flush_done`` with what went through.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from .records import CheckPoint, CkKey

BUFFERED, WRITING, WRITTEN = "buffered", "writing", "written"
MERGE_WINDOW_MS = 1000
REVIVE_MARGIN_MS = 500          # a buffered checkpoint is written at the latest this long before its revive time

QueueKey = tuple[str, str, int]     # (group, topic, queue id)


@dataclass
class Span:
    start: int
    end: int
    ck: CheckPoint
    state: str = BUFFERED
    acked: set[int] = field(default_factory=set)
    tickets: list[int] = field(default_factory=list)     # acks waiting for this span to be durable

    def all_acked(self) -> bool:
        return set(self.ck.offsets) <= self.acked

    def resolved(self) -> bool:
        return self.state == WRITTEN or self.state == BUFFERED and self.all_acked()

    def with_bitmap(self) -> CheckPoint:
        return replace(self.ck, bitmap=sum(1 << i for i, o in enumerate(self.ck.offsets) if o in self.acked))


@dataclass
class Cursor:
    next: int
    spans: dict[int, Span] = field(default_factory=dict)       # start -> span, in start order
    redo: list[tuple[int, int]] = field(default_factory=list)  # ranges whose ck put failed
    committed: int = -1                                        # the last consumer offset committed

    def floor(self) -> int:
        """The consumer offset that may be committed (module doc)."""
        unresolved = [s.start for s in self.spans.values() if not s.resolved()]
        return min([self.next, *unresolved, *(s for s, _ in self.redo)])


@dataclass
class FlushPlan:
    timer_cks: list[CheckPoint] = field(default_factory=list)     # through the timer (revive time)
    done_cks: list[CheckPoint] = field(default_factory=list)      # acked in full: straight on the revive log
    offset_commits: list[tuple[str, str, int, int]] = field(default_factory=list)
    writing: list[tuple[QueueKey, int]] = field(default_factory=list)    # spans being written
    tickets: list[int] = field(default_factory=list)              # acks durable once this plan is

    def empty(self) -> bool:
        return not (self.timer_cks or self.done_cks or self.offset_commits or self.tickets)


class Spans:
    """The cursors of every queue this leader hands out (module doc). Leader memory only."""

    def __init__(self, window_ms: int = MERGE_WINDOW_MS):
        self.window_ms = window_ms
        self.cursors: dict[QueueKey, Cursor] = {}
        self._by_ck: dict[CkKey, tuple[QueueKey, int]] = {}     # ck key -> (queue, span start)
        self._ticket = 0

    def clear(self) -> None:
        self.cursors.clear()
        self._by_ck.clear()

    def buffers(self, ck: CheckPoint, now_ms: int) -> bool:
        """Whether a new checkpoint may wait in the buffer (else it is written before the pop's answer)."""
        return self.window_ms > 0 and ck.revive_time_ms - now_ms > self.window_ms + REVIVE_MARGIN_MS

    def add(self, key: QueueKey, start: int, end: int, ck: CheckPoint, state: str) -> Span:
        span = self.cursors[key].spans[start] = Span(start, end, ck, state)
        self._by_ck[ck.key] = (key, start)
        return span

    def find(self, ck_key: CkKey) -> Span | None:
        where = self._by_ck.get(ck_key)
        if where is None:
            return None
        cur = self.cursors.get(where[0])
        return cur.spans.get(where[1]) if cur is not None else None

    def ticket(self, span: Span) -> int:
        self._ticket += 1
        span.tickets.append(self._ticket)
        return self._ticket

    def _drop(self, cur: Cursor, span: Span) -> None:
        del cur.spans[span.start]
        self._by_ck.pop(span.ck.key, None)

    def written(self, key: QueueKey, start: int) -> Span | None:
        """A span's checkpoint is committed."""
        cur = self.cursors.get(key)
        span = cur.spans.get(start) if cur is not None else None
        if span is not None:
            span.state = WRITTEN
        return span

    def failed(self, key: QueueKey, start: int) -> None:
        """A span's checkpoint put failed: its range is handed out again."""
        cur = self.cursors.get(key)
        span = cur.spans.pop(start, None) if cur is not None else None
        if cur is not None and span is not None:
            self._by_ck.pop(span.ck.key, None)
            cur.redo.append((span.start, span.end))
            cur.redo.sort()

    def flush(self, now_ms: int, force: bool = False) -> FlushPlan:
        """What to write now (module doc table); ``force``: every buffered span (leadership handed
        over, closing)."""
        plan = FlushPlan()
        for key, cur in self.cursors.items():
            redo_from = min((s for s, _ in cur.redo), default=cur.next)
            below_resolved = True
            for span in sorted(cur.spans.values(), key=lambda s: s.start):
                below_resolved = below_resolved and span.start <= redo_from
                if not span.ck.offsets:               # nothing handed out (tags, covered): never written
                    if below_resolved:
                        self._drop(cur, span)
                    continue
                if span.state == BUFFERED:
                    if span.all_acked() and below_resolved:
                        plan.tickets += span.tickets          # durable with the offset commit
                        span.tickets = []
                        self._drop(cur, span)
                        continue
                    closing = force or now_ms - span.ck.pop_time_ms >= self.window_ms \
                        or span.ck.revive_time_ms - now_ms <= REVIVE_MARGIN_MS
                    if closing or span.tickets:
                        if span.all_acked():
                            plan.done_cks.append(span.with_bitmap())
                        else:
                            plan.timer_cks.append(span.with_bitmap())
                        span.state = WRITING
                        plan.writing.append((key, span.start))
                elif span.state == WRITTEN and below_resolved and not span.tickets:
                    self._drop(cur, span)
                    continue
                below_resolved = below_resolved and span.resolved()
            floor = cur.floor()
            if floor > cur.committed:
                plan.offset_commits.append((*key, floor))
        return plan

    def flush_done(self, plan: FlushPlan, *, written: bool = True, committed: bool = True,
                   unwritten: Collection[CkKey] = ()) -> tuple[list[int], list[int]]:
        """The plan's records were committed (``written``, except the checkpoints keyed in
        ``unwritten``) and its offset commits (``committed``), or not; returns (tickets now
        durable, tickets that fail). Spans whose records failed go back to the buffer (written
        again later: only those, so a checkpoint committed is never written twice by its leader);
        the tickets of spans dropped for an offset commit that failed fail (the next flush commits
        the offset anyway)."""
        durable: list[int] = []
        failed: list[int] = []
        (durable if committed else failed).extend(plan.tickets)
        for key, start in plan.writing:
            cur = self.cursors.get(key)
            span = cur.spans.get(start) if cur is not None else None
            if span is None or span.state != WRITING:
                continue
            if written and span.ck.key not in unwritten:
                span.state = WRITTEN
                durable += span.tickets
                span.tickets = []
            else:
                span.state = BUFFERED
        if committed:
            for g, t, q, offset in plan.offset_commits:
                cur = self.cursors.get((g, t, q))
                if cur is not None:
                    cur.committed = max(cur.committed, offset)
        return durable, failed

    def buffered_count(self) -> int:
        return sum(s.state == BUFFERED for c in self.cursors.values() for s in c.spans.values())

    def next_close_ms(self) -> int | None:
        """When the earliest buffered span's window closes (None: nothing buffered)."""
        times = [min(s.ck.pop_time_ms + self.window_ms, s.ck.revive_time_ms - REVIVE_MARGIN_MS)
                 for c in self.cursors.values() for s in c.spans.values() if s.state == BUFFERED]
        return min(times) if times else None
