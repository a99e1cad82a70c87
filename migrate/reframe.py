"""Re-framing one source record for the target version: pure code, messages in, messages out.

``Reframer(target_version, codec=None, compress_over_bytes=4096).records(msg)`` returns the
records the target stores for one source record, each with its queue offset kept:

* a ``v5`` inner-batch record (BatchCQ topic, sysflag INNER_BATCH) going to a ``v4`` version
  becomes one record per inner message, message ``i`` at queue offset ``base + i`` (so every
  consumer offset still names the same message). Each record carries the outer record's
  properties without ``INNER_NUM``/``INNER_BASE``, then the inner message's own properties (the
  inner ones win), the inner flag and body, and the outer sysflag without the batch bits;
  to a ``v5`` version the record is kept whole;
* ``codec`` (a ``mqbench.codecs.registry.Codec``) re-encodes bodies: the body is decompressed
  (by its sysflag compression type) and, when at least ``compress_over_bytes`` long and the codec
  is not ``none``, compressed again; shorter bodies are stored plain (RocketMQ's
  ``compressMsgBodyOverHowmuch`` rule). The rules are ``broker/formats/compression``'s
  (``decompress_body``, ``compress_body``), not restated here. Inner-batch records are never compressed (RocketMQ does
  not compress batches); their inner bodies are re-encoded when they are expanded;
* a ``v4`` target holds zlib bodies only: they keep their sysflag as stored (bit 0, and the zlib
  type bits ``0x300`` that 4.9.4+ clients set: a real 4.9.8 store holds ``0x301``; older 4.x
  brokers read bit 0 alone); lz4/zstd bodies have no ``v4`` form without ``codec``
  (``Blocker``), and a ``v4`` target accepts only ``codec`` zlib or none (written ``0x301``);
* a ``v4`` target writes V1 records only: a topic longer than 127 bytes has no ``v4`` form.

``blockers(msg)`` lists why a record has no form in the target (empty when it has one);
``records`` raises UserError for such a record. ``needs_rewrite(msg)`` is False when the
record's bytes can be copied as they are (only PHYSICALOFFSET changes), the fast path.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from mqbench.broker.store import versions
from mqbench.broker.formats.batch import decode_batch
from mqbench.broker.formats.compression import (
    COMPRESS_OVER_BYTES_DEFAULT,
    SYSFLAG_COMPRESSION_BITS,
    codec_of,
    compress_body,
    compression_type_id,
    v4_reads,
    decompress_body,
)
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, TOPIC_V1_MAX_BYTES
from mqbench.codecs.registry import BODY_SIZE_MAX_BYTES, TYPE_ID_ZLIB, Codec
from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.formats.properties import PROPERTY_CRC32, PROPERTY_INNER_BASE, PROPERTY_INNER_NUM

INNER_PROPERTIES = (PROPERTY_INNER_NUM, PROPERTY_INNER_BASE)


@dataclass(frozen=True)
class Blocker:
    """Why a record has no form in the target version: a kind (stable, for counting) and a detail."""

    kind: str
    detail: str


#: An inner-batch record's body holds up to 32,767 messages: its plain form may exceed one body's bound.
PLAIN_BODY_BYTES_MAX = BODY_SIZE_MAX_BYTES * 64


def plain_body(msg: Message, size_max: int = PLAIN_BODY_BYTES_MAX) -> bytes:
    """The body of ``msg`` after decompression (``compression.decompress_body``; CorruptDataError
    naming the record's offset when it is corrupt)."""
    return bytes(decompress_body(msg.body, msg.sysflag, size_max=size_max, where="record",
                                 offset=msg.physical_offset))


def expand_inner_batch(msg: Message) -> list[Message]:
    """The messages of an inner-batch record as plain records at ``base + i`` (see module doc)."""
    outer = {k: v for k, v in msg.properties.items() if k not in INNER_PROPERTIES and k != PROPERTY_CRC32}
    body = plain_body(msg) if msg.sysflag & SYSFLAG_COMPRESSED else msg.body
    items = decode_batch(body, where=f"inner batch at {msg.physical_offset}")
    sysflag = msg.sysflag & ~(SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP | SYSFLAG_COMPRESSION_BITS)
    return [replace(msg, body=item.body, properties={**outer, **item.properties}, flag=item.flag,
                    queue_offset=msg.queue_offset + i, sysflag=sysflag, body_crc=0)
            for i, item in enumerate(items)]


class Reframer:
    """Turns source records into target records (see module doc)."""

    def __init__(self, target_version: str, codec: Codec | None = None,
                 compress_over_bytes: int = COMPRESS_OVER_BYTES_DEFAULT):
        self.version = target_version
        self.v4 = versions.major(target_version) == 4
        self.codec = codec
        self.compress_over_bytes = compress_over_bytes
        if codec is not None and self.v4 and not (codec.is_none or codec.type_id == TYPE_ID_ZLIB):
            raise UserError(f"a {target_version} store can hold only zlib-compressed bodies; "
                            f"--codec {codec.spec} needs a v5 target (use --codec zlib or none)")

    def blockers(self, msg: Message) -> list[Blocker]:
        out = []
        if self.v4:
            if len(msg.topic.encode("utf-8")) > TOPIC_V1_MAX_BYTES:
                out.append(Blocker("long_topic", f"topic {msg.topic[:40]!r}... is longer than "
                                                 f"{TOPIC_V1_MAX_BYTES} bytes (4.x writes V1 records only)"))
            kind = compression_type_id(msg.sysflag)
            if self.codec is None and not v4_reads(msg.sysflag) and not msg.sysflag & SYSFLAG_INNER_BATCH:
                try:
                    codec = codec_of(msg.sysflag)
                except CorruptDataError:
                    codec = None
                name = codec.name if codec is not None else f"type {kind}"
                out.append(Blocker(f"{name}_body", f"a body compressed with {name} (4.x reads zlib only: "
                                                   "pass --codec zlib or --codec none)"))
        return out

    def needs_rewrite(self, msg: Message) -> bool:
        """False when the record's bytes are valid in the target as they are."""
        if self.codec is not None:
            return not msg.sysflag & SYSFLAG_INNER_BATCH or self.v4
        if not self.v4:
            return False
        return bool(msg.sysflag & SYSFLAG_INNER_BATCH or msg.version == 2)

    def records(self, msg: Message) -> list[Message]:
        """The target records for one source record (queue offsets kept; PHYSICALOFFSET is the
        writer's business)."""
        problems = self.blockers(msg)
        if problems:
            raise UserError(f"record at {msg.physical_offset} has no {self.version} form: {problems[0].detail}")
        if self.v4 and msg.sysflag & SYSFLAG_INNER_BATCH:
            out = expand_inner_batch(msg)
        else:
            out = [msg]
        return [self._body(m) for m in out]

    def _body(self, msg: Message) -> Message:
        if self.v4:
            msg.version = 1
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            return msg
        if self.codec is not None:
            # zlib as 0x301 (type bits set), the form a real 4.9.8 store holds
            msg.body, bits = compress_body(plain_body(msg), self.codec, self.compress_over_bytes, zlib_type_bits=True)
            msg.sysflag = msg.sysflag & ~SYSFLAG_COMPRESSION_BITS | bits
        return msg
