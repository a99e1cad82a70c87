"""What the POP engine is asked (``PopRequest``), what it reads (``QueueView``) and the plans it
returns for the adapter to carry out (``PopPlan``, ``AckPlan``, ``ChangePlan``; ``engine`` module doc)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mqbench.broker.formats.record import Message

from .records import Ack, CheckPoint, OrderLock

INIT_MODE_MAX, INIT_MODE_MIN = 0, 1          # ConsumeInitMode


class QueueView(Protocol):
    """What the engine reads of a replica's store (all synchronous reads of committed state)."""

    def read_queue_nums(self, topic: str) -> int: ...          # 0: no such topic
    def min_offset(self, topic: str, queue_id: int) -> int: ...
    def max_offset(self, topic: str, queue_id: int) -> int: ...
    def consumer_offset(self, group: str, topic: str, queue_id: int) -> int: ...   # -1: none
    def read(self, topic: str, queue_id: int, offset: int, max_msgs: int) -> list[Message]: ...


@dataclass(frozen=True)
class PopRequest:
    group: str
    topic: str
    queue_id: int                  # -1: any queue of the topic
    max_msgs: int
    invisible_time_ms: int
    init_mode: int = INIT_MODE_MAX
    orderly: bool = False
    tags: frozenset[str] | None = None     # TAG filter; None: everything


@dataclass
class Popped:
    message: Message               # as stored (topic: the one popped from), POP_CK added
    handle: str
    topic: str


@dataclass
class PopPlan:
    request: PopRequest
    pop_time_ms: int
    messages: list[Popped] = field(default_factory=list)
    checkpoints: list[CheckPoint] = field(default_factory=list)      # put these before answering
    order_locks: list[OrderLock] = field(default_factory=list)       # and these (orderly)
    start_offsets: list[tuple[str, int, int]] = field(default_factory=list)
    msg_offsets: list[tuple[str, int, list[int]]] = field(default_factory=list)
    order_counts: list[tuple[str, int, int, int]] = field(default_factory=list)
    offset_commits: list[tuple[str, str, int, int]] = field(default_factory=list)   # init offsets; orderly
    rest_num: int = 0              # messages left in the queues looked at
    revive_qid: int = 0
    spans: list[tuple[tuple[str, str, int], int]] = field(default_factory=list)     # (queue, start)

    def writes(self) -> bool:
        return bool(self.checkpoints or self.order_locks)


@dataclass
class AckPlan:
    acks: list[Ack] = field(default_factory=list)          # put these (revive qid in revive_qids)
    revive_qids: list[int] = field(default_factory=list)
    offset_commits: list[tuple[str, str, int, int]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)      # per handle: "ok" | "late" | "orderly"
    order_locks: list[OrderLock] = field(default_factory=list)   # orderly acks out of order: put these
    tickets: list[int] = field(default_factory=list)       # merged in the buffer: durable after a flush
    after: list[int] = field(default_factory=list)         # tickets of checkpoints being written: put
    #                                                        the ack records only once these are durable


@dataclass
class ChangePlan:
    checkpoint: CheckPoint | None      # put first (None: orderly, see order_lock)
    ack: AckPlan                       # then this
    handle: str
    pop_time_ms: int
    invisible_time_ms: int
    revive_qid: int
    order_lock: OrderLock | None = None    # orderly: the lock with its new end, put first
