"""The RocketMQ commitlog message record: encode, decode, and the recovery check (spec section 3).

Pure code: bytes in, bytes out, no file I/O. The record layout (field offsets, sizes, magics,
sysflag bits) is ``record_layout.py``'s; the in-place reads of checked records are
``record_peek.py``'s; the pulled-record decoders (fields without a ``Message``) are
``record_fields.py``'s.
"""
from __future__ import annotations

import functools
import ipaddress
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, Literal, overload

from mqbench import native
from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView
from .properties import PROPERTY_CRC32, PROPERTY_KEYS, PROPERTY_TAGS
from .record_layout import (BLANK_MAGIC, BLANK_MIN_BYTES, CRC_PROPERTY_BYTES, MAGIC_V1, MAGIC_V2,
                            NAME_VALUE_SEPARATOR, PROPERTIES_MAX_BYTES, PROPERTY_SEPARATOR, RECORD_BLANK, RECORD_END,
                            SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6, SYSFLAG_TX_MASK, TOPIC_V1_MAX_BYTES,
                            TOPIC_V2_MAX_BYTES, _BLANK, _FIELD_PHYSICAL_OFFSET, _FIXED_BYTES_V1_IPV4,
                            _HEAD, _I16, _I32, _I64, _I8, _PORT, _TAIL, _size)


