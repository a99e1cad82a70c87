import pytest

from mqbench.broker.layout import builtin_layouts, load_layout, parse_layout
from mqbench.errors import UserError


def test_builtins_load():
    assert {"single", "raft3", "3x3"} <= set(builtin_layouts())
    for name in builtin_layouts():
        layout = load_layout(name)
        assert layout.instances


def test_3x3_places_one_replica_of_each_group_per_host_and_one_leader_per_host():
    layout = load_layout("3x3")
    assert len(layout.instances) == 9
    for host in layout.hosts:
        on_host = [i for i in layout.instances if i.host == host]
        assert sorted(i.group for i in on_host) == ["broker-a", "broker-b", "broker-c"]
        assert sum(i.preferred_leader for i in on_host) == 1
        assert len({i.port for i in on_host}) == 3  # distinct ports for instances sharing a host
    addrs = [(i.address, p) for i in layout.instances for p in (i.port, i.raft_port)]
    assert len(addrs) == len(set(addrs))


def test_port_offset_moves_every_port():
    layout = load_layout("raft3")
    moved = layout.with_port_offset(1000)
    assert moved.namesrv_port == layout.namesrv_port + 1000
    assert [i.port - 1000 for i in moved.instances] == [i.port for i in layout.instances]


BASE = {"name": "t", "rooms": {"r": {"hosts": ["a"]}}, "hosts": {"a": {"address": "127.0.0.5"}},
        "groups": {"g": {"replicas": ["a"]}}}


@pytest.mark.parametrize("patch, message", [
    ({"hosts": {"a": {"address": "0.0.0.0"}}}, "not a host's address"),
    ({"hosts": {"a": {"address": "nope"}}}, "not an IP address"),
    ({"groups": {"g": {"replicas": ["a", "a"]}}}, "two replicas on one host"),
    ({"groups": {"g": {"replicas": ["zz"]}}}, "unknown host"),
    ({"groups": {"g": {"replicas": ["a"], "preferred_leader": "b"}}}, "preferred_leader"),
    ({"bogus": 1}, "unknown key"),
    ({"groups": {"../x": {"replicas": ["a"]}}}, "group name"),
    ({"namesrv_port": 10911}, "collides"),
])
def test_bad_layouts_name_the_problem(patch, message):
    with pytest.raises(UserError, match=message):
        parse_layout({**BASE, **patch})


def test_unknown_layout_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="built-in layouts are"):
        load_layout("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(UserError, match="not valid TOML"):
        load_layout(bad)


def test_a_node_address_parses_and_a_local_launch_refuses_it_naming_ray(tmp_path):
    """A host may name a Ray node's IP (placed on that node); this machine only runs loopback hosts."""
    from mqbench.cluster.launcher import check_loopback

    layout = parse_layout({**BASE, "hosts": {"a": {"address": "10.0.0.1"}}})
    assert layout.instances[0].addr == "10.0.0.1:10911"
    with pytest.raises(UserError, match="host a has the node address 10.0.0.1.*--cluster ray://"):
        check_loopback(layout)
    check_loopback(load_layout("raft3"))


def test_a_host_names_its_ray_node_by_label_or_id_and_a_local_launch_refuses_it():
    from mqbench.broker.layout import RayNode
    from mqbench.cluster.launcher import check_loopback

    node_id = "ab" * 28
    layout = parse_layout({**BASE, "rooms": {"r": {"hosts": ["a", "b"]}},
                           "hosts": {"a": {"address": "127.0.0.5", "ray_node": "label:zone=r1,rack=7"},
                                     "b": {"address": "127.0.0.6", "ray_node": f"id:{node_id.upper()}"}}})
    assert layout.ray_nodes == {"a": RayNode(labels=(("zone", "r1"), ("rack", "7"))), "b": RayNode(node_id=node_id)}
    assert load_layout("raft3").ray_nodes == {}
    with pytest.raises(UserError, match="host a names a Ray node.*--cluster ray://"):
        check_loopback(layout)
    for bad in ("zone=r1", "label:zone", "id:xyz", "host:h1", 7):
        with pytest.raises(UserError, match="hosts.a.ray_node"):
            parse_layout({**BASE, "hosts": {"a": {"address": "127.0.0.5", "ray_node": bad}}})


def test_a_placed_layout_loads_from_json(tmp_path):
    import json

    path = tmp_path / "layout.json"
    path.write_text(json.dumps({**BASE, "hosts": {"a": {"address": "10.0.0.7"}}}))
    assert load_layout(path).hosts == {"a": "10.0.0.7"}
    path.write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_layout(path)
