"""The delay service's planner: what to deliver, when, and what the log says was delivered. Sans-I/O.

``service.DelayService`` is the thin asyncio adapter around it: it owns the task, the wake-ups, the
replicated puts, the index checkpoints in a thread and the waits. Everything that decides lives here
and is synchronous, with the time passed in (``now_ms``) and the store and timer index injected:

* ``store`` is read through ``read_queue(topic, queue_id, offset, count)`` (``.messages``,
  ``.next_offset``), ``min_offset``/``max_offset``/``delay_offset``: an in-memory view (the broker's
  ``Store``, a test's table) whose reads never wait;
* ``index`` (optional, the timer store) through ``add``, ``collect``, ``next_fire_ms``,
  ``next_queue_offset`` and ``reset``; None when timers are off. The adapter opens and closes it.

State, as tables: ``TRANSITIONS`` (the service's lifecycle, (state, event) -> state); ``progress``
(``plan.Progress``: per level the next schedule-queue offset, the timer cursor); ``level_waiting``
(level -> (offset, due ms) of its first record not due yet, so a waiting level costs no read);
``stats`` (``DelayStats``).

One step (``plan module doc`` for the windows and markers): ``begin`` -> ``plan_levels`` (each
level's due head records in queue order, deliver time = store time + level delay) ->
``plan_timer`` (the index's entries from the cursor key up to now plus those indexed in this step,
by fire time) -> ``window_of`` (the marker to put when there is anything to deliver) -> after the
adapter delivered: ``delivered`` (progress after the window, level offsets to record). Recovery:
``last_window``, ``redo_deliveries``, ``delivered_sources``, ``initial_progress``.

Damage: a record that fails its checks is skipped, logged and counted once (``read``); a record
that can never be re-put becomes a dead-letter delivery (``dead_letter``); an index unit that does
not describe its record is never acted on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE, PROPERTY_REAL_TOPIC
from mqbench.broker.formats.record import Message, record_size
from mqbench.broker.formats.tags import java_hash
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.errors import CorruptDataError, UserError

from .config import DelayConfig
from .plan import (MARKER_QUEUE, PROGRESS_TOPIC, Progress, TimerEntry, Window, choose_last_window, decode_marker,
                   timer_fire)
from .rewrite import dead_letter_message, delivered_message, fits, level_due_ms, rolled_message, source_id, timer_due_ms

log = logging.getLogger("mqbench.broker.timer")

READ_CHUNK = 256
MARKER_LOOKBACK = 64          # markers a recovery looks back through for an acceptable one
DAMAGED_REMEMBERED_MAX = 100_000
TOPIC_HASHES_MAX = 4096

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


def next_state(state: str, event: str) -> str:
    """The lifecycle table's answer; UserError for an event the state does not allow."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        raise UserError(f"delay service: {event!r} is not allowed while {state}")
    return nxt


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
class Delivery:
    """One re-put: never before ``due_ms``; ``record`` is the delayed record it comes from."""
    due_ms: int
    source: str
    message: Message
    rolled: bool = False
    dead: bool = False
    record: Message | None = None


@dataclass
class StepPlan:
    """One step's window in the making."""
    wait_ms: int
    timer_from: tuple[int, int] | None
    timer_offset: int
    more: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    timer: tuple[int, int, int, int, int, int] | None = None


