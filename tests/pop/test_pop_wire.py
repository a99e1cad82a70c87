"""Each POP remoting code against the real broker (JSON headers, as RocketMQ's clients send them)."""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.pop import handles
from mqbench.broker.pop.service import PopService
from mqbench.broker.formats import codes
from mqbench.broker.formats import headers_pop as hp
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats import record as rec
from mqbench.client import OutgoingMessage, Producer

from popharness import PopBroker

G, T = "GID_pop", "PopT"


def _pop_cmd(max_msgs=4, invisible_ms=1000, poll_ms=0, queue_id=-1, order=False, exp=None):
    ext = {"consumerGroup": G, "topic": T, "queueId": str(queue_id), "maxMsgNums": str(max_msgs),
           "invisibleTime": str(invisible_ms), "pollTime": str(poll_ms), "bornTime": str(int(time.time() * 1000)),
           "initMode": "1", "order": "true" if order else "false"}
    if exp:
        ext.update(expType="TAG", exp=exp)
    return RemotingCommand.request(codes.POP_MESSAGE, ext)


def _records(response):
    out, pos = [], 0
    body = response.body
    while pos < len(body):
        msg, size = rec.decode_message(body, pos)
        out.append(msg)
        pos += size
    return out


def _ack_cmd(handle, code=codes.ACK_MESSAGE, **extra):
    h = handles.parse(handle)
    ext = {"consumerGroup": G, "topic": T, "queueId": str(h.queue_id), "extraInfo": handle, "offset": str(h.offset)}
    ext.update({k: str(v) for k, v in extra.items()})
    return RemotingCommand.request(code, ext)


async def _send(one, n, tag="a"):
    async with Producer(one.layout.namesrv_addr, "PID_pop") as producer:
        for i in range(n):
            await producer.send(OutgoingMessage(T, b"m%d" % i, tags=tag, keys=[f"k{i}"]))


