"""The broker process's parts in one event loop: real name server, real brokers (1 and 3 replicas
of one Raft group, each with its own store), our client, all on 127.0.77.x loopback addresses."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from pathlib import Path

import pytest

from mqbench.broker.layout import parse_layout
from mqbench.broker.namesrv.server import NameServer
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import LENGTH, RemotingCommand
from mqbench.admin.calls import AdminError, create_topic, query_runtime_info
from mqbench.broker.server.main import Broker
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.client.messages import decode_pulled
from mqbench.errors import UserError

FAST = {"tick_ms": 20, "heartbeat_ms": 60, "election_ms": 500}


def _free(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
            return True
        except OSError:
            return False


def test_layout(replicas: int, subnet: int):
    """A one-group layout on 127.0.77.<subnet*8 + i> with ports that are free right now."""
    addresses = [f"127.0.77.{subnet * 8 + i + 1}" for i in range(replicas)]
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 60000, 10)
        if all(_free(a, p) for a in addresses for p in (base, base + 1)) and _free(addresses[0], base + 5):
            break
    hosts = {f"h{i}": {"address": a} for i, a in enumerate(addresses)}
    return parse_layout({"name": f"test{replicas}", "cluster": "testcluster", "namesrv_host": "h0",
                         "namesrv_port": base + 5, "broker_port": base, "rooms": {"r1": {"hosts": list(hosts)}},
                         "hosts": hosts, "groups": {"broker-t": {"replicas": list(hosts)}}})


test_layout.__test__ = False  # a helper, not a test


class InProcessCluster:
    def __init__(self, root: Path, replicas: int, subnet: int, durability: str = "memory") -> None:
        self.layout = test_layout(replicas, subnet)
        self.root = root
        self.durability = durability
        self.namesrv = NameServer()
        self.brokers: dict[str, Broker] = {}

    async def __aenter__(self) -> "InProcessCluster":
        await self.namesrv.start(self.layout.hosts["h0"], self.layout.namesrv_port)
        for instance in self.layout.instances:
            await self.start(instance.name)
        await self.leader()
        return self

    async def start(self, name: str) -> Broker:
        broker = Broker(self.layout, name, self.root / name.replace("/", "_"), durability=self.durability,
                        register_interval_ms=500, rng=random.Random(len(self.brokers)), group_options=FAST)
        self.brokers[name] = await broker.start()
        return broker

    async def stop(self, name: str) -> None:
        await self.brokers.pop(name).close()

    async def __aexit__(self, *exc) -> None:
        await asyncio.gather(*(b.close() for b in self.brokers.values()), return_exceptions=True)
        await self.namesrv.close()

    @property
    def namesrv_addr(self) -> str:
        return self.layout.namesrv_addr

    async def leader(self, timeout_s: float = 10.0) -> Broker:
        """The one leader, once the name server routes its group to it."""
        deadline = time.monotonic() + timeout_s
        while True:
            leaders = [b for b in self.brokers.values() if b.ctx.is_leader() and b.group.leader_ready]
            if len(leaders) == 1:
                broker_data = self.namesrv.routes.brokers.get("broker-t")
                if broker_data is not None and broker_data.broker_addrs.get(0) == leaders[0].instance.addr:
                    return leaders[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no single routed leader within {timeout_s} s")
            await asyncio.sleep(0.02)

    def followers(self) -> list[Broker]:
        return [b for b in self.brokers.values() if not b.ctx.is_leader()]


async def request(addr: str, code: int, ext: dict | None = None, body: bytes = b"", timeout_ms: int = 5000,
                  serialize_type: int = codes.SERIALIZE_JSON) -> RemotingCommand:
    channel = await connect(addr)
    try:
        return await channel.request(RemotingCommand.request(code, ext or {}, body, serialize_type=serialize_type),
                                     timeout_ms)
    finally:
        await channel.aclose()


def run(coro, timeout_s: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def send_v1_fields(topic: str, queue_id: int = 0, properties: dict | None = None, **extra) -> dict:
    """SEND_MESSAGE (10) with the long header names, as the C++ client sends it."""
    fields = {"producerGroup": "PID_cpp", "topic": topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": 4,
              "queueId": queue_id, "sysFlag": 0, "bornTimestamp": 1_700_000_000_000, "flag": 0,
              "properties": rec.encode_properties(properties or {"UNIQ_KEY": "AB" * 16, "TAGS": "t"}).decode(),
              "reconsumeTimes": 0, "unitMode": False, "batch": False}
    fields.update(extra)
    return fields


def pull_fields(topic: str, queue_id: int, offset: int, *, suspend_ms: int = 0, group: str = "GID_raw",
                max_nums: int = 32, subscription: str = "*") -> dict:
    sys_flag = codes.PULL_FLAG_SUBSCRIPTION | (codes.PULL_FLAG_SUSPEND if suspend_ms else 0)
    return headers.PullMessageHeader(consumer_group=group, topic=topic, queue_id=queue_id, queue_offset=offset,
                                     max_msg_nums=max_nums, sys_flag=sys_flag, commit_offset=0,
                                     suspend_timeout_ms=suspend_ms, subscription=subscription,
                                     expression_type="TAG").to_ext()


# --- one replica -----------------------------------------------------------------------------------


def test_single_send_v1_v2_batch_and_consume(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=0) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            # SEND_MESSAGE 10 with long names auto-creates the topic (4 queues) and answers like RocketMQ
            response = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Auto", queue_id=2), b"v1-body")
            assert response.code == codes.SUCCESS, response.remark
            answer = headers.SendMessageResponseHeader.from_ext(response.ext_fields)
            assert (answer.queue_id, answer.queue_offset, answer.transaction_id) == (2, 0, "AB" * 16)
            assert rec.decode_message_id(answer.msg_id)[0] == (leader.instance.address, leader.instance.port)
            assert leader.ctx.topic_config("Auto").write_queue_nums == 4
            # a long-name header with batch=true carries a batch body, whatever the request code
            pair = encode_batch([BatchItem(b"v1-batch-0", {"UNIQ_KEY": "D" * 32, "TAGS": "t"}),
                                  BatchItem(b"v1-batch-1", {"TAGS": "t"})])
            response = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Auto", queue_id=3, batch=True), pair)
            assert response.code == codes.SUCCESS and len(response.ext_fields["msgId"].split(",")) == 2
            assert [m.body for m in leader.group.store.read_queue("Auto", 3, 0, 10).messages] == [b"v1-batch-0",
                                                                                                  b"v1-batch-1"]
            async with Producer(cluster.namesrv_addr, "PID_t") as producer:
                await asyncio.sleep(0.6)   # the registration after the auto-creation routes the topic
                single = [await producer.send(OutgoingMessage("Auto", f"m{i}".encode(), tags="t", keys=[f"k{i}"]))
                          for i in range(8)]
                batch = await producer.send_batch([OutgoingMessage("Auto", f"b{i}".encode(), tags="t")
                                                   for i in range(5)])
            assert len(batch.msg_ids) == 5 and len(batch.offset_msg_id.split(",")) == 5
            offsets = {(r.queue.queue_id, r.queue_offset) for r in single}
            assert len(offsets) == 8
            consumer = Consumer(cluster.namesrv_addr, "GID_t", consume_from="first", suspend_timeout_ms=2000)
            consumer.subscribe("Auto", "t")
            got = []
            async with consumer:
                deadline = time.monotonic() + 10
                while len(got) < 16 and time.monotonic() < deadline:
                    got += await consumer.receive(32, 500)
            bodies = sorted(m.body for m in got)
            assert bodies == sorted([b"v1-body", b"v1-batch-0", b"v1-batch-1"] + [f"m{i}".encode() for i in range(8)]
                                    + [f"b{i}".encode() for i in range(5)])
            # the consumer's close committed its offsets through the Raft log: they are the queue ends
            store = leader.group.store
            for queue_id in range(4):
                assert store.query_offset("GID_t", "Auto", queue_id) == store.max_offset("Auto", queue_id)
            info = await query_runtime_info(addr)
            assert info["raftRole"] == "leader" and info["raftLeaderId"] == leader.instance.name
            assert int(info["putMessageCount"]) == 16 and int(info["storeBytes"]) > 0
            assert int(info["raftCommitIndex"]) > 0
            assert store.topic_config("%RETRY%GID_t") is not None   # created on the group's first heartbeat
    run(scenario())


def test_batch_cq_topic_stores_one_record_per_batch(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=3) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            await create_topic(addr, "Batched", queues=1, attributes={"queue.type": "BatchCQ"})
            assert leader.ctx.topic_config("Batched").is_batch_cq
            items = [BatchItem(f"item{i}".encode(), {"UNIQ_KEY": f"{i:032X}"}) for i in range(6)]
            fields = headers.SendMessageHeader(producer_group="PID_b", topic="Batched", queue_id=0,
                                               born_timestamp_ms=1, properties="", batch=True).to_v2()
            for _ in range(2):
                response = await request(addr, codes.SEND_BATCH_MESSAGE, fields, encode_batch(items))
                assert response.code == codes.SUCCESS, response.remark
            assert response.ext_fields["queueOffset"] == "6" and "," not in response.ext_fields["msgId"]
            store = leader.group.store
            assert store.max_offset("Batched", 0) == 12
            records = [rec.decode_message(raw)[0] for _, raw, _ in store.log.scan(0, None)]
            records = [r for r in records if r.topic == "Batched"]
            assert len(records) == 2 and all(r.sysflag & record_layout.SYSFLAG_INNER_BATCH for r in records)
            assert all(r.body == encode_batch(items) for r in records)     # stored as sent: what it encodes to
            # a body the encoder would not write as sent (a MAGICCODE of 1) is stored as it encodes
            odd = bytearray(encode_batch(items[:2]))
            odd[4:8] = b"\0\0\0\1"
            response = await request(addr, codes.SEND_BATCH_MESSAGE, fields, bytes(odd))
            assert response.code == codes.SUCCESS and response.ext_fields["queueOffset"] == "12"
            [last] = [m for m, _ in (rec.decode_message(raw) for _, raw, _ in store.log.scan(0, None))
                      if m.topic == "Batched"][-1:]
            assert last.body == encode_batch(items[:2]) and last.properties["INNER_NUM"] == "2"
            delayed = [*items[:2], BatchItem(b"late", {"UNIQ_KEY": "D" * 32, "DELAY": "3"})]
            response = await request(addr, codes.SEND_BATCH_MESSAGE, fields, encode_batch(delayed))
            assert response.code == codes.MESSAGE_ILLEGAL and "DELAY" in response.remark
            crowded = [*items[:2], BatchItem(b"big", {"UNIQ_KEY": "E" * 32, "K": "v" * 31_000})]
            big_fields = {**fields, "i": "A\u0001" + "w" * 800 + "\u0002"}     # the batch's own properties
            response = await request(addr, codes.SEND_BATCH_MESSAGE, big_fields, encode_batch(crowded))
            assert response.code == codes.MESSAGE_ILLEGAL and "as stored" in response.remark
            assert store.max_offset("Batched", 0) == 14
            for name in ("DELAY", "TIMER_DELAY_MS", "TIMER_DELAY_SEC", "TIMER_DELIVER_MS"):   # a SimpleCQ topic too
                timed = [*items[:2], BatchItem(b"t", {name: "5"})]
                plain_fields = {**fields, "b": "Plain"}
                response = await request(addr, codes.SEND_BATCH_MESSAGE, plain_fields, encode_batch(timed))
                assert response.code == codes.MESSAGE_ILLEGAL and name in response.remark, response.remark
            response = await request(addr, codes.PULL_MESSAGE, pull_fields("Batched", 0, 4))
            pulled = decode_pulled(response.body, "b")
            assert [m.queue_offset for m in pulled] == list(range(4, 14))
            assert [m.body for m in pulled[:2]] == [b"item4", b"item5"]
            # a body over the property bound of ordinary items (an orders batch of 64 is ~45 KB) is
            # stored as sent too: the room check of the decoding path must not run on it
            wide = [BatchItem(b"x" * 600, {"UNIQ_KEY": f"{i:032X}", "KEYS": f"o-{i}"}) for i in range(64)]
            assert len(encode_batch(wide)) > 32_767
            response = await request(addr, codes.SEND_BATCH_MESSAGE, fields, encode_batch(wide))
            assert response.code == codes.SUCCESS, response.remark
            assert store.max_offset("Batched", 0) == 14 + 64
    run(scenario())


def test_bad_input_gets_clear_answers_and_the_broker_keeps_serving(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=4) as cluster:
            addr = (await cluster.leader()).instance.addr
            bystander = await connect(addr)
            unknown = await request(addr, 4242)
            assert unknown.code == codes.REQUEST_CODE_NOT_SUPPORTED and "4242" in unknown.remark
            bad_topic = await request(addr, codes.SEND_MESSAGE, send_v1_fields("../x"), b"body")
            assert bad_topic.code == codes.MESSAGE_ILLEGAL and "illegal character '.'" in bad_topic.remark
            for code, fields in ((codes.PULL_MESSAGE, pull_fields("../x", 0, 0)),
                                 (codes.GET_MAX_OFFSET, {"topic": "../x", "queueId": "0"}),
                                 (codes.UPDATE_AND_CREATE_TOPIC, {"topic": "../x", "readQueueNums": "4",
                                                                  "writeQueueNums": "4"})):
                response = await request(addr, code, fields)
                assert response.code == codes.INVALID_PARAMETER and "illegal character" in response.remark
            system = await request(addr, codes.SEND_MESSAGE, send_v1_fields("SCHEDULE_TOPIC_XXXX"), b"x")
            assert system.code == codes.NO_PERMISSION and "forbidden" in system.remark   # as RocketMQ
            missing = await request(addr, codes.SEND_MESSAGE_V2, {"a": "PID"}, b"x")
            assert missing.code == codes.MESSAGE_ILLEGAL and "'b'" in missing.remark
            not_number = await request(addr, codes.PULL_MESSAGE, {**pull_fields("T", 0, 0), "queueOffset": "ten"})
            assert not_number.code == codes.INVALID_PARAMETER and "queueOffset" in not_number.remark
            torn = await request(addr, codes.SEND_BATCH_MESSAGE,
                                 headers.SendMessageHeader(producer_group="P", topic="T", batch=True).to_v2(),
                                 encode_batch([BatchItem(b"a", {})])[:-3])
            assert torn.code == codes.MESSAGE_ILLEGAL and "batch body to T" in torn.remark
            assert cluster.brokers["broker-t/n0"].ctx.topic_config("T") is None   # nothing created for it
            empty = await request(addr, codes.SEND_MESSAGE, send_v1_fields("T"), b"")
            assert empty.code == codes.MESSAGE_ILLEGAL and "empty" in empty.remark
            heartbeat = await request(addr, codes.HEART_BEAT, body=b"{not json")
            assert heartbeat.code == codes.INVALID_PARAMETER and "not JSON" in heartbeat.remark
            bad_attr = await request(addr, codes.UPDATE_AND_CREATE_TOPIC, {"topic": "A", "readQueueNums": "4",
                                                                           "writeQueueNums": "4", "attributes": "+x"})
            assert bad_attr.code == codes.INVALID_PARAMETER and "+x" in bad_attr.remark
            with pytest.raises(AdminError, match="queue.type"):
                await create_topic(addr, "Q", attributes={"queue.type": "Ring"})
            # binary (ROCKETMQ) headers are served too
            binary = await request(addr, codes.GET_MAX_OFFSET, {"topic": "T", "queueId": "0"},
                                   serialize_type=codes.SERIALIZE_ROCKETMQ)
            assert binary.code == codes.SUCCESS and binary.serialize_type == codes.SERIALIZE_ROCKETMQ
            # a malformed frame closes that connection only
            reader, writer = await asyncio.open_connection(*addr.split(":"))
            writer.write(LENGTH.pack(12) + LENGTH.pack(8) + b"{garbage")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            response = await bystander.request(RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO), 3000)
            assert response.code == codes.SUCCESS
            await bystander.aclose()
    run(scenario())


def test_consumer_list_and_rebalance_notification(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=5) as cluster:
            addr = (await cluster.leader()).instance.addr
            await create_topic(addr, "Shared", queues=4)
            await asyncio.sleep(0.6)
            first = Consumer(cluster.namesrv_addr, "GID_s", consume_from="first", client_id="c-1")
            first.subscribe("Shared")
            second = Consumer(cluster.namesrv_addr, "GID_s", consume_from="first", client_id="c-2")
            second.subscribe("Shared")
            async with first:
                assert len(first.assigned) == 4
                async with second:
                    response = await request(addr, codes.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "GID_s"})
                    assert headers.parse_consumer_list(response.body) == ["c-1", "c-2"]
                    # the broker told c-1 that c-2 joined: it gave up half its queues without waiting
                    deadline = time.monotonic() + 5
                    while len(first.assigned) != 2 and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    assert len(first.assigned) == 2 and len(second.assigned) == 2
                response = await request(addr, codes.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "GID_s"})
                assert headers.parse_consumer_list(response.body) == ["c-1"]
            response = await request(addr, codes.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "GID_s"})
            assert response.code == codes.SYSTEM_ERROR and "GID_s" in response.remark
    run(scenario())


# --- three replicas ----------------------------------------------------------------------------------


def test_three_replicas_followers_read_refuse_writes_and_producer_follows_leader(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 3, subnet=6) as cluster:
            leader = await cluster.leader()
            follower = cluster.followers()[0]
            # admin create_topic sent to a follower follows the leader it names
            await create_topic(follower.instance.addr, "Repl", queues=2)
            refused = await request(follower.instance.addr, codes.SEND_MESSAGE, send_v1_fields("Repl"), b"x")
            assert refused.code == codes.SYSTEM_ERROR
            assert leader.instance.addr in refused.remark and refused.ext_fields["leaderAddr"] == leader.instance.addr
            route = cluster.namesrv.routes.topic_route("Repl")
            [broker_data] = route["brokerDatas"]
            assert broker_data["brokerAddrs"]["0"] == leader.instance.addr and len(broker_data["brokerAddrs"]) == 3
            async with Producer(cluster.namesrv_addr, "PID_r", send_timeout_ms=2000) as producer:
                for i in range(6):
                    await producer.send(OutgoingMessage("Repl", f"before-{i}".encode()))
                # committed entries are readable on the followers too (reads go to any replica)
                deadline = time.monotonic() + 5
                queue = headers.QueueOffsetHeader("Repl", 0).to_ext()
                leader_max = leader.group.store.max_offset("Repl", 0)
                while time.monotonic() < deadline:
                    answer = await request(follower.instance.addr, codes.GET_MAX_OFFSET, queue)
                    if int(answer.ext_fields["offset"]) == leader_max:
                        break
                    await asyncio.sleep(0.05)
                assert int(answer.ext_fields["offset"]) == leader_max
                pulled = await request(follower.instance.addr, codes.PULL_MESSAGE, pull_fields("Repl", 0, 0))
                assert pulled.code == codes.SUCCESS and len(decode_pulled(pulled.body, "b")) == leader_max
                # hand leadership to a follower: the producer's cached route now names a follower,
                # which answers not-leader; the producer refreshes its route and carries on
                target = cluster.followers()[0]
                leader.group.transfer_leadership(int(target.instance.replica_id[1:]) + 1)
                deadline = time.monotonic() + 10
                while not target.ctx.is_leader() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                new_leader = await cluster.leader()
                assert new_leader is target
                results = [await producer.send(OutgoingMessage("Repl", f"after-{i}".encode())) for i in range(6)]
                assert any(r.attempts > 1 for r in results)
            assert refused.code == codes.SYSTEM_ERROR
            offsets = headers.UpdateConsumerOffsetHeader("GID_r", "Repl", 0, 3).to_ext()
            assert (await request(new_leader.instance.addr, codes.UPDATE_CONSUMER_OFFSET, offsets)).code == 0
            old = await request(leader.instance.addr, codes.UPDATE_CONSUMER_OFFSET, offsets)
            assert old.code == codes.SYSTEM_ERROR and new_leader.instance.name in old.remark
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                    b.group.store.query_offset("GID_r", "Repl", 0) != 3 for b in cluster.brokers.values()):
                await asyncio.sleep(0.05)
            assert all(b.group.store.query_offset("GID_r", "Repl", 0) == 3 for b in cluster.brokers.values())
            info = await query_runtime_info(leader.instance.addr)
            assert info["raftRole"] == "follower" and info["raftLeaderId"] == new_leader.instance.name
            assert int(info["raftBytesSent"]) > 0 and int(info["raftBytesReceived"]) > 0
    run(scenario(), timeout_s=45)


def test_leader_stop_unregisters_and_a_new_leader_takes_over(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 3, subnet=7) as cluster:
            leader = await cluster.leader()
            await create_topic(leader.instance.addr, "Fail", queues=1)
            async with Producer(cluster.namesrv_addr, "PID_f", send_timeout_ms=2000, retries=4) as producer:
                before = [await producer.send(OutgoingMessage("Fail", b"a%d" % i)) for i in range(5)]
                await cluster.stop(leader.instance.name)       # clean stop: unregisters at once
                new_leader = await cluster.leader(timeout_s=15)
                assert new_leader is not leader
                after = await producer.send(OutgoingMessage("Fail", b"after"))
            assert after.queue_offset == before[-1].queue_offset + 1
            assert leader.instance.addr not in json.dumps(cluster.namesrv.routes.cluster_info())
    run(scenario(), timeout_s=45)


def test_whole_batch_compressed_sends(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=8) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            await create_topic(addr, "Plain", queues=1)
            await create_topic(addr, "Packed", queues=1, attributes={"queue.type": "BatchCQ"})
            await asyncio.sleep(0.6)
            bodies = [(b"order-%d " % i) * 200 for i in range(8)]
            async with Producer(cluster.namesrv_addr, "PID_z", batch_compression="zlib") as producer:
                plain = await producer.send_batch([OutgoingMessage("Plain", b) for b in bodies])
                packed = await producer.send_batch([OutgoingMessage("Packed", b) for b in bodies])
            assert plain.queue_offset == 0 and packed.queue_offset == 0
            store = leader.group.store
            records = [rec.decode_message(raw)[0] for _, raw, _ in store.log.scan(0, None)]
            # to an ordinary topic: checked, decompressed, one plain record per message
            plain_records = [r for r in records if r.topic == "Plain"]
            assert [r.body for r in plain_records] == bodies
            assert not any(r.sysflag & record_layout.SYSFLAG_COMPRESSED for r in plain_records)
            # to a BatchCQ topic: ONE record whose body is the compressed stream
            [packed_record] = [r for r in records if r.topic == "Packed"]
            assert packed_record.sysflag & record_layout.SYSFLAG_COMPRESSED and packed_record.sysflag & record_layout.SYSFLAG_INNER_BATCH
            assert len(packed_record.body) < sum(map(len, bodies)) // 4
            for topic in ("Plain", "Packed"):
                response = await request(addr, codes.PULL_MESSAGE, pull_fields(topic, 0, 0))
                assert [m.body for m in decode_pulled(response.body, "b")] == bodies
            # an envelope that lies about its size is refused before anything is stored
            fields = headers.SendMessageHeader(producer_group="P", topic="Packed", queue_id=0, batch=True,
                                               sys_flag=record_layout.SYSFLAG_COMPRESSED).to_v2()
            bad = await request(addr, codes.SEND_BATCH_MESSAGE, fields, b"\xff\xff\xff\xffMQBC" + b"\x00" * 12)
            assert bad.code == codes.MESSAGE_ILLEGAL and "batch body to Packed" in bad.remark
            assert store.max_offset("Packed", 0) == 8
    run(scenario())


def test_send_back_goes_to_retry_then_dead_letter_and_rewriters_see_single_sends(tmp_path):
    async def scenario():
        async with InProcessCluster(tmp_path, 1, subnet=10) as cluster:
            leader = await cluster.leader()
            addr = leader.instance.addr
            store = leader.group.store

            def tag_rewriter(msg):
                if msg.properties.get("forbidden"):
                    raise UserError("rewriter refuses this message")
                msg.properties["rewritten"] = "yes"
                return msg
            leader.ctx.message_rewriters.append(tag_rewriter)
            props = {"UNIQ_KEY": "C" * 32, "TAGS": "t"}
            assert (await request(addr, codes.SEND_MESSAGE, send_v1_fields("Work", 0, props), b"job")).code == 0
            refused = await request(addr, codes.SEND_MESSAGE, send_v1_fields("Work", 0, {**props, "forbidden": "1"}),
                                    b"job")
            assert refused.code == codes.MESSAGE_ILLEGAL and "rewriter refuses" in refused.remark
            [original] = store.read_queue("Work", 0, 0, 10).messages
            assert original.properties["rewritten"] == "yes"
            back = {"offset": original.physical_offset, "group": "GID_w", "delayLevel": 0,
                    "originMsgId": "", "originTopic": "Work", "maxReconsumeTimes": 1}
            response = await request(addr, codes.CONSUMER_SEND_MSG_BACK, back)
            assert response.code == codes.SUCCESS, response.remark
            [retry] = [m for q in range(4) for m in store.read_queue("%RETRY%GID_w", q, 0, 10).messages]
            assert retry.body == b"job" and retry.reconsume_times == 1
            assert retry.properties["RETRY_TOPIC"] == "Work" and retry.properties["DELAY"] == "3"
            assert retry.properties["ORIGIN_MESSAGE_ID"] == rec.message_id(original.store_host,
                                                                           original.physical_offset)
            assert retry.properties["UNIQ_KEY"] == "C" * 32
            # consumed from the retry topic and failed again: reconsumeTimes 1 >= max 1 -> dead letter
            response = await request(addr, codes.CONSUMER_SEND_MSG_BACK, {**back, "offset": retry.physical_offset})
            assert response.code == codes.SUCCESS, response.remark
            [dead] = store.read_queue("%DLQ%GID_w", 0, 0, 10).messages
            assert dead.reconsume_times == 2 and dead.properties["RETRY_TOPIC"] == "Work" and "DELAY" not in dead.properties
            assert leader.ctx.topic_config("%DLQ%GID_w").perm == 2      # write-only, as RocketMQ makes it
            for bad in (original.physical_offset + 1, 10 ** 12, -5):
                response = await request(addr, codes.CONSUMER_SEND_MSG_BACK, {**back, "offset": bad})
                assert response.code == codes.SYSTEM_ERROR and "no message at commitlog offset" in response.remark
            response = await request(addr, codes.CONSUMER_SEND_MSG_BACK, {**back, "group": "../g"})
            assert response.code == codes.INVALID_PARAMETER and "illegal character" in response.remark
    run(scenario())

