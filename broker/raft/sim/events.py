"""The simulator's event loop: one discrete-event queue ordered by (time, sequence) on a fake
clock, the trace of the last events and the run's digest (same seed, same digest, bit for bit)."""
from __future__ import annotations

import heapq
import zlib
from collections import deque
from typing import Any, Callable

from ..types import Message, Role
from .model import SimParams, Violation

EV_TICK, EV_DELIVER, EV_SYNC, EV_PROPOSE, EV_FAULT, EV_RESTART, EV_CRASH = range(7)
EVENT_NAMES = ("tick", "deliver", "synced", "propose", "fault", "restart", "crash")

Handler = Callable[[int, Any], None]


class EventLoop:
    """``schedule`` events, ``run_until`` a time (or a condition), ``record`` what happened.

    ``handlers`` is the table event kind -> handler(node, payload), set by the cluster."""

    def __init__(self, params: SimParams):
        self.params = params
        self.now = 0
        self.heap: list = []
        self.seq = 0
        self.events = 0
        self.trace: deque = deque(maxlen=params.trace_events)
        self.digest = 0
        self.handlers: tuple[Handler, ...] = ()

    def schedule(self, at_ms: int, kind: int, node: int, payload=None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_ms, self.seq, kind, node, payload))

    def record(self, kind: int, node: int, detail) -> None:
        self.trace.append((self.now, kind, node, detail))
        if isinstance(detail, Message):
            key = (detail.type, detail.src, detail.term, detail.index, len(detail.entries), detail.commit, detail.reject)
        elif isinstance(detail, int):
            key = detail
        else:   # str hashes change per process (PYTHONHASHSEED); a CRC does not
            key = zlib.crc32(repr(detail).encode())
        self.digest = hash((self.digest, self.now, kind, node, key))

    def run_until(self, stop_ms: int, done=None) -> bool:
        """Process events up to ``stop_ms``; True as soon as ``done()`` holds after an event."""
        heap, handlers = self.heap, self.handlers
        while heap and heap[0][0] <= stop_ms:
            at, _, kind, node, payload = heapq.heappop(heap)
            self.now = at
            self.events += 1
            if self.events > self.params.max_events:
                raise Violation("livelock", f"more than {self.params.max_events} events (a message storm?)")
            handlers[kind](node, payload)
            if done is not None and done():
                return True
        self.now = max(self.now, stop_ms)
        return done is not None and done()

    def trace_lines(self) -> list[str]:
        lines = []
        for at, kind, node, detail in self.trace:
            if isinstance(detail, Message):
                text = detail.describe()
            elif kind == EV_TICK:
                text = f"node {node} ({Role(detail).name.lower()})"
            else:
                text = f"node {node} {detail}" if node else str(detail)
            lines.append(f"{at:>7}ms {EVENT_NAMES[kind]:<8} {text}")
        return lines
