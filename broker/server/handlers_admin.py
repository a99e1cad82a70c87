"""Admin requests: UPDATE_AND_CREATE_TOPIC (17) and GET_BROKER_RUNTIME_INFO (28).

UPDATE_AND_CREATE_TOPIC (RocketMQ ``CreateTopicRequestHeader``): ``topic``, ``readQueueNums``,
``writeQueueNums``, ``perm`` (default 6), ``topicFilterType``, ``topicSysFlag``, ``order`` and, as
in RocketMQ 5, ``attributes`` = ``+key=value,+key2=value2`` (``queue.type=BatchCQ`` makes a batch
topic). Only the leader takes it; the config goes through the Raft log (every replica, and a
future leader, has it) and the broker registers with the name server again at once and answers
once that registration ended (at most ``TOPIC_REGISTER_WAIT_S``), as RocketMQ 4.9's
``updateAndCreateTopic`` registers before it answers: a client that looks the route up after the
answer finds it. Creating an existing topic updates it. A bad name or count: INVALID_PARAMETER 29.

GET_BROKER_RUNTIME_INFO answers a KVTable JSON body ``{"table": {name: string value}}`` with the
keys listed in ``runtime_info`` and ``rocketmq_runtime_fields`` (every value a string, as RocketMQ's).
"""
from __future__ import annotations

import asyncio
import os

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand, parse_java_long
from mqbench.broker.server.handlers import BrokerContext, Refused, log
from mqbench.broker.formats.configs import PERM_READ, PERM_WRITE, TopicConfig
from mqbench.broker.formats.topics import validate_topic

QUEUE_NUMS_MAX = 1024
#: how long UPDATE_AND_CREATE_TOPIC waits for the name server to take the new registration
TOPIC_REGISTER_WAIT_S = 3.0


