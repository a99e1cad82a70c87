"""RocketMQ's JSON config files as fastjson 1.x writes them (spec section 12), pure text in/out.

fastjson quirks reproduced by ``dumps_fastjson`` (the dialect is in ``fastjson.py``, re-exported here):

* pretty format: one TAB per level, ``\\n`` newlines, no spaces around ``:``/``,``, no trailing newline;
* maps with integer keys are written with bare keys on one line, the closing brace on its own
  line: ``{0:250,1:251\\n\\t\\t}``; string-keyed maps one entry per line; an empty map is ``{}``;
* bean fields in alphabetical order (the typed writers below do this), nulls omitted.

``loads_fastjson`` reads that (bare integer keys become ``int``) and standard JSON.

Typed files, each for the ``v4`` and ``v5`` flavour (any store version name also works):
``topics.json`` (``TopicConfig``), ``consumerOffset.json`` (``{(topic, group): {queue_id: offset}}``),
``delayOffset.json`` (``{delay level: offset}``), ``subscriptionGroup.json``
(``SubscriptionGroupConfig``). Unknown fields are kept in ``extra`` and written back, so a
read-modify-write never drops what a newer broker stored.

Java maps iterate in hash order; ``java_map_order`` reproduces HashMap/ConcurrentHashMap order so
that the writers give the same bytes as a Java broker for the same content.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mqbench.errors import CorruptDataError, UserError

from .fastjson import dumps_fastjson, java_map_order, loads_fastjson  # noqa: F401 - part of this API

TOPIC_GROUP_SEPARATOR = "@"
PERM_PRIORITY, PERM_READ, PERM_WRITE, PERM_INHERIT = 8, 4, 2, 1



def _ordered(mapping: dict[Any, Any], table_size: int, java_order: bool) -> dict[Any, Any]:
    if not java_order:
        return dict(mapping)
    return {k: mapping[k] for k in java_map_order(mapping, table_size)}


# --- shared pieces ------------------------------------------------------------------------------

def _major(flavour: str) -> int:
    if flavour in ("v4", "v4-dledger"):
        return 4
    if flavour in ("v5", "v5-dledger"):
        return 5
    raise UserError(f"unknown config flavour {flavour!r} (v4 or v5)")


@dataclass
class DataVersion:
    """fastjson ``dataVersion``; 4.x has no ``stateVersion``."""

    counter: int = 0
    timestamp_ms: int = 0
    state_version: int = 0

    def to_json(self, flavour: str) -> dict[Any, Any]:
        if _major(flavour) == 4:
            return {"counter": self.counter, "timestamp": self.timestamp_ms}
        return {"counter": self.counter, "stateVersion": self.state_version, "timestamp": self.timestamp_ms}

    @classmethod
    def from_json(cls, value: object, where: str | None) -> "DataVersion | None":
        if value is None:
            return None
        doc = _expect_dict(value, "dataVersion", where)
        return cls(_int(doc, "counter", 0, where), _int(doc, "timestamp", 0, where), _int(doc, "stateVersion", 0, where))


def _expect_dict(value: object, what: str, where: str | None) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise CorruptDataError(f"{what} is not a JSON object", where=where)
    return value


def _int(doc: dict[Any, Any], key: str, default: int, where: str | None) -> int:
    value = doc.get(key, default)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)  # BrowserCompatible writes big longs as strings
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptDataError(f"{key} is not an integer: {value!r}", where=where)
    return value


def _int_key(key: object, what: str, where: str | None) -> int:
    if isinstance(key, int):
        return key
    if isinstance(key, str) and re.fullmatch(r"-?\d+", key):
        return int(key)
    raise CorruptDataError(f"{what} key {key!r} is not an integer", where=where)


def _or_empty(value: object) -> object:
    return {} if value is None else value


def _root(text: str | bytes, where: str | None) -> dict[Any, Any]:
    return _expect_dict(loads_fastjson(text, where=where), "the file", where)


# --- topics.json ------------------------------------------------------------------------------

@dataclass
class TopicConfig:
    """One ``topicConfigTable`` entry (``TopicConfig`` bean)."""

    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = PERM_READ | PERM_WRITE
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False
    attributes: dict[str, str] = field(default_factory=dict)
    extra: dict[Any, Any] = field(default_factory=dict)

    @property
    def is_batch_cq(self) -> bool:
        return self.attributes.get("queue.type") == "BatchCQ"

    def to_json(self, flavour: str) -> dict[Any, Any]:
        doc = {
            "attributes": dict(self.attributes) if _major(flavour) == 5 else None,
            "order": bool(self.order), "perm": self.perm, "readQueueNums": self.read_queue_nums,
            "topicFilterType": self.topic_filter_type, "topicName": self.topic_name,
            "topicSysFlag": self.topic_sys_flag, "writeQueueNums": self.write_queue_nums,
        }
        doc.update(self.extra)
        return {k: doc[k] for k in sorted(doc) if doc[k] is not None}

    @classmethod
    def from_json(cls, name: str, value: object, where: str | None) -> "TopicConfig":
        doc = dict(_expect_dict(value, f"topic {name!r}", where))
        attributes = _or_empty(doc.pop("attributes", None))
        if not isinstance(attributes, dict):
            raise CorruptDataError(f"topic {name!r} attributes is not an object", where=where)
        order = doc.pop("order", False)
        config = cls(
            topic_name=str(doc.pop("topicName", name)),
            read_queue_nums=_int(doc, "readQueueNums", 16, where), write_queue_nums=_int(doc, "writeQueueNums", 16, where),
            perm=_int(doc, "perm", 6, where), topic_filter_type=str(doc.pop("topicFilterType", "SINGLE_TAG")),
            topic_sys_flag=_int(doc, "topicSysFlag", 0, where), order=bool(order),
            attributes={str(k): str(v) for k, v in attributes.items()},
        )
        for key in ("readQueueNums", "writeQueueNums", "perm", "topicSysFlag"):
            doc.pop(key, None)
        config.extra = doc
        return config


@dataclass
class TopicsFile:
    topics: dict[str, TopicConfig] = field(default_factory=dict)
    data_version: DataVersion | None = None
    extra: dict[Any, Any] = field(default_factory=dict)


def parse_topics_json(text: str | bytes, *, where: str | None = None) -> TopicsFile:
    """``config/topics.json`` of either flavour."""
    doc = dict(_root(text, where))
    table = _expect_dict(_or_empty(doc.pop("topicConfigTable", None)), "topicConfigTable", where)
    result = TopicsFile(data_version=DataVersion.from_json(doc.pop("dataVersion", None), where))
    for name, value in table.items():
        result.topics[str(name)] = TopicConfig.from_json(str(name), value, where)
    result.extra = doc
    return result


def dump_topics_json(topics: TopicsFile | dict[str, TopicConfig], flavour: str = "v5", *,
                     data_version: DataVersion | None = None, pretty: bool = True, java_order: bool = True) -> str:
    if isinstance(topics, TopicsFile):
        data_version = data_version or topics.data_version
        extra, table = topics.extra, topics.topics
    else:
        extra, table = {}, topics
    doc = {"dataVersion": (data_version or DataVersion()).to_json(flavour),
           "topicConfigTable": _ordered({name: t.to_json(flavour) for name, t in table.items()}, 2048, java_order)}
    doc.update(extra)
    return dumps_fastjson({k: doc[k] for k in sorted(doc)}, pretty)


# --- consumerOffset.json -----------------------------------------------------------------------

Offsets = dict[tuple[str, str], dict[int, int]]


@dataclass
class OffsetsFile:
    """``consumerOffset.json``: committed (next-to-consume) offsets per (topic, group) and queue."""

    offsets: Offsets = field(default_factory=dict)
    data_version: DataVersion | None = None
    lmq_offsets: Offsets | None = None
    extra: dict[Any, Any] = field(default_factory=dict)


def _parse_offset_table(value: object, what: str, where: str | None) -> Offsets:
    table = _expect_dict({} if value is None else value, what, where)
    result: Offsets = {}
    for key, queues in table.items():
        key = str(key)
        topic, sep, group = key.rpartition(TOPIC_GROUP_SEPARATOR)
        if not sep or not topic or not group:
            raise CorruptDataError(f"{what} key {key!r} is not topic@group", where=where)
        queues = _expect_dict(queues, f"{what}[{key!r}]", where)
        result[(topic, group)] = {_int_key(q, what, where): _int({"v": o}, "v", 0, where) for q, o in queues.items()}
    return result


def parse_consumer_offsets_json(text: str | bytes, *, where: str | None = None) -> OffsetsFile:
    """``config/consumerOffset.json`` of either flavour; ``groupTopicMap`` (derived) is dropped."""
    doc = dict(_root(text, where))
    doc.pop("groupTopicMap", None)
    result = OffsetsFile(
        offsets=_parse_offset_table(doc.pop("offsetTable", {}), "offsetTable", where),
        data_version=DataVersion.from_json(doc.pop("dataVersion", None), where),
    )
    if "lmqOffsetTable" in doc:
        result.lmq_offsets = _parse_offset_table(doc.pop("lmqOffsetTable"), "lmqOffsetTable", where)
    result.extra = doc
    return result


def _offset_table_json(offsets: Offsets, java_order: bool) -> dict[Any, Any]:
    table = {}
    for (topic, group), queues in offsets.items():
        if TOPIC_GROUP_SEPARATOR in group:
            raise UserError(f"group {group!r} contains '@'")
        table[f"{topic}{TOPIC_GROUP_SEPARATOR}{group}"] = _ordered({int(q): int(o) for q, o in queues.items()}, 64, java_order)
    return _ordered(table, 1024, java_order)


def dump_consumer_offsets_json(offsets: OffsetsFile | Offsets, flavour: str = "v5", *,
                               data_version: DataVersion | None = None, pretty: bool = True,
                               java_order: bool = True) -> str:
    """4.x: ``offsetTable`` only. 5.x: ``dataVersion``, the derived ``groupTopicMap``, ``offsetTable``."""
    file = offsets if isinstance(offsets, OffsetsFile) else OffsetsFile(offsets=offsets)
    table = _offset_table_json(file.offsets, java_order)
    doc: dict[Any, Any] = {"offsetTable": table}
    if _major(flavour) == 5:
        doc["dataVersion"] = (data_version or file.data_version or DataVersion()).to_json(flavour)
        group_topics: dict[str, list[str]] = {}
        for key in table:
            topic, _, group = key.rpartition(TOPIC_GROUP_SEPARATOR)
            group_topics.setdefault(group, [])
            if topic not in group_topics[group]:
                group_topics[group].append(topic)
        doc["groupTopicMap"] = _ordered({g: (java_map_order(t, 8) if java_order else t) for g, t in group_topics.items()},
                                        128, java_order)
    if file.lmq_offsets is not None:
        doc["lmqOffsetTable"] = _offset_table_json(file.lmq_offsets, java_order)
    doc.update(file.extra)
    return dumps_fastjson({k: doc[k] for k in sorted(doc)}, pretty)


# --- delayOffset.json -------------------------------------------------------------------------

@dataclass
class DelayOffsetsFile:
    """``delayOffset.json``: next CQ offset to process per delay level (1-based; queue = level - 1)."""

    offsets: dict[int, int] = field(default_factory=dict)
    data_version: DataVersion | None = None
    extra: dict[Any, Any] = field(default_factory=dict)


def parse_delay_offsets_json(text: str | bytes, *, where: str | None = None) -> DelayOffsetsFile:
    doc = dict(_root(text, where))
    table = _expect_dict(_or_empty(doc.pop("offsetTable", None)), "offsetTable", where)
    result = DelayOffsetsFile(
        offsets={_int_key(k, "offsetTable", where): _int({"v": v}, "v", 0, where) for k, v in table.items()},
        data_version=DataVersion.from_json(doc.pop("dataVersion", None), where),
    )
    result.extra = doc
    return result


def dump_delay_offsets_json(offsets: DelayOffsetsFile | dict[int, int], flavour: str = "v5", *,
                            data_version: DataVersion | None = None, pretty: bool = True, java_order: bool = True) -> str:
    """4.x: ``offsetTable``; 5.x: ``dataVersion`` then ``offsetTable``."""
    file = offsets if isinstance(offsets, DelayOffsetsFile) else DelayOffsetsFile(offsets=offsets)
    doc: dict[Any, Any] = {"offsetTable": _ordered({int(k): int(v) for k, v in file.offsets.items()}, 64, java_order)}
    if _major(flavour) == 5:
        doc["dataVersion"] = (data_version or file.data_version or DataVersion()).to_json(flavour)
    doc.update(file.extra)
    return dumps_fastjson({k: doc[k] for k in sorted(doc)}, pretty)


# --- subscriptionGroup.json -------------------------------------------------------------------

_SUB_FIELDS_V4 = {  # json name -> (attribute, default)
    "brokerId": ("broker_id", 0), "consumeBroadcastEnable": ("consume_broadcast_enable", True),
    "consumeEnable": ("consume_enable", True), "consumeFromMinEnable": ("consume_from_min_enable", True),
    "groupName": ("group_name", ""), "notifyConsumerIdsChangedEnable": ("notify_consumer_ids_changed_enable", True),
    "retryMaxTimes": ("retry_max_times", 16), "retryQueueNums": ("retry_queue_nums", 1),
    "whichBrokerWhenConsumeSlowly": ("which_broker_when_consume_slowly", 1),
}
_SUB_FIELDS_V5 = {
    **_SUB_FIELDS_V4, "consumeMessageOrderly": ("consume_message_orderly", False),
    "consumeTimeoutMinute": ("consume_timeout_minute", 15), "groupSysFlag": ("group_sys_flag", 0),
}


@dataclass
class SubscriptionGroupConfig:
    """One ``subscriptionGroupTable`` entry. 5.x-only objects (``attributes``, ``groupRetryPolicy``,
    ``subscriptionDataSet``) and unknown fields travel in ``extra`` as read."""

    group_name: str
    broker_id: int = 0
    consume_broadcast_enable: bool = True
    consume_enable: bool = True
    consume_from_min_enable: bool = True
    consume_message_orderly: bool = False
    consume_timeout_minute: int = 15
    group_sys_flag: int = 0
    notify_consumer_ids_changed_enable: bool = True
    retry_max_times: int = 16
    retry_queue_nums: int = 1
    which_broker_when_consume_slowly: int = 1
    extra: dict[Any, Any] = field(default_factory=dict)

    def to_json(self, flavour: str) -> dict[Any, Any]:
        fields = _SUB_FIELDS_V4 if _major(flavour) == 4 else _SUB_FIELDS_V5
        doc = {name: getattr(self, attr) for name, (attr, _) in fields.items()}
        if _major(flavour) == 5:
            doc.setdefault("attributes", {})
            doc.setdefault("groupRetryPolicy", {"type": "CUSTOMIZED"})
        doc.update(self.extra)
        return {k: doc[k] for k in sorted(doc) if doc[k] is not None}

    @classmethod
    def from_json(cls, name: str, value: object, where: str | None) -> "SubscriptionGroupConfig":
        doc = dict(_expect_dict(value, f"group {name!r}", where))
        config = cls(group_name=name)
        for json_name, (attr, default) in _SUB_FIELDS_V5.items():
            if json_name not in doc:
                continue
            raw = doc.pop(json_name)
            if isinstance(default, bool):
                if not isinstance(raw, bool):
                    raise CorruptDataError(f"group {name!r} {json_name} is not true/false", where=where)
            elif isinstance(default, int):
                raw = _int({"v": raw}, "v", 0, where)
            else:
                raw = str(raw)
            setattr(config, attr, raw)
        config.extra = doc
        return config


@dataclass
class SubscriptionGroupsFile:
    groups: dict[str, SubscriptionGroupConfig] = field(default_factory=dict)
    data_version: DataVersion | None = None
    forbidden: dict[Any, Any] | None = None
    extra: dict[Any, Any] = field(default_factory=dict)


def parse_subscription_groups_json(text: str | bytes, *, where: str | None = None) -> SubscriptionGroupsFile:
    doc = dict(_root(text, where))
    table = _expect_dict(_or_empty(doc.pop("subscriptionGroupTable", None)), "subscriptionGroupTable", where)
    forbidden = doc.pop("forbiddenTable", None)
    result = SubscriptionGroupsFile(data_version=DataVersion.from_json(doc.pop("dataVersion", None), where),
                                    forbidden=forbidden)
    for name, value in table.items():
        result.groups[str(name)] = SubscriptionGroupConfig.from_json(str(name), value, where)
    result.extra = doc
    return result


def dump_subscription_groups_json(groups: SubscriptionGroupsFile | dict[str, SubscriptionGroupConfig],
                                  flavour: str = "v5", *, data_version: DataVersion | None = None,
                                  pretty: bool = True, java_order: bool = True) -> str:
    """4.x: ``dataVersion``, ``subscriptionGroupTable``; 5.x adds ``forbiddenTable``."""
    file = groups if isinstance(groups, SubscriptionGroupsFile) else SubscriptionGroupsFile(groups=groups)
    doc: dict[Any, Any] = {
        "dataVersion": (data_version or file.data_version or DataVersion()).to_json(flavour),
        "subscriptionGroupTable": _ordered({n: g.to_json(flavour) for n, g in file.groups.items()}, 2048, java_order),
    }
    if _major(flavour) == 5:
        doc["forbiddenTable"] = file.forbidden if file.forbidden is not None else {}
    doc.update(file.extra)
    return dumps_fastjson({k: doc[k] for k in sorted(doc)}, pretty)
