"""Running many seeds and summarising them (the library side of ``mqbench sim raft``)."""
from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from ..config import Durability
from .cluster import SeedResult, SimParams, run_seed


def percentile(values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class SimSummary:
    seeds: int
    first_seed: int
    passed: int
    failure: SeedResult | None
    elapsed_s: float
    events: int
    failover_ticks: list[int] = field(default_factory=list)
    failover_ms: list[int] = field(default_factory=list)
    acked_entries: int = 0
    leaders_elected: int = 0
    torn_entries_dropped: int = 0

    @property
    def seeds_per_s(self) -> float:
        return self.passed / self.elapsed_s if self.elapsed_s > 0 else 0.0


def params_for_seed(seed: int, params: SimParams, durability: str) -> SimParams:
    """``durability`` "both" alternates the modes by seed (odd: fsynced, even: in memory)."""
    if durability == "both":
        mode = Durability.QUORUM_FSYNCED if seed % 2 else Durability.QUORUM_MEMORY
    else:
        mode = Durability(durability)
    return params if params.durability == mode else replace(params, durability=mode)


def _run_one(job: tuple[int, SimParams]) -> SeedResult:
    seed, params = job
    return run_seed(seed, params)


def _worker_init() -> None:
    # The pool ends its workers with SIGTERM, and Ctrl-C is the parent's to handle: a worker must
    # not inherit the CLI's handlers (which turn signals into KeyboardInterrupt tracebacks).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _results(jobs: list[tuple[int, SimParams]], processes: int) -> Iterator[SeedResult]:
    """Seed results in seed order, computed by ``processes`` worker processes (1: in this one).

    A seed's outcome depends on its seed and parameters only, so the order of the results, and
    therefore the first violation reported, is the same whatever ``processes`` is."""
    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _run_one(job)
        return
    # fork: the workers inherit the imported core (no re-import per process, nothing to pickle
    # but the seed and its parameters).
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_worker_init) as pool:
        yield from pool.imap(_run_one, jobs, chunksize=max(1, min(32, len(jobs) // (processes * 8))))


def run_seeds(count: int, first_seed: int = 1, params: SimParams = SimParams(), *, durability: str = "both",
              progress: Callable[[int, int], None] | None = None, stop_on_failure: bool = True,
              processes: int = 1) -> SimSummary:
    """Run seeds ``first_seed .. first_seed + count - 1``; stop at the first violation.

    ``durability``: "both", "fsync" or "memory" (see ``params_for_seed``). ``processes`` > 1 runs
    seeds in that many worker processes; the summary (counts, percentiles, the first violation in
    seed order) is identical to a run in one process."""
    started = time.perf_counter()
    summary = SimSummary(seeds=0, first_seed=first_seed, passed=0, failure=None, elapsed_s=0.0, events=0)
    jobs = [(first_seed + n, params_for_seed(first_seed + n, params, durability)) for n in range(count)]
    for n, result in enumerate(_results(jobs, processes)):
        summary.seeds += 1
        summary.events += result.events
        summary.acked_entries += result.acked_entries
        summary.leaders_elected += result.leaders_elected
        summary.torn_entries_dropped += result.torn_entries_dropped
        if result.ok:
            summary.passed += 1
            if result.failover_ticks is not None:
                summary.failover_ticks.append(result.failover_ticks)
                summary.failover_ms.append(result.failover_ms)
        elif summary.failure is None:
            summary.failure = result
            if stop_on_failure:
                break
        if progress is not None:
            progress(n + 1, count)
    summary.elapsed_s = time.perf_counter() - started
    return summary
