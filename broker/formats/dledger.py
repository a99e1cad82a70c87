"""DLedger on-disk framing (spec section 11): data entries, index units, and the text files.

Pure code, big-endian, no file I/O.

Data entry (``dledger-{id}/data/``; entries never cross a file boundary)::

    off  size  type   field
    0    4     int32  magic        1 (0.3.1.x); HEAD DLedger also writes 2 NOOP, 3 CONFIG_CHANGE
    4    4     int32  size         48 + body length: the whole entry
    8    8     int64  index        Raft log index, the first entry is 0
    16   8     int64  term
    24   8     int64  pos          absolute offset of this entry in the data file list
    32   4     int32  channel      reserved, 0
    36   4     int32  chainCrc     always 0 (DLedger never sets it; do not validate)
    40   4     int32  bodyCrc      always 0
    44   4     int32  body length
    48   n     bytes  body         RocketMQ: exactly one commitlog record (spec 3.2) with
                                   PHYSICALOFFSET = pos + 48

End-of-file blank (magic first, then size: the reverse of the commitlog blank)::

    0    4     int32  -1 (DLEDGER_BLANK_MAGIC)
    4    4     int32  remaining bytes in the file

Index unit (``dledger-{id}/index/``; the unit of Raft index i is at i * 32)::

    0    4     int32  magic
    4    8     int64  pos
    12   4     int32  size (the whole entry)
    16   8     int64  index
    24   8     int64  term
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from mqbench import native
from mqbench.errors import CorruptDataError, UserError

from .buffers import ByteView
from .record import set_physical_offset

ENTRY_HEADER_BYTES = 48  # BODY_OFFSET
ENTRY_HEADER_SIZE_FIELD_BYTES = 44  # DLedger's HEADER_SIZE: an entry must be larger than this
POS_OFFSET = 24
DLEDGER_MAGIC = 1
DLEDGER_MAGIC_NOOP = 2
DLEDGER_MAGIC_CONFIG_CHANGE = 3
DLEDGER_VALID_MAGICS = frozenset({DLEDGER_MAGIC, DLEDGER_MAGIC_NOOP, DLEDGER_MAGIC_CONFIG_CHANGE})
DLEDGER_BLANK_MAGIC = -1
DLEDGER_BLANK_BYTES = 8
INDEX_UNIT_BYTES = 32
ENTRY_END = 0
ENTRY_BLANK = -1

_HEADER = struct.Struct(">iiqqqiiii")
_BLANK = struct.Struct(">ii")
_INDEX = struct.Struct(">iqiqq")


@dataclass
class EntryHeader:
    """The 48-byte header of a DLedger data entry."""

    magic: int
    size: int
    index: int
    term: int
    pos: int
    channel: int
    body_length: int
    chain_crc: int = 0
    body_crc: int = 0


@dataclass
class IndexUnit:
    """One 32-byte DLedger index unit."""

    magic: int
    pos: int
    size: int
    index: int
    term: int


def encode_entry(index: int, term: int, pos: int, body: bytes, *, magic: int = DLEDGER_MAGIC, channel: int = 0,
                 crc: int = 0) -> bytes:
    """A whole data entry (header + body) for Raft ``index``/``term`` written at absolute ``pos``,
    with bodyCrc ``crc`` (``body_crc(body)``; 0 leaves it unset).

    The body is written as given; use ``encode_record_entry`` for a RocketMQ record, whose
    PHYSICALOFFSET must point at the body.
    """
    if index < 0 or term < 0 or pos < 0:
        raise UserError(f"DLedger entry index/term/pos must be >= 0 (got {index}/{term}/{pos})")
    size = ENTRY_HEADER_BYTES + len(body)
    if size > 0x7FFFFFFF:
        raise UserError(f"DLedger entry of {size} bytes is too large")
    return _HEADER.pack(magic, size, index, term, pos, channel, 0, crc, len(body)) + bytes(body)


def pack_entry_header_into(buf: bytearray, at: int, index: int, term: int, pos: int, body_length: int, crc: int,
                           *, magic: int = DLEDGER_MAGIC) -> None:
    """The 48-byte header ``encode_entry`` writes, packed into ``buf`` at ``at`` (a run of entries
    built in one buffer); the caller checked index/term/pos >= 0 and the size."""
    _HEADER.pack_into(buf, at, magic, ENTRY_HEADER_BYTES + body_length, index, term, pos, 0, 0, crc, body_length)


def pack_index_unit_into(buf: bytearray, at: int, magic: int, pos: int, size: int, index: int, term: int) -> None:
    """``encode_index_unit`` packed into ``buf`` at ``at``."""
    _INDEX.pack_into(buf, at, magic, pos, size, index, term)


_RECORD_OFFSETS = struct.Struct(">qq")      # a record's QUEUEOFFSET and PHYSICALOFFSET
_RECORD_OFFSETS_AT = 20
_RECORD_QUEUE_OFFSET = struct.Struct(">q")
_RECORD_PHYSICAL_OFFSET_AT = 28


def build_record_entries(records: list[ByteView], queue_offsets: list[int], term: int, index: int, end_pos: int,
                         segment_bytes: int) -> tuple[list[tuple[int, ByteView]], bytearray, list[tuple[int, int, ByteView]]]:
    """The bytes of normal entries holding ``records`` (whole RocketMQ records) for Raft indexes
    ``index``, ``index + 1``... appended from log position ``end_pos`` in data segments of
    ``segment_bytes``: record ``i`` with QUEUEOFFSET ``queue_offsets[i]`` and PHYSICALOFFSET its
    entry's pos + 48 (spec 11.3), bodyCrc ``body_crc`` of the record as stored.

    Returns ``(writes, units, placed)``: ``writes`` the data writes in order, (pos, bytes): one
    buffer per run of entries in one segment, and the DLedger blank that closes a segment before an
    entry that does not fit in it (with 8 bytes to spare); ``units`` the index units of the
    entries, 32 bytes each, back to back; ``placed`` (index, pos, record as stored) per record, the
    record object itself when it already held both offsets. The caller checked index, term and
    end_pos >= 0 and that every entry fits in a segment; a record shorter than 36 bytes raises
    struct.error. Pure; ``_dledger.c`` is the same function in C (``tests/formats``), used where
    it is built (``mqbench.native``)."""
    if segment_bytes <= 0:
        raise ValueError("segment_bytes must be > 0")
    writes: list[tuple[int, ByteView]] = []
    placed: list[tuple[int, int, ByteView]] = []
    data = bytearray()
    units = bytearray(len(records) * INDEX_UNIT_BYTES)
    run_at = end = end_pos
    units_at = 0
    pack_qo, pack_po = _RECORD_QUEUE_OFFSET.pack_into, _RECORD_QUEUE_OFFSET.pack_into
    unpack_offsets = _RECORD_OFFSETS.unpack_from
    for record, queue_offset in zip(records, queue_offsets):
        size = ENTRY_HEADER_BYTES + len(record)
        remaining = segment_bytes - end % segment_bytes
        if size + DLEDGER_BLANK_BYTES > remaining:         # the entry opens the next segment
            if data:
                writes.append((run_at, data))
                data = bytearray()
            writes.append((end, encode_entry_blank(remaining)))
            end = run_at = end + remaining
        pos = end
        at = len(data)
        body_at = at + ENTRY_HEADER_BYTES
        physical_offset = pos + ENTRY_HEADER_BYTES
        data += bytes(ENTRY_HEADER_BYTES)
        data += record
        stored: ByteView = record
        if unpack_offsets(record, _RECORD_OFFSETS_AT) != (queue_offset, physical_offset):
            pack_qo(data, body_at + _RECORD_OFFSETS_AT, queue_offset)
            pack_po(data, body_at + _RECORD_PHYSICAL_OFFSET_AT, physical_offset)
            stored = bytes(data[body_at:])
        _HEADER.pack_into(data, at, DLEDGER_MAGIC, size, index, term, pos, 0, 0, body_crc(stored), len(record))
        _INDEX.pack_into(units, units_at, DLEDGER_MAGIC, pos, size, index, term)
        units_at += INDEX_UNIT_BYTES
        placed.append((index, pos, stored))
        index += 1
        end = pos + size
    if data:
        writes.append((run_at, data))
    return writes, units, placed


build_record_entries_py = build_record_entries
_native = native.load("mqbench.broker.formats._dledger")
if _native is not None:
    build_record_entries = _native.build_record_entries  # noqa: F811 - the same function in C


def encode_record_entry(index: int, term: int, pos: int, record: bytes) -> bytes:
    """A data entry whose body is a commitlog record, with its PHYSICALOFFSET set to pos + 48
    (what RocketMQ's DLedger append hook does, spec 11.3)."""
    return encode_entry(index, term, pos, set_physical_offset(record, pos + ENTRY_HEADER_BYTES))


def decode_entry_header(buf: ByteView, pos: int = 0, *, where: str | None = None) -> EntryHeader:
    """The header at ``buf[pos:pos+48]``. Raises CorruptDataError when fewer than 48 bytes are left.

    Checks nothing else; ``check_entry`` is the validity test.
    """
    if pos < 0 or len(buf) - pos < ENTRY_HEADER_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a DLedger entry header needs "
                               f"{ENTRY_HEADER_BYTES}", where=where, offset=pos)
    magic, size, index, term, entry_pos, channel, chain_crc, body_crc, body_len = _HEADER.unpack_from(buf, pos)
    return EntryHeader(magic, size, index, term, entry_pos, channel, body_len, chain_crc, body_crc)


