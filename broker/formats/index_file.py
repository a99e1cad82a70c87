"""IndexFile: the message-key index (spec section 7). Pure code, big-endian; the file layer
reads the slot and applies the writes that ``plan_put`` returns.

File = 40-byte header, ``hash_slot_num`` int32 slots, ``index_num`` 20-byte items.
Default 5 000 000 slots and 20 000 000 items: 420 000 040 bytes. Named by creation time in
local time, ``yyyyMMddHHmmssSSS``.

Header::

    off  size  type   field
    0    8     int64  beginTimestamp (ms)
    8    8     int64  endTimestamp (ms)
    16   8     int64  beginPhyOffset
    24   8     int64  endPhyOffset
    32   4     int32  hashSlotCount: slots in use
    36   4     int32  indexCount: starts at 1 (item 0 is never used; a loaded value <= 0 means 1)

Slot (at 40 + slot * 4): int32 item number of the newest item of the chain, 0 = empty.

Item n (at 40 + hash_slot_num * 4 + n * 20)::

    0    4     int32  keyHash = abs(String.hashCode(topic + "#" + key)), Integer.MIN_VALUE -> 0
    4    8     int64  commitlog PHYSICALOFFSET
    12   4     int32  timeDiff in seconds from beginTimestamp, clamped to [0, 2^31-1]; 0 if begin <= 0
    16   4     int32  previous item number in the same slot chain (0 = end)
"""
from __future__ import annotations

import datetime
import operator
import struct
from dataclasses import dataclass, replace

from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView
from .tags import java_hash, java_hash_ascii, pow31

INDEX_HEADER_BYTES = 40
HASH_SLOT_BYTES = 4
INDEX_ITEM_BYTES = 20
DEFAULT_HASH_SLOT_NUM = 5_000_000
DEFAULT_INDEX_NUM = 20_000_000
INT32_MAX = 0x7FFFFFFF

_HEADER = struct.Struct(">qqqqii")
_SLOT = struct.Struct(">i")
_ITEM = struct.Struct(">iqii")


@dataclass
class IndexHeader:
    begin_timestamp_ms: int = 0
    end_timestamp_ms: int = 0
    begin_phy_offset: int = 0
    end_phy_offset: int = 0
    hash_slot_count: int = 0
    index_count: int = 1


@dataclass
class IndexItem:
    key_hash: int
    phy_offset: int
    time_diff_s: int
    prev_index: int


def index_file_bytes(hash_slot_num: int = DEFAULT_HASH_SLOT_NUM, index_num: int = DEFAULT_INDEX_NUM) -> int:
    return INDEX_HEADER_BYTES + hash_slot_num * HASH_SLOT_BYTES + index_num * INDEX_ITEM_BYTES


def index_file_name(created_ms: int, tz: datetime.tzinfo | None = None) -> str:
    """``yyyyMMddHHmmssSSS`` of the creation time in ``tz`` (default: this machine's local zone)."""
    moment = datetime.datetime.fromtimestamp(created_ms / 1000, tz)
    return moment.strftime("%Y%m%d%H%M%S") + f"{created_ms % 1000:03d}"


def index_key(topic: str, key: str) -> str:
    return f"{topic}#{key}"


def key_hash(key: str) -> int:
    """abs(String.hashCode), with Integer.MIN_VALUE (whose abs stays negative) clamped to 0."""
    h = abs(java_hash(key))
    return 0 if h > INT32_MAX else h


def key_hash_ascii(key: bytes) -> int:
    """``key_hash`` of an ASCII key given as its bytes (``tags.java_hash_ascii``)."""
    h = java_hash_ascii(key)
    if h & 0x80000000:
        h = 0x100000000 - h
    return 0 if h > INT32_MAX else h


_POWERS_AFTER: dict[int, tuple[int, tuple[int, ...]]] = {}


def _powers_after(n: int) -> tuple[int, tuple[int, ...]]:
    """(31**n, (31**(n-1), ..., 31, 1)) mod 2**32: the weights of ``key_hash_ascii_after`` for a key of
    ``n`` bytes (cached for the lengths keys have; one dict lookup per key on the migration's path)."""
    powers = (pow31(n), tuple(pow(31, n - 1 - i, 1 << 32) for i in range(n)))
    if n <= 512:
        _POWERS_AFTER[n] = powers
    return powers


