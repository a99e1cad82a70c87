"""Fuzzing the file layer with what a crash can leave behind: lost sectors after the last
fdatasync, stale bytes past the end of the log or of a consume queue, any bytes in the checkpoint.
The store must recover (serving only records that were written, at their own offsets) or, for
the checkpoint and queue files, at worst refuse with a UserError naming the problem."""
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.store.segments import segment_name
from mqbench.errors import UserError
from store_files_helpers import SEG, assert_queues_agree, build, crash_marker, data_dir, open_store

_BASES: dict[str, tuple[Path, list, int]] = {}


def base_store(version: str):
    if version not in _BASES:
        d = Path(tempfile.mkdtemp(prefix="mqbench-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        expected, spans, early = build(d / "base", version, random.Random(1), checkpoint_after=29)
        (d / "early-checkpoint").write_bytes(early)
        _BASES[version] = (d, expected, spans[29][1])   # the durable point of that checkpoint
    return _BASES[version]


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    for d, *_ in _BASES.values():
        shutil.rmtree(d, ignore_errors=True)
    _BASES.clear()


def reopen_and_check(root: Path, version: str, expected) -> None:
    """Open refuses with a UserError, or every read either raises a UserError (CorruptDataError)
    naming the damage or returns messages that were really written, at their own offsets."""
    try:
        store = open_store(root, version, create=False)
    except UserError:
        return
    try:
        for topic, qid in {(e[0], e[1]) for e in expected}:
            want = {(e[2], e[3]) for e in expected if (e[0], e[1]) == (topic, qid)}
            try:
                got = store.read_queue(topic, qid, 0, max_messages=1000, max_bytes=1 << 30)
            except UserError:
                continue
            assert {(m.queue_offset, m.body) for m in got.messages} <= want
        try:
            assert_queues_agree(store)
        except UserError:
            pass
    finally:
        store.close()


SECTOR = 512
# what a crash can leave after the last fdatasync: sectors of the tail that never reached the disk
# (zeros, as the files are zero-filled) and anything at all past the end of what was written
lost_sectors = st.lists(st.integers(0, 2 * SEG // SECTOR), max_size=6)
stale_bytes = st.lists(st.tuples(st.integers(0, SEG), st.binary(min_size=1, max_size=64)), max_size=3)
FUZZ = settings(max_examples=int(os.environ.get("STORE_FUZZ_EXAMPLES", "30")))   # each example reopens a store


def write_log(directory: Path, pos: int, data: bytes) -> None:
    while data:
        seg = pos - pos % SEG
        path = directory / segment_name(seg)
        if not path.exists():
            return
        n = min(len(data), seg + SEG - pos)
        with open(path, "r+b") as f:
            f.seek(pos - seg)
            f.write(data[:n])
        pos, data = pos + n, data[n:]


@pytest.mark.parametrize("version", ["v5", "v5-dledger"])
@FUZZ
@given(lost=lost_sectors, stale=stale_bytes)
def test_crash_damage_after_the_durable_point(version, lost, stale):
    """Whatever sectors after the durable point were lost and whatever lies past the end: the
    store opens, everything durable is served, nothing torn is, the queues agree with the log."""
    d, expected, durable = base_store(version)
    root = d / "case"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(d / "base", root)
    (root / "checkpoint").write_bytes((d / "early-checkpoint").read_bytes())
    directory = data_dir(root, version)
    end = max(e[4] for e in expected)
    for k in lost:
        start = max(durable, (durable // SECTOR + k) * SECTOR)
        stop = (start // SECTOR + 1) * SECTOR
        write_log(directory, start, bytes(stop - start))
    for rel, data in stale:
        write_log(directory, end + rel, data)
    crash_marker(root)
    store = open_store(root, version, create=False)
    try:
        assert_queues_agree(store)
        for topic, qid in {(e[0], e[1]) for e in expected}:
            want = {(e[2], e[3]) for e in expected if (e[0], e[1]) == (topic, qid)}
            got = store.read_queue(topic, qid, 0, max_messages=1000, max_bytes=1 << 30)
            served = [(m.queue_offset, m.body) for m in got.messages]
            assert set(served) <= want
            assert [o for o, _ in served] == list(range(len(served)))     # no holes
            assert {(e[2], e[3]) for e in expected if (e[0], e[1]) == (topic, qid) and e[4] <= durable} <= set(served)
    finally:
        store.close()


@FUZZ
@given(raw=st.binary(min_size=1, max_size=128), which=st.sampled_from(["checkpoint", "cq", "bcq"]))
def test_random_bytes_in_the_checkpoint_or_after_the_queue_ends(raw, which):
    """A crash can leave anything in the checkpoint's bytes and stale bytes after a queue's last
    unit (the units themselves were written before the checkpoint said so)."""
    d, expected, _ = base_store("v5")
    root = d / "case"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(d / "base", root)
    count = {(e[0], e[1]): 0 for e in expected}
    for e in expected:
        count[(e[0], e[1])] += 1
    target, at = {"checkpoint": (root / "checkpoint", 0),
                  "cq": (root / "consumequeue" / "T" / "1" / segment_name(0), 20 * count[("T", 1)]),
                  "bcq": (root / "batchconsumequeue" / "B" / "0" / segment_name(0), 46)}[which]
    data = bytearray(target.read_bytes())
    raw = raw[:len(data) - at]
    data[at:at + len(raw)] = raw
    target.write_bytes(bytes(data))
    crash_marker(root)
    reopen_and_check(root, "v5", expected)
