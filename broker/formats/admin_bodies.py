"""Bodies of the admin requests mqadmin (RocketMQ 4.9.8 ``tools``) sends, both ways. Pure code.

The broker writes them (``encode_*``) and mqbench's admin client reads them (``parse_*``) from the
reference broker and from a real RocketMQ broker alike. Java serializes them with fastjson
(``RemotingSerializable.encode``: compact, bean fields in name order); two of them are not JSON:
a map keyed by ``MessageQueue`` is written with each key as an object (``broker.formats.fastjson``
reads and writes that dialect), and the name server's ``brokerAddrs`` has bare integer keys.

=================================  ==================================================================
request (code)                     body (what the Java tools read)
=================================  ==================================================================
GET_BROKER_RUNTIME_INFO (28)       KVTable ``{"table": {name: string}}``
GET_CONSUME_STATS (208)            ConsumeStats ``{"consumeTps": double, "offsetTable": {MessageQueue:
                                   {"brokerOffset", "consumerOffset", "lastTimestamp"}}}``
GET_TOPIC_STATS_INFO (202)         TopicStatsTable ``{"offsetTable": {MessageQueue: {"lastUpdateTimestamp",
                                   "maxOffset", "minOffset"}}}``
GET_CONSUMER_CONNECTION_LIST(203)  ConsumerConnection ``{"connectionSet": [{"clientAddr", "clientId",
                                   "language", "version"}], "consumeFromWhere", "consumeType",
                                   "messageModel", "subscriptionTable": {topic: SubscriptionData}}``
QUERY_TOPIC_CONSUME_BY_WHO (300)   GroupList ``{"groupList": [group]}``
VIEW_BROKER_STATS_DATA (315)       BrokerStatsData ``{"statsDay"|"statsHour"|"statsMinute": {"avgpt",
                                   "sum", "tps"}}``
GET_BROKER_CONFIG (26)             ``java.util.Properties`` text, ``key=value`` lines
GET_BROKER_CLUSTER_INFO (106)      ClusterInfo ``{"brokerAddrTable": {name: {"brokerAddrs": {id: addr},
                                   "brokerName", "cluster"}}, "clusterAddrTable": {cluster: [name]}}``
=================================  ==================================================================

MessageQueue is ``{"brokerName", "queueId", "topic"}``. Parsers raise ``PeerError`` naming the body
when it does not have the shape the Java tools need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mqbench.broker.formats.fastjson import ObjectKey, ObjectKeyMap, dumps_fastjson, loads_fastjson
from mqbench.errors import CorruptDataError, PeerError

#: RocketMQ's MQVersion ordinal of V4_9_8, what the broker announces as ``brokerVersion``.
ROCKETMQ_VERSION_4_9_8 = 409


def _encode(doc: object) -> bytes:
    return dumps_fastjson(doc, pretty=False).encode("utf-8")


def _decode(body: bytes | None, what: str) -> dict[str, Any]:
    if not body:
        raise PeerError(f"{what}: empty body")
    try:
        doc = loads_fastjson(body, where=what)
    except CorruptDataError as exc:
        raise PeerError(f"{what}: {exc}") from None
    if not isinstance(doc, dict):
        raise PeerError(f"{what}: body is not a JSON object")
    return doc


def _queue_key(topic: str, broker_name: str, queue_id: int) -> dict[str, Any]:
    return {"brokerName": broker_name, "queueId": int(queue_id), "topic": topic}


# --- KVTable ---------------------------------------------------------------------------------------

def encode_kv_table(table: dict[str, object]) -> bytes:
    return _encode({"table": {str(k): str(v) for k, v in sorted(table.items())}})


def parse_kv_table(body: bytes | None, what: str = "GET_BROKER_RUNTIME_INFO") -> dict[str, str]:
    table = _decode(body, what).get("table")
    if not isinstance(table, dict):
        raise PeerError(f"{what}: no table")
    return {str(k): str(v) for k, v in table.items()}


# --- ConsumeStats and TopicStatsTable --------------------------------------------------------------

@dataclass(frozen=True)
class QueueOffsets:
    """One row of ConsumeStats (``consumer_offset`` set) or of TopicStatsTable (``min_offset`` set)."""

    topic: str
    broker_name: str
    queue_id: int
    max_offset: int             # brokerOffset / maxOffset: the queue's end
    consumer_offset: int = -1   # ConsumeStats only
    min_offset: int = -1        # TopicStatsTable only
    last_timestamp_ms: int = 0  # store time of the last consumed (ConsumeStats) or last stored message

    @property
    def lag(self) -> int:
        """Messages not yet consumed (brokerOffset - consumerOffset, never negative)."""
        return max(0, self.max_offset - max(self.consumer_offset, 0))


def encode_consume_stats(rows: list[QueueOffsets], consume_tps: float) -> bytes:
    table = ObjectKeyMap((_queue_key(r.topic, r.broker_name, r.queue_id),
                          {"brokerOffset": r.max_offset, "consumerOffset": max(r.consumer_offset, 0),
                           "lastTimestamp": r.last_timestamp_ms}) for r in rows)
    return _encode({"consumeTps": float(consume_tps), "offsetTable": table})


def encode_topic_stats(rows: list[QueueOffsets]) -> bytes:
    table = ObjectKeyMap((_queue_key(r.topic, r.broker_name, r.queue_id),
                          {"lastUpdateTimestamp": r.last_timestamp_ms, "maxOffset": r.max_offset,
                           "minOffset": max(r.min_offset, 0)}) for r in rows)
    return _encode({"offsetTable": table})


def _int(value: object, what: str) -> int:
    """An integral number of a body (fastjson may write a long as 12 or 12.0); PeerError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise PeerError(f"{what}: {value!r} is not an integer")
    return int(value)


