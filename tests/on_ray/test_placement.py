"""Worker placement on Ray nodes (pure, runs without Ray): a topic's producers and consumers share a
node by default, so its e2e latency needs no cross-machine clock."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.ray.placement import plan

ORDERS = {"order_events": 0.78, "order_payment_timeout": 0.22}


def test_orders_on_two_nodes_puts_each_topic_with_its_own_producer_and_consumer():
    placed = plan(ORDERS, producers=2, consumers=2, nodes=3, workers_per_node=1)
    assert placed.policy == "topic"
    assert [(c.node, c.topics, c.producers, c.consumers) for c in placed.cells] == [
        (0, ["order_events"], 1, 1), (1, ["order_payment_timeout"], 1, 1)]
    assert placed.node_of("producer", 0) == placed.node_of("consumer", 0) == 0
    assert placed.node_of("producer", 1) == placed.node_of("consumer", 1) == 1


def test_workers_follow_the_shares_and_fall_back_to_spread_when_a_cell_does_not_fit():
    placed = plan(ORDERS, producers=5, consumers=5, nodes=2, workers_per_node=4)
    assert [(c.producers, c.consumers) for c in placed.cells] == [(4, 4), (1, 1)]
    assert plan(ORDERS, producers=6, consumers=6, nodes=2, workers_per_node=4).policy == "spread"
    one = plan(ORDERS, producers=2, consumers=2, nodes=1, workers_per_node=2)
    assert one.policy == "topic" and one.cells[0].topics == ["order_events", "order_payment_timeout"]
    spread = plan(ORDERS, producers=2, consumers=2, nodes=3, workers_per_node=1, policy="spread")
    assert [spread.node_of("producer", i) for i in range(2)] == [0, 1] and spread.cells == []
    with pytest.raises(UserError, match="choose one of topic, spread"):
        plan(ORDERS, 1, 1, 1, 1, policy="random")


@given(shares=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6), producers=st.integers(1, 12),
       consumers=st.integers(0, 12), nodes=st.integers(1, 5), per_node=st.integers(1, 6))
def test_every_topic_in_one_cell_every_worker_placed_and_no_node_over_its_share(shares, producers, consumers, nodes,
                                                                                 per_node):
    topics = {f"t{i}": s for i, s in enumerate(shares)}
    placed = plan(topics, producers, consumers, nodes, per_node)
    assert sorted(placed.workers) == sorted([("producer", i) for i in range(producers)]
                                            + [("consumer", i) for i in range(consumers)])
    assert all(0 <= node < nodes for node, _ in placed.workers.values())
    if placed.policy == "topic":
        assert sorted(t for c in placed.cells for t in c.topics) == sorted(topics)
        assert len({c.node for c in placed.cells}) == len(placed.cells)
        for position, cell in enumerate(placed.cells):
            assert 1 <= cell.producers <= per_node and cell.consumers <= per_node
            assert cell.consumers >= (1 if consumers else 0)
            assert all(node == cell.node for (node, at) in placed.workers.values() if at == position)


def test_a_cell_s_specs_carry_its_topics_groups_share_and_parts():
    from mqbench.ray.engine import _cell_spec

    placed = plan(ORDERS, producers=3, consumers=2, nodes=2, workers_per_node=2)
    subscriptions = [("order-fulfilment", "order_events", "*"), ("order-timeout-closer", "order_payment_timeout", "*")]
    specs = [_cell_spec({"role": "producer", "worker_index": i, "workers": 3, "subscriptions": subscriptions,
                         "topics": list(ORDERS)}, placed, placed.workers[("producer", i)][1], 3) for i in range(3)]
    assert [(s["topics"], s["worker_index"], s["workers"], s["part"]) for s in specs] == [
        (["order_events"], 0, 2, [0, 3]), (["order_events"], 1, 2, [1, 3]), (["order_payment_timeout"], 0, 1, [2, 3])]
    assert sum(s["topic_share"] for s in (specs[0], specs[2])) == 1.0
    consumer = _cell_spec({"role": "consumer", "worker_index": 1, "subscriptions": subscriptions}, placed,
                          placed.workers[("consumer", 1)][1], 3)
    assert consumer["subscriptions"] == [subscriptions[1]]
