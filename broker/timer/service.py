"""The leader-side delivery service: re-puts due delayed messages through the replicated put.

    service = DelayService(group.store, group.put, clock_ms=..., config=DelayConfig())
    await service.start()     # on becoming leader
    service.notify()          # optional: after entries were committed (wakes it at once)
    await service.stop()      # on losing leadership / shutdown

``store`` is read through ``read_queue``, ``min_offset``/``max_offset``, ``delay_offset``/
``set_delay_offset`` and ``root`` (the timer index lives in ``{root}/timerlog``, ``timerwheel``,
``config/timercheck`` unless ``index_root`` says otherwise). ``put`` is the replicated put: an
``async`` callable taking a ``Message`` and returning when it is committed, with the message's
queue offset in ``.queue_offset``; it raises (e.g. NotLeader) when it cannot.

What it does (states as a table, ``TRANSITIONS``): on ``start`` it recovers (``plan`` explains the
barrier, the last progress marker and the target scan), then loops: ``step`` plans one window of due
messages (delay levels: each schedule queue in order while due, deliver time = store time + level
delay; timers: the index's slots plus newly indexed entries, by fire time), puts the window's marker,
re-puts every message (``deliver_concurrency`` at once) and sleeps until the next due time, the
poll interval, or ``notify``. A message is never put before its due time by ``clock_ms``. Any
failure (a put refused for a passing reason, a read error) sends it back to recovery after
``retry_ms``: progress is always re-derived from the log, never trusted from memory after an error.
A message that can never be re-put (``rewrite.fits``; or whose put raises UserError) goes to the
dead-letter topic instead (``rewrite.dead_letter_message``, counted in ``stats.dead_lettered``),
and delivery goes on with the others. A progress marker that is garbage or implausible is skipped
with an error (``plan.choose_last_window``, counted in ``stats.bad_markers``).

``ensure_topic(name)`` (optional, async) creates a topic's config: called before the first put to the
dead-letter topic, so that topic can be pulled. ``on_delivered(source, due_ms, acked_ms)`` (optional) is called after each acknowledged re-put; the
timer benchmark measures the signed delivery error with it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from mqbench.broker.formats.record import SCHEDULE_TOPIC, Message, java_hash, record_size
from mqbench.broker.formats.timer_formats import TIMER_LOG_FILE_BYTES, TIMER_TOPIC
from mqbench.errors import CorruptDataError, UserError

from .config import DelayConfig
from .index import TimerEntry, TimerIndex, timer_fire
from .plan import Progress, Window, marker_message
from .recovery import READ_CHUNK, Recovery
from mqbench.broker.formats.properties import PROPERTY_REAL_TOPIC

from .rewrite import (DEAD_LETTER_TOPIC, dead_letter_message, delivered_message, fits, level_due_ms,
                      rolled_message, source_id, timer_due_ms)

log = logging.getLogger("mqbench.broker.timer")

STOPPED, FOLLOWING, RECOVERING, RUNNING = "stopped", "following", "recovering", "running"
TRANSITIONS = {
    # (state, event): next state
    (STOPPED, "follow"): FOLLOWING,      # a follower only keeps its timer index caught up
    (FOLLOWING, "stop"): STOPPED,
    (STOPPED, "start"): RECOVERING,
    (RECOVERING, "recovered"): RUNNING,
    (RECOVERING, "failed"): RECOVERING,
    (RUNNING, "failed"): RECOVERING,
    (RECOVERING, "stop"): STOPPED,
    (RUNNING, "stop"): STOPPED,
    (STOPPED, "stop"): STOPPED,
}
INDEX_CHECKPOINT_MS = 1000


@dataclass
class DelayStats:
    delivered: int = 0          # real messages re-put
    rolled: int = 0             # timers written to the timer topic again (beyond the roll window)
    malformed: int = 0          # delayed records damaged or naming no valid target: skipped, logged
    markers: int = 0            # progress markers put
    recoveries: int = 0
    found_delivered: int = 0    # window sources a recovery found already delivered by the old leader
    redelivered: int = 0        # window sources a recovery delivered (the old leader had not)
    dead_lettered: int = 0      # due messages that could not be re-put, moved to the dead-letter topic
    bad_markers: int = 0        # progress records a recovery refused (garbage or implausible)
    failures: int = 0
    last_error: str = ""


@dataclass
class _Plan:
    """One step's window in the making."""
    wait_ms: int
    timer_from: tuple[int, int] | None
    timer_offset: int
    more: bool = False
    deliveries: list = field(default_factory=list)
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    timer: tuple[int, int, int, int, int, int] | None = None


