"""Deterministic fault simulation of the Raft core (``mqbench sim raft``).

``run_seed(seed, ...)`` runs one seeded schedule and returns a ``SeedResult``; ``run_seeds`` runs
many. Same seed, same parameters: same trace, bit for bit (``SeedResult.trace_digest``).
"""
from .cluster import SeedResult, SimParams, Violation, run_seed
from .runner import SimSummary, run_seeds

__all__ = ["SeedResult", "SimParams", "SimSummary", "Violation", "run_seed", "run_seeds"]
