"""Pulls on an in-process broker: long polls that answer as soon as a message arrives (and wait past
messages a filter does not match), pull answers and consumer offsets over the wire, and the bound
on one pull answer. Split from test_broker_inprocess.py (same cluster helpers), by concern."""
from __future__ import annotations

import asyncio
import time

from mqbench.admin.calls import create_topic
from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.client.messages import decode_pulled

from test_broker_inprocess import InProcessCluster, pull_fields, request, run, send_v1_fields


def test_long_poll_returns_when_a_message_arrives(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=1) as cluster:
            addr = (await cluster.leader()).instance.addr
            await create_topic(addr, "Poll", queues=2)
            started = time.monotonic()
            # suspended 20 s: an arrival that did not wake it shows as ~20 s, far from the bound below
            pull = asyncio.ensure_future(request(addr, codes.PULL_MESSAGE, pull_fields("Poll", 1, 0, suspend_ms=20000),
                                                 timeout_ms=25000))
            await asyncio.sleep(0.3)
            assert not pull.done()      # suspended, not answered "not found"
            sent = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Poll", queue_id=1), b"wake up")
            assert sent.code == codes.SUCCESS
            response = await pull
            elapsed = time.monotonic() - started
            assert response.code == codes.SUCCESS and elapsed < 10, (response.code, elapsed)
            [msg] = decode_pulled(response.body, "broker-t")
            assert msg.body == b"wake up" and msg.queue_offset == 0
            answer = headers.PullMessageResponseHeader.from_ext(response.ext_fields)
            assert (answer.next_begin_offset, answer.min_offset, answer.max_offset) == (1, 0, 1)
            # without new data the pull waits its whole suspend time, then answers PULL_NOT_FOUND
            started = time.monotonic()
            response = await request(addr, codes.PULL_MESSAGE, pull_fields("Poll", 1, 1, suspend_ms=400))
            assert response.code == codes.PULL_NOT_FOUND and time.monotonic() - started >= 0.35
    run(scenario(), timeout_s=45)


def test_a_suspended_filtered_pull_waits_past_unmatched_messages_instead_of_a_retry_round_trip(tmp_path):
    """Found profiling `run orders` at 100 msgs/s: a tag-filtering group's suspended pull answered
    PULL_RETRY_IMMEDIATELY for every message it skipped, only for the client to come straight back
    and wait at max. Now it waits on from there; on timeout it answers as a pull from max would."""
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=11) as cluster:
            addr = (await cluster.leader()).instance.addr
            await create_topic(addr, "Filt", queues=1)

            async def send(tags: str, body: bytes) -> None:
                props = {"UNIQ_KEY": body.hex().upper().rjust(32, "0"), "TAGS": tags}
                assert (await request(addr, codes.SEND_MESSAGE, send_v1_fields("Filt", 0, props), body)).code == 0
            pull = asyncio.ensure_future(request(addr, codes.PULL_MESSAGE,
                                                 pull_fields("Filt", 0, 0, suspend_ms=8000, subscription="keep"),
                                                 timeout_ms=12000))
            await asyncio.sleep(0.2)
            await send("drop", b"d0")
            await send("drop", b"d1")
            await asyncio.sleep(0.3)
            assert not pull.done()              # before: PULL_RETRY_IMMEDIATELY at once, next offset 1
            await send("keep", b"k2")
            response = await pull
            answer = headers.PullMessageResponseHeader.from_ext(response.ext_fields)
            assert response.code == codes.SUCCESS and answer.next_begin_offset == 3
            assert [(m.queue_offset, m.body) for m in decode_pulled(response.body, "b")] == [(2, b"k2")]
            await send("drop", b"d3")           # skipped to max, then nothing: not found at max
            started = time.monotonic()
            response = await request(addr, codes.PULL_MESSAGE,
                                     pull_fields("Filt", 0, 3, suspend_ms=400, subscription="keep"))
            answer = headers.PullMessageResponseHeader.from_ext(response.ext_fields)
            assert response.code == codes.PULL_NOT_FOUND and answer.next_begin_offset == 4
            assert time.monotonic() - started >= 0.35
    run(scenario())


