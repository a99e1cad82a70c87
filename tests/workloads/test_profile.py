"""Profiles: the built-ins load; every kind of mistake is a UserError naming the file and the key."""
import copy
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.workloads.profile import BUILTIN_DIR, builtin_profiles, load_profile, parse_profile


def builtin_document(name="orders"):
    return tomllib.loads((BUILTIN_DIR / f"{name}.toml").read_text())


def test_builtins_load_and_shares_are_normalised():
    assert builtin_profiles() == ["iot", "notifications", "orders"]
    for name in builtin_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.description
        assert sum(t.share for t in profile.topics) == pytest.approx(1.0)
        assert profile.consumers and profile.producers.count >= 1
    orders = load_profile("orders")
    timeout = orders.topic("order_payment_timeout")
    assert timeout.delay.levels == (16,) and timeout.delay.share == 1.0
    assert orders.delayed_share == pytest.approx(0.22)
    assert load_profile("iot").topic("iot_telemetry").batch


def test_a_profile_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((BUILTIN_DIR / "iot.toml").read_text().replace('name = "iot"', 'name = "mine"'))
    assert load_profile(str(path)).name == "mine"


@pytest.mark.parametrize("name,message", [
    ("nosuch", "no profile 'nosuch': built-in profiles are iot, notifications, orders"),
    ("../orders", "no profile"),
    ("missing.toml", "does not exist"),
])
def test_unknown_profiles(name, message):
    with pytest.raises(UserError, match=message):
        load_profile(name)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(UserError, match=r"profile .*bad.toml is not valid TOML"):
        load_profile(path)


def _mutate(doc, path, value):
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
CASES = [
    (("rate", "base_msgs_per_s"), _DELETE, "rate.base_msgs_per_s: missing"),
    (("rate", "base_msgs_per_s"), -5, "rate.base_msgs_per_s: must be a number"),
    (("rate", "shape"), "sine", "rate.shape: must be one of constant, diurnal, step, burst"),
    (("rate", "trough_ratio"), 1.5, "rate.trough_ratio"),
    (("rate", "trough_at_s"), 73800 + 86400, "rate.trough_at_s: must differ from peak_at_s"),
    (("rate", "burst_length_ms"), 10_000_000, "rate.burst_length_ms: is longer than burst_every_ms"),
    (("rate", "wobble"), 1, "rate: unknown key(s) wobble"),
    (("rate", "steps"), [[0, 1.0]], "rate.steps: only applies to shape = \"step\""),
    (("rate", "shape"), "burst", "rate.period_s: only applies to shape = \"diurnal\""),
    (("topics", 0, "name"), "../x", "topics[0].name: '../x' is not a RocketMQ topic name"),
    (("topics", 1, "name"), "order_events", "topics: two topics share a name"),
    (("topics", 0, "queues"), 0, "topics.order_events.queues: must be an integer in 1..65536"),
    (("topics", 0, "body"), {"model": "cats"}, "topics.order_events.body: must be { model = NAME }"),
    (("topics", 0, "body"), {"model": "orders", "skus": 3}, "topics.order_events.body.skus: unknown option"),
    (("topics", 0, "key"), {"distribution": "zipf"}, "topics.order_events.key.keys: missing"),
    (("topics", 0, "key"), {"distribution": "body_field"}, "topics.order_events.key.field"),
    (("topics", 0, "tags"), {"values": ["A||B"]}, "topics.order_events: give tags or tags_field, not both"),
    (("topics", 0, "tags_field"), "colour", "topics.order_events.tags_field: 'colour' is not a field of 'orders'"),
    (("topics", 0, "properties_from_body"), {"c": "shipper.id"}, "topics.order_events.properties_from_body.c"),
    (("topics", 0, "key"), {"distribution": "body_field", "field": "deviceId"}, "not a field of 'orders' bodies"),
    (("topics", 0, "properties"), {"KEYS": "x"}, "property 'KEYS' is reserved by RocketMQ"),
    (("topics", 0, "properties"), {"a": 1}, "topics.order_events.properties: must be a table of strings"),
    (("topics", 1, "delay", "levels"), [19], "topics.order_payment_timeout.delay.levels: must list RocketMQ delay"),
    (("topics", 1, "delay", "share"), 2, "topics.order_payment_timeout.delay.share: must be between 0 and 1"),
    (("topics", 1, "delay", "ms"), {"distribution": "constant", "value": 5}, "exactly one of levels"),
    (("consumers", 0, "topics"), ["nope"], "consumers.order-fulfilment.topics: 'nope' is not a topic"),
    (("consumers", 0, "processing_ms"), {"distribution": "lognormal", "median": 5},
     "consumers.order-fulfilment.processing_ms: lognormal distribution needs p99"),
    (("consumers", 1, "group"), "order-fulfilment", "two consumer entries share a group"),
    (("consumers", 0, "subscription"), "PAID || ", "consumers.order-fulfilment.subscription: must be a tag"),
    (("producers", "send"), "fire", "producers.send: must be one of sync, async, oneway"),
    (("topics",), [], "topics: must be a non-empty array"),
    (("colour",), "red", "(top level): unknown key(s) colour"),
]


@pytest.mark.parametrize("path,value,message", CASES, ids=[".".join(map(str, c[0])) + "=" + repr(c[1])[:20]
                                                            for c in CASES])
def test_validation_names_file_and_key(path, value, message):
    doc = _mutate(builtin_document(), path, value)
    with pytest.raises(UserError) as info:
        parse_profile(doc, source="x/orders.toml")
    assert str(info.value).startswith("profile x/orders.toml: ")
    assert message in str(info.value)


def test_delay_over_three_days_is_refused():
    doc = builtin_document()
    doc["topics"][1]["delay"] = {"share": 0.5, "ms": {"distribution": "uniform", "min": 1, "max": 300_000_000}}
    with pytest.raises(UserError, match="timerMaxDelaySec"):
        parse_profile(doc, "p.toml")


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


_junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**13), st.floats(allow_nan=True),
                  st.text(max_size=8), st.lists(st.one_of(st.integers(-2, 20), st.text(max_size=3)), max_size=3),
                  st.dictionaries(st.text(max_size=6), st.integers(-2, 5), max_size=2))


@given(st.sampled_from(builtin_profiles()), st.data(), _junk)
def test_any_damaged_profile_loads_or_is_a_user_error(name, data, junk):
    doc = builtin_document(name)
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    _mutate(doc, path, junk)
    try:
        parse_profile(copy.deepcopy(doc), "fuzz.toml")
    except UserError as exc:
        assert str(exc).startswith("profile fuzz.toml: ")


def test_a_burst_shape_needs_its_factor():
    doc = builtin_document("iot")
    del doc["rate"]["burst_factor"]
    with pytest.raises(UserError, match="rate.burst_factor: a burst shape needs burst_factor"):
        parse_profile(doc, "iot.toml")


@given(st.sampled_from(builtin_profiles()), st.data(), _junk)
def test_every_profile_that_loads_generates_valid_messages(name, data, junk):
    from mqbench.workloads.generator import generate_messages

    doc = builtin_document(name)
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
    _mutate(doc, path, junk)
    try:
        profile = parse_profile(doc, "fuzz.toml")
    except UserError:
        return
    last_us = 0
    for message in generate_messages(profile, 1, count=20):
        assert message.send_offset_us >= last_us and message.topic in {t.name for t in profile.topics}
        assert 0 <= message.delay_level <= 18 and 0 <= message.delay_ms <= 259_200_000
        last_us = message.send_offset_us
