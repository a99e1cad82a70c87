"""The Raft core's value types: log entries, messages, hard state, the Ready batch, and errors.

Everything here is a plain value with no I/O. Entries carry opaque ``bytes`` payloads (the broker
puts commitlog records in them); the core never looks inside.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from mqbench.errors import MqbenchError

NONE = 0
"""Node id meaning "nobody" (no leader known, no vote cast). Real node ids are >= 1."""


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MsgType(IntEnum):
    APP = 1             # leader -> follower: entries after (index, log_term), leader's commit
    APP_RESP = 2        # follower -> leader: index acknowledged, or reject with a hint
    HEARTBEAT = 3       # leader -> follower: commit = min(follower's match, leader's commit)
    HEARTBEAT_RESP = 4
    VOTE = 5            # candidate -> all: (index, log_term) = candidate's last entry
    VOTE_RESP = 6
    PRE_VOTE = 7        # like VOTE but for term+1 without the sender changing its own term
    PRE_VOTE_RESP = 8
    TIMEOUT_NOW = 9     # leader -> transfer target: campaign at once, skipping pre-vote


class EntryKind(IntEnum):
    NORMAL = 0
    NOOP = 1            # appended by every new leader; commits the previous terms' entries


class Entry(NamedTuple):
    """One log entry. ``index`` starts at 1; index 0 is the empty log's sentinel with term 0."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, which nothing calls
    term: int
    data: bytes = b""
    kind: int = EntryKind.NORMAL


class HardState(NamedTuple):
    """What must survive a restart: current term, the vote cast in it, and the commit index."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(slots=True)
class Message:
    """One Raft message between two nodes. Treat as immutable once sent.

    ``index``/``log_term``: for APP the entry preceding ``entries``; for APP_RESP the acknowledged
    (or rejected) index; for VOTE/PRE_VOTE the candidate's last entry. ``reject_hint`` and
    ``log_term`` of a rejecting APP_RESP point the leader at the follower's last entry that may
    match. ``transfer`` marks a VOTE sent because of TIMEOUT_NOW (it overrides the leader lease).
    """

    type: MsgType
    src: int
    dst: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    transfer: bool = False

    def describe(self) -> str:
        """A short human-readable line for traces and scenario transcripts."""
        text = f"{self.src}->{self.dst} {self.type.name} term={self.term}"
        if self.type in (MsgType.APP, MsgType.VOTE, MsgType.PRE_VOTE):
            text += f" last=({self.index},{self.log_term})"
        elif self.type == MsgType.APP_RESP:
            text += f" index={self.index}"
        if self.entries:
            text += " entries=[" + " ".join(f"{e.index}/{e.term}" for e in self.entries) + "]"
        if self.type in (MsgType.APP, MsgType.HEARTBEAT):
            text += f" commit={self.commit}"
        if self.reject:
            text += f" REJECT hint=({self.reject_hint},{self.log_term})"
        if self.transfer:
            text += " transfer"
        return text


@dataclass(slots=True)
class Ready:
    """A batch of work the application must do, in this order, then hand back to ``advance``:

    1. write ``hard_state`` (when not None) and append ``entries`` to storage (an append replaces
       every stored entry at or after ``entries[0].index``); if ``must_sync``, fsync both;
    2. only then send ``messages`` (a vote or an acknowledgement must never precede its
       persistence);
    3. apply ``committed_entries`` to the state machine (in order; they are already in storage or in
       this batch's ``entries``);
    4. call ``node.advance(ready)``.

    ``role``/``leader`` are the node's current role and known leader (not persisted).
    """

    hard_state: HardState | None
    entries: list[Entry]
    committed_entries: list[Entry]
    messages: list[Message]
    must_sync: bool
    role: Role = Role.FOLLOWER
    leader: int = NONE


class RaftError(MqbenchError):
    """Base of the errors a Raft node returns to the caller that proposed something."""


class NotLeader(RaftError):
    """Node ``node_id`` cannot take a write: it is not the leader, or (with ``reason``) it stopped
    or is handing leadership over. The one not-leader error of the core and the broker's group.

    ``leader`` is the leader it knows of (``NONE`` when none); ``leader_id`` is the same or None.
    """

    def __init__(self, leader: int | None, *, node_id: int, reason: str | None = None):
        self.leader = leader or NONE
        self.leader_id = leader or None
        text = f"node {node_id} is not the leader (leader: {leader or 'unknown'})"
        super().__init__(f"{text}: {reason}" if reason else text)


class ProposalDropped(RaftError):
    """The leader refused the proposal (for instance while it hands leadership over)."""
