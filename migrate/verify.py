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
2. queues: ``inspect`` finds no damage in DST (every record has its queue unit, every unit points
   at its record), and every queue of DST reaches past the last message SRC holds for it;
3. offsets: ``consumerOffset.json`` and ``delayOffset.json`` of DST equal SRC's, entry for entry;
   topic and subscription group names are all there.

The result lists each difference (the first ``DIFFERENCES_MAX``, with the SRC file and offset)
and ``ok`` is True only when there is none.
"""
from __future__ import annotations

import os
from itertools import zip_longest

from mqbench.broker.store import versions
from mqbench.broker.store.inspect import inspect_store
from mqbench.broker.store.record import SCHEDULE_TOPIC, SYSFLAG_INNER_BATCH
from mqbench.errors import UserError

from .configs_carry import read_configs
from .journal import read_journal
from .reframe import CRC_PROPERTY, expand_inner_batch, plain_body
from .source import decode_item, read_dledger_state, walk_log

DIFFERENCES_MAX = 20


def _messages(root: str, *, skip_after_index: int | None, entries: bool):
    """(kind, key, value, place) per message or non-record entry of the log at ``root``."""
    for item in walk_log(root):
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
            props = {k: v for k, v in m.properties.items() if k != CRC_PROPERTY}
            yield ("message", (m.topic, m.queue_id, m.queue_offset),
                   (m.flag, tuple(sorted(props.items())), plain_body(m)), place)


def _compare_logs(src: str, dst: str, result: dict, journal: dict | None) -> None:
    src_version, dst_version = versions.detect_version(src), versions.detect_version(dst)
    src_dl, dst_dl = versions.is_dledger(src_version), versions.is_dledger(dst_version)
    committed = None
    if src_dl and not dst_dl:
        ddirs = versions.detect(src).dledger_dirs
        committed = read_dledger_state(src, ddirs[0]).committed_index if ddirs else None
    both_dl = src_dl and dst_dl
    mapped = (journal or {}).get("progress", {}).get("timers_mapped", 0)
    same_index = None
    compared = extra = 0
    src_iter = _messages(src, skip_after_index=committed, entries=both_dl)
    dst_iter = _messages(dst, skip_after_index=None, entries=both_dl)
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
        compared += 1
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
    result["mapped_timer_records"] = extra


def _diff(result: dict, text: str) -> None:
    result["difference_count"] += 1
    if len(result["differences"]) < DIFFERENCES_MAX:
        result["differences"].append(text)


def _compare_queues(dst: str, result: dict) -> None:
    """DST's queues: no damage, and each queue reaches past the last message SRC holds for it."""
    dst_doc = inspect_store(dst)
    for d in dst_doc["damage"]:
        if d["kind"] == "dledger_index_gap":
            continue   # inspect counts record entries only, so a no-op reads as a gap; walk_log checks every index
        _diff(result, f"DST damage {d['kind']}: {d.get('file', '')} at offset {d.get('offset')}: {d['detail']}")
    dst_queues = {(q["topic"], q["queue_id"]): q["max_offset"] for q in dst_doc["queues"]}
    tops = result.pop("_tops", {})
    for key, top in sorted(tops.items()):
        if dst_queues.get(key, 0) < top:
            _diff(result, f"queue {key}: max offset {dst_queues.get(key, 0)} in DST, {top} in SRC")
    result["queues_checked"] = len(tops)


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


def verify(src: str, dst: str) -> dict:
    """Compare SRC and DST (see module doc)."""
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    if not os.path.isdir(dst):
        raise UserError(f"no migrated store at {dst}")
    journal = read_journal(dst)
    result = {"ok": False, "difference_count": 0, "differences": [], "messages_compared": 0,
              "queues_checked": 0, "offsets_checked": 0}
    _compare_logs(src, dst, result, journal)
    _compare_queues(dst, result)
    _compare_configs(src, dst, result)
    result["ok"] = result["difference_count"] == 0
    return result
