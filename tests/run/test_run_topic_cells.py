"""A producer placed with its topics' consumers (Ray's topic placement) sends only its topics, at
their share of the total rate, from its own part of the profile."""
from __future__ import annotations

from mqbench.run.producer_driver import ProducerDriver

S = 1_000_000_000


def _spec(**extra):
    return {"subscriptions": [], "batch_msgs": {}, "duration_ms": 1_000, "warmup_ms": 0, "window_ms": 1_000,
            "source": "orders", "seed": 3, "rate": 1000.0, "worker_index": 0, "workers": 1, "delay": True,
            "topics": ["order_events", "order_payment_timeout"], **extra}


def _taken(driver, count):
    driver.begin(0)
    return [driver.schedule.take() for _ in range(count)]


def test_a_topic_cell_producer_sends_its_topic_at_its_share():
    cell = ProducerDriver(_spec(topics=["order_payment_timeout"], topic_share=0.22, part=[1, 2]), lambda m: None)
    taken = _taken(cell, 50)
    assert {m.topic for _, m in taken} == {"order_payment_timeout"}
    gaps = {b - a for (a, _), (b, _) in zip(taken, taken[1:])}
    assert min(gaps) >= S // 220 and max(gaps) <= S // 220 + 1            # 220 msgs/s: 22% of 1000
    cell.control({"op": "rate", "rate_per_s": 2000.0, "from_ns": 10 * S})
    assert cell.schedule.total_rate_per_s == 440.0


def test_without_a_cell_every_topic_goes_at_the_whole_rate():
    whole = _taken(ProducerDriver(_spec(), lambda m: None), 200)
    assert {m.topic for _, m in whole} == {"order_events", "order_payment_timeout"}
    assert whole[1][0] - whole[0][0] == S // 1000
