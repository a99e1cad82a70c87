"""``verify(src, dst) -> dict``: proof that DST holds everything SRC holds.

Checks, each streaming (memory flat in the store size, apart from per-queue counters):

1. messages: SRC's and DST's logs are walked side by side and every message is compared as a
   consumer sees it: topic, queue id, queue offset, flag, properties and the body after
   decompression. Inner batches are unwrapped on both sides (message ``i`` at ``base + i``,
   properties = the record's without ``INNER_NUM``/``INNER_BASE``, then the inner message's), so
   a ``v5`` batch record and the ``v4`` records it became compare equal. The ``__CRC32#``
   property (it covers the physical offset, which moves) is left out. The rules of the copy apply:
   DLedger entries past SRC's committed index are compared only when DST is DLedger too, and
   DST may hold, after the last copied record, the ``SCHEDULE_TOPIC_XXXX`` records that
   ``--map-timers-to-levels`` added (counted, not compared). With both sides DLedger, non-record
   entries are compared too (term, magic, body; and the index when the migration kept them);
2. queues: DST's log is walked once more and every record's queue unit is read (read-only
   mappings): a CQ unit at ``offset * 20`` / the next BCQ unit (base = the record's offset, batch
   size = INNER_NUM) must point at that record with its size; no queue has a unit past its last
   record, no queue folder lacks records, and each queue reaches past the last message SRC holds
   for it;
3. offsets: ``consumerOffset.json`` and ``delayOffset.json`` of DST equal SRC's, entry for entry;
   topic and subscription group names are all there.

The result lists each difference (the first ``DIFFERENCES_MAX``, with the SRC file and offset),
names the first one (``first_difference``), and ``ok`` is True only when there is none.
``messages_compared`` counts user messages only: DLedger entries that hold no message (term-start
no-ops, config changes, mqbench metadata) are compared as ``entries_compared`` (both sides
DLedger) or not at all, so a DLedger and a plain target of one source report the same count.
"""
from __future__ import annotations

import os
from itertools import zip_longest

from mqbench.broker.store import versions
from mqbench.broker.store.dispatch import BCQ_DIR, CQ_DIR
from mqbench.broker.store.segment_files import SegmentReader, list_segments
from mqbench.broker.formats.queues import (
    BCQ_UNIT_BYTES,
    CQ_UNIT_BYTES,
    decode_bcq_unit,
    decode_cq_unit,
    is_cq_end,
)
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.errors import UserError

from mqbench.broker.formats.properties import PROPERTY_CRC32

from mqbench.broker.store.log_runs import WindowScan

from . import scan as window_scan
from .configs_carry import read_configs
from .journal import read_journal
from .reframe import expand_inner_batch, plain_body
from .source import decode_item, read_dledger_state, walk_log
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM

DIFFERENCES_MAX = 20


def _messages(root: str, *, skip_after_index: int | None, entries: bool, scan: WindowScan | None):
    """(kind, key, value, place) per message or non-record entry of the log at ``root``."""
    for item in walk_log(root, scan=scan):
        place = f"{item.where} at offset {item.offset}"
        if item.record is None:
            if entries:
                yield "entry", item.entry_index, (item.entry_term, item.entry_magic, item.entry_body), place
            continue
        if skip_after_index is not None and item.entry_index is not None and item.entry_index > skip_after_index:
            continue
        msg = decode_item(item)
        msgs = expand_inner_batch(msg) if msg.sysflag & SYSFLAG_INNER_BATCH else [msg]
        for m in msgs:
            props = {k: v for k, v in m.properties.items() if k != PROPERTY_CRC32}
            yield ("message", (m.topic, m.queue_id, m.queue_offset),
                   (m.flag, tuple(sorted(props.items())), plain_body(m)), place)


