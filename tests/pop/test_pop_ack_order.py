"""Issue 19: an ack answered OK must survive a leader SIGKILL right after its answer.

Found while chasing the Node 5.x client's K-10 (which turned out to be a send stored twice, see
``tests/official/test_official_grpc.py``): an ack that reaches the leader while the flush is
writing its checkpoint (the span is ``writing``) became an ack record put at once, beside the
checkpoint's put, not after it. The ack record could so be committed, and answered, before the
checkpoint was (the flush's puts run a few event-loop turns later, and the first flush of a
cluster creates the revive topic first: a whole Raft round trip). A SIGKILL then left a log with
the ack but without its checkpoint, and the consumer offset below the message: the new leader
handed the acked message out again, attempt 1.

The test catches the span while it is written (the first flush: the revive topic is created
then), acks, and reads the log as a new leader would at the moment the ack returns.
"""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.formats.record import Message
from mqbench.broker.pop.engine import INIT_MODE_MIN, PopRequest
from mqbench.broker.pop.service import PopService
from mqbench.broker.pop.spans import WRITING

from popharness import PopBroker

G, T = "GID_pop_ack_order", "PopAckOrderT"


def test_an_ack_that_comes_while_its_checkpoint_is_written_is_answered_after_the_checkpoint(tmp_path):
    async def main():
        async with PopBroker(tmp_path) as one:
            await one.topic(T, queues=1)
            for i in range(3):
                await one.broker.group.put(Message(topic=T, queue_id=0, body=b"m%d" % i))
            pop = one.pop
            assert one.broker.group.store.topic_config(pop.revive_topic) is None    # the first flush creates it
            req = PopRequest(G, T, 0, 3, 10_000, init_mode=INIT_MODE_MIN)
            plan = (await pop.pop(req)).plan
            assert [m.message.queue_offset for m in plan.messages] == [0, 1, 2]
            key = (G, T, 0, 0, plan.pop_time_ms)
            deadline = time.monotonic() + 5
            while pop.engine.spans.find(key).state != WRITING:      # the window closes (1 s): written
                assert time.monotonic() < deadline, "the merge window never closed"
                await asyncio.sleep(0)                              # every loop turn: catch it at once
            acked = await pop.ack(G, T, [plan.messages[1].handle])
            assert acked.statuses == ["ok"]
            # the leader is SIGKILLed now: what the log says (a new leader's sync, no await between)
            heir = PopService(one.broker.ctx)
            heir.sync()
            heir.engine.leader_changed()
            assert [ck.offsets for ck, _, _ in heir.engine.checkpoints()] == [(0, 1, 2)], \
                "the ack was answered before its checkpoint was committed"
            again = heir.engine.pop(req, heir.view(), one.broker.ctx.clock_ms())
            assert 1 not in [m.message.queue_offset for m in again.messages]

    asyncio.run(asyncio.wait_for(main(), 30))
