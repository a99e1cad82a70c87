"""POP state survives a leader's SIGKILL (real processes, raft3): every message popped and not acked
comes back after its invisible time (never before), no acked one does, nothing is lost.

The kill comes after the merge window (``spans.MERGE_WINDOW_MS``) of the last pop: a message
popped less than that before a failover comes back at once instead (``broker/pop/spans.py``; the
engine tests cover that case)."""
from __future__ import annotations

import asyncio
import time

import pytest

from mqbench.broker.pop.spans import MERGE_WINDOW_MS
from mqbench.client import OutgoingMessage, PopConsumer, Producer
from mqbench.cluster import launcher
from mqbench.cluster.control import kill_instance, current_leader, ensure_topic, wait_healthy

TOPIC, GROUP = "PopFailover", "GID_pop_failover"
COUNT = 40
INVISIBLE_MS = 8000


async def _receive(consumer: PopConsumer, want: int, timeout_s: float) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += await consumer.receive(64, timeout_ms=300)
    return got


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_unacked_pop_messages_come_back_after_a_leader_sigkill_and_acked_ones_do_not(cluster_factory,
                                                                                     free_port_offset):
    state = cluster_factory("raft3", free_port_offset("raft3"))
    namesrv = launcher.cluster_layout(state).namesrv_addr

    async def main():
        await wait_healthy(state, "broker-a", 60)
        await ensure_topic(state, "broker-a", TOPIC)
        async with Producer(namesrv, "PID_pop_failover") as producer:
            for i in range(COUNT):
                await producer.send(OutgoingMessage(TOPIC, b"body-%d" % i, keys=[f"k{i}"]))
        first = PopConsumer(namesrv, GROUP, invisible_time_ms=INVISIBLE_MS, poll_time_ms=1000)
        first.subscribe(TOPIC)
        async with first:
            held = await _receive(first, COUNT, 30)
            popped_ms = time.time() * 1000
        keys = [m.keys[0] for m in held]
        assert sorted(keys) == sorted(f"k{i}" for i in range(COUNT)), "not every message was popped once"
        acked = held[: COUNT // 2]
        unacked = {m.keys[0] for m in held[COUNT // 2:]}
        ack_consumer = PopConsumer(namesrv, GROUP, invisible_time_ms=INVISIBLE_MS)
        ack_consumer.subscribe(TOPIC)
        await ack_consumer.ack(acked)       # answered: these must never come back
        await ack_consumer.close()
        await asyncio.sleep((MERGE_WINDOW_MS + 500) / 1000)       # every checkpoint written
        victim = (await current_leader(state, "broker-a", 10)).name
        await kill_instance(state, victim)
        deadline = time.monotonic() + 60
        while (await current_leader(state, "broker-a", 60)).name == victim:
            assert time.monotonic() < deadline, "no new leader"
            await asyncio.sleep(0.2)
        second = PopConsumer(namesrv, GROUP, invisible_time_ms=60_000, poll_time_ms=1000)
        second.subscribe(TOPIC)
        async with second:
            back = await _receive(second, len(unacked), 60)
            back_ms = time.time() * 1000
            extra = await _receive(second, 1, 3 + INVISIBLE_MS / 1000)   # nothing else, not even later
        got = [m.keys[0] for m in back]
        assert sorted(got) == sorted(unacked), (sorted(got), sorted(unacked))
        assert extra == [], [m.keys for m in extra]
        for m in back:
            assert m.reconsume_times == 1 and m.topic == TOPIC
            # redelivered (stored on the retry topic) no earlier than its invisible time allowed
            assert m.store_timestamp_ms >= popped_ms - 2000 + INVISIBLE_MS, (m.keys, m.store_timestamp_ms - popped_ms)
        assert back_ms - popped_ms >= INVISIBLE_MS - 2000
        await second.ack(back)

    asyncio.run(asyncio.wait_for(main(), 240))


ORDER_TOPIC, ORDER_GROUP = "PopOrderFailover", "GID_pop_order_failover"
ORDER_INVISIBLE_MS = 8000


def _order_pop(queue_id: int, max_msgs: int):
    from mqbench.broker.formats import codes
    from mqbench.broker.formats.command import RemotingCommand
    return RemotingCommand.request(codes.POP_MESSAGE, {
        "consumerGroup": ORDER_GROUP, "topic": ORDER_TOPIC, "queueId": str(queue_id), "maxMsgNums": str(max_msgs),
        "invisibleTime": str(ORDER_INVISIBLE_MS), "pollTime": "0", "bornTime": str(int(time.time() * 1000)),
        "initMode": "1", "order": "true"})


def _order_ack(handle: str):
    from mqbench.broker.formats import codes
    from mqbench.broker.formats.command import RemotingCommand
    from mqbench.broker.pop import handles
    h = handles.parse(handle)
    return RemotingCommand.request(codes.ACK_MESSAGE, {
        "consumerGroup": ORDER_GROUP, "topic": ORDER_TOPIC, "queueId": str(h.queue_id), "extraInfo": handle,
        "offset": str(h.offset)})


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_an_orderly_pop_lock_survives_a_leader_sigkill(cluster_factory, free_port_offset):
    """The queue stays held for its consumer on the new leader (no other consumer gets its messages
    before their invisible time), the holder's acks are taken there, and the messages not acked
    come back in order afterwards, one attempt more; the acked ones never."""
    from mqbench.broker.formats import codes
    from mqbench.broker.formats import record as rec
    from mqbench.broker.remoting.client import connect

    state = cluster_factory("raft3", free_port_offset("raft3"))
    namesrv = launcher.cluster_layout(state).namesrv_addr

    def records_of(response) -> list:
        out, pos = [], 0
        while pos < len(response.body):
            msg, size = rec.decode_message(response.body, pos)
            out.append(msg)
            pos += size
        return out

    async def main():
        await wait_healthy(state, "broker-a", 60)
        await ensure_topic(state, "broker-a", ORDER_TOPIC)
        async with Producer(namesrv, "PID_pop_order") as producer:     # one batch: one queue, in order
            sent = await producer.send_batch([OutgoingMessage(ORDER_TOPIC, b"o%d" % i, keys=[f"o{i}"])
                                              for i in range(6)])
        qid = sent.queue.queue_id
        victim = await current_leader(state, "broker-a", 10)
        ch = await connect(victim.addr)
        held = records_of(await ch.request(_order_pop(qid, 4), 5000))
        popped_ms = time.time() * 1000
        assert [m.queue_offset for m in held] == [0, 1, 2, 3]
        assert (await ch.request(_order_ack(held[0].properties["POP_CK"]), 5000)).code == codes.SUCCESS
        ch.close()
        await kill_instance(state, victim.name)
        deadline = time.monotonic() + 60
        while (leader := await current_leader(state, "broker-a", 60)).name == victim.name:
            assert time.monotonic() < deadline, "no new leader"
            await asyncio.sleep(0.2)
        ch = await connect(leader.addr)
        try:
            while True:      # the new leader answers once it has applied its term (SYSTEM_BUSY before)
                r = await ch.request(_order_pop(qid, 4), 5000)
                if r.code != codes.SYSTEM_BUSY:
                    break
                await asyncio.sleep(0.2)
            assert r.code == codes.PULL_NOT_FOUND, (r.code, [m.queue_offset for m in records_of(r)])   # still held
            ack = await ch.request(_order_ack(held[1].properties["POP_CK"]), 5000)     # the holder acks there
            assert ack.code == codes.SUCCESS and not (ack.remark or "").startswith("late"), ack.remark
            await asyncio.sleep(max(0.0, (popped_ms + ORDER_INVISIBLE_MS - time.time() * 1000) / 1000) + 0.5)
            again = records_of(await ch.request(_order_pop(qid, 4), 5000))
        finally:
            ch.close()
        assert [m.queue_offset for m in again] == [2, 3, 4, 5], [m.queue_offset for m in again]
        assert [m.reconsume_times for m in again[:2]] == [1, 1]

    asyncio.run(asyncio.wait_for(main(), 240))
