"""Intended send times paired with the messages that go at them, for one producer worker (sans-I/O).

Two ways to time a workload:

* **as recorded** (``rate=None``): message ``m`` is intended at ``start_ns + m.send_offset_us``
  (the profile's own rate shape, or a trace's recorded times);
* **at a given rate** (``rate`` a number, or ``"max"`` for a search that sets it later with
  ``set_rate``): the messages keep their order and content, the times come from a ``Pacer``.

Splitting over ``workers`` producer processes: worker ``i`` sends the messages whose position in
the workload is ``i`` modulo ``workers`` (every worker reads the same deterministic workload), so
the union of all workers is exactly the workload. At a given total rate ``R`` each worker paces
``R / workers``, worker ``i`` shifted by ``i / R`` so the workers interleave. With
``own_messages`` the iterator already holds this worker's messages (a generated profile's part,
``generate_messages(part=(i, workers))``): all of them are taken, on the same share of the rate,
so a worker's cost does not grow with the number of workers. Only at a rate: as-recorded times
come from the one stream.

``overdue(now_ns)`` is the publish backlog: messages whose intended time has passed but that were
not taken yet. It reads ahead in the workload as far as needed (never past ``now_ns``) and keeps
what it read, so counting does not lose messages; except for an ``endless`` workload (a generated
profile: it never runs out) at a rate, where every intended time has a message, so the pacer's
count is the backlog and nothing is read (generating a message costs 40-130 µs: reading a far
backlog ahead stalled a worker that was behind a fast rate). Nothing here reads a clock.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import replace
from typing import Iterator

from mqbench.errors import UserError
from mqbench.harness.pacer import NS_PER_S, Pacer
from mqbench.workloads.message import TraceMessage


def worker_share(messages: Iterator[TraceMessage], worker_index: int, workers: int) -> Iterator[TraceMessage]:
    """Every ``workers``-th message starting at ``worker_index``."""
    if workers < 1 or not 0 <= worker_index < workers:
        raise UserError(f"worker {worker_index} of {workers} does not exist")
    return itertools.islice(messages, worker_index, None, workers)


class Schedule:
    """``peek_ns`` / ``take`` / ``take_due`` / ``overdue`` over one worker's share of a workload."""

    def __init__(self, messages: Iterator[TraceMessage], start_ns: int, end_ns: int, *,
                 rate: float | str | None = None, worker_index: int = 0, workers: int = 1,
                 strip_delays: bool = False, endless: bool = False, own_messages: bool = False):
        if own_messages and rate is None:
            raise UserError("own messages per worker need a rate (as-recorded times come from one stream)")
        self.start_ns = int(start_ns)
        self.endless = endless
        self.end_ns = int(end_ns)
        self.workers = workers
        self.strip_delays = strip_delays
        self._messages = messages if own_messages else worker_share(messages, worker_index, workers)
        self._ahead: deque[tuple[int, TraceMessage]] = deque()
        self._exhausted = False
        self._returned: deque[TraceMessage] = deque()
        self.taken = 0
        self.worker_index = worker_index
        self.pacer: Pacer | None = None
        self.total_rate_per_s: float | None = None
        if rate is None:
            return
        if rate == "max":
            self.pacer = Pacer(0.0, self.start_ns, end_ns=self.end_ns)
            self.total_rate_per_s = 0.0
        else:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
                raise UserError(f"rate must be a number of msgs/s > 0 or 'max', got {rate!r}")
            self.pacer = Pacer(0.0, self.start_ns, end_ns=self.end_ns)
            self.set_rate(rate, self.start_ns)

    def _next_message(self) -> TraceMessage | None:
        if self._returned:
            return self._returned.popleft()
        if self._exhausted:
            return None
        message = next(self._messages, None)
        if message is None:
            self._exhausted = True
            return None
        if self.strip_delays and (message.delay_ms or message.delay_level):
            message = replace(message, delay_ms=0, delay_level=0)
        return message

    def _fill(self, up_to: int) -> None:
        """Read ahead until ``up_to`` entries are buffered, the schedule ends or the workload does."""
        while len(self._ahead) < up_to:
            if self.pacer is not None:
                intended = self.pacer.peek_ns()
                if intended is None:
                    return
                message = self._next_message()
                if message is None:
                    return
                self.pacer.take()
            else:
                message = self._next_message()
                if message is None:
                    return
                intended = self.start_ns + message.send_offset_us * 1000
                if intended >= self.end_ns:
                    self._exhausted = True
                    return
            self._ahead.append((intended, message))

    def peek_ns(self) -> int | None:
        """The next intended send time, or None when the schedule (or the workload) has ended."""
        ahead = self._ahead
        if not ahead:
            self._fill(1)
        return ahead[0][0] if ahead else None

    def take_due(self, now_ns: int) -> tuple[int, TraceMessage] | None:
        """``take()`` when the next intended time is ``<= now_ns``, else None and nothing taken
        (not due yet, or the schedule ended: ``peek_ns`` tells which). One call per message for a
        sender that is on time, instead of ``peek_ns`` and ``take``; at a rate the next message is
        read only once it is due (``peek_ns`` reads it ahead)."""
        ahead = self._ahead
        if not ahead:
            pacer = self.pacer
            if pacer is not None:       # _fill(1), taking straight from the pacer when due
                intended = pacer._next_ns           # pacer.peek_ns(), inline
                if intended is None or intended > now_ns:
                    return None
                if self._returned or self._exhausted or self.strip_delays:
                    message = self._next_message()
                else:                                # _next_message's usual case, inline
                    message = next(self._messages, None)
                    if message is None:
                        self._exhausted = True
                if message is None:
                    return None
                pacer.take()
                self.taken += 1
                return intended, message
            self._fill(1)
            if not ahead:
                return None
        if ahead[0][0] > now_ns:
            return None
        self.taken += 1
        return ahead.popleft()

    def take(self) -> tuple[int, TraceMessage]:
        if not self._ahead:
            self._fill(1)
        if not self._ahead:
            raise UserError("the send schedule has ended; nothing left to take")
        self.taken += 1
        return self._ahead.popleft()

    def overdue(self, now_ns: int, cap: int = 100_000) -> int:
        """How many intended times ``<= now_ns`` are not taken yet (at most ``cap``)."""
        if self.endless and self.pacer is not None and not self._exhausted:
            read = sum(1 for t, _ in self._ahead if t <= now_ns)
            return min(cap, read + self.pacer.overdue(now_ns, cap=max(0, cap - read)))
        return self._read_due(now_ns, cap)

    def _read_due(self, now_ns: int, cap: int | None = None) -> int:
        """Read ahead every intended time ``<= now_ns`` (at most ``cap``); how many are buffered."""
        count = 0
        while cap is None or count < cap:
            if count >= len(self._ahead):
                self._fill(count + 1)
                if count >= len(self._ahead):
                    return count
            if self._ahead[count][0] > now_ns:
                return count
            count += 1
        return count

    @property
    def paused(self) -> bool:
        """True while a rate-driven schedule is at rate 0 (a search draining): not ended, only idle."""
        return self.pacer is not None and self.total_rate_per_s == 0 and not self._exhausted

    def set_rate(self, total_rate_per_s: float, from_ns: int) -> None:
        """From ``from_ns`` on, a constant total rate (shared by the workers); 0 pauses.

        Entries read ahead but not due by ``from_ns`` go back to the workload in their order and are
        re-timed on the new rate; nothing is skipped."""
        if self.pacer is None:
            raise UserError("set_rate needs a schedule started with a rate ('max' or a number)")
        if isinstance(total_rate_per_s, bool) or not total_rate_per_s >= 0:
            raise UserError(f"rate must be a number of msgs/s >= 0, got {total_rate_per_s!r}")
        self._read_due(from_ns)   # the times already due keep their messages (counting read none)
        keep = deque((t, m) for t, m in self._ahead if t <= from_ns)
        self._returned.extendleft(reversed([m for t, m in self._ahead if t > from_ns]))
        self._ahead = keep
        self.total_rate_per_s = float(total_rate_per_s)
        if total_rate_per_s > 0:
            shift_ns = self.worker_index * NS_PER_S // total_rate_per_s
            self.pacer = Pacer(total_rate_per_s / self.workers, int(from_ns + shift_ns), end_ns=self.end_ns)
        else:
            self.pacer = Pacer(0.0, int(from_ns), end_ns=self.end_ns)
