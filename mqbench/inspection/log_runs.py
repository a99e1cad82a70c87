"""``inspect``'s checks of a ``LogRun``: many records the log reader passed in one window
(``broker.store.log_runs``), checked as the record-by-record walk checks each ``LogItem``.

``check_run`` does for every record of the run what ``_Inspector.check_dledger_index`` and
``_Inspector.on_record`` do for one, with the same results (queue counts and offsets, the DLedger
state, damage documents in the same order): the DLedger index units of the whole run are read in
one slice per index file and compared, and the consume-queue units of each queue's records in the
run in one slice per queue file. A record whose unit differs in any way is handed to the
record-by-record check (``index_problem``, ``_cq_entry_problem``), which words its damage. A run's
record never fails ``on_record``'s decoding: the scan passed its topic (TopicValidator's
characters) and its ASCII properties.
"""
from __future__ import annotations

import struct
from functools import reduce
from itertools import groupby
from operator import itemgetter, or_, sub

from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM
from mqbench.broker.formats.queues import CQ_FILLER_SIZE, CQ_UNIT_BYTES
from mqbench.broker.formats.record import decode_properties
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.store.log_runs import (
    ROW_AT, ROW_INDEX, ROW_NEXT, ROW_POS, ROW_PROPS_LEN, ROW_PROPS_LEN_AT, ROW_QUEUE_ID, ROW_QUEUE_OFFSET, ROW_TERM,
    ROW_TOPIC, ROW_TOTAL, LogRun,
)

_I32 = struct.Struct(">i")
_CQ = struct.Struct(">qiq")
_INDEX = struct.Struct(">iqiqq")
_SYSFLAG_AT = 36
_NO_CQ_TX = (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK)
_first, _second, _unit_fields = itemgetter(0), itemgetter(1), itemgetter(1, 2, 3, 4)
_row_pos, _row_next, _row_index, _row_term = itemgetter(ROW_POS), itemgetter(ROW_NEXT), itemgetter(ROW_INDEX), itemgetter(ROW_TERM)
_row_at, _row_key, _row_qoffset, _row_total = (itemgetter(ROW_AT), itemgetter(ROW_TOPIC, ROW_QUEUE_ID),
                                               itemgetter(ROW_QUEUE_OFFSET), itemgetter(ROW_TOTAL))
_PER_RECORD_SYSFLAG = SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH


def read_units(reader, first: int, count: int, unit_bytes: int) -> bytes:
    """The bytes of units ``first .. first + count - 1`` of a unit file queue (``SegmentReader``),
    as far as its files hold them (shorter where they stop)."""
    offset, stop = first * unit_bytes, (first + count) * unit_bytes
    parts = []
    while offset < stop:
        located = reader.locate(offset, stop - offset)
        if located is None:
            break
        data, at, _ = located
        part = data[at:at + stop - offset]
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _index_mismatches(index_reader, rows: list) -> list[int]:
    """Numbers of the rows (consecutive DLedger indexes) whose index unit differs from the entry."""
    data = read_units(index_reader, rows[0][ROW_INDEX], len(rows), dl.INDEX_UNIT_BYTES)
    units = _INDEX.iter_unpack(memoryview(data)[:len(data) - len(data) % dl.INDEX_UNIT_BYTES])
    if len(data) == len(rows) * dl.INDEX_UNIT_BYTES:
        # the usual case in C-level passes: (pos, size, index, term) of each unit and entry
        positions, nexts = list(map(_row_pos, rows)), list(map(_row_next, rows))
        want = list(zip(positions, map(sub, nexts, positions), map(_row_index, rows), map(_row_term, rows)))
        if list(map(_unit_fields, units)) == want:
            return []
        units = _INDEX.iter_unpack(memoryview(data)[:len(data) - len(data) % dl.INDEX_UNIT_BYTES])
    bad = []
    for n, (unit, row) in enumerate(zip(units, rows)):
        pos = row[ROW_POS]
        if unit[1] != pos or unit[2] != row[ROW_NEXT] - pos or unit[3] != row[ROW_INDEX] or unit[4] != row[ROW_TERM]:
            bad.append(n)
    short = len(data) // dl.INDEX_UNIT_BYTES
    bad.extend(range(short, len(rows)))
    return bad


