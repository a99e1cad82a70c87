"""Tests named after the Raft paper's rules (Figure 3 and sections 5.2-5.4, 6 of the thesis on
pre-vote and check-quorum), driven through the scenario harness.

The five Figure 3 properties are checked over Hypothesis-generated schedules of ticks, message
deliveries (in random order, with drops), partitions, crashes and proposals.
"""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.raft.config import RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.types import Entry, HardState, Message, MsgType, Role
from raft_scenario import Harness

OPS = st.lists(st.tuples(st.sampled_from(["tick", "deliver", "deliver", "deliver", "drop", "propose",
                                          "partition", "heal", "crash", "restart"]),
                         st.integers(0, 1_000_000)), min_size=20, max_size=250)


class History:
    """What the properties are judged on, recorded while a schedule runs."""

    def __init__(self):
        self.leader_of_term: dict[int, set[int]] = {}
        self.leader_logs: dict[tuple[int, int], list[Entry]] = {}   # (node, term) -> log when last seen
        self.append_only_broken = []
        self.committed: dict[int, Entry] = {}
        self.leader_missing_committed = []
        self.logs_at_end: dict[int, list[Entry]] = {}


def run_schedule(ops, nodes: int = 3) -> History:
    h = Harness()
    h.run(f"add-nodes {nodes}")
    ids = sorted(h.nodes)
    history = History()
    proposals = 0

    def observe():
        for node_id, node in h.nodes.items():
            if node is None:
                continue
            log = node.log.entries(1, node.log.last_index() + 1)
            for entry in log[: node.log.committed]:
                known = history.committed.setdefault(entry.index, entry)
                assert known == entry, f"committed entry {entry.index} changed: {known} -> {entry}"
            if node.role == Role.LEADER:
                history.leader_of_term.setdefault(node.term, set()).add(node_id)
                key = (node_id, node.term)
                before = history.leader_logs.get(key)
                if before is not None and log[: len(before)] != before:
                    history.append_only_broken.append((key, before, log))
                history.leader_logs[key] = log
                if before is None:
                    for index, entry in history.committed.items():
                        if index > len(log) or log[index - 1] != entry:
                            history.leader_missing_committed.append((node_id, node.term, index))

    for op, arg in ops:
        node_id = ids[arg % len(ids)]
        if op == "tick":
            for target in ids:
                if h.nodes[target] is not None and (arg >> 3) % 2 == 0 or target == node_id:
                    if h.nodes[target] is not None:
                        for _ in range(1 + arg % 7):
                            h.nodes[target].tick()
                        h.process(target)
        elif op in ("deliver", "drop") and h.queue:
            m = h.queue.pop(arg % len(h.queue))
            target = h.nodes.get(m.dst)
            if op == "deliver" and target is not None and (m.src, m.dst) not in h.blocked:
                target.step(m)
                h.process(m.dst)
        elif op == "propose":
            node = h.nodes[node_id]
            if node is not None and node.role == Role.LEADER and node.transferee == 0:
                proposals += 1
                node.propose(b"v%d" % proposals)
                h.process(node_id)
        elif op == "partition":
            h.blocked |= {(node_id, other) for other in ids if other != node_id}
            h.blocked |= {(other, node_id) for other in ids if other != node_id}
        elif op == "heal":
            h.blocked.clear()
        elif op == "crash" and sum(1 for n in h.nodes.values() if n is None) < (nodes - 1) // 2 + 1:
            h.nodes[node_id] = None
        elif op == "restart" and h.nodes[node_id] is None:
            h.start(node_id)
        observe()
    history.logs_at_end = {i: n.log.entries(1, n.log.last_index() + 1) for i, n in h.nodes.items() if n is not None}
    history.applied = h.applied
    return history


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_election_safety_at_most_one_leader_per_term(ops):
    history = run_schedule(ops)
    assert all(len(leaders) == 1 for leaders in history.leader_of_term.values()), history.leader_of_term


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_leader_append_only(ops):
    assert run_schedule(ops).append_only_broken == []


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_log_matching(ops):
    logs = list(run_schedule(ops).logs_at_end.values())
    for a in logs:
        for b in logs:
            for index in range(min(len(a), len(b)), 0, -1):
                if a[index - 1].term == b[index - 1].term:
                    assert a[:index] == b[:index]
                    break


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_leader_completeness(ops):
    assert run_schedule(ops).leader_missing_committed == []


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_state_machine_safety(ops):
    applied = [entries for entries in run_schedule(ops).applied.values()]
    for a in applied:
        for b in applied:
            shorter = min(len(a), len(b))
            assert a[:shorter] == b[:shorter]


def test_the_schedules_do_elect_and_commit():
    """The property tests above must not pass vacuously: a typical schedule elects and commits."""
    rng = random.Random(5)
    ops = [(rng.choice(["tick", "deliver", "deliver", "deliver", "propose"]), rng.randrange(10**6)) for _ in range(400)]
    history = run_schedule(ops)
    assert history.leader_of_term
    assert len(history.committed) >= 3


# -- single rules ------------------------------------------------------------------------------
def _three(**kw) -> Harness:
    h = Harness()
    h.run("add-nodes 3 " + " ".join(f"{k}={v}" for k, v in kw.items()))
    return h


def _elect(h: Harness, node_id: int = 1) -> None:
    h.run(f"campaign {node_id}")
    h.run("deliver")
    assert h.nodes[node_id].role == Role.LEADER


def test_leader_appends_a_noop_entry_on_election():
    h = _three()
    _elect(h)
    entry = h.nodes[1].log.entries(1, 2)[0]
    assert (entry.index, entry.term, entry.kind, entry.data) == (1, 1, 1, b"")
    h.run("tick 1")      # followers hear the commit index from the leader's next tick
    h.run("deliver")
    assert all(n.log.committed == 1 for n in h.nodes.values())


