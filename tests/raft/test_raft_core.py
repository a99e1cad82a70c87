"""Unit and property tests of the core's parts: storage, the log's unstable tail, progress and
flow control, the Ready contract of the two durability modes, batching and catch-up throttling."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.log import RaftLog
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.progress import Progress, ProgressState
from mqbench.broker.raft.storage import LogUnavailable, MemoryStorage
from mqbench.broker.raft.types import Entry, Message, MsgType, NotLeader, ProposalDropped, Role
from mqbench.errors import InvariantViolation, UserError
from raft_scenario import Harness


# -- storage and log -----------------------------------------------------------------------------
def test_memory_storage_ranges_and_replacement():
    s = MemoryStorage([Entry(1, 1), Entry(2, 1), Entry(3, 2)])
    assert (s.first_index(), s.last_index(), s.term(0), s.term(3)) == (1, 3, 0, 2)
    assert [e.index for e in s.entries(2, 4)] == [2, 3]
    s.append([Entry(2, 3)])
    assert [(e.index, e.term) for e in s.entries(1, 3)] == [(1, 1), (2, 3)]
    with pytest.raises(LogUnavailable):
        s.term(5)
    with pytest.raises(LogUnavailable):
        s.entries(1, 9)
    with pytest.raises(InvariantViolation):
        s.append([Entry(9, 3)])


@given(st.lists(st.tuples(st.sampled_from(["append", "ready", "advance", "commit"]),
                          st.integers(0, 10), st.integers(1, 4)), max_size=60))
def test_raft_log_matches_a_plain_list_model(ops):
    """Whatever the interleaving of appends (with truncation), Ready hand-outs and persistence,
    the log reads as the model list, and storage + unstable tail reproduce it."""
    storage = MemoryStorage()
    log = RaftLog(storage)
    model: list[Entry] = []
    pending = None
    term = 1
    for op, a, b in ops:
        if op == "append":
            start = max(log.committed + 1, len(model) + 1 - a)
            term += 1
            ents = [Entry(start + k, term, b"%d" % term) for k in range(b)]
            log.append(ents)
            model = model[: start - 1] + ents
        elif op == "ready" and pending is None:
            pending = log.take_unpersisted()
            storage.append(pending)
        elif op == "advance" and pending is not None:
            if pending:
                log.stable_to(pending[-1].index, pending[-1].term)
            pending = None
        elif op == "commit" and model:
            log.commit_to(min(len(model), log.committed + a))
        assert log.last_index() == len(model)
        assert log.entries(1, len(model) + 1) == model
        assert all(log.term(e.index) == e.term for e in model)
        assert log.term(len(model) + 1) is None
    if pending is not None:
        log.stable_to(pending[-1].index, pending[-1].term) if pending else None
    storage.append(log.take_unpersisted())
    assert storage.entries(1, storage.last_index() + 1)[: len(model)] == model


def test_log_refuses_to_truncate_committed_entries_and_gaps():
    log = RaftLog(MemoryStorage([Entry(1, 1), Entry(2, 1)]))
    log.commit_to(2)
    with pytest.raises(InvariantViolation):
        log.append([Entry(2, 2)])
    with pytest.raises(InvariantViolation):
        log.append([Entry(5, 2)])
    with pytest.raises(InvariantViolation):
        log.commit_to(7)


def test_log_clamps_a_persisted_commit_beyond_the_recovered_tail():
    log = RaftLog(MemoryStorage([Entry(1, 1)]), committed=5)
    assert log.committed == 1


def test_find_conflict_by_term():
    log = RaftLog(MemoryStorage([Entry(1, 1), Entry(2, 1), Entry(3, 3), Entry(4, 3), Entry(5, 5)]))
    assert log.find_conflict_by_term(5, 4) == 4
    assert log.find_conflict_by_term(5, 2) == 2
    assert log.find_conflict_by_term(9, 9) == 5
    assert log.find_conflict_by_term(3, 0) == 0


# -- progress -----------------------------------------------------------------------------------
def test_progress_probe_then_replicate_window():
    pr = Progress(next_index=5, max_inflight=2)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(5)
    assert pr.is_paused()                                   # one probe at a time
    assert pr.maybe_update(5) and not pr.is_paused()
    pr.become_replicate()
    pr.sent_entries(6)
    pr.sent_entries(7)
    assert pr.is_paused() and pr.next == 8                  # window of 2 full
    pr.free_inflight_to(6)
    assert not pr.is_paused()
    assert not pr.maybe_decrease_to(4, 3)                   # stale: below match
    assert pr.maybe_decrease_to(7, 6) and pr.next == 6


# -- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(node_id=4, peers=(1, 2, 3)), dict(node_id=1, peers=(1, 1, 2)),
                                    dict(node_id=1, peers=(1, 2), heartbeat_ticks=5, election_ticks=5),
                                    dict(node_id=1, peers=(1, 2), preferred_leader=9),
                                    dict(node_id=1, peers=(1, 2), max_inflight_msgs=0)])
def test_bad_config_is_a_user_error(kwargs):
    with pytest.raises(UserError):
        RaftConfig(**kwargs)


def test_config_from_ms_defaults():
    cfg = RaftConfig.from_ms(1, (1, 2, 3))
    assert (cfg.tick_ms, cfg.heartbeat_ticks, cfg.election_ticks) == (50, 2, 20)


# -- Ready contract and durability modes --------------------------------------------------------
def _leader(durability: Durability, **kw) -> tuple[RaftNode, MemoryStorage]:
    storage = MemoryStorage()
    node = RaftNode(RaftConfig(1, (1, 2, 3), election_ticks=10, heartbeat_ticks=1, pre_vote=False,
                               durability=durability, **kw), storage, random.Random(1))
    node.campaign()
    node.step(Message(MsgType.VOTE_RESP, 2, 1, term=1))
    assert node.role == Role.LEADER
    return node, storage


def _persist(node: RaftNode, storage: MemoryStorage):
    rd = node.ready()
    storage.append(rd.entries)
    if rd.hard_state:
        storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    return rd


def test_fsync_mode_syncs_every_ready_with_entries_memory_mode_does_not():
    for durability, want in ((Durability.QUORUM_FSYNCED, True), (Durability.QUORUM_MEMORY, False)):
        node, storage = _leader(durability)
        _persist(node, storage)
        node.propose(b"x")
        rd = node.ready()
        assert rd.entries and rd.must_sync is want


def test_leader_counts_its_own_entry_only_after_advance():
    node, storage = _leader(Durability.QUORUM_FSYNCED)
    _persist(node, storage)
    node.propose(b"x")                                          # index 2
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=2))
    assert node.log.committed < 2, "the leader's unpersisted copy must not count"
    _persist(node, storage)
    assert node.log.committed == 2


def test_proposals_between_readies_go_out_in_one_append():
    node, storage = _leader(Durability.QUORUM_FSYNCED)
    _persist(node, storage)
    for peer in (2, 3):
        node.step(Message(MsgType.APP_RESP, peer, 1, term=1, index=1))
    _persist(node, storage)
    for n in range(5):
        node.propose(b"%d" % n)
    rd = _persist(node, storage)
    apps = [m for m in rd.messages if m.type == MsgType.APP and m.dst == 2]
    assert len(apps) == 1 and [e.data for e in apps[0].entries] == [b"0", b"1", b"2", b"3", b"4"]


def test_inflight_window_bounds_the_pipeline():
    node, storage = _leader(Durability.QUORUM_FSYNCED, max_inflight_msgs=2)
    _persist(node, storage)
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=1))     # follower 2 -> replicate
    _persist(node, storage)
    sent = 0
    for n in range(6):
        node.propose(b"%d" % n)
        sent += sum(1 for m in _persist(node, storage).messages if m.type == MsgType.APP and m.dst == 2)
    assert sent == 2
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=3))     # frees both slots
    rd = _persist(node, storage)
    assert [m for m in rd.messages if m.type == MsgType.APP and m.dst == 2 and m.entries]


def test_catch_up_of_a_far_behind_follower_is_throttled_per_tick():
    node, storage = _leader(Durability.QUORUM_FSYNCED, catchup_lag_entries=10, catchup_bytes_per_tick=1000,
                            max_append_bytes=1 << 20)
    _persist(node, storage)
    for peer in (2, 3):
        node.step(Message(MsgType.APP_RESP, peer, 1, term=1, index=1))
    node.propose_batch([b"x" * 100 for _ in range(200)])
    _persist(node, storage)
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=201))   # 2 is current, 3 lags
    _persist(node, storage)
    per_tick = []
    for _ in range(3):
        node.tick()
        node.step(Message(MsgType.HEARTBEAT_RESP, 3, 1, term=1))
        rd = _persist(node, storage)
        per_tick.append(sum(48 + len(e.data) for m in rd.messages if m.dst == 3 for e in m.entries))
    assert all(0 < sent <= 1000 for sent in per_tick), per_tick


class CountingStorage(MemoryStorage):
    """MemoryStorage that counts the entries read from it (the leader's disk reads)."""

    def __init__(self):
        super().__init__()
        self.read = 0

    def entries(self, lo: int, hi: int) -> list[Entry]:
        ents = super().entries(lo, hi)
        self.read += len(ents)
        return ents


def test_catch_up_reads_from_storage_only_what_one_append_sends():
    """Issue 18, finding 9: every APP to a far-behind follower read the whole backlog from storage
    to keep max_append_bytes of it, so catch-up cost grew with the square of the backlog and
    blocked the leader's loop long enough for the other follower to call elections."""
    storage = CountingStorage()
    node = RaftNode(RaftConfig(1, (1, 2, 3), election_ticks=10, heartbeat_ticks=1, pre_vote=False,
                               max_append_bytes=10_000, catchup_lag_entries=10, catchup_bytes_per_tick=50_000),
                    storage, random.Random(1))
    node.campaign()
    node.step(Message(MsgType.VOTE_RESP, 2, 1, term=1))
    _persist(node, storage)
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=1))
    node.propose_batch([b"x" * 52 for _ in range(20_000)])        # 100 bytes an entry on the log
    _persist(node, storage)
    node.step(Message(MsgType.APP_RESP, 2, 1, term=1, index=20_001))
    _persist(node, storage)
    node.step(Message(MsgType.APP_RESP, 3, 1, term=1, index=1))    # 3 is 20,000 entries behind
    storage.read = 0
    sent = 0
    for _ in range(3):
        node.tick()
        node.step(Message(MsgType.HEARTBEAT_RESP, 3, 1, term=1))
        rd = _persist(node, storage)
        sent += sum(len(m.entries) for m in rd.messages if m.dst == 3)
    assert 0 < sent <= 1500
    assert storage.read <= 2 * sent + 1000, f"read {storage.read} entries to send {sent}"