@dataclass
class Message:
    """One commitlog record. ``encode_message`` fills BODYCRC, TOTALSIZE and the IPv6 flags.

    ``version`` 0 picks V1 or V2 by topic length as 5.x brokers do; 1 or 2 forces one.
    ``body_crc`` and ``version`` are filled in by ``decode_message``.
    """

    topic: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    queue_id: int = 0
    flag: int = 0
    queue_offset: int = 0
    physical_offset: int = 0
    sysflag: int = 0
    born_timestamp_ms: int = 0
    born_host: tuple[str, int] = ("127.0.0.1", 0)
    store_timestamp_ms: int = 0
    store_host: tuple[str, int] = ("127.0.0.1", 0)
    reconsume_times: int = 0
    prepared_tx_offset: int = 0
    body_crc: int = 0
    version: int = 0

    @property
    def tags(self) -> str | None:
        return self.properties.get(PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        return [k for k in self.properties.get(PROPERTY_KEYS, "").split(" ") if k]

    @property
    def transaction_type(self) -> int:
        return self.sysflag & SYSFLAG_TX_MASK


def body_crc(body: ByteView) -> int:
    """RocketMQ's CRC (``UtilAll.crc32``): the standard CRC-32 masked to 31 bits."""
    return zlib.crc32(body) & 0x7FFFFFFF


def encode_properties(properties: dict[str, str]) -> bytes:
    """``name\\x01value\\x02`` for every entry whose value is not None, in dict order, UTF-8.

    Raises UserError for a name that is empty or holds a separator, or a value holding ``\\x02``:
    those could not be read back. (Java writes an empty value; RocketMQ's reader drops it.)
    """
    parts = []
    for name, value in properties.items():
        if value is None:
            continue
        if not isinstance(name, str) or not name or NAME_VALUE_SEPARATOR in name or PROPERTY_SEPARATOR in name:
            raise UserError(f"bad message property name {name!r}: must be non-empty without \\x01/\\x02")
        value = str(value)
        if PROPERTY_SEPARATOR in value:
            raise UserError(f"message property {name!r} has a value containing \\x02")
        parts.append(f"{name}\x01{value}\x02")
    return "".join(parts).encode("utf-8")


def decode_properties(data: ByteView | str) -> dict[str, str]:
    """RocketMQ's ``string2messageProperties`` (spec 3.5).

    Split on ``\\x02``; a segment counts if it has >= 3 characters and its first ``\\x01`` is
    neither first nor last; key = text before that ``\\x01``, value = the rest (may hold
    ``\\x01``). Empty keys/values are dropped, the last duplicate wins, and a trailing segment
    without ``\\x02`` still counts. Raises CorruptDataError for bytes that are not UTF-8.
    """
    if type(data) is str and _sendpath is not None:      # in C, by the rules below (_sendpath.c)
        properties: dict[str, str] = _sendpath.decode_properties(data)
        return properties
    if not isinstance(data, str):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptDataError(f"message properties are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
    # the common case, a string as encode_properties writes it (every segment "name\x01value",
    # each ended by \x02): one split and one dict build; the rules below give the same dict
    if text and text[-1] == PROPERTY_SEPARATOR and text[0] != NAME_VALUE_SEPARATOR and "\x02\x01" not in text \
            and "\x01\x02" not in text and "\x02\x02" not in text:
        try:
            return dict(segment.split(NAME_VALUE_SEPARATOR, 1) for segment in text[:-1].split(PROPERTY_SEPARATOR))
        except ValueError:      # a segment without \x01: the rules below drop it
            pass
    result: dict[str, str] = {}
    for segment in text.split(PROPERTY_SEPARATOR):
        if len(segment) < 3:
            continue
        sep = segment.find(NAME_VALUE_SEPARATOR)
        if 0 < sep < len(segment) - 1:
            result[segment[:sep]] = segment[sep + 1:]
    return result


@functools.lru_cache(maxsize=1024)
def _packed_address(text: str) -> tuple[bytes, bool]:
    """The packed bytes of an IP address and whether it is IPv6 (cached: a broker encodes the same
    few hosts millions of times, and parsing them was most of a small record's encode time)."""
    address = ipaddress.ip_address(text)
    return address.packed, address.version == 6


_HOSTS: dict[tuple[str, int], tuple[bytes, bool]] = {}    # hosts _host_bytes encoded (a few per broker)
_HOSTS_MAX = 4096
_sendpath = native.load("mqbench.broker.formats._sendpath")   # C encode_fields (module doc of _sendpath.c)
#: ``decode_properties`` of a str, called straight (the C function where built: no Python call
#: around it for a reader that decodes one property text per message, a consumer)
decode_properties_text: Callable[[str], dict[str, str]] = (
    _sendpath.decode_properties if _sendpath is not None else decode_properties)


def _host_bytes(host: tuple[str, int], what: str) -> tuple[bytes, bool]:
    try:
        known = _HOSTS.get(host)      # an unhashable host (a list) is encoded below
    except TypeError:
        known = None
    if known is not None:
        return known
    encoded = _encode_host(host, what)
    if type(host) is tuple and type(host[0]) is str and type(host[1]) is int:
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        _HOSTS[host] = encoded
    return encoded


def _encode_host(host: tuple[str, int], what: str) -> tuple[bytes, bool]:
    try:
        packed, is_v6 = _packed_address(host[0])
        port = int(host[1])
    except (ValueError, TypeError, IndexError) as exc:
        raise UserError(f"bad {what} {host!r}: {exc}") from None
    if not -0x80000000 <= port <= 0x7FFFFFFF:
        raise UserError(f"bad {what} port {port}")
    return packed + _PORT.pack(port), is_v6


def _topic_version(topic_bytes: bytes, version: int) -> int:
    if version == 0:
        version = 2 if len(topic_bytes) > TOPIC_V1_MAX_BYTES else 1
    if version == 1 and len(topic_bytes) > TOPIC_V1_MAX_BYTES:
        raise UserError(f"topic of {len(topic_bytes)} bytes does not fit a V1 record (max {TOPIC_V1_MAX_BYTES})")
    if version == 2 and len(topic_bytes) > TOPIC_V2_MAX_BYTES:
        raise UserError(f"topic of {len(topic_bytes)} bytes is too long (max {TOPIC_V2_MAX_BYTES})")
    if version not in (1, 2):
        raise UserError(f"unknown message version {version} (1 or 2)")
    if not topic_bytes:
        raise UserError("empty topic")
    return version


def record_size(msg: Message, *, append_prop_crc: bool = False) -> int:
    """TOTALSIZE of ``encode_message(msg)`` without encoding it (``calMsgLength``)."""
    topic = msg.topic.encode("utf-8")
    version = _topic_version(topic, msg.version)
    props = _final_properties(msg.properties, append_prop_crc)
    _, born_v6 = _host_bytes(msg.born_host, "born host")
    _, store_v6 = _host_bytes(msg.store_host, "store host")
    return _size(len(msg.body), len(topic), len(props), version, born_v6, store_v6)


def _final_properties(properties: dict[str, str], append_prop_crc: bool) -> bytes:
    props = encode_properties(properties)
    if append_prop_crc:
        # The CRC property is always the last 20 bytes; its digits are filled in after the rest.
        if props and not props.endswith(b"\x02"):
            props += b"\x02"
        props += PROPERTY_CRC32.encode() + b"\x01" + b"0" * 10 + b"\x02"
    if len(props) > PROPERTIES_MAX_BYTES:
        raise UserError(f"message properties of {len(props)} bytes are too long (max {PROPERTIES_MAX_BYTES})")
    return props


def crc_digits(crc: int) -> bytes:
    """The CRC property value: decimal digits least-significant first, right-padded with '0' to 10."""
    return str(crc)[::-1].ljust(10, "0").encode("ascii")


def encode_message(msg: Message, *, append_prop_crc: bool = False) -> bytes:
    """The record bytes for ``msg`` (spec 3.2): BODYCRC, TOTALSIZE, the IPv6 sysflag bits and
    the V1/V2 magic are computed here; every other field is taken from ``msg`` as is.

    ``append_prop_crc`` adds the 5.2+ ``__CRC32#`` property (spec 3.6) over the final bytes.
    Raises UserError when the topic or properties are too long or a host is not an IP address.
    """
    topic = msg.topic.encode("utf-8")
    version = _topic_version(topic, msg.version)
    props = _final_properties(msg.properties, append_prop_crc)
    born, born_v6 = _host_bytes(msg.born_host, "born host")
    store, store_v6 = _host_bytes(msg.store_host, "store host")
    body = msg.body if type(msg.body) is bytes else bytes(msg.body)
    total = _size(len(body), len(topic), len(props), version, born_v6, store_v6)
    if total > 0x7FFFFFFF:
        raise UserError(f"message of {total} bytes is too large")
    sysflag = msg.sysflag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
    sysflag |= (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | (SYSFLAG_STOREHOST_V6 if store_v6 else 0)
    try:
        parts = [
            _HEAD.pack(total, MAGIC_V1 if version == 1 else MAGIC_V2, body_crc(body), msg.queue_id, msg.flag,
                       msg.queue_offset, msg.physical_offset, sysflag, msg.born_timestamp_ms),
            born,
            _I64.pack(msg.store_timestamp_ms),
            store,
            _TAIL.pack(msg.reconsume_times, msg.prepared_tx_offset, len(body)),
            body,
            (_I8 if version == 1 else _I16).pack(len(topic)),
            topic,
            _I16.pack(len(props)),
            props,
        ]
    except struct.error as exc:
        raise UserError(f"message field out of range: {exc}") from None
    record = b"".join(parts)
    if append_prop_crc:
        head = record[:-CRC_PROPERTY_BYTES]
        record = head + PROPERTY_CRC32.encode() + b"\x01" + crc_digits(body_crc(head)) + b"\x02"
    return record


def encode_fields(topic: str, queue_id: int, flag: int, sysflag: int, born_timestamp_ms: int,
                  born_host: tuple[str, int], store_timestamp_ms: int, store_host: tuple[str, int],
                  reconsume_times: int, body: bytes, properties: bytes, version: int = 0) -> bytes:
    """``encode_message`` of a ``Message`` with these fields, QUEUEOFFSET, PHYSICALOFFSET and the
    prepared-transaction offset 0, and properties given as ``encode_properties``' bytes (taken as
    they are): the same bytes without building the ``Message`` or the properties again (a
    single send's record, built from the request's fields). UserError as ``encode_message``. In C
    (``_sendpath``) when both hosts were encoded before and every field is in range."""
    if _sendpath is not None:
        record: bytes | None = _sendpath.encode_fields(topic, queue_id, flag, sysflag, born_timestamp_ms, born_host,
                                                       store_timestamp_ms, store_host, reconsume_times, body,
                                                       properties, version, _HOSTS)
        if record is not None:
            return record
    topic_bytes = topic.encode("utf-8")
    version = _topic_version(topic_bytes, version)
    if len(properties) > PROPERTIES_MAX_BYTES:
        raise UserError(f"message properties of {len(properties)} bytes are too long (max {PROPERTIES_MAX_BYTES})")
    born, born_v6 = _host_bytes(born_host, "born host")
    store, store_v6 = _host_bytes(store_host, "store host")
    total = _size(len(body), len(topic_bytes), len(properties), version, born_v6, store_v6)
    if total > 0x7FFFFFFF:
        raise UserError(f"message of {total} bytes is too large")
    sysflag = sysflag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
    sysflag |= (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | (SYSFLAG_STOREHOST_V6 if store_v6 else 0)
    try:
        return b"".join((
            _HEAD.pack(total, MAGIC_V1 if version == 1 else MAGIC_V2, zlib.crc32(body) & 0x7FFFFFFF, queue_id, flag,
                       0, 0, sysflag, born_timestamp_ms),
            born, _I64.pack(store_timestamp_ms), store, _TAIL.pack(reconsume_times, 0, len(body)), body,
            (_I8 if version == 1 else _I16).pack(len(topic_bytes)), topic_bytes, _I16.pack(len(properties)),
            properties))
    except struct.error as exc:
        raise UserError(f"message field out of range: {exc}") from None


def encode_blank(remaining: int) -> bytes:
    """The 8-byte end-of-file blank: int32 bytes left in the file, int32 BLANK_MAGIC."""
    if remaining < BLANK_MIN_BYTES:
        raise UserError(f"an end-of-file blank needs {BLANK_MIN_BYTES} bytes, {remaining} left")
    return _BLANK.pack(remaining, BLANK_MAGIC)


def set_physical_offset(record: bytes | bytearray, physical_offset: int) -> bytes:
    """``record`` with PHYSICALOFFSET replaced (the DLedger append hook, spec 11.3)."""
    return bytes(record[:_FIELD_PHYSICAL_OFFSET]) + _I64.pack(physical_offset) + bytes(record[_FIELD_PHYSICAL_OFFSET + 8:])


def message_id(store_host: tuple[str, int], physical_offset: int) -> str:
    """offsetMsgId: uppercase hex of store address, int32 port, int64 physical offset."""
    host, _ = _host_bytes(store_host, "store host")
    return (host + _I64.pack(physical_offset)).hex().upper()


def decode_message_id(msg_id: str) -> tuple[tuple[str, int], int]:
    """The inverse of ``message_id``: ((host, port), physical offset). Raises UserError."""
    try:
        raw = bytes.fromhex(msg_id)
    except ValueError:
        raise UserError(f"message id {msg_id!r} is not hex") from None
    if len(raw) not in (16, 28):
        raise UserError(f"message id {msg_id!r} has {len(raw)} bytes, expected 16 (IPv4) or 28 (IPv6)")
    addr = raw[:-12]
    host = str(ipaddress.ip_address(addr))
    port = _PORT.unpack_from(raw, len(addr))[0]
    return (host, port), _I64.unpack_from(raw, len(addr) + 4)[0]


@functools.lru_cache(maxsize=1024)
def _address_text(packed: bytes) -> str:
    """The text of a packed IPv4/IPv6 address (cached: a log holds the same few hosts millions of
    times, and building ipaddress objects was a tenth of a record's decode time)."""
    return str(ipaddress.IPv6Address(packed) if len(packed) == 16 else ipaddress.IPv4Address(packed))


def _read_host(buf: ByteView, at: int, v6: bool) -> tuple[str, int]:
    n = 16 if v6 else 4
    return _address_text(bytes(buf[at:at + n])), _PORT.unpack_from(buf, at + n)[0]


@overload
def _parse(buf: ByteView, pos: int, end: int, check_crc: bool, where: str | None,
           full: Literal[True]) -> tuple[int, Message]: ...
@overload
def _parse(buf: ByteView, pos: int, end: int, check_crc: bool, where: str | None,
           full: Literal[False]) -> tuple[int, None]: ...
def _parse(buf: ByteView, pos: int, end: int, check_crc: bool, where: str | None,
           full: bool) -> tuple[int, Message | None]:
    """Walk one record in ``buf[pos:end]``. Returns (size, fields or None) or raises CorruptDataError.

    Every read is bounds-checked against the record's own end, so a torn or lying record raises
    CorruptDataError rather than an IndexError or struct.error.
    """
    def bad(message: str, at: int = pos) -> CorruptDataError:
        return CorruptDataError(message, where=where, offset=at)

    if end - pos < 8:
        raise bad(f"{end - pos} bytes left, too few for a record header")
    total, magic = _BLANK.unpack_from(buf, pos)
    if magic == BLANK_MAGIC:
        raise bad("end-of-file blank, not a message record")
    if magic not in (MAGIC_V1, MAGIC_V2):
        raise bad(f"bad magic 0x{magic & 0xFFFFFFFF:08x} (not a message record)")
    if total < _FIXED_BYTES_V1_IPV4:
        raise bad(f"record size {total} is below the minimum {_FIXED_BYTES_V1_IPV4}")
    if total > end - pos:
        raise bad(f"record of {total} bytes runs past the end of the data ({end - pos} bytes left)")
    rec_end = pos + total
    (_, _, crc, queue_id, flag, queue_offset, physical_offset, sysflag, born_ts) = _HEAD.unpack_from(buf, pos)
    born_v6 = bool(sysflag & SYSFLAG_BORNHOST_V6)
    store_v6 = bool(sysflag & SYSFLAG_STOREHOST_V6)
    at = pos + _HEAD.size
    born_at = at
    at += 20 if born_v6 else 8
    store_ts_at = at
    at += 8
    store_at = at
    at += 20 if store_v6 else 8
    if at + _TAIL.size > rec_end:
        raise bad(f"record of {total} bytes is too short for its hosts")
    reconsume, prepared, body_len = _TAIL.unpack_from(buf, at)
    at += _TAIL.size
    if body_len < 0 or at + body_len > rec_end:
        raise bad(f"body length {body_len} does not fit the record of {total} bytes")
    body_at = at
    at += body_len
    version = 1 if magic == MAGIC_V1 else 2
    tl = version
    if at + tl > rec_end:
        raise bad("record ends before its topic length")
    topic_len = (_I8 if version == 1 else _I16).unpack_from(buf, at)[0]
    at += tl
    if topic_len <= 0 or at + topic_len + 2 > rec_end:
        raise bad(f"topic length {topic_len} does not fit the record of {total} bytes")
    topic_at = at
    at += topic_len
    props_len = _I16.unpack_from(buf, at)[0]
    at += 2
    if props_len < 0 or at + props_len != rec_end:
        expected = _size(body_len, topic_len, props_len, version, born_v6, store_v6)
        raise bad(f"record size {total} differs from the {expected} its fields add up to")
    if check_crc:
        actual = body_crc(buf[body_at:body_at + body_len])
        if actual != crc:
            raise bad(f"body CRC mismatch: stored {crc}, computed {actual}")
    if not full:
        return total, None
    try:
        topic = bytes(buf[topic_at:topic_at + topic_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise bad("topic is not UTF-8") from None
    try:
        properties = decode_properties(buf[at:at + props_len])
    except CorruptDataError as exc:
        raise bad(str(exc)) from None
    msg = Message(
        topic=topic, body=bytes(buf[body_at:body_at + body_len]), properties=properties, queue_id=queue_id,
        flag=flag, queue_offset=queue_offset, physical_offset=physical_offset, sysflag=sysflag,
        born_timestamp_ms=born_ts, born_host=_read_host(buf, born_at, born_v6),
        store_timestamp_ms=_I64.unpack_from(buf, store_ts_at)[0], store_host=_read_host(buf, store_at, store_v6),
        reconsume_times=reconsume, prepared_tx_offset=prepared, body_crc=crc, version=version,
    )
    return total, msg


def decode_message(buf: ByteView, pos: int = 0, *, check_crc: bool = True, where: str | None = None,
                   end: int | None = None) -> tuple[Message, int]:
    """Decode the record at ``buf[pos:]`` (bytes, bytearray, memoryview or mmap).

    Returns (message, TOTALSIZE). Bytes after the record are left alone (the caller walks on by
    the size). Raises CorruptDataError naming ``where`` and the offset for anything that is not a
    whole, self-consistent record (including a BODYCRC mismatch when ``check_crc``).
    """
    stop = len(buf) if end is None else min(end, len(buf))
    if pos < 0 or pos > stop:
        raise CorruptDataError(f"position {pos} is outside the data", where=where, offset=pos)
    size, msg = _parse(buf, pos, stop, check_crc, where, True)
    return msg, size


def check_record(buf: ByteView, pos: int, end: int, *, check_crc: bool = True) -> int:
    """The recovery check (spec 3.9) on ``buf[pos:end]``.

    Returns the size (> 0) of a valid record at ``pos``, ``RECORD_BLANK`` (-1) for an end-of-file
    blank, or ``RECORD_END`` (0) when what is there is not a valid record (zeros, torn, a bad size,
    magic or CRC). Never raises for bad data.
    """
    end = min(end, len(buf))
    if pos < 0 or end - pos < 8:
        return RECORD_END
    magic = _I32.unpack_from(buf, pos + 4)[0]
    if magic == BLANK_MAGIC:
        return RECORD_BLANK
    try:
        size, _ = _parse(buf, pos, end, check_crc, None, False)
    except CorruptDataError:
        return RECORD_END
    return size


def verify_property_crc(record: bytes) -> bool | None:
    """Check the 5.2+ ``__CRC32#`` property (spec 3.6) of a whole record.

    Returns None when the record has no CRC property, else whether it matches.
    """
    tail = bytes(record[-CRC_PROPERTY_BYTES:])
    prefix = PROPERTY_CRC32.encode() + b"\x01"
    if len(record) < CRC_PROPERTY_BYTES or not tail.startswith(prefix) or not tail.endswith(b"\x02"):
        return None
    digits = tail[len(prefix):-1]
    return digits == crc_digits(body_crc(bytes(record[:-CRC_PROPERTY_BYTES])))


def encode_messages_like(template: Message, items: list[tuple[ByteView, dict[str, str] | bytes, int]]) -> list[bytes]:
    """``encode_message`` for messages that share every field of ``template`` but BODY, properties
    and FLAG, given per message as ``(body, properties, flag)``: the same bytes as encoding each
    as a ``Message``, with the shared parts (topic, hosts, times, sysflag, magic) computed once
    (a client batch's records). Properties given as bytes are ``encode_properties``' output,
    taken as they are. UserError as ``encode_message``; no ``__CRC32#`` property."""
    topic = template.topic.encode("utf-8")
    version = _topic_version(topic, template.version)
    born, born_v6 = _host_bytes(template.born_host, "born host")
    store, store_v6 = _host_bytes(template.store_host, "store host")
    sysflag = template.sysflag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
    sysflag |= (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | (SYSFLAG_STOREHOST_V6 if store_v6 else 0)
    magic = MAGIC_V1 if version == 1 else MAGIC_V2
    fixed = _size(0, len(topic), 0, version, born_v6, store_v6)
    try:
        middle = b"".join((born, _I64.pack(template.store_timestamp_ms), store,
                           _TAIL.pack(template.reconsume_times, template.prepared_tx_offset, 0)[:-4]))
        topic_part = (_I8 if version == 1 else _I16).pack(len(topic)) + topic
        pack_head = _HEAD.pack
        head_args = (template.queue_id, 0, template.queue_offset, template.physical_offset, sysflag,
                     template.born_timestamp_ms)
        _HEAD.pack(0, magic, 0, *head_args)          # a field out of range fails here, not per message
    except struct.error as exc:
        raise UserError(f"message field out of range: {exc}") from None
    queue_id, _, queue_offset, physical_offset, _, born_ts = head_args
    pack_i32, pack_i16 = _I32.pack, _I16.pack
    out = []
    for body, properties, flag in items:
        if isinstance(properties, bytes):
            props = properties
            if len(props) > PROPERTIES_MAX_BYTES:
                raise UserError(f"message properties of {len(props)} bytes are too long (max {PROPERTIES_MAX_BYTES})")
        else:
            props = _final_properties(properties, False)
        body = bytes(body)
        total = fixed + len(body) + len(props)
        if total > 0x7FFFFFFF:
            raise UserError(f"message of {total} bytes is too large")
        try:
            head = pack_head(total, magic, zlib.crc32(body) & 0x7FFFFFFF, queue_id, flag, queue_offset,
                             physical_offset, sysflag, born_ts)
        except struct.error as exc:
            raise UserError(f"message field out of range: {exc}") from None
        out.append(b"".join((head, middle, pack_i32(len(body)), body, topic_part, pack_i16(len(props)), props)))
    return out
