"""Headers of RocketMQ 5's POP requests (``PopMessageRequestHeader``, ``AckMessageRequestHeader``,
``ChangeInvisibleTimeRequestHeader``, ``PeekMessageRequestHeader``, ``NotificationRequestHeader``
and their responses), and the JSON bodies of BATCH_ACK_MESSAGE, QUERY_ASSIGNMENT and
SET_MESSAGE_REQUEST_MODE. Field names are RocketMQ's; the codes (``codes.POP_MESSAGE``...) are
above 65535, so these requests travel in JSON headers only.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

from .headers import HeaderError, _Header, _wire, dump_json_body, parse_json_body


@dataclass
class PopMessageHeader(_Header):
    REQUEST: ClassVar[str] = "POP_MESSAGE"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    max_msg_nums: int = _wire("maxMsgNums")
    invisible_time_ms: int = _wire("invisibleTime")
    poll_time_ms: int = _wire("pollTime", 0)
    born_time_ms: int = _wire("bornTime", 0)
    init_mode: int = _wire("initMode", 0)
    exp_type: str | None = _wire("expType", None)
    exp: str | None = _wire("exp", None)
    order: bool = _wire("order", False)
    attempt_id: str | None = _wire("attemptId", None)


@dataclass
class PopMessageResponseHeader(_Header):
    REQUEST: ClassVar[str] = "POP_MESSAGE response"
    pop_time_ms: int = _wire("popTime", 0)
    invisible_time_ms: int = _wire("invisibleTime", 0)
    revive_qid: int = _wire("reviveQid", 0)
    rest_num: int = _wire("restNum", 0)
    start_offset_info: str | None = _wire("startOffsetInfo", None)
    msg_offset_info: str | None = _wire("msgOffsetInfo", None)
    order_count_info: str | None = _wire("orderCountInfo", None)


@dataclass
class AckMessageHeader(_Header):
    REQUEST: ClassVar[str] = "ACK_MESSAGE"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    extra_info: str = _wire("extraInfo")
    offset: int = _wire("offset")


@dataclass
class ChangeInvisibleTimeHeader(_Header):
    REQUEST: ClassVar[str] = "CHANGE_MESSAGE_INVISIBLETIME"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    extra_info: str = _wire("extraInfo")
    offset: int = _wire("offset")
    invisible_time_ms: int = _wire("invisibleTime")


@dataclass
class ChangeInvisibleTimeResponseHeader(_Header):
    REQUEST: ClassVar[str] = "CHANGE_MESSAGE_INVISIBLETIME response"
    pop_time_ms: int = _wire("popTime", 0)
    invisible_time_ms: int = _wire("invisibleTime", 0)
    revive_qid: int = _wire("reviveQid", 0)


@dataclass
class PeekMessageHeader(_Header):
    REQUEST: ClassVar[str] = "PEEK_MESSAGE"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    max_msg_nums: int = _wire("maxMsgNums")


@dataclass
class NotificationHeader(_Header):
    REQUEST: ClassVar[str] = "NOTIFICATION"
    consumer_group: str = _wire("consumerGroup")
    topic: str = _wire("topic")
    queue_id: int = _wire("queueId")
    poll_time_ms: int = _wire("pollTime", 0)
    born_time_ms: int = _wire("bornTime", 0)
    order: bool = _wire("order", False)
    attempt_id: str | None = _wire("attemptId", None)


@dataclass
class NotificationResponseHeader(_Header):
    REQUEST: ClassVar[str] = "NOTIFICATION response"
    has_msg: bool = _wire("hasMsg", False)
    polling_full: bool = _wire("pollingFull", False)


def _bitset_offsets(value: Any, start: int) -> list[int]:
    """A BatchAck's ``b``: Java ``BitSet.toByteArray`` (little-endian bits, base64 in JSON) of
    offsets minus ``so``; a list of those numbers is accepted too."""
    if isinstance(value, list):
        return [start + int(v) for v in value]
    try:
        raw = base64.b64decode(str(value), validate=True)
    except ValueError:
        raise HeaderError(f"BATCH_ACK_MESSAGE: bit set {value!r} is not base64") from None
    return [start + i * 8 + bit for i, byte in enumerate(raw) for bit in range(8) if byte >> bit & 1]


def bitset_b64(offsets: list[int], start: int) -> str:
    bits = bytearray((max(offsets) - start) // 8 + 1 if offsets else 0)
    for o in offsets:
        bits[(o - start) // 8] |= 1 << ((o - start) % 8)
    return base64.b64encode(bytes(bits)).decode()


def parse_batch_ack(body: bytes) -> list[dict[str, Any]]:
    """BATCH_ACK_MESSAGE body (``BatchAckMessageRequestBody``) as a list of
    ``{group, topic, retry, start_offset, queue_id, revive_qid, pop_time_ms, invisible_time_ms,
    offsets}``."""
    doc = parse_json_body(body, "BATCH_ACK_MESSAGE")
    acks = doc.get("acks") if isinstance(doc, dict) else None
    if not isinstance(acks, list):
        raise HeaderError("BATCH_ACK_MESSAGE: body has no acks list")
    out = []
    for one in acks:
        try:
            start = int(one["so"])
            out.append({"group": str(one["c"]), "topic": str(one["t"]), "retry": str(one.get("r", "0")),
                        "start_offset": start, "queue_id": int(one["q"]), "revive_qid": int(one["rq"]),
                        "pop_time_ms": int(one["pt"]), "invisible_time_ms": int(one["it"]),
                        "offsets": _bitset_offsets(one["b"], start)})
        except (KeyError, TypeError, ValueError) as exc:
            raise HeaderError(f"BATCH_ACK_MESSAGE: malformed ack {one!r}: {exc}") from None
    return out


def batch_ack_body(broker_name: str, acks: list[dict[str, Any]]) -> bytes:
    """The body ``parse_batch_ack`` reads (what our client sends)."""
    return dump_json_body({"brokerName": broker_name, "acks": [
        {"c": a["group"], "t": a["topic"], "r": a.get("retry", "0"), "so": a["start_offset"], "q": a["queue_id"],
         "rq": a["revive_qid"], "pt": a["pop_time_ms"], "it": a["invisible_time_ms"],
         "b": bitset_b64(a["offsets"], a["start_offset"])} for a in acks]})