class DelayPlanner:
    """The decisions of the delay service (see module doc)."""

    def __init__(self, store: Any, config: DelayConfig, *, name: str = "delay-service"):
        self.store = store
        self.config = config
        self.name = name
        self.index: Any = None               # the timer index while open (the adapter's)
        self.stats = DelayStats()
        self.progress = Progress()
        self.level_waiting: dict[int, tuple[int, int]] = {}
        self._damaged: set[tuple[str, int, int]] = set()
        self._topic_hashes: dict[str, int] = {}

    # -- reading -------------------------------------------------------------------------------

    def read(self, topic: str, queue_id: int, offset: int, count: int) -> tuple[list[Message], int]:
        """Messages from ``offset``; a record that fails its checks is skipped (logged, counted once)."""
        try:
            res = self.store.read_queue(topic, queue_id, offset, count)
            return res.messages, res.next_offset
        except CorruptDataError as exc:
            if count > 1:
                return self.read(topic, queue_id, offset, 1)
            where = (topic, queue_id, offset)
            if where not in self._damaged:
                if len(self._damaged) > DAMAGED_REMEMBERED_MAX:
                    self._damaged.clear()
                self._damaged.add(where)
                self.stats.malformed += 1
                log.error("%s: skipping %s/%d@%d: %s", self.name, topic, queue_id, offset, exc)
            return [], offset + 1

    def read_one(self, topic: str, queue_id: int, offset: int) -> Message | None:
        msgs, _ = self.read(topic, queue_id, offset, 1)
        return msgs[0] if msgs and msgs[0].queue_offset == offset else None

    # -- the timer index -----------------------------------------------------------------------

    def topic_hash(self, topic: str | None) -> int:
        if not topic:
            return 0
        h = self._topic_hashes.get(topic)
        if h is None:
            if len(self._topic_hashes) > TOPIC_HASHES_MAX:
                self._topic_hashes.clear()
            h = self._topic_hashes[topic] = java_hash(topic)
        return h

    def entry_of(self, record: Message) -> tuple[int, int]:
        """(due ms, store ms) of a timer record; a damaged due time fires at once (delivery then
        finds the record malformed and skips it)."""
        try:
            due = timer_due_ms(record)
        except CorruptDataError:
            due = record.store_timestamp_ms
        return due, record.store_timestamp_ms

    def catch_up_from(self) -> tuple[int, int]:
        """(first timer-queue offset to index, the queue's end); an index ahead of the store is
        rebuilt (``reset``)."""
        ix = self.index
        hi = self.store.max_offset(TIMER_TOPIC, 0)
        if ix.next_queue_offset > hi:
            log.warning("%s: timer index is ahead of the store (%d > %d); rebuilding it",
                        self.name, ix.next_queue_offset, hi)
            ix.reset()
        return max(ix.next_queue_offset, self.store.min_offset(TIMER_TOPIC, 0)), hi

    def index_chunk(self, offset: int, keep: list[TimerEntry] | None) -> tuple[int, int]:
        """Index one chunk of committed timer records from ``offset`` (their entries appended to
        ``keep`` when given); returns (next offset, records indexed)."""
        msgs, nxt = self.read(TIMER_TOPIC, 0, offset, READ_CHUNK)
        for m in msgs:
            due, stored = self.entry_of(m)
            entry = self.index.add(m.queue_offset, due, stored, offset_py=m.physical_offset, size_py=record_size(m),
                                   real_topic_hash=self.topic_hash(m.properties.get(PROPERTY_REAL_TOPIC)))
            if keep is not None:
                keep.append(entry)
        return nxt, len(msgs)

    def catch_up_done(self, offset: int, hi: int) -> None:
        ix = self.index
        ix.next_queue_offset = max(ix.next_queue_offset, min(offset, hi))   # past records skipped as damaged

    def entries_from_queue(self, start: int, end: int, before: tuple[int, int]) -> list[TimerEntry]:
        """Entries of timer-queue offsets ``[start, end)`` whose key (fire ms, offset) is below
        ``before``, computed from the records (the same placement as the index)."""
        out = []
        offset = start
        while offset < end:
            msgs, nxt = self.read(TIMER_TOPIC, 0, offset, min(READ_CHUNK, end - offset))
            for m in msgs:
                if m.queue_offset >= end:
                    break
                fire, rolled = timer_fire(*self.entry_of(m), self.config)
                if (fire, m.queue_offset) < before:
                    out.append(TimerEntry(fire, m.queue_offset, rolled))
            if nxt <= offset:
                break
            offset = nxt
        return out

    # -- deliveries ----------------------------------------------------------------------------

    def delivery(self, record: Message, due_ms: int, source: str, now_ms: int, rolled: bool = False) -> Delivery | None:
        try:
            msg = rolled_message(record, source=source) if rolled else \
                delivered_message(record, source=source, now_ms=now_ms)
        except CorruptDataError as exc:
            self.stats.malformed += 1
            log.error("%s: skipping delayed record %s: %s", self.name, source, exc)
            return None
        problem = fits(msg)
        if problem is None:
            return Delivery(due_ms, source, msg, rolled, record=record)
        return self.dead_letter(record, due_ms, source, f"cannot be re-put: {problem}")

    def dead_letter(self, record: Message | None, due_ms: int, source: str, reason: str) -> Delivery | None:
        """The dead-letter delivery for a record that cannot be re-put; None (counted) when even
        that is impossible."""
        dead = dead_letter_message(record, source=source, reason=reason) if record is not None else None
        log.error("%s: delayed record %s for %s %s; %s", self.name, source,
                  record.properties.get(PROPERTY_REAL_TOPIC) if record is not None else None,
                  reason, "moving it to the dead-letter topic" if dead else "it cannot be moved either: skipped")
        if dead is None:
            self.stats.malformed += 1
            return None
        return Delivery(due_ms, source, dead, dead=True, record=record)

    def timer_records(self, offsets: list[int]) -> dict[int, Message]:
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
                msgs, nxt = self.read(TIMER_TOPIC, 0, offset, end - offset)
                for m in msgs:
                    if m.queue_offset < end:
                        found[m.queue_offset] = m
                if nxt <= offset:
                    break
                offset = nxt
            i = j + 1
        return found

    def timer_deliveries(self, entries: list[TimerEntry], now_ms: int) -> list[Delivery]:
        out = []
        records = self.timer_records([e.queue_offset for e in entries])
        for e in entries:
            record = records.get(e.queue_offset)
            if record is None:
                continue
            if timer_fire(*self.entry_of(record), self.config) != (e.fire_ms, e.rolled):
                self.stats.malformed += 1
                log.error("%s: timer index entry %s does not match its record; skipped", self.name, e)
                continue
            d = self.delivery(record, e.fire_ms, source_id("timer", e.queue_offset), now_ms, e.rolled)
            if d is not None:
                out.append(d)
        return out

    def level_deliveries(self, level: int, start: int, end: int, due_by_ms: int | None,
                         now_ms: int) -> tuple[list[Delivery], int, int | None]:
        """Records of one level from ``start`` (at most up to ``end``) due by ``due_by_ms``; with
        None every record in range is taken. Returns (deliveries, next offset, due time of the first
        not due)."""
        out: list[Delivery] = []
        offset = start
        while offset < end:
            msgs, nxt = self.read(SCHEDULE_TOPIC, level - 1, offset, min(READ_CHUNK, end - offset))
            for m in msgs:
                if m.queue_offset >= end:
                    return out, offset, None
                due = level_due_ms(m, self.config)
                if due_by_ms is not None and due > due_by_ms:
                    return out, m.queue_offset, due
                d = self.delivery(m, due, source_id("level", m.queue_offset, level), now_ms)
                if d is not None:
                    out.append(d)
                offset = m.queue_offset + 1
            if nxt <= offset and not msgs:
                break
            offset = max(offset, nxt)
        return out, offset, None

    # -- one step ------------------------------------------------------------------------------

    def begin(self) -> StepPlan:
        prog = self.progress
        return StepPlan(wait_ms=self.config.poll_interval_ms, timer_from=prog.timer_from,
                        timer_offset=prog.timer_offset)

    def plan_levels(self, plan: StepPlan, now: int) -> None:
        """Each level's due head records, in queue order, within the window's budget."""
        cfg, prog = self.config, self.progress
        for level in range(1, cfg.max_level + 1):
            a = prog.levels.get(level, 0)
            waiting = self.level_waiting.get(level)
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
            found, b, next_due = self.level_deliveries(level, a, min(top, a + budget), now, now)
            plan.deliveries += found
            plan.ranges[level] = (a, b)
            if next_due is not None:
                self.level_waiting[level] = (b, next_due)
                plan.wait_ms = min(plan.wait_ms, next_due - now)
            elif b < top:
                plan.more = True

    def levels_grew_unplanned(self) -> bool:
        """Whether a schedule queue holds records past its progress that no step has planned for:
        False when every level is either empty past its progress or waiting for its head's due
        time (``level_waiting`` at the progress offset). Records added behind a waiting head are
        due no sooner than it (store times only grow, and a level is delivered in queue order), so
        the sleep to that due time already covers them: growth there needs no wake-up."""
        levels, waiting = self.progress.levels, self.level_waiting
        max_offset = self.store.max_offset
        for level in range(1, self.config.max_level + 1):
            a = levels.get(level, 0)
            head = waiting.get(level)
            if head is not None and head[0] == a:
                continue
            if max_offset(SCHEDULE_TOPIC, level - 1) > a:
                return True
        return False

    def timer_start(self, plan: StepPlan, now: int) -> bool:
        """Whether the timer part of this step runs: not while this clock is behind the last
        window's end (then the plan waits for it)."""
        end = (now + 1, 0)
        start = end if self.progress.timer_from is None else self.progress.timer_from
        if start > end:
            plan.wait_ms = min(plan.wait_ms, max(1, start[0] - end[0]))
            return False
        return True

    def plan_timer(self, plan: StepPlan, now: int, first_new: int, fresh: list[TimerEntry]) -> None:
        """The timer entries of the window (``plan`` module doc), after the adapter indexed the new
        records from ``first_new`` on (``fresh``, at most ``window_max``): the index's entries from
        the cursor key up to now and the new ones already due."""
        ix, prog = self.index, self.progress
        end = (now + 1, 0)                               # every key with fire time <= now
        start = end if prog.timer_from is None else prog.timer_from
        e_from, e_to = prog.timer_offset, ix.next_queue_offset
        if e_to < self.store.max_offset(TIMER_TOPIC, 0):
            plan.more = True                             # more to index: step again at once
        first, cut = ix.collect(start, end, e_from, max(1, self.config.window_max - len(plan.deliveries)))
        extra = self.entries_from_queue(e_from, first_new, cut) if e_from < first_new else []
        late = [e for e in extra + fresh if (e.fire_ms, e.queue_offset) < cut and e.queue_offset >= e_from]
        plan.deliveries += self.timer_deliveries(sorted(first + late), now)
        plan.timer = (*start, *cut, e_from, e_to)
        plan.timer_from, plan.timer_offset = cut, e_to
        if cut < end:
            plan.more = True
        else:
            nf = ix.next_fire_ms(cut, now + plan.wait_ms + 1, e_to)
            if nf is not None:
                plan.wait_ms = min(plan.wait_ms, nf - now)

    def window_of(self, plan: StepPlan) -> Window | None:
        """The window to mark and deliver; None when nothing is due (then no marker: the progress
        simply moves on and the next window starts earlier)."""
        prog = self.progress
        if plan.deliveries:
            return Window(prog.step, plan.ranges, plan.timer, self.targets(plan.deliveries))
        self.progress = Progress({lvl: b for lvl, (_, b) in plan.ranges.items()}, plan.timer_from,
                                 plan.timer_offset, prog.step)
        return None

    def delivered(self, window: Window) -> dict[int, int]:
        """Every delivery of ``window`` was acknowledged: progress moves past it. Returns the levels
        whose schedule-queue offset moved, with the new offset (for ``delayOffset.json``)."""
        self.progress = window.progress_after()
        return {level: b for level, (a, b) in window.levels.items() if b != a}

    def wait_after(self, plan: StepPlan) -> int:
        """Ms to wait before the next step: 0 when more is due at once."""
        return 0 if plan.more else max(plan.wait_ms, 0)

    def targets(self, deliveries: list[Delivery]) -> list[tuple[str, int, int]]:
        seen = sorted({(d.message.topic, d.message.queue_id) for d in deliveries})
        return [(topic, qid, self.store.max_offset(topic, qid)) for topic, qid in seen]

    # -- recovery ------------------------------------------------------------------------------

    def last_window(self) -> Window | None:
        """The newest acceptable progress marker (``plan.choose_last_window``); refused ones are logged."""
        hi = self.store.max_offset(PROGRESS_TOPIC, MARKER_QUEUE)
        lo = max(self.store.min_offset(PROGRESS_TOPIC, MARKER_QUEUE), hi - MARKER_LOOKBACK)
        candidates: list[tuple[int, Window | str]] = []
        for offset in range(hi - 1, lo - 1, -1):
            msg = self.read_one(PROGRESS_TOPIC, MARKER_QUEUE, offset)
            try:
                candidates.append((offset, decode_marker(msg.body) if msg is not None else "unreadable"))
            except CorruptDataError as exc:
                candidates.append((offset, str(exc)))
        window, refused = choose_last_window(candidates, self.store.max_offset)
        for offset, reason in refused:
            self.stats.bad_markers += 1
            log.error("%s: ignoring progress record %s/%d@%d: %s", self.name, PROGRESS_TOPIC, MARKER_QUEUE,
                      offset, reason)
        return window

    def initial_progress(self) -> Progress:
        levels = {lvl: max(self.store.min_offset(SCHEDULE_TOPIC, lvl - 1), self.store.delay_offset(lvl))
                  for lvl in range(1, self.config.max_level + 1)}
        offset = self.store.min_offset(TIMER_TOPIC, 0) if self.index is not None else 0
        return Progress(levels, None, offset, 0)

    def redo_deliveries(self, window: Window, now_ms: int) -> list[Delivery]:
        """Every delivery ``window`` covers, recomputed from the log (deliver-time ``now_ms``)."""
        wanted: list[Delivery] = []
        for level, (a, b) in sorted(window.levels.items()):
            if b > a and level <= self.config.max_level:
                wanted += self.level_deliveries(level, a, b, None, now_ms)[0]
        if window.timer is not None and self.index is not None:
            k_from, k_to, e_from, e_to = window.timer[0:2], window.timer[2:4], window.timer[4], window.timer[5]
            first, _ = self.index.collect(k_from, k_to, e_from, 1 << 62)
            second = self.entries_from_queue(e_from, e_to, k_to)
            wanted += self.timer_deliveries(sorted(first + second), now_ms)
        return wanted

    def delivered_sources(self, targets: list[tuple[str, int, int]], wanted: set[str]) -> set[str]:
        """Which of ``wanted`` sources the target queues already hold (read from the marker's offsets)."""
        found: set[str] = set()
        for topic, queue_id, offset in targets:
            hi = self.store.max_offset(topic, queue_id)
            while offset < hi and len(found) < len(wanted):
                msgs, nxt = self.read(topic, queue_id, offset, READ_CHUNK)
                for m in msgs:
                    src = m.properties.get(PROPERTY_MQBENCH_DELAY_SOURCE)
                    if src in wanted:
                        found.add(src)
                if nxt <= offset:
                    break
                offset = nxt
        return found

    def recovered(self, last: Window | None) -> None:
        """Progress after a recovery: past the last window, or from the store's hints without one
        (levels the marker does not name, because the level list grew since, from the hints too)."""
        initial = self.initial_progress()
        if last is None:
            self.progress = initial
        else:
            self.progress = last.progress_after()
            self.progress.levels = {**initial.levels, **self.progress.levels}
