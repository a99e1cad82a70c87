"""RocketMQ's POP receipt handle (``extraInfo``, ``ExtraInfoUtil``) and the pop response's offset strings.

A receipt handle is eight fields separated by one space (``MessageConst.KEY_SEPARATOR``)::

    ckQueueOffset popTime invisibleTime reviveQid topicType brokerName queueId msgQueueOffset
    0             1       2             3         4         5          6       7

* ``ckQueueOffset``: the checkpoint's start offset (the first queue offset that pop handed out from
  that queue; a change of invisible time makes a one-message checkpoint whose start is the message);
* ``popTime``/``invisibleTime`` (ms): when the pop happened and for how long the messages are
  invisible: the message comes back at ``popTime + invisibleTime`` unless acked;
* ``reviveQid``: the queue of ``rmq_sys_REVIVE_LOG_<cluster>`` the checkpoint went to;
  ``POP_ORDER_REVIVE_QUEUE`` (999) marks an orderly pop, which writes no checkpoint;
* ``topicType``: ``0`` the topic itself, ``1`` its POP retry topic ``%RETRY%<group>_<topic>``,
  ``2`` the v2 retry topic ``%RETRY%<group>+<topic>``: an ack names the original topic and the
  broker finds the queue the message was popped from with this field;
* ``brokerName``, ``queueId``, ``msgQueueOffset``: where the message is.

The pop response's header strings (``ExtraInfoUtil.buildStartOffsetInfo`` / ``buildMsgOffsetInfo`` /
``buildOrderCountInfo``), from which RocketMQ's Java client builds each message's handle itself:
entries joined by ``;``, each ``topicType queueId startOffset`` (start), ``topicType queueId
off1,off2,...`` (message offsets), ``topicType qo<queueId>%<offset> count`` (order counts).

Pure: strings in, values out. A malformed handle raises ``HandleError`` (a ``UserError``: the
request is refused with its text, the broker keeps serving).
"""
from __future__ import annotations

from dataclasses import dataclass

from mqbench.errors import UserError

SEP = " "
NORMAL_TOPIC, RETRY_TOPIC, RETRY_TOPIC_V2 = "0", "1", "2"
RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
POP_ORDER_REVIVE_QUEUE = 999
REVIVE_TOPIC_PREFIX = "rmq_sys_REVIVE_LOG_"
REVIVE_GROUP = "CID_RMQ_SYS_REVIVE_GROUP"


class HandleError(UserError):
    """A receipt handle (or offset-info string) that does not parse."""


def revive_topic(cluster: str) -> str:
    """The revive log of a cluster: ``rmq_sys_REVIVE_LOG_<cluster>`` (``KeyBuilder``)."""
    return REVIVE_TOPIC_PREFIX + cluster


def retry_topic(group: str, topic: str) -> str:
    """The POP retry topic of ``group`` on ``topic`` (``KeyBuilder.buildPopRetryTopicV1``)."""
    return f"{RETRY_PREFIX}{group}_{topic}"


def dlq_topic(group: str) -> str:
    return DLQ_PREFIX + group


def topic_type(topic: str) -> str:
    """``0`` for a topic, ``1`` for a POP retry topic (v1), ``2`` for a v2 one (``+`` separator)."""
    if not topic.startswith(RETRY_PREFIX):
        return NORMAL_TOPIC
    return RETRY_TOPIC_V2 if "+" in topic else RETRY_TOPIC


def real_topic(topic: str, group: str, kind: str) -> str:
    """The topic a handle's message was popped from, given the topic the client names
    (``ExtraInfoUtil.getRealTopic``)."""
    if kind == NORMAL_TOPIC:
        return topic
    if kind == RETRY_TOPIC:
        return retry_topic(group, topic)
    if kind == RETRY_TOPIC_V2:
        return f"{RETRY_PREFIX}{group}+{topic}"
    raise HandleError(f"receipt handle topic type {kind!r} is not 0, 1 or 2")


