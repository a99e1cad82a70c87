"""The smaller parts of ``inspect``'s report, read-only: StoreCheckpoint, DLedger checkpoint and
term, the 5.x timer store (timercheck, timerwheel, a walk of the timer log) and IndexFile headers.

Each function takes the store root and a ``damage(dict)`` callback and returns a JSON-ready dict
(or None when the part is absent).
"""
from __future__ import annotations

import os
from typing import Callable

from mqbench.errors import CorruptDataError

from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.checkpoint import decode_checkpoint
from mqbench.broker.formats.index_file import INDEX_HEADER_BYTES, decode_index_header
from mqbench.broker.store.segment_files import MappedFile, count_nonzero, list_segments
from mqbench.broker.formats.timer_formats import (
    TIMER_WHEEL_FILE_BYTES,
    UNIT_BLANK,
    check_timer_unit,
    decode_timer_check,
    decode_timer_unit,
)

Damage = Callable[[dict], None]


def _read_head(root: str, rel: str, size: int) -> bytes | None:
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read(size)
    except (FileNotFoundError, IsADirectoryError):
        return None


def checkpoint_doc(root: str, damage: Damage) -> dict | None:
    data = _read_head(root, "checkpoint", 4096)
    if data is None:
        return None
    try:
        cp = decode_checkpoint(data, where="checkpoint")
    except CorruptDataError as exc:
        damage({"kind": "config_unreadable", "file": "checkpoint", "offset": 0, "detail": str(exc)})
        return None
    return {"physic_msg_timestamp_ms": cp.physic_msg_timestamp_ms, "logics_msg_timestamp_ms": cp.logics_msg_timestamp_ms,
            "index_msg_timestamp_ms": cp.index_msg_timestamp_ms, "master_flushed_offset": cp.master_flushed_offset,
            "confirm_phy_offset": cp.confirm_phy_offset}


def read_dledger_state(root: str, ddir: str, damage: Damage) -> dict:
    """endIndex/committedIndex (``checkpoint``) and currTerm/voteLeader (``currterm``) of ``ddir``."""
    out: dict = {}
    for name, parse, keys in (("checkpoint", dl.dledger_checkpoint, ("end_index", "committed_index")),
                              ("currterm", dl.dledger_currterm, ("current_term", "vote_leader"))):
        data = _read_head(root, f"{ddir}/{name}", 4096)
        if data is None:
            continue
        try:
            values = parse(data, where=f"{ddir}/{name}")
        except CorruptDataError as exc:
            damage({"kind": "config_unreadable", "file": f"{ddir}/{name}", "offset": exc.offset, "detail": str(exc)})
            continue
        out.update(dict(zip(keys, values)))
    return out


def check_dledger_state(state: dict, ddir: str, last_index: int | None, damage: Damage, notes: list[str]) -> None:
    """The committed index against the last entry found: beyond it is lost data, below it a note."""
    found = -1 if last_index is None else last_index
    committed = state.get("committed_index", -1)
    if committed > found:
        damage({"kind": "dledger_entries_missing", "file": f"{ddir}/checkpoint",
                "detail": f"committedIndex is {committed} but the last entry found is {found}"})
    elif "committed_index" in state and found > committed:
        notes.append(f"{ddir}: {found - committed} entries after the committed index {committed} (not yet committed)")


def timer_doc(root: str, damage: Damage) -> dict | None:
    """timercheck values, the wheel's size, and the timer log's units (walked like a commitlog)."""
    has_check = os.path.exists(os.path.join(root, "config", "timercheck"))
    wheel = os.path.join(root, "timerwheel")
    log_dir = os.path.join(root, "timerlog")
    if not (has_check or os.path.exists(wheel) or os.path.isdir(log_dir)):
        return None
    doc: dict = {"timerwheel_size_bytes": os.path.getsize(wheel) if os.path.isfile(wheel) else None}
    if doc["timerwheel_size_bytes"] not in (None, 0, TIMER_WHEEL_FILE_BYTES):
        damage({"kind": "file_size_mismatch", "file": "timerwheel", "size_bytes": doc["timerwheel_size_bytes"],
                "detail": f"{doc['timerwheel_size_bytes']} bytes, RocketMQ expects {TIMER_WHEEL_FILE_BYTES}"})
    data = _read_head(root, "config/timercheck", 4096)
    if data is not None:
        try:
            check = decode_timer_check(data, where="config/timercheck")
            doc.update({"last_read_time_ms": check.last_read_time_ms,
                        "last_timer_log_flush_offset": check.last_timer_log_flush_pos,
                        "last_timer_queue_offset": check.last_timer_queue_offset})
        except CorruptDataError as exc:
            damage({"kind": "config_unreadable", "file": "config/timercheck", "offset": 0, "detail": str(exc)})
    if os.path.isdir(log_dir):
        doc.update(_walk_timer_log(log_dir, damage))
    return doc


def _walk_timer_log(log_dir: str, damage: Damage) -> dict:
    segdir = list_segments(log_dir, "timerlog")
    for problem in segdir.problems:
        damage(problem)
    units = 0
    end_offset = segdir.segments[0].start if segdir.segments else 0
    tail = None
    for seg in segdir.segments:
        rel = f"timerlog/{os.path.basename(seg.path)}"
        with MappedFile(seg.path) as data:
            pos = 0
            found = False
            while pos < len(data):
                step = check_timer_unit(data, pos, len(data))
                if step == UNIT_BLANK:
                    pos, found = len(data), True
                    break
                if step == 0:
                    break
                decode_timer_unit(data, pos)  # cannot fail after the check; keeps the two in step
                units += 1
                pos += step
                found = True
            if found:
                end_offset = seg.start + pos
            nonzero = count_nonzero(data, pos, len(data)) if pos < len(data) else 0
            if nonzero:
                tail = {"kind": "torn_tail", "file": rel, "offset": pos, "valid_end_offset": seg.start + pos,
                        "nonzero_after_bytes": nonzero, "detail": "the valid timer log ends here and non-zero bytes follow"}
    if tail:
        damage(tail)
    return {"timerlog_units": units, "timerlog_valid_end_offset": end_offset}


def index_files_doc(root: str, damage: Damage) -> list[dict]:
    """The header of each IndexFile in ``index/`` (named by creation time, not by offset)."""
    out = []
    base = os.path.join(root, "index")
    if not os.path.isdir(base):
        return out
    for name in sorted(os.listdir(base)):
        data = _read_head(root, f"index/{name}", INDEX_HEADER_BYTES)
        if data is None:
            continue
        try:
            h = decode_index_header(data, where=f"index/{name}")
        except CorruptDataError as exc:
            damage({"kind": "config_unreadable", "file": f"index/{name}", "offset": 0, "detail": str(exc)})
            continue
        out.append({"file": f"index/{name}", "items": h.index_count - 1, "hash_slots_used": h.hash_slot_count,
                    "begin_timestamp_ms": h.begin_timestamp_ms, "end_timestamp_ms": h.end_timestamp_ms,
                    "begin_physical_offset": h.begin_phy_offset, "end_physical_offset": h.end_phy_offset})
    return out
