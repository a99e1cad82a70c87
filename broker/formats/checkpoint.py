"""StoreCheckpoint: the ``{root}/checkpoint`` file (spec section 8). Pure code, big-endian.

The file is always 4096 bytes (memory-mapped at one page); unused bytes are zero::

    off  size  type   field                 written by
    0    8     int64  physicMsgTimestamp    all: store time of the last flushed commitlog message
    8    8     int64  logicsMsgTimestamp    all: store time of the last CQ dispatch
    16   8     int64  indexMsgTimestamp     all
    24   8     int64  masterFlushedOffset   5.0.0+
    32   8     int64  confirmPhyOffset      5.1.1+
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from mqbench.errors import CorruptDataError

from .buffers import ByteView

CHECKPOINT_FILE_BYTES = 4096
CHECKPOINT_V4_BYTES = 24
CHECKPOINT_V5_BYTES = 40

_V4 = struct.Struct(">qqq")
_V5 = struct.Struct(">qqqqq")


@dataclass
class StoreCheckpoint:
    physic_msg_timestamp_ms: int = 0
    logics_msg_timestamp_ms: int = 0
    index_msg_timestamp_ms: int = 0
    master_flushed_offset: int = 0
    confirm_phy_offset: int = 0

    @property
    def min_timestamp_ms(self) -> int:
        """The time recovery trusts: the older of the commitlog and CQ flush times (RocketMQ's getMinTimestamp)."""
        return max(0, min(self.physic_msg_timestamp_ms, self.logics_msg_timestamp_ms) - 3000)


def encode_checkpoint(checkpoint: StoreCheckpoint, *, version: str = "v5") -> bytes:
    """The whole 4096-byte file. A ``v4``/``v4-dledger`` store writes only the first 24 bytes."""
    if version.startswith("v4"):
        head = _V4.pack(checkpoint.physic_msg_timestamp_ms, checkpoint.logics_msg_timestamp_ms,
                        checkpoint.index_msg_timestamp_ms)
    else:
        head = _V5.pack(checkpoint.physic_msg_timestamp_ms, checkpoint.logics_msg_timestamp_ms,
                        checkpoint.index_msg_timestamp_ms, checkpoint.master_flushed_offset,
                        checkpoint.confirm_phy_offset)
    return head + bytes(CHECKPOINT_FILE_BYTES - len(head))


def decode_checkpoint(data: ByteView, *, where: str | None = None) -> StoreCheckpoint:
    """Read the fields from the file's bytes (at least 24; 40 for the 5.x fields; more is ignored)."""
    if len(data) < CHECKPOINT_V4_BYTES:
        raise CorruptDataError(f"checkpoint of {len(data)} bytes, at least {CHECKPOINT_V4_BYTES} expected",
                               where=where, offset=0)
    if len(data) < CHECKPOINT_V5_BYTES:
        return StoreCheckpoint(*_V4.unpack_from(data, 0))
    return StoreCheckpoint(*_V5.unpack_from(data, 0))
