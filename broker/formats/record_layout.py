"""The RocketMQ commitlog record layout: field offsets, sizes, magics, flags (spec section 3).

Pure constants and structs, shared by the record codec (``record.py``), the in-place reads of
checked records (``record_peek.py``) and the recovery check (``record_check.py``). Every
integer is big-endian.

Record layout (offsets from the record start; ``BH``/``SH`` = 8 for an IPv4 host, 20 for IPv6;
``TL`` = 1 for the V1 magic, 2 for V2)::

    off        size  type   field
    0          4     int32  TOTALSIZE         whole record, this field included
    4          4     int32  MAGICCODE         MAGIC_V1 / MAGIC_V2 (BLANK_MAGIC: end-of-file blank)
    8          4     int32  BODYCRC           crc32(body as stored) & 0x7FFFFFFF
    12         4     int32  QUEUEID
    16         4     int32  FLAG              the application's flag, opaque
    20         8     int64  QUEUEOFFSET       index in the consume queue (inner batch: the base)
    28         8     int64  PHYSICALOFFSET    commitlog offset of byte 0 (DLedger: entry pos + 48)
    36         4     int32  SYSFLAG           bits: see SYSFLAG_* below
    40         8     int64  BORNTIMESTAMP     ms
    48         BH    bytes  BORNHOST          4/16-byte address, then int32 port
    48+BH      8     int64  STORETIMESTAMP    ms
    56+BH      SH    bytes  STOREHOST         4/16-byte address, then int32 port
    56+BH+SH   4     int32  RECONSUMETIMES
    60+BH+SH   8     int64  PREPAREDTRANSACTIONOFFSET
    68+BH+SH   4     int32  BODYLENGTH        B
    72+BH+SH   B     bytes  BODY
    ...        TL    int8/int16 TOPICLENGTH   T (signed)
    ...        T     bytes  TOPIC             UTF-8
    ...        2     int16  PROPERTIESLENGTH  P (0..32767)
    ...        P     bytes  PROPERTIES        name \\x01 value \\x02 ... (UTF-8)

TOTALSIZE = 91 + B + T + P for V1 with two IPv4 hosts; +1 for V2; +12 per IPv6 host.

The end-of-file blank is 8 bytes: int32 remaining bytes in the file, int32 BLANK_MAGIC. A record is
only written when at least ``BLANK_MIN_BYTES`` stay free after it.
"""
from __future__ import annotations

import struct


MAGIC_V1 = -626843481  # 0xDAA320A7
MAGIC_V2 = -626843477  # 0xDAA320AB
BLANK_MAGIC = -875286124  # 0xCBD43194
BLANK_MIN_BYTES = 8

SYSFLAG_COMPRESSED = 0x1
SYSFLAG_MULTI_TAGS = 0x2
SYSFLAG_TX_MASK = 0xC
SYSFLAG_TX_NOT = 0x0
SYSFLAG_TX_PREPARED = 0x4
SYSFLAG_TX_COMMIT = 0x8
SYSFLAG_TX_ROLLBACK = 0xC
SYSFLAG_BORNHOST_V6 = 0x10
SYSFLAG_STOREHOST_V6 = 0x20
SYSFLAG_NEED_UNWRAP = 0x40
SYSFLAG_INNER_BATCH = 0x80
SYSFLAG_COMPRESSION_MASK = 0x700
SYSFLAG_COMPRESSION_SHIFT = 8
# (sysflag & SYSFLAG_COMPRESSION_MASK) >> 8 is the compression type id; which codec each id means is
# codecs/registry.py's, and the compression rules are broker/formats/compression.py's.

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"
PROPERTIES_MAX_BYTES = 32767
TOPIC_V1_MAX_BYTES = 127
TOPIC_V2_MAX_BYTES = 32767
BODY_MAX_BYTES = 0x7FFFFFFF
CRC_PROPERTY_BYTES = 20  # len("__CRC32#") + 1 + 10 digits + 1

RECORD_END = 0
RECORD_BLANK = -1


# The fixed head up to BORNHOST, then the three fields after STOREHOST.
_HEAD = struct.Struct(">iiiiiqqiq")  # TOTALSIZE MAGIC BODYCRC QUEUEID FLAG QUEUEOFFSET PHYSICALOFFSET SYSFLAG BORNTS
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16 = struct.Struct(">h")
_I8 = struct.Struct(">b")
_TAIL = struct.Struct(">iqi")  # RECONSUMETIMES PREPAREDTRANSACTIONOFFSET BODYLENGTH
_BLANK = struct.Struct(">ii")  # remaining size, BLANK_MAGIC
_PORT = struct.Struct(">i")

# 91 = the fixed fields (4+4+4+4+4+8+8+4+8 + 8 + 4+8 + 4 + 2) + two IPv4 hosts (8+8) + TL 1,
# minus nothing: 52 + 16 + 8 + 12 + 1 + 2 = 91.
_FIXED_BYTES_V1_IPV4 = 91
_HOST_V6_EXTRA_BYTES = 12  # an IPv6 host (16 + port 4) against an IPv4 one (4 + 4)
_FIELD_PHYSICAL_OFFSET = 28
_FIELD_QUEUE_OFFSET = 20


def _size(body_len: int, topic_len: int, props_len: int, version: int, born_v6: bool, store_v6: bool) -> int:
    return (_FIXED_BYTES_V1_IPV4 + body_len + topic_len + props_len + (version - 1)
            + _HOST_V6_EXTRA_BYTES * born_v6 + _HOST_V6_EXTRA_BYTES * store_v6)


_FIXED_IPV4 = struct.Struct(">iiiiiqqiqIiqIiiqi")   # every fixed field of a record with two IPv4 hosts (as ints)
_ID_HEAD = struct.Struct(">ii4xi4xq8xi")    # TOTALSIZE MAGIC (BODYCRC) QUEUEID (FLAG) QUEUEOFFSET (PHYSICAL) SYSFLAG
_BODY_LEN_AT_IPV4 = 84                          # BODYLEN's place in a record with two IPv4 hosts
