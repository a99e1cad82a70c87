"""Opening the next segment of a queue (an append or a dispatch on the event loop) no longer fsyncs
its directory there: the next flush, in the flusher's thread, does it before it returns (the
loop-stall probe's finding: 10-27 ms per new consume-queue segment under load).

The injected fsync waits for a loop callback scheduled before the writes: had it run on the loop
thread, the callback could not have run and the call records a stall."""
from __future__ import annotations

import asyncio
import os
import threading

from mqbench.broker.store import segments
from mqbench.broker.store.segments import SegmentQueue


class SlowFsync:
    """An fsync that waits (up to 2 s) for ``ran`` to be set by a loop callback, then syncs."""

    def __init__(self, real):
        self.real = real
        self.ran = threading.Event()
        self.calls: list[tuple[str, bool]] = []      # (what, whether the loop ran meanwhile)

    def __call__(self, what) -> None:
        self.calls.append((os.fspath(what), self.ran.wait(2.0)))
        self.real(what)


def test_creating_a_segment_on_the_loop_leaves_the_directory_fsync_to_the_next_flush(tmp_path, monkeypatch):
    slow = SlowFsync(segments.fsync_dir)
    monkeypatch.setattr(segments, "fsync_dir", slow)
    q = SegmentQueue(tmp_path / "cq", 64)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(slow.ran.set)
        q.write(0, b"a" * 20)             # creates segment 0 on the loop thread
        q.write(64, b"b" * 20)            # and segment 64
        assert slow.calls == []           # no directory fsync on the loop
        await asyncio.to_thread(q.flush)  # the flusher's thread syncs it once, before the flush returns
        assert slow.calls == [(str(tmp_path / "cq"), True)]
        await asyncio.to_thread(q.flush)
        assert len(slow.calls) == 1       # nothing created since: no second directory fsync
        q.write(128, b"c")
        await asyncio.to_thread(q.flush_from, 0)
        assert len(slow.calls) == 2

    asyncio.run(main())
    q.close()
    reopened = SegmentQueue(tmp_path / "cq", 64)
    assert reopened.segment_starts() == [0, 64, 128] and reopened.read(0, 20) == b"a" * 20
    reopened.close()


def test_a_failed_directory_fsync_is_tried_again_by_the_next_flush(tmp_path, monkeypatch):
    calls = []

    def failing_once(directory) -> None:
        calls.append(directory)
        if len(calls) == 1:
            raise OSError(5, "injected EIO")

    monkeypatch.setattr(segments, "fsync_dir", failing_once)
    q = SegmentQueue(tmp_path / "cq", 64)
    q.write(0, b"x")
    try:
        q.flush()
    except OSError:
        pass
    else:
        raise AssertionError("the injected EIO was swallowed")
    q.flush()
    assert len(calls) == 2
    q.close()
