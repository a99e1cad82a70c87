"""The machine's pace during a ``--rate max`` search, recorded as context for its capacity (never used
to rescale it).

This 2-core VM has slow phases (30-60 s at 62-70 % of its speed) that a search can miss or meet, so
three seeds may differ by the machine, not the broker. They are visible from inside:

* ``pace_ns_per_step()``: CPU nanoseconds (process time) per step of a fixed Python loop: how fast
  the machine runs code for us at this moment (a busy hyperthread sibling, a slower host, stolen time
  the guest counts as ours), not how long we waited for a core. Under load 4-8 it alternated
  between about 0.54 and 1.05 of one reference from one second to the next.
* ``steal_ticks()``: the machine's stolen and total CPU ticks from ``/proc/stat``'s ``cpu`` line.

``PaceMeter`` samples the pace every time the run's loop turns (a quarter second, about 0.3 ms of CPU
each) and the steal ticks at each check's end; ``machine_pace(history, samples, capacity)`` is the
search record's ``machine_pace``: every judged check's median pace and steal share, and their
medians over the search and over the checks at the capacity (its holds and soaks): a capacity whose
checks ran at a quicker pace than the search's others held in a fast phase of the machine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

PACE_STEPS = 5_000  # about 0.3 ms of CPU


def pace_ns_per_step(steps: int = PACE_STEPS) -> float:
    """CPU nanoseconds of this process per step of a fixed loop (module doc)."""
    start = time.process_time_ns()
    total = 0
    for step in range(steps):
        total += step * step
    return (time.process_time_ns() - start) / steps


def steal_ticks(stat_line: str | None = None) -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine from ``/proc/stat``'s first line (or
    ``stat_line``); None where there is none (not Linux, unreadable, another shape)."""
    try:
        if stat_line is None:
            with open("/proc/stat", encoding="ascii") as handle:
                stat_line = handle.readline()
        fields = stat_line.split()
        if len(fields) < 9 or fields[0] != "cpu":
            return None
        ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return ticks[7], sum(ticks)


@dataclass(frozen=True)
class PaceSample:
    """One judged check: its number in the search's history, the median pace over it (None: not
    sampled) and the share of the machine's CPU ticks stolen by the host over it (None: unknown)."""

    check: int
    pace_ns_per_step: float | None
    steal_share: float | None


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


@dataclass
class PaceMeter:
    """Samples taken while a check runs (``sample``), closed into a ``PaceSample`` at its end
    (``close``)."""

    samples: list[PaceSample] = field(default_factory=list)
    _paces: list[float] = field(default_factory=list)
    _steal_before: tuple[int, int] | None = None

    def start(self) -> None:
        """A check starts: its steal ticks are counted from here."""
        self._paces = []
        self._steal_before = steal_ticks()

    def sample(self) -> None:
        self._paces.append(pace_ns_per_step())

    def close(self, check: int) -> None:
        after, before = steal_ticks(), self._steal_before
        share = None
        if after is not None and before is not None and after[1] > before[1]:
            share = max(0, after[0] - before[0]) / (after[1] - before[1])
        self.samples.append(PaceSample(check, _median(self._paces), share))
        self._paces = []


def machine_pace(history: list[dict], samples: list[PaceSample], capacity: float | None) -> dict:
    """The search record's ``machine_pace`` (module doc): ``by_check`` ([check, pace ns/step, steal
    share] of each judged check) and the medians over the search and at the capacity."""
    states = {h["check"]: (h["state"], h["rate_per_s"]) for h in history}
    at_capacity = [s for s in samples if capacity is not None and s.check in states
                   and states[s.check][1] == capacity and states[s.check][0] in ("hold", "soak")]
    return {"by_check": [[s.check, s.pace_ns_per_step, s.steal_share] for s in samples],
            "pace_ns_per_step_p50_search": _median([s.pace_ns_per_step for s in samples if s.pace_ns_per_step]),
            "pace_ns_per_step_p50_at_capacity": _median([s.pace_ns_per_step for s in at_capacity
                                                         if s.pace_ns_per_step]),
            "steal_share_p50_search": _median([s.steal_share for s in samples if s.steal_share is not None]),
            "steal_share_p50_at_capacity": _median([s.steal_share for s in at_capacity
                                                    if s.steal_share is not None])}
