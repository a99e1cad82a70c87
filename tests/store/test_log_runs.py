"""The log reader's windowed path (``broker.store.log_runs``): with ``scan`` it must yield the same
records, damage and totals as the record-by-record walk, under every policy, at every window size
(so runs start and stop at window edges, blanks, no-ops and damage), with the compiled scanner and
with the Python one (``MQBENCH_NATIVE=0``'s), on clean and damaged logs (random byte changes and
cuts, Hypothesis)."""
from __future__ import annotations

import os
import pathlib
import tempfile
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.record import Message
from mqbench.broker.store.log_reader import RAISE, REPORT, STOP, FolderFiles, LogItem, LogReader, list_segments
from mqbench.broker.store.log_runs import LogRun
from mqbench.broker.store.segment_files import log_dirs
from mqbench.broker.store.store import Store
from mqbench.broker.store.versions import detect
from mqbench.errors import CorruptDataError
from mqbench.migrate import scan

PY_SCAN = SimpleNamespace(hop=scan.hop_py,
                          summarize=lambda buf, *a, relaxed=False: scan.summarize_py(bytes(buf), *a, relaxed=relaxed))
SCANS = {"default": scan, "python": PY_SCAN}


def _write(root, version: str, records: int) -> None:
    with Store.open(root, version, create=True, commitlog_segment_bytes=8 << 10,
                    dledger_index_segment_bytes=32 << 10, flush_policy="none") as store:
        store.create_topic("S", read_queue_nums=2, write_queue_nums=2)
        for n in range(records):
            props = {"KEYS": f"k{n}", "TAGS": "paid"} if n % 5 else {"KEYS": "caf\u00e9"}   # not ASCII: the reader's
            store.append(Message(topic="S", body=b"y" * (20 + n * 37 % 300), queue_id=n % 2, properties=props))


def _folders(root):
    return [(list_segments(os.path.join(root, rel), rel), rel, is_dl)
            for rel, is_dl in log_dirs(root, detect(root).dledger_dirs)]


def _flat(item, dledger: bool):
    """An item as comparable tuples (a run: one tuple per record, as its LogItem would be)."""
    if isinstance(item, dict):
        return [("damage", tuple(sorted(item.items())))]
    if isinstance(item, LogItem):
        return [(item.pos, item.next, item.address, item.is_record, item.file, item.file_offset, item.index,
                 item.term, item.entry_size, item.damage, item.body)]
    assert type(item) is LogRun
    head = dl.ENTRY_HEADER_BYTES if dledger else 0
    return [(row[0], row[1], row[0] + head, True, item.file, row[0] - item.seg, row[12] if dledger else None,
             row[13] if dledger else None, row[1] - row[0] if dledger else None, None,
             bytes(item.buf[row[3]:row[3] + row[4]])) for row in item.rows]


def _walk(segdir, rel, dledger, policy, scan_module, window_bytes, start=None, stop=None):
    files = FolderFiles(segdir, rel)
    reader = LogReader(files, dledger=dledger, policy=policy, scan=scan_module, window_bytes=window_bytes)
    out: list = []
    runs = 0
    try:
        for item in reader.items(start=start, stop=stop):
            runs += type(item) is LogRun
            out.extend(_flat(item, dledger))
    except CorruptDataError as exc:
        out.append(("raised", str(exc)))
    finally:
        files.close()
    return out + [("totals", reader.end, reader.records, reader.entries, reader.blanks)], runs


def _same(root, policies=(REPORT, STOP, RAISE), windows=(300, 4096, 8 << 20)):
    runs = 0
    for segdir, rel, dledger in _folders(root):
        for policy in policies:
            want, _ = _walk(segdir, rel, dledger, policy, None, 8 << 20)
            for name, scan_module in SCANS.items():
                for window in windows:
                    got, n = _walk(segdir, rel, dledger, policy, scan_module, window)
                    assert got == want, (rel, policy, name, window)
                    runs += n
    return runs


@pytest.mark.parametrize("version", ["v4", "v5", "v4-dledger", "v5-dledger"])
def test_runs_are_the_walk_on_a_clean_log(tmp_path, version):
    _write(tmp_path / "s", version, 120)
    assert _same(str(tmp_path / "s")) > 0          # the windowed path was taken


def test_start_and_stop_inside_a_run(tmp_path):
    _write(tmp_path / "s", "v5-dledger", 60)
    (segdir, rel, dledger), = _folders(str(tmp_path / "s"))
    items, _ = _walk(segdir, rel, dledger, REPORT, None, 8 << 20)
    positions = [i[0] for i in items if isinstance(i[0], int)]
    start, stop = positions[7], positions[40]
    want, _ = _walk(segdir, rel, dledger, REPORT, None, 8 << 20, start=start, stop=stop)
    for window in (300, 8 << 20):
        got, runs = _walk(segdir, rel, dledger, REPORT, scan, window, start=start, stop=stop)
        assert got == want and runs


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(["v5", "v5-dledger"]),
       st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 257)), min_size=1, max_size=5))
def test_runs_are_the_walk_on_damaged_logs(version, changes):
    """Random byte changes in the log files (256: cut the file there; 257: zero from there)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "s"
        _write(root, version, 30)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name in ("commitlog", "data"))
        for at, value in changes:
            path = files[at % len(files)]
            data = bytearray(path.read_bytes())
            if not data:
                continue
            where = at % min(len(data), 6000)          # where the records are
            if value == 256:
                del data[where:]
            elif value == 257:
                data[where:] = bytes(len(data) - where)
            else:
                data[where] = value
            path.write_bytes(bytes(data))
        _same(str(root), policies=(REPORT, RAISE), windows=(700,))
