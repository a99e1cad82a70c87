"""The reference broker answers what RocketMQ 4.9.8's mqadmin asks for its everyday verbs, with the
body fields the Java commands read (each test is named for the command; ``admin_bodies`` names the
Java classes). Against a real raft3 cluster (real processes), driven by mqbench's remoting client.

The stock mqadmin itself cannot run here (Maven Central is out of reach), so these tests check the
wire answers field by field instead: the names, types and the fastjson shapes (MessageQueue objects
as map keys) that ``ClusterListSubCommand``, ``BrokerStatusSubCommand``, ``ConsumerProgressSubCommand``,
``ConsumerConnectionSubCommand``, ``TopicStatusSubCommand``, ``StatsAllSubCommand``,
``GetBrokerConfigCommand``, ``TopicListSubCommand -c`` and ``QueryMsgByKeySubCommand`` parse.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from mqbench.admin.calls import create_topic
from mqbench.admin.cluster import query_cluster
from mqbench.broker.formats import admin_bodies as bodies
from mqbench.broker.formats import codes
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats import record as rec
from mqbench.broker.formats.fastjson import loads_fastjson
from mqbench.client import Consumer, OutgoingMessage, Producer

pytestmark = pytest.mark.realproc

TOPIC, GROUP = "AdminWire", "GID_admin_wire"
FIRST, LATER = 40, 10


async def request(addr: str, code: int, ext: dict | None = None) -> RemotingCommand:
    channel = await connect(addr)
    try:
        return await channel.request(RemotingCommand.request(code, ext or {}), 5000)
    finally:
        await channel.aclose()


def call(addr: str, code: int, ext: dict | None = None) -> RemotingCommand:
    return asyncio.run(asyncio.wait_for(request(addr, code, ext), 10))


async def _seed(namesrv: str, leader: str, topic: str, group: str) -> None:
    await create_topic(leader, topic, queues=4, timeout_s=10)
    async with Producer(namesrv) as producer:
        for i in range(FIRST):
            await producer.send(OutgoingMessage(topic, f"m{i}".encode(), tags="t", keys=[f"order-{i}", "all"]))
        consumer = Consumer(namesrv, group, consume_from="first", suspend_timeout_ms=500)
        consumer.subscribe(topic)
        got = []
        async with consumer:
            deadline = time.monotonic() + 20
            while len(got) < FIRST and time.monotonic() < deadline:
                got += await consumer.receive(32, 500)
        assert len(got) == FIRST
        for i in range(LATER):
            await producer.send(OutgoingMessage(topic, f"late{i}".encode(), keys=[f"late-{i}"]))


def _seeded(raft3, topic: str, group: str) -> tuple[str, str]:
    _state, layout = raft3
    namesrv = layout.namesrv_addr
    view = asyncio.run(query_cluster(namesrv))
    leader = view.master_addrs()["broker-a"]
    asyncio.run(asyncio.wait_for(_seed(namesrv, leader, topic, group), 60))
    return leader, namesrv


@pytest.fixture(scope="module")
def seeded(raft3):
    """(leader address, namesrv) after FIRST messages of TOPIC were consumed by GROUP and LATER more sent."""
    return _seeded(raft3, TOPIC, GROUP)


DUMP_TOPIC, DUMP_GROUP = "AdminWireDump", "GID_admin_wire_dump"


@pytest.fixture(scope="module")
def dump_seeded(raft3):
    """The same seeding on a topic and group of its own: the config/offset dumps count exact sums, so no
    other test's consumer or commit may touch them (a shared group summed to 42 or 50, not FIRST)."""
    return _seeded(raft3, DUMP_TOPIC, DUMP_GROUP)


def test_clusterList_runtime_info_has_what_each_row_reads(seeded):
    leader, _ = seeded
    table = bodies.parse_kv_table(call(leader, codes.GET_BROKER_RUNTIME_INFO).body)
    for key in ("putTps", "getTransferedTps"):       # split(" ")[0] -> Double.parseDouble
        values = [float(v) for v in table[key].split(" ")]
        assert len(values) == 3 and values[0] > 0, (key, table[key])
    assert table["brokerVersionDesc"].startswith("mqbench-") and int(table["brokerVersion"]) == 409
    for key in ("sendThreadPoolQueueSize", "pullThreadPoolQueueSize", "sendThreadPoolQueueHeadWaitTimeMills",
                "pullThreadPoolQueueHeadWaitTimeMills", "pageCacheLockTimeMills"):
        assert table[key] == "0"
    assert 0 < int(table["earliestMessageTimeStamp"]) <= time.time() * 1000
    assert 0 <= float(table["commitLogDiskRatio"]) <= 1
    # clusterList -m: Long.parseLong of the day counters
    assert int(table["msgPutTotalTodayNow"]) == FIRST + LATER and int(table["msgGetTotalTodayNow"]) == FIRST
    assert int(table["msgPutTotalTodayMorning"]) >= 0 and int(table["msgGetTotalYesterdayMorning"]) >= 0


