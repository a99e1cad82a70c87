"""The simulator's checkers: Raft's invariants, checked after every event of a run.

One leader per term (election safety), one vote per node per term across restarts, leader
completeness, state machine safety with acknowledged entries never lost or changed, commit never
going back, identical logs after convergence, and no election when a healthy group takes back its
old leader. The first violation raises ``Violation``.
"""
from __future__ import annotations

from typing import Any

from ..types import Entry, Message, Role
from .model import Violation


class Checkers:
    """What the checkers remember across a run and the checks themselves. ``nodes`` is the
    cluster's table node id -> ``SimNode``."""

    def __init__(self, nodes: dict[int, Any], ids: tuple[int, ...]):
        self.nodes = nodes
        self.ids = ids
        self.leaders: dict[int, int] = {}                 # term -> its leader
        self.votes: dict[tuple[int, int], int] = {}       # (node, term) -> whom it voted for
        self.committed_log: list[Entry] = []
        self.pending: dict[bytes, tuple[int, int]] = {}   # proposed: (leader, its incarnation)
        self.acked: dict[bytes, int] = {}                 # acknowledged: index

    def check_node(self, sn) -> None:
        core = sn.core
        committed = core.log.committed
        if committed < sn.last_commit:
            raise Violation("commit-regressed", f"node {sn.id} commit went from {sn.last_commit} to {committed}")
        sn.last_commit = committed
        if core.role == Role.LEADER:
            known = self.leaders.get(core.term)
            if known is None:
                self.leaders[core.term] = sn.id
                self.check_leader_completeness(sn)
            elif known != sn.id:
                raise Violation("election-safety", f"nodes {known} and {sn.id} are both leaders of term {core.term}")

    def check_vote(self, sn, granted: Message) -> None:
        """One vote per node per term, across restarts (Raft's persistent votedFor)."""
        key = (sn.id, granted.term)
        earlier = self.votes.setdefault(key, granted.dst)
        if earlier != granted.dst:
            raise Violation("vote-safety", f"node {sn.id} voted for {earlier} and then {granted.dst} in term {granted.term}")

    def check_leader_completeness(self, sn) -> None:
        log = sn.core.log
        if self.committed_log:
            last = self.committed_log[-1]
            if log.term(last.index) != last.term:
                raise Violation("leader-completeness", f"node {sn.id} leads term {sn.core.term} without committed "
                                f"entry {last.index} (term {last.term}); its term there: {log.term(last.index)}")

    def check_applied(self, sn, entries: list[Entry]) -> None:
        log = self.committed_log
        for entry in entries:
            known = len(log)
            if entry.index <= known:
                if log[entry.index - 1] != entry:
                    other = log[entry.index - 1]
                    raise Violation("state-machine-safety", f"node {sn.id} applied {entry.index}/{entry.term} "
                                    f"{entry.data!r} but {other.index}/{other.term} {other.data!r} was committed")
            elif entry.index == known + 1:
                log.append(entry)
            else:
                raise Violation("state-machine-safety", f"node {sn.id} applied {entry.index} after only {known}")
            owner = self.pending.get(entry.data)
            if owner is not None and owner == (sn.id, sn.incarnation):
                del self.pending[entry.data]
                self.acked[entry.data] = entry.index

    def converged(self) -> bool:
        cores = []
        for sn in self.nodes.values():
            if not sn.up or sn.busy:
                return False
            cores.append(sn.core)
        leaders = [c for c in cores if c.role == Role.LEADER]
        if len(leaders) != 1:
            return False
        last = leaders[0].log.last_index()
        term = leaders[0].log.last_term()
        return all(c.log.last_index() == last and c.log.committed == last and c.log.applied == last
                   and c.log.last_term() == term for c in cores)

    def check_final(self) -> None:
        logs = {sn.id: sn.core.log.entries(1, sn.core.log.last_index() + 1) for sn in self.nodes.values()}
        first = logs[self.ids[0]]
        for node, ents in logs.items():
            if ents != first:
                raise Violation("logs-differ", f"after convergence node {node}'s log differs from node {self.ids[0]}'s")
        for data, index in self.acked.items():
            if index > len(first) or first[index - 1].data != data:
                raise Violation("acked-lost", f"acknowledged entry {data!r} at index {index} is gone")

    def check_rejoin(self, rejoined, term_before: int, leader, preferred_leader: int) -> None:
        """The old leader rejoined a healthy group: no election may follow, only a handover to the
        preferred leader (one term) once it is caught up."""
        allowed = 1 if leader.id == preferred_leader else 0
        if leader.core.term - term_before > allowed:
            raise Violation("rejoin-churn", f"node {rejoined.id} rejoined at term {term_before}; the group reached "
                            f"term {leader.core.term} (leader {leader.id}, preferred {preferred_leader})")
