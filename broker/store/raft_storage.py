"""The Raft core's ``Storage`` on a broker store: the Raft log IS the store's DLedger commitlog.

``RaftLogStorage`` is ``DLedgerStorage`` (the read side, ``currterm`` with term and vote) over the
store's own ``DLedgerLog``, with every write going through the store's ``ReplicatedCommitLog``
(``store.replicated``) so that the store's queue-offset table, dispatch and group commit stay in
step:

* appending entries: ``replicated.truncate_after`` for a divergent suffix, then
  ``replicated.append_replicated_batch`` for the entries (one write; a record is restamped with
  its queue and physical offsets there; a no-op gets DLedger's NOOP magic 2). Raft index ``i`` is
  DLedger index ``i - 1``.
* term and vote: ``currterm`` (``currTerm``/``voteLeader``, peer names ``n0``, ``n1``... as the
  layout names replicas: Raft node id ``k + 1`` is replica ``nk``), replaced atomically and
  fsynced on change.
* reading: the most recent entries (up to ``CACHE_ENTRIES`` / ``CACHE_BYTES``) are kept in memory
  exactly as stored (restamped), since the leader sends and every replica applies entries just
  after appending them; older ones are read from the DLedger files.
* the log fsync (``sync``): the store's group commit (``store.wait_durable``), safe to run in a
  worker thread while the event loop keeps appending.
* the commit point is moved by the state machine (``replicated.commit``) when committed entries
  are applied, not here, so metadata entries and dispatch happen in log order.

``AppliedMark`` is the small file ``raft-applied.json`` at the store root: ``{"schema":
"mqbench.raft-applied/1", "appliedIndex": N}``. It says that the store's metadata files
(``consumerOffset.json``, ``topics.json``) reflect every metadata entry up to Raft index N, so a
restarted replica re-applies the committed entries after N only. Written atomically after the
metadata was persisted; a missing file means 0 (re-apply everything committed).
"""
from __future__ import annotations

import json
from collections import deque
from operator import is_, itemgetter

from mqbench.errors import CorruptDataError, InvariantViolation
from .dledger_storage import DLedgerStorage
from mqbench.broker.raft.types import Entry, EntryKind, HardState
from mqbench.broker.formats import dledger as fmt
from mqbench.broker.formats.restamp import placement_cleared

from .atomic import read_with_backup, write_atomic
from .dledger_log import is_record_body
from .store import Store

CACHE_ENTRIES = 8192
_new_entry = tuple.__new__     # Entry(...) without the NamedTuple's Python-level __new__
_entry_data = itemgetter(2)    # Entry.data
_stored_body = itemgetter(1)   # the body of a (DLedger index, body as stored) pair
CACHE_BYTES = 16 << 20
APPLIED_FILE = "raft-applied.json"
APPLIED_SCHEMA = "mqbench.raft-applied/1"


def replica_name(node_id: int) -> str:
    """The DLedger/layout peer name of Raft node ``node_id`` (1 -> ``n0``)."""
    return f"n{node_id - 1}"


def replica_node_id(name: str) -> int:
    """The Raft node id of the layout replica ``name`` (``n0`` -> 1); ValueError otherwise."""
    if not name.startswith("n") or not name[1:].isdigit():
        raise ValueError(f"not a replica name: {name!r}")
    return int(name[1:]) + 1


