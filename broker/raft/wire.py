"""Raft messages on the wire between broker processes: our own length-prefixed framing.

One frame per message, all integers big-endian (``struct.Struct`` below; offsets computed):

| offset | size | type   | field                                                   |
|-------:|-----:|--------|---------------------------------------------------------|
| 0      | 4    | uint32 | frame length: bytes after this field (>= 56)            |
| 4      | 1    | uint8  | version (1)                                             |
| 5      | 1    | uint8  | message type (``MsgType``, 1..9)                        |
| 6      | 1    | uint8  | flags: bit 0 reject, bit 1 transfer; others must be 0   |
| 7      | 1    | uint8  | reserved, 0                                             |
| 8      | 4    | uint32 | src node id                                             |
| 12     | 4    | uint32 | dst node id                                             |
| 16     | 8    | uint64 | term                                                    |
| 24     | 8    | uint64 | log_term                                                |
| 32     | 8    | uint64 | index                                                   |
| 40     | 8    | uint64 | commit                                                  |
| 48     | 8    | uint64 | reject_hint                                             |
| 56     | 4    | uint32 | entry count N                                           |
| 60     | ...  |        | N entries, each:                                        |
|        | 8    | uint64 |   index                                                 |
|        | 8    | uint64 |   term                                                  |
|        | 1    | uint8  |   kind (0 normal, 1 no-op)                              |
|        | 4    | uint32 |   data length L                                         |
|        | L    | bytes  |   data                                                  |

Worked example: a HEARTBEAT from 1 to 2 at term 3 with commit 7 is a 60-byte frame:
``00000038`` (56 bytes follow) ``01 03 00 00`` ``00000001`` ``00000002`` ``0000000000000003``,
then 16 zero bytes (log_term, index), ``0000000000000007`` (commit), 8 zero bytes (reject_hint)
and ``00000000`` (no entries).

``FrameDecoder`` is incremental (feed any split of the byte stream). A malformed frame (bad
version, type, flags, lengths that disagree, a frame over ``max_frame_bytes``) raises
``PeerError``: the transport closes that connection and keeps serving the others.
"""
from __future__ import annotations

import struct
from operator import itemgetter

from mqbench import native
from mqbench.errors import PeerError

from .types import Entry, EntryKind, Message, MsgType

VERSION = 1
LENGTH = struct.Struct(">I")
HEADER = struct.Struct(">BBBBIIQQQQQI")          # everything after the length field up to the entries
ENTRY = struct.Struct(">QQBI")
HEADER_BYTES = HEADER.size                      # 56
FRAME_OVERHEAD_BYTES = LENGTH.size + HEADER.size  # 60
DEFAULT_MAX_FRAME_BYTES = 64 << 20
_FLAG_REJECT, _FLAG_TRANSFER = 0x1, 0x2
_TYPES = {t.value: t for t in MsgType}
_KINDS = {k.value: k for k in EntryKind}
_U32, _U64 = (1 << 32) - 1, (1 << 64) - 1


_entry_data = itemgetter(2)       # Entry.data


def frame_bytes(m: Message) -> int:
    """Bytes ``m`` takes on the wire (``encode_frame``'s length), without encoding it (the entries'
    lengths summed in C: no bytecode per entry)."""
    entries = m.entries
    if not entries:
        return FRAME_OVERHEAD_BYTES
    return FRAME_OVERHEAD_BYTES + ENTRY.size * len(entries) + sum(map(len, map(_entry_data, entries)))


def encode_entries(entries: tuple[Entry, ...] | list[Entry]) -> bytes:
    """The entries part of a frame (everything after the 56-byte header): what ``encode_frame``
    writes for ``entries``. A leader sends the same entries to every follower, so a transport
    encodes them once and passes the result to ``encode_frame`` for each. ``_wire.c`` is the same
    function in C, used where it is built (``mqbench.native``)."""
    pack = ENTRY.pack
    parts = []
    for e in entries:
        parts.append(pack(e.index, e.term, e.kind, len(e.data)))
        parts.append(e.data)
    return b"".join(parts)


_HEAD = struct.Struct(">I" + HEADER.format[1:])    # the length field and the header: a frame's first 60 bytes


def encode_head(m: Message, entries_bytes: int) -> bytes:
    """A frame's first 60 bytes (length field and header) for ``m`` whose entries part is
    ``entries_bytes`` long: ``encode_frame(m)`` is this followed by the entries part (a transport
    writes the two as they are, without joining them)."""
    flags = (_FLAG_REJECT if m.reject else 0) | (_FLAG_TRANSFER if m.transfer else 0)
    return _HEAD.pack(HEADER_BYTES + entries_bytes, VERSION, m.type, flags, 0, m.src, m.dst, m.term, m.log_term,
                      m.index, m.commit, m.reject_hint, len(m.entries))


