"""rewrite_for_delay (the put side), delivered_message/rolled_message (the delivery side), DelayConfig."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_TX_COMMIT, SYSFLAG_TX_PREPARED
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.timer import DelayConfig, rewrite_for_delay
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.timer.rewrite import (delivered_message, level_due_ms, rolled_message,
                                          timer_due_ms)
from mqbench.errors import CorruptDataError, UserError

NOW = 1_700_000_000_000


def msg(props, topic="Orders", queue_id=3, **kw):
    return Message(topic, b"body", dict(props), queue_id=queue_id, **kw)


@pytest.mark.parametrize("level,queue", [(1, 0), (3, 2), (18, 17), (19, 17), (99, 17)])
def test_delay_level_goes_to_the_schedule_topic(level, queue):
    out = rewrite_for_delay(msg({"DELAY": str(level), "TAGS": "a"}), now_ms=NOW)
    assert (out.topic, out.queue_id) == (SCHEDULE_TOPIC, queue)
    assert out.properties == {"DELAY": str(level), "TAGS": "a", "REAL_TOPIC": "Orders", "REAL_QID": "3"}


def test_level_due_is_store_time_plus_level_delay():
    stored = rewrite_for_delay(msg({"DELAY": "17"}), now_ms=NOW)
    stored.store_timestamp_ms = NOW + 5
    assert level_due_ms(stored) == NOW + 5 + 3_600_000
    cfg = DelayConfig(delay_levels="2s 1d")
    stored = rewrite_for_delay(msg({"DELAY": "7"}), now_ms=NOW, config=cfg)
    assert stored.queue_id == 1 and level_due_ms(stored, cfg) == 86_400_000


@pytest.mark.parametrize("props", [{}, {"DELAY": "0"}, {"DELAY": "-2"}, {"TIMER_DELIVER_MS": str(NOW)},
                                   {"TIMER_DELIVER_MS": str(NOW - 5)}, {"TIMER_DELAY_MS": "0"}])
def test_not_delayed_is_returned_unchanged(props):
    m = msg(props)
    assert rewrite_for_delay(m, now_ms=NOW) is m


def test_transaction_half_messages_are_not_delayed():
    m = msg({"DELAY": "3"}, sysflag=SYSFLAG_TX_PREPARED)
    assert rewrite_for_delay(m, now_ms=NOW) is m
    assert rewrite_for_delay(msg({"DELAY": "3"}, sysflag=SYSFLAG_TX_COMMIT), now_ms=NOW).topic == SCHEDULE_TOPIC


@pytest.mark.parametrize("props,deliver", [
    ({"TIMER_DELAY_SEC": "5"}, NOW + 5000),
    ({"TIMER_DELAY_MS": "1234"}, NOW + 1234),
    ({"TIMER_DELIVER_MS": str(NOW + 77)}, NOW + 77),
    # RocketMQ's order: seconds, then milliseconds, then the absolute time
    ({"TIMER_DELIVER_MS": str(NOW + 77), "TIMER_DELAY_MS": "9", "TIMER_DELAY_SEC": "2"}, NOW + 2000),
    ({"TIMER_DELIVER_MS": str(NOW + 77), "TIMER_DELAY_MS": "9"}, NOW + 9),
])
def test_timer_goes_to_the_wheel_topic_with_the_exact_time(props, deliver):
    out = rewrite_for_delay(msg(props), now_ms=NOW)
    assert (out.topic, out.queue_id) == (TIMER_TOPIC, 0)
    assert out.properties["TIMER_OUT_MS"] == str(deliver)      # not rounded down: never early
    assert (out.properties["REAL_TOPIC"], out.properties["REAL_QID"]) == ("Orders", "3")
    assert timer_due_ms(out) == deliver


def test_delay_level_wins_over_timer_properties():
    out = rewrite_for_delay(msg({"DELAY": "1", "TIMER_DELAY_MS": "5000"}), now_ms=NOW)
    assert out.topic == SCHEDULE_TOPIC


def test_maximum_delay_is_enforced_and_configurable():
    with pytest.raises(UserError, match="exceeds the maximum of 259200000 ms"):
        rewrite_for_delay(msg({"TIMER_DELAY_MS": str(3 * 86_400_000 + 1)}), now_ms=NOW)
    assert rewrite_for_delay(msg({"TIMER_DELAY_MS": str(3 * 86_400_000)}), now_ms=NOW).topic == TIMER_TOPIC
    cfg = DelayConfig(timer_max_delay_ms=30 * 86_400_000)
    assert rewrite_for_delay(msg({"TIMER_DELAY_SEC": str(20 * 86_400)}), now_ms=NOW, config=cfg).topic == TIMER_TOPIC


def test_timer_disabled_passes_timer_messages_through():
    m = msg({"TIMER_DELAY_SEC": "5"})
    assert rewrite_for_delay(m, now_ms=NOW, config=DelayConfig(timer_enabled=False)) is m


@pytest.mark.parametrize("props,named", [({"DELAY": "x"}, "DELAY"), ({"TIMER_DELAY_MS": "-5"}, "TIMER_DELAY_MS"),
                                         ({"TIMER_DELAY_SEC": "1.5"}, "TIMER_DELAY_SEC"),
                                         ({"TIMER_DELIVER_MS": "9" * 30}, "TIMER_DELIVER_MS")])
def test_bad_values_name_the_property(props, named):
    with pytest.raises(UserError, match=named):
        rewrite_for_delay(msg(props), now_ms=NOW)


@pytest.mark.parametrize("topic", [SCHEDULE_TOPIC, TIMER_TOPIC])
def test_sending_to_a_delay_topic_is_refused(topic):
    with pytest.raises(UserError, match="reserved for delayed messages"):
        rewrite_for_delay(msg({}, topic=topic), now_ms=NOW)


def test_a_client_cannot_forge_the_delivery_source():
    out = rewrite_for_delay(msg({PROPERTY_MQBENCH_DELAY_SOURCE: "L1:0", "KEYS": "k"}), now_ms=NOW)
    assert out.properties == {"KEYS": "k"}
    out = rewrite_for_delay(msg({PROPERTY_MQBENCH_DELAY_SOURCE: "T:3", "DELAY": "2"}), now_ms=NOW)
    assert PROPERTY_MQBENCH_DELAY_SOURCE not in out.properties


def test_delivered_message_restores_the_real_message():
    stored = rewrite_for_delay(msg({"TIMER_DELAY_MS": "50", "TAGS": "t", "UNIQ_KEY": "u1"}, flag=5), now_ms=NOW)
    stored.store_timestamp_ms = NOW + 1
    out = delivered_message(stored, source="T:9", now_ms=NOW + 60)
    assert (out.topic, out.queue_id, out.flag, out.body) == ("Orders", 3, 5, b"body")
    assert out.properties == {"TIMER_DELAY_MS": "50", "TAGS": "t", "UNIQ_KEY": "u1", "TIMER_ENQUEUE_MS": str(NOW + 1),
                              "TIMER_DEQUEUE_MS": str(NOW + 60), PROPERTY_MQBENCH_DELAY_SOURCE: "T:9"}
    rolled = rolled_message(rolled_message(stored, source="T:9"), source="T:12")
    assert (rolled.topic, rolled.properties["TIMER_ROLL_TIMES"], rolled.properties[PROPERTY_MQBENCH_DELAY_SOURCE]) == (TIMER_TOPIC, "2", "T:12")
    assert rolled.properties["TIMER_OUT_MS"] == stored.properties["TIMER_OUT_MS"]


@pytest.mark.parametrize("props", [{}, {"REAL_TOPIC": "../x", "REAL_QID": "0"}, {"REAL_TOPIC": "A", "REAL_QID": "q"},
                                   {"REAL_TOPIC": "A", "REAL_QID": "-1"}, {"REAL_TOPIC": TIMER_TOPIC, "REAL_QID": "0"}])
def test_delivery_of_a_record_without_a_valid_target_is_a_data_error(props):
    with pytest.raises(CorruptDataError):
        delivered_message(msg(props, topic=SCHEDULE_TOPIC), source="L1:0", now_ms=NOW)


def test_timer_record_with_a_bad_time_is_a_data_error():
    with pytest.raises(CorruptDataError, match="TIMER_OUT_MS"):
        timer_due_ms(msg({"TIMER_OUT_MS": "soon"}, topic=TIMER_TOPIC))


@pytest.mark.parametrize("kw,named", [({"delay_levels": "1s 5x"}, "5x"), ({"timer_max_delay_ms": 0}, "timer_max_delay_ms"),
                                      ({"timer_precision_ms": 10, "timer_roll_window_ms": 86_400_000}, "wheel"),
                                      ({"deliver_concurrency": 0}, "deliver_concurrency"),
                                      ({"timer_roll_window_ms": 1 << 31, "timer_precision_ms": 10_000}, "32-bit")])
def test_bad_config_is_a_user_error(kw, named):
    with pytest.raises(UserError, match=named):
        DelayConfig(**kw)


PROP_NAMES = st.sampled_from(["DELAY", "TIMER_DELAY_SEC", "TIMER_DELAY_MS", "TIMER_DELIVER_MS", "TAGS"])
PROP_VALUES = st.one_of(st.integers(-10**20, 10**20).map(str), st.text(max_size=12))


@given(st.dictionaries(PROP_NAMES, PROP_VALUES, max_size=4), st.integers(0, 2**45))
def test_fuzz_rewrite_only_user_errors_and_never_early(props, now):
    m = msg(props)
    try:
        out = rewrite_for_delay(m, now_ms=now)
    except UserError:
        return
    if out.topic == TIMER_TOPIC:
        assert now < int(out.properties["TIMER_OUT_MS"]) <= now + DelayConfig().timer_max_delay_ms
    elif out.topic == SCHEDULE_TOPIC:
        assert 0 <= out.queue_id < 18
    else:
        assert out is m
