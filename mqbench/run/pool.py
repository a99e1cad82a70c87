"""A producer worker's messages drawn before the run's clock starts (sans-I/O).

Generating a profile's message (an orders body: ~40 random draws, a JSON encode, its key, tags
and properties) costs 30-40 µs of CPU, more than the whole send path the run's load generator may
spend per message (#15: 30 µs). So at a rate, a producer worker draws its part of the workload
*before* the clock starts (start-up, like the orders catalogue) and sends from that pool:

* ``pool_size(rate_per_s, warmup_ms, duration_ms)`` is how many messages the worker will send at
  its share of the rate over warm-up and measured phase, with a margin, at most
  ``POOL_MSGS_MAX`` (a ``max`` search: the cap). A run that needs no more than that sends exactly
  the workload's messages, in order, as before.
* ``Pool(messages, size)`` / ``pooled(messages, size)`` yields the first ``size`` messages of
  ``messages`` (drawn at once),
  then, when the run goes on longer than the pool, the same messages again, in the same order.
  Every send still gets its own message id (UNIQ_KEY), intended time and born time; what repeats
  after ``size`` messages is the payload, key, tags and properties, so a codec, batch or key-index
  comparison sees the workload's distributions (a batch holds up to 64 distinct bodies of
  thousands). A workload that ends before ``size`` (a finite count) ends the pool too.

Only a generated profile at a rate uses a pool: a trace's rows are read, not generated, and a
profile's own timing (``--rate profile``) needs the arrival times of an endless stream.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator

from mqbench.workloads.message import TraceMessage

#: Messages one producer worker draws before the run at most: 32,768 orders messages take about
#: 1.2 s of CPU and 40 MB (bodies ~650 B plus their objects); more than 20 s of a run at 1,500
#: msgs/s per worker.
POOL_MSGS_MAX = 32_768
#: Sent on top of the rate's share: the pacer's first message at 0, rounding, a late start.
POOL_MARGIN = 1.05
POOL_MSGS_MIN = 64


def pool_size(rate_per_s: float | str | None, warmup_ms: int, duration_ms: int) -> int:
    """Messages to draw for a worker sending ``rate_per_s`` (its share; ``"max"`` or None: the cap)."""
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)) or not rate_per_s > 0:
        return POOL_MSGS_MAX
    needed = math.ceil(rate_per_s * (warmup_ms + duration_ms) / 1000 * POOL_MARGIN) + 1
    return max(POOL_MSGS_MIN, min(POOL_MSGS_MAX, needed))


class Pool:
    """The first ``size`` messages of ``messages``, drawn at once; iterating gives them in order and,
    when the workload had that many, again and again (module doc). A workload that ends before
    ``size`` (a finite count) ends the pool too. ``messages`` is the list drawn (a caller
    prepares what it sends of each, once)."""

    def __init__(self, messages: Iterator[TraceMessage], size: int) -> None:
        size = max(1, size)
        self.messages: list[TraceMessage] = list(itertools.islice(messages, size))
        self.repeats = len(self.messages) >= size

    def __iter__(self) -> Iterator[TraceMessage]:
        return itertools.cycle(self.messages) if self.repeats else iter(self.messages)


def pooled(messages: Iterator[TraceMessage], size: int) -> Iterator[TraceMessage]:
    """``iter(Pool(messages, size))``."""
    return iter(Pool(messages, size))
