"""The leader-side delivery service: re-puts due delayed messages through the replicated put.

The asyncio adapter around ``planner.DelayPlanner`` (the sans-I/O decisions: what is due, the
windows, recovery's redo): this module owns the task and its wake-ups, the replicated puts and their
concurrency, the waits for due times and for applied entries, and the timer index's file work
(opening, checkpoints and closing in a worker thread, yielding to the loop while indexing: opening
recovers the timer log, which truncates and fsyncs it and its folder, and closing checkpoints, on
every leadership change; 13-43 ms each under load when they ran on the loop).

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
poll interval, or ``notify``. With ``woken_on_commit`` (the broker's wiring: it calls
``notify_if_grown`` after every commit) there is no poll: the sleep lasts until the next due time,
the next index checkpoint or ``WOKEN_IDLE_MS``. ``notify_if_grown()`` (what the broker calls after each commit) wakes
it only when its queues grew since it last looked (``growth``, a counter of records dispatched to
the schedule and timer queues), not on every commit: a due time needs no wake-up, it is slept to;
nor, while it sleeps, when only schedule queues grew behind heads it sleeps towards
(``DelayPlanner.levels_grew_unplanned``: the orders run's 30-minute level). A message is never put before its due time by ``clock_ms``. Any
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
from pathlib import Path
from typing import Awaitable, Callable

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_LOG_FILE_BYTES, TIMER_TOPIC
from mqbench.broker.store.dispatch import Growth
from mqbench.errors import CorruptDataError, UserError

from .config import DelayConfig
from .index import TimerIndex
from .plan import Progress, barrier_message, marker_message, BARRIER_QUEUE, PROGRESS_TOPIC
from .planner import (FOLLOWING, RECOVERING, RUNNING, STOPPED, TRANSITIONS, DelayPlanner,  # noqa: F401 (re-exported)
                      DelayStats, Delivery, next_state)
from .rewrite import DEAD_LETTER_TOPIC

log = logging.getLogger("mqbench.broker.timer")

INDEX_CHECKPOINT_MS = 1000
#: The longest sleep of a service woken on commits (``woken_on_commit``): nothing is polled then,
#: a new delayed message wakes it (``notify_if_grown``) and a due time is slept to.
WOKEN_IDLE_MS = 1000
#: The queues whose growth wakes a delivering service, and an indexing (follower) one.
DELIVERY_TOPICS = (SCHEDULE_TOPIC, TIMER_TOPIC)
INDEX_TOPICS = (TIMER_TOPIC,)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def queue_growth(store, topics: tuple[str, ...]) -> Growth | None:
    """A counter of the records dispatched to ``topics`` (``QueueSet.watch``, bumped by the
    store's dispatch), or None when the store cannot say (then every ``notify_if_grown`` wakes the
    service)."""
    queues = getattr(store, "queues", None)
    watch = getattr(queues, "watch", None)
    if watch is None:
        return None
    return watch(topics)


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class DelayService:
    """Delivers due delay-level and timer messages on the leader (see module doc)."""

    def __init__(self, store, put: Callable[[Message], Awaitable], *, clock_ms: Callable[[], int] | None = None,
                 config: DelayConfig = DelayConfig(), index_root=None,
                 timer_log_segment_bytes: int = TIMER_LOG_FILE_BYTES,
                 on_delivered: Callable[[str, int, int], None] | None = None, name: str = "delay-service",
                 barrier_timeout_ms: int = 30_000, retry_ms: int = 1000,
                 ensure_topic: Callable[[str], Awaitable] | None = None, woken_on_commit: bool = False):
        self.store = store
        self.woken_on_commit = woken_on_commit   # the owner calls notify_if_grown after every commit
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
        self.planner = DelayPlanner(store, config, name=name)
        self.state = STOPPED
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._checkpointing: asyncio.Future | None = None
        self._opening: asyncio.Future | None = None   # the index being opened in a worker thread
        self._wake: asyncio.Event | None = None
        self._sleeper: asyncio.Future | None = None   # what _sleep awaits; notify resolves it
        self._checkpoint_at_ms = 0
        self._growth: Growth | None = None
        self._growth_seen = -1
        self._level_growth: Growth | None = None     # the schedule queues' (delivering only)
        self._level_growth_seen = -1

    # the planner's state, read by the broker's runtime info and the tests
    @property
    def stats(self) -> DelayStats:
        return self.planner.stats

    @property
    def progress(self) -> Progress:
        return self.planner.progress

    @progress.setter
    def progress(self, value: Progress) -> None:
        self.planner.progress = value

    @property
    def index(self) -> TimerIndex | None:
        return self.planner.index

    @index.setter
    def index(self, value: TimerIndex | None) -> None:
        self.planner.index = value

    # -- lifecycle ---------------------------------------------------------------------------

    def _event(self, event: str) -> None:
        self.state = next_state(self.state, event)

    async def start(self) -> None:
        """Begin delivering (call on becoming leader). Returns at once; recovery runs in the task."""
        if self._task is not None:
            return
        self._event("start")
        self._wake = asyncio.Event()
        self._growth = queue_growth(self.store, DELIVERY_TOPICS)
        self._level_growth = queue_growth(self.store, (SCHEDULE_TOPIC,))
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def follow(self) -> None:
        """On a follower: keep the timer index caught up with the committed timer queue (woken by
        ``notify``), so that becoming leader needs no long catch-up. Delivers nothing. ``stop`` ends it."""
        if self._task is not None or self.index_disabled:
            return
        self._event("follow")
        self._wake = asyncio.Event()
        self._growth = queue_growth(self.store, INDEX_TOPICS)
        self._task = asyncio.create_task(self._follow_loop(), name=f"{self.name}-index")

    @property
    def index_disabled(self) -> bool:
        return not self.config.timer_enabled

    def notify(self) -> None:
        """Look for delayed messages now rather than at the next poll or due time."""
        if self._wake is not None:
            self._wake.set()
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    def notify_if_grown(self) -> None:
        """Entries were committed: wake the service only if its queues grew since it last looked."""
        growth = self._growth
        if growth is not None:
            if growth.count == self._growth_seen:
                return
            levels = self._level_growth
            if (levels is not None and growth.count - self._growth_seen == levels.count - self._level_growth_seen
                    and self.state == RUNNING and self._sleeper is not None
                    and not self.planner.levels_grew_unplanned()):
                # only schedule queues grew, behind heads it sleeps towards (``levels_grew_unplanned``):
                # in the orders run every delayed message (22 %) woke a step that planned nothing
                self._growth_seen, self._level_growth_seen = growth.count, levels.count
                return
            self._growth_seen = growth.count
            if levels is not None:
                self._level_growth_seen = levels.count
        self.notify()

    async def _sleep(self, wait_ms: int) -> None:
        """Until ``wait_ms`` passed or ``notify`` (at once when it came since the step began).
        A timer and a future, no Task per sleep: the service sleeps up to 50 times a second
        (``poll_interval_ms``) and after each commit that brings a delayed message, and a Task
        and ``asyncio.wait`` per sleep were 40% of an idle raft3 leader's delay-service CPU (py-spy).
        Awaiting a plain future never swallows a cancellation (3.11's wait_for can)."""
        if self._wake.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter = self._sleeper = loop.create_future()
        timer = loop.call_later(wait_ms / 1000, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if self._sleeper is waiter:
                self._sleeper = None

    def _failed(self, exc: Exception) -> str:
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        return self.stats.last_error

    async def _follow_loop(self) -> None:
        await self._open_index()
        while not self._stopping:
            self._wake.clear()
            try:
                await self._catch_up(keep=False)
                if self._checkpoint_due(self.clock_ms()):
                    await self._checkpoint()
                    self._checkpoint_at_ms = self.clock_ms()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: indexing as a follower failed: %s", self.name, self._failed(exc))
            await self._sleep(self.retry_ms)

    async def _open_index(self) -> None:
        """Open the timer index in a worker thread (module doc). A caller cancelled meanwhile leaves
        the open to finish; ``stop`` waits for it and closes what it opened."""
        if not self.config.timer_enabled or self.index is not None:
            return
        if self._opening is None:
            self._opening = asyncio.ensure_future(asyncio.to_thread(self._open_index_files))
        opening = self._opening
        try:
            await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:   # opened, or failed (raised here)
                self._opening = None

    def _open_index_files(self) -> None:
        """(Worker thread; nothing else touches ``index`` until ``_opening`` is done.)"""
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
        for pending in ("_checkpointing", "_opening"):   # a checkpoint or open thread may still be running
            future = getattr(self, pending)
            if future is not None:
                await asyncio.wait([future])
                setattr(self, pending, None)
                if not future.cancelled():
                    future.exception()   # retrieved: its caller saw it (or was cancelled before)
        self._event("stop")
        if self._growth is not None:
            self.store.queues.unwatch(self._growth)
            self._growth, self._growth_seen = None, -1
        if self._level_growth is not None:
            self.store.queues.unwatch(self._level_growth)
            self._level_growth, self._level_growth_seen = None, -1
        if self.index is not None:
            index, self.index = self.index, None
            # checkpointed and closed in a worker thread (module doc); the next owner of the folder
            # (the new leader's service) opens it only after this returns
            await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(index.close)))

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
                log.warning("%s: %s; recovering in %d ms", self.name, self._failed(exc), self.retry_ms)
                self._event("failed")
                wait_ms = self.retry_ms
            if wait_ms > 0:
                await self._sleep(wait_ms)
            else:
                await asyncio.sleep(0)

    # -- the timer index's file work ---------------------------------------------------------

    async def _catch_up(self, limit: int | None = None, *, keep: bool = True) -> tuple[int, list]:
        """Index the committed timer records not indexed yet (at most about ``limit``), yielding to
        the loop between chunks; returns (first offset indexed, their entries; none unless ``keep``)."""
        planner = self.planner
        offset, hi = planner.catch_up_from()
        start = offset
        fresh: list = []
        added = 0
        while offset < hi and (limit is None or added < limit):
            nxt, count = planner.index_chunk(offset, fresh if keep else None)
            added += count
            if nxt <= offset:
                break
            offset = nxt
            if self.index.needs_checkpoint:
                await self._checkpoint()
            await asyncio.sleep(0)
        planner.catch_up_done(offset, hi)
        return start, fresh

    def _checkpoint_due(self, now_ms: int) -> bool:
        """The index's memory bound is reached (``needs_checkpoint``), or ``INDEX_CHECKPOINT_MS``
        passed since the last checkpoint and the store syncs on a timer (``Store.sync_on_timer``;
        in ``memory`` durability it does not: a kill -9 loses nothing from the page cache, and the
        index re-links what follows its last checkpoint when it opens)."""
        if self.index.needs_checkpoint:
            return True
        return getattr(self.store, "sync_on_timer", True) and now_ms - self._checkpoint_at_ms >= INDEX_CHECKPOINT_MS

    async def _checkpoint(self) -> None:
        """Checkpoint the index in a worker thread (its fdatasyncs must not stall the event loop,
        which also runs Raft). ``stop`` waits for a checkpoint in flight before closing the index."""
        cursor = self.progress.timer_from[0] if self.progress.timer_from else self.index.last_read_time_ms
        self._checkpointing = asyncio.ensure_future(asyncio.to_thread(self.index.checkpoint, cursor))
        await asyncio.shield(self._checkpointing)

    # -- one step ----------------------------------------------------------------------------

    async def step(self) -> int:
        """Plan and deliver one window; returns how many ms to wait before the next step."""
        planner = self.planner
        now = self.clock_ms()
        plan = planner.begin()
        if self.woken_on_commit and self._growth is not None:
            plan.wait_ms = self._idle_wait_ms(now)
        planner.plan_levels(plan, now)
        if self.index is not None and planner.timer_start(plan, now):
            first_new, fresh = await self._catch_up(self.config.window_max)
            planner.plan_timer(plan, now, first_new, fresh)
        window = planner.window_of(plan)
        if window is not None:
            await self.put(marker_message(window, now_ms=now))
            self.stats.markers += 1
            await self._deliver(plan.deliveries)
            for level, offset in planner.delivered(window).items():
                self.store.set_delay_offset(level, offset)
        if self.index is not None and self._checkpoint_due(now):
            await self._checkpoint()
            self._checkpoint_at_ms = now
        return planner.wait_after(plan)

    def _idle_wait_ms(self, now_ms: int) -> int:
        """The sleep of a step with nothing due, when commits wake the service (``woken_on_commit``
        and its queues watched): no ``poll_interval_ms`` poll (50 wake-ups a second on every
        leader, loaded or idle), only ``WOKEN_IDLE_MS`` or the next index checkpoint. Due times
        still shorten it (the planner), and a new delayed or timer record ends it (``notify``)."""
        wait_ms = max(self.config.poll_interval_ms, WOKEN_IDLE_MS)
        if self.index is not None and getattr(self.store, "sync_on_timer", True):
            wait_ms = min(wait_ms, max(1, self._checkpoint_at_ms + INDEX_CHECKPOINT_MS - now_ms))
        return wait_ms

    async def _dead_letter_topic(self) -> None:
        if self.ensure_topic is not None:
            await self.ensure_topic(DEAD_LETTER_TOPIC)

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        """Re-put every delivery, in due order, ``deliver_concurrency`` at a time, none before its due
        time; the first failure cancels the rest and is raised."""
        deliveries.sort(key=lambda d: d.due_ms)
        if any(d.dead for d in deliveries):
            await self._dead_letter_topic()
        gate = asyncio.Semaphore(self.config.deliver_concurrency)

        async def one(d: Delivery) -> None:
            async with gate:
                while (now := self.clock_ms()) < d.due_ms:     # e.g. a recovery on a slower clock
                    await asyncio.sleep((d.due_ms - now) / 1000)
                try:
                    await self.put(d.message)
                except UserError as exc:   # refused for good (not a passing failure): dead-letter it
                    if d.dead or isinstance(exc, CorruptDataError):
                        raise
                    moved = self.planner.dead_letter(d.record, d.due_ms, d.source, f"was refused: {exc}")
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

    # -- recovery (``plan`` module doc) -------------------------------------------------------

    async def recover(self) -> None:
        """Re-derive progress from the log: barrier, last marker, target scan, redo."""
        planner = self.planner
        await self._open_index()
        result = await self.put(barrier_message(now_ms=self.clock_ms(), who=self.name))
        await self._applied(PROGRESS_TOPIC, BARRIER_QUEUE, result.queue_offset)
        self.stats.recoveries += 1
        last = planner.last_window()
        if self.index is not None:
            await self._catch_up(keep=False)
        if last is not None:
            wanted = planner.redo_deliveries(last, self.clock_ms())
            found = planner.delivered_sources(last.targets, {d.source for d in wanted})
            missing = [d for d in wanted if d.source not in found]
            self.stats.found_delivered += len(found)
            self.stats.redelivered += len(missing)
            if missing:
                log.info("%s: recovery of window %d: %d delivered before, %d delivered now",
                         self.name, last.step, len(found), len(missing))
            await self._deliver(missing)
        planner.recovered(last)
        if self.state == RECOVERING:
            self._event("recovered")

    async def _applied(self, topic: str, queue_id: int, offset: int) -> None:
        """Wait until ``offset`` of a queue is readable (the entry was applied on this replica)."""
        deadline = time.monotonic() + self.barrier_timeout_ms / 1000
        while self.store.max_offset(topic, queue_id) <= offset:
            if time.monotonic() > deadline:
                raise UserError(f"{topic}/{queue_id}@{offset} was acknowledged but is not readable after "
                                f"{self.barrier_timeout_ms} ms")
            await asyncio.sleep(0.001)
