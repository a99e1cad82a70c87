"""The DR scheme layouts and the layout file's [[links]] and [dr] tables."""
import copy

import pytest

from mqbench.broker.layout import load_layout, parse_layout
from mqbench.dr.netem import NO_DELAY, LinkSettings
from mqbench.errors import UserError


def test_scheme_a_puts_one_replica_of_each_group_in_each_of_three_rooms():
    layout = load_layout("dr-a")
    assert layout.dr.scheme == "A"
    for group in layout.groups:
        rooms = [i.room for i in layout.group_instances(group)]
        assert len(rooms) == 3 and len(set(rooms)) == 3
    assert layout.link_between("room1", "room3") == layout.link_between("room3", "room1")
    assert layout.link_between("room1", "room3").latency_ms == 3
    assert layout.link_between("room1", "room1") is NO_DELAY
    assert layout.dr.promises_rpo_zero("room", "room1") and layout.dr.promises_rpo_zero("partition", "room3")


def test_scheme_b_majority_room_holds_two_replicas_and_only_the_minority_room_loss_is_promised():
    layout = load_layout("dr-b")
    for group in layout.groups:
        rooms = [i.room for i in layout.group_instances(group)]
        assert rooms.count("room1") == 2 and rooms.count("room2") == 1
    assert layout.dr.promises_rpo_zero("room", "room2")
    assert not layout.dr.promises_rpo_zero("room", "room1")
    assert layout.dr.promises_rpo_zero("host", "h1")


def test_scheme_c_is_two_independent_clusters_on_distinct_addresses():
    active, standby = load_layout("dr-c"), load_layout(load_layout("dr-c").dr.standby)
    assert active.dr.scheme == standby.dr.scheme == "C"
    assert active.cluster != standby.cluster
    assert not set(active.hosts.values()) & set(standby.hosts.values())
    assert not set(active.groups) & set(standby.groups)
    assert active.link_between("room1", "room2").latency_ms == 2
    assert not active.dr.promises_rpo_zero("room", "room1")


BASE = {"name": "t", "rooms": {"r1": {"hosts": ["a"]}, "r2": {"hosts": ["b"]}},
        "hosts": {"a": {"address": "127.0.0.5"}, "b": {"address": "127.0.0.6"}},
        "groups": {"g": {"replicas": ["a", "b"]}}}


def test_links_parse_with_defaults():
    doc = {**BASE, "links": [{"rooms": ["r1", "r2"], "latency_ms": 4, "loss": 0.01}]}
    layout = parse_layout(doc)
    assert layout.link_between("r2", "r1") == LinkSettings(latency_ms=4, loss=0.01)


@pytest.mark.parametrize("extra, message", [
    ({"links": {"rooms": ["r1", "r2"]}}, "array of tables"),
    ({"links": [{"rooms": ["r1"]}]}, "two different rooms"),
    ({"links": [{"rooms": ["r1", "r1"]}]}, "two different rooms"),
    ({"links": [{"rooms": ["x", "y"]}]}, "names no room"),
    ({"links": [{"rooms": ["r1", "../x"]}]}, "room name"),
    ({"links": [{"rooms": ["r1", "r2"]}, {"rooms": ["r2", "r1"]}]}, "linked twice"),
    ({"links": [{"rooms": ["r1", "r2"], "latency_ms": -3}]}, r"links\[0\].*latency_ms"),
    ({"links": [{"rooms": ["r1", "r2"], "speed": 3}]}, "unknown key"),
    ({"dr": {"scheme": "D"}}, "dr.scheme"),
    ({"dr": {"scheme": "A", "survives": ["flood"]}}, "fault must be"),
    ({"dr": {"scheme": "A", "survives": ["room:r9"]}}, "not a room or host"),
    ({"dr": {"scheme": "C"}}, "dr.standby"),
    ({"dr": {"scheme": "A", "standby": "x"}}, "only for scheme C"),
    ({"dr": {"scheme": "A", "extra": 1}}, "dr must be a table"),
])
def test_bad_links_and_dr_tables_name_the_problem(extra, message):
    doc = {**copy.deepcopy(BASE), **extra}
    with pytest.raises(UserError, match=message):
        parse_layout(doc)
