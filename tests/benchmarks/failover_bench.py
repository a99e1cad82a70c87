"""Failover benchmark: how long a Raft group is unwritable after its leader is SIGKILLed (a script).

    .venv/bin/python tests/benchmarks/failover_bench.py [--layouts raft3,3x3] [--kills 20]
        [--durability memory|fsync] [--port-offset 4500] [--dir DIR] [--json]

For each layout it starts a reference cluster (real processes, ``mqbench.cluster.launcher``), keeps
two senders per group busy with mqbench's client, and ``--kills`` times (round-robin over the
groups) SIGKILLs a group's leader, then restarts it and waits until the group is whole again
(``mqbench.cluster.drills.measure_failovers``). Per kill it records

* ``failover_ms``: SIGKILL -> the next acknowledged send on that group's topic (what a producer
  sees: detection, election, registration with the name server, the client's route refresh);
* ``election_ms``: SIGKILL -> the first status poll (every ~50 ms) that shows another leader.

It prints median and max of both per layout, next to DLedger's published figure (about 10 s:
6 s detection + election + catch-up), and the leaders per host: before the first kill, the most
on one host right after a failover (before the victim restarts), how long after the restart the
preferred leaders lead again, and after the last restart (``3x3`` has a preferred leader per
host: the leaders should come back to one per host). Wall-clock figures from a shared machine: run it when the machine is otherwise idle.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from mqbench.cluster import launcher
from mqbench.cluster.drills import measure_failovers
from mqbench.output import document, table

DLEDGER_FAILOVER_MS = 10_000  # published: ~6 s detection + election + catch-up (reference/bench-anchors.md)
SCHEMA = "mqbench.failover-bench/1"


def fmt(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def run_layout(layout: str, kills: int, durability: str, port_offset: int, root: Path, quiet: bool) -> dict:
    state = launcher.up(layout, root / layout, port_offset=port_offset, durability=durability, wait_s=90)
    try:
        def progress(event) -> None:
            if not quiet:
                print(f"  {layout}: killed {event.instance} (host {event.host}, term {event.term_before}): "
                      f"failover {fmt(event.failover_ms)} ms, election {fmt(event.election_ms)} ms, "
                      f"leaders per host then {event.leaders_per_host}, "
                      f"preferred leaders back {fmt(event.rebalance_ms)} ms after the restart",
                      file=sys.stderr, flush=True)

        started = time.monotonic()
        result = asyncio.run(measure_failovers(state, kills=kills, on_sample=progress))
        elapsed_s = time.monotonic() - started
    finally:
        launcher.down(state, timeout_s=10)
    return {"layout": layout, "durability": durability, "kills": kills, "elapsed_s": round(elapsed_s, 1),
            "acked_sends": result.acked_sends,
            "failover_ms": result.stats("failover_ms"), "election_ms": result.stats("election_ms"),
            "rebalance_ms": result.stats("rebalance_ms"),
            "max_leaders_on_one_host_after_failover": max(
                (max(s.leaders_per_host.values()) for s in result.samples if s.leaders_per_host), default=None),
            "leaders_per_host_before": result.leaders_per_host_before,
            "leaders_per_host_after": result.leaders_per_host_after,
            "samples": [{"instance": s.instance, "host": s.host, "group": s.group, "term_before": s.term_before,
                         "failover_ms": s.failover_ms, "election_ms": s.election_ms,
                         "leaders_per_host": s.leaders_per_host, "rebalance_ms": s.rebalance_ms}
                        for s in result.samples]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="raft3,3x3")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--durability", choices=["memory", "fsync"], default="memory")
    ap.add_argument("--port-offset", type=int, default=4500)
    ap.add_argument("--dir", type=Path, default=None, help="keep the clusters' stores and logs here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # SIGTERM (``timeout``, a CI runner) ends the run through the same ``finally`` as ^C, so the
    # clusters it started are stopped instead of left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.kills < 1:
        ap.error("--kills must be at least 1")
    root = args.dir or Path(tempfile.mkdtemp(prefix="failover-bench-"))
    runs = []
    try:
        for i, layout in enumerate(l.strip() for l in args.layouts.split(",") if l.strip()):
            runs.append(run_layout(layout, args.kills, args.durability, args.port_offset + 50 * i, root, args.json))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(document(SCHEMA, dledger_failover_ms=DLEDGER_FAILOVER_MS, runs=runs), indent=2))
        return
    rows = []
    for run in runs:
        f, e = run["failover_ms"], run["election_ms"]
        rows.append([run["layout"], run["durability"], f"{f['count']}/{run['kills']}", fmt(f["median"]), fmt(f["max"]),
                     fmt(e["median"]), fmt(e["max"]),
                     f"{DLEDGER_FAILOVER_MS / f['median']:.1f}x" if f["median"] else "-"])
    print(table(rows, ["layout", "durability", "failovers", "failover ms p50", "failover ms max",
                       "election ms p50", "election ms max", "vs DLedger ~10 s"]))
    print()
    print(table([[r["layout"], " ".join(f"{h}={n}" for h, n in r["leaders_per_host_before"].items()),
                  r["max_leaders_on_one_host_after_failover"],
                  f"{fmt(r['rebalance_ms']['median'])} / {fmt(r['rebalance_ms']['max'])}",
                  " ".join(f"{h}={n}" for h, n in r["leaders_per_host_after"].items())] for r in runs],
                ["layout", "leaders per host before", "max on one host after a failover",
                 "restart -> preferred leaders back, ms p50 / max", "after the last restart"]))


if __name__ == "__main__":
    main()