def parse_attributes(text: str | None) -> dict[str, str]:
    """RocketMQ 5's attribute string ``+a=1,+b=2`` (a leading ``+`` optional) -> {"a": "1", "b": "2"}.
    Deleting (``-a``) is not supported here: Refused naming the entry."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("-"):
            raise Refused(codes.INVALID_PARAMETER, f"attribute {part!r}: removing attributes is not supported")
        key, sep, value = part.lstrip("+").partition("=")
        if not sep or not key.strip() or not value.strip():
            raise Refused(codes.INVALID_PARAMETER, f"attribute {part!r} is not +key=value")
        out[key.strip()] = value.strip()
    return out


def format_attributes(attributes: dict[str, str] | None) -> str:
    """The inverse of ``parse_attributes``: ``{"queue.type": "BatchCQ"}`` -> ``+queue.type=BatchCQ``."""
    return ",".join(f"+{k}={v}" for k, v in sorted((attributes or {}).items()))


def _int_field(ext: dict[str, str], name: str, default: int | None) -> int:
    raw = ext.get(name)
    if raw is None:
        if default is None:
            raise Refused(codes.INVALID_PARAMETER, f"UPDATE_AND_CREATE_TOPIC: missing header field {name!r}")
        return default
    try:
        return parse_java_long(raw, f"UPDATE_AND_CREATE_TOPIC header field {name!r}")
    except Exception as exc:  # noqa: BLE001 - a PeerError naming the field
        raise Refused(codes.INVALID_PARAMETER, str(exc)) from None


def topic_config_from_request(ext: dict[str, str]) -> TopicConfig:
    """The TopicConfig an UPDATE_AND_CREATE_TOPIC header asks for (Refused naming a bad field)."""
    topic = ext.get("topic")
    if topic is None:
        raise Refused(codes.INVALID_PARAMETER, "UPDATE_AND_CREATE_TOPIC: missing header field 'topic'")
    validate_topic(topic)
    read = _int_field(ext, "readQueueNums", None)
    write = _int_field(ext, "writeQueueNums", None)
    for what, n in (("readQueueNums", read), ("writeQueueNums", write)):
        if not 1 <= n <= QUEUE_NUMS_MAX:
            raise Refused(codes.INVALID_PARAMETER, f"topic {topic}: {what} {n} is outside 1..{QUEUE_NUMS_MAX}")
    perm = _int_field(ext, "perm", PERM_READ | PERM_WRITE)
    if not 0 <= perm <= 15:
        raise Refused(codes.INVALID_PARAMETER, f"topic {topic}: perm {perm} is outside 0..15")
    sys_flag = _int_field(ext, "topicSysFlag", 0)
    filter_type = ext.get("topicFilterType") or "SINGLE_TAG"
    if filter_type not in ("SINGLE_TAG", "MULTI_TAG"):
        raise Refused(codes.INVALID_PARAMETER, f"topic {topic}: topicFilterType {filter_type!r} is not "
                                               "SINGLE_TAG or MULTI_TAG")
    return TopicConfig(topic, read, write, perm, topic_filter_type=filter_type, topic_sys_flag=sys_flag,
                       order=ext.get("order", "false").lower() == "true",
                       attributes=parse_attributes(ext.get("attributes")))


async def on_create_topic(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    cfg = topic_config_from_request(cmd.ext_fields)
    ctx.require_leader(f"creating topic {cfg.topic_name}")
    existing = ctx.topic_config(cfg.topic_name)
    if existing is not None:
        cfg.extra = dict(existing.extra)
    await ctx.group.update_topic(cfg)
    log.info("topic %s %s: %d/%d queues, perm %d%s", cfg.topic_name, "updated" if existing else "created",
             cfg.read_queue_nums, cfg.write_queue_nums, cfg.perm,
             f", attributes {format_attributes(cfg.attributes)}" if cfg.attributes else "")
    registered = ctx.topics_changed()
    if registered is not None:      # answer once the name server routes it, as RocketMQ's does
        try:
            await asyncio.wait_for(asyncio.shield(registered), TOPIC_REGISTER_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("topic %s: the name server has not taken the registration after %.0f s; "
                        "answering anyway (it is retried)", cfg.topic_name, TOPIC_REGISTER_WAIT_S)
    return cmd.response_to(codes.SUCCESS)


def _first_attr(obj: object, names: tuple[str, ...]) -> object:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value() if callable(value) else value
    return None


def _directory_bytes(root: os.PathLike) -> int:
    """Bytes the store's files take on disk (allocated blocks, so sparse preallocation is not counted)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def runtime_info(ctx: BrokerContext) -> dict[str, str]:
    """The GET_BROKER_RUNTIME_INFO table.

    Raft: ``raftRole`` (leader|follower|candidate), ``raftTerm``, ``raftLeaderId`` (the leader's
    instance name, or "" when none is known), ``raftCommitIndex``, ``raftBytesSent``,
    ``raftBytesReceived``. Broker: ``brokerName``, ``brokerId``, ``brokerAddr``, ``instance``,
    ``clusterName``, ``storeVersion``, ``bootTimestamp`` (ms), ``putMessageCount`` (messages
    acknowledged since start), ``putRequestCount``, ``pullRequestCount``, ``pullMessageCount``,
    ``refusedRequestCount``, ``topicCount``, ``consumerGroupCount``, ``pullWaiterCount``. Store:
    ``storeBytes`` (disk bytes of the store folder), ``commitLogMinOffset``, ``commitLogMaxOffset``,
    ``writesRefusedReason`` (why writes are refused now, e.g. a full disk; "" when they are not).
    Then whatever ``ctx.runtime_extras`` add (the delay service: ``delayDelivered``,
    ``delayDeadLettered``, ``delayMalformed``, ``delayBadMarkers``, ``delayFailures``).
    """
    group, store = ctx.group, ctx.store
    leader = ctx.leader_instance()
    commit_index = _first_attr(group, ("commit_index", "committed_index"))
    if commit_index is None and getattr(store, "dledger", None) is not None:
        commit_index = store.dledger.committed_index
    sent = _first_attr(group, ("bytes_sent", "raft_bytes_sent"))
    received = _first_attr(group, ("bytes_received", "raft_bytes_received"))
    counters = ctx.counters
    table = {
        "raftRole": ctx.role_name(), "raftTerm": group.term, "raftLeaderId": leader.name if leader else "",
        "raftCommitIndex": commit_index if commit_index is not None else -1,
        "raftBytesSent": sent if sent is not None else 0, "raftBytesReceived": received if received is not None else 0,
        "brokerName": ctx.broker_name, "brokerId": ctx.broker_id(), "brokerAddr": ctx.instance.addr,
        "instance": ctx.instance.name, "clusterName": ctx.layout.cluster, "storeVersion": store.version,
        "bootTimestamp": ctx.started_ms, "putMessageCount": counters.put_message_count,
        "putRequestCount": counters.put_request_count, "pullRequestCount": counters.pull_request_count,
        "pullMessageCount": counters.pull_message_count, "refusedRequestCount": counters.refused_count,
        "topicCount": len(ctx.topic_configs()), "consumerGroupCount": len(ctx.clients.consumers),
        "pullWaiterCount": len(ctx.waiters), "storeBytes": _directory_bytes(store.root),
        "commitLogMinOffset": store.log.min_offset, "commitLogMaxOffset": store.log.end_offset,
    }
    gate = getattr(group, "gate", None)
    table["writesRefusedReason"] = (gate.reason or "") if gate is not None else ""
    for extra in ctx.runtime_extras:
        table.update(extra())
    table.update(rocketmq_runtime_fields(ctx))
    return {k: str(v) for k, v in table.items()}


