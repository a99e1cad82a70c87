"""A probe of how contended this machine's caches and memory are right now, to read beside a
benchmark's CPU µs per message.

Why: on a shared machine (other processes, or other tenants of a VM's host) the broker's CPU per
message moves with the time of day, by up to 1.8x within a minute, with the same code path per
message. In one broker process with the sender pinned beside it (40 one-second slices, load 10-37)
the broker's and the sender's µs/msg moved together (correlation 0.97), so the machine ran both
slower; a probe that stays in the core's own caches did not follow (-0.21), this one, which walks
a dict far larger than a core's L2, did (0.65). So a row with a high probe was measured on a
contended machine: compare CPU figures of rows with similar probes, or repeat.

``memory_probe_ns()``: the best of ``rounds`` timings of ``lookups`` random lookups in a dict of
``PROBE_ENTRIES`` small strings (about 40 MB, built once per process, seeded), in ns of this
thread's CPU time per lookup. About 60 ms per call after the first.
"""
from __future__ import annotations

import random
import time

PROBE_ENTRIES = 400_000
PROBE_LOOKUPS = 20_000
PROBE_SEED = 1

_table: dict[int, str] | None = None
_keys: list[int] = []


def _ensure_table() -> tuple[dict[int, str], list[int]]:
    global _table, _keys
    if _table is None:
        rng = random.Random(PROBE_SEED)
        _table = {i: str(i) for i in range(PROBE_ENTRIES)}
        _keys = [rng.randrange(PROBE_ENTRIES) for _ in range(PROBE_LOOKUPS)]
    return _table, _keys


def memory_probe_ns(rounds: int = 3, lookups: int = PROBE_LOOKUPS) -> float:
    """ns of thread CPU time per random lookup, the best of ``rounds`` (module doc)."""
    table, keys = _ensure_table()
    keys = keys[:max(1, min(lookups, len(keys)))]
    best = float("inf")
    for _ in range(max(1, rounds)):
        started = time.thread_time_ns()
        total = 0
        for key in keys:
            total += len(table[key])
        best = min(best, (time.thread_time_ns() - started) / len(keys))
    return best
