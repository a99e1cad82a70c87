"""A fake network: per-message delay (hence reordering), loss, duplication and partitions.

Partitions are a set of blocked directed links: a symmetric partition blocks both directions
between two sides, an asymmetric one a single direction. A message is dropped if its link is
blocked when it is delivered (so messages in flight when a partition starts are lost too).
"""
from __future__ import annotations

import random


class SimNetwork:
    __slots__ = ("rng", "loss", "dup", "delay_min_ms", "delay_max_ms", "blocked", "dropped", "duplicated")

    def __init__(self, rng: random.Random, *, loss: float, dup: float, delay_min_ms: int, delay_max_ms: int):
        self.rng = rng
        self.loss = loss
        self.dup = dup
        self.delay_min_ms = delay_min_ms
        self.delay_max_ms = delay_max_ms
        self.blocked: set[tuple[int, int]] = set()
        self.dropped = 0
        self.duplicated = 0

    def delays_ms(self) -> tuple[int, ...]:
        """Delivery delays of one sent message: () when lost, two when duplicated."""
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            self.dropped += 1
            return ()
        first = rng.randint(self.delay_min_ms, self.delay_max_ms)
        if self.dup and rng.random() < self.dup:
            self.duplicated += 1
            return (first, rng.randint(self.delay_min_ms, self.delay_max_ms))
        return (first,)

    def passes(self, src: int, dst: int) -> bool:
        return (src, dst) not in self.blocked

    def partition(self, side_a, side_b) -> None:
        for a in side_a:
            for b in side_b:
                self.blocked.add((a, b))
                self.blocked.add((b, a))

    def cut_one_way(self, src: int, dst: int) -> None:
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()
