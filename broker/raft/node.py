"""``RaftNode``: a sans-I/O Raft replica (DLedger-style roles, etcd-io/raft's Ready/Advance loop).

The node owns no socket, file, clock or global randomness. The application drives it:

* ``tick()`` every ``config.tick_ms``; ``step(message)`` for every message from a peer;
* ``propose(data)`` / ``propose_batch(datas)`` on the leader (raise ``NotLeader`` elsewhere and
  ``ProposalDropped`` while leadership is being transferred); ``campaign()``;
  ``transfer_leadership(target)``;
* ``has_ready()`` / ``ready()`` hand out what to persist, send and apply (see ``types.Ready`` for the
  order); ``advance(ready)`` once it is done. Only one Ready is out at a time.

Behaviour per role is in tables: ``_TICK[role]`` and ``_HANDLERS[role][message type]``; the checks
that do not depend on the role (terms, votes) come first in ``step``. Features: pre-vote,
randomized election timeouts from the injected ``random.Random``, check-quorum with a leader lease
(a follower that heard from a leader within the election timeout ignores vote requests), a no-op
entry on election, pipelined and batched appends with a per-follower inflight window,
probe/replicate progress, commit by counting only for entries of the current term, divergent
suffix truncation, throttled catch-up, TimeoutNow leadership transfer and a preferred leader.
Followers hear a new commit index from the next append, heartbeat or leader tick, not from an
empty append per commit (``_bcast_commit``); a pre-candidate that grants a higher id's pre-vote
gives way (``_handle_vote_request``), so followers whose timers run in step do not split votes.
"""
from __future__ import annotations

from typing import Protocol

from mqbench.errors import InvariantViolation, UserError

from .config import Durability, RaftConfig
from .log import RaftLog
from .progress import Progress, ProgressState
from .storage import Storage
from .types import NONE, Entry, EntryKind, HardState, Message, MsgType, NotLeader, ProposalDropped, Ready, Role

APP, APP_RESP, HEARTBEAT, HEARTBEAT_RESP = MsgType.APP, MsgType.APP_RESP, MsgType.HEARTBEAT, MsgType.HEARTBEAT_RESP
VOTE, VOTE_RESP, PRE_VOTE, PRE_VOTE_RESP = MsgType.VOTE, MsgType.VOTE_RESP, MsgType.PRE_VOTE, MsgType.PRE_VOTE_RESP
TIMEOUT_NOW = MsgType.TIMEOUT_NOW


class Rng(Protocol):
    """The node's injected source of randomness; a seeded ``random.Random`` is one. Typed as a
    protocol so the core never imports ``random`` (nothing global can slip in)."""

    def randrange(self, stop: int, /) -> int: ...


