"""What a cell's brokers really stored, read from their stores after the cell (never from requests).

``stored_figures(stores, batch_topics, user_topics)`` walks the log of every replica's store
(read-only, ``broker.store.inspect_files.iter_log``; the brokers have stopped) and returns a
``StoredFigures``:

* ``user_bytes``: bytes of every record that is not broker metadata, summed over all replicas. A
  record counts with its DLedger entry framing (the entry's size) where the log is DLedger, else
  its commitlog record size. Delayed messages parked on the timer/schedule topics are user
  records too (the user's message, waiting).
* ``meta_bytes`` / ``meta_records``: the same for records on the broker's metadata topic
  (``rmq_sys_mqbench_meta``: consumer-offset snapshots, topic configs), all replicas.
* ``batched_bytes``: the part of ``user_bytes`` on ``batch_topics`` (all replicas), so the cost of a
  batched message can be told from that of the messages that cannot be batched (delayed ones go
  alone, to the timer topics).
* ``batch``: messages per record of the records on ``batch_topics`` (when empty: on
  ``user_topics``), counted on the first store of ``stores`` per broker group only (every replica
  holds the same records): an inner-batch record (BatchCQ topic) holds ``INNER_NUM`` messages,
  any other record one. ``BatchFigures.as_dict()`` is the result's ``batch_achieved`` field.

Consume queues, index files and checkpoints are not counted: they are derived from the log and
``disk_bytes_per_msg`` (allocated bytes of the whole store) still shows them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mqbench.broker.server.entries import META_TOPIC
from mqbench.broker.store.inspect_files import iter_log, list_segments, log_dirs
from mqbench.broker.store.record import SYSFLAG_INNER_BATCH, peek_fields, peek_properties, peek_topic
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError, UserError


@dataclass
class BatchFigures:
    """Messages per stored record: ``counts[n]`` = how many records held ``n`` messages."""

    counts: dict[int, int] = field(default_factory=dict)

    def add(self, msgs: int) -> None:
        self.counts[msgs] = self.counts.get(msgs, 0) + 1

    @property
    def records_total(self) -> int:
        return sum(self.counts.values())

    @property
    def msgs_total(self) -> int:
        return sum(n * c for n, c in self.counts.items())

    def percentile(self, share: float) -> int | None:
        """The smallest n such that at least ``share`` of the records hold n messages or fewer."""
        total = self.records_total
        if not total:
            return None
        seen = 0
        for n in sorted(self.counts):
            seen += self.counts[n]
            if seen >= share * total:
                return n
        return max(self.counts)

    def as_dict(self) -> dict:
        records = self.records_total
        return {"records_total": records, "msgs_total": self.msgs_total,
                "msgs_per_record_mean": self.msgs_total / records if records else None,
                "msgs_per_record_p50": self.percentile(0.5), "msgs_per_record_p99": self.percentile(0.99)}


@dataclass
class StoredFigures:
    user_bytes: int = 0
    user_records: int = 0
    batched_bytes: int = 0
    meta_bytes: int = 0
    meta_records: int = 0
    batch: BatchFigures = field(default_factory=BatchFigures)


def _records(root: str):
    """(topic, bytes, inner message count) of every valid record of the store's log."""
    detection = detect(root)
    for rel, is_dledger in log_dirs(root, detection.dledger_dirs):
        segments = list_segments(os.path.join(root, rel), rel)
        for item in iter_log(segments, rel, is_dledger):
            if isinstance(item, dict) or not item.is_record or item.damage:   # damage, Raft no-ops
                continue
            try:
                topic = peek_topic(item.buf, item.at)
                count = 1
                if peek_fields(item.buf, item.at)[4] & SYSFLAG_INNER_BATCH:
                    count = max(1, int(peek_properties(item.buf, item.at).get("INNER_NUM", "1")))
            except (CorruptDataError, ValueError):
                continue
            yield topic, item.entry_size if item.entry_size is not None else item.length, count


def stored_figures(stores: list[tuple[str, os.PathLike | str]], batch_topics: set[str],
                   user_topics: set[str]) -> StoredFigures:
    """Figures of ``stores`` (``(broker group, store root)`` per replica); see the module doc."""
    figures = StoredFigures()
    counted_groups: set[str] = set()
    wanted = batch_topics or user_topics
    for group, root in stores:
        root = os.fspath(root)
        if not os.path.isdir(root):
            continue
        first_of_group = group not in counted_groups
        counted_groups.add(group)
        try:
            for topic, size, count in _records(root):
                if topic == META_TOPIC:
                    figures.meta_bytes += size
                    figures.meta_records += 1
                    continue
                figures.user_bytes += size
                figures.user_records += 1
                if topic in batch_topics:
                    figures.batched_bytes += size
                if first_of_group and topic in wanted:
                    figures.batch.add(count)
        except UserError:   # not a store (a broker that never started): nothing stored there
            continue
    return figures
