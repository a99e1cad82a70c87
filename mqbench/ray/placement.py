"""Which node each driver worker runs on, and which topics it carries (pure: no Ray, no clock).

Two policies:

* ``topic`` (the default): a topic's producers and consumers share one node, so its end-to-end
  latency is read on one clock (no cross-machine offset error). The topics are packed into cells,
  one cell per node (largest share first, into the cell with the least share so far); a cell gets
  producers and consumers in proportion to its share of the messages (largest remainder, at least
  one each); its producers send only its topics, at the total rate times the cell's share, and its
  consumers join only the groups that read its topics. Used when it fits: at least one producer
  and consumer per cell and at most ``workers_per_node`` of each per node; otherwise ``spread``.
* ``spread``: producer ``i`` and consumer ``i`` share node ``i // workers_per_node`` (in turn over
  the nodes); every worker carries every topic, so an e2e latency may cross nodes (its bound is
  reported).

``plan(...)`` returns a ``Placement``: the policy used, the cells and, per worker (role, index),
its node index and cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mqbench.errors import UserError

POLICIES = ("topic", "spread")


@dataclass
class Cell:
    node: int
    topics: list[str] = field(default_factory=list)
    share: float = 0.0
    producers: int = 0
    consumers: int = 0


@dataclass
class Placement:
    policy: str
    cells: list[Cell]
    workers: dict[tuple[str, int], tuple[int, int | None]]   # (role, index) -> (node index, cell index)

    def node_of(self, role: str, index: int) -> int:
        return self.workers[(role, index)][0]


def _apportion(total: int, shares: list[float]) -> list[int] | None:
    """``total`` split over ``shares`` by largest remainder, at least one each; None if it cannot."""
    if total < len(shares):
        return None
    whole = sum(shares) or 1.0
    exact = [total * s / whole for s in shares]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        while counts[i] == 0:           # at least one each, taken from the largest
            counts[max(range(len(counts)), key=lambda j: (counts[j], -j))] -= 1
            counts[i] += 1
    return counts


Where = dict[tuple[str, int], tuple[int, int | None]]


def _spread(producers: int, consumers: int, nodes: int, workers_per_node: int) -> Placement:
    workers: Where = {}
    for role, count in (("producer", producers), ("consumer", consumers)):
        for index in range(count):
            workers[(role, index)] = ((index // workers_per_node) % nodes, None)
    return Placement("spread", [], workers)


def plan(topic_shares: dict[str, float], producers: int, consumers: int, nodes: int, workers_per_node: int,
         policy: str = "topic") -> Placement:
    """The placement of ``producers`` and ``consumers`` workers on ``nodes`` (module doc)."""
    if policy not in POLICIES:
        raise UserError(f"placement {policy!r}: choose one of {', '.join(POLICIES)}")
    if nodes < 1:
        raise UserError("no node to place workers on")
    if policy == "spread" or not topic_shares:
        return _spread(producers, consumers, nodes, workers_per_node)
    topics = sorted(topic_shares, key=lambda t: (-topic_shares[t], t))
    cells = [Cell(node) for node in range(min(nodes, len(topics), producers, max(consumers, 1)))]
    for topic in topics:
        cell = min(cells, key=lambda c: (c.share, c.node))
        cell.topics.append(topic)
        cell.share += topic_shares[topic]
    shares = [c.share for c in cells]
    producer_counts = _apportion(producers, shares)
    consumer_counts = _apportion(consumers, shares) if consumers else [0] * len(cells)
    if producer_counts is None or consumer_counts is None or \
            max(producer_counts + consumer_counts) > workers_per_node:
        return _spread(producers, consumers, nodes, workers_per_node)
    workers: Where = {}
    for role, counts in (("producer", producer_counts), ("consumer", consumer_counts)):
        index = 0
        for position, (cell, count) in enumerate(zip(cells, counts)):
            setattr(cell, role + "s", count)
            for _ in range(count):
                workers[(role, index)] = (cell.node, position)
                index += 1
    return Placement("topic", cells, workers)