def test_pop_ack_change_peek_notification_and_revive(tmp_path):
    async def main():
        async with PopBroker(tmp_path) as one:
            ch = one.channel
            await one.topic(T)
            # nothing yet: PULL_NOT_FOUND at once; POLLING_TIMEOUT after the poll time
            r = await ch.request(_pop_cmd(), 3000)
            assert r.code == codes.PULL_NOT_FOUND
            started = time.monotonic()
            r = await ch.request(_pop_cmd(poll_ms=300), 3000)
            assert r.code == codes.POLLING_TIMEOUT and time.monotonic() - started >= 0.29
            n = await ch.request(RemotingCommand.request(codes.NOTIFICATION, {
                "consumerGroup": G, "topic": T, "queueId": "-1", "pollTime": "0"}), 3000)
            assert n.code == codes.SUCCESS and n.ext_fields["hasMsg"] == "false"
            # a long-polled pop is answered when a message arrives
            waiting = asyncio.ensure_future(ch.request(_pop_cmd(poll_ms=5000, invisible_ms=60_000), 8000))
            await asyncio.sleep(0.2)
            await _send(one, 6)
            r = await waiting
            assert r.code == codes.SUCCESS, r.remark
            first = _records(r)
            assert first and all("POP_CK" in m.properties for m in first)
            hdr = r.ext_fields
            info = handles.parse_offset_info(hdr["msgOffsetInfo"])
            assert sum(len(v) for v in info.values()) == len(first) and int(hdr["invisibleTime"]) == 60_000
            # peek shows what is left without taking it
            pk = await ch.request(RemotingCommand.request(codes.PEEK_MESSAGE, {
                "consumerGroup": G, "topic": T, "queueId": "-1", "maxMsgNums": "32"}), 3000)
            peeked = len(_records(pk)) if pk.code == codes.SUCCESS else 0
            assert peeked == 6 - len(first)
            # take the rest, invisible 1.5 s
            rest = []
            while len(rest) < 6 - len(first):
                r = await ch.request(_pop_cmd(max_msgs=32, invisible_ms=1500), 3000)
                assert r.code in (codes.SUCCESS, codes.PULL_NOT_FOUND)
                rest += _records(r) if r.code == codes.SUCCESS else []
            popped_ms = int(time.time() * 1000)
            # ack the first pop's messages: one plain ack, the others as a batch ack
            handle0 = first[0].properties["POP_CK"]
            assert (await ch.request(_ack_cmd(handle0), 3000)).code == codes.SUCCESS
            acks = []
            for m in first[1:]:
                h = handles.parse(m.properties["POP_CK"])
                acks.append({"group": G, "topic": T, "retry": h.kind, "start_offset": h.ck_queue_offset,
                             "queue_id": h.queue_id, "revive_qid": h.revive_qid, "pop_time_ms": h.pop_time_ms,
                             "invisible_time_ms": h.invisible_time_ms, "offsets": [h.offset]})
            if acks:
                b = await ch.request(RemotingCommand.request(codes.BATCH_ACK_MESSAGE, {},
                                                             hp.batch_ack_body("broker-p", acks)), 3000)
                assert b.code == codes.SUCCESS, b.remark
            # change the invisible time of one of the rest to 4 s; ack another; let the others expire
            keep, acked_late = rest[0], rest[1]
            c = await ch.request(_ack_cmd(keep.properties["POP_CK"], codes.CHANGE_MESSAGE_INVISIBLETIME,
                                          invisibleTime=4000), 3000)
            assert c.code == codes.SUCCESS, c.remark
            new_handle = handles.build(keep.queue_offset, int(c.ext_fields["popTime"]), 4000,
                                       int(c.ext_fields["reviveQid"]), T, "broker-p", keep.queue_id, keep.queue_offset)
            again = await ch.request(_ack_cmd(keep.properties["POP_CK"], codes.CHANGE_MESSAGE_INVISIBLETIME,
                                              invisibleTime=4000), 3000)
            assert again.code == codes.NO_MESSAGE          # the old handle is no longer in flight
            assert (await ch.request(_ack_cmd(acked_late.properties["POP_CK"]), 3000)).code == codes.SUCCESS
            expected = {m.properties["KEYS"] for m in rest[2:]}
            # the unacked ones come back from the retry topic, not before their invisible time
            back = []
            deadline = time.monotonic() + 15
            while len(back) < len(expected) and time.monotonic() < deadline:
                r = await ch.request(_pop_cmd(max_msgs=32, invisible_ms=60_000, poll_ms=500), 3000)
                if r.code == codes.SUCCESS:
                    back += _records(r)
            assert {m.properties["KEYS"] for m in back} == expected
            for m in back:
                assert m.topic == handles.retry_topic(G, T) and m.reconsume_times == 1
                assert m.properties["RETRY_TOPIC"] == T and handles.parse(m.properties["POP_CK"]).kind == "1"
                assert m.store_timestamp_ms >= popped_ms + 1500 - 50
            # the changed one comes back after its new time, the acked ones never
            r = await ch.request(_pop_cmd(max_msgs=32, invisible_ms=60_000, poll_ms=5000), 8000)
            assert r.code == codes.SUCCESS
            [changed] = _records(r)
            assert changed.properties["KEYS"] == keep.properties["KEYS"]
            assert changed.store_timestamp_ms >= handles.parse(new_handle).revive_time_ms
            # acking a redelivered message by its retry handle, with the original topic named
            assert (await ch.request(_ack_cmd(changed.properties["POP_CK"]), 3000)).code == codes.SUCCESS
            r = await ch.request(_pop_cmd(max_msgs=32, poll_ms=2500), 5000)
            assert r.code == codes.POLLING_TIMEOUT
            assert one.pop.stats["revived"] == len(expected) + 1
            assert one.delay.service.stats.delivered >= 2      # the checkpoints waited in the timer store
    asyncio.run(asyncio.wait_for(main(), 90))