def test_brokerStatus_is_a_kv_table_of_strings(seeded):
    leader, _ = seeded
    doc = json.loads(call(leader, codes.GET_BROKER_RUNTIME_INFO).body)
    assert all(isinstance(v, str) for v in doc["table"].values()) and "raftRole" in doc["table"]


def test_topicStatus_topic_stats_are_keyed_by_message_queue_objects(seeded):
    leader, _ = seeded
    response = call(leader, codes.GET_TOPIC_STATS_INFO, {"topic": TOPIC})
    assert response.code == codes.SUCCESS
    assert response.body.startswith(b'{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"AdminWire"}:')
    raw = loads_fastjson(response.body)["offsetTable"]
    assert all(set(v) == {"lastUpdateTimestamp", "maxOffset", "minOffset"} for v in raw.values())
    rows = bodies.parse_topic_stats(response.body)
    assert [r.queue_id for r in rows] == [0, 1, 2, 3]
    assert sum(r.max_offset - r.min_offset for r in rows) == FIRST + LATER
    assert all(r.last_timestamp_ms > 0 for r in rows if r.max_offset > 0)
    missing = call(leader, codes.GET_TOPIC_STATS_INFO, {"topic": "NoSuchTopic"})
    assert missing.code == codes.TOPIC_NOT_EXIST


def test_consumerProgress_g_consume_stats_show_the_real_backlog(seeded):
    leader, _ = seeded
    response = call(leader, codes.GET_CONSUME_STATS, {"consumerGroup": GROUP})
    assert response.code == codes.SUCCESS
    raw = loads_fastjson(response.body)
    assert isinstance(raw["consumeTps"], float)
    assert all(set(v) == {"brokerOffset", "consumerOffset", "lastTimestamp"} for v in raw["offsetTable"].values())
    rows, tps = bodies.parse_consume_stats(response.body)
    mine = [r for r in rows if r.topic == TOPIC]
    assert [r.queue_id for r in mine] == [0, 1, 2, 3]
    assert sum(r.max_offset for r in mine) == FIRST + LATER and sum(r.consumer_offset for r in mine) == FIRST
    assert sum(r.lag for r in mine) == LATER                      # Diff Total, not 0
    assert all(r.last_timestamp_ms > 0 for r in mine if r.consumer_offset > 0)
    assert tps > 0                                                 # consumed within the last minute
    one = bodies.parse_consume_stats(call(leader, codes.GET_CONSUME_STATS,
                                          {"consumerGroup": GROUP, "topic": TOPIC}).body)[0]
    assert one == mine