def decode_entry(buf: ByteView, pos: int = 0, *, expected_pos: int | None = None, where: str | None = None) -> tuple[EntryHeader, bytes]:
    """A whole valid entry: (header, body). Raises CorruptDataError for anything else (also a blank)."""
    end = len(buf)
    header = decode_entry_header(buf, pos, where=where)
    problem = _entry_problem(header, end - pos, expected_pos)
    if problem:
        raise CorruptDataError(problem, where=where, offset=pos)
    return header, bytes(buf[pos + ENTRY_HEADER_BYTES:pos + header.size])


def _entry_problem(header: EntryHeader, left: int, expected_pos: int | None) -> str | None:
    if header.magic == DLEDGER_BLANK_MAGIC:
        return "end-of-file blank, not an entry"
    if header.magic not in DLEDGER_VALID_MAGICS:
        return f"bad DLedger entry magic {header.magic}"
    if header.size <= ENTRY_HEADER_SIZE_FIELD_BYTES or header.body_length < 0:
        return f"bad DLedger entry size {header.size}"
    if header.body_length + ENTRY_HEADER_BYTES != header.size:
        return f"DLedger entry size {header.size} differs from 48 + body length {header.body_length}"
    if header.size > left:
        return f"DLedger entry of {header.size} bytes runs past the end of the data ({left} bytes left)"
    if expected_pos is not None and header.pos != expected_pos:
        return f"DLedger entry says it is at {header.pos}, found at {expected_pos}"
    if header.index < 0 or header.term < 0:
        return f"negative DLedger index {header.index} or term {header.term}"
    return None


