"""The fast path's checks of one window of source bytes: pure, so they can run in worker processes.

``summarize(buf, length, base, src_dl, v4, committed) -> Summary`` walks the items (records, or
DLedger entries) in ``buf[:length]``, whose first byte is the log address ``base`` and which holds
whole items only (``hop``), and returns one row per item. A row says whether the item passed every
check that depends on its own bytes alone, the checks ``record_check.record_verdict`` (and, in a
DLedger log, ``dledger.entry_verdict``) make, each on the same bytes:

* the entry's framing, its position, index and term, its bodyCrc, its index not past the committed
  one (a DLedger source going to a plain target);
* the record's sizes that add up, magic (V2 only when the target is not 4.x), PHYSICALOFFSET equal
  to the record's address, a topic of TopicValidator's characters and not a delay, timer or
  half-transaction topic, properties ASCII and not ending with NUL, no ``__CRC32#`` property, no
  transaction/inner-batch sysflag, a body a v4 target can hold, BODYCRC.

An item that fails any of them gets ``ok = 0`` and is left to the one log reader and the
per-record path, which decide (and raise with their own message); the walk goes on by the item's
size, so the rows after it stay usable. For an ``ok`` row it also gives what the copy needs without
decoding again (``ROW``): sizes, the 4.x property form's size (``wsize``: the final ``\\x02``
dropped for a v4 target), the queue, the store timestamp, the DLedger index and term, the tags
hash code, and the key index hashes of UNIQ_KEY and KEYS (``topic#key``, the last property of a
name wins, as ``record.decode_properties`` reads them). What depends on what was copied before
(a queue's next offset, the next Raft index, the target's position and term, BatchCQ topics from
the configs) is checked by the caller (``bulk``), in log order.

With ``relaxed`` (``run.stored``'s figures, which read every record, not only those a copy takes
fast) ``ok`` means exactly "a record the log reader yields undamaged": delay, timer and half
topics, transaction and inner-batch sysflags and a ``__CRC32#`` property no longer make a row not
``ok``; every check of the record's own validity stays (a row that fails is still left to the
reader).

``hop(buf, length, src_dl)`` is the cheap part that can only run in order: the end of the last
whole item in the window, hopping by each item's size field, and whether the hop stopped at a size
no item can have (the walk of that folder cannot go on from there without the reader).
"""
from __future__ import annotations

import re
import struct
import zlib
from array import array
from itertools import chain

from mqbench import native
from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.compression import v4_reads
from mqbench.broker.formats.index_file import key_hash_ascii_after
from mqbench.broker.formats.properties import PROPERTY_CRC32, PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from mqbench.broker.formats.record_check import property_value
from mqbench.broker.formats.record_layout import BLANK_MIN_BYTES, MAGIC_V1, MAGIC_V2, SYSFLAG_BORNHOST_V6, SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, SYSFLAG_STOREHOST_V6, SYSFLAG_TX_MASK
from mqbench.broker.formats.tags import java_hash_ascii
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.formats.topics import SCHEDULE_TOPIC, TRANS_HALF_TOPIC

MIN_RECORD_BYTES = 91
ENTRY_BYTES = dl.ENTRY_HEADER_BYTES
# a row: the item's address and the next one's, ok, the record's offset in the window, its size and
# its target size, where its PROPERTIESLENGTH is (from the record's start) and its value, the
# topic's number in ``Summary.topics``, queue id and offset, store timestamp, DLedger index and
# term (-1 in a plain log), tags hash code, and the first key hash in ``Summary.keys`` with the count
ROW = ("pos", "nxt", "ok", "rat", "total", "wsize", "plen_at", "props_len", "topic", "queue_id", "queue_offset",
       "store_ms", "eindex", "eterm", "tags_code", "key_at", "nkeys")
ROW_FIELDS = len(ROW)
_NOT_OK = (0,) * (ROW_FIELDS - 3)

_TOPIC_CHARS = re.compile(rb"[%|a-zA-Z0-9_-]+")      # record_check's TopicValidator set
_SPECIAL_TOPICS = {TRANS_HALF_TOPIC.encode(), SCHEDULE_TOPIC.encode(), TIMER_TOPIC.encode()}
_CRC_TAIL = PROPERTY_CRC32.encode() + b"\x01"
_TAGS, _UNIQ, _KEYS = PROPERTY_TAGS.encode(), PROPERTY_UNIQ_KEY.encode(), PROPERTY_KEYS.encode()
_NOT_FAST_SYSFLAG = SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_I64 = struct.Struct(">q")
_TAIL = struct.Struct(">iqi")
_RECORD_IPV4 = ">iiiiiqqiq8xq8xiqi"    # a record's fields up to BODYLENGTH, both hosts IPv4
_IPV4_BODY_AT = 88
_ENTRY_RECORD = struct.Struct(">iiqqqiiii" + _RECORD_IPV4[1:])
_RECORD = struct.Struct(_RECORD_IPV4)
_V6_HOSTS = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6


