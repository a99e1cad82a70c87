"""``mqbench dr --cluster ray://...`` on local Ray nodes (``ray_dr_scenario.py``, in a private network
namespace, node addresses 127.0.0.2-5):

* scheme A, one node per room: the leader's room killed through its host's node actor, then its
  room partitioned in the room links that run in the node actors; a new leader on another node
  each time, no acknowledged message lost;
* scheme C, four nodes serving room1 and room2: the standby is a second placed cluster, the
  replicator runs on a standby node and the partition cuts it there; and hosts named by Ray node
  label and node id, ``cluster down --keep-stores``.

Nothing is left afterwards (broker processes, stores, named actors). Skipped when Ray is not
installed or ``unshare -n`` cannot run (CI installs no Ray). Minutes on a loaded 2-core machine:
``slow``; ``local_ray`` ends with stopping its own cluster. Run it with
``.venv/bin/pip install -e '.[ray]' && .venv/bin/python -m pytest -q -m slow tests/on_ray/test_ray_dr.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' to run the Ray tests")

from mqbench.ray.local import private_netns_argv, private_netns_available  # noqa: E402

pytestmark = [pytest.mark.realproc, pytest.mark.slow]

SCENARIO = Path(__file__).with_name("ray_dr_scenario.py")


def scenario(tmp_path: Path, name: str) -> dict:
    reason = private_netns_available()
    if reason:
        pytest.skip(reason)
    subprocess.run(private_netns_argv([sys.executable, str(SCENARIO), str(tmp_path), name]), timeout=1500,
                   check=True)
    return json.loads((tmp_path / "scenario.json").read_text())


def drill_row(report: dict, step: str) -> dict:
    done = report["steps"][step]
    assert done["exit"] == 0, done["stderr"]
    row = json.loads(done["stdout"])["drills"][0]
    print("RAY DR", step, json.dumps({k: row[k] for k in (
        "target", "acked_msgs", "rpo_lost_msgs", "detection_ms", "election_ms", "leader_readiness_ms",
        "client_recovery_ms", "rto_ms", "write_latency_ms_p50", "cross_room_bytes_per_msg")}), done["seconds"], "s",
        row["notes"])
    return row


def assert_nothing_left(report: dict) -> None:
    assert report["brokers_after"] == [] and report["stores_after"] == [], report
    assert report["actors_after"] == [], report["actors_after"]


def test_scheme_a_room_loss_and_partition_on_ray_nodes(tmp_path):
    report = scenario(tmp_path, "rooms")
    for step in ("room", "partition"):
        row = drill_row(report, step)
        # each host on the node of its room, listening on that node's address
        assert {h: n.rsplit("/", 1)[1] for h, n in row["ray_nodes"].items()} == {
            "h1": "127.0.0.2", "h2": "127.0.0.3", "h3": "127.0.0.4", "ns": "127.0.0.5"}, row["ray_nodes"]
        assert row["fault"] == step and row["target"] in ("room1", "room2", "room3")
        assert row["rpo_promised_zero"] and row["acked_msgs"] > 0 and row["rpo_lost_msgs"] == 0, row
        # the proxies on the nodes carry the Raft traffic between rooms: they count it; they add no delay
        assert row["cross_room_bytes_per_msg"] and row["cross_room_bytes_per_msg"] > 0, row
        assert row["write_latency_added_ms_p50"] is None and row["write_latency_ms_p50"] is not None
    room = drill_row(report, "room")
    assert any(n.startswith("killed broker-a/") for n in room["notes"]), room["notes"]
    assert room["rto_ms"] is not None, room
    partition = drill_row(report, "partition")
    # the leader's room was cut in the nodes' links (its brokers kept running) and a new leader took over
    assert any("cut off from the other rooms in the nodes' room links" in n for n in partition["notes"]), partition
    assert not any(n.startswith("killed") for n in partition["notes"])
    assert partition["election_ms"] is not None and partition["rto_ms"] is not None, partition
    assert_nothing_left(report)


def test_scheme_c_partition_with_the_replicator_on_a_standby_node_and_hosts_named_by_node(tmp_path):
    report = scenario(tmp_path, "standby")
    row = drill_row(report, "standby")
    nodes = row["ray_nodes"]
    # two placed clusters, each host of each on a distinct node
    assert sorted(nodes) == ["h1", "h2", "h3", "ns", "standby:h1", "standby:h2", "standby:h3", "standby:ns"], nodes
    assert len({nodes[h] for h in ("h1", "h2", "h3", "ns")}) == 4
    assert len({nodes[f"standby:{h}"] for h in ("h1", "h2", "h3", "ns")}) == 4
    assert any("the replicator runs on standby host ns's node" in n for n in row["notes"]), row["notes"]
    # the cut stalled the replicator on its node: a loss window was measured, and writes to room1 went on
    assert any("acknowledged messages were not in room2 when the partition healed" in n for n in row["notes"])
    assert row["acked_msgs"] > 0 and row["rpo_lost_msgs"] == 0, row
    assert row["cross_room_bytes_per_msg"] and row["cross_room_bytes_per_msg"] > 0, row
    # hosts named by label (n2: 127.0.0.4) and by node id (127.0.0.3's), each listening on its node
    assert report["steps"]["named up"]["exit"] == 0, report["steps"]["named up"]["stderr"]
    placed = report["named_placed"]["hosts"]
    assert placed["h1"]["node_ip"] == "127.0.0.4" and placed["h2"]["node_ip"] == "127.0.0.3", placed
    assert placed["h3"]["node_ip"] not in ("127.0.0.3", "127.0.0.4"), placed
    # down --keep-stores: the processes and actors are gone, the three stores stay on the nodes' disks
    assert report["steps"]["named down"]["exit"] == 0, report["steps"]["named down"]["stderr"]
    assert len(report["kept_stores"]) == 3, report["kept_stores"]
    assert_nothing_left(report)
