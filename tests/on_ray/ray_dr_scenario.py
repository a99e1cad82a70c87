"""Run inside a private network namespace by test_ray_dr.py: a local Ray cluster of four worker
nodes (127.0.0.2-5, ``mqbench.ray.local``), one per room of layout dr-a (room1, room2, room3 and
the name server's ctl, as node resources), then

``mqbench dr --scheme A --fault room --cluster ray://...``: the scheme's hosts placed on the nodes
by the run/cluster placer, the leader's room killed (SIGKILL through its host's node actor) and
restarted, RPO and RTO measured; afterwards no broker process, store or named host actor is left.

argv: OUT_DIR. Writes OUT_DIR/scenario.json: the drill's exit status, stdout and stderr tail, and
what was left behind.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ray_cluster_scenario import broker_processes

from mqbench.ray.local import local_ray

DRILL_TIMEOUT_S = 420


def named_actors(address: str) -> list | str:
    """Named actors left in the ``mqbench`` namespace (a new Ray driver's view), or why it cannot tell."""
    code = ("import json, ray; ray.init(address=%r, namespace='mqbench', log_to_driver=False); "
            "print(json.dumps(ray.util.list_named_actors(all_namespaces=True)))" % address)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        return done.stderr[-500:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return [a for a in found if "mqbench:" in json.dumps(a)]


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    mqbench = str(Path(sys.executable).with_name("mqbench"))
    with local_ray(nodes=4, rooms=["room1", "room2", "room3", "ctl"]) as address:
        report["address"] = address
        argv = [mqbench, "dr", "--scheme", "A", "--fault", "room", "--cluster", address, "--rate", "50",
                "--phase", "1s", "--outage", "3s", "--burst", "10", "--dir", str(out / "drill"), "--no-save", "--json"]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=DRILL_TIMEOUT_S)
            report["drill"] = {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:]}
        except subprocess.TimeoutExpired as exc:
            report["drill"] = {"exit": None, "stdout": "", "stderr": f"timed out: {exc}"}
        report["drill"]["seconds"] = round(time.monotonic() - started, 1)
        report["stores_after"] = sorted(str(p) for p in (out / "drill").glob("**/store"))
        report["brokers_after"] = broker_processes(str(out))
        report["actors_after"] = named_actors(address)
    (out / "scenario.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
