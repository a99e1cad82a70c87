"""Pure parts of the drills: RTO split, RPO and duplicates, targets, the table and result folder,
and the room views the fabric writes for broker processes."""
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.layout import load_layout, parse_layout
from mqbench.dr.drill import DrillSettings, choose_target, victims
from mqbench.dr.fabric import alias_address, proxy_plan, to_toml, view_layout, write_views
from mqbench.dr.measure import FailoverTimes, duplicate_deliveries, lost_messages, percentile_ms, rto_split
from mqbench.dr.report import SCHEMA, build_document, render_table, write_document
from mqbench.dr.workload import body_for, seq_of
from mqbench.errors import UserError


def test_rto_split_is_consecutive_phases_that_sum_to_the_rto():
    split = rto_split(FailoverTimes(detected_ms=1200, elected_ms=1260, ready_ms=1300, first_ack_ms=1450))
    assert split == {"detection_ms": 1200, "election_ms": 60, "leader_readiness_ms": 40, "client_recovery_ms": 150,
                     "rto_ms": 1450}
    assert sum(v for k, v in split.items() if k != "rto_ms") == split["rto_ms"]


def test_rto_split_without_failover_and_without_recovery():
    assert rto_split(FailoverTimes(first_ack_ms=9)) == {
        "detection_ms": None, "election_ms": None, "leader_readiness_ms": None, "client_recovery_ms": 9, "rto_ms": 9}
    none = rto_split(FailoverTimes(detected_ms=1000))
    assert none["rto_ms"] is None and none["client_recovery_ms"] is None and none["detection_ms"] == 1000


def test_a_later_event_caps_an_earlier_polled_observation():
    # the poll saw the route at 700 ms, but a write through the new leader was acknowledged at 650
    split = rto_split(FailoverTimes(detected_ms=500, elected_ms=450, ready_ms=700, first_ack_ms=650))
    assert split == {"detection_ms": 450, "election_ms": 0, "leader_readiness_ms": 200, "client_recovery_ms": 0,
                     "rto_ms": 650}


@given(st.lists(st.one_of(st.none(), st.integers(0, 10_000)), min_size=4, max_size=4))
def test_property_phases_are_never_negative_and_add_up_to_the_rto(observed):
    split = rto_split(FailoverTimes(*observed))
    assert all(v >= 0 for v in split.values() if v is not None)
    if split["rto_ms"] is not None:
        assert sum(split[k] or 0 for k in ("detection_ms", "election_ms", "leader_readiness_ms",
                                           "client_recovery_ms")) == split["rto_ms"]


def test_lost_and_duplicates():
    assert lost_messages({1, 2, 3, 5}, {1, 3, 4}) == [2, 5]
    assert duplicate_deliveries([1, 2, 2, 3, 3, 3]) == 3
    assert duplicate_deliveries([]) == 0
    assert percentile_ms([5, 1, 9, 3], 50) == 3 and percentile_ms([5, 1, 9, 3], 100) == 9
    assert percentile_ms([], 50) is None


def test_bodies_carry_their_sequence_number():
    body = body_for("run1", 42, b'{"order": 7}')
    assert seq_of("run1", body) == 42
    assert seq_of("run2", body) is None
    assert seq_of("run1", b"garbage") is None


def test_targets_default_to_the_leader_and_are_checked():
    layout = load_layout("dr-b")
    assert choose_target(layout, "room", "broker-a/n0", None) == "room1"
    assert choose_target(layout, "host", "broker-a/n2", None) == "h3"
    assert choose_target(layout, "room", "broker-a/n0", "room2") == "room2"
    assert victims(layout, "room", "room1") == ["broker-a/n0", "broker-a/n1"]
    assert victims(layout, "partition", "room1") == []
    with pytest.raises(UserError, match="ctl"):
        choose_target(layout, "room", "broker-a/n0", "ctl")  # the name server's room has no brokers
    with pytest.raises(UserError, match="no instance"):
        choose_target(layout, "room", "broker-z/n9", None)


