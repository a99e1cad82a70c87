"""``mqbench dr --cluster ray://...``: scheme A's room drill with its hosts on four Ray nodes
(node addresses 127.0.0.2-5 in a private network namespace, one node per room,
``ray_dr_scenario.py``): the leader's room is killed through its host's node actor, a new leader
is elected on another node, no acknowledged message is lost, and nothing is left afterwards.

Skipped when Ray is not installed or ``unshare -n`` cannot run (CI installs no Ray). Minutes on a
loaded 2-core machine: ``slow``; ``local_ray`` ends with ``ray stop --force``. Run it with
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


def test_scheme_a_room_drill_on_ray_nodes(tmp_path):
    reason = private_netns_available()
    if reason:
        pytest.skip(reason)
    subprocess.run(private_netns_argv([sys.executable, str(SCENARIO), str(tmp_path)]), timeout=900, check=True)
    report = json.loads((tmp_path / "scenario.json").read_text())
    drill = report["drill"]
    assert drill["exit"] == 0, drill["stderr"]
    row = json.loads(drill["stdout"])["drills"][0]
    # each host on the node of its room, listening on that node's address
    assert {h: n.rsplit("/", 1)[1] for h, n in row["ray_nodes"].items()} == {
        "h1": "127.0.0.2", "h2": "127.0.0.3", "h3": "127.0.0.4", "ns": "127.0.0.5"}, row["ray_nodes"]
    # the leader (preferred on h1) and its room went down through the node actor and came back
    assert row["fault"] == "room" and row["target"] in ("room1", "room2", "room3")
    assert any(n.startswith("killed broker-a/") for n in row["notes"]), row["notes"]
    assert row["rpo_promised_zero"] and row["acked_msgs"] > 0 and row["rpo_lost_msgs"] == 0, row
    assert row["rto_ms"] is not None, row
    # no emulated links on Ray: the figures that need them are null, and a note says why
    assert row["write_latency_added_ms_p50"] is None and row["cross_room_bytes_per_msg"] is None
    assert row["write_latency_ms_p50"] is not None
    print("RAY DR", json.dumps({k: row[k] for k in ("target", "acked_msgs", "rpo_lost_msgs", "detection_ms",
                                                     "election_ms", "leader_readiness_ms", "client_recovery_ms",
                                                     "rto_ms", "write_latency_ms_p50")}), drill["seconds"], "s")
    # nothing left: broker processes, stores on the nodes' disks, named host actors
    assert report["brokers_after"] == [] and report["stores_after"] == [], report
    assert report["actors_after"] == [], report["actors_after"]
