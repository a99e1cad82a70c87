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
* ``meta_bytes`` / ``meta_records``: the same for records on the broker's metadata topics
  (``META_TOPICS``: ``rmq_sys_mqbench_meta``, consumer-offset snapshots and topic configs; the delay
  service's progress marks, ``rmq_sys_mqbench_delay_progress``, which RocketMQ keeps in a file,
  ``delayOffset.json``), all replicas.
* ``batched_bytes``: the part of ``user_bytes`` on ``batch_topics`` (all replicas), so the cost of a
  batched message can be told from that of the messages that cannot be batched (delayed ones go
  alone, to the timer topics).
* ``plain_msgs`` / ``plain_bytes``: messages stored on their own topic as sent (not parked for a
  delay, not a delayed message's delivery), counted on the first store per group (inner-batch
  records count ``INNER_NUM``), and their bytes over all replicas;
  ``parked_msgs`` / ``parked_bytes``: delayed messages parked on the delay topics
  (``SCHEDULE_TOPIC_XXXX``, the timer topic), ``delivered_msgs`` / ``delivered_bytes``: their copies
  re-put on the real topic when due (records carrying ``MQBENCH_DELAY_SRC``). A delayed message is
  stored twice once delivered; the three classes are what ``mqbench.codecs.footprint`` predicts.
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
from mqbench.broker.formats.record import decode_message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH
from mqbench.broker.formats.record_peek import peek_fields, peek_properties, peek_topic
from mqbench.codecs.registry import Codec, codec_for_type_id
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError, MqbenchError, UserError
from mqbench.run.stamps import PROPERTY_DELIVER_NS, PROPERTY_INTENDED_NS, PROPERTY_RUN
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM, PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.timer.plan import PROGRESS_TOPIC
from mqbench.broker.timer.rewrite import DELAY_TOPICS


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
    plain_msgs: int = 0
    plain_bytes: int = 0
    parked_msgs: int = 0
    parked_bytes: int = 0
    delivered_msgs: int = 0
    delivered_bytes: int = 0
    dledger_framing: bool = False
    batch: BatchFigures = field(default_factory=BatchFigures)


#: The reference broker's own records in the log: never billed to the user's messages.
META_TOPICS = frozenset({META_TOPIC, PROGRESS_TOPIC})

STAMP_PROPERTIES = frozenset({PROPERTY_RUN, PROPERTY_INTENDED_NS, PROPERTY_DELIVER_NS})


def _stamp_bytes(properties: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in properties.items() if k in STAMP_PROPERTIES)


def _stamps_in(buf, at: int, sysflag: int, codec: Codec | None, properties: dict[str, str]) -> int:
    """Bytes the timing stamps take in the record at ``buf[at:]`` (module doc; ``properties``: its own)."""
    if not sysflag & SYSFLAG_INNER_BATCH:
        return _stamp_bytes(properties)
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
    """(topic, bytes, stamp bytes, inner message count, a delayed message's delivery) of every valid
    record of the store's log."""
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
                properties = peek_properties(item.buf, item.at) if topic not in META_TOPICS else {}
                if sysflag & SYSFLAG_INNER_BATCH:
                    count = max(1, int(properties.get(PROPERTY_INNER_NUM, "1")))
                stamps = 0 if topic in META_TOPICS else _stamps_in(item.buf, item.at, sysflag, codec, properties)
            except (CorruptDataError, ValueError, MqbenchError):
                continue
            yield (topic, item.entry_size if item.entry_size is not None else item.length, stamps, count,
                   PROPERTY_MQBENCH_DELAY_SOURCE in properties)


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
            figures.dledger_framing = figures.dledger_framing or bool(detect(root).dledger_dirs)
            for topic, size, stamps, count, delivered in _records(root, codec):
                if topic in META_TOPICS:
                    figures.meta_bytes += size
                    figures.meta_records += 1
                    continue
                figures.user_bytes += size - stamps
                figures.stamp_bytes += stamps
                figures.user_records += 1
                if topic in batch_topics and not delivered:
                    figures.batched_bytes += size - stamps
                kind = "parked" if topic in DELAY_TOPICS else "delivered" if delivered else "plain"
                setattr(figures, f"{kind}_bytes", getattr(figures, f"{kind}_bytes") + size - stamps)
                if first_of_group:
                    setattr(figures, f"{kind}_msgs", getattr(figures, f"{kind}_msgs") + count)
                if first_of_group and topic in wanted:
                    figures.batch.add(count)
        except UserError:   # not a store (a broker that never started): nothing stored there
            continue
    return figures


#: Messages of the workload the prediction is built on (``predicted_footprint``).
PREDICTION_SAMPLE_MSGS = 4096


def predicted_footprint(plan, cell, seed: int, compress_over_bytes: int, batch_msgs: dict[str, int],
                        dledger_framing: bool) -> dict | None:
    """What ``mqbench.codecs.footprint`` predicts for the cell (``Footprint.as_dict()`` plus the
    command that prints it), from ``PREDICTION_SAMPLE_MSGS`` messages of the run's profile and seed
    at the cell's batch size per topic (delays stripped when the cell has ``delay=off``); None for
    a workload without a profile."""
    import dataclasses
    import itertools

    from mqbench.codecs.footprint import predict_footprint
    from mqbench.workloads.generator import generate_messages

    profile = plan.workload.profile
    if profile is None:
        return None
    messages = itertools.islice(generate_messages(profile, seed), PREDICTION_SAMPLE_MSGS)
    if cell.delay == "off":
        messages = (dataclasses.replace(m, delay_ms=0, delay_level=0) for m in messages)
    batch_compression = cell.batch_compression == "on"
    footprint = predict_footprint(messages, cell.codec, batch_msgs, compress_over_bytes=compress_over_bytes,
                                  batch_compression=batch_compression, dledger_framing=dledger_framing)
    out = footprint.as_dict()
    uniform = set(batch_msgs.values())
    batch_text = str(uniform.pop()) if len(uniform) == 1 else "N (per topic: " + ", ".join(
        f"{topic} {size}" for topic, size in sorted(batch_msgs.items())) + ")"
    out["command"] = (f"mqbench codecs bench --workload {profile.name} --codecs {cell.codec.spec} --batch {batch_text} "
                      f"--compress-over {compress_over_bytes} --batch-compression {cell.batch_compression}"
                      + ("" if dledger_framing else " --framing commitlog"))
    return out
