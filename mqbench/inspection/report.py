"""What is in a store, read-only: version, files, topics, queues, offsets, and damage.

``inspect_store(root)`` returns a ``mqbench.inspect/1`` document (a dict, unit-suffixed field
names) for a store written by mqbench or by a real RocketMQ 4.x/5.x broker, plain (``commitlog/``)
or DLedger (``dledger-*/data/``). It never modifies the store: files are opened read-only and
no abort/lock file is created. ``iter_messages(root)`` streams the messages of the log.
``pop``: RocketMQ 5's POP state (``inspection.pop.pop_state_doc``): the revive topics and,
per consumer group and topic, the checkpoints not yet revived, their unacked and acked messages and
the earliest revive time.

Damage kinds (each entry names the file and the byte offset in it where known):

* ``torn_tail``: the valid data ends in the log and non-zero bytes follow (``valid_end_offset``,
  ``nonzero_after_bytes``); ``corrupt_record``: invalid bytes with valid data after them;
* ``crc_mismatch``: a record whose body CRC differs from BODYCRC; ``bad_entry_body``: a DLedger
  entry that does not hold a record; ``wrong_physical_offset``: PHYSICALOFFSET differs from where
  the record is; ``dledger_index_mismatch``/``dledger_index_gap``: the DLedger index disagrees;
  ``dledger_entries_missing``: the DLedger checkpoint's committedIndex is beyond the last entry;
* ``cq_past_end``: a consume-queue entry pointing at or past the end of the valid log;
  ``cq_mismatch``: an entry pointing at something that is not that queue's record at that offset;
  ``cq_missing_entry``: a log record whose queue has no entry for it; ``cq_torn``: non-zero bytes
  after the end of a consume queue;
* ``file_size_mismatch``, ``unexpected_file``, ``offset_gap``: segment files RocketMQ would refuse;
* ``config_unreadable``: a JSON/checkpoint file that does not parse (the ``.bak`` is used if it does);
  the timer log gets ``torn_tail`` too (file ``timerlog/...``).
"""
from __future__ import annotations

import os
import struct
from collections import defaultdict
from operator import itemgetter
from dataclasses import dataclass, field

from mqbench.errors import CorruptDataError, UserError
from mqbench.output import document

from mqbench.broker.formats import configs, dledger as dl
from mqbench.broker.store.segment_files import (
    LogItem,
    MappedFile,
    MultiReader,
    SegmentDir,
    SegmentReader,
    WalkEnd,
    count_nonzero,
    folder_of,
    iter_files,
    iter_log,
    list_segments,
    log_dirs,
)
from mqbench.broker.formats.queues import (
    BCQ_UNIT_BYTES,
    CQ_FILLER_SIZE,
    CQ_UNIT_BYTES,
    decode_bcq_unit,
    decode_cq_unit,
    find_bcq_unit,
    is_cq_end,
    is_cq_filler,
)
from mqbench.broker.formats.record import check_record
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.record_peek import peek_fields, peek_properties, peek_topic
from mqbench.broker.store.log_runs import LogRun, WindowScan
from mqbench.migrate import scan as window_scan
from .log_runs import check_run, index_problem
from .pop import pop_candidates
from .state import check_dledger_state, checkpoint_doc, index_files_doc, read_dledger_state, timer_doc
from mqbench.broker.store.versions import detect
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM

SCHEMA = "mqbench.inspect/1"
_CQ_UNIT = struct.Struct(">qiq")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
DAMAGE_LIST_MAX = 50  # per kind; damage_counts has the totals


@dataclass
class _Queue:
    topic: str
    queue_id: int
    cq_type: str = "none"  # SimpleCQ / BatchCQ / none (no queue files)
    messages: int = 0
    min_offset: int | None = None
    max_offset: int = 0
    log_records: int = 0
    log_min_offset: int | None = None
    log_max_offset: int | None = None
    segdir: SegmentDir | None = None
    bcq_units: list = field(default_factory=list)
    checked: list = field(default_factory=list)     # [start, end) queue offsets: log_runs.add_checked


class _Damage:
    def __init__(self):
        self.entries: list[dict] = []
        self.counts: dict[str, int] = defaultdict(int)

    def __call__(self, item: dict) -> None:
        self.counts[item["kind"]] += 1
        if self.counts[item["kind"]] <= DAMAGE_LIST_MAX:
            self.entries.append(item)


