"""One ``NotLeader``: the Raft core's refusal and the replicated group's are the same class, and
every one of them names the known leader the same way (``leader_id``, None when unknown), so the
broker's handlers read the hint without guessing at attribute names."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.raft.config import RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.types import NONE, NotLeader
from mqbench.broker.server import proposals, replicated


def test_the_group_raises_the_core_class():
    assert replicated.NotLeader is NotLeader and proposals.NotLeader is NotLeader
    assert issubclass(replicated.LeadershipLost, NotLeader)


def test_core_refusal_names_the_leader_as_the_group_does():
    node = RaftNode(RaftConfig(2, (1, 2, 3)), MemoryStorage(), random.Random(1))
    with pytest.raises(NotLeader) as unknown:
        node.propose(b"x")
    assert unknown.value.leader_id is None and unknown.value.leader == NONE
    known = NotLeader(3, node_id=2, reason="leadership is being handed over")
    assert known.leader_id == 3 and known.leader == 3
    assert str(known) == "node 2 is not the leader (leader: 3): leadership is being handed over"
    lost = replicated.LeadershipLost(None, node_id=1, reason="term changed")
    assert lost.leader_id is None and "term changed" in str(lost)
