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


def frame_bytes(m: Message) -> int:
    """Bytes ``m`` takes on the wire (``encode_frame``'s length), without encoding it."""
    return LENGTH.size + HEADER.size + sum(ENTRY.size + len(e.data) for e in m.entries)


def encode_frame(m: Message) -> bytes:
    """One frame for ``m`` (ids must fit uint32, terms and indices uint64)."""
    flags = (_FLAG_REJECT if m.reject else 0) | (_FLAG_TRANSFER if m.transfer else 0)
    parts = [b"", HEADER.pack(VERSION, int(m.type), flags, 0, m.src, m.dst, m.term, m.log_term, m.index,
                              m.commit, m.reject_hint, len(m.entries))]
    for e in m.entries:
        parts.append(ENTRY.pack(e.index, e.term, int(e.kind), len(e.data)))
        parts.append(e.data)
    body_len = sum(len(p) for p in parts)
    parts[0] = LENGTH.pack(body_len)
    return b"".join(parts)


def decode_body(body: bytes | memoryview) -> Message:
    """The message in one frame's bytes after the length field; PeerError when malformed."""
    if len(body) < HEADER_BYTES:
        raise PeerError(f"raft frame of {len(body)} bytes is shorter than its {HEADER_BYTES}-byte header")
    (version, type_code, flags, reserved, src, dst, term, log_term, index, commit, hint,
     count) = HEADER.unpack_from(body, 0)
    if version != VERSION:
        raise PeerError(f"raft frame version {version}, expected {VERSION}")
    msg_type = _TYPES.get(type_code)
    if msg_type is None:
        raise PeerError(f"unknown raft message type {type_code}")
    if flags & ~(_FLAG_REJECT | _FLAG_TRANSFER) or reserved:
        raise PeerError(f"raft frame has unknown flags 0x{flags:02x}/{reserved}")
    if count > (len(body) - HEADER_BYTES) // ENTRY.size:
        raise PeerError(f"raft frame claims {count} entries in {len(body) - HEADER_BYTES} bytes")
    pos = HEADER_BYTES
    entries = []
    for _ in range(count):
        if pos + ENTRY.size > len(body):
            raise PeerError(f"raft entry header cut at byte {pos}")
        e_index, e_term, kind, length = ENTRY.unpack_from(body, pos)
        pos += ENTRY.size
        if kind not in _KINDS:
            raise PeerError(f"unknown raft entry kind {kind}")
        if pos + length > len(body):
            raise PeerError(f"raft entry data of {length} bytes overruns the frame at byte {pos}")
        entries.append(Entry(e_index, e_term, bytes(body[pos:pos + length]), _KINDS[kind]))
        pos += length
    if pos != len(body):
        raise PeerError(f"{len(body) - pos} stray bytes after the raft entries")
    if src == 0 or dst == 0:
        raise PeerError("raft frame without a src or dst node id")
    return Message(msg_type, src, dst, term, log_term, index, tuple(entries), commit,
                   bool(flags & _FLAG_REJECT), hint, bool(flags & _FLAG_TRANSFER))


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
            out.append(decode_body(bytes(buf[start:start + length])))
            pos = start + length
        del buf[:pos]
        return out

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)
