"""The put-side rewrite of delayed messages and the delivery-side restore. Pure functions.

Put (``rewrite_for_delay``), as RocketMQ's broker does before storing:

* ``DELAY`` = level L > 0 (a transaction NOT/COMMIT message): topic ``SCHEDULE_TOPIC_XXXX``, queue
  ``min(L, 18) - 1``, ``REAL_TOPIC``/``REAL_QID`` added, ``DELAY`` kept (the store computes the
  consume-queue tagsCode = store time + the level's delay from it, spec 5.3).
* otherwise, with the timer enabled, ``TIMER_DELAY_SEC``, ``TIMER_DELAY_MS`` or ``TIMER_DELIVER_MS``
  (looked at in that order, as RocketMQ's ``HookUtils``): the deliver time is now + the delay, or
  the absolute time. In the future: topic ``rmq_sys_wheel_timer``, queue 0, ``TIMER_OUT_MS`` =
  the deliver time, ``REAL_TOPIC``/``REAL_QID`` added. Unlike RocketMQ, ``TIMER_OUT_MS`` is the
  exact requested millisecond, not rounded down to the precision: we never deliver early.
  Not in the future: the message is stored as an ordinary message (RocketMQ's behaviour).
  Further out than ``timer_max_delay_ms``: UserError. Longer delays are configured by raising
  the maximum; the wheel then parks and re-writes ("rolls") the message, see ``index``.
* anything else: the message itself, unchanged (the same object).

A client's own ``MQBENCH_DELAY_SRC`` property is dropped in every case: only the delivery service
may write it (it is how a new leader recognises deliveries, ``plan``).

Bad values (``DELAY=abc``, ``TIMER_DELAY_MS=-5``, a message sent straight to a delay system topic)
raise UserError naming the property, so the broker answers the producer with an error.

Delivery (``delivered_message``): the real message rebuilt from the stored record: topic and queue
from ``REAL_TOPIC``/``REAL_QID``; ``DELAY``, ``REAL_*`` and ``TIMER_OUT_MS`` removed; the timer's
``TIMER_ENQUEUE_MS``/``TIMER_DEQUEUE_MS`` added; and ``MQBENCH_DELAY_SRC`` = the source position
(``L3:17`` = level 3, queue offset 17; ``T:42`` = timer queue offset 42), which is how a new leader
finds out what the old one already delivered (``plan``).

Dead letters (``fits``, ``dead_letter_message``): a due record whose re-put cannot be stored (its
properties with the delivery's additions exceed 32,767 bytes: the broker refuses such sends, but a
store written by another broker may hold one) is moved to ``DEAD_LETTER_TOPIC``
(``%DLQ%rmq_sys_mqbench_delay``, queue 0) as stored, with ``MQBENCH_DELAY_SRC`` = its source, so
one message never stops the delivery of the others.
"""
from __future__ import annotations

import dataclasses

from mqbench.broker.formats.record import Message, encode_properties
from mqbench.broker.formats.record_layout import PROPERTIES_MAX_BYTES, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.formats.topics import validate_topic
from mqbench.errors import CorruptDataError, UserError

from .config import DelayConfig
from mqbench.broker.formats.properties import (
    PROPERTY_DELAY,
    PROPERTY_MQBENCH_DELAY_SOURCE,
    PROPERTY_MQBENCH_DLQ_DROPPED,
    PROPERTY_MQBENCH_DLQ_REASON,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_DEQUEUE_MS,
    PROPERTY_TIMER_ENQUEUE_MS,
    PROPERTY_TIMER_OUT_MS,
    PROPERTY_TIMER_ROLL_TIMES,
)

DELAY_TOPICS = (SCHEDULE_TOPIC, TIMER_TOPIC)
#: Where a due message that cannot be re-put goes (RocketMQ's %DLQ% naming; one queue).
DEAD_LETTER_TOPIC = "%DLQ%rmq_sys_mqbench_delay"
DEAD_REASON_CHARS_MAX = 200
_INTERNAL = (PROPERTY_DELAY, PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_TIMER_OUT_MS, PROPERTY_MQBENCH_DELAY_SOURCE)
_INT64_MAX = (1 << 63) - 1


