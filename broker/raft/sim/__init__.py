"""Deterministic fault simulation of the Raft core (``mqbench sim raft``).

``run_seed(seed, ...)`` runs one seeded schedule and returns a ``SeedResult``; ``run_seeds`` runs
many. Same seed, same parameters: same trace, bit for bit (``SeedResult.trace_digest``).

By concern: ``model`` (parameters, fault rates, results), ``events`` (the discrete-event loop on a
fake clock, trace and digest), ``faults`` (the fault model and its table), ``checkers`` (Raft's
invariants after every event), ``cluster`` (the nodes, disks, network, client and the phases),
``disk``/``network`` (the fakes), ``runner`` (many seeds, in worker processes).
"""
from .cluster import SeedResult, SimParams, Violation, run_seed
from .runner import SimSummary, run_seeds

__all__ = ["SeedResult", "SimParams", "SimSummary", "Violation", "run_seed", "run_seeds"]
