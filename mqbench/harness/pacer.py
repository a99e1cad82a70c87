"""Open-loop load: intended send times from a rate shape, and the thin asyncio loop that follows them.

Coordinated omission: a closed-loop load generator (send, wait for the ack, send the next) slows
down exactly when the system does, so the slow period is sampled less and its latency hides. An
open-loop generator sends on a schedule fixed in advance; when the sender falls behind (the broker
pushes back, the event loop is busy), the lag between the *intended* and the *actual* send time is
recorded as ``publish_delay`` (``metrics.RunMetrics.record_send``), so a stall is visible instead
of silently lowering the offered load (OpenMessaging Benchmark issue 247 / PR 248).

``Pacer`` is sans-I/O: it never reads a clock and never sleeps. It is given the run's start time
(integer ns on the caller's monotonic clock) and a rate shape, and answers "when should the next
message go?" (``peek_ns``/``take``) and "which messages are due by now?" (``due``). A rate shape is

* a number: a constant rate in msgs/s;
* a list of ``(start_ms, rate_per_s)`` steps, ``start_ms`` strictly increasing from the run start;
  the rate before the first step is 0 and a step of rate 0 pauses the load (bursts and ramps);
* a callable ``rate_per_s(t_ms)`` or an object with ``rate_at(t_ms)`` (a workload profile's
  ``RateShape``): the next message goes ``1/rate`` after the previous one, the rate read at the
  previous message's time; where the rate is 0 the pacer looks again every millisecond (so a
  rate function needs ``end_ns``).

Exactness: inside a step of rate ``r`` that starts at ``s``, message ``k`` is intended at exactly
``s + floor(k * 1e9 / r)`` ns, computed with integer arithmetic on the exact rational value of ``r``,
so schedules never drift however long the run. ``set_rate`` starts a new constant step at a given
time (the max-rate search changes the rate this way).

``run_open_loop`` is the adapter that sleeps: it starts a send for every intended time and never
waits for acks.
"""
from __future__ import annotations

import asyncio
import copy
import inspect
import math
import time
from fractions import Fraction
from typing import Awaitable, Callable, Sequence, Union

from mqbench.errors import UserError

RateFunction = Callable[[float], float]
RateSpec = Union[float, int, Sequence[tuple[float, float]], RateFunction]
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
_IDLE_PROBE_NS = NS_PER_MS


def _exact_rate(rate: float, what: str) -> Fraction:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, Fraction)) or not math.isfinite(rate) or rate < 0:
        raise UserError(f"{what}: rate must be a finite number of msgs/s >= 0, got {rate!r}")
    # limit_denominator keeps the integer arithmetic small; 1e-9 msgs/s resolution is plenty.
    return Fraction(rate).limit_denominator(1_000_000_000)


def parse_steps(steps: Sequence, start_ns: int) -> list[tuple[int, Fraction]]:
    """Validate ``(start_ms, rate_per_s)`` steps into ``(start_ns, exact rate)`` segments."""
    segments: list[tuple[int, Fraction]] = []
    if not steps:
        raise UserError("a stepped rate needs at least one (start_ms, rate_per_s) step")
    previous_ms = None
    for position, step in enumerate(steps):
        if not isinstance(step, (tuple, list)) or len(step) != 2:
            raise UserError(f"rate step {position} must be (start_ms, rate_per_s), got {step!r}")
        start_ms, rate = step
        if isinstance(start_ms, bool) or not isinstance(start_ms, (int, float)) or not math.isfinite(start_ms) \
                or start_ms < 0:
            raise UserError(f"rate step {position}: start_ms must be a number >= 0, got {start_ms!r}")
        if previous_ms is not None and start_ms <= previous_ms:
            raise UserError(f"rate step {position}: start_ms {start_ms} must be after the previous step's {previous_ms}")
        previous_ms = start_ms
        segments.append((start_ns + round(start_ms * NS_PER_MS), _exact_rate(rate, f"rate step {position}")))
    return segments


