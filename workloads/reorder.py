"""Putting messages back in send order when they arrive slightly out of it (exports, live capture).

``ReorderBuffer(window_us)`` holds pushed items in a heap and releases an item once an item at least
``window_us`` later has been pushed, so everything released is in time order provided nothing
arrives more than ``window_us`` behind the latest. ``is_late(time_us)`` says whether an item would
break the order already released (the caller decides: a bad row for imports, a clamp for captures).
Memory grows with rate x window. Pure: no clock.
"""
from __future__ import annotations

import heapq
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    def __init__(self, window_us: int):
        self.window_us = window_us
        self._heap: list[tuple[int, int, T]] = []
        self._sequence = 0  # ties keep arrival order
        self.latest_us: int | None = None
        self.released_us: int | None = None  # time of the last released item

    def is_late(self, time_us: int) -> bool:
        return self.released_us is not None and time_us < self.released_us

    def push(self, time_us: int, item: T) -> Iterator[tuple[int, T]]:
        """Add an item; yields the items now ready, in time order. Late items must be handled first."""
        self._sequence += 1
        heapq.heappush(self._heap, (time_us, self._sequence, item))
        self.latest_us = time_us if self.latest_us is None else max(self.latest_us, time_us)
        while self._heap and self._heap[0][0] <= self.latest_us - self.window_us:
            yield self._pop()

    def drain(self) -> Iterator[tuple[int, T]]:
        """Everything still held, in time order (at the end of the input)."""
        while self._heap:
            yield self._pop()

    def __len__(self) -> int:
        return len(self._heap)

    def _pop(self) -> tuple[int, T]:
        time_us, _sequence, item = heapq.heappop(self._heap)
        self.released_us = time_us
        return time_us, item


class RebasingWriter:
    """Writes the messages a ``ReorderBuffer`` releases into a trace, timed from the first one.

    ``emit(ready)`` takes the ``(time_us, message)`` pairs in release order, sets each message's
    ``send_offset_us`` to its time minus the first released time, writes it, and counts it in
    ``result`` (``messages``, ``body_bytes``, ``duration_us``; and ``topics`` when the result has
    that counter). ``progress(messages)`` is called after each message when given.
    """

    def __init__(self, writer, result, progress=None) -> None:
        self._writer = writer
        self._result = result
        self._progress = progress
        self._topics = getattr(result, "topics", None)
        self._base_us: int | None = None

    def emit(self, ready) -> None:
        result = self._result
        for time_us, message in ready:
            if self._base_us is None:
                self._base_us = time_us
            message.send_offset_us = time_us - self._base_us
            self._writer.write(message)
            result.messages += 1
            result.body_bytes += len(message.body)
            result.duration_us = message.send_offset_us
            if self._topics is not None:
                self._topics[message.topic] += 1
            if self._progress is not None:
                self._progress(result.messages)
