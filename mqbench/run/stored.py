"""What a cell's brokers really stored, read from their stores after the cell (never from requests).

``stored_figures(stores, batch_topics, user_topics)`` walks the log of every replica's store
(read-only, ``broker.store.segment_files.iter_log``; the brokers have stopped) and returns a
``StoredFigures``:

* ``user_bytes``: bytes of every record that is not broker metadata, summed over all replicas,
  less the bytes of mqbench's own timing stamps in them (``stamp_bytes``). A record counts with its
  DLedger entry framing (the entry's size) where the log is DLedger, else its commitlog record
  size. Delayed messages parked on the timer/schedule topics are user records too (the user's
  message, waiting).
* ``stamp_bytes``: what the ``mqbRun``/``mqbIntendedNs``/``mqbDeliverNs`` properties (``stamps``,
  about 50 bytes a message) add to the user records, all replicas: exact where properties are
  stored plain (``len("key\x01value\x02")`` each); for a batch compressed whole, the stored stream
  less the same items without the stamps compressed again with the cell's codec (``codec``: its
  level; the record's type bits otherwise). Production traffic carries no such stamps.
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
from mqbench.broker.store.segment_files import iter_log, list_segments, log_dirs
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.compression import compression_type_id, inner_batch_items
from mqbench.broker.formats.record import (
    SYSFLAG_COMPRESSED,
    SYSFLAG_INNER_BATCH,
    decode_message,
    peek_fields,
    peek_properties,
    peek_topic,
)
from mqbench.codecs.registry import Codec, codec_for_type_id
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError, MqbenchError, UserError
from mqbench.run.stamps import PROPERTY_DELIVER_NS, PROPERTY_INTENDED_NS, PROPERTY_RUN
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM


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
    stamp_bytes: int = 0
    batched_bytes: int = 0
    meta_bytes: int = 0
    meta_records: int = 0
    batch: BatchFigures = field(default_factory=BatchFigures)


STAMP_PROPERTIES = frozenset({PROPERTY_RUN, PROPERTY_INTENDED_NS, PROPERTY_DELIVER_NS})


def _stamp_bytes(properties: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in properties.items() if k in STAMP_PROPERTIES)


def _stamps_in(buf, at: int, sysflag: int, codec: Codec | None) -> int:
    """Bytes the timing stamps take in the record at ``buf[at:]`` (module doc)."""
    if not sysflag & SYSFLAG_INNER_BATCH:
        return _stamp_bytes(peek_properties(buf, at))
    msg, _ = decode_message(buf, at, check_crc=False)
    items = inner_batch_items(msg.body, msg.sysflag)
    if not msg.sysflag & SYSFLAG_COMPRESSED:
        return sum(_stamp_bytes(item.properties) for item in items)
    type_id = compression_type_id(msg.sysflag)
    if codec is None or codec.type_id != type_id and not (type_id == 0 and codec.name == "zlib"):
        codec = codec_for_type_id(type_id or 0)
    stripped = [BatchItem(item.body, {k: v for k, v in item.properties.items() if k not in STAMP_PROPERTIES},
                          item.flag) for item in items]
    return max(0, len(msg.body) - len(codec.compress(encode_batch(stripped))))


def _records(root: str, codec: Codec | None):
    """(topic, bytes, stamp bytes, inner message count) of every valid record of the store's log."""
    detection = detect(root)
    for rel, is_dledger in log_dirs(root, detection.dledger_dirs):
        segments = list_segments(os.path.join(root, rel), rel)
        for item in iter_log(segments, rel, is_dledger):
            if isinstance(item, dict) or not item.is_record or item.damage:   # damage, Raft no-ops
                continue
            try:
                topic = peek_topic(item.buf, item.at)
                sysflag = peek_fields(item.buf, item.at)[4]
                count = 1
                if sysflag & SYSFLAG_INNER_BATCH:
                    count = max(1, int(peek_properties(item.buf, item.at).get(PROPERTY_INNER_NUM, "1")))
                stamps = 0 if topic == META_TOPIC else _stamps_in(item.buf, item.at, sysflag, codec)
            except (CorruptDataError, ValueError, MqbenchError):
                continue
            yield topic, item.entry_size if item.entry_size is not None else item.length, stamps, count


def stored_figures(stores: list[tuple[str, os.PathLike | str]], batch_topics: set[str],
                   user_topics: set[str], codec: Codec | None = None) -> StoredFigures:
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
            for topic, size, stamps, count in _records(root, codec):
                if topic == META_TOPIC:
                    figures.meta_bytes += size
                    figures.meta_records += 1
                    continue
                figures.user_bytes += size - stamps
                figures.stamp_bytes += stamps
                figures.user_records += 1
                if topic in batch_topics:
                    figures.batched_bytes += size - stamps
                if first_of_group and topic in wanted:
                    figures.batch.add(count)
        except UserError:   # not a store (a broker that never started): nothing stored there
            continue
    return figures
