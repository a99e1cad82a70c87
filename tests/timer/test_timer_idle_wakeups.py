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


def test_delayed_records_behind_a_waiting_head_wake_no_step_and_a_new_level_does(tmp_path):
    """The orders run: every 22nd-percentile message goes to level 16 (30 min) and each of their
    commits woke a step that planned nothing. Growth behind a head the service sleeps towards
    needs no step; growth of a level without one (or of the timer queue) still wakes it."""
    g = Group(tmp_path).on_wall_clock()
    svc = g.service("w", woken_on_commit=True)
    steps = [0]
    real = svc.step

    async def counting():
        steps[0] += 1
        return await real()
    svc.step = counting

    async def settle():
        for _ in range(20):
            await asyncio.sleep(0.002)

    async def main():
        await svc.start()
        try:
            await settle()
            g.send(Message("Orders", b"first", {"DELAY": "16"}))
            svc.notify_if_grown()
            await settle()
            first = steps[0]
            for i in range(30):                          # behind the waiting level-16 head
                g.send(Message("Orders", b"more %d" % i, {"DELAY": "16"}))
                svc.notify_if_grown()
                await asyncio.sleep(0)
            await settle()
            behind = steps[0] - first
            g.send(Message("Orders", b"other level", {"DELAY": "15"}))
            svc.notify_if_grown()
            await settle()
            new_level = steps[0] - first - behind
            g.send(Message("Orders", b"timer", {"TIMER_DELAY_SEC": "600"}))
            svc.notify_if_grown()
            await settle()
            timer = steps[0] - first - behind - new_level
            return behind, new_level, timer
        finally:
            await svc.stop()
    behind, new_level, timer = asyncio.run(asyncio.wait_for(main(), 20))
    assert behind == 0, behind            # before: up to one step per commit
    assert new_level >= 1 and timer >= 1, (new_level, timer)
    assert svc.planner.level_waiting[16][0] == 0 and svc.planner.level_waiting[15][0] == 0
