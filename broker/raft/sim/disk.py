"""A fake disk for one simulated node: page cache, fsync, and what a crash leaves behind.

Writes land in the page cache (``view``, what the running node reads) and in a list of unsynced
operations; ``sync()`` makes them durable. Two kinds of crash:

* ``process_crash()`` (kill -9): the OS keeps the page cache, so everything written survives.
* ``power_loss(rng)``: only synced data survives, plus a random prefix of the unsynced writes in
  order; the write after that prefix may be torn (half an entry on disk, its checksum wrong).

``recover()`` rebuilds the node's storage the way the DLedger log recovery does: it checks each
entry's checksum from the start of the unsynced region and drops a torn last entry (and anything
after it). Entries are stored with a CRC32 of (index, term, kind, data).
"""
from __future__ import annotations

import random
import zlib

from mqbench.errors import InvariantViolation

from ..storage import MemoryStorage
from ..types import Entry, HardState


def entry_crc(entry: Entry) -> int:
    return zlib.crc32(entry.data, (entry.index * 2654435761 + entry.term * 40503 + entry.kind) & 0xFFFFFFFF)


class SimDisk:
    __slots__ = ("view", "durable", "durable_state", "unsynced", "torn_drops", "synced_commit")

    def __init__(self):
        self.view = MemoryStorage()
        self.durable: list[tuple[Entry, int]] = []      # position i holds index i + 1
        self.durable_state = HardState()
        self.unsynced: list[tuple] = []                   # ("e", entries) / ("h", hard_state)
        self.torn_drops = 0
        self.synced_commit = 0

    def write(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Entries first, then the hard state (whose commit index only covers written entries)."""
        if entries:
            self.view.append(entries)
            self.unsynced.append(("e", entries))
        if hard_state is not None:
            self.view.set_hard_state(hard_state)
            self.unsynced.append(("h", hard_state))

    def sync(self) -> None:
        for op in self.unsynced:
            self._apply(op)
        self.unsynced.clear()
        self.synced_commit = max(self.synced_commit, self.durable_state.commit)

    def _apply(self, op: tuple) -> None:
        kind, value = op
        if kind == "h":
            self.durable_state = value
            return
        first = value[0].index
        if first > len(self.durable) + 1:
            raise InvariantViolation(f"disk write at {first} leaves a gap after {len(self.durable)}")
        del self.durable[first - 1:]
        self.durable.extend((e, entry_crc(e)) for e in value)

    def process_crash(self) -> None:
        self.sync()   # the page cache outlives the process

    def power_loss(self, rng: random.Random) -> None:
        units: list[tuple] = []
        for kind, value in self.unsynced:
            if kind == "h":
                units.append(("h", value))
            else:
                units.extend(("e", [e]) for e in value)
        keep = rng.randrange(len(units) + 1)
        for op in units[:keep]:
            self._apply(op)
        if keep < len(units) and units[keep][0] == "e" and rng.random() < 0.5:
            torn = units[keep][1][0]
            first = torn.index
            if first <= len(self.durable) + 1:
                del self.durable[first - 1:]
                # Half of the entry reached the platter: its checksum cannot match.
                self.durable.append((torn._replace(data=torn.data[: len(torn.data) // 2]), entry_crc(torn) ^ 1))
        self.unsynced.clear()

    def recover(self) -> MemoryStorage:
        """Storage for the restarted node: checked entries up to the first bad one, durable state."""
        good = len(self.durable)
        for pos, (entry, crc) in enumerate(self.durable):
            if entry.index != pos + 1 or entry_crc(entry) != crc:
                good = pos
                break
        if good < len(self.durable):
            self.torn_drops += len(self.durable) - good
            del self.durable[good:]
        state = self.durable_state
        self.view = MemoryStorage((e for e, _ in self.durable), state)
        return self.view
