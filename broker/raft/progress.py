"""Per-follower replication progress on the leader: flow control and catch-up throttling.

A follower's progress is in one of two states (etcd-io/raft's tracker, without snapshots):

| state     | the leader sends                                   | moves to                          |
|-----------|----------------------------------------------------|-----------------------------------|
| PROBE     | one APP at a time (then waits for an answer or the  | REPLICATE on the first accepted   |
|           | next heartbeat response), stepping ``next`` back on | APP_RESP                          |
|           | each reject                                         |                                   |
| REPLICATE | APPs back to back (pipelined), ``next`` advanced    | PROBE on a reject                 |
|           | optimistically, at most ``max_inflight`` unanswered |                                   |

A follower more than ``lag_entries`` behind is "catching up": what the leader sends it is also
charged against ``catchup_credit_bytes``, refilled every tick, so one far-behind follower cannot
take the leader's whole outgoing bandwidth (the leader keeps serving the others and new writes).
"""
from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1


class Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "inflight", "max_inflight", "recent_active",
                 "catchup_credit_bytes", "commit_sent")

    def __init__(self, next_index: int, max_inflight: int, match: int = 0):
        self.match = match
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()
        self.max_inflight = max_inflight
        self.recent_active = False
        self.catchup_credit_bytes = 0
        self.commit_sent = 0      # the highest commit index sent to this follower that it can use

    def note_commit_sent(self, commit: int, last_index: int) -> None:
        """A message told this follower ``commit``; it can use it up to ``last_index`` (the last
        entry the message leaves it with: an append's last entry, a heartbeat's match)."""
        usable = commit if commit < last_index else last_index
        if usable > self.commit_sent:
            self.commit_sent = usable

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        return len(self.inflight) >= self.max_inflight

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()

    def maybe_update(self, index: int) -> bool:
        """An APP_RESP accepted ``index``: raise match/next; False when it tells nothing new."""
        updated = False
        if self.match < index:
            self.match = index
            self.probe_sent = False
            updated = True
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def sent_entries(self, last_index: int) -> None:
        """Entries up to ``last_index`` went out in one APP."""
        if self.state == ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def free_inflight_to(self, index: int) -> None:
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """An APP at ``rejected`` was refused; the follower's log may match up to ``match_hint``.
        Returns False for a stale rejection (one that answers an APP already superseded).

        A rejection of exactly the APP the leader would send now (``rejected == next - 1``) at or
        below ``match`` means the follower no longer has entries it acknowledged (a replica of
        the in-memory durability mode that lost power): match drops to the hint and the entries
        are sent again. Lowering match is always safe; it only delays commits."""
        if rejected <= self.match and rejected == self.next - 1 and match_hint < self.match:
            self.match = match_hint
            self.become_probe()
            return True
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