class RaftNode:
    def __init__(self, config: RaftConfig, storage: Storage, rng: Rng, *, applied: int = 0):
        """Start (or restart) from ``storage``'s hard state and log. ``rng`` is the node's only
        source of randomness (election timeouts). ``applied``: the index the state machine has
        already applied; committed entries after it are handed out again in the first Readies."""
        self.config = config
        self.id = config.node_id
        self.peers = tuple(sorted(config.peers))
        self.rng = rng
        state = storage.initial_state()
        self.term = state.term
        self.vote = state.vote
        self.log = RaftLog(storage, committed=state.commit, applied=applied)
        self.role = Role.FOLLOWER
        self.lead = NONE
        self.msgs: list[Message] = []
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = 0
        self.transferee = NONE
        self.transfer_cooldown = 0
        self._bcast_pending = False
        self._fsync_entries = config.durability == Durability.QUORUM_FSYNCED
        self._handed_state = HardState(self.term, self.vote, self.log.committed)
        self._handed_soft = (self.role, self.lead)
        self._reset_timeout()

    # -- public driver API --------------------------------------------------------------------
    def tick(self) -> None:
        _TICK[self.role](self)

    def step(self, m: Message) -> None:
        """Process one message from a peer (duplicates, reordering and stale terms are fine)."""
        if m.term > self.term:
            if m.type == VOTE or m.type == PRE_VOTE:
                in_lease = (self.config.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.config.election_ticks)
                if in_lease and not m.transfer:
                    return  # a leader we heard from recently is alive: do not let it be disrupted
            if m.type == PRE_VOTE or (m.type == PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote never changes our term; a granted one carries the future term
            else:
                self._become_follower(m.term, m.src if m.type in (APP, HEARTBEAT) else NONE)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (APP, HEARTBEAT):
                # Tell a stale leader our term so it steps down (it may be cut off from others).
                self._send(Message(APP_RESP, self.id, m.src, self.term))
            elif m.type == PRE_VOTE:
                self._send(Message(PRE_VOTE_RESP, self.id, m.src, self.term, reject=True))
            return
        if m.type == VOTE or m.type == PRE_VOTE:
            self._handle_vote_request(m)
            return
        handler = _HANDLERS[self.role].get(m.type)
        if handler is not None:
            handler(self, m)

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a new entry on the leader; returns its index (committed later)."""
        return self.propose_batch([data])[0]

    def propose_batch(self, datas: list[bytes]) -> list[int]:
        if self.role != Role.LEADER:
            raise NotLeader(self.lead, node_id=self.id)
        if self.transferee != NONE:
            raise ProposalDropped(f"node {self.id} is handing leadership to {self.transferee}")
        first = self.log.last_index() + 1
        term = self.term
        entries = [Entry(first + n, term, bytes(data)) for n, data in enumerate(datas)]
        self.log.append(entries)
        self._bcast_pending = True   # sent at the next ready(): proposals made meanwhile batch up
        return [e.index for e in entries]

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round when configured)."""
        if self.role != Role.LEADER:
            self._campaign(pre=self.config.pre_vote, transfer=False)

    def transfer_leadership(self, target: int) -> None:
        """Leader only: hand leadership to ``target`` once its log is caught up (TIMEOUT_NOW).
        New proposals are refused until it finishes or, after ``election_ticks``, is abandoned."""
        if target not in self.prs and target not in self.peers:
            raise UserError(f"cannot transfer leadership to {target}: not a member of {self.peers}")
        if self.role != Role.LEADER:
            raise NotLeader(self.lead, node_id=self.id)
        if target == self.id or target == self.transferee:
            return
        self.transferee = target
        self.election_elapsed = 0
        if self.prs[target].match == self.log.last_index():
            self._send(Message(TIMEOUT_NOW, self.id, target, self.term))
        else:
            self._send_append(target)

    @property
    def commit_index(self) -> int:
        return self.log.committed

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def has_ready(self) -> bool:
        log = self.log
        return bool(self.msgs or self._bcast_pending or log.has_unpersisted() or log.committed > log.applying
                    or (self.term, self.vote, log.committed) != self._handed_state
                    or (self.role, self.lead) != self._handed_soft)

    def ready(self) -> Ready:
        if self._bcast_pending:
            self._bcast_pending = False
            self._bcast_append()
        state = HardState(self.term, self.vote, self.log.committed)
        handed = self._handed_state
        changed = state if state != handed else None
        entries = self.log.take_unpersisted()
        vote_changed = state.term != handed.term or state.vote != handed.vote
        msgs, self.msgs = self.msgs, []
        self._handed_state = state
        self._handed_soft = (self.role, self.lead)
        return Ready(changed, entries, self.log.take_to_apply(), msgs,
                     vote_changed or (self._fsync_entries and bool(entries)), self.role, self.lead)

    def advance(self, rd: Ready) -> None:
        """The application did what ``rd`` asked (persisted, sent, applied)."""
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role == Role.LEADER and last.term == self.term:
                # The leader's own copy counts once persisted (in the configured durability mode).
                if self.prs[self.id].maybe_update(last.index) and self._maybe_commit():
                    self._bcast_commit()
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    # -- role changes -------------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.transferee = NONE
        self.votes = {}
        self._reset_timeout()

    def _reset_timeout(self) -> None:
        self.randomized_timeout = self.config.election_ticks + self.rng.randrange(self.config.election_ticks)

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote change: a pre-vote only asks whether an election could be won.
        self.role = Role.PRE_CANDIDATE
        self.lead = NONE
        self.votes = {}
        self.transferee = NONE
        self._reset_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        last = self.log.last_index()
        window = self.config.max_inflight_msgs
        self.prs = {p: Progress(last + 1, window) for p in self.peers}
        me = self.prs[self.id]
        me.match = self.log.stable_last_index()
        me.state = ProgressState.REPLICATE
        me.recent_active = True
        self.transfer_cooldown = 0
        self.log.append([Entry(last + 1, self.term, b"", EntryKind.NOOP)])
        self._bcast_pending = True

    def _campaign(self, *, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            kind, term = PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            kind, term = VOTE, self.term
        self.votes[self.id] = True
        if self._poll_result() is True:
            self._won_election()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self.peers:
            if peer != self.id:
                self._send(Message(kind, self.id, peer, term, last_term, last_index, transfer=transfer))

    def _won_election(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self._campaign(pre=False, transfer=False)
        else:
            self._become_leader()

    def _quorum(self) -> int:
        return len(self.peers) // 2 + 1

    def _poll_result(self) -> bool | None:
        granted = sum(1 for v in self.votes.values() if v)
        if granted >= self._quorum():
            return True
        if len(self.votes) - granted >= self._quorum():
            return False
        return None

    # -- ticks (table _TICK) -------------------------------------------------------------------
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._campaign(pre=self.config.pre_vote, transfer=False)

    def _tick_leader(self) -> None:
        cfg = self.config
        self.election_elapsed += 1
        self.heartbeat_elapsed += 1
        for peer, pr in self.prs.items():
            if peer != self.id:
                pr.catchup_credit_bytes = cfg.catchup_bytes_per_tick
        if self.election_elapsed >= cfg.election_ticks:
            self.election_elapsed = 0
            if cfg.check_quorum:
                active = sum(1 for pr in self.prs.values() if pr.recent_active)
                for peer, pr in self.prs.items():
                    pr.recent_active = peer == self.id
                if active < self._quorum():
                    self._become_follower(self.term, NONE)   # cut off from the quorum: step down
                    return
            if self.transferee != NONE:
                self.transferee = NONE                     # transfer timed out: serve again
                self.transfer_cooldown = cfg.election_ticks
        if self.transfer_cooldown:
            self.transfer_cooldown -= 1
        self._maybe_hand_to_preferred()
        if self.heartbeat_elapsed >= cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()
        else:
            self._tell_commit()

    def _maybe_hand_to_preferred(self) -> None:
        preferred = self.config.preferred_leader
        if preferred == NONE or preferred == self.id or self.transferee != NONE or self.transfer_cooldown:
            return
        pr = self.prs.get(preferred)
        # Only once it is caught up: past the commit index and within transfer_lag_entries of the
        # last entry, acknowledging appends back to back. The transfer refuses proposals until the
        # target has the last entry, so starting it earlier (a replica rejoining after a kill,
        # still catching up) stalls writes for the whole catch-up.
        if (pr is not None and pr.recent_active and pr.state == ProgressState.REPLICATE
                and pr.match >= self.log.committed
                and self.log.last_index() - pr.match <= self.config.transfer_lag_entries):
            self.transfer_leadership(preferred)

    # -- votes ---------------------------------------------------------------------------------
    def _handle_vote_request(self, m: Message) -> None:
        resp = VOTE_RESP if m.type == VOTE else PRE_VOTE_RESP
        can_vote = (self.vote == m.src or (self.vote == NONE and self.lead == NONE)
                    or (m.type == PRE_VOTE and m.term > self.term))
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, self.id, m.src, m.term))
            if m.type == VOTE:
                self.election_elapsed = 0
                self.vote = m.src
            elif self.role == Role.PRE_CANDIDATE and m.src > self.id and m.term == self.term + 1:
                # Two pre-candidates at once would both win their pre-votes and split the real
                # vote (again and again while their timers stay in step): the lower id gives way
                # to the higher one it just granted, and waits a fresh timeout as a follower.
                self._become_follower(self.term, NONE)
        else:
            self._send(Message(resp, self.id, m.src, self.term, reject=True))

    def _candidate_poll(self, m: Message) -> None:
        expected = PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else VOTE_RESP
        if m.type != expected:
            return
        self.votes[m.src] = not m.reject
        result = self._poll_result()
        if result is True:
            self._won_election()
        elif result is False:
            self._become_follower(self.term, NONE)

    # -- follower side -------------------------------------------------------------------------
    def _follower_app(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.src
        self._handle_append(m)

    def _follower_heartbeat(self, m: Message) -> None:
        self.election_elapsed = 0
        self.lead = m.src
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(Message(HEARTBEAT_RESP, self.id, m.src, self.term))

    def _follower_timeout_now(self, m: Message) -> None:
        self._campaign(pre=False, transfer=True)

    def _candidate_hears_leader(self, m: Message) -> None:
        self._become_follower(m.term, m.src)
        _HANDLERS[Role.FOLLOWER][m.type](self, m)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            log.check_committed(m.entries)
            self._send(Message(APP_RESP, self.id, m.src, self.term, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(APP_RESP, self.id, m.src, self.term, index=last_new))
            return
        hint = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(Message(APP_RESP, self.id, m.src, self.term, log.term(hint) or 0, m.index,
                           reject=True, reject_hint=hint))

    # -- leader side ---------------------------------------------------------------------------
    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        log = self.log
        last = log.last_index()
        prev = pr.next - 1
        lagging = pr.match + self.config.catchup_lag_entries < last
        if lagging and pr.catchup_credit_bytes <= 0:
            return False                    # catching up: wait for the next tick's credit
        budget = self.config.max_append_bytes
        if lagging:
            budget = min(budget, pr.catchup_credit_bytes)
        ents = log.entries(pr.next, last + 1, budget) if pr.next <= last else []
        if not ents and not send_if_empty:
            return False
        prev_term = log.term(prev)
        if prev_term is None:
            raise InvariantViolation(f"progress of {to} points past the log: next={pr.next} last={last}")
        if lagging:
            pr.catchup_credit_bytes -= sum(48 + len(e.data) for e in ents)
        committed = log.committed
        self.msgs.append(Message(APP, self.id, to, self.term, prev_term, prev, tuple(ents), committed))
        pr.note_commit_sent(committed, prev + len(ents))
        if ents:
            pr.sent_entries(ents[-1].index)
        else:
            pr.probe_sent = pr.state == ProgressState.PROBE
        return True

    def _bcast_append(self, send_if_empty: bool = True) -> None:
        for peer in self.peers:
            if peer != self.id:
                self._send_append(peer, send_if_empty)

    def _bcast_commit(self) -> None:
        """The commit index moved. Followers with entries to receive get them now (the appends
        carry the new commit index); the others hear it from the next append, heartbeat or tick
        (``_tell_commit``), not from an empty append of its own: at low rates that was a second
        message each way, and a loop turn on every process, per Raft round. Only followers'
        applying waits for it; the leader's commit, and so every answer, does not."""
        self._bcast_append(send_if_empty=False)

    def _tell_commit(self) -> None:
        """Tick: an empty append to each follower that holds entries committed since it was last
        told (so a follower's applied index trails the leader's by at most a tick)."""
        committed = self.log.committed
        for peer, pr in self.prs.items():
            if peer != self.id and pr.commit_sent < committed and pr.commit_sent < pr.match:
                self._send_append(peer)

    def _bcast_heartbeat(self) -> None:
        committed = self.log.committed
        for peer in self.peers:
            if peer != self.id:
                pr = self.prs[peer]
                commit = min(pr.match, committed)
                self.msgs.append(Message(HEARTBEAT, self.id, peer, self.term, commit=commit))
                pr.note_commit_sent(commit, commit)

    def _quorum_match_index(self) -> int:
        """The highest index a quorum of replicas has (in the durability mode's sense)."""
        matches = sorted((pr.match for pr in self.prs.values()), reverse=True)
        return matches[self._quorum() - 1]

    def _maybe_commit(self) -> bool:
        index = self._quorum_match_index()
        # Only an entry of the current term commits by counting replicas (Raft section 5.4.2).
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            return True
        return False

    def _leader_app_resp(self, m: Message) -> None:
        pr = self.prs[m.src]
        pr.recent_active = True
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint = self.log.find_conflict_by_term(hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        if m.index > self.log.last_index():
            # a leader's log only grows in its term, so no follower can have acknowledged an entry
            # it does not hold: this answers an append someone else sent in its name (a forged
            # frame). Counting it would let a commit rest on a replica holding another entry.
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        else:
            pr.free_inflight_to(m.index)
        if self._maybe_commit():
            self._bcast_commit()
        elif was_paused:
            self._send_append(m.src)
        while self._send_append(m.src, send_if_empty=False):
            pass
        if m.src == self.transferee and pr.match == self.log.last_index():
            self._send(Message(TIMEOUT_NOW, self.id, m.src, self.term))

    def _leader_heartbeat_resp(self, m: Message) -> None:
        pr = self.prs[m.src]
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and len(pr.inflight) >= pr.max_inflight:
            pr.inflight.popleft()   # free one slot so a lost APP does not stall the window forever
        if pr.match < self.log.last_index():
            self._send_append(m.src)


_TICK = {
    Role.FOLLOWER: RaftNode._tick_election,
    Role.PRE_CANDIDATE: RaftNode._tick_election,
    Role.CANDIDATE: RaftNode._tick_election,
    Role.LEADER: RaftNode._tick_leader,
}

# Role -> message type -> handler. Votes and term checks are role-independent (``step``);
# a message type missing from a role's row is ignored in that role (for instance a stale APP_RESP
# reaching a follower).
_HANDLERS = {
    Role.FOLLOWER: {APP: RaftNode._follower_app, HEARTBEAT: RaftNode._follower_heartbeat,
                    TIMEOUT_NOW: RaftNode._follower_timeout_now},
    Role.PRE_CANDIDATE: {APP: RaftNode._candidate_hears_leader, HEARTBEAT: RaftNode._candidate_hears_leader,
                         PRE_VOTE_RESP: RaftNode._candidate_poll},
    Role.CANDIDATE: {APP: RaftNode._candidate_hears_leader, HEARTBEAT: RaftNode._candidate_hears_leader,
                     VOTE_RESP: RaftNode._candidate_poll},
    Role.LEADER: {APP_RESP: RaftNode._leader_app_resp, HEARTBEAT_RESP: RaftNode._leader_heartbeat_resp},
}
