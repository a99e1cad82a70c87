"""Fuzzing the file layer: whatever bytes a crash leaves in the last commitlog segment, after the
end of a consume queue or in the checkpoint, opening the store either recovers (serving only
records that were written, at their own offsets) or a UserError names the problem."""
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


def reopen_and_check(root: Path, version: str, expected, durable: int = 0) -> None:
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
            served = {(m.queue_offset, m.body) for m in got.messages}
            assert served <= want
            # whatever the damage after the durable point, everything before it is still served
            assert {(e[2], e[3]) for e in expected if (e[0], e[1]) == (topic, qid) and e[4] <= durable} <= served
        try:
            assert_queues_agree(store)
        except UserError:
            pass
    finally:
        store.close()


writes = st.lists(st.tuples(st.integers(0, 2 * SEG), st.binary(min_size=1, max_size=64)), min_size=1, max_size=4)
FUZZ = settings(max_examples=30)   # each example copies and reopens a store


@pytest.mark.parametrize("version", ["v5", "v5-dledger"])
@FUZZ
@given(damage=writes)
def test_random_damage_after_the_durable_point(version, damage):
    """A crash can leave anything after the last fdatasync the checkpoint records."""
    d, expected, durable = base_store(version)
    root = d / "case"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(d / "base", root)
    (root / "checkpoint").write_bytes((d / "early-checkpoint").read_bytes())
    directory = data_dir(root, version)
    starts = sorted(int(n) for n in os.listdir(directory))
    for rel, data in damage:
        pos = durable + rel
        seg = pos - pos % SEG
        if seg not in starts:
            continue
        data = data[:seg + SEG - pos]
        with open(directory / segment_name(seg), "r+b") as f:
            f.seek(pos - seg)
            f.write(data)
    crash_marker(root)
    reopen_and_check(root, version, expected, durable)


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
