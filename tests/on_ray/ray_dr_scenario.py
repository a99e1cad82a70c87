"""Run inside a private network namespace by test_ray_dr.py. argv: OUT_DIR SCENARIO.

``rooms``: a local Ray cluster of four worker nodes (127.0.0.2-5, ``mqbench.ray.local``), one per
room of layout dr-a (room1, room2, room3 and the name server's ctl, as node resources), then
``mqbench dr --scheme A --cluster ray://...`` twice: ``--fault room`` (the leader's room killed
through its host's node actor and restarted) and ``--fault partition`` (the leader's room cut off
in the room links that run in the node actors, then healed).

``standby``: four worker nodes that each serve room1 and room2 (so scheme C's active cluster and
its standby both find four nodes of their room), node i labelled ``mqbench-test=n<i>``, then
``mqbench dr --scheme C --fault partition --cluster ray://...`` (the replicator on a standby node,
its link to room1 cut there), and a layout naming its hosts by node label and by node id:
``mqbench cluster up`` with it, ``cluster down --keep-stores``.

Writes OUT_DIR/scenario.json: each step's exit status, stdout and stderr tail, and what was left
behind (broker processes, stores, named actors).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ray_cluster_scenario import broker_processes

from mqbench.ray.local import local_ray

STEP_TIMEOUT_S = 420


def ray_query(address: str, expression: str) -> object:
    """``expression`` evaluated by a new Ray driver (``ray`` imported), as JSON; or why it could not."""
    code = ("import json, ray; ray.init(address=%r, namespace='mqbench', log_to_driver=False); "
            "print(json.dumps(%s))" % (address, expression))
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode != 0:
        return done.stderr[-500:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def named_actors(address: str) -> list | str:
    """Named actors left in the ``mqbench`` namespace (a new Ray driver's view), or why it cannot tell."""
    found = ray_query(address, "ray.util.list_named_actors(all_namespaces=True)")
    return found if isinstance(found, str) else [a for a in found if "mqbench:" in json.dumps(a)]


def main() -> None:
    out, scenario = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"steps": {}}
    mqbench = str(Path(sys.executable).with_name("mqbench"))

    def mq(name: str, *args: str) -> dict:
        started = time.monotonic()
        try:
            done = subprocess.run([mqbench, *args], capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
            step = {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:]}
        except subprocess.TimeoutExpired as exc:
            step = {"exit": None, "stdout": "", "stderr": f"timed out: {exc}"}
        step["seconds"] = round(time.monotonic() - started, 1)
        report["steps"][name] = step
        (out / "scenario.json").write_text(json.dumps(report))
        return step

    def drill(name: str, *args: str) -> None:
        mq(name, "dr", *args, "--cluster", report["address"], "--rate", "50", "--phase", "1s", "--outage", "3s",
           "--burst", "10", "--dir", str(out / name), "--no-save", "--json")

    if scenario == "rooms":
        cluster = local_ray(nodes=4, rooms=["room1", "room2", "room3", "ctl"])
    else:
        cluster = local_ray(nodes=4, rooms=[["room1", "room2"]] * 4, labels=[{"mqbench-test": f"n{i}"} for i in range(4)])
    with cluster as address:
        report["address"] = address
        if scenario == "rooms":
            drill("room", "--scheme", "A", "--fault", "room")
            drill("partition", "--scheme", "A", "--fault", "partition")
        else:
            drill("standby", "--scheme", "C", "--fault", "partition")
            nodes = ray_query(address, "sorted([n['NodeID'], n['NodeManagerAddress']] for n in ray.nodes() "
                                       "if n['Alive'] and n['Resources'].get('CPU'))")
            report["nodes"] = nodes
            if isinstance(nodes, list):
                by_ip = {ip: node_id for node_id, ip in nodes}
                layout = out / "named.toml"
                layout.write_text(NAMED_LAYOUT % by_ip["127.0.0.3"])
                d = ["--dir", str(out / "named")]
                if mq("named up", "cluster", "up", "--layout", str(layout), "--cluster", address, *d,
                      "--json")["exit"] == 0:
                    report["named_placed"] = json.loads((out / "named" / "cluster.json").read_text())["settings"]["ray"]
                    mq("named down", "cluster", "down", "--keep-stores", *d, "--json")
                    report["kept_stores"] = sorted(str(p.relative_to(out)) for p in (out / "named").glob("**/store"))
        report["stores_after"] = sorted(str(p.relative_to(out)) for name in ("room", "partition", "standby")
                                        for p in (out / name).glob("**/store"))
        report["brokers_after"] = broker_processes(str(out))
        report["actors_after"] = named_actors(address)
    (out / "scenario.json").write_text(json.dumps(report))


# h1 by label (node 2: 127.0.0.4), h2 by node id (filled in: node 1, 127.0.0.3), h3 anywhere else
NAMED_LAYOUT = '''name = "named3"
cluster = "named3"
namesrv_host = "h3"
namesrv_port = 9966
broker_port = 10971

[rooms.room1]
hosts = ["h1", "h2", "h3"]

[hosts.h1]
address = "127.0.31.1"
ray_node = "label:mqbench-test=n2"
[hosts.h2]
address = "127.0.31.2"
ray_node = "id:%s"
[hosts.h3]
address = "127.0.31.3"

[groups.broker-a]
replicas = ["h1", "h2", "h3"]
'''


if __name__ == "__main__":
    main()
