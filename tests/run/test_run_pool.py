"""A producer worker's pool (``mqbench.run.pool``) and its prebuilt property texts: the run sends
the workload's messages (in order, then again), with the same property bytes as the general path."""
from __future__ import annotations

import itertools

import pytest

from mqbench.broker.formats.record import encode_properties
from mqbench.client.pipeline import PropertyTemplate
from mqbench.errors import UserError
from mqbench.run.pool import POOL_MSGS_MAX, POOL_MSGS_MIN, pool_size, pooled
from mqbench.run.producer_driver import ProducerDriver


def _spec(**overrides):
    base = {"namesrv": "127.0.0.1:1", "run_id": "r1", "duration_ms": 2_000, "warmup_ms": 1_000, "window_ms": 1000,
            "progress_ms": 100, "subscriptions": [("g", "order_events", "*")], "source": "orders", "seed": 3,
            "rate": 100.0, "codec": "none", "compress_over_bytes": 4096,
            "batch_msgs": {"order_events": 1, "order_payment_timeout": 1}, "delay": True, "in_flight_max": 1000,
            "send_timeout_ms": 3000, "group": "PID_t", "topics": ["order_events", "order_payment_timeout"],
            "worker_index": 0, "workers": 1}
    base.update(overrides)
    return base


def test_pool_size_follows_the_rate_within_bounds():
    assert pool_size(100, 1_000, 2_000) == 316          # 300 messages, 5 % margin, + 1
    assert pool_size(1, 0, 1_000) == POOL_MSGS_MIN
    assert pool_size(1e6, 5_000, 30_000) == POOL_MSGS_MAX
    assert pool_size("max", 5_000, 30_000) == POOL_MSGS_MAX
    assert pool_size(None, 5_000, 30_000) == POOL_MSGS_MAX


def test_a_pool_is_the_workload_in_order_then_again():
    got = list(itertools.islice(pooled(iter(range(1000)), 50), 120))
    assert got == [*range(50), *range(50), *range(20)]


def test_a_workload_shorter_than_the_pool_ends_it():
    assert list(pooled(iter(range(3)), 10)) == [0, 1, 2]


def test_the_driver_sends_its_pool_at_a_rate_and_strips_delays_there():
    driver = ProducerDriver(_spec(delay=False), lambda _doc: None)
    _workload, messages, _own = driver.prepare()
    first = list(itertools.islice(messages, 400))
    assert driver._pooled
    assert not any(m.delay_ms or m.delay_level for m in first)
    assert first[316:] == first[:84]                      # the pool of 316 again, the same objects
    assert all(a is b for a, b in zip(first[316:], first))


@pytest.mark.parametrize("source", ["orders", "iot", "notifications"])
def test_prebuilt_property_text_is_what_the_general_path_sends(source):
    """Every templated message's text equals ``encode_properties(wire_properties)`` of the
    ``OutgoingMessage`` the general path builds for the same send; arbitrary delays (their
    TIMER_DELIVER_MS is read off the wall clock) are not templated."""
    driver = ProducerDriver(_spec(source=source, rate=20.0), lambda _doc: None, wall_ms=lambda: 1_700_000_000_000)
    _workload, messages, _own = driver.prepare()
    seen = {"plain": 0, "level": 0, "timer": 0}
    for index, message in enumerate(itertools.islice(messages, 100)):
        intended, sent = 10_000_000_000 + index, 10_000_500_000 + index
        uniq_key = f"{index:032X}"
        template = driver._property_template(message)
        assert driver._property_template(message) is template          # built once per pooled message
        if message.delay_ms and not message.delay_level:
            assert template is None
            seen["timer"] += 1
            continue
        seen["level" if message.delay_level else "plain"] += 1
        values = (str(intended), uniq_key) if len(template.slots) == 2 else \
            (str(intended), str(sent + message.delay_ms * 1_000_000), uniq_key)
        general = driver._outgoing(message, intended, sent)
        assert template.fill(values) == encode_properties(general.wire_properties(uniq_key)).decode("utf-8")
    assert seen["plain"] > 0
    if source == "orders":
        assert seen["level"] > 0


def test_a_property_template_fills_its_slots_in_order():
    template = PropertyTemplate("a\x01\x00x\x00\x02b\x01\x00y\x00\x02", ("\x00y\x00", "\x00x\x00", "\x00z\x00"))
    assert template.slots == ("\x00x\x00", "\x00y\x00")
    assert template.fill(("1", "2")) == "a\x011\x02b\x012\x02"
    with pytest.raises(UserError):
        template.fill(("1",))
    with pytest.raises(UserError):
        PropertyTemplate("\x00x\x00\x00x\x00", ("\x00x\x00",))
