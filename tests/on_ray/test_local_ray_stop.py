"""``local_ray`` ends its own cluster and nothing else: ``ray stop --force`` ended every Ray process
of the user (another test's cluster, a user's own), so two Ray tests could not run at once.

The choice of processes (``owned_pids``) is checked on a made-up process table (no Ray needed);
the real test starts a one-node cluster beside a process that ``ray stop`` takes for Ray's and
checks that every process of the cluster is gone afterwards while that one still runs (skipped
without Ray or ``unshare -n``; about 30-60 s, ``slow``)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mqbench.ray.local import MARKER_ENV, Proc, owned_pids, private_netns_argv, private_netns_available

TEMP = "/tmp/mqbray-abcd1234"


def test_owned_pids_are_the_clusters_processes_and_their_descendants_only():
    mine = {MARKER_ENV: TEMP}
    procs = {
        10: Proc(1, f"gcs_server --log_dir={TEMP}/session_1/logs", {}),              # path of ours
        11: Proc(1, f"raylet --raylet_socket_name={TEMP}/session_1/sockets/raylet", {}),
        12: Proc(11, "ray::DashboardAgent", {}),                                       # child of our raylet
        13: Proc(11, "ray::IDLE", {}),
        14: Proc(1, "python -m ray.util.client.server --address=127.0.0.1:1 --mode=proxy", mine),   # marker
        15: Proc(14, "python -m ray.util.client.server --mode=specific-server", mine),
        16: Proc(15, "ray::Actor", {}),                                                # grandchild
        20: Proc(1, "raylet --raylet_socket_name=/tmp/mqbray-other999/session/sockets/raylet", {}),
        21: Proc(20, "ray::IDLE", {}),                                                 # another cluster's
        22: Proc(1, "python -m ray.util.client.server --mode=proxy", {MARKER_ENV: "/tmp/mqbray-other999"}),
        23: Proc(1, "ray start --head", {}),                                           # a user's own Ray
        30: Proc(1, "pytest", {}),
    }
    assert owned_pids(procs, TEMP) == {10, 11, 12, 13, 14, 15, 16}


@pytest.mark.slow
@pytest.mark.realproc
def test_local_ray_leaves_other_ray_processes_running_and_none_of_its_own(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' to run the Ray tests")
    import psutil

    reason = private_netns_available()
    if reason:
        pytest.skip(reason)
    # what `ray stop --force` takes for Ray's own (it matches "ray.util.client.server" in the arguments)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "ray.util.client.server"])
    try:
        before = [p.pid for p in psutil.process_iter()]
        scenario = Path(__file__).with_name("local_stop_scenario.py")
        done = subprocess.run(private_netns_argv([sys.executable, str(scenario), json.dumps(before)]),
                              timeout=400, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert len(report["during"]) >= 5, report          # head and node: GCS, raylets, agents, ...
        time.sleep(0.5)
        left = [pid for pid in report["during"] if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert left == [], [" ".join(psutil.Process(pid).cmdline())[:120] for pid in left]
        assert decoy.poll() is None, "local_ray killed a Ray process that was not its own"
    finally:
        decoy.kill()
        decoy.wait()