@pytest.mark.parametrize("kwargs, message", [
    ({"scheme": "D", "fault": "room"}, "scheme"), ({"scheme": "A", "fault": "flood"}, "fault"),
    ({"scheme": "A", "fault": "room", "outage_ms": -1}, "outage_ms"), ({"scheme": "A", "fault": "room", "burst": 5000},
                                                                      "burst"),
])
def test_bad_drill_settings(kwargs, message, tmp_path):
    with pytest.raises(UserError, match=message):
        DrillSettings(directory=tmp_path, **kwargs)


ROW = {"scheme": "A", "layout": "dr-a", "fault": "room", "target": "room1", "rpo_promised_zero": True,
       "acked_msgs": 500, "rpo_lost_msgs": 0, "lost_seqs_first": [], "duplicates_msgs": 2, "detection_ms": 1200,
       "election_ms": 60, "leader_readiness_ms": 5, "client_recovery_ms": 30, "rto_ms": 1295,
       "write_latency_ms_p50_no_rooms": 4, "write_latency_ms_p50": 9, "write_latency_ms_p99": 30,
       "write_latency_added_ms_p50": 5, "instances": 3, "cross_room_bytes_per_msg": 2300.5, "notes": []}


def test_table_and_result_folder(tmp_path):
    rows = [ROW, {**ROW, "scheme": "C", "rpo_promised_zero": False, "rpo_lost_msgs": 21, "election_ms": None}]
    text = render_table(rows)
    assert "RTO ms" in text and "1,295" not in text.split("\n")[0]
    assert text.splitlines()[3].split()[3] == "no"
    doc = build_document(rows, seed=3, command_line=["mqbench", "dr"], machine={"cpu_cores": 2}, settings={"rate": 1},
                         git={"commit": "abcdef0123", "dirty": False})
    folder = write_document(doc, tmp_path)
    assert folder.name.endswith("-dr-abcdef0")
    saved = json.loads((folder / "result.json").read_text())
    assert saved["schema"] == SCHEMA and saved["drills"][1]["rpo_lost_msgs"] == 21
    assert (folder / "table.md").read_text().count("\n") == 4
    again = write_document(doc, tmp_path)
    assert again != folder and again.name.endswith("-2")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_views_keep_own_room_and_alias_the_others():
    layout = load_layout("dr-a").with_port_offset(100)
    view = view_layout(layout, "room1")
    assert view["hosts"]["h1"]["address"] == "127.0.7.1"
    assert view["hosts"]["h2"]["address"] == alias_address(layout, "room1", "h2") == "127.200.7.2"
    assert alias_address(layout, "room2", "h1") == "127.201.7.1"
    reparsed = parse_layout(__import__("tomllib").loads(to_toml(view)))
    assert [(i.name, i.port, i.raft_port) for i in reparsed.instances] == \
        [(i.name, i.port, i.raft_port) for i in layout.instances]
    assert reparsed.namesrv_port == layout.namesrv_port


def test_proxy_plan_covers_every_cross_room_peer_port_once(tmp_path):
    layout = load_layout("dr-b")
    plan = proxy_plan(layout)
    # room1 reaches h3's Raft port and the name server; room2 reaches h1, h2 and the name server
    assert sorted((p.view_room, p.host, p.port) for p in plan) == [
        ("room1", "h3", 10912), ("room1", "ns", 9876), ("room2", "h1", 10912), ("room2", "h2", 10912),
        ("room2", "ns", 9876)]
    assert len({p.listen for p in plan}) == len(plan)
    assert {p.link.latency_ms for p in plan if "ctl" not in (p.view_room, p.host_room)} == {2}
    paths = write_views(layout, tmp_path)
    assert sorted(paths) == ["room1", "room2"] and all(Path(p).exists() for p in paths.values())