def _compare_logs(src: str, dst: str, result: dict, journal: dict | None, scan: WindowScan | None) -> None:
    src_version, dst_version = versions.detect_version(src), versions.detect_version(dst)
    src_dl, dst_dl = versions.is_dledger(src_version), versions.is_dledger(dst_version)
    committed = None
    if src_dl and not dst_dl:
        ddirs = versions.detect(src).dledger_dirs
        committed = read_dledger_state(src, ddirs[0]).committed_index if ddirs else None
    both_dl = src_dl and dst_dl
    mapped = (journal or {}).get("progress", {}).get("timers_mapped", 0)
    same_index = None
    compared = extra = entries = 0
    src_iter = _messages(src, skip_after_index=committed, entries=both_dl, scan=scan)
    dst_iter = _messages(dst, skip_after_index=None, entries=both_dl, scan=scan)
    tops = result.setdefault("_tops", {})
    for a, b in zip_longest(src_iter, dst_iter):
        if a is not None and a[0] == "message":
            key = a[1][:2]
            tops[key] = max(tops.get(key, 0), a[1][2] + 1)
        if a is None:
            if b[0] == "message" and b[1][0] == SCHEDULE_TOPIC and extra < mapped:
                extra += 1
                continue
            _diff(result, f"DST has a message SRC does not: {b[1]} at {b[3]}")
            continue
        if b is None:
            _diff(result, f"message {a[1]} of SRC ({a[3]}) is missing in DST")
            continue
        if a[0] == "message":
            compared += 1
        else:
            entries += 1
        if a[0] != b[0]:
            _diff(result, f"SRC has a {a[0]} at {a[3]}, DST a {b[0]} at {b[3]}")
            continue
        if a[0] == "entry":
            if same_index is None:
                same_index = a[1] == b[1]
            if a[2] != b[2] or (same_index and a[1] != b[1]):
                _diff(result, f"DLedger entry {a[1]} ({a[3]}) differs in DST ({b[3]})")
            continue
        if a[1] != b[1]:
            _diff(result, f"SRC message {a[1]} ({a[3]}) is {b[1]} in DST ({b[3]})")
        elif a[2] != b[2]:
            what = ["flag", "properties", "body"][next(i for i in range(3) if a[2][i] != b[2][i])]
            _diff(result, f"message {a[1]} ({a[3]}) has another {what} in DST ({b[3]})")
    result["messages_compared"] = compared
    result["entries_compared"] = entries
    result["mapped_timer_records"] = extra


def _diff(result: dict, text: str) -> None:
    result["difference_count"] += 1
    if len(result["differences"]) < DIFFERENCES_MAX:
        result["differences"].append(text)


class _QueueReader:
    """One DST queue read through its files (read-only mappings), checked record by record."""

    def __init__(self, dst: str, kind: str, topic: str, queue_id: int):
        rel = f"{kind}/{topic}/{queue_id}"
        self.rel = rel
        self.reader = SegmentReader(list_segments(os.path.join(dst, rel), rel), cache_files=2)
        self.next_unit = None      # BCQ: the unit number expected next

    def unit(self, offset: int, nbytes: int) -> bytes | None:
        hit = self.reader.locate(offset, nbytes)
        if hit is None or hit[1] + nbytes > len(hit[0]):
            return None
        return bytes(hit[0][hit[1]:hit[1] + nbytes])