def encode_frame(m: Message, entries_part: bytes | None = None) -> bytes:
    """One frame for ``m`` (ids must fit uint32, terms and indices uint64). ``entries_part``:
    ``encode_entries(m.entries)`` when the caller has it already (it is not checked)."""
    if entries_part is None:
        entries_part = encode_entries(m.entries) if m.entries else b""
    head = encode_head(m, len(entries_part))
    return head + entries_part if entries_part else head


_new_entry = tuple.__new__     # Entry(...) without the NamedTuple's Python-level __new__
_KIND_OF = tuple(_KINDS.get(code) for code in range(max(_KINDS) + 1))


def decode_entries(body: bytes | bytearray | memoryview, start: int, pos: int, end: int, count: int,
                   entry_type: type = Entry, kinds: tuple[EntryKind | None, ...] = _KIND_OF) -> tuple[tuple[Entry, ...], int]:
    """The ``count`` entries of a frame whose bytes after the length field start at ``body[start]``,
    read from ``body[pos:end]`` (``entry_type`` tuples: index, term, data as bytes, ``kinds[kind]``),
    and how many bytes of ``body[pos:end]`` are left after them. PeerError (offsets from
    ``start``) for an entry header or data cut by ``end`` or an unknown kind. ``_wire.c`` is the
    same function in C, used where it is built (``mqbench.native``; tests/raft)."""
    out: list[Entry] = []
    unpack_entry, entry_size, n_kinds = ENTRY.unpack_from, ENTRY.size, len(kinds)
    if type(body) is not bytes:      # one copy of the frame; slicing bytes beats memoryview slices
        with memoryview(body) as view:
            body = view[pos:end].tobytes()
        start, pos, end = start - pos, 0, end - pos
    for _ in range(count):
        if pos + entry_size > end:
            raise PeerError(f"raft entry header cut at byte {pos - start}")
        e_index, e_term, kind, length = unpack_entry(body, pos)
        pos += entry_size
        if kind >= n_kinds or kinds[kind] is None:
            raise PeerError(f"unknown raft entry kind {kind}")
        if pos + length > end:
            raise PeerError(f"raft entry data of {length} bytes overruns the frame at byte {pos - start}")
        out.append(_new_entry(entry_type, (e_index, e_term, body[pos:pos + length], kinds[kind])))
        pos += length
    return tuple(out), end - pos


def decode_body(body: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> Message:
    """The message in one frame's bytes after the length field (``body[start:end]``, the whole of
    ``body`` by default; the entries part is copied once when ``body`` is not ``bytes``); PeerError
    when malformed."""
    if end is None:
        end = len(body)
    size = end - start
    if size < HEADER_BYTES:
        raise PeerError(f"raft frame of {size} bytes is shorter than its {HEADER_BYTES}-byte header")
    (version, type_code, flags, reserved, src, dst, term, log_term, index, commit, hint,
     count) = HEADER.unpack_from(body, start)
    if version != VERSION:
        raise PeerError(f"raft frame version {version}, expected {VERSION}")
    msg_type = _TYPES.get(type_code)
    if msg_type is None:
        raise PeerError(f"unknown raft message type {type_code}")
    if flags & ~(_FLAG_REJECT | _FLAG_TRANSFER) or reserved:
        raise PeerError(f"raft frame has unknown flags 0x{flags:02x}/{reserved}")
    if count > (size - HEADER_BYTES) // ENTRY.size:
        raise PeerError(f"raft frame claims {count} entries in {size - HEADER_BYTES} bytes")
    entries: tuple[Entry, ...] = ()
    left = end - start - HEADER_BYTES
    if count:
        entries, left = decode_entries(body, start, start + HEADER_BYTES, end, count, Entry, _KIND_OF)
    if left:
        raise PeerError(f"{left} stray bytes after the raft entries")
    if src == 0 or dst == 0:
        raise PeerError("raft frame without a src or dst node id")
    return Message(msg_type, src, dst, term, log_term, index, entries, commit,
                   bool(flags & _FLAG_REJECT), hint, bool(flags & _FLAG_TRANSFER))


encode_entries_py, decode_entries_py = encode_entries, decode_entries
_native = native.load("mqbench.broker.raft._wire")
if _native is not None:
    encode_entries, decode_entries = _native.encode_entries, _native.decode_entries  # noqa: F811 - the same in C


class FrameDecoder:
    """Incremental decoder: ``feed(bytes) -> list[Message]`` for the frames completed so far."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buf, pos)
            if length < HEADER_BYTES or length > self.max_frame_bytes:
                raise PeerError(f"raft frame length {length} outside [{HEADER_BYTES}, {self.max_frame_bytes}]")
            if len(buf) - pos - LENGTH.size < length:
                break
            start = pos + LENGTH.size
            out.append(decode_body(buf, start, start + length))
            pos = start + length
        del buf[:pos]
        return out

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)
