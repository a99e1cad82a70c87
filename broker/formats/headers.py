"""Typed custom headers: the ``extFields`` of the requests and responses mqbench sends and serves.

Each header is a dataclass whose fields are declared with their wire names (RocketMQ's
``protocol/header/*RequestHeader.java`` field names). ``from_ext(ext)`` parses a received
``extFields`` map the way RocketMQ's ``decodeCommandCustomHeader`` does (missing required field,
non-integer number: ``HeaderError`` naming the field); ``to_ext()`` gives the string map to send.

SEND_MESSAGE (10) uses the long names; SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) use the
one-letter names of ``SendMessageRequestHeaderV2`` (a producerGroup, b topic, c defaultTopic,
d defaultTopicQueueNums, e queueId, f sysFlag, g bornTimestamp, h flag, i properties,
j reconsumeTimes, k unitMode, l maxReconsumeTimes, m batch, n brokerName). ``send_header(cmd)``
picks the right one by request code.

JSON bodies that go with these requests (heartbeat, consumer list, route data, broker
registration) have small parse/build helpers here too; they raise ``HeaderError`` on bad input.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Self, Sequence

from mqbench import native
from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, java_string, parse_java_long
from mqbench.errors import PeerError


class HeaderError(PeerError):
    """A request's custom header or JSON body is malformed. The server answers it with an error
    response and keeps the connection: the framing is intact."""


def _wire(name: str, default: Any = MISSING) -> Any:
    """A header field sent as ``name`` on the wire; fields with a default are optional."""
    if default is MISSING:
        return field(metadata={"wire": name})
    return field(default=default, metadata={"wire": name})


class _Header:
    """Base of the header dataclasses: parsing from and rendering to ``extFields``.

    The field table (name, wire name, kind, required, default) is built once per class and wire-name
    map (``_spec``): a send parses one header per message, and reading the dataclass fields and their
    type strings for each request cost more than the parse itself."""

    REQUEST: ClassVar[str] = "header"
    _SPECS: ClassVar[dict[tuple[type, int], tuple[Any, tuple[tuple[str, str, str, bool, Any], ...]]]] = {}

    @classmethod
    def _spec(cls, wire_names: dict[str, str] | None) -> tuple[tuple[str, str, str, bool, Any], ...]:
        key = (cls, id(wire_names) if wire_names else 0)
        cached = _Header._SPECS.get(key)
        if cached is None:
            rows = []
            for f in fields(cls):  # type: ignore[arg-type]
                type_name = str(f.type)
                kind = "int" if type_name.startswith("int") else "bool" if type_name.startswith("bool") else "str"
                rows.append((f.name, (wire_names or {}).get(f.name, f.metadata["wire"]), kind,
                             f.default is MISSING, f.default))
            # the map is kept with its table so that its id cannot be reused by another dict
            cached = _Header._SPECS[key] = (wire_names, tuple(rows))
        return cached[1]

    @classmethod
    def from_ext(cls, ext: dict[str, str], *, wire_names: dict[str, str] | None = None) -> Self:
        values: dict[str, Any] = {}
        get = ext.get
        for name, wire, kind, required, _ in cls._spec(wire_names):
            raw = get(wire)
            if raw is None:
                if required:
                    raise HeaderError(f"{cls.REQUEST}: missing header field {wire!r}"
                                      + (f" ({name})" if wire != name else ""))
                continue
            if kind == "str":
                values[name] = raw
            elif kind == "int":
                # the common case (plain digits, well inside a long) without the regex of parse_java_long
                values[name] = (int(raw) if raw.isdigit() and raw.isascii() and len(raw) < 19
                                else parse_java_long(raw, f"{cls.REQUEST} header field {wire!r}", HeaderError))
            else:
                values[name] = raw.lower() == "true"  # Boolean.parseBoolean
        return cls(**values)

    def to_ext(self, *, wire_names: dict[str, str] | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, wire, _kind, _, _ in self._spec(wire_names):
            value = getattr(self, name)
            if value is not None:
                out[wire] = value if type(value) is str else java_string(value)
        return out


# --- send ---------------------------------------------------------------------------------------

@dataclass
class SendMessageHeader(_Header):
    """SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request header."""

    REQUEST: ClassVar[str] = "SEND_MESSAGE"
    producer_group: str = _wire("producerGroup")
    topic: str = _wire("topic")
    default_topic: str = _wire("defaultTopic", codes.DEFAULT_TOPIC)
    default_topic_queue_nums: int = _wire("defaultTopicQueueNums", 4)
    queue_id: int = _wire("queueId", 0)
    sys_flag: int = _wire("sysFlag", 0)
    born_timestamp_ms: int = _wire("bornTimestamp", 0)
    flag: int = _wire("flag", 0)
    properties: str | None = _wire("properties", None)
    reconsume_times: int | None = _wire("reconsumeTimes", None)
    unit_mode: bool | None = _wire("unitMode", None)
    max_reconsume_times: int | None = _wire("maxReconsumeTimes", None)
    batch: bool | None = _wire("batch", None)
    broker_name: str | None = _wire("brokerName", None)

    #: SendMessageRequestHeaderV2's one-letter names.
    V2_NAMES: ClassVar[dict[str, str]] = {
        "producer_group": "a", "topic": "b", "default_topic": "c", "default_topic_queue_nums": "d",
        "queue_id": "e", "sys_flag": "f", "born_timestamp_ms": "g", "flag": "h", "properties": "i",
        "reconsume_times": "j", "unit_mode": "k", "max_reconsume_times": "l", "batch": "m", "broker_name": "n",
    }

    @classmethod
    def from_v2(cls, ext: dict[str, str]) -> "SendMessageHeader":
        return cls.from_ext(ext, wire_names=cls.V2_NAMES)

    def to_v2(self) -> dict[str, str]:
        return self.to_ext(wire_names=self.V2_NAMES)


def send_header(cmd: RemotingCommand) -> SendMessageHeader:
    """The send header of a SEND_MESSAGE (long names) or SEND_MESSAGE_V2/SEND_BATCH_MESSAGE (short names;
    a SEND_BATCH_MESSAGE with long names, as some non-Java clients send, is read too)."""
    if cmd.code == codes.SEND_MESSAGE_V2:
        return send_header_v2(cmd.ext_fields)
    if cmd.code == codes.SEND_MESSAGE and _sendpath is not None and type(cmd.ext_fields) is dict:
        header: SendMessageHeader | None = _sendpath.send_header_v2(cmd.ext_fields, SendMessageHeader,
                                                                    codes.DEFAULT_TOPIC, _LONG_NAMES)
        if header is not None:          # from_ext's values, in C (_sendpath.c)
            return header
    if cmd.code == codes.SEND_BATCH_MESSAGE and ("b" in cmd.ext_fields or "topic" not in cmd.ext_fields):
        return send_header_v2(cmd.ext_fields)  # Java sends V2 (from_v2's result); a long-name batch header also parses
    return SendMessageHeader.from_ext(cmd.ext_fields)


def _long_or(raw: str | None, default: Any, wire: str) -> Any:
    if raw is None:
        return default
    if raw.isdigit() and raw.isascii() and len(raw) < 19:
        return int(raw)
    return parse_java_long(raw, f"{SendMessageHeader.REQUEST} header field {wire!r}", HeaderError)


_sendpath = native.load("mqbench.broker.formats._sendpath")
#: SendMessageHeader's long wire names (SEND_MESSAGE), in field order: the C parser's key table
_LONG_NAMES = tuple(wire for _, wire, _, _, _ in SendMessageHeader._spec(None))


def send_header_v2(ext: dict[str, str]) -> SendMessageHeader:
    """``SendMessageHeader.from_v2(ext)``, the same fields, defaults and errors (tested), with the
    fields read directly: the broker parses one per message sent. In C (``_sendpath``) when every
    value is a string and every number plain digits; this code decides the rest."""
    if _sendpath is not None and type(ext) is dict:
        header: SendMessageHeader | None = _sendpath.send_header_v2(ext, SendMessageHeader, codes.DEFAULT_TOPIC)
        if header is not None:
            return header
    return _send_header_v2(ext)


def _send_header_v2(ext: dict[str, str]) -> SendMessageHeader:
    get = ext.get
    group, topic = get("a"), get("b")
    if group is None or topic is None:
        return SendMessageHeader.from_v2(ext)     # the table's walk names the missing field
    unit_mode, batch = get("k"), get("m")
    return SendMessageHeader(group, topic, get("c", codes.DEFAULT_TOPIC), _long_or(get("d"), 4, "d"),
                             _long_or(get("e"), 0, "e"), _long_or(get("f"), 0, "f"), _long_or(get("g"), 0, "g"),
                             _long_or(get("h"), 0, "h"), get("i"), _long_or(get("j"), None, "j"),
                             None if unit_mode is None else unit_mode.lower() == "true",
                             _long_or(get("l"), None, "l"), None if batch is None else batch.lower() == "true",
                             get("n"))


@dataclass
class SendMessageResponseHeader(_Header):
    REQUEST: ClassVar[str] = "SEND_MESSAGE response"
    msg_id: str = _wire("msgId")
    queue_id: int = _wire("queueId")
    queue_offset: int = _wire("queueOffset")
    transaction_id: str | None = _wire("transactionId", None)
    batch_uniq_id: str | None = _wire("batchUniqId", None)


# --- pull ---------------------------------------------------------------------------------------

@dataclass
class PullMessageHeader(_Header):
    REQUEST: ClassVar[str] = "PULL_MESSAGE"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    queue_offset: int = _wire("queueOffset")
    max_msg_nums: int = _wire("maxMsgNums")
    sys_flag: int = _wire("sysFlag")
    commit_offset: int = _wire("commitOffset")
    suspend_timeout_ms: int = _wire("suspendTimeoutMillis")
    subscription: str | None = _wire("subscription", None)
    sub_version: int = _wire("subVersion", 0)
    expression_type: str | None = _wire("expressionType", None)
    max_msg_bytes: int | None = _wire("maxMsgBytes", None)
    # mqbench's: the client unwraps inner batches itself, so a BatchCQ queue's records may be sent as
    # stored (RocketMQ 5's pull; handlers_pull). RocketMQ ignores fields it does not know.
    inner_batch_as_stored: bool | None = _wire("innerBatchAsStored", None)


@dataclass
class PullMessageResponseHeader(_Header):
    REQUEST: ClassVar[str] = "PULL_MESSAGE response"
    suggest_which_broker_id: int = _wire("suggestWhichBrokerId", 0)
    next_begin_offset: int = _wire("nextBeginOffset", 0)
    min_offset: int = _wire("minOffset", 0)
    max_offset: int = _wire("maxOffset", 0)


# --- offsets ------------------------------------------------------------------------------------

@dataclass
class QueryConsumerOffsetHeader(_Header):
    REQUEST: ClassVar[str] = "QUERY_CONSUMER_OFFSET"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    set_zero_if_not_found: bool | None = _wire("setZeroIfNotFound", None)


@dataclass
class UpdateConsumerOffsetHeader(_Header):
    REQUEST: ClassVar[str] = "UPDATE_CONSUMER_OFFSET"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    commit_offset: int = _wire("commitOffset")


@dataclass
class QueueOffsetHeader(_Header):
    """GET_MAX_OFFSET / GET_MIN_OFFSET / GET_EARLIEST_MSG_STORETIME request (topic, queueId)."""

    REQUEST: ClassVar[str] = "GET_MAX_OFFSET/GET_MIN_OFFSET"
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")


@dataclass
class SearchOffsetHeader(_Header):
    REQUEST: ClassVar[str] = "SEARCH_OFFSET_BY_TIMESTAMP"
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    timestamp_ms: int = _wire("timestamp")


@dataclass
class OffsetResponseHeader(_Header):
    REQUEST: ClassVar[str] = "offset response"
    offset: int = _wire("offset")


# --- clients ------------------------------------------------------------------------------------

@dataclass
class UnregisterClientHeader(_Header):
    REQUEST: ClassVar[str] = "UNREGISTER_CLIENT"
    client_id: str = _wire("clientID")
    producer_group: str | None = _wire("producerGroup", None)
    consumer_group: str | None = _wire("consumerGroup", None)


@dataclass
class ConsumerGroupHeader(_Header):
    """GET_CONSUMER_LIST_BY_GROUP and NOTIFY_CONSUMER_IDS_CHANGED request header."""

    REQUEST: ClassVar[str] = "GET_CONSUMER_LIST_BY_GROUP"
    consumer_group: str = _wire("consumerGroup")


# --- name server --------------------------------------------------------------------------------

@dataclass
class GetRouteInfoHeader(_Header):
    REQUEST: ClassVar[str] = "GET_ROUTEINFO_BY_TOPIC"
    topic: str = _wire("topic")
    accept_standard_json_only: bool | None = _wire("acceptStandardJsonOnly", None)


@dataclass
class RegisterBrokerHeader(_Header):
    """REGISTER_BROKER request. ``raft_term`` is mqbench's addition: the Raft term in which the
    registering replica holds the role it registers with (absent from real RocketMQ brokers)."""

    REQUEST: ClassVar[str] = "REGISTER_BROKER"
    broker_name: str = _wire("brokerName")
    broker_addr: str = _wire("brokerAddr")
    cluster_name: str = _wire("clusterName")
    broker_id: int = _wire("brokerId")
    ha_server_addr: str = _wire("haServerAddr", "")
    heartbeat_timeout_ms: int | None = _wire("heartbeatTimeoutMillis", None)
    compressed: bool | None = _wire("compressed", None)
    body_crc32: int | None = _wire("bodyCrc32", None)
    raft_term: int | None = _wire("raftTerm", None)


@dataclass
class UnregisterBrokerHeader(_Header):
    REQUEST: ClassVar[str] = "UNREGISTER_BROKER"
    broker_name: str = _wire("brokerName")
    broker_addr: str = _wire("brokerAddr")
    cluster_name: str = _wire("clusterName")
    broker_id: int = _wire("brokerId")


# --- JSON bodies --------------------------------------------------------------------------------


def parse_json_body(body: bytes, what: str) -> object:
    """Parse a JSON request body; HeaderError naming ``what`` if it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HeaderError(f"{what} body is not JSON: {exc}") from None


