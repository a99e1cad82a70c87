"""``DLedgerStorage``: the Raft core's ``Storage`` on a replica's DLedger files (the adapter).

Files, all in the replica's ``dledger-{selfId}/`` folder (spec section 11):

* ``data/`` and ``index/``: the DLedger-framed log (``broker.store.dledger_log.DLedgerLog``),
  which recovers a torn tail on open;
* ``currterm``: ``currTerm=<term>`` and ``voteLeader=<peer name or empty>`` lines (DLedger's Java
  properties text, ``broker.formats.dledger.encode_properties_file``), replaced atomically and
  fsynced (``broker.store.atomic.write_atomic``) whenever term or vote change;
* ``checkpoint``: ``endIndex``/``committedIndex``, written by ``DLedgerLog.save_checkpoint`` on
  ``close()``; the committed index is a hint (the leader tells followers again after a restart).

Index mapping: DLedger numbers entries from 0, Raft from 1 (0 is the empty log), so Raft index
``i`` is DLedger index ``i - 1``. A no-op entry is written with DLedger's NOOP magic (2), a normal
entry with magic 1. Peer ``n`` votes are stored as DLedger peer names (``peer_name(n)``, ``n1``
style by default; ``peer_id`` is its inverse).

Writing (the application, while handling a Ready): ``persist(ready)`` appends the Ready's
entries (truncating a divergent suffix first), writes term/vote if they changed, moves the commit
point, and fsyncs the log when ``ready.must_sync`` says so. Call ``close()`` on shutdown.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from mqbench.errors import CorruptDataError, InvariantViolation
from mqbench.broker.formats import dledger as fmt
from mqbench.broker.raft.storage import LogUnavailable
from mqbench.broker.raft.types import NONE, Entry, EntryKind, HardState, Ready

from .atomic import read_with_backup, write_atomic
from .dledger_log import DLedgerLog

CURRTERM_FILE = "currterm"


def default_peer_name(node_id: int) -> str:
    return f"n{node_id}"


def default_peer_id(name: str) -> int:
    """The node id of a DLedger peer name ``n<id>``; ValueError otherwise."""
    if not name.startswith("n") or not name[1:].isdigit():
        raise ValueError(f"not a peer name: {name!r}")
    return int(name[1:])


class DLedgerStorage:
    def __init__(self, directory: str | os.PathLike, *, data_segment_bytes: int = 1 << 30,
                 peer_name: Callable[[int], str] = default_peer_name,
                 peer_id: Callable[[str], int] = default_peer_id, log: DLedgerLog | None = None):
        self.directory = Path(directory)
        self.log = log if log is not None else DLedgerLog(self.directory, data_segment_bytes=data_segment_bytes)
        self.peer_name = peer_name
        self.peer_id = peer_id
        self.currterm_path = self.directory / CURRTERM_FILE
        where = str(self.currterm_path)
        saved = read_with_backup(self.currterm_path, lambda data: fmt.dledger_currterm(data, where=where))
        term, vote_name = saved if saved is not None else (0, None)
        self._term, self._vote = term, self._vote_id(vote_name)
        self._commit = self.log.committed_index + 1

    def _vote_id(self, name: str | None) -> int:
        if not name:
            return NONE
        try:
            node_id = self.peer_id(name)
        except ValueError:
            node_id = None
        if not node_id or node_id <= 0:
            raise CorruptDataError(f"voteLeader {name!r} names no known peer", where=str(self.currterm_path))
        return node_id

    # -- Storage (read side) -----------------------------------------------------------------
    def initial_state(self) -> HardState:
        return HardState(self._term, self._vote, self._commit)

    def first_index(self) -> int:
        return self.log.first_index + 1

    def last_index(self) -> int:
        return self.log.last_index + 1

    def term(self, index: int) -> int:
        if index == 0:
            return 0
        # A log whose oldest segments were deleted does not know the term before its first entry.
        if index < self.first_index() or index > self.last_index():
            raise LogUnavailable(f"term of index {index} outside [{self.first_index()}, {self.last_index()}]")
        return self.log.term_at(index - 1)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo < self.first_index() or hi > self.last_index() + 1 or lo > hi:
            raise LogUnavailable(f"entries [{lo}, {hi}) outside [{self.first_index()}, {self.last_index() + 1})")
        out = []
        for index in range(lo, hi):
            header, body = self.log.entry(index - 1)
            kind = EntryKind.NOOP if header.magic == fmt.DLEDGER_MAGIC_NOOP else EntryKind.NORMAL
            out.append(Entry(index, header.term, bytes(body), kind))
        return out

    # -- write side --------------------------------------------------------------------------
    def append(self, entries: list[Entry]) -> None:
        """Store ``entries``, first dropping every stored entry at or after ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1:
            raise InvariantViolation(f"append at {first} leaves a gap after {self.last_index()}")
        if first <= self.last_index():
            self.log.truncate_after(first - 2)
        for entry in entries:
            magic = fmt.DLEDGER_MAGIC_NOOP if entry.kind == EntryKind.NOOP else fmt.DLEDGER_MAGIC
            index, _pos = self.log.append(entry.term, entry.data, magic=magic)
            if index != entry.index - 1:
                raise InvariantViolation(f"DLedger wrote Raft entry {entry.index} at index {index + 1}")

    def set_hard_state(self, state: HardState) -> None:
        if (state.term, state.vote) != (self._term, self._vote):
            write_atomic(self.currterm_path, fmt.encode_properties_file(
                {"currTerm": state.term, "voteLeader": self.peer_name(state.vote) if state.vote else ""}))
            self._term, self._vote = state.term, state.vote
        if state.commit > self._commit:
            self._commit = state.commit
            self.log.set_committed(state.commit - 1)

    def persist(self, ready: Ready) -> None:
        """Step 1 of the Ready protocol: entries, then term/vote (fsynced), then an fsync of the
        log when the durability mode asks for one."""
        self.append(ready.entries)
        if ready.hard_state is not None:
            self.set_hard_state(ready.hard_state)
        if ready.must_sync:
            self.log.sync()

    def sync(self) -> None:
        self.log.sync()

    def close(self) -> None:
        self.log.close()
