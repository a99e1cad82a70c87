"""Run inside a private network namespace by test_ray_cluster.py: a local Ray cluster (head + 3
worker nodes on 127.0.0.2-4, ``mqbench.ray.local``), then

A. ``mqbench cluster up --layout raft3 --cluster ray://...``, and status, leader, kill (the leader),
   leader again (a new one), start, status, down, each a command of its own (a new Ray driver
   that finds the hosts' actors by name);
B. ``mqbench run orders --layout raft3 --cluster ray://...`` in the background; once its cluster
   is up and the measured phase runs, ``mqbench cluster kill`` of its leader through the run's
   cluster folder (the run's own host actors, found by name from another driver), and the run
   carries on to its end.

argv: OUT_DIR. Writes OUT_DIR/scenario.json: every step's command, exit status, stdout and
stderr tail, and what was seen (pids of brokers left over, stores left on the nodes' folders).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mqbench.ray.local import local_ray

STEP_TIMEOUT_S = 180


def broker_processes(root: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        text = " ".join(proc.info["cmdline"] or [])
        if ("mqbench.broker.server.main" in text or "mqbench.broker.namesrv" in text) and root in text:
            found.append(f"{proc.pid} {text[:100]}")
    return found


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"steps": []}
    mqbench = str(Path(sys.executable).with_name("mqbench"))

    def mq(name: str, *args: str, timeout: float = STEP_TIMEOUT_S) -> dict:
        started = time.monotonic()
        try:
            done = subprocess.run([mqbench, *args], capture_output=True, text=True, timeout=timeout)
            step = {"name": name, "argv": list(args), "exit": done.returncode, "stdout": done.stdout,
                    "stderr": done.stderr[-3000:]}
        except subprocess.TimeoutExpired as exc:
            step = {"name": name, "argv": list(args), "exit": None, "stdout": "", "stderr": f"timed out: {exc}"}
        step["seconds"] = round(time.monotonic() - started, 1)
        report["steps"].append(step)
        (out / "scenario.json").write_text(json.dumps(report))
        return step

    def leader(directory: Path) -> str | None:
        step = mq("leader", "cluster", "leader", "broker-a", "--dir", str(directory), "--json")
        return json.loads(step["stdout"])["instance"] if step["exit"] == 0 else None

    with local_ray(nodes=3) as address:
        report["address"] = address
        # --- A: a cluster up on Ray nodes, driven by later commands ---------------------------------
        directory = out / "cluster"
        d = ["--dir", str(directory)]
        if mq("up", "cluster", "up", "--layout", "raft3", "--cluster", address, *d, "--json")["exit"] == 0:
            mq("status", "cluster", "status", *d, "--json")
            first = leader(directory)
            report["first_leader"] = first
            if first:
                mq("kill", "cluster", "kill", first, *d, "--json")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    now = leader(directory)
                    if now and now != first:
                        report["second_leader"] = now
                        break
                    time.sleep(1)
                mq("status after kill", "cluster", "status", *d, "--json")
                mq("start", "cluster", "start", first, *d, "--json")
                time.sleep(3)
                mq("status after start", "cluster", "status", *d, "--json")
            mq("down", "cluster", "down", *d, "--json")
            report["stores_after_down"] = sorted(str(p) for p in directory.glob("*/*/store"))
        report["brokers_after_down"] = broker_processes(str(out))
        # --- B: a run's leader killed on its Ray node; the run carries on -------------------------------
        results = out / "results"
        run = subprocess.Popen([mqbench, "run", "orders", "--layout", "raft3", "--cluster", address, "--producers", "1",
                                "--consumers", "1", "--rate", "100", "--warmup", "2s", "--duration", "60s", "--window", "5s", "--drain",
                                "10s", "--limits", "none", "--json", "--quiet", "--out", str(results)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + STEP_TIMEOUT_S
            work = None
            while time.monotonic() < deadline and run.poll() is None and work is None:
                found = sorted(results.glob(".work/*/cluster.json"))
                work = found[0].parent if found else None
                time.sleep(1)
            if work is not None:
                first = None
                while time.monotonic() < deadline and run.poll() is None and first is None:
                    first = leader(work)      # once the run's cluster has a routed leader
                    time.sleep(1)
                time.sleep(2)
                report["run_killed"] = first
                report["run_alive_before_kill"] = run.poll() is None
                if first is not None:         # else the run ended first: its stderr says why
                    mq("run kill", "cluster", "kill", first, "--dir", str(work), "--json")
                report["run_alive_after_kill"] = run.poll() is None
                deadline_leader = time.monotonic() + 30
                while first is not None and time.monotonic() < deadline_leader and run.poll() is None:
                    now = leader(work)
                    if now and now != first:
                        report["run_second_leader"] = now
                        break
                    time.sleep(1)
            stdout, stderr = run.communicate(timeout=STEP_TIMEOUT_S)
            report["run"] = {"exit": run.returncode, "stdout": stdout, "stderr": stderr[-4000:]}
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        report["brokers_after_run"] = broker_processes(str(out))
    (out / "scenario.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