def _offset_rows(doc: dict[str, Any], what: str, fields: tuple[str, str, str]) -> list[tuple[ObjectKey, dict[str, Any]]]:
    table = doc.get("offsetTable")
    if not isinstance(table, dict):
        raise PeerError(f"{what}: no offsetTable")
    rows = []
    for key, value in table.items():
        if not isinstance(key, ObjectKey) or not isinstance(value, dict):
            raise PeerError(f"{what}: offsetTable key {key!r} is not a MessageQueue object")
        mq = key.fields()
        if not {"topic", "brokerName", "queueId"} <= set(mq) or not all(isinstance(value.get(f, 0), (int, float))
                                                                           for f in fields):
            raise PeerError(f"{what}: offsetTable entry {mq} lacks topic/brokerName/queueId or numbers")
        rows.append((key, value))
    return rows


def parse_consume_stats(body: bytes | None, what: str = "GET_CONSUME_STATS") -> tuple[list[QueueOffsets], float]:
    """(rows sorted by topic, broker, queue; consumeTps)."""
    doc = _decode(body, what)
    rows = []
    for key, value in _offset_rows(doc, what, ("brokerOffset", "consumerOffset", "lastTimestamp")):
        mq = key.fields()
        rows.append(QueueOffsets(str(mq["topic"]), str(mq["brokerName"]), _int(mq["queueId"], what),
                                 _int(value.get("brokerOffset", 0), what),
                                 consumer_offset=_int(value.get("consumerOffset", 0), what),
                                 last_timestamp_ms=_int(value.get("lastTimestamp", 0), what)))
    tps = doc.get("consumeTps", 0.0)
    rows.sort(key=lambda r: (r.topic, r.broker_name, r.queue_id))
    return rows, float(tps if isinstance(tps, (int, float)) else 0)


def parse_topic_stats(body: bytes | None, what: str = "GET_TOPIC_STATS_INFO") -> list[QueueOffsets]:
    doc = _decode(body, what)
    rows = []
    for key, value in _offset_rows(doc, what, ("maxOffset", "minOffset", "lastUpdateTimestamp")):
        mq = key.fields()
        rows.append(QueueOffsets(str(mq["topic"]), str(mq["brokerName"]), _int(mq["queueId"], what),
                                 _int(value.get("maxOffset", 0), what), min_offset=_int(value.get("minOffset", 0), what),
                                 last_timestamp_ms=_int(value.get("lastUpdateTimestamp", 0), what)))
    return sorted(rows, key=lambda r: (r.topic, r.broker_name, r.queue_id))


# --- ConsumerConnection, GroupList, BrokerStatsData, Properties --------------------------------------

def encode_consumer_connection(connections: list[dict[str, Any]], subscriptions: dict[str, dict[str, Any]], *,
                               consume_type: str = "CONSUME_PASSIVELY", message_model: str = "CLUSTERING",
                               consume_from_where: str = "CONSUME_FROM_LAST_OFFSET") -> bytes:
    """``connections``: {"clientAddr", "clientId", "language" (LanguageCode name), "version" (int)}."""
    conns = [{k: c[k] for k in ("clientAddr", "clientId", "language", "version")} for c in connections]
    return _encode({"connectionSet": conns, "consumeFromWhere": consume_from_where, "consumeType": consume_type,
                    "messageModel": message_model, "subscriptionTable": dict(sorted(subscriptions.items()))})


