"""What the client sends and receives: outgoing messages, client message ids, pulled-body decoding.

Outgoing properties follow RocketMQ's ``MessageConst``: ``TAGS``, ``KEYS`` (space-separated),
``UNIQ_KEY`` (the client message id), ``WAIT``, ``DELAY`` (level 1-18), ``TIMER_DELIVER_MS`` /
``TIMER_DELAY_MS`` (5.x arbitrary delay). Pulled bodies are concatenated stored-message records
(``mqbench.broker.formats.record``); a record whose sysflag has INNER_BATCH carries a client batch
body (``mqbench.broker.formats.batch``) that is unwrapped into one message per item with queue
offsets ``base + i``; a compressed body is decompressed with the codec named by the sysflag's
compression-type bits, zlib when they are 0 as RocketMQ 4.x and the C++ client write it (the flag
applies to the record's body, before any unwrapping: an inner batch compressed whole is
decompressed, then unwrapped; see ``mqbench.broker.formats.compression``). Every decompression is
bounded by ``body_size_max``.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable

from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_fields
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.compression import decompress_body, inner_batch_items
from mqbench.codecs.registry import BODY_SIZE_MAX_BYTES, Codec
from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.formats.properties import (
    PROPERTY_DELAY,
    PROPERTY_INNER_BASE,
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
)

DELAY_LEVEL_MAX = 18

_PLAIN_FLAGS = record_layout.SYSFLAG_INNER_BATCH | record_layout.SYSFLAG_COMPRESSED  # a record that is not one plain message
_ID_FIXED = struct.Struct(">4shi")  # ip, pid (short), a per-client random int (Java: classloader hash)
_ID_TAIL = struct.Struct(">iH")     # ms since the start of the month (truncated), counter


@dataclass
class OutgoingMessage:
    """A message to send. At most one of ``delay_level``, ``deliver_at_ms``, ``delay_ms``."""

    topic: str
    body: bytes
    tags: str | None = None
    keys: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    delay_level: int = 0
    deliver_at_ms: int | None = None
    delay_ms: int | None = None
    flag: int = 0

    def wire_properties(self, uniq_key: str) -> dict[str, str]:
        """The property map sent (user properties first, then RocketMQ's own keys)."""
        chosen = [n for n, v in (("delay_level", self.delay_level), ("deliver_at_ms", self.deliver_at_ms),
                                 ("delay_ms", self.delay_ms)) if v]
        if len(chosen) > 1:
            raise UserError(f"message to {self.topic!r}: choose one of {', '.join(chosen)}")
        if not 0 <= self.delay_level <= DELAY_LEVEL_MAX:
            raise UserError(f"delay level {self.delay_level} is outside 1..{DELAY_LEVEL_MAX}")
        props = dict(self.properties)
        if self.tags:
            props[PROPERTY_TAGS] = self.tags
        if self.keys:
            props[PROPERTY_KEYS] = " ".join(self.keys)
        if self.delay_level:
            props[PROPERTY_DELAY] = str(self.delay_level)
        if self.deliver_at_ms:
            props[PROPERTY_TIMER_DELIVER_MS] = str(self.deliver_at_ms)
        if self.delay_ms:
            props[PROPERTY_TIMER_DELAY_MS] = str(self.delay_ms)
        props[PROPERTY_UNIQ_KEY] = uniq_key
        props.setdefault(PROPERTY_WAIT, "true")
        return props


class UniqueIdGenerator:
    """Client message ids (``UNIQ_KEY``) in the layout of RocketMQ's ``MessageClientIDSetter``:
    32 upper-case hex digits = IPv4 (4 bytes), pid (2), a per-client random int (4), milliseconds
    since the start of the id's month (4, as Java's int), a counter (2). The clock is injected."""

    def __init__(self, ip: str, pid: int, salt: int, clock_ms: Callable[[], int], month_start_ms: int) -> None:
        packed_ip = ipaddress.ip_address(ip).packed[-4:]
        self._fixed = _ID_FIXED.pack(packed_ip, pid & 0x7FFF, salt & 0x7FFFFFFF).hex().upper()
        self._clock_ms = clock_ms
        self._month_start_ms = month_start_ms
        self._counter = 0

    def next(self) -> str:
        return self.next_at(self._clock_ms())

    def next_at(self, now_ms: int) -> str:
        """``next`` with the clock already read (``now_ms``, from the same clock): a sender that
        also stamps the request with that reading reads the clock once per send."""
        self._counter = (self._counter + 1) & 0xFFFF
        delta = (now_ms - self._month_start_ms) & 0x7FFFFFFF
        return self._fixed + _ID_TAIL.pack(delta, self._counter).hex().upper()

    def next_run(self, n: int) -> list[bytes]:
        """The next ``n`` ids as ASCII bytes, read at one clock reading: what ``n`` calls of
        ``next`` give (encoded) when the clock does not move between them, at a fraction of the
        cost (a batch's ids; the load generator's prebuilt batches)."""
        counter = self._counter
        self._counter = (counter + n) & 0xFFFF
        head = ("%s%08X" % (self._fixed, (self._clock_ms() - self._month_start_ms) & 0x7FFFFFFF)).encode()
        return [b"%s%04X" % (head, (counter + i) & 0xFFFF) for i in range(1, n + 1)]


class _LazyProperties:
    """``ReceivedMessage.properties``: a dict, or the record's property text (as a pull hands it
    out), decoded into the dict on first read, so a consumer that never looks at a message's
    properties never pays for their dict (a pull drain of small messages spent a tenth of its
    client CPU there)."""

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError("properties")      # no default: dataclasses reads this as a required field
        value = obj.__dict__["_properties"]
        if isinstance(value, str):
            value = obj.__dict__["_properties"] = rec.decode_properties_text(value) if value else {}
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__["_properties"] = value


def properties_of(messages: Iterable["ReceivedMessage"]) -> list[dict[str, str]]:
    """``[m.properties for m in messages]`` (the lazy ones decoded and kept, as
    ``_LazyProperties`` does) without a descriptor call per message."""
    out: list[dict[str, str]] = []
    append, decode = out.append, rec.decode_properties_text
    for message in messages:
        slots = message.__dict__
        value = slots["_properties"]
        if type(value) is str:
            value = slots["_properties"] = decode(value) if value else {}
        append(value)
    return out


@dataclass
class ReceivedMessage:
    """One consumed message, with what the harness needs for end-to-end latency. ``properties`` may
    be given as the record's property text; it reads as the decoded dict (``_LazyProperties``)."""

    topic: str
    broker_name: str
    queue_id: int
    queue_offset: int
    body: bytes
    properties: dict[str, str] = _LazyProperties()   # type: ignore[assignment]
    born_timestamp_ms: int
    store_timestamp_ms: int
    born_host: tuple[str, int]
    store_host: tuple[str, int]
    physical_offset: int
    sysflag: int                     # the stored record's (``body`` is always plain)
    reconsume_times: int
    flag: int = 0

    @property
    def tags(self) -> str | None:
        return self.properties.get(PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        return [k for k in self.properties.get(PROPERTY_KEYS, "").split(" ") if k]

    @property
    def msg_id(self) -> str:
        """The client message id (UNIQ_KEY), or the offset message id when the producer set none."""
        return self.properties.get(PROPERTY_UNIQ_KEY) or self.offset_msg_id

    @property
    def offset_msg_id(self) -> str:
        return rec.message_id(self.store_host, self.physical_offset)


def decode_pulled(body: bytes, broker_name: str, *, body_size_max: int = BODY_SIZE_MAX_BYTES,
                  codecs: dict[int, Codec] | None = None, check_crc: bool = True,
                  on_undecodable: Callable[[rec.Message, CorruptDataError], None] | None = None
                  ) -> list[ReceivedMessage]:
    """Every message in a PULL_MESSAGE body, inner batches unwrapped, bodies decompressed.

    Raises CorruptDataError (or CodecError) naming the record's offset in the body. With
    ``on_undecodable``, a record that is whole (its layout and CRC check out) but whose body does not
    decompress or unwrap is passed to it with the error and left out, as RocketMQ's client drops a
    message it cannot decode; a record whose layout is broken still raises (the records after it
    cannot be found).
    """
    out: list[ReceivedMessage] = []
    pos, end = 0, len(body)
    where = f"pull body from {broker_name}"
    append = out.append
    decode_fields, plain = record_fields.decode_fields, _PLAIN_FLAGS
    if type(body) is not bytes:
        body = bytes(body)      # one copy, so every field below is a slice of bytes
    message = ReceivedMessage
    decode_run = record_fields.decode_fields_run
    while pos < end:
        # the usual records from here on in one call (C, record_fields.decode_fields_run), else the next one
        run, _ = decode_run(body, pos, end, check_crc)
        if not run:
            run = (decode_fields(body, pos, end, check_crc, where),)
        for (size, topic, payload, text, queue_id, flag, queue_offset, physical_offset, sysflag, born_ms, born_host,
             store_ms, store_host, reconsume_times) in run:
            if not sysflag & plain:
                # the common case: one plain message, built straight from the record's fields (its
                # properties decoded when first read)
                append(message(topic, broker_name, queue_id, queue_offset, payload, text, born_ms, store_ms,
                               born_host, store_host, physical_offset, sysflag, reconsume_times, flag))
            else:
                msg, _ = rec.decode_message(body, pos, check_crc=check_crc, where=where)
                what = f"{where}, {msg.topic} offset {msg.queue_offset}"
                try:
                    _decode_body(out, msg, broker_name, what, pos, body_size_max, codecs)
                except CorruptDataError as exc:
                    if on_undecodable is None:
                        raise
                    on_undecodable(msg, exc)
            pos += size
    return out


def _decode_body(out: list[ReceivedMessage], msg: rec.Message, broker_name: str, what: str, pos: int,
                 body_size_max: int, codecs: dict[int, Codec] | None) -> None:
    """Append the message(s) of one whole record to ``out``: unwrapped, decompressed."""
    if msg.sysflag & record_layout.SYSFLAG_INNER_BATCH:
        items = inner_batch_items(msg.body, msg.sysflag, size_max=body_size_max, where=f"{what} (inner batch)",
                                  offset=pos, codecs=codecs)
        base = _inner_base(msg)
        out.extend(_received(msg, broker_name, base + i, item.body, item.properties, item.flag)
                   for i, item in enumerate(items))
    else:
        payload = decompress_body(msg.body, msg.sysflag, size_max=body_size_max, where=what, offset=pos,
                                  codecs=codecs)
        out.append(_received(msg, broker_name, msg.queue_offset, payload, msg.properties, msg.flag))


def _inner_base(msg: rec.Message) -> int:
    """INNER_BASE of an inner batch; spec 4.4 makes the record's QUEUEOFFSET the same value, so it
    stands in when the property is missing or not a number."""
    text = msg.properties.get(PROPERTY_INNER_BASE, "")
    return int(text) if text.isascii() and text.isdigit() else msg.queue_offset


def _received(msg: rec.Message, broker_name: str, queue_offset: int, body: bytes, properties: dict[str, str],
              flag: int) -> ReceivedMessage:
    return ReceivedMessage(topic=msg.topic, broker_name=broker_name, queue_id=msg.queue_id, queue_offset=queue_offset,
                           body=body, properties=properties, born_timestamp_ms=msg.born_timestamp_ms,
                           store_timestamp_ms=msg.store_timestamp_ms, born_host=msg.born_host,
                           store_host=msg.store_host, physical_offset=msg.physical_offset, sysflag=msg.sysflag,
                           reconsume_times=msg.reconsume_times, flag=flag)


def matches_tags(message: ReceivedMessage, tags: set[str] | None) -> bool:
    """Client-side tag filter (the broker filters by tag hash code only)."""
    return tags is None or message.tags in tags


def keep_pulled(messages: list[ReceivedMessage], offset: int, tags: set[str] | None) -> list[ReceivedMessage]:
    """The ``messages`` at ``offset`` or later that ``matches_tags`` keeps, in one call (the
    properties read for the whole pull, ``properties_of``, instead of three calls per message)."""
    if tags is None:
        return [m for m in messages if m.queue_offset >= offset]
    return [m for m, properties in zip(messages, properties_of(messages))
            if m.queue_offset >= offset and properties.get(PROPERTY_TAGS) in tags]
