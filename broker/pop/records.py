"""POP state as RocketMQ stores it: checkpoint (``ck``) and ack (``ack``/``bAck``) messages.

They are ordinary messages on ``rmq_sys_REVIVE_LOG_<cluster>`` queue ``reviveQid``, tagged ``ck``,
``ack`` or ``bAck`` (``PopAckConstants``), with a JSON body of short field names as RocketMQ's
``PopCheckPoint`` / ``AckMsg`` / ``BatchAckMsg`` write them, and ``TIMER_DELIVER_MS`` = the
checkpoint's revive time (pop time + invisible time), so the broker's timer store holds them until
then and puts them on the revive log at that time (never before). Since the commitlog is the Raft
log, this state is replicated with the messages.

Checkpoint body fields: ``so`` start offset, ``pt`` pop time ms, ``it`` invisible time ms, ``bm``
bitmap of acked messages (bit i: ``offsets[i]`` was acked before the checkpoint was written, the
merge buffer's acks), ``n`` number of
messages, ``q`` queue id, ``t`` topic (the one popped from: a retry topic for retried messages),
``c`` consumer group, ``ro`` revive offset (unused, -1), ``d`` queue offsets minus ``so``, ``bn``
broker name, ``rp`` re-put times. Ack body: ``ao`` acked offset (``aol`` a list for ``bAck``),
``so``, ``c``, ``t``, ``q``, ``pt``, ``bn``.

Orderly lock (``oLock``, ours: RocketMQ keeps its ``ConsumerOrderInfo`` in a broker-local JSON
file, which a Raft failover would lose): the checkpoint body of an orderly pop plus ``ac`` (the
attempt number, ``orderCountInfo``), put on the revive queue without a deliver time (the timer
never sees it, the revive service skips it), and ``bm``: the bitmap of its messages acked out of
order (put again with each such ack). Every replica keeps the newest per queue, so a new leader
keeps the queue locked until the holder's invisible time passes and never hands out again what
was acked under it.

Request mode (``rMode``, ours: RocketMQ's ``MessageRequestModeManager`` keeps SET_MESSAGE_REQUEST_MODE
in a broker-local JSON file): ``t`` topic, ``c`` group, ``m`` PULL or POP, ``n`` popShareQueueNum, on
revive queue 0 without a deliver time; every replica keeps the newest per (topic, group).

Pure: values to ``Message`` and stored message fields back to values. A body that does not parse
raises ``RecordError`` (the reader skips and counts that record: a client cannot write the
internal topic, so it is damage, never input).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from mqbench.broker.formats.record import Message
from mqbench.errors import CorruptDataError
from mqbench.broker.formats.properties import (
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_UNIQ_KEY,
)

CK_TAG, ACK_TAG, BATCH_ACK_TAG, ORDER_LOCK_TAG, REQUEST_MODE_TAG = "ck", "ack", "bAck", "oLock", "rMode"


class RecordError(CorruptDataError):
    """A ck/ack message whose body is not what the broker wrote."""


@dataclass(frozen=True)
class CheckPoint:
    """One pop of up to ``len(offsets)`` messages from one queue (``PopCheckPoint``)."""

    group: str
    topic: str                 # the topic popped from (a retry topic for redelivered messages)
    queue_id: int
    start_offset: int
    offsets: tuple[int, ...]   # queue offsets handed out, ascending, the first == start_offset
    pop_time_ms: int
    invisible_time_ms: int
    revive_qid: int
    broker_name: str
    reput_times: int = 0
    bitmap: int = 0            # bit i: offsets[i] acked before the checkpoint was written

    @property
    def revive_time_ms(self) -> int:
        return self.pop_time_ms + self.invisible_time_ms

    @property
    def acked_offsets(self) -> tuple[int, ...]:
        return tuple(o for i, o in enumerate(self.offsets) if self.bitmap >> i & 1)

    @property
    def key(self) -> "CkKey":
        return (self.group, self.topic, self.queue_id, self.start_offset, self.pop_time_ms)


#: identity of a checkpoint, as an ack names it: (group, topic, queue id, start offset, pop time)
CkKey = tuple[str, str, int, int, int]


@dataclass(frozen=True)
class OrderLock:
    """An orderly pop: ``offsets`` of one queue held from ``pop_time_ms`` for ``invisible_time_ms``
    (renewed by a change of invisible time: a newer record, same ``start_offset``)."""

    group: str
    topic: str
    queue_id: int
    start_offset: int
    offsets: tuple[int, ...]
    pop_time_ms: int
    invisible_time_ms: int
    attempts: int
    broker_name: str
    bitmap: int = 0            # bit i: offsets[i] acked out of order (the consumer offset cannot pass it)

    @property
    def until_ms(self) -> int:
        return self.pop_time_ms + self.invisible_time_ms

    @property
    def acked_offsets(self) -> tuple[int, ...]:
        return tuple(o for i, o in enumerate(self.offsets) if self.bitmap >> i & 1)


@dataclass(frozen=True)
class RequestMode:
    """A group's message request mode for a topic (SET_MESSAGE_REQUEST_MODE)."""

    topic: str
    group: str
    mode: str                  # "PULL" | "POP"
    pop_share_queue_num: int = 0


