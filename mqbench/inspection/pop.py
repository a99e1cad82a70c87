"""POP state of a store at rest, for ``mqbench inspect``: checkpoints and unacked messages per group.

``pop_state_doc(root, offsets)`` walks the store's log once (the same walk as ``inspect``'s message
listing), feeds every ck/ack message it finds (on ``rmq_sys_REVIVE_LOG_*``, or waiting in the timer
topic for it) to a ``PopEngine`` as a replica does, with the revive service's progress from the
consumer offsets (``CID_RMQ_SYS_REVIVE_GROUP``), and reports per consumer group and topic: the
checkpoints not yet revived (``checkpoints``), the messages they hold that are not acked
(``unacked_messages``: they come back after their invisible time), the acked ones, and the
earliest revive time. ``offsets`` is the parsed ``consumerOffset.json`` table ({(topic, group):
{queue id: offset}}), or None. Damaged ck/ack bodies are counted in ``bad_records``.
"""
from __future__ import annotations

import os

from mqbench.broker.formats import dledger as dl
from mqbench.broker.store.log_runs import ROW_AT, ROW_POS, ROW_TOPIC, LogRun, WindowScan
from mqbench.broker.store.segment_files import MultiReader, iter_log, log_dirs, list_segments
from mqbench.broker.formats.record import decode_message
from mqbench.broker.formats.topics import TIMER_TOPIC
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError

from mqbench.broker.pop import handles, records
from mqbench.broker.pop.engine import PopEngine
from mqbench.broker.formats.properties import (
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_OUT_MS,
)


def pop_candidates(run: LogRun, dledger: bool) -> list[int]:
    """The record addresses in ``run`` on a revive topic or the timer topic (the records
    ``pop_state_doc`` decodes)."""
    topics = run.topics
    wanted = {n for n, name in enumerate(topics) if name == _TIMER or name.startswith(_REVIVE)}
    if not wanted:
        return []
    head = dl.ENTRY_HEADER_BYTES if dledger else 0
    return [row[ROW_POS] + head for row in run.rows if row[ROW_TOPIC] in wanted]


def pop_state_doc(root: str, offsets: dict | None, scan: WindowScan | None = None,
                  addresses: list[int] | None = None) -> dict:
    """The ``pop`` part of ``inspect``'s document (module doc). ``scan``: read the log by windows
    (``broker.store.log_runs``), decoding only the records on a revive or timer topic; None: the
    record-by-record walk (the reference; the same document). ``addresses``: instead of a walk,
    the records to look at, in log order (the records of the runs ``pop_candidates`` picks and
    every other record, as ``inspect``'s own walk found them)."""
    root = os.path.abspath(root)
    detection = detect(root)
    engines: dict[str, PopEngine] = {}       # revive topic -> engine (one cluster per store, in practice)
    bad = 0
    if addresses is not None:
        reader = MultiReader([list_segments(os.path.join(root, rel), rel)
                              for rel, _ in log_dirs(root, detection.dledger_dirs)])
        try:
            for address in addresses:
                hit = reader.locate(address)
                if hit is not None:
                    bad += _observe(hit[0], hit[1], engines, offsets)
        finally:
            reader.close()
    for rel, is_dl in log_dirs(root, detection.dledger_dirs) if addresses is None else ():
        for rec in iter_log(list_segments(os.path.join(root, rel), rel), rel, is_dl, scan=scan):
            if type(rec) is LogRun:
                topics = rec.topics
                wanted = {n for n, name in enumerate(topics) if name == _TIMER or name.startswith(_REVIVE)}
                if wanted:
                    buf = rec.buf
                    for row in rec.rows:
                        if row[ROW_TOPIC] in wanted:
                            bad += _observe(buf, row[ROW_AT], engines, offsets)
                continue
            if isinstance(rec, dict) or not rec.is_record:
                continue
            bad += _observe(rec.buf, rec.at, engines, offsets)
    groups: dict[tuple[str, str], dict] = {}
    for engine in engines.values():
        for ck, _state, acked in engine.checkpoints():
            row = groups.setdefault((ck.group, ck.topic), {
                "group": ck.group, "topic": ck.topic, "checkpoints": 0, "unacked_messages": 0,
                "acked_messages": 0, "earliest_revive_time_ms": None})
            row["checkpoints"] += 1
            unacked = [o for o in ck.offsets if o not in acked]
            row["unacked_messages"] += len(unacked)
            row["acked_messages"] += len(ck.offsets) - len(unacked)
            if unacked:
                first = row["earliest_revive_time_ms"]
                row["earliest_revive_time_ms"] = ck.revive_time_ms if first is None else min(first, ck.revive_time_ms)
    return {"revive_topics": sorted(engines), "groups": [groups[k] for k in sorted(groups)], "bad_records": bad}


_TIMER = TIMER_TOPIC.encode()
_REVIVE = handles.REVIVE_TOPIC_PREFIX.encode()


def _observe(buf, at: int, engines: dict[str, PopEngine], offsets: dict | None) -> int:
    """Feed the record at ``buf[at:]`` to its revive topic's engine when it is a ck/ack message;
    1 when it is one whose body does not parse (damage), else 0."""
    try:
        msg, _ = decode_message(buf, at, check_crc=False)
    except CorruptDataError:
        return 0
    props = msg.properties
    topic = props.get(PROPERTY_REAL_TOPIC) if msg.topic == TIMER_TOPIC else msg.topic
    if not topic or not topic.startswith(handles.REVIVE_TOPIC_PREFIX):
        return 0
    qid = int(props.get(PROPERTY_REAL_QID, "0") or 0) if msg.topic == TIMER_TOPIC else msg.queue_id
    deliver = props.get(PROPERTY_TIMER_DELIVER_MS) or props.get(PROPERTY_TIMER_OUT_MS) or "0"
    try:
        item = records.parse(props.get(PROPERTY_TAGS), msg.body, int(deliver), qid)
    except (records.RecordError, ValueError):
        return 1
    if item is None:
        return 0
    engine = engines.get(topic)
    if engine is None:
        engine = engines[topic] = PopEngine("", topic[len(handles.REVIVE_TOPIC_PREFIX):])
        for (otopic, group), table in (offsets or {}).items():
            if otopic == topic and group == handles.REVIVE_GROUP:
                for q, off in table.items():
                    engine.set_revive_offset(q, off)
    delivered = (qid, msg.queue_offset) if msg.topic != TIMER_TOPIC and isinstance(item, records.CheckPoint) else None
    engine.observe(item, delivered)
    return 0
