"""The delay service's recovery (a mixin of ``service.DelayService``): re-derive where delivery
stands from the replicated log after becoming leader or after any failure (``plan`` module doc):
put a barrier and wait until it is applied, take the last acceptable progress marker
(``plan.choose_last_window``; refused records are logged and counted), redo that window's
deliveries the old leader had not made, and continue from the progress after it."""
from __future__ import annotations

import asyncio
import logging

from mqbench.broker.formats.record import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.errors import CorruptDataError

from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE

from .plan import (BARRIER_QUEUE, MARKER_QUEUE, PROGRESS_TOPIC, Progress, Window, barrier_message,
                   choose_last_window, decode_marker)

log = logging.getLogger("mqbench.broker.timer")

READ_CHUNK = 256
MARKER_LOOKBACK = 64          # markers a recovery looks back through for an acceptable one


class Recovery:
    """Mixin: ``recover`` and its helpers; uses the service's store, put, index, stats, reads."""

    async def recover(self) -> None:
        """Re-derive progress from the log (see ``plan``): barrier, last marker, target scan, redo."""
        self._open_index()
        result = await self.put(barrier_message(now_ms=self.clock_ms(), who=self.name))
        await self._applied(PROGRESS_TOPIC, BARRIER_QUEUE, result.queue_offset)
        self.stats.recoveries += 1
        last = self._last_window()
        if self.index is not None:
            await self._catch_up(keep=False)
        if last is None:
            self.progress = self._initial_progress()
        else:
            await self._redo(last)
            self.progress = last.progress_after()
            # levels the marker does not name (the level list grew since): from the store's hints
            initial = self._initial_progress()
            self.progress.levels = {**initial.levels, **self.progress.levels}
        self._recovered()

    async def _redo(self, window: Window) -> None:
        wanted: list = []
        for level, (a, b) in sorted(window.levels.items()):
            if b > a and level <= self.config.max_level:
                wanted += self._level_deliveries(level, a, b, None)[0]
        if window.timer is not None and self.index is not None:
            k_from, k_to, e_from, e_to = window.timer[0:2], window.timer[2:4], window.timer[4], window.timer[5]
            first, _ = self.index.collect(k_from, k_to, e_from, 1 << 62)
            second = await self._entries_from_queue(e_from, e_to, k_to)
            wanted += self._timer_deliveries(sorted(first + second))
        found = await self._delivered_sources(window.targets, {d.source for d in wanted})
        missing = [d for d in wanted if d.source not in found]
        self.stats.found_delivered += len(found)
        self.stats.redelivered += len(missing)
        if missing:
            log.info("%s: recovery of window %d: %d delivered before, %d delivered now",
                     self.name, window.step, len(found), len(missing))
        await self._deliver(missing)

    async def _delivered_sources(self, targets, wanted: set[str]) -> set[str]:
        """Which of ``wanted`` sources the target queues already hold (read from the marker's offsets)."""
        found: set[str] = set()
        for topic, queue_id, offset in targets:
            hi = self.store.max_offset(topic, queue_id)
            while offset < hi and len(found) < len(wanted):
                msgs, nxt = self._read(topic, queue_id, offset, READ_CHUNK)
                for m in msgs:
                    src = m.properties.get(PROPERTY_MQBENCH_DELAY_SOURCE)
                    if src in wanted:
                        found.add(src)
                if nxt <= offset:
                    break
                offset = nxt
                await asyncio.sleep(0)
        return found

    def _last_window(self) -> Window | None:
        """The newest acceptable progress marker (``plan.choose_last_window``); refused ones are logged."""
        hi = self.store.max_offset(PROGRESS_TOPIC, MARKER_QUEUE)
        lo = max(self.store.min_offset(PROGRESS_TOPIC, MARKER_QUEUE), hi - MARKER_LOOKBACK)
        candidates: list[tuple[int, Window | str]] = []
        for offset in range(hi - 1, lo - 1, -1):
            msg = self._read_one(PROGRESS_TOPIC, MARKER_QUEUE, offset)
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

    def _initial_progress(self) -> Progress:
        levels = {lvl: max(self.store.min_offset(SCHEDULE_TOPIC, lvl - 1), self.store.delay_offset(lvl))
                  for lvl in range(1, self.config.max_level + 1)}
        offset = self.store.min_offset(TIMER_TOPIC, 0) if self.index is not None else 0
        return Progress(levels, None, offset, 0)