class Summary:
    """The rows of one window (``ROW``), the topics they name and the key hashes they index."""

    __slots__ = ("rows", "topics", "keys")

    def __init__(self, rows: list[tuple], topics: list[bytes], keys):
        self.rows, self.topics, self.keys = rows, topics, keys

    def __reduce__(self):        # sent between processes as its three lists (pickle's C code)
        return Summary, (self.rows, self.topics, self.keys)


def hop_py(buf, length: int, src_dl: bool) -> tuple[int, bool]:
    """``(end, stopped)``: the end (from ``buf``'s start) of the last whole item of ``buf[:length]``
    hopping by size fields; ``stopped`` when the hop met a size no item has (zero, negative, or
    larger than the window: the walk goes on only through the reader)."""
    at = 0
    size_at = 4 if src_dl else 0
    least = dl.DLEDGER_BLANK_BYTES if src_dl else BLANK_MIN_BYTES      # blanks and no-ops are hopped too
    i32 = _I32.unpack_from
    while at + 8 <= length:
        size = i32(buf, at + size_at)[0]
        if size < least:
            return at, True
        if at + size > length:
            return at, at == 0
        at += size
    return at, at == 0


def summarize_py(buf, length: int, base: int, src_dl: bool, v4: bool, committed: int | None,
                 relaxed: bool = False) -> Summary:
    """The rows of the whole items of ``buf[:length]`` (module doc); ``buf`` starts at address ``base``."""
    rows: list[tuple] = []
    keys: list[int] = []
    topics: list[bytes] = []
    topic_ids: dict[bytes, tuple[int, int, bool]] = {}
    tags_cache: dict[bytes, int] = {}
    append = rows.append
    key_append = keys.append
    record_unpack = _RECORD.unpack_from
    entry_record_unpack = _ENTRY_RECORD.unpack_from
    i32 = _I32.unpack_from
    i16 = _I16.unpack_from
    i64 = _I64.unpack_from
    tail_unpack = _TAIL.unpack_from
    crc32 = zlib.crc32
    key_hash = key_hash_ascii_after
    dl_magic = dl.DLEDGER_MAGIC
    at = 0
    eindex = eterm = -1
    while at + 8 <= length:
        pos = base + at
        # -- the source item: a record, or a DLedger entry holding one; the common record (IPv4
        # hosts) is read in one unpack up to its body's length --------------------------------
        if src_dl:
            esize = i32(buf, at + 4)[0]
            if esize < dl.DLEDGER_BLANK_BYTES or at + esize > length:
                break
            nxt = at + esize
            if esize < ENTRY_BYTES + MIN_RECORD_BYTES:     # a no-op, a blank, or no whole record
                append((pos, base + nxt, 0) + _NOT_OK)
                at = nxt
                continue
            (magic, _, eindex, eterm, epos, _, _, ebody_crc, ebody_len, total, rmagic, bcrc, queue_id, _,
             queue_offset, phys, sysflag, _, store_ms, _, _, body_len) = entry_record_unpack(buf, at)
            rat = at + ENTRY_BYTES
            if (magic != dl_magic or ebody_len + ENTRY_BYTES != esize or epos != pos or eindex < 0 or eterm < 0
                    or (committed is not None and eindex > committed)
                    or (ebody_crc and ebody_crc != crc32(buf[rat:nxt]) & 0x7FFFFFFF)
                    or total != ebody_len):
                append((pos, base + nxt, 0) + _NOT_OK)
                at = nxt
                continue
            address = pos + ENTRY_BYTES
        else:
            total = i32(buf, at)[0]
            if total < BLANK_MIN_BYTES or at + total > length:
                break
            nxt = at + total
            if total < MIN_RECORD_BYTES:
                append((pos, base + nxt, 0) + _NOT_OK)
                at = nxt
                continue
            (_, rmagic, bcrc, queue_id, _, queue_offset, phys, sysflag, _, store_ms, _, _, body_len) = \
                record_unpack(buf, at)
            rat = at
            address = pos
        at = nxt
        # -- the record's framing ---------------------------------------------------------------
        rend = nxt
        if phys != address or (not relaxed and sysflag & _NOT_FAST_SYSFLAG):
            append((pos, base + nxt, 0) + _NOT_OK)
            continue
        if rmagic == MAGIC_V1:
            tl = 1
        elif rmagic == MAGIC_V2 and not v4:
            tl = 2
        else:
            append((pos, base + nxt, 0) + _NOT_OK)
            continue
        if sysflag & _V6_HOSTS:
            h = rat + 48 + (20 if sysflag & SYSFLAG_BORNHOST_V6 else 8)
            store_ms = i64(buf, h)[0]
            h += 8 + (20 if sysflag & SYSFLAG_STOREHOST_V6 else 8)
            if h + 16 > rend:
                append((pos, base + nxt, 0) + _NOT_OK)
                continue
            body_len = tail_unpack(buf, h)[2]
            body_at = h + 16
        else:
            body_at = rat + _IPV4_BODY_AT
        tat = body_at + body_len
        ok = body_len >= 0 and tat + tl <= rend
        if ok:
            topic_len = buf[tat] if tl == 1 else i16(buf, tat)[0]
            pat = tat + tl + topic_len + 2
            ok = 0 < topic_len and (tl == 2 or topic_len <= 127) and pat <= rend
        if ok:
            props_len = i16(buf, pat - 2)[0]
            ok = props_len >= 0 and pat + props_len == rend
        if not ok:
            append((pos, base + nxt, 0) + _NOT_OK)
            continue
        topic = buf[tat + tl:pat - 2]
        info = topic_ids.get(topic)
        if info is None:
            chars = bool(_TOPIC_CHARS.fullmatch(topic))
            fast = chars and topic not in _SPECIAL_TOPICS
            info = topic_ids[topic] = (len(topics), java_hash_ascii(topic + b"#"), chars if relaxed else fast)
            topics.append(topic)
        tid, prefix_hash, fast = info
        props = buf[pat:rend]
        if (not fast or (props_len and (props[-1] == 0 or not props.isascii()))
                or (not relaxed and props_len >= 20 and props.startswith(_CRC_TAIL, props_len - 20))
                or (v4 and sysflag & SYSFLAG_COMPRESSED and not v4_reads(sysflag))
                or crc32(buf[body_at:tat]) & 0x7FFFFFFF != bcrc):
            append((pos, base + nxt, 0) + _NOT_OK)
            continue
        # -- what the copy needs --------------------------------------------------------------
        wsize = total - 1 if (v4 and props_len and props[-1] == 2) else total
        tags_code = 0
        tags = property_value(props, _TAGS)
        if tags:
            tags_code = tags_cache.get(tags)
            if tags_code is None:
                u = java_hash_ascii(tags)
                tags_code = tags_cache[tags] = u - 0x100000000 if u & 0x80000000 else u
        key_at = len(keys)
        key = property_value(props, _UNIQ)
        if key:
            key_append(key_hash(prefix_hash, key))
        words = property_value(props, _KEYS)
        if words:
            if b" " in words:
                for word in words.split(b" "):
                    if word:
                        key_append(key_hash(prefix_hash, word))
            else:
                key_append(key_hash(prefix_hash, words))
        append((pos, base + nxt, 1, rat, total, wsize, pat - 2 - rat, props_len, tid, queue_id, queue_offset, store_ms,
                eindex, eterm, tags_code, key_at, len(keys) - key_at))
    return Summary(rows, topics, keys)