def _check_readable(root: str) -> None:
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"cannot read the store folder {root} (permission denied)")


class _Inspector:
    def __init__(self, root: str):
        self.root = root
        self.damage = _Damage()
        self.notes: list[str] = []
        self.queues: dict[tuple[str, int], _Queue] = {}
        self.log_min_offset = 0
        # with a scan: where the records that may be POP state are (pop.pop_state_doc), in log order
        self.pop_addresses: list[int] | None = None

    def queue(self, topic: str, queue_id: int) -> _Queue:
        key = (topic, queue_id)
        if key not in self.queues:
            self.queues[key] = _Queue(topic, queue_id)
        return self.queues[key]

    # --- consume queues -------------------------------------------------------------------

    def load_queue_dirs(self) -> None:
        for folder, kind in (("consumequeue", "SimpleCQ"), ("batchconsumequeue", "BatchCQ")):
            base = os.path.join(self.root, folder)
            if not os.path.isdir(base):
                continue
            for topic in sorted(os.listdir(base)):
                tdir = os.path.join(base, topic)
                if not os.path.isdir(tdir):
                    continue
                for qname in sorted(os.listdir(tdir)):
                    qdir = os.path.join(tdir, qname)
                    if not os.path.isdir(qdir):
                        continue
                    if not qname.isdigit():
                        self.damage({"kind": "unexpected_file", "file": f"{folder}/{topic}/{qname}",
                                     "detail": "queue folder name is not a number"})
                        continue
                    q = self.queue(topic, int(qname))
                    q.cq_type = kind
                    q.segdir = list_segments(qdir, f"{folder}/{topic}/{qname}")
                    for problem in q.segdir.problems:
                        self.damage(problem)
                    if kind == "BatchCQ":
                        self._load_bcq(q, f"{folder}/{topic}/{qname}")

    def _load_bcq(self, q: _Queue, rel: str) -> None:
        for seg in q.segdir.segments:
            with MappedFile(seg.path) as data:
                pos = 0
                while pos + BCQ_UNIT_BYTES <= len(data):
                    unit = decode_bcq_unit(data, pos)
                    if not unit.is_valid:
                        break
                    q.bcq_units.append(unit)
                    pos += BCQ_UNIT_BYTES
                nonzero = count_nonzero(data, pos, len(data))
                if nonzero:
                    self.damage({"kind": "cq_torn", "file": f"{rel}/{os.path.basename(seg.path)}", "offset": pos,
                                 "nonzero_after_bytes": nonzero, "detail": "non-zero bytes after the last valid entry"})
        if q.bcq_units:
            q.min_offset = q.bcq_units[0].base_offset
            q.max_offset = q.bcq_units[-1].base_offset + q.bcq_units[-1].batch_size
            q.messages = sum(u.batch_size for u in q.bcq_units)

    def walk_cq(self, q: _Queue, log: SegmentReader, valid_end: int) -> None:
        """Count a SimpleCQ queue's entries and check each one against the log (those the log walk
        already found pointing at exactly their record, ``q.checked``, need nothing more)."""
        rel = f"consumequeue/{q.topic}/{q.queue_id}"
        checked = iter(q.checked)
        span = next(checked, None)
        for seg in q.segdir.segments:
            rel_file = f"{rel}/{os.path.basename(seg.path)}"
            with MappedFile(seg.path) as data:
                whole = len(data) - len(data) % CQ_UNIT_BYTES
                units = list(_CQ_UNIT.iter_unpack(data[:whole]))
                span, pos = self._walk_cq_file(q, log, valid_end, rel_file, seg.start, units, checked, span)
                if pos is None:
                    pos = whole
                    for n in range(len(units)):
                        phys, size, _tags = units[n]
                        if is_cq_filler(phys, size):
                            continue
                        if is_cq_end(phys, size):
                            pos = n * CQ_UNIT_BYTES
                            break
                        index = (seg.start + n * CQ_UNIT_BYTES) // CQ_UNIT_BYTES
                        if q.min_offset is None:
                            q.min_offset = index
                        q.max_offset = index + 1
                        q.messages += 1
                        while span is not None and span[1] <= index:
                            span = next(checked, None)
                        if span is not None and span[0] <= index:
                            continue
                        self._check_cq_entry(q, log, valid_end, phys, size, index, rel_file, n * CQ_UNIT_BYTES)
                nonzero = count_nonzero(data, pos, len(data))
                if nonzero:
                    self.damage({"kind": "cq_torn", "file": rel_file, "offset": pos, "nonzero_after_bytes": nonzero,
                                 "detail": "non-zero bytes after the last valid entry"})

    def _walk_cq_file(self, q: _Queue, log, valid_end: int, rel_file: str, start: int, units: list, checked,
                      span) -> tuple[list[int] | None, int | None]:
        """``walk_cq``'s loop over one file's ``units`` in C-level passes where it can: a file whose
        units up to the first zero size are all plain entries (no filler, no other end) counts
        them at once and checks only those outside ``q.checked``. Returns (span, where the
        entries end in the file) when done, or (span, None) for the unit-by-unit loop."""
        if start % CQ_UNIT_BYTES or not q.checked:     # nothing to skip: the reference loop
            return span, None
        sizes = list(map(_SECOND, units))
        try:
            end = sizes.index(0)
        except ValueError:
            end = len(units)
        if not end:
            return span, (0 if units else None)
        head = sizes[:end]
        if min(head) <= 0 or CQ_FILLER_SIZE in head or min(map(_FIRST, units[:end])) < 0:
            return span, None
        first = start // CQ_UNIT_BYTES
        if q.min_offset is None:
            q.min_offset = first
        q.max_offset = first + end
        q.messages += end
        index = first
        while index < first + end:
            while span is not None and span[1] <= index:
                span = next(checked, None)
            if span is not None and span[0] <= index:
                index = span[1]
                continue
            upto = first + end if span is None else min(first + end, span[0])
            for i in range(index, upto):
                n = i - first
                self._check_cq_entry(q, log, valid_end, units[n][0], units[n][1], i, rel_file, n * CQ_UNIT_BYTES)
            index = upto
        return span, end * CQ_UNIT_BYTES

    def walk_bcq(self, q: _Queue, log: SegmentReader, valid_end: int) -> None:
        rel = f"batchconsumequeue/{q.topic}/{q.queue_id}"
        for i, unit in enumerate(q.bcq_units):
            # BCQ units are back to back across files; report the logical position.
            self._check_cq_entry(q, log, valid_end, unit.physical_offset, unit.size, unit.base_offset, rel,
                                 i * BCQ_UNIT_BYTES, batch_size=unit.batch_size)

    def _check_cq_entry(self, q, log, valid_end, phys, size, queue_offset, rel_file, pos, batch_size=None) -> None:
        where = {"file": rel_file, "offset": pos, "topic": q.topic, "queue_id": q.queue_id,
                 "queue_offset": queue_offset, "physical_offset": phys}
        if phys < self.log_min_offset:
            return  # the log files it pointed into were deleted (expired); RocketMQ skips these too
        if phys + size > valid_end:
            self.damage({"kind": "cq_past_end", **where,
                         "detail": f"entry points at {phys}+{size}, the valid log ends at {valid_end}"})
            return
        problem = self._record_problem(log, phys, size, q, queue_offset, batch_size)
        if problem:
            self.damage({"kind": "cq_mismatch", **where, "detail": problem})

    def _record_problem(self, log: SegmentReader, phys: int, size: int, q: _Queue, queue_offset: int,
                        batch_size: int | None) -> str | None:
        located = log.locate(phys, size)
        if located is None:
            return "no log file holds that offset"
        data, pos, _ = located
        if check_record(data, pos, len(data), check_crc=False) <= 0:
            return "no valid record at that offset"
        total, queue_id, record_qoffset, _, sysflag = peek_fields(data, pos)
        try:
            topic = peek_topic(data, pos)
        except CorruptDataError as exc:
            return f"the record there does not decode: {exc}"
        if topic != q.topic and not q.topic.startswith("%LMQ%"):
            return f"the record there is of topic {topic!r}"
        if q.topic.startswith("%LMQ%"):
            return None  # LMQ multi-dispatch points at records of other topics
        if queue_id != q.queue_id:
            return f"the record there is of queue {queue_id}"
        if total != size:
            return f"the record there is {total} bytes, the entry says {size}"
        if record_qoffset != queue_offset:
            return f"the record there has queue offset {record_qoffset}"
        if batch_size is not None and sysflag & SYSFLAG_INNER_BATCH:
            inner = peek_properties(data, pos).get(PROPERTY_INNER_NUM)
            if inner is not None and inner != str(batch_size):
                return f"the record holds INNER_NUM={inner}, the entry says {batch_size}"
        return None

    # --- the log --------------------------------------------------------------------------

    def on_record(self, rec: LogItem, cq_readers: dict, expect_cq: bool = True) -> None:
        rel_offset = rec.file_offset + (rec.address - rec.pos)
        try:
            topic = peek_topic(rec.buf, rec.at, where=rec.file)
            _, queue_id, queue_offset, _, sysflag = peek_fields(rec.buf, rec.at)
            properties = peek_properties(rec.buf, rec.at, where=rec.file)
        except CorruptDataError as exc:  # passes the recovery check, but e.g. its topic is not UTF-8
            self.damage({"kind": "corrupt_record", "file": rec.file, "offset": rel_offset,
                         "physical_offset": rec.address, "detail": str(exc)})
            return
        tx = sysflag & SYSFLAG_TX_MASK
        if tx in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            return  # no consume-queue entry by design
        q = self.queue(topic, queue_id)
        count = 1
        if sysflag & SYSFLAG_INNER_BATCH:
            try:
                count = max(1, int(properties.get(PROPERTY_INNER_NUM, "1")))
            except ValueError:
                count = 1
        q.log_records += 1
        last = queue_offset + count - 1
        q.log_min_offset = queue_offset if q.log_min_offset is None else min(q.log_min_offset, queue_offset)
        q.log_max_offset = last + 1 if q.log_max_offset is None else max(q.log_max_offset, last + 1)
        problem = self._cq_entry_problem(q, rec.address, queue_offset, cq_readers) if expect_cq else None
        if problem:
            self.damage({"kind": "cq_missing_entry", "file": rec.file, "offset": rel_offset, "topic": q.topic,
                         "queue_id": q.queue_id, "queue_offset": queue_offset, "physical_offset": rec.address,
                         "detail": problem})

    def _cq_entry_problem(self, q: _Queue, address: int, queue_offset: int, cq_readers: dict) -> str | None:
        if q.segdir is None:
            return "the queue has no consume queue files"
        if q.cq_type == "BatchCQ":
            i = find_bcq_unit(q.bcq_units, queue_offset)
            if i is None or q.bcq_units[i].physical_offset != address:
                return "no batch consume queue entry points at this record"
            return None
        reader = cq_readers.get((q.topic, q.queue_id))
        if reader is None:
            reader = cq_readers[(q.topic, q.queue_id)] = SegmentReader(q.segdir, cache_files=2)
        located = reader.locate(queue_offset * CQ_UNIT_BYTES)
        if located is None:
            return "the consume queue does not reach this queue offset"
        data, pos, _ = located
        if pos + CQ_UNIT_BYTES > len(data):
            return "the consume queue does not reach this queue offset"
        phys, size, _ = decode_cq_unit(data, pos)
        if is_cq_end(phys, size) or is_cq_filler(phys, size):
            return "the consume queue has no entry at this queue offset"
        if phys != address:
            return f"the consume queue entry at this queue offset points at {phys}"
        return None

    def check_dledger_index(self, ddir: str, item: LogItem, index_reader: SegmentReader | None, state: dict) -> None:
        """The DLedger index unit of every entry (the reader checks that indexes follow)."""
        state.setdefault("first_index", item.index)
        state["last_index"] = item.index
        state["last_term"] = item.term
        if index_reader is None:
            return
        problem = index_problem(index_reader, item.index, item.pos, item.entry_size, item.term)
        if problem:
            self.damage({"kind": "dledger_index_mismatch", "file": f"{ddir}/index", "entry_index": item.index,
                         "offset": item.index * dl.INDEX_UNIT_BYTES, "detail": problem})

    def walk_logs(self, folders: list[tuple[str, bool]], scan: WindowScan | None = None
                  ) -> tuple[list[dict], list[SegmentDir], int]:
        """Walk each log folder (old ``commitlog/`` first, then DLedger data): (log docs, their
        segment folders, the end of the valid data). ``scan``: read by windows (``check_run``)."""
        docs, segdirs, valid_end = [], [], 0
        cq_readers: dict = {}
        names: dict[bytes, str] = {}
        for rel, is_dl in folders:
            segdir = list_segments(os.path.join(self.root, rel), rel)
            segdirs.append(segdir)
            for problem in segdir.problems:
                self.damage(problem)
            if not segdir.segments:
                docs.append({"folder": rel, "dledger": is_dl, "files": 0})
                continue
            ddir = rel.split("/")[0]
            index_reader, state, dstate = None, {}, {}
            if is_dl:
                idx = list_segments(os.path.join(self.root, ddir, "index"), f"{ddir}/index")
                index_reader = SegmentReader(idx, cache_files=2) if idx.segments else None
                dstate = read_dledger_state(self.root, ddir, self.damage)
            # Entries past the committed index are not dispatched yet: no CQ entry is expected.
            committed = dstate.get("committed_index")
            end = WalkEnd(0)
            for item in iter_log(segdir, rel, is_dl, end, scan):
                if type(item) is LogRun:
                    check_run(self, item, is_dl, ddir, index_reader, state, committed, cq_readers, names)
                    if self.pop_addresses is not None:
                        self.pop_addresses.extend(pop_candidates(item, is_dl))
                    continue
                if isinstance(item, dict):
                    self.damage(item)
                    continue
                if is_dl:
                    self.check_dledger_index(ddir, item, index_reader, state)
                if not item.is_record:
                    continue
                expect_cq = not (is_dl and committed is not None and item.index > committed)
                self.on_record(item, cq_readers, expect_cq)
                if self.pop_addresses is not None:
                    self.pop_addresses.append(item.address)
            if index_reader:
                index_reader.close()
            valid_end = max(valid_end, end.valid_end_offset)
            doc = {"folder": rel, "dledger": is_dl, "files": len(segdir.segments),
                   "file_size_bytes": segdir.file_size_bytes, "min_offset": segdir.segments[0].start,
                   "valid_end_offset": end.valid_end_offset, "records": end.records, "end_of_file_blanks": end.blanks}
            if is_dl:
                doc.update({"entries": end.entries, "first_index": state.get("first_index"),
                            "last_index": state.get("last_index"), "last_term": state.get("last_term")})
                check_dledger_state(dstate, ddir, state.get("last_index"), self.damage, self.notes)
                doc.update(dstate)
            docs.append(doc)
        for reader in cq_readers.values():
            reader.close()
        return docs, segdirs, valid_end

    # --- config files ---------------------------------------------------------------------

    def read_config(self, name: str, parse):
        path = os.path.join(self.root, "config", name)
        for candidate in (path, path + ".bak"):
            rel = os.path.relpath(candidate, self.root)
            try:
                with open(candidate, "rb") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            if not text.strip():
                continue
            try:
                return parse(text, where=rel)
            except CorruptDataError as exc:
                self.damage({"kind": "config_unreadable", "file": rel, "offset": exc.offset, "detail": str(exc)})
        return None


