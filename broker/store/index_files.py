"""RocketMQ's message-key index on disk: the ``index/`` folder of IndexFiles (spec 7), written and
read here; the layout and the insert rule are ``index_file`` (pure).

``IndexWriter(folder, hash_slot_num, index_num)`` builds the files of a whole log in one pass,
as RocketMQ's IndexService does while dispatching: ``put_record(topic, properties, sysflag,
physical_offset, store_timestamp_ms)`` indexes the record's ``UNIQ_KEY`` and each word of its
``KEYS`` under ``topic#key`` (ROLLBACK records are not indexed). A file is full at
``index_num - 1`` items (item 0 is never used); the next file's header starts at the previous
file's end values. A file is named by the store time of the first record it indexes
(``yyyyMMddHHmmssSSS`` in local time, as RocketMQ names it by its clock), so a rebuild gives the
same bytes every time. Memory: the slot table of the file being written (4 bytes a slot) and a
buffer of items; items are written sequentially, the slots and the header when the file is done.

``lookup(folder, topic, key)`` follows the slot chains of every file and returns the physical
offsets whose key hash matches (hashes collide: the caller checks the record). ``geometry(size)``
reads (hash_slot_num, index_num) back from a file size, for files written with RocketMQ's 1:4
ratio of slots to items (its defaults, 5,000,000 and 20,000,000, and the real 4.9.8 store's 1,000
and 4,000); other sizes are not read.
"""
from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path

from mqbench import native
from mqbench.errors import CorruptDataError

from mqbench.broker.formats import index_file as fmt
from mqbench.broker.formats.record_layout import SYSFLAG_TX_MASK, SYSFLAG_TX_ROLLBACK
from .segments import fsync_dir
from mqbench.broker.formats.properties import PROPERTY_KEYS, PROPERTY_UNIQ_KEY

INDEX_DIR = "index"
_ITEM_BUFFER_BYTES = 1 << 20
_SLOT_CHUNK_BYTES = 4096
_ITEM = struct.Struct(">iqii")
_TRIPLE = struct.Struct("=qqq")
# mqbench.broker.store._index_files (_index_files.c): put_flat's inlined insert in C, for put_packed
_native = native.load("mqbench.broker.store._index_files")


def geometry(size_bytes: int) -> tuple[int, int] | None:
    """(hash_slot_num, index_num) of an IndexFile of ``size_bytes`` with 4 items per slot."""
    body = size_bytes - fmt.INDEX_HEADER_BYTES
    unit = fmt.HASH_SLOT_BYTES + 4 * fmt.INDEX_ITEM_BYTES
    if body <= 0 or body % unit:
        return None
    return body // unit, 4 * (body // unit)


def record_keys(topic: str, properties: dict[str, str], sysflag: int) -> list[str]:
    """The index keys (``topic#key``) of a record, in RocketMQ's order: UNIQ_KEY, then KEYS words."""
    if sysflag & SYSFLAG_TX_MASK == SYSFLAG_TX_ROLLBACK:
        return []
    keys = []
    uniq = properties.get(PROPERTY_UNIQ_KEY)
    if uniq:
        keys.append(fmt.index_key(topic, uniq))
    for word in properties.get(PROPERTY_KEYS, "").split(" "):
        if word:
            keys.append(fmt.index_key(topic, word))
    return keys


