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

How it reads (the figures are those of the one log reader's walk, ``iter_log``, whatever the
path): the log reader reads each folder by windows through ``migrate.scan`` (``LogReader(...,
scan=)``, ``broker.store.log_runs``: in C where built) and hands over the records the scan passed
as runs of rows, so a record costs a row and its property string, decoded only where a figure
needs it (non-metadata records: the stamps, ``MQBENCH_DELAY_SRC``, ``INNER_NUM``). Any other item
(a blank, a Raft no-op, damage, where the data ends) is judged by the reader itself, as its walk
would; inner-batch records take the reference's per-record path.

Consume queues, index files and checkpoints are not counted: they are derived from the log and
``disk_bytes_per_msg`` (allocated bytes of the whole store) still shows them.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from mqbench.broker.server.entries import META_TOPIC
from mqbench.broker.store.segment_files import iter_log, list_segments, log_dirs
from mqbench.broker.store.log_reader import REPORT, FolderFiles, LogItem, LogReader
from mqbench.broker.store.log_runs import LogRun
from mqbench.broker.formats import record as record_module
from mqbench.broker.formats.record import decode_properties
from mqbench.broker.formats.record_layout import _I32
from mqbench.migrate import scan as window_scan
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.compression import compression_type_id, inner_batch_items
from mqbench.broker.formats.record import decode_message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH
from mqbench.broker.formats.record_peek import peek_properties, peek_topic
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

_WINDOW_BYTES = 4 << 20         # one read and one summarize per window of a log file
_SYSFLAG_AT = 36
# record.decode_properties of a str: its C form where built (the same rules), one call less
_decode_str = getattr(record_module._sendpath, "decode_properties", None) or decode_properties


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


def _figure(buf, at: int, size: int, codec: Codec | None, topic: str | None = None, props=None):
    """(topic, ``size``, stamp bytes, inner message count, a delayed message's delivery) of the
    valid record at ``buf[at:]``, or None when its topic or properties cannot be read (it is not
    counted). ``topic``/``props`` (its property string, ASCII): already read by the caller."""
    try:
        if topic is None:
            topic = peek_topic(buf, at)
        if topic in META_TOPICS:
            return topic, size, 0, 1, False
        sysflag = _I32.unpack_from(buf, at + _SYSFLAG_AT)[0]
        # an ASCII string decodes as str by the same rules (in C where built: record.decode_properties)
        properties = peek_properties(buf, at) if props is None else decode_properties(props.decode("ascii"))
        if sysflag & SYSFLAG_INNER_BATCH:
            count = max(1, int(properties.get(PROPERTY_INNER_NUM, "1")))
            stamps = _stamps_in(buf, at, sysflag, codec, properties)
        else:
            count = 1
            stamps = 0
            for key in STAMP_PROPERTIES:
                value = properties.get(key)
                if value is not None:
                    stamps += len(key) + len(value.encode()) + 2
    except (CorruptDataError, ValueError, MqbenchError):
        return None
    return topic, size, stamps, count, PROPERTY_MQBENCH_DELAY_SOURCE in properties


def _records_walked(root: str, codec: Codec | None):
    """``_records`` by the log reader's walk alone, record by record: the reference."""
    detection = detect(root)
    for rel, is_dledger in log_dirs(root, detection.dledger_dirs):
        segments = list_segments(os.path.join(root, rel), rel)
        for item in iter_log(segments, rel, is_dledger):
            if isinstance(item, dict) or not item.is_record or item.damage:   # damage, Raft no-ops
                continue
            out = _figure(item.buf, item.at, item.entry_size if item.entry_size is not None else item.length, codec)
            if out is not None:
                yield out


def _add(tally: dict, figure) -> None:
    """Count one ``_figure`` (None: nothing) into ``tally``: (topic, count, delivered) ->
    [records, bytes, stamp bytes]."""
    if figure is not None:
        topic, size, stamps, count, delivered = figure
        row = tally.setdefault((topic, count, delivered), [0, 0, 0])
        row[0] += 1
        row[1] += size
        row[2] += stamps