def inspect_store(root: str, *, scan: WindowScan | None = window_scan) -> dict:
    """The ``mqbench.inspect/1`` document for the store at ``root`` (see the module docstring).

    Raises UserError only when ``root`` is not a store or cannot be read; damage is reported.
    The log is read by windows through ``scan`` (``mqbench.migrate.scan``: in C where built);
    None walks it record by record (the reference: the same document, ~15x the CPU).
    """
    root = os.path.abspath(root)
    if os.path.isdir(root):
        _check_readable(root)
    detection = detect(root)
    ins = _Inspector(root)
    if scan is not None:
        ins.pop_addresses = []
    files: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rel, size in iter_files(root):
        group = files[folder_of(rel)]
        group[0] += 1
        group[1] += size
    if os.path.exists(os.path.join(root, "abort")):
        ins.notes.append("abort file present: the broker is running or did not shut down cleanly")

    ins.load_queue_dirs()
    log_docs, segdirs, valid_end = ins.walk_logs(log_dirs(root, detection.dledger_dirs), scan)
    starts = [d.segments[0].start for d in segdirs if d.segments]
    ins.log_min_offset = min(starts) if starts else 0
    log_reader = MultiReader(segdirs)
    for q in list(ins.queues.values()):
        if q.segdir is None:
            continue
        if q.cq_type == "BatchCQ":
            ins.walk_bcq(q, log_reader, valid_end)
        else:
            ins.walk_cq(q, log_reader, valid_end)
    log_reader.close()

    topics_file = ins.read_config("topics.json", configs.parse_topics_json)
    offsets_file = ins.read_config("consumerOffset.json", configs.parse_consumer_offsets_json)
    delay_file = ins.read_config("delayOffset.json", configs.parse_delay_offsets_json)
    groups_file = ins.read_config("subscriptionGroup.json", configs.parse_subscription_groups_json)

    queues = sorted(ins.queues.values(), key=lambda q: (q.topic, q.queue_id))
    topic_rows: dict[str, dict] = {}
    for q in queues:
        row = topic_rows.setdefault(q.topic, {"topic": q.topic, "queues": 0, "messages": 0, "cq_type": q.cq_type})
        row["queues"] += 1
        row["messages"] += q.messages if q.segdir is not None else q.log_records
    if topics_file:
        for name, config in topics_file.topics.items():
            row = topic_rows.setdefault(name, {"topic": name, "queues": 0, "messages": 0, "cq_type": "none"})
            row.update({"configured": True, "read_queue_nums": config.read_queue_nums,
                        "write_queue_nums": config.write_queue_nums, "perm": config.perm})
    max_offsets = {(q.topic, q.queue_id): _queue_max(q) for q in queues}
    consumer_offsets = []
    if offsets_file:
        for (topic, group), table in sorted(offsets_file.offsets.items()):
            for queue_id, offset in sorted(table.items()):
                top = max_offsets.get((topic, queue_id))
                consumer_offsets.append({"topic": topic, "group": group, "queue_id": queue_id, "offset": offset,
                                         "lag_messages": None if top is None else max(0, top - offset)})
    delay_offsets = []
    if delay_file:
        for level, offset in sorted(delay_file.offsets.items()):
            delay_offsets.append({"level": level, "queue_id": level - 1, "offset": offset})

    return document(
        SCHEMA,
        store_path=root,
        version=detection.version,
        version_evidence=detection.evidence,
        files=[{"folder": k, "files": v[0], "size_bytes": v[1]} for k, v in sorted(files.items())],
        logs=log_docs,
        topics=sorted(topic_rows.values(), key=lambda r: r["topic"]),
        queues=[_queue_doc(q) for q in queues],
        consumer_offsets=consumer_offsets,
        delay_offsets=delay_offsets,
        subscription_groups=sorted(groups_file.groups) if groups_file else [],
        checkpoint=checkpoint_doc(root, ins.damage),
        timer=timer_doc(root, ins.damage),
        index_files=index_files_doc(root, ins.damage),
        pop=_pop_doc(root, offsets_file, scan, ins.pop_addresses),
        notes=ins.notes,
        damage=ins.damage.entries,
        damage_counts=dict(sorted(ins.damage.counts.items())),
    )


