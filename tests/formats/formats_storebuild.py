"""Build small stores laid out exactly as RocketMQ 4.x/5.x writes them (spec sections 1, 2, 11),
with the format encoders: full-size zero-filled files with 20-digit names, small file sizes.

Used by the inspect tests, so that inspect is tested on foreign-looking stores, not only on ours.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mqbench.broker.formats import configs, dledger as dl
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.checkpoint import StoreCheckpoint, encode_checkpoint
from mqbench.broker.formats.queues import BcqUnit, encode_bcq_unit, encode_cq_filler, encode_cq_unit
from mqbench.broker.formats.record import Message, encode_blank, encode_message, record_size
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.tags import message_tags_code

NAME = "{:020d}"


def _put(space: bytearray, at: int, data: bytes) -> None:
    if len(space) < at + len(data):
        space.extend(bytes(at + len(data) - len(space)))
    space[at:at + len(data)] = data


@dataclass
class Written:
    topic: str
    queue_id: int
    queue_offset: int
    physical_offset: int
    size: int
    batch_size: int = 1


@dataclass
class StoreBuilder:
    root: str
    version: str = "v4"
    log_file_bytes: int = 1024
    cq_file_bytes: int = 20 * 8
    bcq_file_bytes: int = 46 * 8
    dledger_index_file_bytes: int = 32 * 8
    self_id: str = "n0"
    batch_topics: set = field(default_factory=set)
    store_time_ms: int = 1_700_000_000_000
    term: int = 1

    def __post_init__(self):
        self.dledger = self.version.endswith("dledger")
        self.files: dict[str, bytearray] = {}  # folder -> whole address space (split into files on save)
        self.write_pos = 0
        self.entry_index = 0
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.written: list[Written] = []
        self.cq: dict[tuple[str, int], list[Written]] = {}
        self.index_units: list[bytes] = []

    @property
    def log_folder(self) -> str:
        return f"dledger-{self.self_id}/data" if self.dledger else "commitlog"

    def _append(self, data: bytes) -> int:
        """Place ``data`` so it never crosses a file boundary, with a blank where it does not fit."""
        log = self.files.setdefault(self.log_folder, bytearray())
        room = self.log_file_bytes - self.write_pos % self.log_file_bytes
        if len(data) + 8 > room:
            blank = dl.encode_entry_blank(room) if self.dledger else encode_blank(room)
            log[self.write_pos:self.write_pos] = blank + bytes(room - len(blank))
            self.write_pos += room
        at = self.write_pos
        log[at:at] = data
        self.write_pos += len(data)
        return at

    def noop(self, term: int, body: bytes = b"", magic: int = dl.DLEDGER_MAGIC_NOOP) -> None:
        """A DLedger entry that holds no message (a new leader's term-start no-op, or mqbench
        metadata with ``magic`` 1 and a non-record body); later entries are written in ``term``."""
        self.term = term
        room = self.log_file_bytes - self.write_pos % self.log_file_bytes
        pos = self.write_pos if dl.ENTRY_HEADER_BYTES + len(body) + 8 <= room else self.write_pos + room
        entry = dl.encode_entry(self.entry_index, term, pos, body, magic=magic)
        assert self._append(entry) == pos
        self.index_units.append(dl.encode_index_unit(magic, pos, len(entry), self.entry_index, term))
        self.entry_index += 1

    def add(self, topic: str, body: bytes = b"hello", *, queue_id: int = 0, properties: dict | None = None,
            sysflag: int = 0, items: list[BatchItem] | None = None, cq: bool = True) -> Written:
        key = (topic, queue_id)
        qoffset = self.next_offsets.get(key, 0)
        props = dict(properties or {})
        batch_size = 1
        if items is not None:  # a 5.x inner-batch record
            body = encode_batch(items)
            batch_size = len(items)
            sysflag |= SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP
            props.update({"INNER_NUM": str(batch_size), "INNER_BASE": str(qoffset)})
        tx = sysflag & SYSFLAG_TX_MASK
        if tx in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            qoffset = 0
        msg = Message(topic=topic, body=body, properties=props, queue_id=queue_id, queue_offset=qoffset,
                      sysflag=sysflag, born_timestamp_ms=self.store_time_ms, store_timestamp_ms=self.store_time_ms + 1,
                      born_host=("10.0.0.1", 50000), store_host=("10.0.0.2", 10911))
        self.store_time_ms += 10
        if self.dledger:
            size = record_size(msg)
            room = self.log_file_bytes - self.write_pos % self.log_file_bytes
            pos = self.write_pos if dl.ENTRY_HEADER_BYTES + size + 8 <= room else self.write_pos + room
            msg.physical_offset = pos + dl.ENTRY_HEADER_BYTES
            entry = dl.encode_record_entry(self.entry_index, self.term, pos, encode_message(msg))
            at = self._append(entry)
            assert at == pos
            self.index_units.append(dl.encode_index_unit(dl.DLEDGER_MAGIC, pos, len(entry), self.entry_index, self.term))
            self.entry_index += 1
            phys = pos + dl.ENTRY_HEADER_BYTES
        else:
            size = record_size(msg)
            room = self.log_file_bytes - self.write_pos % self.log_file_bytes
            msg.physical_offset = self.write_pos if size + 8 <= room else self.write_pos + room
            phys = self._append(encode_message(msg))
            assert phys == msg.physical_offset
        w = Written(topic, queue_id, qoffset, phys, size, batch_size)
        self.written.append(w)
        if tx not in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            self.next_offsets[key] = qoffset + batch_size
            if cq:
                self.cq.setdefault(key, []).append(w)
            w.tags_code = message_tags_code(msg)
        return w

    def _save_segments(self, folder: str, data: bytes | bytearray, file_bytes: int, start: int = 0) -> None:
        path = os.path.join(self.root, folder)
        os.makedirs(path, exist_ok=True)
        first = start - start % file_bytes
        for file_start in range(first, max(len(data), first + 1), file_bytes):
            chunk = bytes(data[file_start:file_start + file_bytes]) if file_start < len(data) else b""
            with open(os.path.join(path, NAME.format(file_start)), "wb") as f:
                f.write(chunk)
                f.truncate(file_bytes)  # full size, zero-filled (sparse), as RocketMQ's mapped files

    def save(self, *, offsets: dict | None = None, delay_offsets: dict | None = None) -> str:
        os.makedirs(self.root, exist_ok=True)
        self._save_segments(self.log_folder, self.files.get(self.log_folder, b""), self.log_file_bytes)
        flavour = "v4" if self.version.startswith("v4") else "v5"
        for (topic, queue_id), entries in self.cq.items():
            if topic in self.batch_topics:
                units = b"".join(encode_bcq_unit(BcqUnit(w.physical_offset, w.size, w.tags_code, 0, w.queue_offset,
                                                         w.batch_size)) for w in entries)
                self._save_segments(f"batchconsumequeue/{topic}/{queue_id}", units, self.bcq_file_bytes)
            else:
                space = bytearray()
                for w in entries:
                    _put(space, w.queue_offset * 20, encode_cq_unit(w.physical_offset, w.size, w.tags_code))
                self._save_segments(f"consumequeue/{topic}/{queue_id}", space, self.cq_file_bytes)
        if self.dledger:
            ddir = f"dledger-{self.self_id}"
            self._save_segments(f"{ddir}/index", b"".join(self.index_units), self.dledger_index_file_bytes)
            last = self.entry_index - 1
            with open(os.path.join(self.root, ddir, "checkpoint"), "wb") as f:
                f.write(dl.encode_properties_file({"endIndex": last, "committedIndex": last}))
            with open(os.path.join(self.root, ddir, "currterm"), "wb") as f:
                f.write(dl.encode_properties_file({"currTerm": self.term, "voteLeader": self.self_id}))
        with open(os.path.join(self.root, "checkpoint"), "wb") as f:
            f.write(encode_checkpoint(StoreCheckpoint(self.store_time_ms, self.store_time_ms, self.store_time_ms,
                                                      self.write_pos, self.write_pos), version=self.version))
        config = os.path.join(self.root, "config")
        os.makedirs(config, exist_ok=True)
        topics = {t: configs.TopicConfig(t, 4, 4, attributes={"queue.type": "BatchCQ"} if t in self.batch_topics else {})
                  for t, _ in self.next_offsets}
        dv = configs.DataVersion(1, self.store_time_ms, 0)
        with open(os.path.join(config, "topics.json"), "w") as f:
            f.write(configs.dump_topics_json(topics, flavour, data_version=dv))
        if offsets is not None:
            with open(os.path.join(config, "consumerOffset.json"), "w") as f:
                f.write(configs.dump_consumer_offsets_json(offsets, flavour, data_version=dv))
        if delay_offsets is not None:
            with open(os.path.join(config, "delayOffset.json"), "w") as f:
                f.write(configs.dump_delay_offsets_json(delay_offsets, flavour, data_version=dv))
        if flavour == "v5" and not self.dledger and not self.batch_topics:
            # a 5.x broker always has a timer store
            with open(os.path.join(self.root, "timerwheel"), "wb") as f:
                f.write(b"")
        return self.root

    def filler_cq(self, topic: str, queue_id: int, first_offset: int) -> None:
        """Rewrite a queue's CQ as if its first file started at ``first_offset`` (fillers before it)."""
        entries = self.cq[(topic, queue_id)]
        space = bytearray()
        start = first_offset * 20 - (first_offset * 20) % self.cq_file_bytes
        for q in range(start // 20, first_offset):
            _put(space, q * 20, encode_cq_filler())
        for w in entries:
            if w.queue_offset >= first_offset:
                _put(space, w.queue_offset * 20, encode_cq_unit(w.physical_offset, w.size, w.tags_code))
        path = os.path.join(self.root, "consumequeue", topic, str(queue_id))
        for name in os.listdir(path):
            os.remove(os.path.join(path, name))
        self._save_segments(f"consumequeue/{topic}/{queue_id}", space, self.cq_file_bytes, start=start)
