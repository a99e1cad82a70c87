"""Replicated metadata updates: consumer offsets and topic configs as commitlog records.

A broker group replicates everything through its Raft log, and that log is the store's DLedger
commitlog, which RocketMQ-shaped readers expect to hold only commitlog records. So a metadata
update is an ordinary record (V1/V2 as the topic length asks) on the internal topic
``rmq_sys_mqbench_meta``, queue 0, with flag 0, no properties and one of these JSON objects as its
body (UTF-8, keys sorted, no spaces, exactly these keys)::

    {"v": 1, "type": "offset", "group": "<consumer group>", "topic": "<topic>",
     "queueId": <int >= 0>, "offset": <int >= 0>, "reset": <bool>}

    {"v": 1, "type": "offsets", "offsets": {"<group>": {"<topic>": {"<queueId>": <offset>, ...}, ...}, ...}}

    {"v": 1, "type": "topic", "mode": "upsert" | "create",
     "config": {<TopicConfig as in topics.json, v5 flavour: attributes, order, perm,
                 readQueueNums, topicFilterType, topicName, topicSysFlag, writeQueueNums>}}

How ``ReplicatedGroup`` applies them, in log order on every replica (so every replica ends in the
same state):

* ``offset``: the group's committed offset of that queue becomes ``offset`` if it is greater than
  the current one; an older or equal value is ignored (offsets never rewind), unless ``reset`` is
  true (an explicit reset, e.g. an admin moving a group back).
* ``offsets`` (a snapshot: every offset committed since the previous snapshot, of any group, topic
  and queue, at most ``SNAPSHOT_OFFSETS_MAX`` per record): each applied as an ``offset`` without
  ``reset``. This is how commits are replicated (``ReplicatedGroup.commit_offset``): one record per
  snapshot, not one per commit, so offsets cost what users of RocketMQ expect (it persists them
  every few seconds) while every acknowledged commit is still in the Raft log.
* ``topic``: ``upsert`` creates the topic or replaces its config; ``create`` creates it only when
  it does not exist yet (auto-creation on first send: two racing creations keep the first). An
  update the store refuses (say, changing ``queue.type``) changes nothing on any replica.

For example ``{"group":"G","offset":42,"queueId":1,"reset":false,"topic":"T","type":"offset","v":1}``.
The records get queue offsets on that topic like any other, so ``mqbench inspect`` counts them.
``decode_meta`` raises CorruptDataError for a body that is not one of the above; ``apply_meta``
applies one entry to a store as described. ``is_meta_record(entry data)`` tells a metadata record
from the rest without decoding it; ``refuse_meta_topic(topic)`` is the UserError for a client
write to that topic (it would inject metadata updates).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.formats.configs import TopicConfig
from mqbench.broker.formats.record import Message, decode_message
from mqbench.broker.formats.record_peek import peek_topic
from mqbench.broker.store.dledger_log import is_record_body
from mqbench.broker.formats.topics import validate_group, validate_topic

META_TOPIC = "rmq_sys_mqbench_meta"
META_VERSION = 1
TOPIC_MODES = ("upsert", "create")
SNAPSHOT_OFFSETS_MAX = 4096   # offsets per snapshot record (~60 bytes each: far below a record's limit)


@dataclass(frozen=True)
class OffsetUpdate:
    group: str
    topic: str
    queue_id: int
    offset: int
    reset: bool = False


@dataclass(frozen=True)
class OffsetsSnapshot:
    offsets: dict[tuple[str, str, int], int]    # (group, topic, queue id) -> offset


@dataclass(frozen=True)
class TopicUpdate:
    config: TopicConfig
    mode: str = "upsert"


def check_offset_update(update: OffsetUpdate) -> OffsetUpdate:
    """UserError naming the field when ``update`` cannot be stored."""
    _check_offset_names(update.group, update.topic)
    _check_offset_number("queue id", update.queue_id)
    _check_offset_number("offset", update.offset)
    return update


def _check_offset_names(group: str, topic: str) -> None:
    validate_group(group)
    if "@" in group:
        raise UserError(f"group {group!r} contains '@'")
    validate_topic(topic)


_OFFSET_LIMIT = 1 << 63


def _check_offset_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _OFFSET_LIMIT:
        raise UserError(f"{name} {value!r} must be an integer from 0 to 2^63-1")


def encode_meta(update: OffsetUpdate | OffsetsSnapshot | TopicUpdate) -> bytes:
    """The JSON body of an update (module doc)."""
    if isinstance(update, OffsetsSnapshot):
        if not 0 < len(update.offsets) <= SNAPSHOT_OFFSETS_MAX:
            raise UserError(f"an offsets snapshot holds 1 to {SNAPSHOT_OFFSETS_MAX} offsets, "
                            f"not {len(update.offsets)}")
        nested: dict = {}
        for (group, topic, queue_id), offset in update.offsets.items():
            check_offset_update(OffsetUpdate(group, topic, queue_id, offset))
            nested.setdefault(group, {}).setdefault(topic, {})[str(queue_id)] = offset
        doc = {"v": META_VERSION, "type": "offsets", "offsets": nested}
    elif isinstance(update, OffsetUpdate):
        check_offset_update(update)
        doc = {"v": META_VERSION, "type": "offset", "group": update.group, "topic": update.topic,
               "queueId": update.queue_id, "offset": update.offset, "reset": bool(update.reset)}
    else:
        if update.mode not in TOPIC_MODES:
            raise UserError(f"topic update mode {update.mode!r} is not one of {', '.join(TOPIC_MODES)}")
        validate_topic(update.config.topic_name)
        doc = {"v": META_VERSION, "type": "topic", "mode": update.mode, "config": update.config.to_json("v5")}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def meta_message(update: OffsetUpdate | OffsetsSnapshot | TopicUpdate) -> Message:
    """The record (before the store stamps it) that carries ``update``."""
    return Message(topic=META_TOPIC, body=encode_meta(update), queue_id=0)


def _field(doc: dict, key: str, kind, where: str):
    value = doc.get(key)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise CorruptDataError(f"metadata update field {key!r} is not an integer: {value!r}", where=where)
    if kind is not int and not isinstance(value, kind):
        raise CorruptDataError(f"metadata update field {key!r} is missing or of the wrong type: {value!r}",
                               where=where)
    return value


def _decode_snapshot(doc: dict, where: str) -> OffsetsSnapshot:
    if set(doc) != {"v", "type", "offsets"}:
        raise CorruptDataError(f"offsets snapshot has fields {sorted(doc)}", where=where)
    offsets: dict[tuple[str, str, int], int] = {}
    for group, topics in _field(doc, "offsets", dict, where).items():
        if not isinstance(topics, dict):
            raise CorruptDataError(f"offsets snapshot: group {group!r} does not map topics", where=where)
        for topic, queues in topics.items():
            if not isinstance(queues, dict):
                raise CorruptDataError(f"offsets snapshot: {group}/{topic} does not map queues", where=where)
            _check_offset_names(group, topic)       # what check_offset_update checks, once per topic
            for queue_text, offset in queues.items():
                if not (queue_text.isascii() and queue_text.isdigit()) or type(offset) is not int:
                    raise CorruptDataError(f"offsets snapshot: {group}/{topic} queue {queue_text!r} "
                                           f"offset {offset!r}", where=where)
                queue_id = int(queue_text)
                if not (0 <= offset < _OFFSET_LIMIT and queue_id < _OFFSET_LIMIT):
                    _check_offset_number("queue id", queue_id)      # raises, naming the field
                    _check_offset_number("offset", offset)
                offsets[(group, topic, queue_id)] = offset
    if not 0 < len(offsets) <= SNAPSHOT_OFFSETS_MAX:
        raise CorruptDataError(f"offsets snapshot holds {len(offsets)} offsets", where=where)
    return OffsetsSnapshot(offsets)


def decode_meta(body: bytes, *, where: str = META_TOPIC) -> OffsetUpdate | OffsetsSnapshot | TopicUpdate:
    """Parse a body written by ``encode_meta`` (CorruptDataError for anything else)."""
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptDataError(f"metadata update is not UTF-8 JSON: {exc}", where=where) from None
    if not isinstance(doc, dict):
        raise CorruptDataError("metadata update is not a JSON object", where=where)
    if doc.get("v") != META_VERSION or isinstance(doc.get("v"), bool):
        raise CorruptDataError(f"metadata update version {doc.get('v')!r} is not {META_VERSION}", where=where)
    kind = doc.get("type")
    try:
        if kind == "offsets":
            return _decode_snapshot(doc, where)
        if kind == "offset":
            if set(doc) != {"v", "type", "group", "topic", "queueId", "offset", "reset"}:
                raise CorruptDataError(f"offset update has fields {sorted(doc)}", where=where)
            return check_offset_update(OffsetUpdate(
                _field(doc, "group", str, where), _field(doc, "topic", str, where),
                _field(doc, "queueId", int, where), _field(doc, "offset", int, where),
                _field(doc, "reset", bool, where)))
        if kind == "topic":
            if set(doc) != {"v", "type", "mode", "config"}:
                raise CorruptDataError(f"topic update has fields {sorted(doc)}", where=where)
            mode = _field(doc, "mode", str, where)
            if mode not in TOPIC_MODES:
                raise CorruptDataError(f"topic update mode {mode!r} is not one of {', '.join(TOPIC_MODES)}",
                                       where=where)
            cfg_doc = _field(doc, "config", dict, where)
            name = cfg_doc.get("topicName")
            if not isinstance(name, str):
                raise CorruptDataError("topic update config has no topicName", where=where)
            config = TopicConfig.from_json(name, cfg_doc, where)
            validate_topic(config.topic_name)
            return TopicUpdate(config, mode)
    except UserError as exc:
        raise CorruptDataError(f"metadata update: {exc}", where=where) from None
    raise CorruptDataError(f"metadata update type {kind!r} is not offset, offsets or topic", where=where)


log = logging.getLogger("mqbench.broker.replicated")


def apply_meta(store, data: bytes, index: int) -> Exception | None:
    """Apply the metadata entry ``data`` (Raft index ``index``) to ``store`` (module doc); returns the
    error to give its proposer (state unchanged). An OSError (the disk) is raised, not returned:
    the caller retries or stops the replica."""
    try:
        msg, _ = decode_message(data, 0, check_crc=False, where=f"Raft entry {index}")
        update = decode_meta(msg.body, where=f"Raft entry {index}")
    except CorruptDataError as exc:
        log.warning("skipping metadata entry %d: %s", index, exc)
        return exc
    try:
        if isinstance(update, OffsetUpdate):
            current = store.query_offset(update.group, update.topic, update.queue_id)
            if update.reset or update.offset > current:
                store.commit_offset(update.group, update.topic, update.queue_id, update.offset)
            return None
        if isinstance(update, OffsetsSnapshot):
            store.raise_offsets(update.offsets)     # each only if greater (module doc), in one pass
            return None
        cfg = update.config
        existing = store.topic_config(cfg.topic_name)
        if existing is None:
            store.create_topic(cfg.topic_name, read_queue_nums=cfg.read_queue_nums,
                               write_queue_nums=cfg.write_queue_nums, perm=cfg.perm,
                               attributes=cfg.attributes, order=cfg.order)
            if store.topic_config(cfg.topic_name) != cfg:
                store.update_topic(cfg)
        elif update.mode == "upsert" and existing != cfg:
            store.update_topic(cfg)
        return None
    except UserError as exc:
        log.warning("metadata entry %d refused by the store: %s", index, exc)
        return exc


META_TOPIC_BYTES = META_TOPIC.encode()


def refuse_meta_topic(topic: str) -> None:
    """UserError for a client write to the metadata topic (it would inject metadata updates)."""
    if topic == META_TOPIC:
        raise UserError(f"{META_TOPIC} is the group's internal metadata topic; messages cannot be sent to it")


def is_meta_record(data: bytes) -> bool:
    """True when ``data`` is a commitlog record on the metadata topic."""
    if META_TOPIC_BYTES not in data or not is_record_body(data):
        return False      # (the topic's bytes are in every such record: a cheap first look)
    try:
        return peek_topic(data, 0) == META_TOPIC
    except (CorruptDataError, IndexError, ValueError):
        return False