def iter_messages(root: str, limit: int | None = None, *, scan: WindowScan | None = window_scan):
    """Each message of the log at ``root`` (``segment_files.iter_messages``), read by windows
    through ``scan`` (None: record by record; the same messages)."""
    from mqbench.broker.store.segment_files import iter_messages as messages

    return messages(root, limit, scan)


def _pop_doc(root: str, offsets_file, scan: WindowScan | None, addresses: list[int] | None) -> dict:
    """POP checkpoints and unacked messages per group (``inspection.pop``; ``addresses``: the
    records the log walk found that may hold POP state, so that the log is not walked again)."""
    from mqbench.inspection.pop import pop_state_doc

    return pop_state_doc(root, offsets_file.offsets if offsets_file else None, scan, addresses)


def _queue_max(q: _Queue) -> int:
    if q.segdir is not None:
        return q.max_offset
    return q.log_max_offset or 0


def _queue_doc(q: _Queue) -> dict:
    has_cq = q.segdir is not None
    return {
        "topic": q.topic, "queue_id": q.queue_id, "cq_type": q.cq_type,
        "messages": q.messages if has_cq else q.log_records,
        "min_offset": (q.min_offset if has_cq else q.log_min_offset) or 0,
        "max_offset": q.max_offset if has_cq else (q.log_max_offset or 0),
        "log_records": q.log_records,
    }