class Pacer:
    """Intended send times (integer ns) for one rate shape, from ``start_ns`` until ``end_ns``.

    ``peek_ns()`` is the next intended time (None once the schedule has ended), ``take()`` consumes
    it, ``due(now_ns)`` takes every intended time at or before ``now_ns``. ``taken`` counts them.
    """

    def __init__(self, rate: RateSpec, start_ns: int, *, end_ns: int | None = None):
        self.start_ns = int(start_ns)
        self.end_ns = None if end_ns is None else int(end_ns)
        self.taken = 0
        self._function: RateFunction | None = None
        self._segments: list[tuple[int, Fraction]] = []
        # (segment index, its start, rate numerator, denominator, its end or None) of the segment
        # being paced at a positive rate: the exact integer formula without Fraction calls per message
        self._paced: tuple[int, int, int, int, int | None] | None = None
        if hasattr(rate, "rate_at") or callable(rate):
            if self.end_ns is None:
                # A function may stay at 0 forever; without an end the pacer would probe forever.
                raise UserError("a rate function needs an end time (end_ns)")
            self._function = rate.rate_at if hasattr(rate, "rate_at") else rate
        elif isinstance(rate, (list, tuple)):
            self._segments = parse_steps(rate, self.start_ns)
        else:
            self._segments = [(self.start_ns, _exact_rate(rate, "constant rate"))]
        self._segment = 0
        self._index_in_segment = 0
        self._last_ns: int | None = None
        self._next_ns = self._compute_next()

    # -- the schedule --

    def _compute_next(self) -> int | None:
        candidate = self._next_from_function() if self._function is not None else self._next_from_segments()
        if candidate is None or (self.end_ns is not None and candidate >= self.end_ns):
            return None
        return candidate

    def _next_from_segments(self) -> int | None:
        paced = self._paced
        if paced is not None and paced[0] == self._segment:
            _index, start_ns, numerator, denominator, end_ns = paced
            candidate = start_ns + (self._index_in_segment * NS_PER_S * denominator) // numerator
            if end_ns is None or candidate < end_ns:
                return candidate
        while self._segment < len(self._segments):
            segment_start_ns, rate = self._segments[self._segment]
            segment_end_ns = self._segments[self._segment + 1][0] if self._segment + 1 < len(self._segments) else None
            if rate > 0:
                # floor(k * 1e9 / r) with r = p/q exactly: (k * 1e9 * q) // p.
                offset_ns = (self._index_in_segment * NS_PER_S * rate.denominator) // rate.numerator
                candidate = segment_start_ns + offset_ns
                self._paced = (self._segment, segment_start_ns, rate.numerator, rate.denominator, segment_end_ns)
                if segment_end_ns is None or candidate < segment_end_ns:
                    return candidate
            if segment_end_ns is None:
                return None  # a final step of rate 0: the schedule is over
            self._segment += 1
            self._index_in_segment = 0
        return None

    def _next_from_function(self) -> int | None:
        at_ns = self.start_ns if self._last_ns is None else self._last_ns
        first = self._last_ns is None
        while True:
            if self.end_ns is not None and at_ns >= self.end_ns:
                return None
            rate = self._function((at_ns - self.start_ns) / NS_PER_MS)
            if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
                raise UserError(f"rate function returned {rate!r} at {(at_ns - self.start_ns) / NS_PER_MS} ms; "
                                "it must be a finite number >= 0")
            if rate > 0:
                return at_ns if first else at_ns + max(1, round(NS_PER_S / rate))
            at_ns += _IDLE_PROBE_NS
            first = True  # after a pause, the next message goes as soon as the rate is positive

    def peek_ns(self) -> int | None:
        """The next intended send time, or None when the schedule has ended."""
        return self._next_ns

    def take(self) -> int:
        """Consume and return the next intended send time (UserError when the schedule has ended)."""
        intended = self._next_ns
        if intended is None:
            raise UserError("the send schedule has ended; nothing left to take")
        self.taken += 1
        self._last_ns = intended
        index = self._index_in_segment = self._index_in_segment + 1
        paced = self._paced
        if paced is not None and paced[0] == self._segment and self._function is None:
            # ``_compute_next`` of a segment at a positive rate, inline (a call pair per message)
            candidate = paced[1] + (index * NS_PER_S * paced[3]) // paced[2]
            if (paced[4] is None or candidate < paced[4]) and (self.end_ns is None or candidate < self.end_ns):
                self._next_ns = candidate
                return intended
        self._next_ns = self._compute_next()
        return intended

    def due(self, now_ns: int, limit: int | None = None) -> list[int]:
        """Take every intended time ``<= now_ns`` (at most ``limit`` of them), oldest first."""
        out: list[int] = []
        while self._next_ns is not None and self._next_ns <= now_ns and (limit is None or len(out) < limit):
            out.append(self.take())
        return out

    def overdue(self, now_ns: int, cap: int = 1_000_000) -> int:
        """How many intended times ``<= now_ns`` are not taken yet (the publish backlog), at most ``cap``.

        Counts on a copy of the schedule; the pacer itself does not move. In the last constant step
        (a constant rate, ``set_rate``) the count is computed, not walked: a worker far behind a
        fast schedule (a saturated run, ``bench workers``) counts millions of intended times every
        progress report, and walking them starved its event loop.
        """
        counted = self._count_in_last_step(now_ns)
        if counted is not None:
            return min(counted, cap)
        probe = copy.copy(self)
        return len(probe.due(now_ns, limit=cap))

    def _count_in_last_step(self, now_ns: int) -> int | None:
        """Intended times ``<= now_ns`` not taken, when the schedule is in its last constant step of
        positive rate; None otherwise. Message ``k`` of the step is at ``s + floor(k * 1e9 * q / p)``,
        which is ``<= D`` (``D = now - s``) exactly when ``k * 1e9 * q < (D + 1) * p``."""
        if self._function is not None or self._next_ns is None or self._segment != len(self._segments) - 1:
            return None
        segment_start_ns, rate = self._segments[self._segment]
        if rate <= 0:
            return None
        limit_ns = now_ns if self.end_ns is None else min(now_ns, self.end_ns - 1)
        if limit_ns < self._next_ns:
            return 0
        span = (limit_ns - segment_start_ns + 1) * rate.numerator
        step = NS_PER_S * rate.denominator
        last_index = -(-span // step) - 1     # ceil(span / step) - 1: the last k at or before limit_ns
        return max(0, last_index - self._index_in_segment + 1)

    def set_rate(self, rate_per_s: float, from_ns: int) -> None:
        """From ``from_ns`` on, a constant ``rate_per_s`` (0 pauses); the schedule before is kept.

        ``from_ns`` must not be before the last taken time (the past cannot be rescheduled).
        """
        from_ns = int(from_ns)
        if self._last_ns is not None and from_ns < self._last_ns:
            raise UserError(f"cannot change the rate at {from_ns} ns, before the last taken send at {self._last_ns} ns")
        rate = _exact_rate(rate_per_s, "set_rate")
        self._function = None
        self._segments = [(from_ns, rate)]
        self._paced = None
        self._segment = 0
        # A message already taken exactly at from_ns counts as the new step's first.
        self._index_in_segment = 1 if self._last_ns == from_ns else 0
        self._next_ns = self._compute_next()


SendStarter = Callable[[int, int], Union[None, Awaitable[None]]]


async def run_open_loop(pacer: Pacer, start_send: SendStarter, *, clock_ns: Callable[[], int] = time.monotonic_ns,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, until_ns: int | None = None,
                        metrics=None, yield_every: int = 64) -> int:
    """Start a send at every intended time of ``pacer``; returns how many were started.

    ``start_send(intended_ns, sent_ns)`` must only *start* a send (queue a frame, create a task) and
    return; waiting for the ack here would turn the load closed-loop. If it returns an awaitable
    (e.g. a writer's ``drain()`` under backpressure) it is awaited, and the time lost shows up as
    publish delay of the following messages. ``metrics`` (a ``RunMetrics``) gets ``record_send``.
    The loop sleeps only while the next intended time is in the future; when behind, it sends the
    overdue messages back to back (never skipping one), yielding to the event loop every
    ``yield_every`` sends so that ack handlers run.
    """
    started = 0
    while True:
        intended = pacer.peek_ns()
        if intended is None or (until_ns is not None and intended >= until_ns):
            return started
        now = clock_ns()
        if intended > now:
            await sleep((intended - now) / NS_PER_S)
            continue
        pacer.take()
        sent_ns = clock_ns()
        if metrics is not None:
            metrics.record_send(intended, sent_ns)
        result = start_send(intended, sent_ns)
        if inspect.isawaitable(result):
            await result
        started += 1
        if started % yield_every == 0:
            await sleep(0)
