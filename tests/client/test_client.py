"""Producer and consumer against the real name server and the scripted test broker (see conftest)."""
import asyncio

import pytest

from mqbench.broker.formats import codes
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.client import ClientError, Consumer, OutgoingMessage, Producer
from mqbench.codecs.registry import TYPE_ID_LZ4, parse_codec


def fast_consumer(addr, group, **kwargs):
    options = dict(consume_from="first", suspend_timeout_ms=300, pull_error_backoff_ms=50,
                   rebalance_interval_ms=200, heartbeat_interval_ms=1000, commit_interval_ms=100)
    options.update(kwargs)
    return Consumer(addr, group, **options)


def test_send_uses_v2_header_round_robin_and_properties(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_t") as producer:
                results = [await producer.send(OutgoingMessage("Orders", f"body-{i}".encode(), tags="paid",
                                                               keys=[f"k{i}"], properties={"seq": str(i)},
                                                               delay_level=2 if i == 0 else 0))
                           for i in range(8)]
            assert [r.status for r in results] == ["SEND_OK"] * 8
            assert sorted(r.queue.queue_id for r in results) == [0, 0, 1, 1, 2, 2, 3, 3]
            assert all(r.attempts == 1 and len(r.msg_id) == 32 for r in results)
            first = broker.requests[0]
            assert first.code == codes.SEND_MESSAGE_V2 and first.ext_fields["a"] == "PID_t"
            assert first.ext_fields["b"] == "Orders" and first.ext_fields["n"] == "g0"
            stored = {m.body: m for m in broker.stored("Orders")}
            m0 = stored[b"body-0"]
            assert m0.properties["KEYS"] == "k0" and m0.properties["TAGS"] == "paid"
            assert m0.properties["DELAY"] == "2" and m0.properties["UNIQ_KEY"] == results[0].msg_id
            assert m0.born_timestamp_ms == results[0].born_timestamp_ms
            assert results[0].offset_msg_id == rec.message_id(broker.store_host, m0.physical_offset)
    run(main())


def test_large_bodies_are_compressed_with_the_codec_type_bits(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, codec=parse_codec("lz4"), compress_over_bytes=1000) as producer:
                await producer.send(OutgoingMessage("Orders", b"small"))
                await producer.send(OutgoingMessage("Orders", b"a" * 5000))
            small, big = sorted(broker.stored("Orders"), key=lambda m: m.physical_offset)
            assert small.sysflag == 0 and small.body == b"small"
            assert big.sysflag == record_layout.SYSFLAG_COMPRESSED | (TYPE_ID_LZ4 << 8) and len(big.body) < 5000
            consumer = fast_consumer(cluster.namesrv_addr, "G")
            consumer.subscribe("Orders")
            async with consumer:
                got = await receive_n(consumer, 2)
            assert sorted(m.body for m in got) == [b"a" * 5000, b"small"]
    run(main())


def test_retry_moves_to_another_broker(cluster, run):
    async def main():
        async with cluster:
            g0 = await cluster.add_broker("g0")
            g1 = await cluster.add_broker("g1")
            async with Producer(cluster.namesrv_addr, retries=2) as producer:
                g0.fail_sends = [codes.SYSTEM_BUSY, codes.NO_PERMISSION]
                results = [await producer.send(OutgoingMessage("Orders", b"x")) for _ in range(12)]
                assert not g0.fail_sends and sum(r.attempts for r in results) == 12 + 2
                assert all(r.queue.broker_name == "g1" for r in results if r.attempts == 2)
                g0.fail_sends = [codes.MESSAGE_ILLEGAL] * 3
                g1.fail_sends = [codes.MESSAGE_ILLEGAL] * 3
                with pytest.raises(ClientError, match="MESSAGE_ILLEGAL"):
                    await producer.send(OutgoingMessage("Orders", b"x"))
                g0.fail_sends = [codes.SERVICE_NOT_AVAILABLE] * 3
                g1.fail_sends = [codes.SERVICE_NOT_AVAILABLE] * 3
                with pytest.raises(ClientError, match="after 3 attempts"):
                    await producer.send(OutgoingMessage("Orders", b"x"))
    run(main())


def test_not_leader_answer_refreshes_the_route_and_follows_the_new_leader(cluster, run):
    async def main():
        async with cluster:
            old = await cluster.add_broker("g0", broker_id=0, term=1)
            async with Producer(cluster.namesrv_addr, retries=1) as producer:
                assert (await producer.send(OutgoingMessage("Orders", b"before"))).queue.broker_name == "g0"
                new = await cluster.add_broker("g0", broker_id=0, term=2)  # failover: a new leader registers
                old.fail_sends = [codes.SERVICE_NOT_AVAILABLE]  # the deposed leader refuses writes
                result = await producer.send(OutgoingMessage("Orders", b"after"))
                assert result.attempts == 2 and [m.body for m in new.stored("Orders")] == [b"after"]
    run(main())


def test_unknown_topic_and_bad_input(cluster, run):
    async def main():
        async with cluster:
            await cluster.add_broker()
            async with Producer(cluster.namesrv_addr) as producer:
                with pytest.raises(ClientError, match="no route"):
                    await producer.send(OutgoingMessage("Nope", b"x"))
                with pytest.raises(Exception, match="empty"):
                    await producer.send(OutgoingMessage("Orders", b""))
                with pytest.raises(Exception, match="../x"):
                    await producer.send(OutgoingMessage("../x", b"x"))
    run(main())


async def receive_n(consumer, n, timeout_s=5.0):
    got = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        got += await consumer.receive(64, timeout_ms=100)
    return got


def test_consumer_receives_everything_commits_and_resumes(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr) as producer:
                sent = [await producer.send(OutgoingMessage("Orders", f"m{i}".encode(), keys=[f"k{i}"]))
                        for i in range(20)]
                consumer = fast_consumer(cluster.namesrv_addr, "GID_a")
                consumer.subscribe("Orders")
                async with consumer:
                    got = await receive_n(consumer, 20)
                assert sorted(m.msg_id for m in got) == sorted(r.msg_id for r in sent)
                assert {m.born_timestamp_ms for m in got} == {r.born_timestamp_ms for r in sent}
                assert {(q, broker.offsets[("GID_a", "Orders", q)]) for q in range(4)} == \
                       {(q, broker.max_offset("Orders", q)) for q in range(4)}
                consumer = fast_consumer(cluster.namesrv_addr, "GID_a")
                consumer.subscribe("Orders")
                async with consumer:
                    assert await consumer.receive(64, timeout_ms=300) == []  # nothing is replayed
                    late = await producer.send(OutgoingMessage("Orders", b"late"))
                    got = await receive_n(consumer, 1)  # the long poll wakes up
                    assert [m.msg_id for m in got] == [late.msg_id]
    run(main())


def test_consume_from_last_skips_history(cluster, run):
    async def main():
        async with cluster:
            await cluster.add_broker()
            async with Producer(cluster.namesrv_addr) as producer:
                await producer.send(OutgoingMessage("Orders", b"old"))
                consumer = fast_consumer(cluster.namesrv_addr, "GID_last", consume_from="last")
                consumer.subscribe("Orders")
                async with consumer:
                    await asyncio.sleep(0.2)
                    await producer.send(OutgoingMessage("Orders", b"new"))
                    got = await receive_n(consumer, 1)
                    assert [m.body for m in got] == [b"new"]
    run(main())


def test_two_consumers_split_the_queues_and_tags_filter(cluster, run):
    async def main():
        async with cluster:
            await cluster.add_broker(queue_nums=4)
            a = fast_consumer(cluster.namesrv_addr, "GID_s", client_id="c-a")
            b = fast_consumer(cluster.namesrv_addr, "GID_s", client_id="c-b")
            for c in (a, b):
                c.subscribe("Orders", "x || y")
            async with a, b:
                for _ in range(50):
                    await asyncio.sleep(0.05)
                    if len(a.assigned) == 2 and len(b.assigned) == 2:
                        break
                assert sorted(q.queue_id for q in a.assigned) == [0, 1]
                assert sorted(q.queue_id for q in b.assigned) == [2, 3]
                async with Producer(cluster.namesrv_addr) as producer:
                    for i in range(12):
                        await producer.send(OutgoingMessage("Orders", f"{i}".encode(), tags="xyz"[i % 3]))
                got_a, got_b = await receive_n(a, 4, 2), await receive_n(b, 4, 2)
                await asyncio.sleep(0.2)
                got_a += await a.receive(64, 100)
                got_b += await b.receive(64, 100)
                assert sorted(int(m.body) for m in got_a + got_b) == [i for i in range(12) if i % 3 != 2]
                assert {m.queue_id for m in got_a} <= {0, 1} and {m.queue_id for m in got_b} <= {2, 3}
    run(main())


def test_batches_plain_and_inner(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker(topics=("Orders",), inner_batch_topics=("Batched",), queue_nums=1)
            async with Producer(cluster.namesrv_addr) as producer:
                plain = await producer.send_batch([OutgoingMessage("Orders", f"p{i}".encode(), tags="t")
                                                   for i in range(3)])
                inner = await producer.send_batch([OutgoingMessage("Batched", f"b{i}".encode()) for i in range(4)])
                with pytest.raises(Exception, match="one topic"):
                    await producer.send_batch([OutgoingMessage("Orders", b"a"), OutgoingMessage("Batched", b"b")])
                with pytest.raises(Exception, match="delayed"):
                    await producer.send_batch([OutgoingMessage("Orders", b"a", delay_level=1)])
            assert plain.queue_offset == 0 and len(plain.msg_ids) == 3
            assert broker.requests[0].code == codes.SEND_BATCH_MESSAGE and broker.requests[0].ext_fields["m"] == "true"
            assert len(broker.stored("Batched")) == 1  # one record holding the whole batch
            consumer = fast_consumer(cluster.namesrv_addr, "GID_b")
            consumer.subscribe("Orders")
            consumer.subscribe("Batched")
            async with consumer:
                got = await receive_n(consumer, 7)
            assert sorted((m.topic, m.queue_offset, m.body) for m in got) == \
                [("Batched", i, f"b{i}".encode()) for i in range(4)] + [("Orders", i, f"p{i}".encode()) for i in range(3)]
            assert [m.msg_id for m in got if m.topic == "Batched"] == inner.msg_ids
            assert broker.offsets[("GID_b", "Batched", 0)] == 4
    run(main())


def test_undecodable_pulled_data_stops_the_queue_and_is_reported(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker(queue_nums=1)
            broker.queues[("Orders", 0)] = [(0, 1, b"\x00\x00\x00\x40" + b"\xee" * 60)]
            consumer = fast_consumer(cluster.namesrv_addr, "GID_bad")
            consumer.subscribe("Orders")
            async with consumer:
                with pytest.raises(ClientError, match="Orders/g0/0 at offset 0"):
                    for _ in range(50):
                        await consumer.receive(1, timeout_ms=50)
    run(main())


def test_producer_heartbeat_reaches_live_brokers_past_a_dead_one(cluster, run):
    dead = "127.0.0.1:1"     # refuses connections, and sorts before every live address on 127.0.0.1

    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_hb") as producer:
                await producer.send(OutgoingMessage("Orders", b"x"))
                seen = []
                original = broker.on_heartbeat

                async def counting(cmd, channel):
                    seen.append(cmd.code)
                    return await original(cmd, channel)
                broker.server.handlers[codes.HEART_BEAT] = counting
                producer._heartbeat_addrs.add(dead)
                await producer.heartbeat()
                assert seen == [codes.HEART_BEAT]
    run(main())


def test_rebalance_after_the_route_moved_heartbeats_the_new_leader_first(cluster, run):
    async def main():
        async with cluster:
            await cluster.add_broker("g0", term=1)
            consumer = Consumer(cluster.namesrv_addr, "GID_moved", consume_from="first", suspend_timeout_ms=300,
                                rebalance_interval_ms=60_000, heartbeat_interval_ms=60_000)
            consumer.subscribe("Orders")
            async with consumer:
                assert consumer.assigned
                # a failover: the group's new leader registers with a higher term; the consumer's
                # periodic heartbeat is a minute away
                new_leader = await cluster.add_broker("g0", term=2)
                await consumer.rebalance()
                assert consumer.client_id in new_leader.groups.get("GID_moved", {})
                assert consumer.assigned and all(q.broker_name == "g0" for q in consumer.assigned)
    run(main())


def test_pipelined_sender_keeps_many_in_flight_and_every_one_is_stored(cluster, run):
    """The load generator's path (mqbench.client.pipeline): 200 singles and 5 batches of 8 submitted
    without awaiting each, round-robin over the queues, each with its own UNIQ_KEY, all stored."""
    from mqbench.client.pipeline import PipelinedSender, delivered

    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_p") as producer:
                sender = await PipelinedSender(producer, "Orders").open()
                futures = [sender.send(f"m{i}".encode()) for i in range(200)]
                futures += [sender.send_batch([f"b{j}-{i}".encode() for i in range(8)]) for j in range(5)]
                responses = await asyncio.gather(*futures)
            assert all(delivered(r) for r in responses)
            stored = broker.stored("Orders")
            assert sorted(m.body for m in stored) == sorted([f"m{i}".encode() for i in range(200)] +
                                                            [f"b{j}-{i}".encode() for j in range(5) for i in range(8)])
            assert len({m.properties["UNIQ_KEY"] for m in stored}) == 240
            assert {m.queue_id for m in stored} == {0, 1, 2, 3}
            assert {r.code for r in broker.requests[-205:]} == {codes.SEND_MESSAGE_V2, codes.SEND_BATCH_MESSAGE}
    run(main())


def test_submit_queues_sends_without_a_task_each_and_every_one_is_stored(cluster, run):
    """``Producer.submit`` (what `mqbench run`'s producers use): once the route and connection are
    there, 100 sends and 4 batches go out as frames queued on the channel, with no Task per send
    (before, each send was a coroutine awaited in a Task of its own: 100+ tasks here)."""
    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_s") as producer:
                await producer.send(OutgoingMessage("Orders", b"first"))     # route and connection
                tasks_before = len(asyncio.all_tasks())
                replies = [producer.submit(OutgoingMessage("Orders", f"m{i}".encode(), tags="t", keys=[f"k{i}"]))
                           for i in range(100)]
                replies += [producer.submit_batch([OutgoingMessage("Orders", f"b{j}-{i}".encode()) for i in range(4)])
                            for j in range(4)]
                assert len(asyncio.all_tasks()) == tasks_before
                results = await asyncio.gather(*replies)
            assert {r.status for r in results} == {"SEND_OK"} and all(r.attempts == 1 for r in results)
            stored = broker.stored("Orders")
            assert len(stored) == 1 + 100 + 16
            assert {m.properties["KEYS"] for m in stored if m.body.startswith(b"m")} == {f"k{i}" for i in range(100)}
    run(main())


def test_pulls_go_on_while_bodies_wait_undecoded_and_every_message_arrives_once(cluster, run):
    """The next pull of a queue is on the wire before the body just pulled is decoded: with no
    receive() at all the consumer pulls the queue through (up to its buffer bound), holding bodies
    undecoded; receive() then decodes them, in order, each message once, and a commit meanwhile names
    the oldest offset not handed out."""
    async def main():
        async with cluster:
            broker = await cluster.add_broker(queue_nums=1)
            for i in range(40):
                broker.append(rec.Message("Orders", f"m{i}".encode(), {"UNIQ_KEY": f"K{i}"}, queue_id=0))
            consumer = fast_consumer(cluster.namesrv_addr, "GID_pipe", pull_batch_size=8, buffer_messages_max=24)
            consumer.subscribe("Orders")
            async with consumer:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while consumer._buffered_msgs < 24 and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                pulls = [int(c.ext_fields["queueOffset"]) for c in broker.requests if c.code == codes.PULL_MESSAGE]
                assert pulls[:3] == [0, 8, 16]             # three pulls answered before any receive()
                chunks = list(consumer._buffer)
                assert [c.offset for c in chunks] == [0, 8, 16] and all(c.messages is None for c in chunks)
                state = next(iter(consumer.assigned.values()))
                assert state.commit_offset() == 0          # nothing handed out yet
                first = await consumer.receive(5, timeout_ms=1000)
                assert [m.body for m in first] == [f"m{i}".encode() for i in range(5)]
                assert chunks[0].messages is not None and chunks[1].messages is None   # decoded when reached
                assert state.commit_offset() == 5
                got = first + await receive_n(consumer, 35)
            assert [m.queue_offset for m in got] == list(range(40))
            assert [m.msg_id for m in got] == [f"K{i}" for i in range(40)]
    run(main())


def test_submit_on_done_runs_once_in_the_turn_that_read_the_answer(cluster, run):
    """``Producer.submit(msg, on_done)``: on a first attempt that succeeds, ``on_done`` runs in the
    callback that took the answer, so no other callback ran between (a done callback would run a
    loop turn later, and `mqbench run` times the ack in it); it runs exactly once, a failure too."""
    async def main():
        async with cluster:
            await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_d") as producer:
                await producer.send(OutgoingMessage("Orders", b"first"))     # route and connection
                loop = asyncio.get_running_loop()
                calls: list[tuple[asyncio.Future, int]] = []
                turns = [0]

                def tick():
                    turns[0] += 1
                    loop.call_soon(tick)

                def answer_seen_at():   # the turn in which the answer's callback ran
                    return turns[0]

                done_turns = []
                futures = []
                for i in range(20):
                    future = producer.submit(OutgoingMessage("Orders", f"m{i}".encode()),
                                             lambda f: calls.append((f, answer_seen_at())))
                    futures.append(future)
                    future.add_done_callback(lambda f: done_turns.append(answer_seen_at()))
                loop.call_soon(tick)
                await asyncio.gather(*futures)
                await asyncio.sleep(0.01)
                assert len(calls) == 20 and {id(f) for f, _ in calls} == {id(f) for f in futures}
                assert all(f.done() and f.result().status == "SEND_OK" for f, _ in calls)
                # on_done ran before the done callbacks of the same future, which come a turn later
                assert sum(t for _, t in calls) < sum(done_turns)
                bad = producer.submit_batch([OutgoingMessage("Nope", b"x")], lambda f: calls.append((f, -1)))
                with pytest.raises(ClientError):      # no route for the topic
                    await bad
                await asyncio.sleep(0.01)
                assert sum(1 for f, _ in calls if f is bad) == 1
    run(main())