def _check_queues(dst: str, result: dict, scan: WindowScan | None) -> None:
    """Every DST record has its queue unit pointing at it (CQ unit at ``offset * 20``; BCQ units in
    order, base = the record's offset), no queue holds a unit past its last record, no queue folder
    is without records, and every queue reaches past the last message SRC holds for it."""
    configs_dst = read_configs(dst)
    batch_topics = versions.has_batch_cq(versions.detect_version(dst))
    readers: dict[tuple[str, str, int], _QueueReader] = {}
    tops: dict[tuple[str, str, int], int] = {}
    for item in walk_log(dst, scan=scan):
        if item.record is None:
            continue
        msg = decode_item(item)
        if msg.sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            continue
        inner = msg.sysflag & SYSFLAG_INNER_BATCH
        kind = BCQ_DIR if inner or (batch_topics and configs_dst.is_batch_topic(msg.topic)) else CQ_DIR
        key = (kind, msg.topic, msg.queue_id)
        q = readers.get(key)
        if q is None:
            q = readers[key] = _QueueReader(dst, kind, msg.topic, msg.queue_id)
        count = int(msg.properties.get(PROPERTY_INNER_NUM, "1")) if inner else 1
        where = f"{q.rel} for the record at {item.where} offset {item.offset}"
        if kind == CQ_DIR:
            raw = q.unit(msg.queue_offset * CQ_UNIT_BYTES, CQ_UNIT_BYTES)
            unit = decode_cq_unit(raw) if raw else None
            if unit is None or unit[:2] != (item.address, len(item.record)):
                _diff(result, f"{where}: no consume queue unit at offset {msg.queue_offset} points at it ({unit})")
        else:
            if q.next_unit is None:
                q.next_unit = _first_bcq_unit(q)
            raw = q.unit(q.next_unit * BCQ_UNIT_BYTES, BCQ_UNIT_BYTES)
            unit = decode_bcq_unit(raw) if raw else None
            if unit is None or (unit.physical_offset, unit.size, unit.base_offset, unit.batch_size) != \
                    (item.address, len(item.record), msg.queue_offset, count):
                _diff(result, f"{where}: the batch consume queue unit {q.next_unit} is {unit}")
            q.next_unit += 1
        tops[key] = msg.queue_offset + count
    queue_tops: dict[tuple[str, int], int] = {}
    for (kind, topic, qid), q in readers.items():
        top = tops[(kind, topic, qid)]
        queue_tops[(topic, qid)] = top
        if kind == CQ_DIR:
            raw = q.unit(top * CQ_UNIT_BYTES, CQ_UNIT_BYTES)
            extra = raw is not None and not is_cq_end(*decode_cq_unit(raw)[:2])
        else:
            raw = q.unit(q.next_unit * BCQ_UNIT_BYTES, BCQ_UNIT_BYTES)
            extra = raw is not None and decode_bcq_unit(raw).is_valid
        if extra:
            _diff(result, f"{q.rel}: a unit past the last record (offset {top})")
        q.reader.close()
    for kind in (CQ_DIR, BCQ_DIR):
        base = os.path.join(dst, kind)
        for topic in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            for qid in sorted(os.listdir(os.path.join(base, topic))):
                if not qid.isdigit() or (kind, topic, int(qid)) not in readers:
                    _diff(result, f"{kind}/{topic}/{qid}: a queue without records in the log")
    src_tops = result.pop("_tops", {})
    for key, top in sorted(src_tops.items()):
        if queue_tops.get(key, 0) < top:
            _diff(result, f"queue {key}: max offset {queue_tops.get(key, 0)} in DST, {top} in SRC")
    result["queues_checked"] = len(readers)


def _first_bcq_unit(q: _QueueReader) -> int:
    segments = q.reader.segdir.segments
    return segments[0].start // BCQ_UNIT_BYTES if segments else 0


def _compare_configs(src: str, dst: str, result: dict) -> None:
    a, b = read_configs(src), read_configs(dst)
    checked = 0
    if a.offsets is not None:
        mine = b.offsets.offsets if b.offsets else {}
        for key, table in a.offsets.offsets.items():
            for qid, offset in table.items():
                checked += 1
                if mine.get(key, {}).get(qid) != offset:
                    _diff(result, f"consumer offset {key[1]} {key[0]}/{qid}: {offset} in SRC, "
                                  f"{mine.get(key, {}).get(qid)} in DST")
    if a.delay is not None:
        mine_d = b.delay.offsets if b.delay else {}
        for level, offset in a.delay.offsets.items():
            checked += 1
            if mine_d.get(level) != offset:
                _diff(result, f"delay offset of level {level}: {offset} in SRC, {mine_d.get(level)} in DST")
    for what, sa, sb in (("topic", a.topics.topics if a.topics else {}, b.topics.topics if b.topics else {}),
                         ("subscription group", a.groups.groups if a.groups else {}, b.groups.groups if b.groups else {})):
        for name in sa:
            if name not in sb:
                _diff(result, f"{what} {name} is missing in DST")
    result["offsets_checked"] = checked


def verify(src: str, dst: str, *, scan: WindowScan | None = window_scan) -> dict:
    """Compare SRC and DST (see module doc). Both logs are read by windows through ``scan``
    (``migrate.scan``: in C where built; None: record by record, the same result)."""
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    if not os.path.isdir(dst):
        raise UserError(f"no migrated store at {dst}")
    journal = read_journal(dst)
    result = {"ok": False, "difference_count": 0, "differences": [], "messages_compared": 0,
              "entries_compared": 0, "queues_checked": 0, "offsets_checked": 0}
    _compare_logs(src, dst, result, journal, scan)
    _check_queues(dst, result, scan)
    _compare_configs(src, dst, result)
    result["ok"] = result["difference_count"] == 0
    result["first_difference"] = result["differences"][0] if result["differences"] else None
    return result