class RaftLogStorage(DLedgerStorage):
    """The Raft ``Storage`` of one replica, on its ``Store`` (see module doc)."""

    def __init__(self, store: Store):
        if store.replicated is None or not store.raft_mode:
            raise InvariantViolation(f"the store at {store.root} is not a DLedger store in raft mode")
        super().__init__(store.replicated.dledger.directory, log=store.replicated.dledger, peer_name=replica_name,
                         peer_id=replica_node_id)
        self.store = store
        self.replicated = store.replicated
        self._recent: deque[Entry] = deque()      # consecutive, as stored; _recent[0].index is the oldest
        self._recent_bytes = 0

    def append(self, entries: list[Entry]) -> None:
        """Store ``entries``, first dropping every stored entry at or after ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1:
            raise InvariantViolation(f"append at {first} leaves a gap after {self.last_index()}")
        if first <= self.last_index():
            self.replicated.truncate_after(first - 2)
            while self._recent and self._recent[-1].index >= first:
                self._recent_bytes -= len(self._recent.pop().data)
        noop, record = fmt.DLEDGER_MAGIC_NOOP, fmt.DLEDGER_MAGIC
        placed = self.replicated.append_replicated_batch(
            [(e.term, e.data, noop if e.kind == EntryKind.NOOP else record) for e in entries])
        if len(placed) != len(entries) or placed[0][0] != first - 1 or placed[-1][0] != entries[-1].index - 1:
            self._check_placed(entries, placed)
        if all(map(is_, map(_entry_data, entries), map(_stored_body, placed))):
            self._remember(entries)     # a follower given the leader's stored bytes: they are what it wrote
        else:
            self._remember([_new_entry(Entry, (entry.index, entry.term, stored, entry.kind))
                            for entry, (_, stored) in zip(entries, placed)])

    @staticmethod
    def _check_placed(entries: list[Entry], placed: list[tuple[int, bytes]]) -> None:
        for entry, (index, _) in zip(entries, placed):
            if index != entry.index - 1:
                raise InvariantViolation(f"DLedger wrote Raft entry {entry.index} at index {index + 1}")
        raise InvariantViolation(f"DLedger wrote {len(placed)} entries of the {len(entries)} given")

    def _remember(self, entries: list[Entry]) -> None:
        """Keep ``entries`` (consecutive, as stored) as the newest of the recent cache."""
        recent = self._recent
        if recent and recent[-1].index + 1 != entries[0].index:
            recent.clear()
            self._recent_bytes = 0
        recent.extend(entries)
        self._recent_bytes += sum([len(entry.data) for entry in entries])
        while len(recent) > CACHE_ENTRIES or (self._recent_bytes > CACHE_BYTES and len(recent) > 1):
            self._recent_bytes -= len(recent.popleft().data)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        recent = self._recent
        if recent and lo >= recent[0].index and hi <= recent[-1].index + 1 and lo <= hi:
            base = recent[0].index
            return [recent[i - base] for i in range(lo, hi)]
        return super().entries(lo, hi)

    def term(self, index: int) -> int:
        recent = self._recent
        if recent and recent[0].index <= index <= recent[-1].index:
            return recent[index - recent[0].index].term
        return super().term(index)

    @staticmethod
    def same_entry(held: Entry, incoming: Entry) -> bool:
        """Is ``incoming`` (as a leader sent it) the entry this replica stored as ``held``? Records
        are compared with their restamped fields cleared (``restamp.placement_cleared``): the
        leader may send its copy before or after restamping, ours is restamped."""
        if held.kind != incoming.kind:
            return False
        if held.data == incoming.data:
            return True
        if not (is_record_body(held.data) and is_record_body(incoming.data)):
            return False
        try:
            return placement_cleared(held.data) == placement_cleared(incoming.data)
        except CorruptDataError:
            return False

    def stored_body(self, index: int) -> bytes:
        """The body of Raft entry ``index`` as this replica stored it."""
        return self.entries(index, index + 1)[0].data

    def set_hard_state(self, state: HardState) -> None:
        # term and vote only: the commit point moves when the entries are applied (replicated.commit)
        super().set_hard_state(HardState(state.term, state.vote, 0))

    def sync(self) -> None:
        """fdatasync every entry appended so far (thread-safe: group commit)."""
        self.store.wait_durable(self.store.log.end_offset)

    def close(self) -> None:
        """The store is closed by its owner."""


class AppliedMark:
    """``raft-applied.json`` (module doc)."""

    def __init__(self, store: Store):
        self.path = store.root / APPLIED_FILE
        where = str(self.path)
        saved = read_with_backup(self.path, lambda data: self._parse(data, where))
        self.index = saved or 0

    @staticmethod
    def _parse(data: bytes, where: str) -> int:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptDataError(f"not JSON: {exc}", where=where) from None
        index = doc.get("appliedIndex") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or doc.get("schema") != APPLIED_SCHEMA or isinstance(index, bool) \
                or not isinstance(index, int) or index < 0:
            raise CorruptDataError(f"expected {{'schema': {APPLIED_SCHEMA!r}, 'appliedIndex': N >= 0}}", where=where)
        return index

    def save(self, store: Store, index: int) -> None:
        """Persist the store's metadata, then record ``index`` (the caller had applied every entry
        up to ``index`` before calling)."""
        store.meta.persist()
        write_atomic(self.path, json.dumps({"schema": APPLIED_SCHEMA, "appliedIndex": index}).encode())
        self.index = index
