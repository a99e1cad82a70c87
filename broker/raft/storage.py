"""The log storage interface the Raft core reads, and an in-memory implementation.

The core never writes storage itself: it hands entries and hard state out in a ``Ready`` and the
application persists them (see ``types.Ready``). It only reads through ``Storage``:

* ``initial_state() -> HardState``: term, vote and commit as last persisted;
* ``entries(lo, hi) -> list[Entry]``: the entries with ``lo <= index < hi``; the caller keeps
  ``first_index() <= lo <= hi <= last_index() + 1``;
* ``term(i) -> int``: the term of entry ``i``; ``term(first_index() - 1)`` is defined (0 for an
  empty log); outside that range ``LogUnavailable`` is raised;
* ``first_index()`` (1: this log is never compacted, like DLedger's) and ``last_index()`` (0 when
  empty).

``MemoryStorage`` is the simulator's and the tests' storage; the broker uses an adapter over the
DLedger-framed log (``broker.store.dledger_storage``, ``broker.store.raft_storage``).
"""
from __future__ import annotations

from typing import Iterable, Protocol

from mqbench.errors import InvariantViolation

from .types import Entry, HardState


class LogUnavailable(InvariantViolation):
    """An index outside what the storage holds was asked for."""


class Storage(Protocol):
    def initial_state(self) -> HardState: ...
    def entries(self, lo: int, hi: int) -> list[Entry]: ...
    def term(self, index: int) -> int: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...


class MemoryStorage:
    """Entries in a Python list (position i holds index i; position 0 is a sentinel of term 0)."""

    __slots__ = ("_ents", "hard_state")

    def __init__(self, entries: Iterable[Entry] = (), hard_state: HardState = HardState()):
        self._ents: list[Entry] = [Entry(0, 0)]
        self.hard_state = hard_state
        self.append(list(entries))

    def initial_state(self) -> HardState:
        return self.hard_state

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo < 1 or hi > len(self._ents) or lo > hi:
            raise LogUnavailable(f"entries [{lo}, {hi}) outside [1, {len(self._ents)})")
        return self._ents[lo:hi]

    def term(self, index: int) -> int:
        if index < 0 or index >= len(self._ents):
            raise LogUnavailable(f"term of index {index} outside [0, {len(self._ents) - 1}]")
        return self._ents[index].term

    def first_index(self) -> int:
        return 1

    def last_index(self) -> int:
        return len(self._ents) - 1

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def append(self, entries: list[Entry]) -> None:
        """Store ``entries``, first replacing every stored entry at or after ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        if first < 1 or first > len(self._ents):
            raise InvariantViolation(f"append at {first} would leave a gap after {len(self._ents) - 1}")
        del self._ents[first:]
        self._ents.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index``."""
        del self._ents[index + 1:]

    def copy(self) -> "MemoryStorage":
        clone = MemoryStorage(hard_state=self.hard_state)
        clone._ents = list(self._ents)
        return clone
