"""``Applier``: a replica's state machine, applying committed Raft entries to its store in log order.

* ``apply(entries)``: records are made readable (``store.replicated.commit``: dispatched to the
  consume queues); a metadata record (``entries.is_meta_record``) is applied to the store's
  metadata (``entries.apply_meta``) after everything before it was dispatched, so a topic's config
  is in place before the records that follow it. Safe to repeat after a resource error (the write
  gate retries it): a metadata entry is applied once (``meta_applied``). An update the store
  refuses is kept in ``errors`` (by Raft index) for the write that proposed it; ``take_errors()``
  hands them over once the entries are applied.
* ``applied_index``: the last entry applied. ``mark`` (``store.raft_storage.AppliedMark``,
  ``raft-applied.json``) says how far the store's metadata files reflect the log, so a restarted
  replica re-applies only what follows it: ``save_mark(index)`` persists the metadata then the
  mark (blocking; run it in a worker thread).
"""
from __future__ import annotations

from mqbench.broker.raft.types import Entry, EntryKind
from mqbench.broker.store.raft_storage import AppliedMark
from mqbench.broker.store.store import Store

from .entries import META_TOPIC_BYTES, apply_meta, is_meta_record


class Applier:
    """See module doc."""

    def __init__(self, store: Store, mark: AppliedMark, applied_index: int):
        self.store = store
        self.mark = mark
        self.applied_index = applied_index
        self.meta_applied = applied_index      # metadata entries applied (a retried apply skips them)
        self.errors: dict[int, Exception] = {}

    def apply(self, entries: list[Entry]) -> None:
        replicated = self.store.replicated
        mark = META_TOPIC_BYTES
        # the metadata topic's name is in every metadata record: one substring look per entry first
        for entry in entries:
            if mark in entry.data and entry.index > self.meta_applied and entry.kind == EntryKind.NORMAL \
                    and is_meta_record(entry.data):
                replicated.commit(entry.index - 2)          # dispatch what precedes it first: log order
                error = apply_meta(self.store, entry.data, entry.index)
                if error is not None:
                    self.errors[entry.index] = error
                self.meta_applied = entry.index
        replicated.commit(entries[-1].index - 1)
        self.meta_applied = max(self.meta_applied, entries[-1].index)
        self.applied_index = entries[-1].index

    def take_errors(self) -> dict[int, Exception]:
        errors, self.errors = self.errors, {}
        return errors

    def save_mark(self, index: int) -> None:
        self.mark.save(self.store, index)
