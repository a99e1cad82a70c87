"""What the gRPC endpoint maps between ``apache.rocketmq.v2`` messages and the broker's own values.

Pure apart from the generated message classes handed in (``ns`` from ``stubs.load()``): no I/O.

Sending (``send_properties``): a v2 message's system properties become the properties the remoting
path stores (the proxy's ``SendMessageActivity``): ``message_id`` -> ``UNIQ_KEY``, ``tag`` ->
``TAGS``, ``keys`` -> ``KEYS`` (space-joined), ``message_group`` -> ``__SHARDINGKEY``,
``delivery_timestamp`` -> ``TIMER_DELIVER_MS`` (the timer store delivers it); user properties as
they are. A user property with a system name is refused (``ILLEGAL_MESSAGE_PROPERTY_KEY``). A FIFO
message's queue is ``fifo_queue(group, n)``: the same group always lands on the same queue.

Receiving (``to_v2``): the stored message back, with ``receipt_handle`` the POP handle,
``delivery_attempt`` = reconsume times + 1, the original topic for a redelivery (its
``RETRY_TOPIC``), an MD5 body digest and IDENTITY encoding (a compressed body is decompressed).
"""
from __future__ import annotations

import hashlib
import zlib

from mqbench.broker.formats import record as rec
from mqbench.broker.formats.compression import SYSFLAG_COMPRESSION_BITS, decompress_body
from mqbench.broker.formats.properties import (
    PROPERTY_BUYER_ID,
    PROPERTY_CONSUME_START_TIME,
    PROPERTY_DELAY,
    PROPERTY_INNER_BASE,
    PROPERTY_INNER_NUM,
    PROPERTY_KEYS,
    PROPERTY_MAX_OFFSET,
    PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_MIN_OFFSET,
    PROPERTY_MSG_REGION,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_PGROUP,
    PROPERTY_POP_CK,
    PROPERTY_POP_CK_OFFSET,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_RECONSUME_TIME,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_SHARDING_KEY,
    PROPERTY_START_DELIVER_TIME,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_DEL_UNIQKEY,
    PROPERTY_TIMER_DEQUEUE_MS,
    PROPERTY_TIMER_ENQUEUE_MS,
    PROPERTY_TIMER_OUT_MS,
    PROPERTY_TIMER_ROLL_TIMES,
    PROPERTY_TRACE_ON,
    PROPERTY_TRAN_MSG,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
)

#: Properties the broker reads or writes itself: never a user property on the way in or out.
SYSTEM_PROPERTIES = frozenset({
    PROPERTY_UNIQ_KEY, PROPERTY_TAGS, PROPERTY_KEYS, PROPERTY_SHARDING_KEY, PROPERTY_TIMER_DELIVER_MS, PROPERTY_RETRY_TOPIC, PROPERTY_REAL_TOPIC,
    PROPERTY_POP_CK, PROPERTY_DELAY, PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_DELAY_MS, PROPERTY_TIMER_OUT_MS, PROPERTY_TIMER_ROLL_TIMES, PROPERTY_REAL_QID,
    PROPERTY_WAIT, PROPERTY_MSG_REGION, PROPERTY_TRACE_ON, PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_RECONSUME_TIME, PROPERTY_MAX_RECONSUME_TIMES, PROPERTY_POP_CK_OFFSET,
    PROPERTY_CONSUME_START_TIME, PROPERTY_TRAN_MSG, PROPERTY_PGROUP, PROPERTY_MIN_OFFSET, PROPERTY_MAX_OFFSET, PROPERTY_BUYER_ID, PROPERTY_START_DELIVER_TIME,
    PROPERTY_TIMER_ENQUEUE_MS, PROPERTY_TIMER_DEQUEUE_MS, PROPERTY_TIMER_DEL_UNIQKEY, PROPERTY_INNER_NUM, PROPERTY_INNER_BASE,
})
DELIVERY_AHEAD_MS_MAX = 24 * 3600 * 1000     # the proxy's maxDelayTimeMills: one day


