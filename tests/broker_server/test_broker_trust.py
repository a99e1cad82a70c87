"""Finding 10 without an ACL: what no client may do to a reference broker, whoever it is.

* writes to internal topics (``rmq_sys_*``, the delay service's progress topic among them, and
  RocketMQ's ``SCHEDULE_TOPIC_XXXX`` & co.) are refused NO_PERMISSION, as RocketMQ answers them;
* a consumer offset beyond the queue's max offset is refused (it could only park another group
  past every message), while a real commit still works;
* one heartbeat cannot create hundreds of retry topics."""
from __future__ import annotations

import asyncio
import json

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.batch import BatchItem, encode_batch

from test_broker_inprocess import InProcessCluster, request, run, send_v1_fields


def test_clients_cannot_write_internal_topics(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=21) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            for topic in ("rmq_sys_mqbench_delay_progress", "rmq_sys_wheel_timer", "SCHEDULE_TOPIC_XXXX",
                          "RMQ_SYS_TRANS_HALF_TOPIC", "rmq_sys_anything"):
                answer = await request(addr, codes.SEND_MESSAGE, send_v1_fields(topic), b"garbage")
                assert answer.code == codes.NO_PERMISSION and "forbidden" in answer.remark, (topic, answer.remark)
                batch = await request(addr, codes.SEND_BATCH_MESSAGE, headers.SendMessageHeader(
                    producer_group="P", topic=topic, batch=True).to_v2(), encode_batch([BatchItem(b"x", {})]))
                assert batch.code == codes.NO_PERMISSION, (topic, batch.remark)
            store = leader.group.store
            assert store.max_offset("rmq_sys_mqbench_delay_progress", 0) == 0
            assert store.topic_config("rmq_sys_anything") is None
            ok = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Ordinary"), b"fine")
            assert ok.code == codes.SUCCESS
    run(scenario())


def test_an_offset_beyond_the_queue_is_refused_and_a_real_one_is_taken(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=22) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            for _ in range(3):
                assert (await request(addr, codes.SEND_MESSAGE, send_v1_fields("Offs"), b"m")).code == codes.SUCCESS
            huge = headers.UpdateConsumerOffsetHeader("GID_victim", "Offs", 0, 10 ** 15).to_ext()
            answer = await request(addr, codes.UPDATE_CONSUMER_OFFSET, huge)
            assert answer.code == codes.INVALID_PARAMETER and "max offset 3" in answer.remark
            assert leader.group.store.query_offset("GID_victim", "Offs", 0) < 0
            real = headers.UpdateConsumerOffsetHeader("GID_victim", "Offs", 0, 3).to_ext()
            assert (await request(addr, codes.UPDATE_CONSUMER_OFFSET, real)).code == codes.SUCCESS
            assert leader.group.store.query_offset("GID_victim", "Offs", 0) == 3
    run(scenario())


def test_one_heartbeat_cannot_create_hundreds_of_topics(tmp_path):
    def heartbeat(groups: int, prefix: str) -> bytes:
        return json.dumps({"clientID": f"attacker-{prefix}", "producerDataSet": [], "consumerDataSet": [
            {"groupName": f"{prefix}{i}", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
             "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "subscriptionDataSet": [], "unitMode": False}
            for i in range(groups)]}).encode()

    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=23) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            before = len(leader.ctx.topic_configs())
            flood = await request(addr, codes.HEART_BEAT, body=heartbeat(300, "G"))
            assert flood.code == codes.INVALID_PARAMETER and "300 consumer groups" in flood.remark
            many = await request(addr, codes.HEART_BEAT, body=heartbeat(20, "H"))
            assert many.code == codes.SUCCESS
            await asyncio.sleep(2)                 # the creations run in the background
            created = len(leader.ctx.topic_configs()) - before
            assert 1 <= created <= 8, created       # the rest come with the next heartbeats
    run(scenario())
