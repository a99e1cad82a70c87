"""What RocketMQ 4.9.8's mqadmin asks a broker for its everyday verbs (``consumerProgress``,
``consumerConnection``, ``topicStatus``, ``statsAll``, ``topicList -c``, ``getBrokerConfig``,
``queryMsgByKey``), answered as ``AdminBrokerProcessor`` / ``QueryMessageProcessor`` do; body shapes
in ``remoting.admin_bodies``.

=======================================  =============================================================
request (code), header                   answer
=======================================  =============================================================
GET_CONSUME_STATS (208) consumerGroup,   per topic (the one asked, else every topic the group has
topic?                                   offsets for or subscribes to) and read queue: brokerOffset
                                         (queue max), consumerOffset (committed, 0 if none),
                                         lastTimestamp (store time of the last consumed message);
                                         consumeTps = the group's last-minute get rate. A topic the
                                         group's live subscriptions do not name is left out.
GET_TOPIC_STATS_INFO (202) topic         per write queue min/max offset and the store time of the
                                         last message; TOPIC_NOT_EXIST 17 for an unknown topic
GET_CONSUMER_CONNECTION_LIST (203)       the group's live clients (id, address, language, version),
consumerGroup                            subscriptions, consume type and model; CONSUMER_NOT_ONLINE
                                         206 when none is connected here
QUERY_TOPIC_CONSUME_BY_WHO (300) topic   groups that subscribe to it or have offsets on it
VIEW_BROKER_STATS_DATA (315) statsName,  minute/hour/day sum, tps, avgpt (``server.stats``);
statsKey                                 SYSTEM_ERROR "The stats <n> <k> not exist" otherwise
GET_BROKER_CONFIG (26)                   Properties text of this broker's settings; header version
GET_ALL_TOPIC_CONFIG (21)                TopicConfigSerializeWrapper (the store's topics.json)
GET_ALL_CONSUMER_OFFSET (43)             ConsumerOffsetManager JSON (the store's consumerOffset.json)
GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201)   SubscriptionGroupWrapper: a default config for every group
                                         known here (offsets or heartbeats)
QUERY_MESSAGE (12) topic, key, maxNum,   stored-message records of the topic whose KEYS (or, with
beginTimestamp, endTimestamp             ``_UNIQUE_KEY_QUERY=true``, UNIQ_KEY) hold ``key``, stored
                                         within the time range; QUERY_NOT_FOUND 22 when none
=======================================  =============================================================

QUERY_MESSAGE without an index: the reference store keeps no key index (RocketMQ's ``index/``
files), so the broker scans the topic's queues from the first message stored at or after
``beginTimestamp`` (binary search by store time) up to ``QUERY_SCAN_MESSAGES_MAX`` messages per
request, yielding to the event loop between chunks; the answer's ``indexLastUpdatePhyoffset`` is
the commitlog end. A key whose messages lie beyond that scan budget is not found: narrow the range.
The offset reads (GET_CONSUME_STATS, GET_TOPIC_STATS_INFO, GET_ALL_CONSUMER_OFFSET) wait for the
replica to be readable like every read (``BrokerContext.require_readable``: SYSTEM_BUSY 2 after a
bounded wait), so they never show offsets older than ones already shown.
"""
from __future__ import annotations

import asyncio

from mqbench.broker.formats import admin_bodies as bodies
from mqbench.broker.formats import codes
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand, parse_java_long
from mqbench.broker.formats.headers import HeaderError, dump_json_body, parse_tag_expression
from mqbench.broker.server.handlers import BrokerContext, Refused
from mqbench.broker.server.handlers_offsets import offset_by_time
from mqbench.broker.formats import configs
from mqbench.broker.formats import record as rec
from mqbench.broker.formats.tags import java_hash
from mqbench.broker.formats.topics import validate_group, validate_topic
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY

