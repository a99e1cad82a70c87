"""Where the send benchmark's processes run: CPU pinning (``--broker-cpus``, ``--sender-cpus``) and
a sampled record of where the scheduler put them.

Why this exists: an unbatched closed-loop send is a lock-step ping-pong (the broker reads all
``--concurrency`` requests in one read, proposes them as one append and answers them in one write;
the sender turns them around in one write), so the broker and the load generator take turns. On
this 2-core VM ``bench broker`` on ``single`` showed two costs (about 54 and 75 broker CPU µs/msg)
with the same code path (the same requests per read, responses per write, records per proposal,
and under one garbage collection per cell). Whether the two turn-takers share a CPU is the
scheduler's choice; switched every second within one run it moved the cost little, but over whole
runs at FIFO priority the pair pinned to one CPU ran at the lower level in 18 of 19 runs, left to
the scheduler in 10 of 19 (README, "Two cost levels"). So it is recorded
(``sender_on_broker_cpu_share``) and can be fixed, and runs are compared like for like.

Linux only (``os.sched_setaffinity``, ``/proc/PID/stat``); elsewhere pinning is a user error and the
sampled share is None.
"""
from __future__ import annotations

import os
import threading

from mqbench.errors import UserError

SAMPLE_PERIOD_S = 0.01


def parse_cpus(text: str | None) -> frozenset[int] | None:
    """``"0"``, ``"0,1"`` or ``"0-3"`` (taskset's list form) as a set of CPU numbers; None for
    None or ``""`` (not pinned). A CPU this process may not use is a user error."""
    if text is None or not text.strip():
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise UserError(f"bad CPU list {text!r}: expected numbers and ranges like 0,2-3") from None
    allowed = available_cpus()
    if allowed is not None and not cpus <= allowed:
        raise UserError(f"CPU list {text!r} names CPUs this machine does not offer "
                        f"(available: {','.join(map(str, sorted(allowed)))})")
    return frozenset(cpus)


def available_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on, or None where the platform cannot say."""
    getter = getattr(os, "sched_getaffinity", None)
    return frozenset(getter(0)) if getter is not None else None


def pin(pids: list[int], cpus: frozenset[int] | None) -> None:
    """Restrict ``pids`` (0: this process) to ``cpus``; nothing for None."""
    if cpus is None:
        return
    setter = getattr(os, "sched_setaffinity", None)
    if setter is None:
        raise UserError("CPU pinning needs Linux (os.sched_setaffinity)")
    for pid in pids:
        setter(pid, cpus)


def last_cpu(pid: int) -> int | None:
    """The CPU ``pid`` last ran on (``/proc/PID/stat`` field 39), None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(stat.rsplit(b")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def same_cpu_share(samples: list[tuple[int | None, int | None]]) -> float | None:
    """The share of (broker CPU, sender CPU) samples in which both were on the same CPU; samples
    with an unreadable side are left out; None when none is left."""
    read = [(a, b) for a, b in samples if a is not None and b is not None]
    if not read:
        return None
    return sum(1 for a, b in read if a == b) / len(read)


class PlacementSampler:
    """A thread sampling every ``period_s`` on which CPU ``broker_pid`` and ``sender_pid`` last ran,
    between ``start()`` and ``stop()``; ``share()`` is ``same_cpu_share`` of the samples. It reads
    two small /proc files per sample (about 0.1 % of a core at 10 ms)."""

    def __init__(self, broker_pid: int, sender_pid: int, period_s: float = SAMPLE_PERIOD_S) -> None:
        self.broker_pid = broker_pid
        self.sender_pid = sender_pid
        self.period_s = period_s
        self.samples: list[tuple[int | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="placement-sampler")

    def start(self) -> "PlacementSampler":
        self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.share()

    def share(self) -> float | None:
        return same_cpu_share(self.samples)

    def _sample(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append((last_cpu(self.broker_pid), last_cpu(self.sender_pid)))