def _cq_mismatches(reader, offsets: list[int], addresses: list[int], sizes: list[int]) -> tuple[list[int] | None, bool]:
    """(which of a queue's records, at consecutive ascending queue ``offsets``, its consume queue
    does not point at exactly, or None when the offsets are not consecutive: check each record
    alone; whether every unit also has its record's size, so that ``walk_cq`` has nothing to
    check at those offsets)."""
    first = offsets[0]
    if offsets[-1] - first != len(offsets) - 1:
        return None, False
    data = read_units(reader, first, len(offsets), CQ_UNIT_BYTES)
    units = list(_CQ.iter_unpack(memoryview(data)[:len(data) - len(data) % CQ_UNIT_BYTES]))
    if len(units) == len(offsets) and offsets == list(range(first, first + len(offsets))):
        # the usual case in C-level passes: every unit points at its record, with its size
        unit_sizes = list(map(_second, units))
        if list(map(_first, units)) == addresses and min(unit_sizes) > 0 and CQ_FILLER_SIZE not in unit_sizes:
            return [], unit_sizes == sizes
    bad = []
    exact = True
    expected = first
    for n, ((phys, size, _), address, offset, total) in enumerate(zip(units, addresses, offsets, sizes)):
        if offset != expected or phys != address or size <= 0 or (phys == 0 and size == CQ_FILLER_SIZE):
            bad.append(n)
        elif size != total:
            exact = False
        expected += 1
    bad.extend(range(len(data) // CQ_UNIT_BYTES, len(offsets)))
    return bad, exact and not bad


def add_checked(ranges: list[list[int]], first: int, end: int) -> None:
    """Add queue offsets ``[first, end)`` to a queue's ascending list of ``[start, end)`` ranges
    whose consume-queue units are known to point at exactly that queue's record (``walk_cq`` skips
    them); a range out of order is not added (those units are checked one by one)."""
    if ranges and ranges[-1][1] == first:
        ranges[-1][1] = end
    elif not ranges or ranges[-1][1] < first:
        ranges.append([first, end])


def check_run(ins, run: LogRun, is_dl: bool, ddir: str, index_reader, state: dict, committed: int | None,
              cq_readers: dict, names: dict) -> None:
    """Check every record of ``run`` (module doc); ``ins`` is the ``_Inspector``, ``names`` a cache
    of decoded topics."""
    from mqbench.broker.store.segment_files import SegmentReader

    rows, buf, topics = run.rows, run.buf, run.topics
    found: list[tuple[int, int, dict]] = []        # (row number, 0 index / 1 queue, damage) in walk order
    if is_dl:
        state.setdefault("first_index", rows[0][ROW_INDEX])
        state["last_index"] = rows[-1][ROW_INDEX]
        state["last_term"] = rows[-1][ROW_TERM]
        if index_reader is not None:
            for n in _index_mismatches(index_reader, rows):
                row = rows[n]
                problem = index_problem(index_reader, row[ROW_INDEX], row[ROW_POS], row[ROW_NEXT] - row[ROW_POS],
                                        row[ROW_TERM])
                if problem:
                    found.append((n, 0, {"kind": "dledger_index_mismatch", "file": f"{ddir}/index",
                                         "entry_index": row[ROW_INDEX],
                                         "offset": row[ROW_INDEX] * dl.INDEX_UNIT_BYTES, "detail": problem}))
    head = dl.ENTRY_HEADER_BYTES if is_dl else 0
    unpack = _I32.unpack_from
    sysflags = [unpack(buf, at + _SYSFLAG_AT)[0] for at in map(_row_at, rows)]
    # each queue's records in the run: [queue, row numbers, queue offsets, addresses, sizes] (to check)
    groups: dict[tuple[int, int], list] = {}
    if reduce(or_, sysflags, 0) & _PER_RECORD_SYSFLAG or (is_dl and committed is not None
                                                            and rows[-1][ROW_INDEX] > committed):
        _group_each(ins, rows, buf, topics, sysflags, head, committed if is_dl else None, names, groups)
    else:
        _group_columns(ins, rows, topics, head, names, groups)
    for q, numbers, offsets, addresses, sizes in groups.values():
        if not numbers:
            continue
        bad: list[int] | None = None
        if q.segdir is not None and q.cq_type != "BatchCQ":
            reader = cq_readers.get((q.topic, q.queue_id))
            if reader is None:
                reader = cq_readers[(q.topic, q.queue_id)] = SegmentReader(q.segdir, cache_files=2)
            bad, exact = _cq_mismatches(reader, offsets, addresses, sizes)
            if exact:
                add_checked(q.checked, offsets[0], offsets[-1] + 1)
        for k in range(len(numbers)) if bad is None else bad:
            problem = ins._cq_entry_problem(q, addresses[k], offsets[k], cq_readers)
            if problem:
                address = addresses[k]
                found.append((numbers[k], 1, {
                    "kind": "cq_missing_entry", "file": run.file, "offset": address - run.seg, "topic": q.topic,
                    "queue_id": q.queue_id, "queue_offset": offsets[k], "physical_offset": address,
                    "detail": problem}))
    found.sort(key=lambda f: (f[0], f[1]))
    for _, _, doc in found:
        ins.damage(doc)


def _queue_of(ins, topics: list, tid: int, queue_id: int, names: dict):
    topic = names.get(topics[tid])
    if topic is None:
        topic = names[topics[tid]] = topics[tid].decode("utf-8")
    q = ins.queues.get((topic, queue_id))
    return q if q is not None else ins.queue(topic, queue_id)


def _group_columns(ins, rows: list, topics: list, head: int, names: dict, groups: dict) -> None:
    """``check_run``'s groups of a run of plain records (no transaction or inner-batch sysflag,
    every one expected in its consume queue), its queues' log counts updated, in C-level passes
    over the row columns."""
    keys = list(map(_row_key, rows))
    offsets_all = list(map(_row_qoffset, rows))
    positions = list(map(_row_pos, rows))
    totals = list(map(_row_total, rows))
    for key in dict.fromkeys(keys):                        # queues in first-seen order
        groups[key] = [_queue_of(ins, topics, key[0], key[1], names)]
    order = sorted(range(len(rows)), key=keys.__getitem__)     # stable: walk order within a queue
    for key, members in groupby(order, key=keys.__getitem__):
        numbers = list(members)
        offsets = list(map(offsets_all.__getitem__, numbers))
        addresses = list(map(positions.__getitem__, numbers))
        if head:
            addresses = [a + head for a in addresses]
        group = groups[key]
        q = group[0]
        group.extend((numbers, offsets, addresses, list(map(totals.__getitem__, numbers))))
        q.log_records += len(numbers)
        low, high = min(offsets), max(offsets) + 1
        if q.log_min_offset is None or low < q.log_min_offset:
            q.log_min_offset = low
        if q.log_max_offset is None or high > q.log_max_offset:
            q.log_max_offset = high


def _group_each(ins, rows: list, buf, topics: list, sysflags: list, head: int, committed: int | None,
                names: dict, groups: dict) -> None:
    """``_group_columns`` record by record, for a run with a transaction or inner-batch record or
    DLedger entries past the committed index (``committed``: None in a plain log): what
    ``_Inspector.on_record`` does for each."""
    for n, row in enumerate(rows):
        sysflag = sysflags[n]
        if sysflag & SYSFLAG_TX_MASK in _NO_CQ_TX:
            continue                     # no consume-queue entry by design
        tid, queue_id, queue_offset = row[ROW_TOPIC], row[ROW_QUEUE_ID], row[ROW_QUEUE_OFFSET]
        group = groups.get((tid, queue_id))
        if group is None:
            group = groups[(tid, queue_id)] = [_queue_of(ins, topics, tid, queue_id, names), [], [], [], []]
        q = group[0]
        count = 1
        if sysflag & SYSFLAG_INNER_BATCH:
            at = row[ROW_AT]
            props_at = at + row[ROW_PROPS_LEN_AT] + 2
            try:
                count = max(1, int(decode_properties(buf[props_at:props_at + row[ROW_PROPS_LEN]])
                                   .get(PROPERTY_INNER_NUM, "1")))
            except ValueError:
                count = 1
        q.log_records += 1
        last = queue_offset + count
        if q.log_min_offset is None or queue_offset < q.log_min_offset:
            q.log_min_offset = queue_offset
        if q.log_max_offset is None or last > q.log_max_offset:
            q.log_max_offset = last
        if committed is not None and row[ROW_INDEX] > committed:
            continue                     # not dispatched yet: no entry expected
        group[1].append(n)
        group[2].append(queue_offset)
        group[3].append(row[ROW_POS] + head)
        group[4].append(row[ROW_TOTAL])


def index_problem(index_reader, index: int, pos: int, entry_size: int, term: int) -> str | None:
    """What is wrong with the DLedger index unit of the entry (``index`` at ``pos``), or None."""
    located = index_reader.locate(index * dl.INDEX_UNIT_BYTES)
    if located is None or located[1] + dl.INDEX_UNIT_BYTES > len(located[0]):
        return "no index unit for this entry"
    unit = dl.decode_index_unit(located[0], located[1])
    if (unit.pos, unit.size, unit.index, unit.term) != (pos, entry_size, index, term):
        return f"index unit says pos {unit.pos}, size {unit.size}, index {unit.index}, term {unit.term}"
    return None
