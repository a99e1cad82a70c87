"""The generator: deterministic, lazy, in send order, and faithful to the profile's shares and delays."""
import dataclasses
import itertools
import json
import tomllib

import pytest

from mqbench.errors import UserError

from mqbench.workloads.generator import generate_messages
from mqbench.workloads.profile import BUILTIN_DIR, DELAY_LEVELS_MS, load_profile, parse_profile


def test_same_seed_same_messages_other_seed_other_messages():
    profile = load_profile("notifications")
    first = list(generate_messages(profile, 11, count=400))
    assert first == list(generate_messages(profile, 11, count=400))
    assert first != list(generate_messages(profile, 12, count=400))


def test_lazy_and_endless_without_limits():
    profile = load_profile("iot")
    endless = generate_messages(profile, 1)
    assert len(list(itertools.islice(endless, 10))) == 10
    assert list(generate_messages(profile, 1, count=0)) == []


def test_offsets_never_go_back_and_duration_stops_the_stream():
    profile = load_profile("orders")
    messages = list(generate_messages(profile, 3, duration_ms=500))
    offsets = [m.send_offset_us for m in messages]
    assert offsets == sorted(offsets) and offsets[-1] < 500_000
    # the number of messages follows the rate at the start of the shape (midnight)
    expected = profile.rate.rate_at(0) * 0.5
    assert 0.8 * expected < len(messages) < 1.2 * expected
    assert len(list(generate_messages(profile, 3, count=100, duration_ms=10**9))) == 100


def test_topic_shares_delays_keys_and_tags_follow_the_profile():
    profile = load_profile("orders")
    messages = list(generate_messages(profile, 5, count=6000))
    timeouts = [m for m in messages if m.topic == "order_payment_timeout"]
    events = [m for m in messages if m.topic == "order_events"]
    assert 0.19 < len(timeouts) / len(messages) < 0.25
    assert all(m.delay_level == 16 and m.delay_ms == DELAY_LEVELS_MS[15] for m in timeouts)
    assert all(m.delay_ms == 0 and m.delay_level == 0 for m in events)
    for m in events[:200]:
        body = json.loads(m.body)
        assert m.key == body["orderId"] and m.tags == body["status"]
        assert m.properties["channel"] == body["source"] and m.properties["bizLine"] == "mall"
        assert m.properties["payMethod"] == body["payment"]["method"]
    assert {m.tags for m in timeouts} == {"PAY_TIMEOUT"}


def test_arbitrary_delays_and_zipf_keys():
    profile = load_profile("notifications")
    messages = list(generate_messages(profile, 2, count=8000))
    marketing = [m for m in messages if m.topic == "notify_marketing"]
    delayed = [m for m in marketing if m.delay_ms]
    assert 0.30 < len(delayed) / len(marketing) < 0.40
    assert all(60_000 <= m.delay_ms <= 7_200_000 and m.delay_level == 0 for m in delayed)
    assert all(m.key == "" for m in marketing)
    transactional = [m for m in messages if m.topic == "notify_transactional"]
    assert all(m.key.startswith("user-") for m in transactional)


def test_changing_the_delay_share_leaves_bodies_and_times_alone():
    doc = tomllib.loads((BUILTIN_DIR / "notifications.toml").read_text())
    base = parse_profile(doc, "a.toml")
    doc["topics"][1]["delay"]["share"] = 0.9
    changed = parse_profile(doc, "b.toml")
    a = list(generate_messages(base, 7, count=500))
    b = list(generate_messages(changed, 7, count=500))
    assert [(m.send_offset_us, m.topic, m.body) for m in a] == [(m.send_offset_us, m.topic, m.body) for m in b]
    assert sum(1 for m in b if m.delay_ms) > sum(1 for m in a if m.delay_ms)


@pytest.mark.parametrize("name", ["orders", "notifications", "iot"])
def test_every_builtin_generates_valid_messages(name):
    for m in generate_messages(load_profile(name), 1, count=300):
        assert m.topic and m.body and m.send_offset_us >= 0
        assert 0 <= m.delay_level <= 18 and m.delay_ms >= 0
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.properties.items())


def test_a_part_is_its_own_reproducible_stream_with_the_profile_s_shares():
    # N producer workers at a rate each generate their own part (never all N parts, skipping the
    # others': that made every worker's cost grow with N); part (0, 1) is the whole workload
    profile = load_profile("orders")
    whole = list(generate_messages(profile, 5, count=100))
    assert list(generate_messages(profile, 5, count=100, part=(0, 1))) == whole
    parts = [list(generate_messages(profile, 5, count=1000, part=(i, 3))) for i in range(3)]
    assert parts[1][:100] == list(generate_messages(profile, 5, count=100, part=(1, 3)))
    assert len({m.body for part in parts for m in part}) == 3000            # no two parts repeat a body
    for part in parts:
        share = sum(m.topic == "order_payment_timeout" for m in part) / len(part)
        assert 0.16 < share < 0.28
    with pytest.raises(UserError, match="part 3 of 3"):
        next(generate_messages(profile, 5, part=(3, 3)))


@pytest.mark.parametrize("part", [(0, 1), (1, 3)])
def test_untimed_messages_are_the_timed_ones_without_their_times(part):
    """``timed=False`` (a replayer pacing at its own rate) skips the arrival draws only: the same
    messages in the same order, every offset 0; a duration needs the times."""
    profile = load_profile("orders")
    timed = list(itertools.islice(generate_messages(profile, 5, part=part), 300))
    untimed = list(itertools.islice(generate_messages(profile, 5, part=part, timed=False), 300))
    assert untimed == [dataclasses.replace(m, send_offset_us=0) for m in timed]
    with pytest.raises(UserError):
        next(generate_messages(profile, 5, duration_ms=1000, timed=False))