def test_leadership_moves_to_the_preferred_leader_only_once_it_is_caught_up():
    """Issue 18, finding 9: being at the commit index is not being caught up when the commit index
    lags (a slow quorum): a transfer started then refuses writes until the target has the rest."""
    node, storage = _leader(Durability.QUORUM_FSYNCED, preferred_leader=3, transfer_lag_entries=100)
    _persist(node, storage)
    for peer in (2, 3):
        node.step(Message(MsgType.APP_RESP, peer, 1, term=1, index=1))
    node.propose_batch([b"x" for _ in range(1000)])
    _persist(node, storage)
    assert node.log.committed == 1 and node.prs[3].match == 1          # at the commit index, 1000 behind
    node.tick()
    assert node.transferee == 0, "handed over to a replica 1000 entries behind"
    node.step(Message(MsgType.APP_RESP, 3, 1, term=1, index=950))
    _persist(node, storage)
    node.tick()
    assert node.transferee == 3                                          # within 100 of the last index


def test_propose_on_a_follower_or_during_transfer_is_refused():
    h = Harness()
    h.run("add-nodes 3")
    with pytest.raises(NotLeader):
        h.nodes[2].propose(b"x")
    h.run("campaign 1")
    h.run("deliver")
    h.nodes[1].transfer_leadership(2)
    with pytest.raises(ProposalDropped):
        h.nodes[1].propose(b"x")
    with pytest.raises(UserError):
        h.nodes[1].transfer_leadership(9)


