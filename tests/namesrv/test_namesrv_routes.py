"""Route logic: registration, Raft failover by term, expiry with an injected clock, body parsing."""
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.namesrv.routes import (Registration, RouteTable, TopicEntry, parse_topic_config_table,
                                           register_body)
from mqbench.errors import UserError

TOPICS = {"Orders": TopicEntry(8, 8, 6), "Pay": TopicEntry(4, 2, 4)}
A, B, C = "127.0.0.1:10911", "127.0.0.2:10911", "127.0.0.3:10911"


def reg(addr, broker_id, term=None, topics=TOPICS, name="g0", cluster="c1", timeout_ms=None):
    return Registration(cluster_name=cluster, broker_name=name, broker_addr=addr, broker_id=broker_id, term=term,
                        topics=topics, heartbeat_timeout_ms=timeout_ms)


def test_route_shape_from_the_leaders_registration():
    table = RouteTable()
    assert table.register(reg(A, 0, 1), 0).accepted
    assert table.register(reg(B, 1, 1, topics={"Other": TopicEntry(1, 1, 6)}), 0).accepted
    assert table.topic_route("Orders") == {
        "queueDatas": [{"brokerName": "g0", "readQueueNums": 8, "writeQueueNums": 8, "perm": 6, "topicSysFlag": 0}],
        "brokerDatas": [{"cluster": "c1", "brokerName": "g0", "brokerAddrs": {"0": A, "1": B}}],
        "filterServerTable": {}}
    assert table.topic_route("Other") is None  # only the leader's topic table counts
    assert table.topic_route("Nope") is None
    assert table.cluster_info() == {"brokerAddrTable": {"g0": {"cluster": "c1", "brokerName": "g0",
                                                                "brokerAddrs": {"0": A, "1": B}}},
                                    "clusterAddrTable": {"c1": ["g0"]}}


def test_two_groups_serve_one_topic():
    table = RouteTable()
    table.register(reg(A, 0, 1, name="g0"), 0)
    table.register(reg(B, 0, 1, name="g1"), 0)
    route = table.topic_route("Pay")
    assert [q["brokerName"] for q in route["queueDatas"]] == ["g0", "g1"]
    assert [b["brokerAddrs"] for b in route["brokerDatas"]] == [{"0": A}, {"0": B}]


def test_failover_new_leader_replaces_old_and_stale_leader_cannot_return():
    table = RouteTable()
    table.register(reg(A, 0, 1), 0)
    table.register(reg(B, 1, 1), 0)
    table.register(reg(C, 2, 1), 0)
    outcome = table.register(reg(B, 0, 2), 10)  # B won the election of term 2
    assert outcome.accepted
    assert table.brokers["g0"].broker_addrs == {0: B, 2: C}
    stale = table.register(reg(A, 0, 1), 20)  # the deposed leader has not noticed yet
    assert not stale.accepted and "term 1 < current term 2" in stale.reason and stale.master_addr == B
    assert table.brokers["g0"].broker_addrs == {0: B, 2: C}
    assert table.register(reg(A, 1, 2), 30).accepted  # it rejoins as a follower
    assert table.brokers["g0"].broker_addrs == {0: B, 1: A, 2: C}
    assert table.register(reg(C, 2, 1), 40).accepted  # a lagging follower still counts as alive
    assert not table.register(reg(B, 1, 1), 50).accepted  # an old-term message must not demote the leader


def test_plain_rocketmq_brokers_without_terms_last_registration_wins():
    table = RouteTable()
    table.register(reg(A, 0), 0)
    table.register(reg(B, 1), 0)
    table.register(reg(B, 0), 0)  # slave promoted: moves from id 1 to id 0
    assert table.brokers["g0"].broker_addrs == {0: B}
    table.register(reg(A, 1), 0)
    assert table.brokers["g0"].broker_addrs == {0: B, 1: A}


def test_expiry_with_an_injected_clock():
    table = RouteTable(broker_expiry_ms=10_000)
    table.register(reg(A, 0, 1), 0)
    table.register(reg(B, 1, 1, timeout_ms=30_000), 0)
    assert table.expire(10_000) == []
    assert table.expire(10_001) == [A]
    assert table.brokers["g0"].broker_addrs == {1: B}
    assert table.topic_route("Orders")["brokerDatas"][0]["brokerAddrs"] == {"1": B}  # readable, no leader
    assert table.expire(30_001) == [B]
    assert table.topic_route("Orders") is None and table.cluster_info()["clusterAddrTable"] == {}


def test_registering_keeps_an_address_alive():
    table = RouteTable(broker_expiry_ms=1000)
    for now in range(0, 5000, 500):
        table.register(reg(A, 0, 1), now)
        assert table.expire(now + 900) == []


def test_unregister():
    table = RouteTable()
    table.register(reg(A, 0, 1), 0)
    table.register(reg(B, 1, 1), 0)
    assert not table.unregister("c1", "g0", A, 1)
    assert table.unregister("c1", "g0", B, 1)
    assert table.unregister("c1", "g0", A, 0)
    assert table.brokers == {} and table.topic_route("Orders") is None


def test_register_body_round_trip_and_crc():
    doc = register_body(TOPICS)
    raw = json.dumps(doc).encode()
    assert parse_topic_config_table(doc, body_crc32=zlib.crc32(raw) & 0x7FFFFFFF, raw=raw) == TOPICS
    with pytest.raises(UserError, match="does not match bodyCrc32"):
        parse_topic_config_table(doc, body_crc32=12345, raw=raw)
    assert parse_topic_config_table({}) == {}


@pytest.mark.parametrize("doc, problem", [
    ([], "not a JSON object"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": []}}, "not an object"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": {"../x": {"readQueueNums": 1, "writeQueueNums": 1}}}},
     "../x"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": {"T": 5}}}, "config is not an object"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": {"T": {"readQueueNums": "8", "writeQueueNums": 8}}}},
     "readQueueNums"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": {"T": {"readQueueNums": 8}}}}, "writeQueueNums"),
    ({"topicConfigSerializeWrapper": {"topicConfigTable": {"T": {"readQueueNums": 8, "writeQueueNums": 1 << 20}}}},
     "more than 65535"),
])
def test_bad_register_bodies_name_the_problem(doc, problem):
    with pytest.raises(UserError, match=problem.replace(".", r"\.")):
        parse_topic_config_table(doc)


@given(st.lists(st.tuples(st.sampled_from([A, B, C]), st.integers(0, 2), st.integers(1, 6)), max_size=40))
def test_the_leader_slot_never_goes_back_to_an_older_term(events):
    table = RouteTable()
    holder_term = None  # term of the registration that put the current id-0 address there
    for now, (addr, broker_id, term) in enumerate(events):
        outcome = table.register(reg(addr, broker_id, term), now)
        addrs = table.brokers["g0"].broker_addrs
        if outcome.accepted and broker_id == 0:
            assert holder_term is None or term >= holder_term or addrs.get(0) is None
            holder_term = term
        if 0 not in addrs:
            holder_term = None
        assert len(set(addrs.values())) == len(addrs)  # one role per address