QUERY_SCAN_MESSAGES_MAX = 200_000
QUERY_SCAN_CHUNK = 256
QUERY_RESULTS_MAX = 64          # RocketMQ's maxMsgsNumBatch
UNIQUE_KEY_QUERY = "_UNIQUE_KEY_QUERY"


def _required(cmd: RemotingCommand, name: str) -> str:
    value = cmd.ext_fields.get(name)
    if value is None or value == "":
        raise Refused(codes.INVALID_PARAMETER, f"{codes.request_name(cmd.code)}: missing header field {name!r}")
    return value


def _long(cmd: RemotingCommand, name: str, default: int) -> int:
    raw = cmd.ext_fields.get(name)
    return default if raw in (None, "") else parse_java_long(raw, f"header field {name!r}", HeaderError)


def _store_time(ctx: BrokerContext, topic: str, queue_id: int, offset: int) -> int:
    if offset < 0:
        return 0
    found = ctx.store.read_queue(topic, queue_id, offset, 1).messages
    return found[0].store_timestamp_ms if found else 0


def _group_topics(ctx: BrokerContext, group: str) -> set[str]:
    topics = {t for (t, g) in ctx.store.meta.offsets.offsets if g == group}
    info = ctx.clients.consumers.get(group)
    return topics | set(info.subscriptions if info is not None else ())


def consume_stats(ctx: BrokerContext, group: str, topic: str | None) -> tuple[list[bodies.QueueOffsets], float]:
    """GET_CONSUME_STATS rows and consumeTps (module table)."""
    now_ms = ctx.clock_ms()
    info = ctx.clients.consumers.get(group)
    live_subscriptions = set(info.subscriptions) if info is not None and info.clients else set()
    rows, tps = [], 0.0
    for name in sorted({topic} if topic else _group_topics(ctx, group)):
        cfg = ctx.topic_config(name)
        if cfg is None or (live_subscriptions and name not in live_subscriptions):
            continue
        for queue_id in range(cfg.read_queue_nums):
            committed = ctx.store.query_offset(group, name, queue_id)
            rows.append(bodies.QueueOffsets(name, ctx.broker_name, queue_id, ctx.store.max_offset(name, queue_id),
                                            consumer_offset=max(committed, 0),
                                            last_timestamp_ms=_store_time(ctx, name, queue_id, committed - 1)))
        tps += ctx.stats.group_get_tps(name, group, now_ms)
    return rows, tps