@dataclass
class _Delivery:
    due_ms: int
    source: str
    message: Message
    rolled: bool = False
    dead: bool = False
    record: Message | None = None


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DelayService(Recovery):
    """Delivers due delay-level and timer messages on the leader (see module doc)."""

    def __init__(self, store, put: Callable[[Message], Awaitable], *, clock_ms: Callable[[], int] | None = None,
                 config: DelayConfig = DelayConfig(), index_root=None,
                 timer_log_segment_bytes: int = TIMER_LOG_FILE_BYTES,
                 on_delivered: Callable[[str, int, int], None] | None = None, name: str = "delay-service",
                 barrier_timeout_ms: int = 30_000, retry_ms: int = 1000,
                 ensure_topic: Callable[[str], Awaitable] | None = None):
        self.store = store
        self.put = put
        self.clock_ms = clock_ms or _wall_ms
        self.config = config
        self.index_root = Path(index_root if index_root is not None else store.root)
        self.timer_log_segment_bytes = timer_log_segment_bytes
        self.on_delivered = on_delivered
        self.name = name
        self.barrier_timeout_ms = barrier_timeout_ms
        self.retry_ms = retry_ms
        self.ensure_topic = ensure_topic      # creates the dead-letter topic's config (so it can be pulled)
        self.state = STOPPED
        self.stats = DelayStats()
        self.progress = Progress()
        self.index: TimerIndex | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._checkpointing: asyncio.Future | None = None
        self._wake: asyncio.Event | None = None
        self._checkpoint_at_ms = 0
        self._topic_hashes: dict[str, int] = {}
        self._damaged: set[tuple[str, int, int]] = set()
        self._level_waiting: dict[int, tuple[int, int]] = {}   # level -> (offset, due) of its first not-due record

    # -- lifecycle ---------------------------------------------------------------------------

    def _event(self, event: str) -> None:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise UserError(f"delay service: {event!r} is not allowed while {self.state}")
        self.state = nxt

    async def start(self) -> None:
        """Begin delivering (call on becoming leader). Returns at once; recovery runs in the task."""
        if self._task is not None:
            return
        self._event("start")
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def follow(self) -> None:
        """On a follower: keep the timer index caught up with the committed timer queue (woken by
        ``notify``), so that becoming leader needs no long catch-up. Delivers nothing. ``stop`` ends it."""
        if self._task is not None or self.index_disabled:
            return
        self._event("follow")
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._follow_loop(), name=f"{self.name}-index")

    @property
    def index_disabled(self) -> bool:
        return not self.config.timer_enabled

    async def _follow_loop(self) -> None:
        self._open_index()
        while not self._stopping:
            self._wake.clear()
            try:
                await self._catch_up(keep=False)
                if self.index.needs_checkpoint or self.clock_ms() - self._checkpoint_at_ms >= INDEX_CHECKPOINT_MS:
                    await self._checkpoint()
                    self._checkpoint_at_ms = self.clock_ms()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: indexing as a follower failed: %s", self.name, self.stats.last_error)
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([waiter], timeout=self.retry_ms / 1000)
            finally:
                waiter.cancel()

    def _open_index(self) -> None:
        if self.config.timer_enabled and self.index is None:
            self.index = TimerIndex(self.index_root, self.config, segment_bytes=self.timer_log_segment_bytes,
                                    clock_ms=self.clock_ms, auto_checkpoint=False)

    async def stop(self) -> None:
        """Stop delivering (on losing leadership or shutdown); the index is checkpointed and closed."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            task.cancel()
            await asyncio.wait([task])      # never swallows our caller's own cancellation
            self._stopping = False
        if self._checkpointing is not None:   # a checkpoint thread may still be running
            await asyncio.wait([self._checkpointing])
            self._checkpointing = None
        self._event("stop")
        if self.index is not None:
            self.index.close()
            self.index = None

    def _recovered(self) -> None:
        if self.state == RECOVERING:
            self._event("recovered")

    def notify(self) -> None:
        """New entries were committed: look for delayed messages now rather than at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                if self.state == RECOVERING:
                    await self.recover()
                wait_ms = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # a refused put, a read error: re-derive progress from the log
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s; recovering in %d ms", self.name, self.stats.last_error, self.retry_ms)
                self._event("failed")
                wait_ms = self.retry_ms
            if wait_ms > 0:
                # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait([waiter], timeout=wait_ms / 1000)
                finally:
                    waiter.cancel()
            else:
                await asyncio.sleep(0)

    # -- reading helpers ---------------------------------------------------------------------

    def _read(self, topic: str, queue_id: int, offset: int, count: int) -> tuple[list[Message], int]:
        """Messages from ``offset``; a record that fails its checks is skipped (logged, counted)."""
        try:
            res = self.store.read_queue(topic, queue_id, offset, count)
            return res.messages, res.next_offset
        except CorruptDataError as exc:
            if count > 1:
                return self._read(topic, queue_id, offset, 1)
            where = (topic, queue_id, offset)
            if where not in self._damaged:        # each damaged record is counted and logged once
                if len(self._damaged) > 100_000:
                    self._damaged.clear()
                self._damaged.add(where)
                self.stats.malformed += 1
                log.error("%s: skipping %s/%d@%d: %s", self.name, topic, queue_id, offset, exc)
            return [], offset + 1

    def _read_one(self, topic: str, queue_id: int, offset: int) -> Message | None:
        msgs, _ = self._read(topic, queue_id, offset, 1)
        return msgs[0] if msgs and msgs[0].queue_offset == offset else None

    async def _applied(self, topic: str, queue_id: int, offset: int) -> None:
        """Wait until ``offset`` of a queue is readable (the entry was applied on this replica)."""
        deadline = time.monotonic() + self.barrier_timeout_ms / 1000
        while self.store.max_offset(topic, queue_id) <= offset:
            if time.monotonic() > deadline:
                raise UserError(f"{topic}/{queue_id}@{offset} was acknowledged but is not readable after "
                                f"{self.barrier_timeout_ms} ms")
            await asyncio.sleep(0.001)

    # -- the timer index ---------------------------------------------------------------------

    def _topic_hash(self, topic: str | None) -> int:
        if not topic:
            return 0
        h = self._topic_hashes.get(topic)
        if h is None:
            if len(self._topic_hashes) > 4096:
                self._topic_hashes.clear()
            h = self._topic_hashes[topic] = java_hash(topic)
        return h

    def _entry_of(self, record: Message) -> tuple[int, int]:
        try:
            due = timer_due_ms(record)
        except CorruptDataError:
            due = record.store_timestamp_ms   # fires at once; delivery then finds it malformed and skips it
        return due, record.store_timestamp_ms

    async def _catch_up(self, limit: int | None = None, *, keep: bool = True) -> tuple[int, list[TimerEntry]]:
        """Index the committed timer records not indexed yet (at most about ``limit``); returns
        (first offset indexed, their entries; none unless ``keep``: a full catch-up keeps nothing
        in memory)."""
        ix = self.index
        hi = self.store.max_offset(TIMER_TOPIC, 0)
        if ix.next_queue_offset > hi:
            log.warning("%s: timer index is ahead of the store (%d > %d); rebuilding it",
                        self.name, ix.next_queue_offset, hi)
            ix.reset()
        offset = max(ix.next_queue_offset, self.store.min_offset(TIMER_TOPIC, 0))
        start = offset
        fresh: list[TimerEntry] = []
        added = 0
        while offset < hi and (limit is None or added < limit):
            msgs, nxt = self._read(TIMER_TOPIC, 0, offset, READ_CHUNK)
            for m in msgs:
                due, stored = self._entry_of(m)
                entry = ix.add(m.queue_offset, due, stored, offset_py=m.physical_offset, size_py=record_size(m),
                               real_topic_hash=self._topic_hash(m.properties.get(PROPERTY_REAL_TOPIC)))
                if keep:
                    fresh.append(entry)
                added += 1
            if nxt <= offset:
                break
            offset = nxt
            if ix.needs_checkpoint:
                await self._checkpoint()
            await asyncio.sleep(0)
        ix.next_queue_offset = max(ix.next_queue_offset, min(offset, hi))   # past records skipped as damaged
        return start, fresh

    async def _entries_from_queue(self, start: int, end: int, before: tuple[int, int]) -> list[TimerEntry]:
        """Entries of timer-queue offsets ``[start, end)`` whose key (fire ms, offset) is below
        ``before``, computed from the records (the same placement as the index)."""
        out = []
        offset = start
        while offset < end:
            msgs, nxt = self._read(TIMER_TOPIC, 0, offset, min(READ_CHUNK, end - offset))
            for m in msgs:
                if m.queue_offset >= end:
                    break
                fire, rolled = timer_fire(*self._entry_of(m), self.config)
                if (fire, m.queue_offset) < before:
                    out.append(TimerEntry(fire, m.queue_offset, rolled))
            if nxt <= offset:
                break
            offset = nxt
            await asyncio.sleep(0)
        return out

    # -- planning ----------------------------------------------------------------------------

    def _delivery(self, record: Message, due_ms: int, source: str, rolled: bool = False) -> _Delivery | None:
        try:
            msg = rolled_message(record, source=source) if rolled else \
                delivered_message(record, source=source, now_ms=self.clock_ms())
        except CorruptDataError as exc:
            self.stats.malformed += 1
            log.error("%s: skipping delayed record %s: %s", self.name, source, exc)
            return None
        problem = fits(msg)
        if problem is None:
            return _Delivery(due_ms, source, msg, rolled, record=record)
        return self._dead_letter(record, due_ms, source, f"cannot be re-put: {problem}")

    def _dead_letter(self, record: Message, due_ms: int, source: str, reason: str) -> _Delivery | None:
        dead = dead_letter_message(record, source=source, reason=reason)
        log.error("%s: delayed record %s for %s %s; %s", self.name, source, record.properties.get(PROPERTY_REAL_TOPIC),
                  reason, "moving it to the dead-letter topic" if dead else "it cannot be moved either: skipped")
        if dead is None:
            self.stats.malformed += 1
            return None
        return _Delivery(due_ms, source, dead, dead=True, record=record)

    def _timer_records(self, offsets: list[int]) -> dict[int, Message]:
        """The timer-queue records at ``offsets``, read in runs of consecutive offsets (a burst put
        together sits together in the queue)."""
        found: dict[int, Message] = {}
        ordered = sorted(set(offsets))
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1 and j + 1 - i < READ_CHUNK:
                j += 1
            offset, end = ordered[i], ordered[j] + 1
            while offset < end:
                msgs, nxt = self._read(TIMER_TOPIC, 0, offset, end - offset)
                for m in msgs:
                    if m.queue_offset < end:
                        found[m.queue_offset] = m
                if nxt <= offset:
                    break
                offset = nxt
            i = j + 1
        return found

    def _timer_deliveries(self, entries: list[TimerEntry]) -> list[_Delivery]:
        out = []
        records = self._timer_records([e.queue_offset for e in entries])
        for e in entries:
            record = records.get(e.queue_offset)
            if record is None:
                continue
            if timer_fire(*self._entry_of(record), self.config) != (e.fire_ms, e.rolled):
                # an index unit that does not describe its record (damaged index): never act on it
                self.stats.malformed += 1
                log.error("%s: timer index entry %s does not match its record; skipped", self.name, e)
                continue
            d = self._delivery(record, e.fire_ms, source_id("timer", e.queue_offset), e.rolled)
            if d is not None:
                out.append(d)
        return out

    def _level_deliveries(self, level: int, start: int, end: int, now_ms: int | None) -> tuple[list[_Delivery], int, int | None]:
        """Due records of one level from ``start`` (at most up to ``end``); with ``now_ms`` None every
        record in range is taken. Returns (deliveries, next offset, due time of the first not due)."""
        out: list[_Delivery] = []
        offset = start
        while offset < end:
            msgs, nxt = self._read(SCHEDULE_TOPIC, level - 1, offset, min(READ_CHUNK, end - offset))
            for m in msgs:
                if m.queue_offset >= end:
                    return out, offset, None
                due = level_due_ms(m, self.config)
                if now_ms is not None and due > now_ms:
                    return out, m.queue_offset, due
                d = self._delivery(m, due, source_id("level", m.queue_offset, level))
                if d is not None:
                    out.append(d)
                offset = m.queue_offset + 1
            if nxt <= offset and not msgs:
                break
            offset = max(offset, nxt)
        return out, offset, None

    def _plan_levels(self, plan: "_Plan", prog: Progress, now: int) -> None:
        """Each level's due head records, in queue order, within the window's budget."""
        cfg = self.config
        for level in range(1, cfg.max_level + 1):
            a = prog.levels.get(level, 0)
            waiting = self._level_waiting.get(level)
            if waiting is not None and waiting[0] == a and waiting[1] > now:
                plan.ranges[level] = (a, a)                # its head is still not due: no read
                plan.wait_ms = min(plan.wait_ms, waiting[1] - now)
                continue
            budget = cfg.window_max - len(plan.deliveries)   # one window holds at most window_max records
            top = self.store.max_offset(SCHEDULE_TOPIC, level - 1)
            if budget <= 0:
                plan.ranges[level] = (a, a)
                plan.more = plan.more or top > a
                continue
            found, b, next_due = self._level_deliveries(level, a, min(top, a + budget), now)
            plan.deliveries += found
            plan.ranges[level] = (a, b)
            if next_due is not None:
                self._level_waiting[level] = (b, next_due)
                plan.wait_ms = min(plan.wait_ms, next_due - now)
            elif b < top:
                plan.more = True

    async def _plan_timer(self, plan: "_Plan", prog: Progress, now: int) -> None:
        """The timer entries of the window (``plan`` module doc): index the new records, then take
        the index's entries from the cursor key up to now and the new ones already due."""
        ix = self.index
        end = (now + 1, 0)                               # every key with fire time <= now
        start = end if prog.timer_from is None else prog.timer_from
        if start > end:              # this clock is behind the last window's end: wait for it
            plan.wait_ms = min(plan.wait_ms, max(1, start[0] - end[0]))
            return
        first_new, fresh = await self._catch_up(self.config.window_max)
        e_from, e_to = prog.timer_offset, ix.next_queue_offset
        if e_to < self.store.max_offset(TIMER_TOPIC, 0):
            plan.more = True                             # more to index: step again at once
        first, cut = ix.collect(start, end, e_from, max(1, self.config.window_max - len(plan.deliveries)))
        extra = await self._entries_from_queue(e_from, first_new, cut) if e_from < first_new else []
        late = [e for e in extra + fresh if (e.fire_ms, e.queue_offset) < cut and e.queue_offset >= e_from]
        plan.deliveries += self._timer_deliveries(sorted(first + late))
        plan.timer = (*start, *cut, e_from, e_to)
        plan.timer_from, plan.timer_offset = cut, e_to
        if cut < end:
            plan.more = True
        else:
            nf = ix.next_fire_ms(cut, now + plan.wait_ms + 1, e_to)
            if nf is not None:
                plan.wait_ms = min(plan.wait_ms, nf - now)

    async def step(self) -> int:
        """Plan and deliver one window; returns how many ms to wait before the next step."""
        now = self.clock_ms()
        prog = self.progress
        plan = _Plan(wait_ms=self.config.poll_interval_ms, timer_from=prog.timer_from, timer_offset=prog.timer_offset)
        self._plan_levels(plan, prog, now)
        if self.index is not None:
            await self._plan_timer(plan, prog, now)
        deliveries, ranges, timer = plan.deliveries, plan.ranges, plan.timer
        wait, more = plan.wait_ms, plan.more
        if deliveries:
            window = Window(prog.step, ranges, timer, self._targets(deliveries))
            await self.put(marker_message(window, now_ms=now))
            self.stats.markers += 1
            await self._deliver(deliveries)
            self.progress = window.progress_after()
            for level, (a, b) in ranges.items():
                if b != a:
                    self.store.set_delay_offset(level, b)
        else:   # nothing delivered: no marker; the next window simply starts earlier
            self.progress = Progress({lvl: b for lvl, (_, b) in ranges.items()}, plan.timer_from, plan.timer_offset,
                                     prog.step)
        if self.index is not None and (now - self._checkpoint_at_ms >= INDEX_CHECKPOINT_MS
                                       or self.index.needs_checkpoint):
            await self._checkpoint()
            self._checkpoint_at_ms = now
        return 0 if more else max(wait, 0)

    async def _checkpoint(self) -> None:
        """Checkpoint the index in a worker thread (its fdatasyncs must not stall the event loop,
        which also runs Raft). ``stop`` waits for a checkpoint in flight before closing the index."""
        cursor = self.progress.timer_from[0] if self.progress.timer_from else self.index.last_read_time_ms
        self._checkpointing = asyncio.ensure_future(asyncio.to_thread(self.index.checkpoint, cursor))
        await asyncio.shield(self._checkpointing)

    def _targets(self, deliveries: list[_Delivery]) -> list[tuple[str, int, int]]:
        seen = sorted({(d.message.topic, d.message.queue_id) for d in deliveries})
        return [(topic, qid, self.store.max_offset(topic, qid)) for topic, qid in seen]

    async def _dead_letter_topic(self) -> None:
        if self.ensure_topic is not None:
            await self.ensure_topic(DEAD_LETTER_TOPIC)

    async def _deliver(self, deliveries: list[_Delivery]) -> None:
        """Re-put every delivery, in due order, ``deliver_concurrency`` at a time, none before its due
        time; the first failure cancels the rest and is raised."""
        deliveries.sort(key=lambda d: d.due_ms)
        if any(d.dead for d in deliveries):
            await self._dead_letter_topic()
        gate = asyncio.Semaphore(self.config.deliver_concurrency)

        async def one(d: _Delivery) -> None:
            async with gate:
                while (now := self.clock_ms()) < d.due_ms:     # e.g. a recovery on a slower clock
                    await asyncio.sleep((d.due_ms - now) / 1000)
                try:
                    await self.put(d.message)
                except UserError as exc:   # refused for good (not a passing failure): dead-letter it
                    if d.dead or isinstance(exc, CorruptDataError):
                        raise
                    moved = self._dead_letter(d.record, d.due_ms, d.source, f"was refused: {exc}")
                    if moved is None:
                        return
                    d = moved
                    await self._dead_letter_topic()
                    await self.put(d.message)
                if d.dead:
                    self.stats.dead_lettered += 1
                elif d.rolled:
                    self.stats.rolled += 1
                else:
                    self.stats.delivered += 1
                if self.on_delivered is not None:
                    self.on_delivered(d.source, d.due_ms, self.clock_ms())

        tasks = [asyncio.ensure_future(one(d)) for d in deliveries]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