def _earliest_store_time_ms(ctx: BrokerContext) -> int:
    """Store time of the oldest message still stored (RocketMQ's ``earliestMessageTimeStamp``), -1 if
    none: the first message of every queue (the commitlog of a DLedger store starts with entry
    framing, not a message). Cached until the commitlog's first offset moves (old files deleted)."""
    key = ctx.store.log.min_offset
    cached = ctx.earliest_store_time
    if cached is not None and cached[0] == key and cached[1] >= 0:
        return cached[1]
    earliest = -1
    for topic, cfg in ctx.topic_configs().items():
        for queue_id in range(max(cfg.read_queue_nums, cfg.write_queue_nums)):
            found = ctx.store.read_queue(topic, queue_id, ctx.store.min_offset(topic, queue_id), 1).messages
            if found and (earliest < 0 or found[0].store_timestamp_ms < earliest):
                earliest = found[0].store_timestamp_ms
    ctx.earliest_store_time = (key, earliest)
    return earliest


def _disk(root: os.PathLike) -> tuple[float, int, int]:
    """(used fraction, total bytes, free bytes) of the file system holding ``root``."""
    try:
        st = os.statvfs(root)
    except OSError:
        return -1.0, 0, 0
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    return ((total - free) / total if total else -1.0), total, free


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def rocketmq_runtime_fields(ctx: BrokerContext) -> dict[str, str]:
    """The GET_BROKER_RUNTIME_INFO entries RocketMQ 4.9.8's mqadmin reads (``clusterList``,
    ``clusterList -m``, ``brokerStatus``): ``brokerVersionDesc`` / ``brokerVersion`` (the 4.9.8
    protocol level), ``putTps`` / ``getTransferedTps`` (``"t10 t60 t600"`` msgs/s), the day counters
    ``msgPutTotal*`` / ``msgGetTotal*``, the thread-pool queue sizes and head waits (always 0: this
    broker queues no request for a thread), ``pageCacheLockTimeMills`` (0), ``earliestMessageTimeStamp``,
    ``commitLogDiskRatio`` / ``consumeQueueDiskRatio`` (used fraction of the store's file system),
    ``commitLogDirCapacity``, ``runtime``."""
    from mqbench import __version__
    from mqbench.broker.formats.admin_bodies import ROCKETMQ_VERSION_4_9_8

    now_ms = ctx.clock_ms()
    ratio, total, free = _disk(ctx.store.root)
    up_s = max(0, now_ms - ctx.started_ms) // 1000
    fields = {"brokerVersionDesc": f"mqbench-{__version__}", "brokerVersion": ROCKETMQ_VERSION_4_9_8,
              "earliestMessageTimeStamp": _earliest_store_time_ms(ctx), "commitLogDiskRatio": f"{ratio:.4f}",
              "consumeQueueDiskRatio": f"{ratio:.4f}", "pageCacheLockTimeMills": 0, "dispatchBehindBytes": 0,
              "commitLogDirCapacity": f"Total : {_human_bytes(total)}, Free : {_human_bytes(free)}.",
              "runtime": f"[ {up_s // 86400} days, {up_s // 3600 % 24} hours, {up_s // 60 % 60} minutes, "
                         f"{up_s % 60} seconds ]", "startAcceptSendRequestTimeStamp": 0}
    for pool in ("send", "pull", "query"):
        fields[f"{pool}ThreadPoolQueueSize"] = 0
        fields[f"{pool}ThreadPoolQueueHeadWaitTimeMills"] = 0
    fields.update(ctx.stats.runtime_fields(now_ms))
    return {k: str(v) for k, v in fields.items()}


async def on_runtime_info(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    return cmd.response_to(codes.SUCCESS, body=headers.dump_json_body({"table": runtime_info(ctx)}))


HANDLERS = {
    codes.UPDATE_AND_CREATE_TOPIC: (on_create_topic, codes.INVALID_PARAMETER),
    codes.GET_BROKER_RUNTIME_INFO: (on_runtime_info, codes.SYSTEM_ERROR),
}
