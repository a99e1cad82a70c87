"""A delay service woken on commits (the broker's wiring) does not poll, and still delivers on time.

Found by profiling `raft3` leaders at 100 msgs/s: the service stepped every ``poll_interval_ms``
(20 ms: 50 steps a second, each planning all 18 levels and the timer index) although the broker
already wakes it whenever a delayed or timer record is committed (``notify_if_grown``).
"""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.formats.record import Message
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.service import WOKEN_IDLE_MS
from timerharness import Group




def test_a_service_woken_on_commit_sleeps_instead_of_polling_and_delivers_on_time(tmp_path):
    g = Group(tmp_path).on_wall_clock()
    polled = g.service("a", config=DelayConfig(poll_interval_ms=20))
    woken = g.service("b", config=DelayConfig(poll_interval_ms=20), woken_on_commit=True)
    steps = {polled: 0, woken: 0}
    for svc in steps:
        real = svc.step

        async def counting(real=real, svc=svc):
            steps[svc] += 1
            return await real()
        svc.step = counting

    async def main():
        await polled.start()
        await woken.start()
        try:
            await asyncio.sleep(0.1)
            before = dict(steps)
            await asyncio.sleep(0.6)
            idle = {svc: steps[svc] - before[svc] for svc in steps}
            await polled.stop()                      # only the woken one delivers from here on
            sent = g.clock_ms()
            g.send(Message("Orders", b"soon", {"TIMER_DELIVER_MS": str(sent + 150)}))
            woken.notify_if_grown()                  # what the broker's on_commit does
            deadline = time.monotonic() + 5
            while not g.store.max_offset("Orders", 0):
                assert time.monotonic() < deadline, "the timer message was never delivered"
                await asyncio.sleep(0.005)
            return idle, sent
        finally:
            await woken.stop()
    idle, sent = asyncio.run(asyncio.wait_for(main(), 20))
    assert idle[polled] >= 10, idle                  # the plain service still polls (unchanged)
    assert idle[woken] <= 0.6 * 1000 / WOKEN_IDLE_MS + 2, idle   # before: one step per 20 ms
    msg, = g.queue("Orders", 0)
    assert sent + 150 <= msg.store_timestamp_ms < sent + 400
