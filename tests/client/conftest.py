"""Test fixtures for mqbench's client: the real name server plus a SCRIPTED broker.

``ScriptedBroker`` is a test fixture, not a broker: it keeps each queue as an in-memory list of
stored-message records (encoded with the store-formats module), answers the requests the client
makes, and can be told to fail sends with a given code. The real broker is tested with this
client in its own suite.
"""
import asyncio
import json

import pytest

from mqbench.broker.namesrv.routes import TopicEntry, register_body
from mqbench.broker.namesrv.server import NameServer
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.remoting.server import RemotingServer
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import decode_batch


class ScriptedBroker:
    def __init__(self, name: str = "g0", *, queue_nums: int = 4, topics=("Orders",), inner_batch_topics=(),
                 cluster: str = "c1", unknown_group_offset_zero: bool = False) -> None:
        # unknown_group_offset_zero: answer QUERY_CONSUMER_OFFSET for a group never seen with 0, as a
        # real broker does while the queue's first message is in memory (what the C++ client needs).
        self.unknown_group_offset_zero = unknown_group_offset_zero
        self.name = name
        self.cluster = cluster
        self.queue_nums = queue_nums
        self.topics = set(topics) | set(inner_batch_topics)
        self.inner_batch_topics = set(inner_batch_topics)
        self.queues: dict[tuple[str, int], list[tuple[int, int, bytes]]] = {}  # (offset, count, record)
        self.offsets: dict[tuple[str, str, int], int] = {}
        self.groups: dict[str, dict[str, object]] = {}  # group -> client id -> channel
        self.fail_sends: list[int] = []
        self.requests: list[RemotingCommand] = []
        self.physical_offset = 0
        self.clock_ms = 1_700_000_000_000
        self._arrived: dict[tuple[str, int], asyncio.Event] = {}
        self.server = RemotingServer({
            codes.SEND_MESSAGE: self.on_send, codes.SEND_MESSAGE_V2: self.on_send, codes.SEND_BATCH_MESSAGE: self.on_send,
            codes.PULL_MESSAGE: self.on_pull, codes.QUERY_CONSUMER_OFFSET: self.on_query_offset,
            codes.UPDATE_CONSUMER_OFFSET: self.on_update_offset, codes.GET_MAX_OFFSET: self.on_max_offset,
            codes.GET_MIN_OFFSET: self.on_min_offset, codes.HEART_BEAT: self.on_heartbeat,
            codes.GET_CONSUMER_LIST_BY_GROUP: self.on_consumer_list, codes.UNREGISTER_CLIENT: self.on_unregister})

    async def start(self) -> str:
        host, port = await self.server.start("127.0.0.1", 0)
        self.addr = f"{host}:{port}"
        self.store_host = (host, port)
        return self.addr

    async def register(self, namesrv_addr: str, broker_id: int = 0, term: int = 1) -> RemotingCommand:
        channel = await connect(namesrv_addr)
        try:
            header = headers.RegisterBrokerHeader(self.name, self.addr, self.cluster, broker_id, raft_term=term)
            body = register_body({t: TopicEntry(self.queue_nums, self.queue_nums, 6) for t in self.topics})
            return await channel.request(RemotingCommand.request(codes.REGISTER_BROKER, header.to_ext(),
                                                                 json.dumps(body).encode()), 2000)
        finally:
            await channel.aclose()

    def max_offset(self, topic: str, queue_id: int) -> int:
        entries = self.queues.get((topic, queue_id), [])
        return entries[-1][0] + entries[-1][1] if entries else 0

    def append(self, msg: rec.Message, count: int = 1) -> int:
        key = (msg.topic, msg.queue_id)
        msg.queue_offset = self.max_offset(*key)
        msg.physical_offset = self.physical_offset
        msg.store_host = self.store_host
        self.clock_ms += 1
        msg.store_timestamp_ms = self.clock_ms
        data = rec.encode_message(msg)
        self.physical_offset += len(data)
        self.queues.setdefault(key, []).append((msg.queue_offset, count, data))
        self._arrived.setdefault(key, asyncio.Event()).set()
        return msg.queue_offset

    def stored(self, topic: str) -> list[rec.Message]:
        out = []
        for (t, _q), entries in sorted(self.queues.items()):
            if t == topic:
                out += [rec.decode_message(data)[0] for _o, _c, data in entries]
        return out

    # --- handlers --------------------------------------------------------------------------------

    async def on_send(self, cmd, channel):
        self.requests.append(cmd)
        if self.fail_sends:
            return cmd.response_to(self.fail_sends.pop(0), "scripted failure")
        h = headers.send_header(cmd)
        if h.topic not in self.topics:
            return cmd.response_to(codes.TOPIC_NOT_EXIST, f"topic {h.topic} not exist")
        props = rec.decode_properties(h.properties or "")
        base = rec.Message(topic=h.topic, body=cmd.body, properties=props, queue_id=h.queue_id, flag=h.flag,
                           sysflag=h.sys_flag, born_timestamp_ms=h.born_timestamp_ms)
        if cmd.code == codes.SEND_BATCH_MESSAGE and h.topic in self.inner_batch_topics:
            items = decode_batch(cmd.body)
            base.sysflag |= record_layout.SYSFLAG_NEED_UNWRAP | record_layout.SYSFLAG_INNER_BATCH
            base.properties = {**props, "INNER_NUM": str(len(items)),
                               "INNER_BASE": str(self.max_offset(h.topic, h.queue_id))}
            first = self.append(base, len(items))
            ids = rec.message_id(self.store_host, base.physical_offset)
        elif cmd.code == codes.SEND_BATCH_MESSAGE:
            first, ids = None, []
            for item in decode_batch(cmd.body):
                inner = rec.Message(topic=h.topic, body=item.body, properties=item.properties, queue_id=h.queue_id,
                                    flag=item.flag, sysflag=h.sys_flag, born_timestamp_ms=h.born_timestamp_ms)
                offset = self.append(inner)
                first = offset if first is None else first
                ids.append(rec.message_id(self.store_host, inner.physical_offset))
            ids = ",".join(ids)
        else:
            first = self.append(base)
            ids = rec.message_id(self.store_host, base.physical_offset)
        return cmd.response_to(codes.SUCCESS, None, {"msgId": ids, "queueId": h.queue_id, "queueOffset": first})

    async def on_pull(self, cmd, channel):
        self.requests.append(cmd)
        h = headers.PullMessageHeader.from_ext(cmd.ext_fields)
        key = (h.topic, h.queue_id)
        if h.sys_flag & codes.PULL_FLAG_COMMIT_OFFSET:
            self.offsets[(h.consumer_group, h.topic, h.queue_id)] = h.commit_offset
        deadline = asyncio.get_running_loop().time() + h.suspend_timeout_ms / 1000
        while True:
            found = [(o, c, d) for o, c, d in self.queues.get(key, []) if o + c > h.queue_offset][:h.max_msg_nums]
            if found:
                last = found[-1]
                return cmd.response_to(codes.SUCCESS, None, {"nextBeginOffset": last[0] + last[1], "minOffset": 0,
                                                             "maxOffset": self.max_offset(*key),
                                                             "suggestWhichBrokerId": 0},
                                       b"".join(d for _o, _c, d in found))
            remaining = deadline - asyncio.get_running_loop().time()
            if not h.sys_flag & codes.PULL_FLAG_SUSPEND or remaining <= 0:
                return cmd.response_to(codes.PULL_NOT_FOUND, None, {"nextBeginOffset": h.queue_offset, "minOffset": 0,
                                                                    "maxOffset": self.max_offset(*key),
                                                                    "suggestWhichBrokerId": 0})
            event = self._arrived.setdefault(key, asyncio.Event())
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def on_query_offset(self, cmd, channel):
        h = headers.QueryConsumerOffsetHeader.from_ext(cmd.ext_fields)
        offset = self.offsets.get((h.consumer_group, h.topic, h.queue_id))
        if offset is None and self.unknown_group_offset_zero:
            offset = 0
        if offset is None:
            return cmd.response_to(codes.QUERY_NOT_FOUND, "Not found, maybe this group consumer boot first")
        return cmd.response_to(codes.SUCCESS, None, {"offset": offset})

    async def on_update_offset(self, cmd, channel):
        h = headers.UpdateConsumerOffsetHeader.from_ext(cmd.ext_fields)
        self.offsets[(h.consumer_group, h.topic, h.queue_id)] = h.commit_offset
        return cmd.response_to(codes.SUCCESS)

    async def on_max_offset(self, cmd, channel):
        h = headers.QueueOffsetHeader.from_ext(cmd.ext_fields)
        return cmd.response_to(codes.SUCCESS, None, {"offset": self.max_offset(h.topic, h.queue_id)})

    async def on_min_offset(self, cmd, channel):
        return cmd.response_to(codes.SUCCESS, None, {"offset": 0})

    async def on_heartbeat(self, cmd, channel):
        doc = headers.parse_heartbeat(cmd.body)
        for consumer in doc.get("consumerDataSet") or []:
            group = self.groups.setdefault(consumer["groupName"], {})
            if doc["clientID"] not in group:
                group[doc["clientID"]] = channel
                await self._notify(consumer["groupName"], skip=doc["clientID"])
        return cmd.response_to(codes.SUCCESS)

    async def on_unregister(self, cmd, channel):
        h = headers.UnregisterClientHeader.from_ext(cmd.ext_fields)
        if h.consumer_group and self.groups.get(h.consumer_group, {}).pop(h.client_id, None) is not None:
            await self._notify(h.consumer_group, skip=h.client_id)
        return cmd.response_to(codes.SUCCESS)

    async def _notify(self, group: str, skip: str) -> None:
        for client_id, channel in list(self.groups.get(group, {}).items()):
            if client_id != skip and not channel.closed:
                await channel.oneway(RemotingCommand.request(codes.NOTIFY_CONSUMER_IDS_CHANGED,
                                                             {"consumerGroup": group}))

    async def on_consumer_list(self, cmd, channel):
        h = headers.ConsumerGroupHeader.from_ext(cmd.ext_fields)
        return cmd.response_to(codes.SUCCESS, body=headers.consumer_list_body(sorted(self.groups.get(h.consumer_group, {}))))


class Cluster:
    """A real name server and scripted brokers, all on 127.0.0.1 with ephemeral ports."""

    def __init__(self):
        self.namesrv = NameServer()
        self.brokers: list[ScriptedBroker] = []

    async def __aenter__(self):
        host, port = await self.namesrv.start("127.0.0.1", 0)
        self.namesrv_addr = f"{host}:{port}"
        return self

    async def add_broker(self, name="g0", broker_id=0, term=1, **kwargs) -> ScriptedBroker:
        broker = ScriptedBroker(name, **kwargs)
        await broker.start()
        response = await broker.register(self.namesrv_addr, broker_id, term)
        assert response.code == codes.SUCCESS, response.remark
        self.brokers.append(broker)
        return broker

    async def __aexit__(self, *exc):
        for broker in self.brokers:
            await broker.server.close()
        await self.namesrv.close()


@pytest.fixture
def cluster():
    return Cluster()


@pytest.fixture
def run():
    def runner(coro, timeout_s=20):
        return asyncio.run(asyncio.wait_for(coro, timeout_s))
    return runner