def test_ready_hands_out_committed_entries_once():
    h = Harness()
    h.run("add-nodes 3")
    h.run("campaign 1")
    h.run("deliver")
    h.run("propose 1 a")
    h.run("deliver")
    h.run("tick 1")      # followers hear the commit index from the next tick (or append), not at once
    h.run("deliver")
    assert [[e.index for e in h.applied[i]] for i in (1, 2, 3)] == [[1, 2]] * 3
    assert not h.nodes[1].has_ready()


def test_commit_index_reaches_followers_without_a_message_per_round():
    """A round at a low rate (one proposal, nothing after it): the leader commits on the first
    acknowledgements and sends no empty append of its own for it (a message each way and a loop
    turn on every process per round); a later append carries the commit index, else the leader's
    next tick sends it once (an empty append between heartbeats)."""
    h = Harness()
    h.run("add-nodes 3 heartbeat=4")
    h.run("campaign 1")
    h.run("deliver")
    h.run("tick 1 4")          # a heartbeat: the followers learn the no-op's commit
    h.run("deliver")
    assert [h.nodes[i].log.committed for i in (1, 2, 3)] == [1, 1, 1]
    for data in ("a", "b"):
        h.run(f"propose 1 {data}")
        out = h.run("deliver")
        assert [line.split(" ")[1] for line in out.splitlines()] == ["APP", "APP", "APP_RESP", "APP_RESP"]
    assert h.nodes[1].log.committed == 3
    assert [h.nodes[i].log.committed for i in (2, 3)] == [2, 2]    # from b's append
    h.run("tick 1")
    assert h.run("deliver").splitlines() == ["1->2 APP term=1 last=(3,1) commit=3",
                                             "1->3 APP term=1 last=(3,1) commit=3",
                                             "2->1 APP_RESP term=1 index=3", "3->1 APP_RESP term=1 index=3"]
    assert [h.nodes[i].log.committed for i in (2, 3)] == [3, 3]
    h.run("tick 1")
    assert h.run("deliver") == ""              # told once