class Invalid(Exception):
    """A request the broker refuses: ``code`` is the v2 ``Code`` name, the text says why."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code


def fifo_queue(message_group: str, queue_nums: int) -> int:
    """The queue of a FIFO message group: the same group always the same queue (SHA-256 as the
    clients' own selector, so a client that picked a queue agrees with the broker)."""
    digest = hashlib.sha256(message_group.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % max(queue_nums, 1)


def send_properties(ns, message, now_ms: int) -> dict[str, str]:
    """The properties the broker stores for v2 ``message`` (module doc); ``Invalid`` when it breaks a rule."""
    sp = message.system_properties
    props: dict[str, str] = {}
    for key, value in message.user_properties.items():
        if key in SYSTEM_PROPERTIES:
            raise Invalid("ILLEGAL_MESSAGE_PROPERTY_KEY", f"user property {key!r} is a system property name")
        props[key] = value
    if not sp.message_id:
        raise Invalid("ILLEGAL_MESSAGE_ID", "the message has no message_id")
    props[PROPERTY_UNIQ_KEY] = sp.message_id
    if sp.HasField("tag"):
        if not sp.tag.strip() or "|" in sp.tag:
            raise Invalid("ILLEGAL_MESSAGE_TAG", f"tag {sp.tag!r} is blank or holds '|'")
        props[PROPERTY_TAGS] = sp.tag
    if sp.keys:
        if any(not k.strip() for k in sp.keys):
            raise Invalid("ILLEGAL_MESSAGE_KEY", "a message key is blank")
        props[PROPERTY_KEYS] = " ".join(sp.keys)
    if sp.HasField("message_group"):
        if not sp.message_group.strip():
            raise Invalid("ILLEGAL_MESSAGE_GROUP", "message_group is blank")
        props[PROPERTY_SHARDING_KEY] = sp.message_group
    if sp.HasField("delivery_timestamp"):
        at_ms = sp.delivery_timestamp.seconds * 1000 + sp.delivery_timestamp.nanos // 1_000_000
        if at_ms - now_ms > DELIVERY_AHEAD_MS_MAX:
            raise Invalid("ILLEGAL_DELIVERY_TIME", f"delivery_timestamp is {at_ms - now_ms} ms ahead, over the "
                                                   f"maximum of {DELIVERY_AHEAD_MS_MAX} ms")
        if at_ms > now_ms:
            props[PROPERTY_TIMER_DELIVER_MS] = str(at_ms)
    if sp.HasField("message_group") and sp.HasField("delivery_timestamp"):
        raise Invalid("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", "a message cannot be FIFO and delayed at once")
    return props


def body_of(ns, message) -> bytes:
    """The v2 message's body as stored (GZIP bodies are inflated: the broker stores plain bodies)."""
    body = bytes(message.body)
    if message.system_properties.body_encoding == ns.pb.Encoding.GZIP:
        try:
            body = zlib.decompress(body, 47)     # gzip or zlib header, as the proxy accepts
        except zlib.error as exc:
            raise Invalid("MESSAGE_CORRUPTED", f"GZIP body does not inflate: {exc}") from None
    return body


def _timestamp(ts, ms: int) -> None:
    ts.seconds, ts.nanos = ms // 1000, (ms % 1000) * 1_000_000


def message_type(ns, props: dict[str, str]) -> int:
    if PROPERTY_SHARDING_KEY in props:
        return ns.pb.MessageType.FIFO
    if PROPERTY_TIMER_DELIVER_MS in props or PROPERTY_TIMER_OUT_MS in props:
        return ns.pb.MessageType.DELAY
    return ns.pb.MessageType.NORMAL


def to_v2(ns, msg: rec.Message, handle: str, invisible_ms: int, topic: str, resource_namespace: str = ""):
    """The v2 ``Message`` a consumer receives for stored ``msg`` (module doc)."""
    body = bytes(msg.body)
    if msg.sysflag & SYSFLAG_COMPRESSION_BITS:
        body = decompress_body(body, msg.sysflag, size_max=64 << 20)
    props = msg.properties
    out = ns.pb.Message()
    out.topic.name = topic
    out.topic.resource_namespace = resource_namespace
    for key, value in props.items():
        if key not in SYSTEM_PROPERTIES:
            out.user_properties[key] = value
    sp = out.system_properties
    if props.get(PROPERTY_TAGS):
        sp.tag = props[PROPERTY_TAGS]
    sp.keys.extend(msg.keys)
    sp.message_id = props.get(PROPERTY_UNIQ_KEY) or rec.message_id(msg.store_host, msg.physical_offset)
    sp.body_digest.type = ns.pb.DigestType.MD5
    sp.body_digest.checksum = hashlib.md5(body).hexdigest().upper()
    sp.body_encoding = ns.pb.Encoding.IDENTITY
    sp.message_type = message_type(ns, props)
    _timestamp(sp.born_timestamp, msg.born_timestamp_ms)
    sp.born_host = msg.born_host[0]
    _timestamp(sp.store_timestamp, msg.store_timestamp_ms)
    sp.store_host = f"{msg.store_host[0]}:{msg.store_host[1]}"
    if PROPERTY_TIMER_DELIVER_MS in props:
        try:
            _timestamp(sp.delivery_timestamp, int(props[PROPERTY_TIMER_DELIVER_MS]))
        except ValueError:
            pass
    sp.receipt_handle = handle
    sp.queue_id = msg.queue_id
    sp.queue_offset = msg.queue_offset
    sp.invisible_duration.seconds, sp.invisible_duration.nanos = invisible_ms // 1000, (invisible_ms % 1000) * 10**6
    sp.delivery_attempt = msg.reconsume_times + 1
    if PROPERTY_SHARDING_KEY in props:
        sp.message_group = props[PROPERTY_SHARDING_KEY]
    out.body = body
    return out


def duration_ms(duration, default_ms: int) -> int:
    """A protobuf Duration in ms (``default_ms`` when unset or zero)."""
    ms = duration.seconds * 1000 + duration.nanos // 1_000_000
    return ms if ms > 0 else default_ms
