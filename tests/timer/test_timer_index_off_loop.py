"""The timer index is opened (its recovery truncates and fsyncs the timer log and its folder) and
closed (a checkpoint: fsyncs and ``config/timercheck`` replaced) in a worker thread, not on the
event loop: both happen on every leadership change, 13-43 ms each under load when they ran on the
loop (the loop-stall probe on ``bench failover``).

The injected directory fsync waits (up to 1 s) for a loop callback scheduled when it starts: had it
run on the loop thread, the callback could not have run and the call records a stall."""
from __future__ import annotations

import asyncio
import os
import threading

from mqbench.broker.formats.record import Message
from mqbench.broker.store import atomic, segments
from mqbench.broker.timer.config import DelayConfig
from timerharness import Group


class SlowDirFsync:
    def __init__(self, loop: asyncio.AbstractEventLoop, real):
        self.loop, self.real = loop, real
        self.calls: list[tuple[str, bool]] = []     # (folder, whether the loop ran meanwhile)

    def __call__(self, directory) -> None:
        ran = threading.Event()
        self.loop.call_soon_threadsafe(ran.set)
        self.calls.append((os.fspath(directory), ran.wait(1.0)))
        self.real(directory)


def test_the_timer_index_is_opened_and_closed_off_the_event_loop(tmp_path, monkeypatch):
    group = Group(tmp_path)
    indexer = group.service("b", config=DelayConfig())
    group.send(Message("Orders", b"timer", {"TIMER_DELIVER_MS": str(group.now_ms + 60_000)}))

    async def main() -> SlowDirFsync:
        slow = SlowDirFsync(asyncio.get_running_loop(), segments.fsync_dir)
        monkeypatch.setattr(segments, "fsync_dir", slow)
        monkeypatch.setattr(atomic, "fsync_dir", slow)
        await indexer.follow()                  # opens the index (a fresh one: reset, checkpoint)
        async def indexed(count: int) -> None:
            while indexer.index is None or indexer.index.next_queue_offset < count or indexer._checkpointing is not None \
                    and not indexer._checkpointing.done():
                await asyncio.sleep(0.01)
        await asyncio.wait_for(indexed(1), 5)   # opened, indexed, checkpointed (its first is due at once)
        group.send(Message("Orders", b"timer2", {"TIMER_DELIVER_MS": str(group.now_ms + 60_000)}))
        indexer.notify()
        await asyncio.wait_for(indexed(2), 5)   # indexed, not checkpointed: the close has one to write
        opened = len(slow.calls)
        await indexer.stop()                    # checkpoints and closes it
        assert opened and len(slow.calls) > opened, slow.calls
        return slow

    slow = asyncio.run(main())
    assert all(ran for _folder, ran in slow.calls), f"an index fsync held the event loop: {slow.calls}"
    assert indexer.index is None
