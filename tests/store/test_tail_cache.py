"""The in-memory tail of a segment queue (``tail_cache.TailCache`` and ``SegmentQueue``'s use of it):
what it answers is always what the files hold, it stays within its capacity, and reads of what
was just written do not touch the files."""
from __future__ import annotations

import os

from hypothesis import example, given, settings, strategies as st

from mqbench.broker.store.segments import SegmentQueue
from mqbench.broker.store.tail_cache import TailCache

SPACE = 600


def _ops():
    offset = st.integers(0, SPACE - 1)
    put = st.tuples(st.just("put"), offset, st.binary(min_size=0, max_size=90))
    get = st.tuples(st.just("get"), offset, st.integers(-2, 120))
    cut = st.tuples(st.just("cut"), offset, st.just(0))
    drop = st.tuples(st.just("drop"), offset, st.just(0))
    return st.lists(st.one_of(put, put, get, get, cut, drop), max_size=60)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 200), ops=_ops())
def test_tail_cache_answers_what_was_written(capacity, ops):
    model = bytearray(SPACE + 200)        # the byte space as the files hold it
    cache = TailCache(capacity)
    for op, offset, arg in ops:
        if op == "put":
            model[offset:offset + len(arg)] = arg
            cache.put(offset, arg)
        elif op == "get":
            got = cache.get(offset, arg)
            if got is not None:
                assert arg > 0 and got == bytes(model[offset:offset + arg])
        elif op == "cut":
            model[offset:] = bytes(len(model) - offset)
            cache.cut(offset)
        else:
            cache.drop_before(offset)
        assert 0 <= len(cache) <= capacity
        assert cache.get(cache.start, len(cache)) in (None, bytes(model[cache.start:cache.end]))


def test_tail_cache_keeps_the_newest_bytes_across_the_ring_edge():
    cache = TailCache(10)
    cache.put(0, b"abcdefgh")
    cache.put(8, b"ijklmn")                # wraps: 0..3 dropped
    assert (cache.start, cache.end) == (4, 14)
    assert cache.get(4, 10) == b"efghijklmn"
    assert cache.get(3, 2) is None and cache.get(13, 2) is None
    cache.put(20, b"xy")                   # after a gap: replaces what it held
    assert (cache.start, cache.end) == (20, 22) and cache.get(12, 2) is None
    cache.put(0, b"0123456789abc")         # longer than the ring: its last 10 bytes
    assert cache.get(3, 10) == b"3456789abc" and cache.get(2, 1) is None
    cache.cut(8)
    assert cache.get(3, 5) == b"34567" and cache.get(7, 2) is None


class _CountingPread:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = os.pread

        def pread(fd, n, pos):
            self.calls += 1
            return real(fd, n, pos)
        monkeypatch.setattr(os, "pread", pread)


def test_segment_queue_reads_its_tail_without_pread(tmp_path, monkeypatch):
    queue = SegmentQueue(tmp_path / "q", 1000, tail_cache_bytes=256)
    for i in range(30):
        queue.write(i * 40, bytes([i]) * 40)        # 1,200 bytes over two segments
    preads = _CountingPread(monkeypatch)
    assert queue.read(1200 - 256, 256) == b"".join(bytes([i]) * 40 for i in range(30))[-256:]
    assert queue.read(990, 20) == bytes([24]) * 10 + bytes([25]) * 10    # across the segment edge
    assert preads.calls == 0
    assert queue.read(0, 40) == bytes([0]) * 40 and preads.calls == 1     # older: from the file
    queue.close()


@settings(max_examples=40, deadline=None)
@example(ops=[("write", 0, b"x" * 80), ("truncate", 40, b"")])
@example(ops=[("write", 150, b"y" * 50), ("write", 200, b"z" * 50), ("delete", 200, b""), ("read", 175, 30)])
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 699), st.binary(min_size=1, max_size=80)),
    st.tuples(st.just("read"), st.integers(0, 720), st.integers(0, 300)),
    st.tuples(st.just("truncate"), st.integers(0, 700), st.just(b"")),
    st.tuples(st.just("delete"), st.integers(0, 700), st.just(b"")),
    st.tuples(st.just("combined"), st.integers(0, 699), st.binary(min_size=1, max_size=60))), max_size=40))
def test_segment_queue_with_a_tail_reads_as_without(tmp_path_factory, ops):
    root = tmp_path_factory.mktemp("tail")
    plain, cached = SegmentQueue(root / "plain", 200), SegmentQueue(root / "cached", 200, tail_cache_bytes=120)
    written_end = 0
    for op, offset, data in ops:
        for queue in (plain, cached):
            if op in ("write", "combined"):
                start = max(offset, queue.min_offset)
                if start > written_end + 200:       # segments are created one after the other
                    start = written_end
                data = data[:queue.remaining_in_segment(start)]
                if op == "combined":
                    with queue.combined_writes():
                        queue.write(start, data[:len(data) // 2])
                        queue.write(start + len(data) // 2, data[len(data) // 2:])
                else:
                    queue.write(start, data)
            elif op == "truncate":
                queue.truncate(offset)
            elif op == "delete":
                queue.delete_before(offset)
        if op in ("write", "combined"):
            written_end = max(written_end, start + len(data))
        elif op == "truncate":
            written_end = min(written_end, offset)
        sizes = [data] if isinstance(data, int) else [1, 30, 300]
        for at in (offset, max(0, offset - 25)):
            for size in sizes:
                assert cached.read(at, size) == plain.read(at, size)
        assert cached.min_offset == plain.min_offset
    plain.close()
    cached.close()
