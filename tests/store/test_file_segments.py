"""Segment files, flush policies/group commit and the atomic-file primitives."""
import os
import threading

import pytest

from mqbench.broker.store.atomic import AbortMarker, StoreLock, read_with_backup, write_atomic
from mqbench.broker.store.flush import (FlushPolicy, GroupCommit, IntervalFlusher, IntervalSchedule,
                                        parse_flush_policy)
from mqbench.broker.store.segments import SegmentQueue, segment_name
from mqbench.errors import CorruptDataError, UserError


def test_segment_files_are_full_size_zero_filled_and_named_by_offset(tmp_path):
    q = SegmentQueue(tmp_path / "log", 1000)
    q.write(0, b"abc")
    q.write(1000, b"xyz")
    names = sorted(os.listdir(tmp_path / "log"))
    assert names == ["00000000000000000000", "00000000000000001000"]
    assert all(os.path.getsize(tmp_path / "log" / n) == 1000 for n in names)
    assert q.read(0, 5) == b"abc\0\0"
    assert q.read(998, 5) == b"\0\0xyz"      # reads may cross a segment boundary
    assert q.read(1998, 10) == b"\0\0"        # nothing past the last segment
    assert segment_name(1073741824) == "00000000001073741824"


def test_write_may_not_cross_a_segment(tmp_path):
    from mqbench.errors import InvariantViolation
    q = SegmentQueue(tmp_path, 100)
    with pytest.raises(InvariantViolation):
        q.write(95, b"0123456789")


def test_truncate_zeroes_the_tail_and_deletes_later_segments(tmp_path):
    q = SegmentQueue(tmp_path, 100)
    for start in (0, 100, 200):
        q.write(start, b"\xff" * 100)
    q.truncate(150)
    assert q.segment_starts() == [0, 100]
    assert q.read(100, 100) == b"\xff" * 50 + b"\0" * 50
    assert os.path.getsize(tmp_path / segment_name(100)) == 100
    q.truncate(100)
    assert q.segment_starts() == [0]
    q.truncate(0)
    assert q.segment_starts() == [0] and q.read(0, 100) == b"\0" * 100
    q.close()
    assert SegmentQueue(tmp_path, 100).segment_starts() == [0]


def test_reopen_checks_sizes_names_and_gaps(tmp_path):
    q = SegmentQueue(tmp_path / "a", 100)
    q.write(0, b"x")
    q.write(100, b"y")
    q.close()
    q = SegmentQueue(tmp_path / "a", 100)
    assert q.read(100, 1) == b"y"
    q.close()
    with pytest.raises(CorruptDataError, match="expected 200"):
        SegmentQueue(tmp_path / "a", 200)
    (tmp_path / "a" / segment_name(300)).write_bytes(b"\0" * 100)
    with pytest.raises(CorruptDataError, match="gap"):
        SegmentQueue(tmp_path / "a", 100)
    os.unlink(tmp_path / "a" / segment_name(300))
    (tmp_path / "a" / segment_name(200)).write_bytes(b"")   # crash while creating: deleted
    assert SegmentQueue(tmp_path / "a", 100).segment_starts() == [0, 100]
    (tmp_path / "a" / "junk").write_bytes(b"")
    with pytest.raises(CorruptDataError, match="20 digits"):
        SegmentQueue(tmp_path / "a", 100)


def test_delete_before_keeps_the_last_segment(tmp_path):
    q = SegmentQueue(tmp_path, 100)
    for start in (0, 100, 200):
        q.write(start, b"z")
    assert q.delete_before(150) == 1
    assert q.min_offset == 100
    assert q.delete_before(10_000) == 1
    assert q.segment_starts() == [200]


@pytest.mark.parametrize("text,expected", [
    ("none", FlushPolicy("none")), ("sync", FlushPolicy("sync")), ("SYNC", FlushPolicy("sync")),
    ("interval:200ms", FlushPolicy("interval", 200)), ("interval:2s", FlushPolicy("interval", 2000)),
])
def test_parse_flush_policy(text, expected):
    assert parse_flush_policy(text) == expected
    assert parse_flush_policy(str(expected)) == expected


@pytest.mark.parametrize("bad", ["", "fast", "interval:", "interval:0ms", "interval:-1ms", "interval:5m"])
def test_bad_flush_policy_names_the_problem(bad):
    with pytest.raises(UserError, match="flush policy"):
        parse_flush_policy(bad)


def test_group_commit_shares_one_sync_between_waiters():
    gc = GroupCommit(lambda: None)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_sync():
        calls.append(gc.written_offset)
        started.set()
        release.wait(5)
    gc._sync_fn = slow_sync
    gc.written(10)
    first = threading.Thread(target=gc.wait_durable, args=(10,))
    first.start()
    started.wait(5)
    # while the first fdatasync runs, three more appends arrive and wait
    gc.written(20)
    gc.written(30)
    waiters = [threading.Thread(target=gc.wait_durable, args=(o,)) for o in (20, 25, 30)]
    for w in waiters:
        w.start()
    release.set()
    first.join(5)
    for w in waiters:
        w.join(5)
    assert gc.flushed_offset == 30
    assert calls == [10, 30]       # two syncs for four acknowledged appends
    assert gc.wait_durable(30) == 30 and len(calls) == 2


def test_interval_schedule_uses_the_given_time():
    s = IntervalSchedule(200, now_ms=1000)
    assert not s.due(1199) and s.wait_ms(1100) == 100
    assert s.due(1200)
    s.flushed(1250)
    assert not s.due(1400) and s.due(1450)


def test_interval_flusher_thread_flushes_and_stops():
    done = threading.Event()
    flusher = IntervalFlusher(done.set, 5, clock_ms=lambda: int(__import__("time").monotonic() * 1000))
    assert done.wait(5)
    flusher.stop()


def test_write_atomic_keeps_a_backup_and_reads_fall_back(tmp_path):
    path = tmp_path / "config" / "x.json"
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert (tmp_path / "config" / "x.json.bak").read_bytes() == b"one"
    assert not (tmp_path / "config" / "x.json.tmp").exists()

    def parse(data):
        if data == b"bad":
            raise ValueError("bad")
        return data.decode()
    assert read_with_backup(path, parse) == "two"
    path.write_bytes(b"bad")
    assert read_with_backup(path, parse) == "one"
    path.write_bytes(b"")
    assert read_with_backup(path, parse) == "one"
    (tmp_path / "config" / "x.json.bak").write_bytes(b"bad")
    with pytest.raises(UserError, match="cannot be parsed"):
        read_with_backup(path, parse)
    assert read_with_backup(tmp_path / "missing.json", parse) is None


def test_store_lock_is_exclusive_and_abort_marker_round_trip(tmp_path):
    lock = StoreLock(tmp_path)
    with pytest.raises(UserError, match="another process"):
        StoreLock(tmp_path)
    lock.release()
    StoreLock(tmp_path).release()
    marker = AbortMarker(tmp_path)
    assert not marker.was_present
    marker.create(1234)
    assert (tmp_path / "abort").read_text() == "1234"
    assert AbortMarker(tmp_path).was_present
    marker.remove()
    assert not AbortMarker(tmp_path).was_present