class IndexWriter:
    """Builds the IndexFiles of a log in one pass (see module doc)."""

    def __init__(self, folder: str | os.PathLike, *, hash_slot_num: int = fmt.DEFAULT_HASH_SLOT_NUM,
                 index_num: int = fmt.DEFAULT_INDEX_NUM):
        self.folder = Path(folder)
        self.hash_slot_num = hash_slot_num
        self.index_num = index_num
        self.items_written = 0
        self._fd = -1
        # the header of the file being written, as ints (``index_file.IndexHeader`` at the end)
        self._begin_ts = self._end_ts = self._begin_phy = self._end_phy = 0
        self._slot_count, self._count = 0, 1
        self._slots = array("i")
        self._items = bytearray()
        self._items_at = 0

    def _open(self, store_timestamp_ms: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / fmt.index_file_name(store_timestamp_ms)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, fmt.index_file_bytes(self.hash_slot_num, self.index_num))
        # a new file starts where the previous one ended (spec 7)
        self._begin_ts, self._begin_phy = self._end_ts, self._end_phy
        self._slot_count, self._count = 0, 1
        self._slots = array("i", bytes(fmt.HASH_SLOT_BYTES * self.hash_slot_num))
        self._items = bytearray()
        self._items_at = fmt.item_position(1, self.hash_slot_num)

    def put_record(self, topic: str, properties: dict[str, str], sysflag: int, physical_offset: int,
                   store_timestamp_ms: int) -> None:
        for key in record_keys(topic, properties, sysflag):
            self.put(key, physical_offset, store_timestamp_ms)

    def put(self, key: str, physical_offset: int, store_timestamp_ms: int) -> None:
        """Index ``key`` (already ``topic#key``) for the record at ``physical_offset``: the insert
        of ``index_file.plan_put``, on ints (it runs for every key of a migration)."""
        self.put_hashed(fmt.key_hash(key), physical_offset, store_timestamp_ms)

    def put_hashed(self, h: int, physical_offset: int, store_timestamp_ms: int) -> None:
        """``put`` of a key whose ``index_file.key_hash`` is ``h`` (a caller that hashes the key's
        bytes itself: ``index_file.key_hash_ascii``)."""
        if self._fd < 0:
            self._open(store_timestamp_ms)
        elif self._count >= self.index_num:
            self._finish()
            self._open(store_timestamp_ms)
        slot = h % self.hash_slot_num
        n = self._count
        old = self._slots[slot]
        prev = 0 if old <= 0 or old > n else old
        begin = self._begin_ts
        diff = 0 if begin <= 0 else min(max((store_timestamp_ms - begin) // 1000, 0), fmt.INT32_MAX)
        if n <= 1:
            self._begin_phy, self._begin_ts = physical_offset, store_timestamp_ms
        if prev == 0:
            self._slot_count += 1
        self._count = n + 1
        self._end_phy, self._end_ts = physical_offset, store_timestamp_ms
        self._items += _ITEM.pack(h, physical_offset, diff, prev)
        self._slots[slot] = n
        self.items_written += 1
        if len(self._items) >= _ITEM_BUFFER_BYTES:
            self._flush_items()

    def put_flat(self, flat: list[int]) -> None:
        """``put_hashed`` of every ``(hash, physical_offset, store_timestamp_ms)`` triple of ``flat``
        (laid out flat, in insert order), with the insert inlined: a migration's fast path gathers
        its records' keys and indexes them here, one call per run instead of one per record."""
        n = self._count
        end = len(flat)
        at = 0
        if self._fd >= 0 and n > 1:
            # the inlined insert, while the file has room (a new file and its first item: put_hashed)
            slots = self._slots
            slot_num = self.hash_slot_num
            items = self._items
            pack = _ITEM.pack
            begin = self._begin_ts
            index_num = self.index_num
            int32_max = fmt.INT32_MAX
            new_slots = 0
            phys = ms = 0
            while at < end and n < index_num:
                h, phys, ms = flat[at], flat[at + 1], flat[at + 2]
                at += 3
                slot = h % slot_num
                old = slots[slot]
                if old <= 0 or old > n:
                    old = 0
                    new_slots += 1
                if begin <= 0:
                    diff = 0
                else:
                    diff = (ms - begin) // 1000
                    if diff < 0:
                        diff = 0
                    elif diff > int32_max:
                        diff = int32_max
                items += pack(h, phys, diff, old)
                slots[slot] = n
                n += 1
            done = n - self._count
            if done:
                self._slot_count += new_slots
                self.items_written += done
                self._count = n
                self._end_phy, self._end_ts = phys, ms
                if len(items) >= _ITEM_BUFFER_BYTES:
                    self._flush_items()
        while at < end:
            self.put_hashed(flat[at], flat[at + 1], flat[at + 2])
            at += 3

    def put_packed(self, flat) -> None:
        """``put_flat`` of triples packed as native int64 (a bytes-like of 24 bytes a triple; the
        compiled copy loop gathers them so). The inlined insert runs in C where
        ``mqbench.broker.store._index_files`` is loaded, else ``put_flat`` does it: the same items,
        slots and headers either way."""
        if _native is None:
            self.put_flat(array("q", bytes(flat)).tolist())
            return
        end = len(flat) // _TRIPLE.size
        at = 0
        while at < end:
            if self._fd >= 0 and 1 < self._count < self.index_num:
                at, n, new_slots, phys, ms = _native.index_put(self._slots, self._items, flat, at, self._count,
                                                               self.index_num, self.hash_slot_num, self._begin_ts)
                done = n - self._count
                if done:
                    self._slot_count += new_slots
                    self.items_written += done
                    self._count = n
                    self._end_phy, self._end_ts = phys, ms
                    if len(self._items) >= _ITEM_BUFFER_BYTES:
                        self._flush_items()
            else:       # a new file, its first item, or a full file: put_hashed
                self.put_hashed(*_TRIPLE.unpack_from(flat, at * _TRIPLE.size))
                at += 1

    def _flush_items(self) -> None:
        if self._items:
            os.pwrite(self._fd, self._items, self._items_at)
            self._items_at += len(self._items)
            self._items = bytearray()

    def _finish(self) -> None:
        self._flush_items()
        table = self._slots.tobytes() if _BIG_ENDIAN else _swapped(self._slots)
        base = fmt.slot_position(0)
        for at in range(0, len(table), _SLOT_CHUNK_BYTES):     # the file is sparse: zeros stay holes
            chunk = table[at:at + _SLOT_CHUNK_BYTES]
            if chunk.count(0) != len(chunk):
                os.pwrite(self._fd, chunk, base + at)
        header = fmt.IndexHeader(self._begin_ts, self._end_ts, self._begin_phy, self._end_phy, self._slot_count,
                                 self._count)
        os.pwrite(self._fd, fmt.encode_index_header(header), 0)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1

    def close(self) -> None:
        """Write what is pending and fsync (the folder too)."""
        if self._fd >= 0:
            self._finish()
        if self.folder.is_dir():
            fsync_dir(self.folder)


_BIG_ENDIAN = array("i", [1]).tobytes()[0] == 0


def _swapped(values: array) -> bytes:
    out = array("i", values)
    out.byteswap()
    return out.tobytes()


def index_files(folder: str | os.PathLike) -> list[Path]:
    """The IndexFiles of ``folder`` in creation order (their names are times)."""
    base = Path(folder)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_file() and p.name.isdigit() and len(p.name) == 17)


def lookup(folder: str | os.PathLike, topic: str, key: str, max_hits: int = 64) -> list[int]:
    """Physical offsets indexed under ``topic#key`` in every file of ``folder`` (hash matches; the
    caller checks the records). Files of a size ``geometry`` cannot read are skipped."""
    full = fmt.index_key(topic, key)
    h = fmt.key_hash(full)
    hits: list[int] = []
    for path in index_files(folder):
        size = path.stat().st_size
        geo = geometry(size)
        if geo is None:
            continue
        slots, items = geo
        with open(path, "rb") as f:
            fd = f.fileno()
            header = fmt.decode_index_header(os.pread(fd, fmt.INDEX_HEADER_BYTES, 0), where=str(path))
            n = fmt.decode_slot(os.pread(fd, 4, fmt.slot_position(h % slots)), 0, where=str(path))
            seen = 0
            while 0 < n < header.index_count and seen < items and len(hits) < max_hits:
                raw = os.pread(fd, fmt.INDEX_ITEM_BYTES, fmt.item_position(n, slots))
                if len(raw) < fmt.INDEX_ITEM_BYTES:
                    raise CorruptDataError("index item past the end of the file", where=str(path))
                item = fmt.decode_index_item(raw)
                if item.key_hash == h:
                    hits.append(item.phy_offset)
                n = item.prev_index
                seen += 1
    return hits
