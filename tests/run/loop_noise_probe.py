"""A reference pacer for timing tests: the scheduling noise of this event loop on this machine, now.

A timing test of the run's pacer ("messages go on time, up to scheduling noise") fails when the
machine starves its process (CI at load 18: publish delay p50 245 ms against a 20 ms limit), not
when the pacer is wrong. ``NoiseProbe`` runs in the same event loop, over the same phase, as an
ideal pacer: a slot every ``period_ms`` from the phase's start, each served (a timestamp) when the
loop first gets to it, at no cost. Its lateness is what any paced sender in this loop suffers that
is not its own doing, so a test judges the real pacer against it: the pacer's delay may exceed the
probe's by the test's own limit, never by more. On a quiet machine the probe's figures are ~0 and
the limits are what they always were.
"""
from __future__ import annotations

import asyncio
import time

MS = 1_000_000


class NoiseProbe:
    """Serve a slot every ``period_ms`` from ``start_ns`` until ``stop()``; ``late_ms`` per slot."""

    def __init__(self, start_ns: int, period_ms: float = 5.0):
        self.start_ns = start_ns
        self.period_ns = int(period_ms * MS)
        self.due_ns: list[int] = []
        self.served_ns: list[int] = []
        self._stopped = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        k = 0
        while not self._stopped.is_set():
            due = self.start_ns + k * self.period_ns
            now = time.monotonic_ns()
            if due > now:
                try:
                    await asyncio.wait_for(self._stopped.wait(), (due - now) / 1e9)
                    return
                except asyncio.TimeoutError:
                    pass
                now = time.monotonic_ns()
            self.due_ns.append(due)
            self.served_ns.append(now)
            k += 1

    async def stop(self) -> NoiseProbe:
        self._stopped.set()
        await self._task
        return self

    def late_ms(self, until_ns: int | None = None) -> list[float]:
        """Lateness of every slot due before ``until_ns`` (all by default), in ms."""
        return [(s - d) / MS for d, s in zip(self.due_ns, self.served_ns) if until_ns is None or d < until_ns]

    def late_ms_p50(self, until_ns: int | None = None) -> float:
        late = sorted(self.late_ms(until_ns))
        return late[len(late) // 2] if late else 0.0

    def backlog_at(self, end_ns: int) -> int:
        """Slots due before ``end_ns`` not served by then: what an ideal pacer at this rate would
        have left unsent at a phase end there."""
        return sum(1 for d, s in zip(self.due_ns, self.served_ns) if d < end_ns <= s) + \
            max(0, (end_ns - self.start_ns + self.period_ns - 1) // self.period_ns - len(self.due_ns))

    def summary(self, until_ns: int | None = None) -> str:
        late = sorted(self.late_ms(until_ns))
        if not late:
            return "noise probe: no slot"
        return (f"noise probe: {len(late)} slots late p50 {late[len(late) // 2]:.1f} ms, "
                f"p90 {late[int(len(late) * 0.9)]:.1f} ms, max {late[-1]:.1f} ms")