@dataclass(frozen=True)
class Ack:
    """Offsets acked under one checkpoint (``AckMsg``; ``BatchAckMsg`` when several)."""

    group: str
    topic: str
    queue_id: int
    start_offset: int
    pop_time_ms: int
    offsets: tuple[int, ...]
    broker_name: str
    revive_time_ms: int = 0    # not in RocketMQ's body; our deliver time (kept in the property)

    @property
    def key(self) -> CkKey:
        return (self.group, self.topic, self.queue_id, self.start_offset, self.pop_time_ms)


def _dump(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def ck_message(ck: CheckPoint, revive_topic: str) -> Message:
    """The checkpoint as the message to put (deliver time = its revive time)."""
    body = {"so": ck.start_offset, "pt": ck.pop_time_ms, "it": ck.invisible_time_ms, "bm": ck.bitmap,
            "n": len(ck.offsets), "q": ck.queue_id, "t": ck.topic, "c": ck.group, "ro": -1,
            "d": [o - ck.start_offset for o in ck.offsets], "bn": ck.broker_name, "rp": ck.reput_times}
    key = f"{ck.topic}{ck.group}{ck.queue_id}{ck.start_offset}{ck.pop_time_ms}ck"
    return Message(topic=revive_topic, body=_dump(body), queue_id=ck.revive_qid,
                   properties={PROPERTY_TAGS: CK_TAG, PROPERTY_KEYS: key, PROPERTY_UNIQ_KEY: key,
                               PROPERTY_TIMER_DELIVER_MS: str(ck.revive_time_ms)})


def ck_done_message(ck: CheckPoint, revive_topic: str) -> Message:
    """A checkpoint acked in full before it was written (its bitmap covers every offset): put
    straight on the revive log, no deliver time: nothing of it will ever be revived, it only
    tells every replica that its offsets were handed out and acked."""
    msg = ck_message(ck, revive_topic)
    return replace(msg, properties={k: v for k, v in msg.properties.items() if k != PROPERTY_TIMER_DELIVER_MS})


def order_lock_message(lock: OrderLock, revive_topic: str, revive_qid: int) -> Message:
    """The orderly lock as the message to put (no deliver time: see the module doc)."""
    body: dict[str, object] = {
        "so": lock.start_offset, "pt": lock.pop_time_ms, "it": lock.invisible_time_ms, "n": len(lock.offsets),
        "q": lock.queue_id, "t": lock.topic, "c": lock.group, "d": [o - lock.start_offset for o in lock.offsets],
        "bn": lock.broker_name, "ac": lock.attempts}
    key = f"{lock.topic}{lock.group}{lock.queue_id}{lock.start_offset}{lock.pop_time_ms}{ORDER_LOCK_TAG}"
    if lock.bitmap:
        body["bm"] = lock.bitmap
        key += f"bm{lock.bitmap}"
    return Message(topic=revive_topic, body=_dump(body), queue_id=revive_qid,
                   properties={PROPERTY_TAGS: ORDER_LOCK_TAG, PROPERTY_KEYS: key, PROPERTY_UNIQ_KEY: key})


def request_mode_message(mode: RequestMode, revive_topic: str) -> Message:
    """The request mode as the message to put (revive queue 0, no deliver time)."""
    body = {"t": mode.topic, "c": mode.group, "m": mode.mode, "n": mode.pop_share_queue_num}
    return Message(topic=revive_topic, body=_dump(body), queue_id=0, properties={PROPERTY_TAGS: REQUEST_MODE_TAG})


def ack_message(ack: Ack, revive_topic: str, revive_qid: int) -> Message:
    """The ack as the message to put: ``ack`` for one offset, ``bAck`` for several."""
    body: dict[str, object] = {"so": ack.start_offset, "c": ack.group, "t": ack.topic, "q": ack.queue_id,
                               "pt": ack.pop_time_ms, "bn": ack.broker_name}
    if len(ack.offsets) == 1:
        tag, body["ao"] = ACK_TAG, ack.offsets[0]
    else:
        tag, body["aol"] = BATCH_ACK_TAG, list(ack.offsets)
    key = f"{ack.topic}{ack.group}{ack.queue_id}{ack.start_offset}{ack.pop_time_ms}{tag}{ack.offsets[0]}"
    return Message(topic=revive_topic, body=_dump(body), queue_id=revive_qid,
                   properties={PROPERTY_TAGS: tag, PROPERTY_KEYS: key, PROPERTY_UNIQ_KEY: key,
                               PROPERTY_TIMER_DELIVER_MS: str(ack.revive_time_ms)})


def parse(tag: str | None, body: bytes, deliver_ms: int = 0,
          revive_qid: int = -1) -> CheckPoint | Ack | OrderLock | RequestMode | None:
    """A stored revive-log message back to a ``CheckPoint``, ``Ack``, ``OrderLock`` or
    ``RequestMode`` (None: another tag);
    ``deliver_ms`` is its TIMER_DELIVER_MS, kept as an ack's revive time; ``revive_qid`` the revive
    queue it was put to (a checkpoint's ``revive_qid``)."""
    if tag not in (CK_TAG, ACK_TAG, BATCH_ACK_TAG, ORDER_LOCK_TAG, REQUEST_MODE_TAG):
        return None
    try:
        doc = json.loads(bytes(body))
        if tag == REQUEST_MODE_TAG:
            mode = str(doc["m"])
            if mode not in ("PULL", "POP"):
                raise ValueError(f"mode {mode!r}")
            return RequestMode(str(doc["t"]), str(doc["c"]), mode, int(doc.get("n", 0)))
        group, topic, queue_id = str(doc["c"]), str(doc["t"]), int(doc["q"])
        so, pop_time, broker = int(doc["so"]), int(doc["pt"]), str(doc.get("bn", ""))
        if tag == CK_TAG:
            offsets = tuple(so + int(d) for d in doc.get("d") or range(int(doc["n"])))
            return CheckPoint(group, topic, queue_id, so, offsets, pop_time, int(doc["it"]), revive_qid, broker,
                              int(doc.get("rp", 0)), int(doc.get("bm", 0)))
        if tag == ORDER_LOCK_TAG:
            offsets = tuple(so + int(d) for d in doc.get("d") or range(int(doc["n"])))
            return OrderLock(group, topic, queue_id, so, offsets, pop_time, int(doc["it"]), int(doc.get("ac", 0)),
                             broker, int(doc.get("bm", 0)))
        acked = [int(doc["ao"])] if tag == ACK_TAG else [int(v) for v in doc["aol"]]
        return Ack(group, topic, queue_id, so, pop_time, tuple(acked), broker, deliver_ms)
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{tag} message body does not parse: {exc}") from None
