"""What POP costs in the replicated log: messages popped and acked within the merge window write no
checkpoint and no ack (``broker/pop/spans.py``), only consumer offset snapshots (real broker,
mqbench's PopConsumer with batched acks)."""
from __future__ import annotations

import asyncio
import time

from mqbench.client import OutgoingMessage, PopConsumer, Producer

from popharness import PopBroker

G, T = "GID_pop_merge", "PopMergeT"
COUNT = 120
INVISIBLE_MS = 2000
#: log entries per popped message (pop + ack + whatever the timer and revive add up to the
#: invisible time): about 6 before the merge buffer, a few offset snapshots per hundred after
ENTRIES_PER_MSG_MAX = 0.25


def test_pop_and_ack_within_the_window_cost_a_few_log_entries_per_hundred_messages(tmp_path):
    async def main():
        async with PopBroker(tmp_path) as one:
            await one.topic(T, queues=4)
            namesrv = one.layout.namesrv_addr
            async with Producer(namesrv, "PID_pop_merge") as producer:
                for i in range(COUNT):
                    await producer.send(OutgoingMessage(T, b"m%d" % i, keys=[f"k{i}"]))
            group = one.broker.group
            before = group.commit_index
            consumer = PopConsumer(namesrv, G, invisible_time_ms=INVISIBLE_MS, poll_time_ms=500)
            consumer.subscribe(T)
            got = []
            async with consumer:
                deadline = time.monotonic() + 20
                while len(got) < COUNT and time.monotonic() < deadline:
                    batch = await consumer.receive(32, timeout_ms=500)
                    got += batch
                    await consumer.ack(batch)
                assert sorted(m.keys[0] for m in got) == sorted(f"k{i}" for i in range(COUNT))
                await asyncio.sleep((INVISIBLE_MS + 1000) / 1000)      # anything written revives by now
                again = await consumer.receive(32, timeout_ms=300)
            assert again == [], [m.keys for m in again]
            entries = group.commit_index - before
            stats = one.pop.stats
            assert stats["mergedAcks"] > 0 and stats["revived"] == 0, stats
            per_msg = entries / COUNT
            print(f"log entries per popped message: {per_msg:.3f} ({entries} entries, {COUNT} messages, {stats})")
            assert per_msg <= ENTRIES_PER_MSG_MAX, (entries, stats)

    asyncio.run(asyncio.wait_for(main(), 60))