def _int_property(msg: Message, name: str, *, low: int = 0) -> int:
    text = msg.properties[name]
    try:
        value = int(text.strip())
    except (ValueError, AttributeError):
        raise UserError(f"property {name}={text!r} is not an integer") from None
    if not low <= value <= _INT64_MAX:
        raise UserError(f"property {name}={value} is out of range ({low}..{_INT64_MAX})")
    return value


def delay_level(msg: Message) -> int:
    """The DELAY level of a message, 0 when absent (UserError when not an integer)."""
    if PROPERTY_DELAY not in msg.properties:
        return 0
    text = msg.properties[PROPERTY_DELAY]
    try:
        return _level(text)
    except (ValueError, AttributeError):
        raise UserError(f"property DELAY={text!r} is not an integer delay level") from None


def _level(text: str) -> int:
    """A DELAY property's level as ``delay_level`` reads it (ValueError/AttributeError when bad)."""
    return int(text.strip())


def timer_deliver_ms(msg: Message, now_ms: int) -> int | None:
    """The requested deliver time of a TIMER_* message (None when it has none)."""
    props = msg.properties
    if PROPERTY_TIMER_DELAY_SEC in props:
        return now_ms + _int_property(msg, PROPERTY_TIMER_DELAY_SEC) * 1000
    if PROPERTY_TIMER_DELAY_MS in props:
        return now_ms + _int_property(msg, PROPERTY_TIMER_DELAY_MS)
    if PROPERTY_TIMER_DELIVER_MS in props:
        return _int_property(msg, PROPERTY_TIMER_DELIVER_MS)
    return None


def _moved(msg: Message, topic: str, queue_id: int, extra: dict[str, str]) -> Message:
    props = dict(msg.properties)
    props.update(extra)
    props[PROPERTY_REAL_TOPIC] = msg.topic
    props[PROPERTY_REAL_QID] = str(msg.queue_id)
    return dataclasses.replace(msg, topic=topic, queue_id=queue_id, properties=props)


#: the properties ``rewrite_for_delay`` reads; a message with none of them (to a topic outside
#: ``DELAY_TOPICS``) comes back unchanged whatever the time and config
_REWRITE_KEYS = frozenset({PROPERTY_MQBENCH_DELAY_SOURCE, PROPERTY_DELAY, PROPERTY_TIMER_DELAY_SEC,
                           PROPERTY_TIMER_DELAY_MS, PROPERTY_TIMER_DELIVER_MS})


def delay_rewrite_acts_on(topic: str, properties: dict[str, str]) -> bool:
    """False when ``rewrite_for_delay`` returns a message to ``topic`` with ``properties``
    unchanged, at any time and with any config (the rewriter's ``acts_on``)."""
    return topic in DELAY_TOPICS or not _REWRITE_KEYS.isdisjoint(properties)


def delay_level_fields(topic: str, queue_id: int, sysflag: int, properties: dict[str, str], wire: str,
                       config: DelayConfig = DelayConfig()) -> tuple[str, int, dict[str, str], str] | None:
    """``rewrite_for_delay`` of the usual delayed send, on its fields rather than a ``Message``
    (the leader's send path builds the record from them, ``handlers_send._fields_record``).

    ``wire`` must be exactly ``encode_properties(properties)`` (as text). For a message with a
    DELAY level above 0, no ``MQBENCH_DELAY_SRC``, ``REAL_TOPIC`` or ``REAL_QID`` of its own, to
    a topic outside ``DELAY_TOPICS``, not a prepared or rolled-back transaction message: the
    (topic, queue id, properties, property string) that ``rewrite_for_delay`` stores, the string
    being ``encode_properties`` of those properties (the two REAL_* entries go last, as ``_moved``
    adds them). Anything else, None: the caller takes the ``Message`` path, which decides (and
    refuses with the error naming the property) exactly as before. Time plays no part in it."""
    if (topic in DELAY_TOPICS or sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK)
            or PROPERTY_MQBENCH_DELAY_SOURCE in properties or PROPERTY_REAL_TOPIC in properties
            or PROPERTY_REAL_QID in properties):
        return None
    text = properties.get(PROPERTY_DELAY)
    if text is None:
        return None
    try:
        level = _level(text)
    except (ValueError, AttributeError):
        return None
    if level <= 0:
        return None
    real_qid = str(queue_id)
    moved = dict(properties)
    moved[PROPERTY_REAL_TOPIC] = topic
    moved[PROPERTY_REAL_QID] = real_qid
    wire = f"{wire}{PROPERTY_REAL_TOPIC}\x01{topic}\x02{PROPERTY_REAL_QID}\x01{real_qid}\x02"
    return SCHEDULE_TOPIC, min(level, config.max_level) - 1, moved, wire


