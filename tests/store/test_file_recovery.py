"""Recovery after an unclean shutdown, for the plain and the DLedger commitlog.

The tail is cut at EVERY byte of the last two records (everything after the cut reads as zeros, as
after a crash that lost the unflushed pages), or garbage is appended after the last record. After
reopening: every record before the cut is there, nothing torn is served, the consume queues agree
with the commitlog, and appends continue at the right queue offsets. These run on tmpfs when the
machine has one, since each case reopens a store (fsyncs are the cost, not the checks).
"""
import os
import random
import shutil

import pytest

from mqbench.broker.store.segments import segment_name
from store_files_helpers import (SEG, VERSIONS, build, check_store, crash_marker, data_dir, intact_end,
                                 read_log, zero_from)


def _tail_cuts(fast_dir, version, cuts_of):
    base = fast_dir / "base"
    # the last flush (the checkpoint) was before the last two records: they are the crash's tail
    expected, spans, early = build(base, version, random.Random(7), checkpoint_after=29)
    first, last = spans[-2], spans[-1]
    original = read_log(data_dir(base, version), first[0], last[1])
    for cut in cuts_of(spans[-2:]):
        root = fast_dir / f"cut{cut}"
        shutil.copytree(base, root)
        (root / "checkpoint").write_bytes(early)
        zero_from(data_dir(root, version), cut, last[1])
        crash_marker(root)
        check_store(root, version, expected, intact_end(spans, original, first[0], cut))
        shutil.rmtree(root)


@pytest.mark.slow  # ~1,000 recoveries; the CI slice below cuts a quarter of them
@pytest.mark.parametrize("version", VERSIONS)
def test_tail_cut_at_every_byte_of_the_last_two_records(fast_dir, version):
    _tail_cuts(fast_dir, version, lambda spans: range(spans[0][0], spans[-1][1] + 1))


HEAD_BYTES = 24  # the size and magic fields of a record, or of a DLedger entry and its size fields
STRIDE_BYTES = 11


def _heads_tails_and_a_stride(spans):
    """Every cut inside each span's first HEAD_BYTES and last 8 bytes (where sizes and magic codes
    are read and a record is one byte short of whole), every STRIDE_BYTES-th byte between (torn
    bodies, caught by the CRC), and each span's end: a quarter of the every-byte cuts."""
    cuts = set()
    for start, end in spans:
        cuts.update(range(start, min(end, start + HEAD_BYTES) + 1))
        cuts.update(range(max(start, end - 8), end + 1))
        cuts.update(range(start, end, STRIDE_BYTES))
    return sorted(cuts)


@pytest.mark.parametrize("version", VERSIONS)
def test_tail_cut_at_heads_tails_and_a_stride_of_the_last_two_records(fast_dir, version):
    _tail_cuts(fast_dir, version, _heads_tails_and_a_stride)


@pytest.mark.parametrize("version", VERSIONS)
def test_garbage_after_the_last_record_is_zeroed(fast_dir, version):
    base = fast_dir / "base"
    expected, spans, _ = build(base, version, random.Random(11))
    end = spans[-1][1]
    rng = random.Random(3)
    header_like = (300).to_bytes(4, "big") + bytes.fromhex("daa320a7") + rng.randbytes(80)
    entry_like = (1).to_bytes(4, "big") + (200).to_bytes(4, "big") + rng.randbytes(60)
    for n, garbage in enumerate([rng.randbytes(k) for k in (1, 7, 8, 9, 50, 500)] + [header_like, entry_like]):
        garbage = garbage[:SEG - end % SEG]
        root = fast_dir / f"g{n}"
        shutil.copytree(base, root)
        seg = end - end % SEG
        with open(data_dir(root, version) / segment_name(seg), "r+b") as f:
            f.seek(end - seg)
            f.write(garbage)
        crash_marker(root)
        check_store(root, version, expected, end)
        shutil.rmtree(root)


@pytest.mark.parametrize("version", VERSIONS)
def test_queues_behind_the_commitlog_are_dispatched_again(fast_dir, version):
    root = fast_dir / "s"
    expected, spans, early = build(root, version, random.Random(5), checkpoint_after=9)
    # the crash lost every queue write after the early checkpoint: cut the queues back, restore it
    shutil.rmtree(root / "batchconsumequeue")
    for qid in (0, 1):
        q = root / "consumequeue" / "T" / str(qid) / segment_name(0)
        data = bytearray(q.read_bytes())
        data[5 * 20:] = bytes(len(data) - 5 * 20)
        q.write_bytes(bytes(data))
    (root / "checkpoint").write_bytes(early)
    crash_marker(root)
    check_store(root, version, expected, spans[-1][1])


@pytest.mark.parametrize("version", VERSIONS)
def test_a_lost_checkpoint_rebuilds_every_queue(fast_dir, version):
    root = fast_dir / "s"
    expected, spans, _ = build(root, version, random.Random(9))
    shutil.rmtree(root / "consumequeue")
    shutil.rmtree(root / "batchconsumequeue")
    os.unlink(root / "checkpoint")
    crash_marker(root)
    check_store(root, version, expected, spans[-1][1])


def test_a_torn_record_in_an_earlier_segment_ends_the_log_there(fast_dir):
    """Bad CRC in the middle (not just at the tail): everything from it on is dropped, never served."""
    root = fast_dir / "s"
    expected, spans, _ = build(root, "v5", random.Random(13))
    victim = spans[3]
    seg = victim[0] - victim[0] % SEG
    with open(data_dir(root, "v5") / segment_name(seg), "r+b") as f:
        f.seek(victim[1] - seg - 20)           # inside the body or topic: CRC or size check fails
        f.write(b"\xff")
    (root / "checkpoint").unlink()            # scan from the oldest segments kept
    crash_marker(root)
    check_store(root, "v5", expected, victim[0])