def _run_tally(run: LogRun, codec: Codec | None, names: dict[bytes, str]) -> dict:
    """``_add``'s tally of the records of ``run`` (``broker.store.log_runs``). Depends on the
    run's bytes, its position and ``codec`` only."""
    tally: dict = {}
    buf = run.buf
    unpack = _I32.unpack_from
    decode_str = _decode_str
    stamp_keys = [(key, len(key) + 2) for key in STAMP_PROPERTIES]
    delay_source = PROPERTY_MQBENCH_DELAY_SOURCE
    topics = [names.get(t) or names.setdefault(t, t.decode()) for t in run.topics]
    for row in run.rows:
        at = row[3]
        topic = topics[row[8]]
        if topic in META_TOPICS or unpack(buf, at + _SYSFLAG_AT)[0] & SYSFLAG_INNER_BATCH:
            _add(tally, _figure(buf, at, row[1] - row[0], codec, topic))
            continue
        # the common record inline (what _figure gives it): its ASCII property string decoded as
        # str by the same rules (in C where built), the stamps looked up (ASCII: a value's length
        # is its byte count)
        props_at = at + row[6] + 2
        properties = decode_str(buf[props_at:props_at + row[7]].decode("ascii"))
        get = properties.get
        stamps = 0
        for key, extra in stamp_keys:
            value = get(key)
            if value is not None:
                stamps += extra + len(value)
        counts = tally.get((topic, 1, delay_source in properties))
        if counts is None:
            counts = tally[(topic, 1, delay_source in properties)] = [0, 0, 0]
        counts[0] += 1
        counts[1] += row[1] - row[0]
        counts[2] += stamps
    return tally


def _folder_tally(files: FolderFiles, dledger: bool, codec: Codec | None, names: dict[bytes, str],
                  tally: dict, seen: dict) -> None:
    """``_add`` every valid record of one log folder: the log reader's walk, by windows (module
    doc). ``seen``: the runs already counted (by position, size and SHA-256 of their bytes): a
    replica's run equal to one counted before adds that one's tally again without reading its
    records."""
    reader = LogReader(files, dledger=dledger, policy=REPORT, window_bytes=_WINDOW_BYTES, scan=window_scan)
    for item in reader.items():
        if type(item) is LogRun:
            key = (dledger, item.pos, item.next, hashlib.sha256(item.data).digest())
            counted = seen.get(key)
            if counted is None:
                counted = seen[key] = _run_tally(item, codec, names)
            for group, (records, nbytes, stamps) in counted.items():
                row = tally.setdefault(group, [0, 0, 0])
                row[0] += records
                row[1] += nbytes
                row[2] += stamps
        elif isinstance(item, LogItem) and item.is_record and not item.damage:
            _add(tally, _figure(item.buf, item.at, item.entry_size if item.entry_size is not None else item.length,
                                codec))


def _store_tally(root: str, codec: Codec | None, tally: dict, seen: dict) -> None:
    """``_add`` every valid record of the store's log (the log reader's walk: ``_walked_tally``;
    ``seen``: ``_folder_tally``'s)."""
    detection = detect(root)
    names: dict[bytes, str] = {}
    for rel, is_dledger in log_dirs(root, detection.dledger_dirs):
        files = FolderFiles(list_segments(os.path.join(root, rel), rel), rel)
        try:
            _folder_tally(files, is_dledger, codec, names, tally, seen)
        finally:
            files.close()


def _walked_tally(root: str, codec: Codec | None, tally: dict, seen: dict) -> None:
    """``_store_tally`` by the log reader's walk alone, record by record: the reference."""
    for figure in _records_walked(root, codec):
        _add(tally, figure)


def stored_figures(stores: list[tuple[str, os.PathLike | str]], batch_topics: set[str],
                   user_topics: set[str], codec: Codec | None = None) -> StoredFigures:
    """Figures of ``stores`` (``(broker group, store root)`` per replica); see the module doc."""
    figures = StoredFigures()
    counted_groups: set[str] = set()
    wanted = batch_topics or user_topics
    seen: dict = {}
    for group, root in stores:
        root = os.fspath(root)
        if not os.path.isdir(root):
            continue
        first_of_group = group not in counted_groups
        counted_groups.add(group)
        tally: dict = {}
        try:
            figures.dledger_framing = figures.dledger_framing or bool(detect(root).dledger_dirs)
            _store_tally(root, codec, tally, seen)
        except UserError:   # not a store (a broker that never started): nothing stored there
            pass
        for (topic, count, delivered), (records, size, stamps) in tally.items():
            if topic in META_TOPICS:
                figures.meta_bytes += size
                figures.meta_records += records
                continue
            figures.user_bytes += size - stamps
            figures.stamp_bytes += stamps
            figures.user_records += records
            if topic in batch_topics and not delivered:
                figures.batched_bytes += size - stamps
            kind = "parked" if topic in DELAY_TOPICS else "delivered" if delivered else "plain"
            setattr(figures, f"{kind}_bytes", getattr(figures, f"{kind}_bytes") + size - stamps)
            if first_of_group:
                setattr(figures, f"{kind}_msgs", getattr(figures, f"{kind}_msgs") + count * records)
            if first_of_group and topic in wanted:
                figures.batch.counts[count] = figures.batch.counts.get(count, 0) + records
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
