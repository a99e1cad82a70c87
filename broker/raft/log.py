"""``RaftLog``: the node's view of its log, stable part in ``Storage`` plus an unstable tail.

Entries the node appended (as leader) or received (as follower) sit in ``unstable`` until the
application reports them persisted (``stable_to``). ``unstable`` may start below the storage's end:
then it shadows (replaces) the stored suffix, which the application overwrites when it persists the
Ready that carries the new entries. Indices handed out in a Ready but not yet advanced are "in
progress" (``_persist_from`` is the first index not yet handed out).

Invariants (violations raise InvariantViolation): the committed index never decreases and never
passes the last index; a committed entry is never truncated; an entry received with the index and
term of one this log holds has the same contents (Raft's Log Matching property: a leader creates at
most one entry per index in its term). Contents are compared with the storage's
``same_entry(held, incoming)`` when it has one (the broker's store restamps records, so its copies
differ from the leader's in offset fields only), else kind and data must be equal. A mismatch means
two leaders claimed one term, or a forged frame got in: the follower stops rather than keep either.
"""
from __future__ import annotations

from mqbench.errors import InvariantViolation

from .storage import Storage
from .types import Entry


READ_CHUNK_ENTRIES = 64     # entries read from storage at a time when a byte budget bounds the read


def entry_size_bytes(entry: Entry) -> int:
    """Bytes an entry takes on the DLedger log (48-byte header plus body), for flow control."""
    return 48 + len(entry.data)


def _same_entry(held: Entry, incoming: Entry) -> bool:
    return held.kind == incoming.kind and held.data == incoming.data