# -- same index, same term, other contents: an invariant violation, never a silent drop ----------
def test_log_stops_on_an_entry_with_a_held_index_and_term_but_other_data():
    """Finding 1: a forged entry held at index 2 (term 1) made the real entry of that index and term
    look already present, so it was dropped. Now the follower stops instead of keeping either."""
    log = RaftLog(MemoryStorage([Entry(1, 1, b"a"), Entry(2, 1, b"forged")]))
    assert log.maybe_append(1, 1, 0, (Entry(2, 1, b"forged"),)) == 2    # a true duplicate is fine
    with pytest.raises(InvariantViolation, match="entry 2 of term 1 differs"):
        log.maybe_append(1, 1, 0, (Entry(2, 1, b"real"),))
    # in the unstable tail too, and a kind that differs counts
    log = RaftLog(MemoryStorage([Entry(1, 1, b"a")]))
    log.append([Entry(2, 1, b"x")])
    with pytest.raises(InvariantViolation):
        log.maybe_append(1, 1, 0, (Entry(2, 1, b"x", 1),))


def test_node_stops_on_a_retransmitted_committed_entry_that_differs():
    """The forged entry had also been committed (the forged frame carried a commit index): the real
    leader's retransmission starts below the follower's commit index, and used to be skipped."""
    storage = MemoryStorage([Entry(1, 1, b"a"), Entry(2, 1, b"forged")])
    node = RaftNode(RaftConfig(2, [1, 2, 3]), storage, random.Random(1))
    node.step(Message(MsgType.APP, 1, 2, 1, 1, 1, (Entry(2, 1, b"forged"),), 2))
    assert node.log.committed == 2
    node.step(Message(MsgType.APP, 1, 2, 1, 1, 1, (Entry(2, 1, b"forged"), Entry(3, 1, b"c")), 3))   # fine
    with pytest.raises(InvariantViolation, match="entry 2 of term 1 differs"):
        node.step(Message(MsgType.APP, 1, 2, 1, 1, 1, (Entry(2, 1, b"real"),), 3))
    with pytest.raises(InvariantViolation, match="committed entry 2 has term 1"):
        node.step(Message(MsgType.APP, 1, 2, 1, 1, 1, (Entry(2, 5, b"real"),), 3))