def parse_consumer_connection(body: bytes | None, what: str = "GET_CONSUMER_CONNECTION_LIST") -> dict[str, Any]:
    """``{"connections": [{"clientId", "clientAddr", "language", "version"}], "consume_type",
    "message_model", "consume_from_where", "topics": [...]}``."""
    doc = _decode(body, what)
    conns = doc.get("connectionSet") or []
    if not isinstance(conns, list) or not all(isinstance(c, dict) for c in conns):
        raise PeerError(f"{what}: connectionSet is not a list of objects")
    return {"connections": [{"clientId": str(c.get("clientId", "")), "clientAddr": str(c.get("clientAddr", "")),
                             "language": str(c.get("language", "")), "version": c.get("version", 0)} for c in conns],
            "consume_type": str(doc.get("consumeType", "")), "message_model": str(doc.get("messageModel", "")),
            "consume_from_where": str(doc.get("consumeFromWhere", "")),
            "topics": sorted(str(t) for t in (doc.get("subscriptionTable") or {}))}


def encode_group_list(groups: Iterable[str]) -> bytes:
    return _encode({"groupList": sorted(groups)})


def parse_group_list(body: bytes | None, what: str = "QUERY_TOPIC_CONSUME_BY_WHO") -> list[str]:
    groups = _decode(body, what).get("groupList")
    if not isinstance(groups, list):
        raise PeerError(f"{what}: no groupList")
    return sorted(str(g) for g in groups)


def encode_broker_stats_data(minute: dict[str, Any], hour: dict[str, Any], day: dict[str, Any]) -> bytes:
    """Each of ``minute``/``hour``/``day``: {"sum": int, "tps": float, "avgpt": float}."""
    def item(d: dict[str, Any]) -> dict[str, Any]:
        return {"avgpt": float(d["avgpt"]), "sum": int(d["sum"]), "tps": float(d["tps"])}
    return _encode({"statsDay": item(day), "statsHour": item(hour), "statsMinute": item(minute)})


def encode_properties(config: dict[str, object]) -> bytes:
    """``key=value`` lines, as ``MixAll.properties2String`` writes them (read with Properties.load)."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("=", "\\=").replace(":", "\\:")
    return "".join(f"{esc(str(k))}={esc(str(v))}\n" for k, v in sorted(config.items())).encode("utf-8")


def parse_properties(body: bytes | None) -> dict[str, str]:
    """Java Properties text -> dict (``#`` comments, ``=``/``:`` separators, backslash escapes)."""
    out: dict[str, str] = {}
    for raw in (body or b"").decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, value, i = [], None, 0
        while i < len(line):
            c = line[i]
            if c == "\\" and i + 1 < len(line):
                key.append({"n": "\n", "t": "\t"}.get(line[i + 1], line[i + 1]))
                i += 2
                continue
            if c in "=:" and value is None:
                value = _unescape(line[i + 1:].lstrip())
                break
            key.append(c)
            i += 1
        out["".join(key).strip()] = value if value is not None else ""
    return out


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append({"n": "\n", "t": "\t"}.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --- ClusterInfo (name server) ----------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterBroker:
    cluster: str
    broker_name: str
    addrs: dict[int, str]  # brokerId -> "ip:port"; 0 is the master (the Raft leader on ours)


def parse_cluster_info(body: bytes | None, what: str = "GET_BROKER_CLUSTER_INFO") -> list[ClusterBroker]:
    """Every broker name the name server knows, sorted by cluster and name."""
    doc = _decode(body, what)
    table = doc.get("brokerAddrTable") or {}
    clusters = doc.get("clusterAddrTable") or {}
    if not isinstance(table, dict) or not isinstance(clusters, dict):
        raise PeerError(f"{what}: brokerAddrTable/clusterAddrTable are not objects")
    cluster_of = {str(name): str(cluster) for cluster, names in clusters.items() for name in (names or [])}
    out = []
    for name, data in table.items():
        if not isinstance(data, dict):
            raise PeerError(f"{what}: broker {name!r} is not an object")
        try:
            addrs = {int(k): str(v) for k, v in (data.get("brokerAddrs") or {}).items()}
        except (TypeError, ValueError):
            raise PeerError(f"{what}: broker {name!r} has a non-numeric brokerId") from None
        out.append(ClusterBroker(str(data.get("cluster") or cluster_of.get(str(name), "")), str(name), addrs))
    return sorted(out, key=lambda b: (b.cluster, b.broker_name))
