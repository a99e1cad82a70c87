"""``mqbench cluster`` through Ray: a raft3 layout placed on three Ray nodes (node addresses
127.0.0.2-4 in a private network namespace, ``ray_cluster_scenario.py``), driven by later
commands that find the hosts' actors by name; and a failover drill during ``mqbench run`` on Ray.

Skipped when Ray is not installed or ``unshare -n`` cannot run (CI installs no Ray). Several
minutes on a loaded 2-core machine (every command is a new Ray client session): ``slow``. Run it
with ``.venv/bin/pip install -e '.[ray]' && .venv/bin/python -m pytest -q -m slow tests/on_ray``.
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

SCENARIO = Path(__file__).with_name("ray_cluster_scenario.py")


def _step(report: dict, name: str, index: int = 0) -> dict:
    steps = [s for s in report["steps"] if s["name"] == name]
    assert len(steps) > index, f"no step {name!r}: {[s['name'] for s in report['steps']]}"
    step = steps[index]
    assert step["exit"] == 0, f"{name}: exit {step['exit']}\n{step['stderr']}"
    return json.loads(step["stdout"])


def test_cluster_commands_and_a_failover_drill_through_ray(tmp_path):
    reason = private_netns_available()
    if reason:
        pytest.skip(reason)
    subprocess.run(private_netns_argv([sys.executable, str(SCENARIO), str(tmp_path)]), timeout=1500, check=True)
    report = json.loads((tmp_path / "scenario.json").read_text())
    # A. up on three nodes, each host on its node's own address; the name server on h1's node
    up = _step(report, "up")
    nodes = up["ray"]["nodes"]
    assert up["ray"]["detached"] and sorted(nodes) == ["h1", "h2", "h3"]
    node_ips = {host: name.rsplit("/", 1)[1] for host, name in nodes.items()}
    assert sorted(node_ips.values()) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    for row in up["instances"]:
        assert row["address"].rsplit(":", 1)[0] == node_ips[row["host"]] and row["process"] == "running"
    assert up["namesrv_addr"].startswith(node_ips["h1"] + ":") and up["namesrv_running"]
    # later commands: status, the leader, a SIGKILL through its node's actor, a new leader, start
    status = _step(report, "status")
    assert sorted(r["role"] for r in status["instances"]) == ["follower", "follower", "leader"]
    first, second = report["first_leader"], report.get("second_leader")
    assert _step(report, "kill")["processes"] == [first]
    assert second and second != first, "no new leader within 60 s of the leader's SIGKILL"
    after_kill = {r["instance"]: r for r in _step(report, "status after kill")["instances"]}
    assert after_kill[first]["process"] == "down" and after_kill[second]["role"] == "leader"
    assert _step(report, "start")["processes"] == [first]
    back = {r["instance"]: r for r in _step(report, "status after start")["instances"]}
    assert back[first]["process"] == "running" and back[first]["pid"] != after_kill[first]["pid"]
    # down: every process stopped on its node, the stores on the nodes removed
    down = _step(report, "down")
    assert {p["process"]: p["outcome"] for p in down["processes"]} == {
        "namesrv": "stopped", "broker-a/n0": "stopped", "broker-a/n1": "stopped", "broker-a/n2": "stopped"}
    assert report["stores_after_down"] == [] and report["brokers_after_down"] == []
    # B. the run's leader killed through the run's own cluster folder; a new leader; the run carries on
    assert report.get("run_killed"), f"the run ended before its cluster had a leader: {report.get('run')}"
    assert report["run_alive_before_kill"], f"the run ended before the kill: {report.get('run')}"
    assert _step(report, "run kill")["processes"] == [report["run_killed"]]
    assert report["run_alive_after_kill"], "the kill came after the run had ended"
    assert report.get("run_second_leader") not in (None, report["run_killed"])
    run = report["run"]
    assert run["exit"] in (0, 3), run["stderr"]          # held, or saturated on a loaded machine
    doc = json.loads(run["stdout"])
    cell = json.loads((Path(doc["result_dir"]) / "result.json").read_text())["cells"][0]
    assert {h for n in cell["ray"]["nodes"] for h in n["layout_hosts"]} == {"h1", "h2", "h3"}
    assert all(0 < n["node_cpu_busy_share"] <= 1.0 for n in cell["ray"]["nodes"])   # host nodes' CPU too
    windows = cell["windows"]                  # every window publishes and consumes, the kill's too
    assert all(w["published"] > 0 and w["consumed"] > 0 for w in windows), windows
    # broker CPU is read on the brokers' nodes through their actors; in the window of the kill the
    # killed broker's seconds drop out of the sum (as in a local run), so one window may show 0
    assert all(w["broker_cpu_s"] is not None for w in windows) and \
        sum(1 for w in windows if not w["broker_cpu_s"] > 0) <= 1, windows
    print("RAY CLUSTER", json.dumps({"windows": [(w["published"], w["consumed"], w["broker_cpu_s"])
                                                  for w in cell["windows"]],
                                     "nodes": [(n["name"], n.get("clock_offset_ns"), n.get("clock_uncertainty_ns"),
                                                n.get("node_cpu_busy_share")) for n in cell["ray"]["nodes"]]}))
    assert report["brokers_after_run"] == []