def rewrite_for_delay(msg: Message, *, now_ms: int, config: DelayConfig = DelayConfig()) -> Message:
    """The message to store for ``msg`` sent at ``now_ms`` (see module doc)."""
    if msg.topic in DELAY_TOPICS:
        raise UserError(f"topic {msg.topic} is reserved for delayed messages; send to the real topic "
                        f"with a DELAY level or a TIMER_* property instead")
    if PROPERTY_MQBENCH_DELAY_SOURCE in msg.properties:
        msg = dataclasses.replace(msg, properties={k: v for k, v in msg.properties.items() if k != PROPERTY_MQBENCH_DELAY_SOURCE})
    if msg.sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
        return msg
    level = delay_level(msg)
    if level > 0:
        level = min(level, config.max_level)
        return _moved(msg, SCHEDULE_TOPIC, level - 1, {})
    if not config.timer_enabled:
        return msg
    deliver_ms = timer_deliver_ms(msg, now_ms)
    if deliver_ms is None or deliver_ms <= now_ms:
        return msg
    if deliver_ms - now_ms > config.timer_max_delay_ms:
        raise UserError(f"timer delay of {deliver_ms - now_ms} ms exceeds the maximum of "
                        f"{config.timer_max_delay_ms} ms (timer_max_delay_ms)")
    return _moved(msg, TIMER_TOPIC, 0, {PROPERTY_TIMER_OUT_MS: str(deliver_ms)})


def level_due_ms(record: Message, config: DelayConfig = DelayConfig()) -> int:
    """When a ``SCHEDULE_TOPIC_XXXX`` record is due: its store time + its level's delay (spec 5.3)."""
    return record.store_timestamp_ms + config.level_delay_ms(record.queue_id + 1)


def timer_due_ms(record: Message) -> int:
    """When a ``rmq_sys_wheel_timer`` record is due (its TIMER_OUT_MS); CorruptDataError if bad."""
    try:
        return _int_property(record, PROPERTY_TIMER_OUT_MS)
    except (KeyError, UserError) as exc:
        raise CorruptDataError(f"timer record without a valid TIMER_OUT_MS ({exc})", where=record.topic,
                               offset=record.queue_offset) from None


def source_id(kind: str, queue_offset: int, level: int = 0) -> str:
    """``L<level>:<offset>`` for a delay level, ``T:<offset>`` for the timer queue."""
    return f"L{level}:{queue_offset}" if kind == "level" else f"T:{queue_offset}"


def delivered_message(record: Message, *, source: str, now_ms: int) -> Message:
    """The real message to re-put for a due ``record`` (CorruptDataError when REAL_* are bad)."""
    props = record.properties
    try:
        topic = validate_topic(props.get(PROPERTY_REAL_TOPIC))
        queue_id = int(props.get(PROPERTY_REAL_QID, ""))
    except (UserError, ValueError) as exc:
        raise CorruptDataError(f"delayed record without a valid REAL_TOPIC/REAL_QID ({exc})",
                               where=f"{record.topic}/{record.queue_id}", offset=record.queue_offset) from None
    if not 0 <= queue_id < 1 << 31 or topic in DELAY_TOPICS:
        raise CorruptDataError(f"delayed record names the target {topic}/{queue_id}",
                               where=f"{record.topic}/{record.queue_id}", offset=record.queue_offset)
    out = {k: v for k, v in props.items() if k not in _INTERNAL}
    if record.topic == TIMER_TOPIC:
        out[PROPERTY_TIMER_ENQUEUE_MS] = str(record.store_timestamp_ms)
        out[PROPERTY_TIMER_DEQUEUE_MS] = str(now_ms)
    out[PROPERTY_MQBENCH_DELAY_SOURCE] = source
    return Message(topic=topic, body=record.body, properties=out, queue_id=queue_id, flag=record.flag,
                   sysflag=record.sysflag, born_timestamp_ms=record.born_timestamp_ms, born_host=record.born_host,
                   reconsume_times=record.reconsume_times)


