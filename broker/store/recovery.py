"""Crash recovery: the store checkpoint file and the steps that make the commitlog and the
consume queues agree again after an unclean shutdown.

``{root}/checkpoint`` (4096 bytes, spec 8). RocketMQ's fields are written with their RocketMQ
meaning; mqbench adds its own recovery offsets after them, in bytes RocketMQ never reads::

    off  size  type   field
    0    8     int64  physicMsgTimestamp: store time of the last flushed commitlog record
    8    8     int64  logicsMsgTimestamp: store time of the last record whose queue unit is flushed
    16   8     int64  indexMsgTimestamp: 0 (no IndexFile is written)
    24   16    int64  masterFlushedOffset/confirmPhyOffset: 0 (not written by a 4.x store; no HA or
                      controller here, and a 5.x broker truncates to a non-zero confirmPhyOffset)
    64   8     bytes  b"mqbench1": our extension is present
    72   8     int64  durable_offset: every commitlog byte below it was fdatasynced
    80   8     int64  dispatched_offset: every queue unit of a record below it was fdatasynced
    88   4     uint32 CRC32 of bytes 64..88 (a torn or foreign extension is ignored)

Both offsets only ever claim less than the truth: they are written after the fdatasync that
made them true, with a plain pwrite (no fsync of its own), so after a crash the file holds
either the new or an older, smaller value.

Recovery (``recover_queues``), given the commitlog end found by the log's own scan (the log
validates magic, size and CRC from ``durable_offset`` on, or from the start of the third-last
segment without a usable checkpoint, and zeroes the torn tail):

1. every queue unit pointing at or past the dispatch limit is dropped (queues ahead of the log);
2. records from ``dispatched_offset`` (or from the end of the last unit kept in a queue that lost
   units, if lower) up to the dispatch limit are dispatched again (queues behind the log);
   rewriting a unit that is already there is harmless.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mqbench.errors import CorruptDataError, InvariantViolation

from mqbench.broker.formats import checkpoint as fmt
from .dispatch import QueueSet, dispatch_info, dispatch_record

CHECKPOINT_FILE = "checkpoint"
RECOVER_SEGMENTS = 3

_OURS = struct.Struct(">8sqqI")        # b"mqbench1", durable_offset, dispatched_offset, crc
_OURS_AT = 64
_OURS_TAG = b"mqbench1"


@dataclass
class CheckpointState:
    physic_msg_timestamp_ms: int = 0
    logics_msg_timestamp_ms: int = 0
    durable_offset: int | None = None      # None: no mqbench extension (no checkpoint, or a foreign one)
    dispatched_offset: int | None = None


class CheckpointFile:
    """Read/write of ``{root}/checkpoint`` (see module doc); the RocketMQ fields are packed by
    ``checkpoint.encode_checkpoint`` for the store's version."""

    def __init__(self, root: str | os.PathLike, version: str):
        self.version = version
        self.path = Path(root) / CHECKPOINT_FILE
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not existed or os.fstat(self._fd).st_size < fmt.CHECKPOINT_FILE_BYTES:
            os.ftruncate(self._fd, fmt.CHECKPOINT_FILE_BYTES)
        self.state = self._read()
        self._written = False        # this process wrote ``state`` (else it is only what was read)

    def _read(self) -> CheckpointState:
        raw = os.pread(self._fd, _OURS_AT + _OURS.size, 0)
        if len(raw) < _OURS_AT + _OURS.size:
            return CheckpointState()
        rocketmq = fmt.decode_checkpoint(raw, where=str(self.path))
        phys_ts, logic_ts = rocketmq.physic_msg_timestamp_ms, rocketmq.logics_msg_timestamp_ms
        tag, durable, dispatched, crc = _OURS.unpack_from(raw, _OURS_AT)
        body = raw[_OURS_AT:_OURS_AT + _OURS.size - 4]
        if tag != _OURS_TAG or durable < 0 or dispatched < 0 or zlib.crc32(body) != crc:
            return CheckpointState(phys_ts, logic_ts)
        return CheckpointState(phys_ts, logic_ts, durable, dispatched)

    def write(self, state: CheckpointState, *, fsync: bool = False) -> None:
        """Store ``state`` (pwrite; fsync with ``fsync``); nothing is written when it is the state
        already written (the background flush calls this every second, busy or not)."""
        if state == self.state and self._written:
            if fsync:
                os.fsync(self._fd)
            return
        self.state = state
        self._written = True
        data = bytearray(fmt.encode_checkpoint(fmt.StoreCheckpoint(
            state.physic_msg_timestamp_ms, state.logics_msg_timestamp_ms), version=self.version)[:_OURS_AT + _OURS.size])
        body = struct.pack(">8sqq", _OURS_TAG, state.durable_offset or 0, state.dispatched_offset or 0)
        _OURS.pack_into(data, _OURS_AT, _OURS_TAG, state.durable_offset or 0, state.dispatched_offset or 0,
                        zlib.crc32(body))
        os.pwrite(self._fd, bytes(data), 0)
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def commitlog_scan_start(segment_starts: list[int], segment_size_bytes: int, durable_offset: int | None) -> int:
    """Where the commitlog scan starts: at ``durable_offset`` (a record boundary below which
    everything was fdatasynced), or at the third-last segment when there is no usable checkpoint."""
    if not segment_starts:
        return 0
    fallback = segment_starts[max(0, len(segment_starts) - RECOVER_SEGMENTS)]
    if durable_offset is None or durable_offset > segment_starts[-1] + segment_size_bytes:
        return fallback
    return max(durable_offset, segment_starts[0])


def recover_queues(queues: QueueSet, scan, dispatched_offset: int, dispatch_limit: int,
                   is_batch_topic: Callable[[str], bool]) -> tuple[int, int]:
    """Make the queues agree with the log up to ``dispatch_limit`` (see module doc).

    ``scan(start, stop)`` is the commitlog's scan. Returns (the position re-dispatch started from,
    records re-dispatched).
    """
    resume = queues.truncate_physical(dispatch_limit)
    start = min(dispatched_offset, dispatch_limit)
    if resume is not None:
        start = min(start, resume)
    redispatched = 0
    for offset, record, _ in scan(start, dispatch_limit):
        info = dispatch_info(record, where="commitlog")
        try:
            dispatch_record(queues, info, is_batch_topic)
        except InvariantViolation as exc:
            # a record whose queue offset does not continue its queue: the log itself is damaged
            raise CorruptDataError(f"record of {info.topic}/{info.queue_id} with queue offset "
                                   f"{info.queue_offset} does not fit its queue ({exc})",
                                   where="commitlog", offset=offset) from None
        redispatched += 1
    return start, redispatched