class RaftLog:
    __slots__ = ("storage", "unstable", "offset", "_persist_from", "committed", "applying", "applied", "_same")

    def __init__(self, storage: Storage, *, committed: int = 0, applied: int = 0):
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1          # index of unstable[0]
        self._persist_from = self.offset
        last = storage.last_index()
        # A crash may have lost entries the persisted commit index covered (documented loss of the
        # in-memory durability mode); the commit index is then clamped to what is there.
        self.committed = min(committed, last)
        self.applied = min(applied, self.committed)
        self.applying = self.applied                    # highest index handed out for applying
        self._same = getattr(storage, "same_entry", None) or _same_entry

    # -- reading -----------------------------------------------------------------------------
    def last_index(self) -> int:
        if self.unstable:
            return self.offset + len(self.unstable) - 1
        return self.storage.last_index()

    def last_term(self) -> int:
        if self.unstable:
            return self.unstable[-1].term
        return self.storage.term(self.storage.last_index())

    def term(self, index: int) -> int | None:
        """The term of entry ``index``, 0 for index 0, None beyond the last index."""
        if index >= self.offset and self.unstable:
            pos = index - self.offset
            return self.unstable[pos].term if pos < len(self.unstable) else None
        if index > self.storage.last_index():
            return None
        return self.storage.term(index)

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); with ``max_bytes``, stop once the total would pass it (at least one).

        With ``max_bytes`` the stored part is read ``READ_CHUNK_ENTRIES`` at a time, so the cost is
        that of what is returned, not of the whole range (a far-behind follower's range is the
        whole backlog; reading it for every append made catch-up quadratic)."""
        if lo >= hi:
            return []
        if max_bytes is None:
            if lo < self.offset:
                ents = self.storage.entries(lo, min(hi, self.offset))
                if hi > self.offset:
                    ents.extend(self.unstable[: hi - self.offset])
                return ents
            return self.unstable[lo - self.offset: hi - self.offset]
        out: list[Entry] = []
        total = 0
        index = lo
        while index < hi:
            if index < self.offset:
                chunk = self.storage.entries(index, min(hi, self.offset, index + READ_CHUNK_ENTRIES))
            else:
                chunk = self.unstable[index - self.offset: hi - self.offset]
            chunk_bytes = 48 * len(chunk) + sum([len(entry.data) for entry in chunk])
            if total + chunk_bytes <= max_bytes:       # the usual case: the whole chunk fits
                total += chunk_bytes
                out.extend(chunk)
                index += len(chunk)
                continue
            for entry in chunk:
                total += entry_size_bytes(entry)
                if total > max_bytes and out:
                    return out
                out.append(entry)
            index += len(chunk)
        return out

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's voting rule (section 5.4.1): is a log ending at (last_index, last_term) at least
        as up to date as ours?"""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (a guess at the last match)."""
        index = min(index, self.last_index())
        while index > 0:
            found = self.term(index)
            if found is not None and found <= term:
                break
            index -= 1
        return index

    def stable_last_index(self) -> int:
        """The highest index known persisted (everything below the unstable tail)."""
        return self.offset - 1 if self.unstable else self.last_index()

    # -- writing -----------------------------------------------------------------------------
    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append ``entries`` (consecutive), truncating everything from ``entries[0].index`` on."""
        if not entries:
            return
        after = entries[0].index
        if after <= self.committed:
            raise InvariantViolation(f"truncating committed entry {after} (committed {self.committed})")
        end = self.offset + len(self.unstable)
        if after == end and self.unstable:
            self.unstable.extend(entries)
        elif after <= self.offset or not self.unstable:
            if after > self.storage.last_index() + 1 and not self.unstable:
                raise InvariantViolation(f"append at {after} leaves a gap after {self.storage.last_index()}")
            self.offset = after
            self.unstable = list(entries)
            self._persist_from = after
        elif after < end:
            del self.unstable[after - self.offset:]
            self.unstable.extend(entries)
            self._persist_from = min(self._persist_from, after)
        else:
            raise InvariantViolation(f"append at {after} leaves a gap after {end - 1}")

    def maybe_append(self, prev_index: int, prev_term: int, commit: int, entries: tuple[Entry, ...]) -> int | None:
        """A follower's append (section 5.3): None when (prev_index, prev_term) does not match;
        otherwise append what is new, truncating a divergent suffix, advance the commit index to
        ``min(commit, last new index)`` and return the last new index."""
        if self.term(prev_index) != prev_term:
            return None
        last_new = prev_index + len(entries)
        for pos, entry in enumerate(entries):
            if self.term(entry.index) != entry.term:
                self.append(entries[pos:])
                break
            self._check_same(entry)
        self.commit_to(min(commit, last_new))
        return last_new

    def check_committed(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """For an append below the commit index (a retransmission): every entry of ``entries`` at or
        below the commit index must be the one this log holds, term and contents; InvariantViolation
        otherwise (a committed entry never changes)."""
        for entry in entries:
            if entry.index > self.committed:
                break
            if entry.index < 1:
                continue
            if self.term(entry.index) != entry.term:
                raise InvariantViolation(f"committed entry {entry.index} has term {self.term(entry.index)} here, "
                                         f"the leader sent term {entry.term}")
            self._check_same(entry)

    def _check_same(self, entry: Entry) -> None:
        held = self.entries(entry.index, entry.index + 1)[0]
        if not self._same(held, entry):
            raise InvariantViolation(f"entry {entry.index} of term {entry.term} differs from the one this log "
                                     f"holds ({len(held.data)} bytes here, {len(entry.data)} sent)")

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise InvariantViolation(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    # -- the Ready protocol ------------------------------------------------------------------
    def has_unpersisted(self) -> bool:
        return bool(self.unstable) and self._persist_from < self.offset + len(self.unstable)

    def take_unpersisted(self) -> list[Entry]:
        """Entries to persist in the next Ready; marks them in progress."""
        if not self.has_unpersisted():
            return []
        ents = self.unstable[self._persist_from - self.offset:]
        self._persist_from = self.offset + len(self.unstable)
        return ents

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are persisted: drop them from the unstable tail,
        unless they were replaced meanwhile (then a later Ready persists the replacement)."""
        pos = index - self.offset
        if self.unstable and 0 <= pos < len(self.unstable) and self.unstable[pos].term == term:
            del self.unstable[: pos + 1]
            self.offset = index + 1
            self._persist_from = max(self._persist_from, self.offset)

    def has_to_apply(self) -> bool:
        return self.committed > self.applying

    def take_to_apply(self) -> list[Entry]:
        if self.committed <= self.applying:
            return []
        ents = self.entries(self.applying + 1, self.committed + 1)
        self.applying = self.committed
        return ents

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index