def rolled_message(record: Message, *, source: str) -> Message:
    """A timer record parked for a roll, written again to the timer topic (``TIMER_ROLL_TIMES`` + 1)."""
    props = dict(record.properties)
    try:
        rolls = int(props.get(PROPERTY_TIMER_ROLL_TIMES, "0"))
    except ValueError:
        rolls = 0
    props[PROPERTY_TIMER_ROLL_TIMES] = str(rolls + 1)
    props[PROPERTY_MQBENCH_DELAY_SOURCE] = source
    return Message(topic=TIMER_TOPIC, body=record.body, properties=props, queue_id=0, flag=record.flag,
                   sysflag=record.sysflag, born_timestamp_ms=record.born_timestamp_ms, born_host=record.born_host,
                   reconsume_times=record.reconsume_times)


def fits(msg: Message) -> str | None:
    """None when ``msg`` can be stored as it is, else why not (its properties are too long or bad)."""
    try:
        size = len(encode_properties(msg.properties))
    except UserError as exc:
        return str(exc)
    if size > PROPERTIES_MAX_BYTES:
        return f"its properties would take {size} bytes (max {PROPERTIES_MAX_BYTES})"
    return None


def dead_letter_message(record: Message, *, source: str, reason: str) -> Message | None:
    """The stored delayed ``record`` moved to ``DEAD_LETTER_TOPIC`` (module doc): its properties as
    stored (REAL_TOPIC, REAL_QID, DELAY / TIMER_OUT_MS say what it was), ``MQBENCH_DELAY_SRC`` =
    ``source`` and the reason. When that does not fit, the reason goes first, then the client's
    TIMER_DELIVER_MS/TIMER_DELAY_* (TIMER_OUT_MS keeps the time), then the largest other properties
    one by one (``MQBENCH_DLQ_DROPPED`` names them). None when nothing makes it fit."""
    props = {k: v for k, v in record.properties.items() if k != PROPERTY_MQBENCH_DELAY_SOURCE}
    props[PROPERTY_MQBENCH_DELAY_SOURCE] = source
    props[PROPERTY_MQBENCH_DLQ_REASON] = reason.replace("\x02", " ")[:DEAD_REASON_CHARS_MAX]
    msg = Message(topic=DEAD_LETTER_TOPIC, body=record.body, properties=props, queue_id=0, flag=record.flag,
                  sysflag=record.sysflag, born_timestamp_ms=record.born_timestamp_ms, born_host=record.born_host,
                  reconsume_times=record.reconsume_times)
    droppable = [PROPERTY_MQBENCH_DLQ_REASON, PROPERTY_TIMER_DELIVER_MS, PROPERTY_TIMER_DELAY_MS, PROPERTY_TIMER_DELAY_SEC]
    dropped: list[str] = []
    while fits(msg) is not None:
        name = next((n for n in droppable if n in props), None)
        if name is None:
            keep = {PROPERTY_MQBENCH_DELAY_SOURCE, PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_TIMER_OUT_MS, PROPERTY_DELAY, PROPERTY_MQBENCH_DLQ_DROPPED}
            others = [k for k in props if k not in keep]
            if not others:
                return None
            name = max(others, key=lambda k: len(props[k]))
            dropped.append(name)
            props[PROPERTY_MQBENCH_DLQ_DROPPED] = ",".join(dropped)[:DEAD_REASON_CHARS_MAX]
        del props[name]
    return msg