def key_hash_ascii_after(prefix_hash: int, key: bytes) -> int:
    """``key_hash_ascii(prefix + key)`` from ``prefix_hash = tags.java_hash_ascii(prefix)`` (the
    hash of ``topic#`` is the same for all of a topic's keys: h(a + b) = h(a) * 31**len(b) + h(b)
    mod 2**32, so only the key's own bytes are hashed)."""
    powers = _POWERS_AFTER.get(len(key))
    if powers is None:
        powers = _powers_after(len(key))
    h = sum(map(operator.mul, key, powers[1]), prefix_hash * powers[0]) & 0xFFFFFFFF
    if h & 0x80000000:
        h = 0x100000000 - h
    return 0 if h > INT32_MAX else h


def slot_position(slot: int) -> int:
    return INDEX_HEADER_BYTES + slot * HASH_SLOT_BYTES


def item_position(n: int, hash_slot_num: int = DEFAULT_HASH_SLOT_NUM) -> int:
    return INDEX_HEADER_BYTES + hash_slot_num * HASH_SLOT_BYTES + n * INDEX_ITEM_BYTES


def key_slot(key: str, hash_slot_num: int = DEFAULT_HASH_SLOT_NUM) -> int:
    return key_hash(key) % hash_slot_num


def encode_index_header(header: IndexHeader) -> bytes:
    return _HEADER.pack(header.begin_timestamp_ms, header.end_timestamp_ms, header.begin_phy_offset,
                        header.end_phy_offset, header.hash_slot_count, header.index_count)


def decode_index_header(buf: ByteView, pos: int = 0, *, where: str | None = None) -> IndexHeader:
    """The header; an indexCount <= 0 (a fresh zero file) reads as 1, as RocketMQ loads it."""
    if pos < 0 or len(buf) - pos < INDEX_HEADER_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, an index header needs {INDEX_HEADER_BYTES}",
                               where=where, offset=pos)
    header = IndexHeader(*_HEADER.unpack_from(buf, pos))
    if header.index_count <= 0:
        header.index_count = 1
    return header


def encode_index_item(item: IndexItem) -> bytes:
    try:
        return _ITEM.pack(item.key_hash, item.phy_offset, item.time_diff_s, item.prev_index)
    except struct.error as exc:
        raise UserError(f"index item field out of range: {exc}") from None


def decode_index_item(buf: ByteView, pos: int = 0, *, where: str | None = None) -> IndexItem:
    if pos < 0 or len(buf) - pos < INDEX_ITEM_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, an index item needs {INDEX_ITEM_BYTES}",
                               where=where, offset=pos)
    return IndexItem(*_ITEM.unpack_from(buf, pos))


def decode_slot(buf: ByteView, pos: int, *, where: str | None = None) -> int:
    if pos < 0 or len(buf) - pos < HASH_SLOT_BYTES:
        raise CorruptDataError("index slot runs past the end of the data", where=where, offset=pos)
    slot: int = _SLOT.unpack_from(buf, pos)[0]
    return slot


def is_full(header: IndexHeader, index_num: int = DEFAULT_INDEX_NUM) -> bool:
    return header.index_count >= index_num


def plan_put(header: IndexHeader, slot_value: int, key: str, phy_offset: int, store_timestamp_ms: int, *,
             hash_slot_num: int = DEFAULT_HASH_SLOT_NUM, index_num: int = DEFAULT_INDEX_NUM
             ) -> tuple[IndexHeader, list[tuple[int, bytes]]]:
    """Index ``key`` (already ``topic#key``) for the message at ``phy_offset``.

    ``slot_value`` is the int32 currently at ``slot_position(key_slot(key))``. Returns the new
    header and the writes (file offset, bytes) to apply: the item, the slot, and the header.
    Raises UserError when the file is full (the caller starts a new file).
    """
    if is_full(header, index_num):
        raise UserError("index file is full")
    h = key_hash(key)
    slot = h % hash_slot_num
    n = header.index_count
    prev = 0 if slot_value <= 0 or slot_value > n else slot_value
    if header.begin_timestamp_ms <= 0:
        diff = 0
    else:
        diff = min(max((store_timestamp_ms - header.begin_timestamp_ms) // 1000, 0), INT32_MAX)
    new = replace(header)
    if n <= 1:
        new.begin_phy_offset, new.begin_timestamp_ms = phy_offset, store_timestamp_ms
    if prev == 0:
        new.hash_slot_count += 1
    new.index_count = n + 1
    new.end_phy_offset, new.end_timestamp_ms = phy_offset, store_timestamp_ms
    writes = [
        (item_position(n, hash_slot_num), encode_index_item(IndexItem(h, phy_offset, diff, prev))),
        (slot_position(slot), _SLOT.pack(n)),
        (0, encode_index_header(new)),
    ]
    return new, writes
