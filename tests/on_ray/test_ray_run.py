"""``mqbench run orders --cluster ray://...`` on a local Ray cluster of a head and three worker
nodes (``mqbench.ray.local``, in a network namespace of its own): workers on two nodes, the raft3
layout's hosts on three distinct nodes; the result names the nodes and their clock offsets, and
nothing of Ray is left running afterwards.

Skipped (with the reason) when Ray is not installed (`pip install -e '.[ray]'`) or ``unshare -n``
cannot run. It takes about 100 s on a loaded 2-core machine; .ci/run does not install Ray, so CI
skips it. Run it with: ``.venv/bin/pip install -e '.[ray]' && .venv/bin/python -m pytest -q tests/on_ray``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' to run the Ray tests")

from mqbench.ray.local import private_netns_argv, private_netns_available  # noqa: E402
from ray_processes import ray_processes  # noqa: E402

pytestmark = pytest.mark.realproc

SCENARIO = Path(__file__).with_name("ray_scenario.py")


def _ray_processes() -> list[str]:
    return [f"{pid} {text}" for pid, text in ray_processes().items()]


def test_run_on_a_local_ray_cluster_places_workers_and_layout_hosts_and_records_clocks(tmp_path):
    reason = private_netns_available()
    if reason:
        pytest.skip(reason)
    before = _ray_processes()
    argv = private_netns_argv([sys.executable, str(SCENARIO), str(tmp_path), "run", "orders", "--layout", "raft3",
                               "--producers", "2", "--consumers", "2", "--duration", "4s", "--warmup", "2s",
                               "--rate", "100", "--drain", "5s", "--limits", "none", "--json", "--quiet"])
    subprocess.run(argv, timeout=560, check=True)
    report = json.loads((tmp_path / "scenario.json").read_text())
    assert report["exit"] in (0, 3), report.get("stderr")      # held, or saturated on a loaded machine
    doc = json.loads(report["stdout"])
    result = json.loads((Path(doc["result_dir"]) / "result.json").read_text())
    ray = result["cells"][0]["ray"]
    assert ray["address"] == report["address"] and ray["address"].startswith("ray://")
    nodes = ray["nodes"]
    workers = [n for n in nodes if n["producers"] or n["consumers"]]
    assert len(workers) == 2 and all(n["producers"] == 1 and n["consumers"] == 1 for n in workers)
    hosts = [n for n in nodes if n["layout_hosts"]]
    assert sorted(h for n in hosts for h in n["layout_hosts"]) == ["h1", "h2", "h3"]
    assert len(hosts) == 3 and all(len(n["layout_hosts"]) == 1 for n in hosts)   # STRICT_SPREAD
    for node in nodes:
        assert node["name"] and len(node["node_id"]) > 20
        assert node["clock_samples"] == 16 and node["clock_rtt_ns_min"] > 0
        # one machine: every node shares the driver's clock, so the estimate is within its bound of 0
        assert abs(node["clock_offset_ns"]) <= node["clock_uncertainty_ns"]
    for node in workers:
        assert node["worker_cpu_s"] > 0 and 0 < node["node_cpu_busy_share"] <= 1.0
    # #20: the producer / consumer split from the workers' own reports (probes.WorkerCpu), not null
    # on Ray; together about what the nodes' agents read of the same processes (psutil, through an
    # actor call made after the probe: under load up to a second later, in the run's busiest moments
    # at the end, so only about: 0.32 s reported against 0.44 s read once at load 15)
    cell = result["cells"][0]
    published = cell["aggregates"]["published"]
    assert cell["producer_cpu_us_per_msg"] > 0 and cell["consumer_cpu_us_per_msg"] > 0
    assert cell["consumer_cpu_us_per_delivery"] > 0
    reported_s = (cell["producer_cpu_us_per_msg"] + cell["consumer_cpu_us_per_msg"]) * published / 1e6
    agents_s = sum(n["worker_cpu_s"] for n in workers)
    assert 0.5 * agents_s <= reported_s <= 1.5 * agents_s + 0.05, (reported_s, agents_s)
    assert 0 < cell["client_cpu_machine_share"] <= 1.0    # divided by the worker nodes' CPUs too
    # topic placement (the default): each topic's producer and consumer share a node, so no e2e
    # latency crosses a clock; the two cells split the offered rate by the topics' shares
    assert ray["placement"] == "topic" and ray["e2e_clock_uncertainty_us"] == 0
    cells = ray["topic_cells"]
    assert sorted(t for c in cells for t in c["topics"]) == ["order_events", "order_payment_timeout"]
    assert abs(sum(c["rate_share"] for c in cells) - 1.0) < 1e-9 and len({c["node_ids"][0] for c in cells}) == 2
    aggregates = result["cells"][0]["aggregates"]
    assert aggregates["published"] > 0 and aggregates["consumed"] > 0
    print("RAY RUN", json.dumps({k: v for k, v in aggregates.items() if not isinstance(v, (dict, list))}))
    assert _ray_processes() == before == []
