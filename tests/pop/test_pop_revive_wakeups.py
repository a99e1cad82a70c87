"""The revive loop sleeps until a checkpoint is due or the revive topic grows, not per commit.

Found by profiling an idle-ish `raft3` leader at 100 msgs/s: the loop woke on every commit (a
Task per wait, a sync and a read of every revive queue), although a commit that brings no
checkpoint cannot make anything due sooner. A real one-replica broker: 60 ordinary sends must
not wake it (a pass per send before), and a popped, unacked message must still be revived on
time (its checkpoint reaches the revive topic through the timer, which wakes the loop).
"""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.formats.record import Message
from mqbench.broker.pop import handles
from mqbench.broker.pop.engine import INIT_MODE_MIN, PopRequest

from popharness import PopBroker

G, T = "GID_pop_revive_wake", "PopReviveWakeT"


def test_commits_without_checkpoints_do_not_wake_the_revive_loop_and_a_due_checkpoint_revives(tmp_path):
    async def main():
        async with PopBroker(tmp_path) as one:
            await one.topic(T, queues=1)
            pop = one.pop
            passes = 0
            real_sync = pop.sync

            def counting_sync():          # the revive loop syncs once per pass
                nonlocal passes
                passes += 1
                real_sync()
            pop.sync = counting_sync
            await asyncio.sleep(0.3)
            before = passes
            t0 = time.monotonic()
            for i in range(60):
                await one.broker.group.put(Message(topic=T, queue_id=0, body=b"m%d" % i))
            idle_s = time.monotonic() - t0
            woken = passes - before
            # at most one pass per REVIVE_IDLE_MS (200 ms) of the sends, plus the edges; not 60
            assert woken <= idle_s / 0.2 + 3, (woken, idle_s)

            req = PopRequest(G, T, 0, 1, 1_000, init_mode=INIT_MODE_MIN)      # invisible 1 s, never acked
            plan = (await pop.pop(req)).plan
            assert [m.message.queue_offset for m in plan.messages] == [0]
            retry = handles.retry_topic(G, T)
            deadline = time.monotonic() + 15
            while pop.stats["revived"] == 0:
                assert time.monotonic() < deadline, "the unacked message was never revived"
                await asyncio.sleep(0.05)
            store = one.broker.group.store
            assert store.max_offset(retry, 0) == 1
            revived = store.read_queue(retry, 0, 0, 1).messages[0]
            assert revived.body == b"m0" and revived.reconsume_times == 1

    asyncio.run(asyncio.wait_for(main(), 30))


def test_an_idle_revive_loop_sleeps_long_when_nothing_waits(tmp_path):
    """Nothing popped, nothing in the revive topic: a pass every REVIVE_IDLE_MS (200 ms) only
    re-read eight empty queues on every leader (4 % of a raft3 leader in an orders run, which does
    not use POP); it now sleeps REVIVE_QUIET_MS, and the topic's growth still wakes it."""
    async def main():
        async with PopBroker(tmp_path) as one:
            pop = one.pop
            passes = 0
            real_sync = pop.sync

            def counting_sync():
                nonlocal passes
                passes += 1
                real_sync()
            pop.sync = counting_sync
            await asyncio.sleep(0.1)
            before = passes
            await asyncio.sleep(0.6)
            assert passes - before <= 1, passes - before      # 3 with a 200 ms idle sleep

    asyncio.run(asyncio.wait_for(main(), 30))
