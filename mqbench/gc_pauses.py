"""Garbage-collector settings of mqbench's own long-running processes (broker, name server, run
workers): short, rare collector pauses instead of CPython's defaults (``settle_after_startup``).

Why: a process that handles thousands of messages a second allocates container objects (frames,
futures, dicts, Raft entries) that live a few milliseconds. With CPython's default thresholds
(700, 10, 10) a young collection runs every 700 allocations, so those objects survive two young
collections and are promoted to the oldest generation; that generation is then scanned whole
(every object the process holds: imported modules, the catalogue of a workload, the store's
tables) each time it grew by a quarter. Measured in ``mqbench run orders --layout raft3`` (a
probe timing every collection and the event loop's lag, load 6-8): the Raft leader ran a full
collection every few seconds, 50-260 ms each, and the producer worker 180-210 ms each: every
message sent or acknowledged during one waits for it, which is the publish-latency tail.

What ``settle_after_startup`` does, once, when start-up is over:

* ``gc.collect()`` then ``gc.freeze()``: what start-up built (modules, classes, tables, a
  workload's catalogue) moves to the permanent generation and is never scanned again (it is not
  freed either: it lives as long as the process, as it would anyway);
* young threshold ``GEN0_THRESHOLD`` (10,000 allocations instead of 700): a message's objects die
  before their first collection instead of being promoted, so the oldest generation grows slowly
  and its collections are rare and short. A young collection of 10,000 objects takes about a
  millisecond.

Nothing is disabled: reference cycles are still collected. ``MQBENCH_GC=default`` keeps CPython's
settings (for an A/B comparison).
"""
from __future__ import annotations

import gc
import os

ENV = "MQBENCH_GC"
GEN0_THRESHOLD = 10_000
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 10


def settle_after_startup() -> bool:
    """Apply the settings above (module doc) unless ``MQBENCH_GC=default``; True when applied."""
    if os.environ.get(ENV, "").strip().lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return True