def test_pull_answers_and_offsets(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=2) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            await create_topic(addr, "Offs", queues=2)
            for i in range(3):
                tags = "keep" if i != 1 else "drop"
                props = {"UNIQ_KEY": f"{i:032X}", "TAGS": tags}
                assert (await request(addr, codes.SEND_MESSAGE, send_v1_fields("Offs", 0, props), b"x")).code == 0

            async def pull(offset, **kw):
                response = await request(addr, codes.PULL_MESSAGE, pull_fields("Offs", 0, offset, **kw))
                return response, headers.PullMessageResponseHeader.from_ext(response.ext_fields)

            response, answer = await pull(0, subscription="keep")
            assert response.code == codes.SUCCESS and answer.next_begin_offset == 3
            assert [m.queue_offset for m in decode_pulled(response.body, "b")] == [0, 2]
            response, answer = await pull(1, subscription="keep", max_nums=1)
            assert response.code == codes.PULL_RETRY_IMMEDIATELY and answer.next_begin_offset == 2
            response, answer = await pull(3)
            assert response.code == codes.PULL_NOT_FOUND and answer.next_begin_offset == 3
            response, answer = await pull(9)   # past the end on the leader: moved (min is 0, so to 0)
            assert response.code == codes.PULL_OFFSET_MOVED and answer.next_begin_offset == 0
            empty = await request(addr, codes.PULL_MESSAGE, pull_fields("Offs", 1, 5))
            assert empty.code == codes.PULL_OFFSET_MOVED
            unknown = await request(addr, codes.PULL_MESSAGE, pull_fields("Nope", 0, 0))
            assert unknown.code == codes.TOPIC_NOT_EXIST and "Nope" in unknown.remark
            await _pulls_are_bounded(addr)
            bad_queue = await request(addr, codes.PULL_MESSAGE, pull_fields("Offs", 7, 0))
            assert bad_queue.code == codes.SYSTEM_ERROR and "queueId 7" in bad_queue.remark

            def q(group, queue_id=0):
                return headers.QueryConsumerOffsetHeader(group, "Offs", queue_id).to_ext()
            # unknown group, queue min offset 0: offset 0 (what the C++ client needs)
            response = await request(addr, codes.QUERY_CONSUMER_OFFSET, q("GID_new"))
            assert response.code == codes.SUCCESS and response.ext_fields["offset"] == "0"
            response = await request(addr, codes.QUERY_CONSUMER_OFFSET, {**q("GID_new"), "setZeroIfNotFound": "false"})
            assert response.code == codes.QUERY_NOT_FOUND
            update = headers.UpdateConsumerOffsetHeader("GID_new", "Offs", 0, 2).to_ext()
            assert (await request(addr, codes.UPDATE_CONSUMER_OFFSET, update)).code == codes.SUCCESS
            older = headers.UpdateConsumerOffsetHeader("GID_new", "Offs", 0, 1).to_ext()
            assert (await request(addr, codes.UPDATE_CONSUMER_OFFSET, older)).code == codes.SUCCESS
            response = await request(addr, codes.QUERY_CONSUMER_OFFSET, q("GID_new"))
            assert response.ext_fields["offset"] == "2"     # offsets never go backwards
            queue = headers.QueueOffsetHeader("Offs", 0).to_ext()
            assert (await request(addr, codes.GET_MAX_OFFSET, queue)).ext_fields["offset"] == "3"
            assert (await request(addr, codes.GET_MIN_OFFSET, queue)).ext_fields["offset"] == "0"
            stamps = [m.store_timestamp_ms for m in leader.group.store.read_queue("Offs", 0, 0, 10).messages]
            search = headers.SearchOffsetHeader("Offs", 0, stamps[1]).to_ext()
            found = int((await request(addr, codes.SEARCH_OFFSET_BY_TIMESTAMP, search)).ext_fields["offset"])
            assert stamps[found] >= stamps[1] and (found == 0 or stamps[found - 1] < stamps[1])
            late = headers.SearchOffsetHeader("Offs", 0, stamps[-1] + 10_000).to_ext()
            assert (await request(addr, codes.SEARCH_OFFSET_BY_TIMESTAMP, late)).ext_fields["offset"] == "3"
            earliest = await request(addr, codes.GET_EARLIEST_MSG_STORETIME, queue)
            assert earliest.ext_fields["timestamp"] == str(stamps[0])
            empty_queue = await request(addr, codes.GET_EARLIEST_MSG_STORETIME, {"topic": "Offs", "queueId": "1"})
            assert empty_queue.code == codes.SYSTEM_ERROR
            second = leader.group.store.read_queue("Offs", 0, 1, 1).messages[0]
            viewed = await request(addr, codes.VIEW_MESSAGE_BY_ID, {"offset": second.physical_offset})
            [shown] = decode_pulled(viewed.body, "b")
            assert viewed.code == codes.SUCCESS and shown.queue_offset == 1 and shown.tags == "drop"
            for bad in (second.physical_offset + 3, -1, 1 << 40):
                viewed = await request(addr, codes.VIEW_MESSAGE_BY_ID, {"offset": bad})
                assert viewed.code == codes.SYSTEM_ERROR and "no message at commitlog offset" in viewed.remark
    run(scenario())


async def _pulls_are_bounded(addr: str) -> None:
    """One answer is one turn of the leader's loop: at most PULL_MESSAGES_MAX messages and
    PULL_BYTES_MAX bytes (at least one message), whatever the client asks."""
    from mqbench.broker.server.handlers_pull import PULL_BYTES_MAX, PULL_MESSAGES_MAX

    await create_topic(addr, "Caps", queues=1)
    fields = headers.SendMessageHeader(producer_group="PID_caps", topic="Caps", queue_id=0, born_timestamp_ms=1,
                                       properties="", batch=True).to_v2()
    small = [BatchItem(b"s", {"UNIQ_KEY": f"{i:032X}"}) for i in range(PULL_MESSAGES_MAX + 44)]
    big = [BatchItem(b"b" * 12_000, {"UNIQ_KEY": f"{i:032X}"}) for i in range(30)]
    for items in (small, big):
        assert (await request(addr, codes.SEND_BATCH_MESSAGE, fields, encode_batch(items))).code == 0
    response = await request(addr, codes.PULL_MESSAGE, pull_fields("Caps", 0, 0, max_nums=5000))
    assert len(decode_pulled(response.body, "b")) == PULL_MESSAGES_MAX
    assert response.ext_fields["nextBeginOffset"] == str(PULL_MESSAGES_MAX)
    response = await request(addr, codes.PULL_MESSAGE, pull_fields("Caps", 0, len(small), max_nums=5000))
    assert 1 <= len(decode_pulled(response.body, "b")) < 30 and len(response.body) <= PULL_BYTES_MAX
    assert len(response.body) + 12_200 > PULL_BYTES_MAX        # as many as fit
