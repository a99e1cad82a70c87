"""The simulator's vocabulary: run parameters, a seed's fault rates, a violation and a seed's result."""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import Durability
from ..types import NONE


@dataclass(frozen=True)
class SimParams:
    nodes: int = 3
    durability: Durability = Durability.QUORUM_FSYNCED
    tick_ms: int = 50
    heartbeat_ms: int = 100
    election_ms: int = 1000
    safety_ms: int = 8000
    budget_ticks: int = 100
    trace_events: int = 40
    max_events: int = 1_000_000      # a run needs about 1,500; far more means nodes spin on each other


@dataclass(frozen=True)
class FaultRates:
    """Fault and load rates of one seed, drawn from the seed itself."""

    loss: float
    dup: float
    delay_min_ms: int
    delay_max_ms: int
    fault_mean_interval_ms: int
    sync_ms: int
    propose_interval_ms: int
    max_down: int
    preferred_leader: int
    vote_crash_p: float

    @classmethod
    def draw(cls, rng: random.Random, params: SimParams) -> "FaultRates":
        n = params.nodes
        return cls(loss=rng.choice((0.0, 0.01, 0.05, 0.1, 0.2)), dup=rng.choice((0.0, 0.02, 0.1)),
                   delay_min_ms=rng.randint(0, 2), delay_max_ms=rng.choice((5, 20, 40, 150, 300)),
                   fault_mean_interval_ms=rng.choice((150, 300, 600, 1200)), sync_ms=rng.randint(1, 8),
                   propose_interval_ms=rng.choice((20, 50, 100)), max_down=(n - 1) // 2,
                   preferred_leader=rng.choice((NONE, NONE, rng.randint(1, n))),
                   vote_crash_p=rng.choice((0.0, 0.3, 0.7)))


class Violation(Exception):
    """A checker found a broken invariant (or the liveness budget ran out)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass
class SeedResult:
    seed: int
    ok: bool
    violation: str | None
    trace: list[str]
    trace_digest: str
    events: int
    sim_ms: int
    failover_ms: int | None
    failover_ticks: int | None
    acked_entries: int
    committed_entries: int
    leaders_elected: int
    torn_entries_dropped: int
    rates: FaultRates | None = None


#: The default parameters (a frozen value, shared).
DEFAULT_PARAMS = SimParams()