def check_entry(buf: ByteView, pos: int, end: int, expected_pos: int) -> int:
    """DLedger's recovery check on ``buf[pos:end]`` for an entry expected at absolute ``expected_pos``.

    Returns the entry size (> 0) when valid, ``ENTRY_BLANK`` (-1) for an end-of-file blank,
    ``ENTRY_END`` (0) otherwise (zeros, torn, wrong pos, inconsistent sizes). Never raises.
    """
    end = min(end, len(buf))
    if pos < 0 or end - pos < DLEDGER_BLANK_BYTES:
        return ENTRY_END
    magic = _BLANK.unpack_from(buf, pos)[0]
    if magic == DLEDGER_BLANK_MAGIC:
        return ENTRY_BLANK
    if end - pos < ENTRY_HEADER_BYTES:
        return ENTRY_END
    header = decode_entry_header(buf, pos)
    if _entry_problem(header, end - pos, expected_pos):
        return ENTRY_END
    return header.size


def entry_verdict(buf: ByteView, pos: int, end: int, expected_pos: int) -> tuple[int, str | None]:
    """THE definition of valid DLedger framing (the body is judged by ``record.record_verdict``).

    Returns ``(size, None)`` for an entry whose header is sound (magic, sizes, pos, index/term),
    ``(ENTRY_BLANK, None)`` for an end-of-file blank (the caller checks it closes the file), and
    ``(ENTRY_END, detail)`` where the valid data ends. A bodyCrc is checked by the caller (only a
    non-zero one means anything: DLedger itself writes 0).
    """
    end = min(end, len(buf))
    if pos < 0 or end - pos < DLEDGER_BLANK_BYTES:
        return ENTRY_END, f"{max(0, end - pos)} bytes left, too few for an entry"
    if _BLANK.unpack_from(buf, pos)[0] == DLEDGER_BLANK_MAGIC:
        return ENTRY_BLANK, None
    if end - pos < ENTRY_HEADER_BYTES:
        return ENTRY_END, f"{end - pos} bytes left, too few for an entry header"
    problem = _entry_problem(decode_entry_header(buf, pos), end - pos, expected_pos)
    if problem:
        return ENTRY_END, problem
    return _HEADER.unpack_from(buf, pos)[1], None


def body_crc(body: ByteView) -> int:
    """The bodyCrc mqbench writes into an entry header (masked CRC32 of the body)."""
    return zlib.crc32(body) & 0x7FFFFFFF


