"""The Raft storage adapter on DLedger files: round trips across reopen, DLedger's currterm text,
divergent-suffix truncation, torn tails, and a Raft group running on real files with restarts."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.raft.config import RaftConfig
from mqbench.broker.store.dledger_storage import DLedgerStorage
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.types import Entry, EntryKind, HardState, Role
from mqbench.errors import UserError

SEGMENT = 1 << 16


def _open(path) -> DLedgerStorage:
    return DLedgerStorage(path, data_segment_bytes=SEGMENT)


def test_empty_storage(tmp_path):
    s = _open(tmp_path)
    assert (s.initial_state(), s.first_index(), s.last_index(), s.term(0)) == (HardState(), 1, 0, 0)


def test_entries_kinds_terms_and_hard_state_survive_reopen(tmp_path):
    s = _open(tmp_path)
    s.append([Entry(1, 1, b"", EntryKind.NOOP), Entry(2, 1, b"abc"), Entry(3, 2, b"x" * 5000)])
    s.set_hard_state(HardState(2, 3, 2))
    s.close()
    s = _open(tmp_path)
    assert s.initial_state() == HardState(2, 3, 2)
    assert s.entries(1, 4) == [Entry(1, 1, b"", EntryKind.NOOP), Entry(2, 1, b"abc"), Entry(3, 2, b"x" * 5000)]
    assert [s.term(i) for i in range(4)] == [0, 1, 1, 2]
    assert (tmp_path / "currterm").read_bytes() == b"currTerm=2\nvoteLeader=n3\n"


def test_no_vote_is_an_empty_vote_leader(tmp_path):
    s = _open(tmp_path)
    s.set_hard_state(HardState(4, 0, 0))
    assert (tmp_path / "currterm").read_bytes() == b"currTerm=4\nvoteLeader=\n"
    assert _open(tmp_path).initial_state() == HardState(4, 0, 0)


def test_append_truncates_a_divergent_suffix(tmp_path):
    s = _open(tmp_path)
    s.append([Entry(i, 1, b"old%d" % i) for i in range(1, 6)])
    s.append([Entry(3, 2, b"new3")])
    assert s.last_index() == 3
    assert [e.data for e in s.entries(1, 4)] == [b"old1", b"old2", b"new3"]
    s.close()
    assert [e.term for e in _open(tmp_path).entries(1, 4)] == [1, 1, 2]


def test_a_torn_last_entry_is_dropped_on_open(tmp_path):
    s = _open(tmp_path)
    s.append([Entry(1, 1, b"a" * 100), Entry(2, 1, b"b" * 100)])
    s.sync()
    s.log.data.close()
    s.log.index.close()
    segment = sorted((tmp_path / "data").iterdir())[0]
    raw = bytearray(segment.read_bytes())
    second = 48 + 100
    raw[second + 48 + 60: second + 48 + 100] = bytes(40)    # the end of entry 2's body never landed
    segment.write_bytes(bytes(raw))
    s = _open(tmp_path)
    assert s.last_index() == 1 and s.entries(1, 2)[0].data == b"a" * 100


def test_a_corrupt_currterm_is_a_clear_error(tmp_path):
    (tmp_path / "currterm").write_bytes(b"currTerm=2\nvoteLeader=someone\n")
    with pytest.raises(UserError, match="voteLeader"):
        _open(tmp_path)
    (tmp_path / "currterm").write_bytes(b"currTerm=two\n")
    with pytest.raises(UserError):
        _open(tmp_path)


def test_a_raft_group_on_dledger_files_survives_restarts(tmp_path):
    ids = (1, 2, 3)
    dirs = {i: tmp_path / f"dledger-n{i}" for i in ids}
    storages = {i: _open(dirs[i]) for i in ids}
    nodes = {i: RaftNode(RaftConfig(i, ids, election_ticks=10, heartbeat_ticks=1), storages[i], random.Random(i))
             for i in ids}
    queue = []

    def pump():
        for _ in range(200):
            for i, node in nodes.items():
                if node is None:
                    continue
                while node.has_ready():
                    rd = node.ready()
                    storages[i].persist(rd)
                    queue.extend(rd.messages)
                    node.advance(rd)
            if not queue:
                return
            batch, queue[:] = list(queue), []
            for m in batch:
                if nodes.get(m.dst) is not None:
                    nodes[m.dst].step(m)

    nodes[1].campaign()
    pump()
    assert nodes[1].role == Role.LEADER
    for n in range(20):
        nodes[1].propose(b"record-%d" % n)
    pump()
    # crash node 3 (files stay as written), write more, restart it from its files
    storages[3].log.data.close()
    storages[3].log.index.close()
    nodes[3] = None
    for n in range(20, 30):
        nodes[1].propose(b"record-%d" % n)
    pump()
    storages[3] = _open(dirs[3])
    assert storages[3].initial_state().term == 1 and storages[3].last_index() == 21
    nodes[3] = RaftNode(RaftConfig(3, ids, election_ticks=10, heartbeat_ticks=1), storages[3], random.Random(33))
    nodes[1].tick()
    pump()
    logs = {i: [(e.index, e.term, e.data) for e in storages[i].entries(1, storages[i].last_index() + 1)] for i in ids}
    assert logs[1] == logs[2] == logs[3] and len(logs[1]) == 31
    assert all(nodes[i].log.committed == 31 for i in ids)
    for s in storages.values():
        s.close()
    assert _open(dirs[2]).log.committed_index == 30
