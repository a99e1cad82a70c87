"""The values ``ReplicatedGroup`` hands out (``PutResult``, the not-leader errors) and small helpers.

``NotLeader`` is the Raft core's own (one class for "this replica cannot take the write", whoever
raises it); ``LeadershipLost`` subclasses it. Import them from ``replicated`` or from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.raft.types import Message as RaftMessage
from mqbench.broker.raft.types import NotLeader
from mqbench.broker.raft.wire import ENTRY, HEADER, LENGTH
from mqbench.broker.store.dledger_log import is_record_body
from mqbench.broker.formats.record import peek_topic

from .entries import META_TOPIC


class LeadershipLost(NotLeader):
    """A pending write whose outcome is unknown: this replica stopped being leader (or closed)
    before it was committed. The entry may still be committed by the new leader."""


@dataclass
class PutResult:
    msg_id: str                 # offsetMsgId; a batch of several records: the ids joined by ","
    queue_id: int
    queue_offset: int           # of the first message
    physical_offset: int        # of the first record
    count: int = 1              # messages stored
    msg_ids: list[str] = field(default_factory=list)
    index: int = 0              # Raft index of the last entry


def frame_bytes(m: RaftMessage) -> int:
    """Bytes ``m`` takes on the wire (``raft.wire`` framing)."""
    return LENGTH.size + HEADER.size + sum(ENTRY.size + len(e.data) for e in m.entries)


def refuse_meta_topic(topic: str) -> None:
    """UserError for a client write to the metadata topic (it would inject metadata updates)."""
    if topic == META_TOPIC:
        raise UserError(f"{META_TOPIC} is the group's internal metadata topic; messages cannot be sent to it")


def is_meta_record(data: bytes) -> bool:
    """True when ``data`` is a commitlog record on the metadata topic."""
    if not is_record_body(data):
        return False
    try:
        return peek_topic(data, 0) == META_TOPIC
    except (CorruptDataError, IndexError, ValueError):
        return False
