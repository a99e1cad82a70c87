"""Configuration of one Raft node, with the durability modes and their documented losses."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable

from mqbench.errors import UserError

from .types import NONE


class Durability(str, Enum):
    """When an entry counts towards the quorum on a replica.

    ``QUORUM_MEMORY`` (DLedger's behaviour): as soon as the replica has appended it (written to
    the OS page cache, no fsync). A Ready needs an fsync only when term or vote changed. What it
    can lose: acknowledged entries that are not yet on disk on a majority when those machines lose
    power (or the OS crashes) before writing them back, e.g. all replicas of a group losing power at
    once, or one replica losing power while the others are cut off from the leader. A process crash
    (kill -9) loses nothing: the page cache survives it.

    ``QUORUM_FSYNCED`` (group commit): only once the replica has fsynced it. Every Ready that
    carries entries must be fsynced before its messages go out, so one fsync covers every entry
    that arrived since the last one. What it can lose: nothing acknowledged, as long as a majority's
    disks survive; a crash loses (or tears) only the unsynced tail, which was never acknowledged.
    """

    QUORUM_MEMORY = "memory"
    QUORUM_FSYNCED = "fsync"


@dataclass(frozen=True)
class RaftConfig:
    """Timing in ticks (the application calls ``tick()`` every ``tick_ms``).

    ``election_ticks``: a follower that hears nothing from a leader for a random time in
    [election_ticks, 2 * election_ticks) starts an election; a leader that did not hear from a
    quorum within election_ticks steps down (check-quorum), and a leadership transfer that did
    not finish within it is abandoned. ``heartbeat_ticks``: the leader's heartbeat period.
    ``max_inflight_msgs``: unanswered APPs per follower in the replicate state.
    ``max_append_bytes``: soft size limit of one APP's entries. A follower more than
    ``catchup_lag_entries`` behind receives at most ``catchup_bytes_per_tick`` per tick.
    ``preferred_leader``: the replica this group's leader hands leadership to once it is caught up
    (``NONE``: no preference): its match index is at least the commit index and at most
    ``transfer_lag_entries`` behind the leader's last index.
    """

    node_id: int
    peers: tuple[int, ...]
    election_ticks: int = 20
    heartbeat_ticks: int = 2
    tick_ms: int = 50
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 64
    max_append_bytes: int = 1 << 20
    catchup_lag_entries: int = 4096
    catchup_bytes_per_tick: int = 4 << 20
    durability: Durability = Durability.QUORUM_FSYNCED
    preferred_leader: int = NONE
    transfer_lag_entries: int = 256

    def __post_init__(self) -> None:
        if self.node_id <= 0 or self.node_id not in self.peers:
            raise UserError(f"node id {self.node_id} must be a positive id listed in peers {self.peers}")
        if len(set(self.peers)) != len(self.peers) or any(p <= 0 for p in self.peers):
            raise UserError(f"peers {self.peers} must be distinct positive ids")
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise UserError(f"need 1 <= heartbeat_ticks ({self.heartbeat_ticks}) < election_ticks ({self.election_ticks})")
        if self.max_inflight_msgs < 1 or self.max_append_bytes < 1 or self.catchup_bytes_per_tick < 1:
            raise UserError("max_inflight_msgs, max_append_bytes and catchup_bytes_per_tick must be positive")
        if self.transfer_lag_entries < 0:
            raise UserError(f"transfer_lag_entries must be >= 0, not {self.transfer_lag_entries}")
        if self.preferred_leader != NONE and self.preferred_leader not in self.peers:
            raise UserError(f"preferred leader {self.preferred_leader} is not among peers {self.peers}")

    @classmethod
    def from_ms(cls, node_id: int, peers: Iterable[int], *, tick_ms: int = 50, heartbeat_ms: int = 100,
                election_ms: int = 1000, catchup_bytes_per_s: int = 64 << 20, **kwargs: Any) -> "RaftConfig":
        """Build a config from durations (defaults: 100 ms heartbeat, 1 s election timeout)."""
        if tick_ms <= 0:
            raise UserError(f"tick_ms must be positive, not {tick_ms}")
        return cls(node_id=node_id, peers=tuple(peers), tick_ms=tick_ms,
                   heartbeat_ticks=max(1, heartbeat_ms // tick_ms),
                   election_ticks=max(2, election_ms // tick_ms),
                   catchup_bytes_per_tick=max(1, catchup_bytes_per_s * tick_ms // 1000), **kwargs)