# the V1/V2 record magics (bytes 4..8 of a record): ``body[4:8] in RECORD_MAGICS`` is
# ``is_record_body(body)`` for a ``bytes`` body, without the call
RECORD_MAGICS = frozenset((b"\xda\xa3\x20\xa7", b"\xda\xa3\x20\xab"))
_RECORD_MAGICS = RECORD_MAGICS


def is_record_body(buf: ByteView, at: int = 0, end: int | None = None) -> bool:
    """True when the entry body at ``buf[at:end]`` starts like a RocketMQ record (a V1/V2 magic at
    +4); a normal entry whose body does not is Raft/mqbench metadata, not a message."""
    end = len(buf) if end is None else end
    return end - at >= 8 and bytes(buf[at + 4:at + 8]) in _RECORD_MAGICS


def encode_entry_blank(remaining: int) -> bytes:
    """The 8 bytes that close a data file: int32 -1, int32 ``remaining`` (the rest is left zero)."""
    if remaining < DLEDGER_BLANK_BYTES:
        raise UserError(f"a DLedger blank needs {DLEDGER_BLANK_BYTES} bytes, {remaining} left")
    return _BLANK.pack(DLEDGER_BLANK_MAGIC, remaining)


def encode_index_unit(magic: int, pos: int, size: int, index: int, term: int) -> bytes:
    """One 32-byte index unit."""
    try:
        return _INDEX.pack(magic, pos, size, index, term)
    except struct.error as exc:
        raise UserError(f"DLedger index unit field out of range: {exc}") from None


def decode_index_unit(buf: ByteView, pos: int = 0, *, where: str | None = None) -> IndexUnit:
    """The index unit at ``buf[pos:pos+32]``; raises CorruptDataError when fewer bytes are left."""
    if pos < 0 or len(buf) - pos < INDEX_UNIT_BYTES:
        raise CorruptDataError(f"{max(0, len(buf) - pos)} bytes left, a DLedger index unit needs "
                               f"{INDEX_UNIT_BYTES}", where=where, offset=pos)
    return IndexUnit(*_INDEX.unpack_from(buf, pos))


def encode_properties_file(values: dict[str, object]) -> bytes:
    """A DLedger ``checkpoint``/``currterm`` file: ``key=value\\n`` lines (IOUtils.properties2String).

    None becomes the empty string (``voteLeader`` with no leader). Keys and values must not hold
    line breaks or ``=``/``:`` in keys.
    """
    lines = []
    for key, value in values.items():
        text = "" if value is None else str(value)
        if not key or any(c in key for c in "=:\n\r") or any(c in text for c in "\n\r"):
            raise UserError(f"bad DLedger properties entry {key!r}={text!r}")
        lines.append(f"{key}={text}\n")
    return "".join(lines).encode("utf-8")


def decode_properties_file(data: bytes, *, where: str | None = None) -> dict[str, str]:
    """Parse a Java properties text as DLedger writes it (``key=value`` lines; ``#``/``!`` comments
    and blank lines skipped; ``:`` also separates; surrounding whitespace of keys trimmed).

    Raises CorruptDataError for bytes that are not text or a line without a separator.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptDataError(f"not a properties text ({exc.reason})", where=where, offset=exc.start) from None
    result: dict[str, str] = {}
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped and stripped[0] not in "#!":
            cut = [i for i in (stripped.find("="), stripped.find(":")) if i >= 0]
            if not cut:
                raise CorruptDataError(f"properties line {stripped[:40]!r} has no '='", where=where, offset=offset)
            i = min(cut)
            result[stripped[:i].strip()] = stripped[i + 1:].lstrip()
        offset += len(line.encode("utf-8"))
    return result


def dledger_checkpoint(data: bytes, *, where: str | None = None) -> tuple[int, int]:
    """(endIndex, committedIndex) from a DLedger ``checkpoint`` file; missing keys read as -1."""
    values = decode_properties_file(data, where=where)
    return _int_value(values, "endIndex", where), _int_value(values, "committedIndex", where)


def dledger_currterm(data: bytes, *, where: str | None = None) -> tuple[int, str | None]:
    """(currTerm, voteLeader or None) from a DLedger ``currterm`` file; a missing term reads as 0."""
    values = decode_properties_file(data, where=where)
    term = _int_value(values, "currTerm", where, default=0)
    return term, values.get("voteLeader") or None


def _int_value(values: dict[str, str], key: str, where: str | None, default: int = -1) -> int:
    if key not in values or values[key] == "":
        return default
    try:
        return int(values[key])
    except ValueError:
        raise CorruptDataError(f"{key}={values[key]!r} is not an integer", where=where) from None