@dataclass(frozen=True)
class Handle:
    """One parsed receipt handle (module doc)."""

    ck_queue_offset: int
    pop_time_ms: int
    invisible_time_ms: int
    revive_qid: int
    kind: str
    broker_name: str
    queue_id: int
    offset: int

    @property
    def orderly(self) -> bool:
        return self.revive_qid == POP_ORDER_REVIVE_QUEUE

    @property
    def revive_time_ms(self) -> int:
        return self.pop_time_ms + self.invisible_time_ms

    def text(self) -> str:
        return SEP.join(str(v) for v in (self.ck_queue_offset, self.pop_time_ms, self.invisible_time_ms,
                                         self.revive_qid, self.kind, self.broker_name, self.queue_id, self.offset))


def build(ck_queue_offset: int, pop_time_ms: int, invisible_time_ms: int, revive_qid: int, topic: str,
          broker_name: str, queue_id: int, offset: int) -> str:
    """The handle of the message at ``offset`` of ``topic``'s queue ``queue_id`` (``topic`` is the
    topic it was popped from: a retry topic gives type 1)."""
    return Handle(ck_queue_offset, pop_time_ms, invisible_time_ms, revive_qid, topic_type(topic), broker_name,
                  queue_id, offset).text()


def parse(extra_info: str) -> Handle:
    """The handle in ``extra_info``; ``HandleError`` when it is not one."""
    parts = (extra_info or "").split(SEP)
    if len(parts) < 8:
        raise HandleError(f"receipt handle {extra_info!r} has {len(parts)} fields, a POP handle has 8")
    try:
        ints = [int(parts[i]) for i in (0, 1, 2, 3, 6, 7)]
    except ValueError:
        raise HandleError(f"receipt handle {extra_info!r} has a non-numeric offset, time or queue") from None
    if parts[4] not in (NORMAL_TOPIC, RETRY_TOPIC, RETRY_TOPIC_V2) or not parts[5]:
        raise HandleError(f"receipt handle {extra_info!r} has a bad topic type or no broker name")
    if min(ints) < 0:
        raise HandleError(f"receipt handle {extra_info!r} has a negative field")
    ck, pop_time, invisible, revive_qid, queue_id, offset = ints
    return Handle(ck, pop_time, invisible, revive_qid, parts[4], parts[5], queue_id, offset)


def start_offset_info(entries: list[tuple[str, int, int]]) -> str:
    """``startOffsetInfo`` for (topic, queue id, start offset) entries."""
    return ";".join(f"{topic_type(t)}{SEP}{q}{SEP}{o}" for t, q, o in entries)


def msg_offset_info(entries: list[tuple[str, int, list[int]]]) -> str:
    """``msgOffsetInfo`` for (topic, queue id, [message offsets]) entries."""
    return ";".join(f"{topic_type(t)}{SEP}{q}{SEP}{','.join(str(o) for o in offs)}" for t, q, offs in entries)


def order_count_info(entries: list[tuple[str, int, int, int]]) -> str:
    """``orderCountInfo`` for (topic, queue id, offset, times consumed before) entries."""
    return ";".join(f"{topic_type(t)}{SEP}qo{q}%{o}{SEP}{c}" for t, q, o, c in entries)


def parse_offset_info(text: str) -> dict[str, list[int]]:
    """``startOffsetInfo`` or ``msgOffsetInfo`` as ``{"<type>@<queueId>": [offsets]}``, the keys
    RocketMQ's client uses."""
    out: dict[str, list[int]] = {}
    if not text:
        return out
    for one in text.split(";"):
        parts = one.split(SEP)
        if len(parts) != 3 or f"{parts[0]}@{parts[1]}" in out:
            raise HandleError(f"offset info {text!r} is malformed at {one!r}")
        try:
            out[f"{parts[0]}@{parts[1]}"] = [int(v) for v in parts[2].split(",")]
        except ValueError:
            raise HandleError(f"offset info {text!r} has a non-numeric offset") from None
    return out