def test_prevote_does_not_disrupt_a_healthy_leader():
    h = _three()
    _elect(h)
    h.run("partition 3 | 1 2")
    h.run("tick 3 100")
    h.run("deliver")
    assert h.nodes[3].term == 1          # no term inflation while cut off
    h.run("heal")
    h.run("tick 3 40")
    h.run("deliver")
    assert [h.nodes[i].term for i in (1, 2, 3)] == [1, 1, 1]
    assert h.nodes[1].role == Role.LEADER


def test_without_prevote_a_rejoining_node_does_disrupt():
    """The counterpart that shows what pre-vote prevents (and that the test above can fail)."""
    h = _three(prevote="off", checkquorum="off")
    _elect(h)
    h.run("partition 3 | 1 2")
    h.run("tick 3 100")
    h.run("deliver")
    assert h.nodes[3].term > 1
    h.run("heal")
    h.run("tick 3 40")
    h.run("deliver")
    assert h.nodes[1].term > 1           # the old leader was deposed by the higher term


def test_check_quorum_steps_down_a_leader_cut_off_from_its_quorum():
    h = _three()
    _elect(h)
    h.run("partition 1 | 2 3")
    h.run("tick 1 20")
    assert h.nodes[1].role == Role.FOLLOWER
    assert h.nodes[1].lead == 0


def test_check_quorum_keeps_a_leader_that_hears_from_a_majority():
    h = _three()
    _elect(h)
    h.run("partition 1 | 3")
    for _ in range(30):
        h.run("tick 1 1")
        h.run("deliver")
    assert h.nodes[1].role == Role.LEADER


def test_leader_lease_ignores_votes_while_a_leader_is_heard():
    h = _three()
    _elect(h)
    follower = h.nodes[2]
    before = follower.term
    follower.step(Message(MsgType.VOTE, 3, 2, term=5, log_term=1, index=99))
    assert follower.term == before and follower.msgs == []


def test_only_entries_of_the_current_term_commit_by_counting():
    """Raft section 5.4.2 (Figure 8): a leader of term 3 holding an entry of term 2 on a majority
    does not commit it until an entry of term 3 is on a majority too."""
    peers = (1, 2, 3)
    storages = {1: MemoryStorage([Entry(1, 1), Entry(2, 2)], HardState(2, 0, 1)),
                2: MemoryStorage([Entry(1, 1)], HardState(2, 0, 1)),
                3: MemoryStorage([Entry(1, 1)], HardState(2, 0, 1))}
    nodes = {i: RaftNode(RaftConfig(i, peers, election_ticks=10, heartbeat_ticks=1, pre_vote=False), storages[i],
                         random.Random(i)) for i in peers}
    leader = nodes[1]
    leader.campaign()
    for voter in (2, 3):
        leader.step(Message(MsgType.VOTE_RESP, voter, 1, term=3))
    assert leader.role == Role.LEADER and leader.term == 3
    rd = leader.ready()
    storages[1].append(rd.entries)
    leader.advance(rd)
    leader.step(Message(MsgType.APP_RESP, 2, 1, term=3, index=2))   # follower 2 has entry 2 (term 2)
    assert leader.log.committed == 1, "an old-term entry must not commit by counting"
    leader.step(Message(MsgType.APP_RESP, 2, 1, term=3, index=3))   # and now the term-3 no-op
    assert leader.log.committed == 3


def test_vote_is_persisted_before_the_response_is_sent():
    for durability in ("fsync", "memory"):
        h = _three(durability=durability)
        voter = h.nodes[2]
        voter.step(Message(MsgType.VOTE, 1, 2, term=1))
        rd = voter.ready()
        assert rd.hard_state == HardState(1, 1, 0)
        assert rd.must_sync, "the vote must be fsynced before its VOTE_RESP goes out"
        assert [(m.type, m.reject) for m in rd.messages] == [(MsgType.VOTE_RESP, False)]


def test_a_restarted_node_does_not_vote_twice_in_a_term():
    h = _three()
    h.nodes[2].step(Message(MsgType.VOTE, 1, 2, term=1))
    h.process(2)
    h.queue.clear()
    h.run("crash 2")
    h.run("restart 2")
    h.nodes[2].step(Message(MsgType.VOTE, 3, 2, term=1))
    h.process(2)
    assert [(m.type, m.reject) for m in h.queue] == [(MsgType.VOTE_RESP, True)]


def test_a_stale_leader_learns_the_new_term_and_steps_down():
    h = _three()
    _elect(h)
    h.nodes[2].step(Message(MsgType.APP, 3, 2, term=7, log_term=1, index=1, commit=1))
    h.process(2)
    h.queue.clear()
    h.nodes[2].step(Message(MsgType.HEARTBEAT, 1, 2, term=1))   # from the old leader
    h.process(2)
    assert [(m.type, m.term) for m in h.queue] == [(MsgType.APP_RESP, 7)]
    h.run("deliver")
    assert h.nodes[1].role == Role.FOLLOWER and h.nodes[1].term == 7


def test_follower_truncates_a_divergent_suffix_but_never_committed_entries():
    h = _three()
    _elect(h)
    follower = h.nodes[2]
    follower.step(Message(MsgType.APP, 1, 2, term=1, log_term=1, index=1,
                          entries=(Entry(2, 1, b"x"), Entry(3, 1, b"y")), commit=1))
    follower.step(Message(MsgType.APP, 3, 2, term=2, log_term=1, index=1, entries=(Entry(2, 2, b"z"),), commit=1))
    assert [(e.index, e.term, e.data) for e in follower.log.entries(1, follower.log.last_index() + 1)] == \
        [(1, 1, b""), (2, 2, b"z")]