async def on_consume_stats(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    group = validate_group(_required(cmd, "consumerGroup"))
    topic = cmd.ext_fields.get("topic") or None
    if topic is not None:
        validate_topic(topic)
    await ctx.require_readable("GET_CONSUME_STATS")
    rows, tps = consume_stats(ctx, group, topic)
    return cmd.response_to(codes.SUCCESS, body=bodies.encode_consume_stats(rows, tps))


async def on_topic_stats(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    topic = validate_topic(_required(cmd, "topic"))
    await ctx.require_readable("GET_TOPIC_STATS_INFO")
    cfg = ctx.topic_config(topic)
    if cfg is None:
        raise Refused(codes.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
    rows = []
    for queue_id in range(cfg.write_queue_nums):
        hi = ctx.store.max_offset(topic, queue_id)
        rows.append(bodies.QueueOffsets(topic, ctx.broker_name, queue_id, hi,
                                        min_offset=ctx.store.min_offset(topic, queue_id),
                                        last_timestamp_ms=_store_time(ctx, topic, queue_id, hi - 1)))
    return cmd.response_to(codes.SUCCESS, body=bodies.encode_topic_stats(rows))


def _subscription_data(topic: str, expression: str) -> dict:
    tags = sorted(parse_tag_expression(expression) or ())
    return {"classFilterMode": False, "codeSet": [java_hash(t) for t in tags], "expressionType": "TAG",
            "subString": expression, "subVersion": 0, "tagsSet": tags, "topic": topic}


async def on_consumer_connections(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    group = validate_group(_required(cmd, "consumerGroup"))
    live = ctx.clients.consumer_ids(group, ctx.monotonic_ms())
    info = ctx.clients.consumers.get(group)
    if not live or info is None:
        raise Refused(codes.CONSUMER_NOT_ONLINE, f"the consumer group[{group}] not online")
    connections = []
    for client_id in live:
        conn = info.channels.get(client_id)
        attributes = getattr(conn, "attributes", {})
        connections.append({"clientId": client_id, "clientAddr": getattr(conn, "peer", ""),
                            "language": attributes.get("language", "OTHER"), "version": attributes.get("version", 0)})
    subscriptions = {t: _subscription_data(t, e) for t, e in info.subscriptions.items()}
    body = bodies.encode_consumer_connection(connections, subscriptions, consume_type=info.consume_type,
                                             message_model=info.message_model,
                                             consume_from_where=info.consume_from_where)
    return cmd.response_to(codes.SUCCESS, body=body)


async def on_consume_by_who(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    topic = validate_topic(_required(cmd, "topic"))
    groups = {g for g, info in ctx.clients.consumers.items() if topic in info.subscriptions}
    groups |= {g for (t, g) in ctx.store.meta.offsets.offsets if t == topic}
    return cmd.response_to(codes.SUCCESS, body=bodies.encode_group_list(groups))


async def on_view_stats(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    name, key = _required(cmd, "statsName"), _required(cmd, "statsKey")
    view = ctx.stats.view(name, key, ctx.clock_ms())
    if view is None:
        raise Refused(codes.SYSTEM_ERROR, f"The stats <{name}> <{key}> not exist")
    return cmd.response_to(codes.SUCCESS, body=bodies.encode_broker_stats_data(view["minute"], view["hour"],
                                                                             view["day"]))


def broker_config(ctx: BrokerContext) -> dict[str, object]:
    """GET_BROKER_CONFIG's properties: RocketMQ's names where one means the same thing."""
    durability = ctx.settings.get("durability", "memory")
    peers = ";".join(f"n{p}-{i.address}:{i.raft_port}" for p, i in enumerate(ctx.peers))
    return {"brokerClusterName": ctx.layout.cluster, "brokerName": ctx.broker_name, "brokerId": ctx.broker_id(),
            "brokerIP1": ctx.instance.address, "listenPort": ctx.instance.port, "namesrvAddr": ctx.layout.namesrv_addr,
            "storePathRootDir": ctx.settings.get("storePathRootDir", str(ctx.store.root)),
            "flushDiskType": "SYNC_FLUSH" if durability == "fsync" else "ASYNC_FLUSH",
            "enableDLegerCommitLog": "true", "dLegerGroup": ctx.broker_name, "dLegerPeers": peers,
            "dLegerSelfId": f"n{ctx.replica_index}", "autoCreateTopicEnable": "true",
            "defaultTopicQueueNums": 4, "maxMessageSize": ctx.message_bytes_max,
            "mqbenchDurability": durability, "mqbenchStoreVersion": ctx.settings.get("storeVersion", ctx.store.version),
            "mqbenchInstance": ctx.instance.name, "mqbenchRaftPort": ctx.instance.raft_port}


async def on_broker_config(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    version = configs.DataVersion(timestamp_ms=ctx.started_ms, counter=0).to_json("v4")
    return cmd.response_to(codes.SUCCESS, None, {"version": dump_json_body(version).decode()},
                           bodies.encode_properties(broker_config(ctx)))


async def on_all_topic_config(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    text = configs.dump_topics_json(ctx.store.meta.topics, ctx.store.version, pretty=False)
    return cmd.response_to(codes.SUCCESS, body=text.encode("utf-8"))


async def on_all_consumer_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    await ctx.require_readable("GET_ALL_CONSUMER_OFFSET")
    text = configs.dump_consumer_offsets_json(ctx.store.meta.offsets, ctx.store.version, pretty=False)
    return cmd.response_to(codes.SUCCESS, body=text.encode("utf-8"))


async def on_all_subscription_groups(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    names = {g for (_t, g) in ctx.store.meta.offsets.offsets} | set(ctx.clients.consumers)
    groups = {name: configs.SubscriptionGroupConfig(name) for name in sorted(names)}
    text = configs.dump_subscription_groups_json(groups, ctx.store.version, pretty=False)
    return cmd.response_to(codes.SUCCESS, body=text.encode("utf-8"))


async def query_messages(ctx: BrokerContext, topic: str, key: str, *, unique: bool, max_num: int,
                         begin_ms: int, end_ms: int) -> list[bytes]:
    """Records of ``topic`` whose KEYS (or UNIQ_KEY when ``unique``) hold ``key``, stored in
    [begin_ms, end_ms], at most ``max_num``, scanning at most QUERY_SCAN_MESSAGES_MAX messages."""
    cfg = ctx.topic_config(topic)
    if cfg is None:
        return []
    found: list[bytes] = []
    budget = QUERY_SCAN_MESSAGES_MAX
    for queue_id in range(cfg.read_queue_nums):
        offset = offset_by_time(ctx.store, topic, queue_id, begin_ms)
        while budget > 0 and len(found) < max_num:
            result = ctx.store.read_queue(topic, queue_id, offset, min(QUERY_SCAN_CHUNK, budget))
            if not result.messages:
                break
            budget -= len(result.messages)
            offset = result.next_offset
            past_end = False
            for msg in result.messages:
                if msg.store_timestamp_ms > end_ms:
                    past_end = True
                    break
                hit = msg.properties.get(PROPERTY_UNIQ_KEY) == key if unique else key in msg.keys
                if hit:
                    found.append(rec.encode_message(msg))
                    if len(found) >= max_num:
                        break
            if past_end:
                break
            await asyncio.sleep(0)   # a long scan must not hold up the broker's other requests
    return found


async def on_query_message(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    topic = validate_topic(_required(cmd, "topic"))
    key = _required(cmd, "key")
    max_num = max(1, min(_long(cmd, "maxNum", 32), QUERY_RESULTS_MAX))
    begin_ms, end_ms = _long(cmd, "beginTimestamp", 0), _long(cmd, "endTimestamp", 1 << 62)
    unique = cmd.ext_fields.get(UNIQUE_KEY_QUERY, "false").lower() == "true"
    records = await query_messages(ctx, topic, key, unique=unique, max_num=max_num, begin_ms=begin_ms, end_ms=end_ms)
    fields = {"indexLastUpdateTimestamp": ctx.clock_ms(), "indexLastUpdatePhyoffset": ctx.store.log.end_offset}
    if not records:
        return cmd.response_to(codes.QUERY_NOT_FOUND, "can not find message, maybe time range not correct", fields)
    return cmd.response_to(codes.SUCCESS, None, fields, b"".join(records))


HANDLERS = {
    codes.GET_CONSUME_STATS: (on_consume_stats, codes.INVALID_PARAMETER),
    codes.GET_TOPIC_STATS_INFO: (on_topic_stats, codes.INVALID_PARAMETER),
    codes.GET_CONSUMER_CONNECTION_LIST: (on_consumer_connections, codes.INVALID_PARAMETER),
    codes.QUERY_TOPIC_CONSUME_BY_WHO: (on_consume_by_who, codes.INVALID_PARAMETER),
    codes.VIEW_BROKER_STATS_DATA: (on_view_stats, codes.INVALID_PARAMETER),
    codes.GET_BROKER_CONFIG: (on_broker_config, codes.SYSTEM_ERROR),
    codes.GET_ALL_TOPIC_CONFIG: (on_all_topic_config, codes.SYSTEM_ERROR),
    codes.GET_ALL_CONSUMER_OFFSET: (on_all_consumer_offset, codes.SYSTEM_ERROR),
    codes.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: (on_all_subscription_groups, codes.SYSTEM_ERROR),
    codes.QUERY_MESSAGE: (on_query_message, codes.INVALID_PARAMETER),
}