def dump_json_body(doc: object) -> bytes:
    """Standard JSON (quoted keys), what every client parses."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def consumer_list_body(client_ids: list[str]) -> bytes:
    return dump_json_body({"consumerIdList": list(client_ids)})


def parse_consumer_list(body: bytes) -> list[str]:
    doc = parse_json_body(body, "GET_CONSUMER_LIST_BY_GROUP response")
    ids = doc.get("consumerIdList") if isinstance(doc, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise HeaderError("GET_CONSUMER_LIST_BY_GROUP response has no consumerIdList of strings")
    return ids


def heartbeat_body(client_id: str, producer_groups: Sequence[str] = (), consumers: Sequence[dict[str, Any]] = ()) -> bytes:
    """HeartbeatData JSON. Each entry of ``consumers`` is a ConsumerData dict (see ``consumer_data``)."""
    return dump_json_body({"clientID": client_id,
                           "producerDataSet": [{"groupName": g} for g in producer_groups],
                           "consumerDataSet": list(consumers)})


def consumer_data(group: str, subscriptions: dict[str, str], *, consume_from_where: str = "CONSUME_FROM_LAST_OFFSET",
                  message_model: str = "CLUSTERING", sub_version: int = 0) -> dict[str, Any]:
    """ConsumerData for a heartbeat: ``subscriptions`` maps topic -> tag expression (``*`` or ``a || b``)."""
    subs = []
    for topic, expression in sorted(subscriptions.items()):
        tags = parse_tag_expression(expression)
        subs.append({"classFilterMode": False, "topic": topic, "subString": expression,
                     "tagsSet": sorted(tags) if tags else [], "codeSet": [], "subVersion": sub_version,
                     "expressionType": "TAG"})
    return {"groupName": group, "consumeType": "CONSUME_PASSIVELY", "messageModel": message_model,
            "consumeFromWhere": consume_from_where, "subscriptionDataSet": subs, "unitMode": False}


def parse_heartbeat(body: bytes) -> dict[str, Any]:
    """A HEART_BEAT body, checked for the shape ``ClientRegistry.heartbeat`` reads."""
    doc = parse_json_body(body, "HEART_BEAT")
    if not isinstance(doc, dict) or not isinstance(doc.get("clientID"), str):
        raise HeaderError("HEART_BEAT body has no clientID string")
    for key in ("producerDataSet", "consumerDataSet"):
        items = doc.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("groupName"), str)
                                                  for i in items):
            raise HeaderError(f"HEART_BEAT {key} must be a list of objects with a groupName")
        for item in items:
            subs = item.get("subscriptionDataSet") or []
            if not isinstance(subs, list) or not all(isinstance(s, dict) and isinstance(s.get("topic"), str)
                                                     for s in subs):
                raise HeaderError(f"HEART_BEAT group {item['groupName']!r}: subscriptionDataSet must be a list "
                                  "of objects with a topic")
    return doc


def parse_tag_expression(expression: str | None) -> set[str] | None:
    """Tags of a TAG subscription: None for ``*`` (everything), else the set of ``a || b`` parts."""
    if expression is None or expression.strip() in ("", "*"):
        return None
    return {part.strip() for part in expression.split("||") if part.strip()}