def pack(summary: Summary) -> Summary:
    """``summary`` with its rows and key hashes as native int64 arrays (``ROW_FIELDS`` values a
    row): the form the compiled copy loop reads (``bulk``, ``prescan``'s ``packed``)."""
    summary.rows = array("q", chain.from_iterable(summary.rows))
    summary.keys = array("q", summary.keys)
    return summary


# mqbench.migrate._scan (migrate/_scan.c): the same two functions in C, one call per window, used
# wherever it is built and MQBENCH_NATIVE is not 0; the functions above stay the reference
# (tests/migrate/test_scan_native.py compares them on the same windows).
_native = native.load("mqbench.migrate._scan")
NATIVE = _native is not None      # summarize takes any buffer (the Python one: bytes)
if _native is None:
    hop = hop_py

    def summarize(buf, length: int, base: int, src_dl: bool, v4: bool, committed: int | None,
                  packed: bool = False, relaxed: bool = False) -> Summary:
        """``summarize_py``, its rows and keys packed (``pack``) with ``packed``."""
        summary = summarize_py(buf, length, base, src_dl, v4, committed, relaxed)
        return pack(summary) if packed else summary
else:
    _native_summarize = _native.summarize
    hop = _native.hop

    def summarize(buf, length: int, base: int, src_dl: bool, v4: bool, committed: int | None,
                  packed: bool = False, relaxed: bool = False) -> Summary:
        """``summarize_py``'s result, computed in C; with ``packed`` the rows and keys come out of
        the C code as int64 bytes (no tuple or int object per row), equal to ``pack``'s."""
        rows, topics, keys = _native_summarize(buf, length, base, src_dl, v4, committed, packed, relaxed)
        if packed:
            rows_array, keys_array = array("q"), array("q")
            rows_array.frombytes(rows)
            keys_array.frombytes(keys)
            return Summary(rows_array, topics, keys_array)
        return Summary(rows, topics, keys)