def test_consumerProgress_and_consumerConnection_see_a_live_group(seeded):
    leader, namesrv = seeded

    # its own group on an empty topic, so that it consumes nothing the other tests count
    live_topic, live_group = "AdminWireLive", "GID_admin_live"

    async def scenario():
        await create_topic(leader, live_topic, queues=2, timeout_s=10)
        consumer = Consumer(namesrv, live_group, consume_from="first", suspend_timeout_ms=500,
                            client_id="wire-client")
        consumer.subscribe(live_topic, "t || u")
        async with consumer:
            online = await request(leader, codes.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": live_group})
        await asyncio.sleep(0.2)
        offline = await request(leader, codes.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": live_group})
        return online, offline

    online, offline = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert online.code == codes.SUCCESS
    doc = json.loads(online.body)
    (conn,) = doc["connectionSet"]
    assert conn["clientId"] == "wire-client" and conn["language"] == "PYTHON" and isinstance(conn["version"], int)
    assert conn["clientAddr"].startswith("127.")
    assert doc["consumeType"] == "CONSUME_PASSIVELY" and doc["messageModel"] == "CLUSTERING"
    assert doc["subscriptionTable"]["AdminWireLive"]["tagsSet"] == ["t", "u"]
    assert offline.code == codes.CONSUMER_NOT_ONLINE and "GID_admin_live" in offline.remark


def test_statsAll_groups_of_topic_and_broker_stats_data(seeded):
    leader, _ = seeded
    groups = bodies.parse_group_list(call(leader, codes.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": TOPIC}).body)
    assert GROUP in groups
    put = json.loads(call(leader, codes.VIEW_BROKER_STATS_DATA, {"statsName": "TOPIC_PUT_NUMS",
                                                                 "statsKey": TOPIC}).body)
    assert set(put) == {"statsDay", "statsHour", "statsMinute"}
    assert set(put["statsMinute"]) == {"avgpt", "sum", "tps"}
    assert put["statsDay"]["sum"] == FIRST + LATER and put["statsMinute"]["tps"] > 0
    get = json.loads(call(leader, codes.VIEW_BROKER_STATS_DATA, {"statsName": "GROUP_GET_NUMS",
                                                                 "statsKey": f"{TOPIC}@{GROUP}"}).body)
    assert get["statsDay"]["sum"] == FIRST
    unknown = call(leader, codes.VIEW_BROKER_STATS_DATA, {"statsName": "TOPIC_PUT_NUMS", "statsKey": "Nope"})
    assert unknown.code == codes.SYSTEM_ERROR and "not exist" in unknown.remark


def test_getBrokerConfig_is_properties_text(seeded):
    leader, namesrv = seeded
    response = call(leader, codes.GET_BROKER_CONFIG)
    assert response.code == codes.SUCCESS and "version" in response.ext_fields
    props = bodies.parse_properties(response.body)
    assert props["brokerName"] == "broker-a" and props["brokerId"] == "0" and props["namesrvAddr"] == namesrv
    assert props["brokerClusterName"] == "mqbench" and props["flushDiskType"] in ("ASYNC_FLUSH", "SYNC_FLUSH")


def test_topicList_c_and_config_dumps(dump_seeded):
    leader, _ = dump_seeded
    topics = loads_fastjson(call(leader, codes.GET_ALL_TOPIC_CONFIG).body)
    assert topics["topicConfigTable"][DUMP_TOPIC]["readQueueNums"] == 4 and "dataVersion" in topics
    groups = loads_fastjson(call(leader, codes.GET_ALL_SUBSCRIPTIONGROUP_CONFIG).body)
    assert groups["subscriptionGroupTable"][DUMP_GROUP]["groupName"] == DUMP_GROUP
    offsets = loads_fastjson(call(leader, codes.GET_ALL_CONSUMER_OFFSET).body)
    assert sum(offsets["offsetTable"][f"{DUMP_TOPIC}@{DUMP_GROUP}"].values()) == FIRST


def test_queryMsgByKey_finds_the_messages_of_a_key(seeded):
    leader, _ = seeded
    fields = {"topic": TOPIC, "key": "order-7", "maxNum": 32, "beginTimestamp": 0,
              "endTimestamp": int(time.time() * 1000) + 60_000}
    response = call(leader, codes.QUERY_MESSAGE, fields)
    assert response.code == codes.SUCCESS and "indexLastUpdatePhyoffset" in response.ext_fields
    found, size = rec.decode_message(response.body, 0)
    assert size == len(response.body)
    assert found.body == b"m7" and "order-7" in found.keys
    many = call(leader, codes.QUERY_MESSAGE, fields | {"key": "all", "maxNum": 5})
    count, pos = 0, 0
    while pos < len(many.body):
        _msg, size = rec.decode_message(many.body, pos)
        pos, count = pos + size, count + 1
    assert count == 5
    unique = call(leader, codes.QUERY_MESSAGE, fields | {"key": found.properties["UNIQ_KEY"],
                                                         "_UNIQUE_KEY_QUERY": "true"})
    assert unique.code == codes.SUCCESS and rec.decode_message(unique.body, 0)[0].body == b"m7"
    none = call(leader, codes.QUERY_MESSAGE, fields | {"key": "no-such-key"})
    assert none.code == codes.QUERY_NOT_FOUND
    early = call(leader, codes.QUERY_MESSAGE, fields | {"endTimestamp": 1})
    assert early.code == codes.QUERY_NOT_FOUND


def test_refused_request_codes_are_logged_once_per_code(raft3, seeded):
    state, _layout = raft3
    leader, _ = seeded
    for _ in range(3):
        response = call(leader, 999)
        assert response.code == codes.REQUEST_CODE_NOT_SUPPORTED and "999" in response.remark
    logs = [r.log_path for r in state.processes.values() if r.kind == "broker"]
    lines = [line for path in logs for line in open(path, errors="replace") if "UNKNOWN(999)" in line]
    assert len(lines) == 1 and "not supported" in lines[0], lines