def test_orderly_pop_assignment_mode_and_bad_input(tmp_path):
    async def main():
        async with PopBroker(tmp_path) as one:
            ch = one.channel
            await one.topic(T, queues=1)
            await _send(one, 3)
            r = await ch.request(_pop_cmd(order=True, queue_id=0, invisible_ms=800), 3000)
            msgs = _records(r)
            assert [m.queue_offset for m in msgs] == [0, 1, 2] and r.ext_fields["reviveQid"] == "999"
            assert (await ch.request(_pop_cmd(order=True, queue_id=0), 3000)).code == codes.PULL_NOT_FOUND
            await asyncio.sleep(0.9)
            r = await ch.request(_pop_cmd(order=True, queue_id=0, invisible_ms=800), 3000)
            again = _records(r)
            assert [m.queue_offset for m in again] == [0, 1, 2] and "qo0%0 1" in r.ext_fields["orderCountInfo"]
            for m in again:
                assert (await ch.request(_ack_cmd(m.properties["POP_CK"]), 3000)).code == codes.SUCCESS
            assert one.broker.group.store.query_offset(G, T, 0) == 3
            # mode and assignment
            body = b'{"topic":"%s","consumerGroup":"%s","mode":"POP","popShareQueueNum":0}' % (T.encode(), G.encode())
            assert (await ch.request(RemotingCommand.request(codes.SET_MESSAGE_REQUEST_MODE, {}, body), 3000)).code == 0
            q = await ch.request(RemotingCommand.request(codes.QUERY_ASSIGNMENT, {}, b'{"topic":"%s","consumerGroup":'
                                                         b'"%s","clientId":"c1"}' % (T.encode(), G.encode())), 3000)
            assert q.code == 0 and b'"mode":"POP"' in q.body and b'"queueId":0' in q.body
            heir = PopService(one.broker.ctx)          # a new leader (or a restart) reads it from the log
            heir.sync()
            assert heir.engine.request_modes[(T, G)] == ("POP", 0)
            # bad input is refused, the connection stays
            bad = await ch.request(_ack_cmd("1 2 3"), 3000) if False else await ch.request(
                RemotingCommand.request(codes.ACK_MESSAGE, {"consumerGroup": G, "topic": T, "queueId": "0",
                                                            "extraInfo": "x y", "offset": "0"}), 3000)
            assert bad.code == codes.INVALID_PARAMETER and "handle" in bad.remark
            missing = await ch.request(RemotingCommand.request(codes.POP_MESSAGE, {"topic": T}), 3000)
            assert missing.code == codes.INVALID_PARAMETER
            r = await ch.request(RemotingCommand.request(codes.POP_MESSAGE, {
                "consumerGroup": G, "topic": "NoSuch", "queueId": "-1", "maxMsgNums": "1", "invisibleTime": "1000"}),
                3000)
            assert r.code == codes.TOPIC_NOT_EXIST
            # the revive log is an internal topic: a client cannot write to it
            async with Producer(one.layout.namesrv_addr, "PID_x") as producer:
                try:
                    await producer.send(OutgoingMessage("rmq_sys_REVIVE_LOG_popcluster", b"forged", tags="ck"))
                    forged = True
                except Exception:   # noqa: BLE001 - refused is what we want; how is the producer's business
                    forged = False
            assert not forged
    asyncio.run(asyncio.wait_for(main(), 60))


def test_inspect_shows_pop_state_of_a_store_and_migrate_carries_it(tmp_path):
    """A store holding checkpoints (some messages acked, some not) shows them per group; a store
    migrated to another format version shows the same POP state."""
    from mqbench.inspection.report import inspect_store
    from mqbench.migrate.plan import Options
    from mqbench.migrate.run import migrate

    async def main():
        async with PopBroker(tmp_path) as one:
            ch = one.channel
            await one.topic(T, queues=1)
            await _send(one, 4)
            r = await ch.request(_pop_cmd(max_msgs=4, invisible_ms=600_000), 3000)
            msgs = _records(r)
            assert len(msgs) == 4
            assert (await ch.request(_ack_cmd(msgs[0].properties["POP_CK"]), 3000)).code == codes.SUCCESS
    asyncio.run(asyncio.wait_for(main(), 60))
    doc = inspect_store(str(tmp_path / "store"))
    [row] = doc["pop"]["groups"]
    assert (row["group"], row["topic"], row["checkpoints"], row["unacked_messages"], row["acked_messages"]) == \
        (G, T, 1, 3, 1)
    migrate(str(tmp_path / "store"), str(tmp_path / "v5"), Options(target="v5"))
    [moved] = inspect_store(str(tmp_path / "v5"))["pop"]["groups"]
    assert moved == row
