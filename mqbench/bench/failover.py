"""``mqbench bench failover``: how long a Raft group is unwritable after its leader is SIGKILLed.

For each layout it starts a reference cluster (real processes at a free port offset), keeps
senders busy on every group with mqbench's client, and ``kills`` times (round-robin over the
groups) SIGKILLs a group's leader, restarts it and waits until the group is whole again
(``mqbench.bench.kills.measure_failovers``). Per kill:

* ``failover_ms``: SIGKILL -> the next acknowledged send on that group's topic (what a producer
  sees: detection, election, registration with the name server, the client's route refresh);
* ``election_ms``: SIGKILL -> the first status poll (every ~50 ms) that shows another leader;
* leaders per host right after the failover, and ``rebalance_ms``: how long after the victim's
  restart every preferred leader leads again.

Figures are divided by DLedger's published failover (about 10 s: 6 s detection + election +
catch-up). Failover time is bounded by timeouts, not by the disk or the network, so the machine's
loopback limit (measured in the same run) is shown for context, not divided by.
``client_cpu_us_per_msg`` is the load generator's CPU per acknowledged send over the drill (the
brokers' CPU is not summed: the killed processes take theirs with them). Wall-clock figures from a
shared machine. Bounded: per layout its start (at most 90 s) and per kill at most 60 s of failover
wait, 60 s of healing and 30 s of rebalancing.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from mqbench.bench.common import (bench_document, fmt, fmt_ratio, limits_line, measure_limits, own_cpu_s, ratio,
                                  us_per_msg)
from mqbench.output import table

DLEDGER_FAILOVER_MS = 10_000  # published: ~6 s detection + election + catch-up (reference/bench-anchors.md)
START_WAIT_S = 90.0


def _run_layout(layout_name: str, kills: int, durability: str, root: Path, on_kill) -> dict:
    from mqbench.broker.layout import load_layout
    from mqbench.cluster import launcher
    from mqbench.bench.kills import measure_failovers
    from mqbench.run.environment import free_port_offset

    state = launcher.up(layout_name, root / layout_name, port_offset=free_port_offset(load_layout(layout_name)),
                        durability=durability, wait_s=START_WAIT_S)
    try:
        started = time.monotonic()
        cpu_start = own_cpu_s()
        result = asyncio.run(measure_failovers(state, kills=kills, on_sample=on_kill))
        client_cpu_s = own_cpu_s() - cpu_start
        elapsed_s = time.monotonic() - started
    finally:
        launcher.down(state, timeout_s=10)
    failover = result.stats("failover_ms")
    return {"layout": layout_name, "durability": durability, "kills": kills, "elapsed_s": round(elapsed_s, 1),
            "acked_msgs": result.acked_sends,
            "client_cpu_us_per_msg": us_per_msg(client_cpu_s, result.acked_sends),
            "failover_ms": failover, "election_ms": result.stats("election_ms"),
            "rebalance_ms": result.stats("rebalance_ms"),
            "failover_p50_ratio_to_dledger": ratio(failover["median"], DLEDGER_FAILOVER_MS),
            "max_leaders_on_one_host_after_failover": max(
                (max(s.leaders_per_host.values()) for s in result.samples if s.leaders_per_host), default=None),
            "leaders_per_host_before": result.leaders_per_host_before,
            "leaders_per_host_after": result.leaders_per_host_after,
            "samples": [{"instance": s.instance, "host": s.host, "group": s.group, "term_before": s.term_before,
                         "failover_ms": s.failover_ms, "election_ms": s.election_ms,
                         "leaders_per_host": s.leaders_per_host, "rebalance_ms": s.rebalance_ms}
                        for s in result.samples]}


def run(*, layouts: list[str], kills: int, durability: str, limits_budget_s: float, directory: str | None = None,
        progress=None) -> dict:
    """Kill leaders on every layout; returns the ``mqbench.bench-failover/1`` document.

    ``progress(line)`` gets one line per kill. ``directory`` keeps the clusters' stores and logs
    (else a temp folder, removed).
    """
    from mqbench.broker.layout import load_layout

    for name in layouts:
        load_layout(name)  # an unknown layout is a user error before anything is started
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="mqbench-bench-failover-"))
    root.mkdir(parents=True, exist_ok=True)
    limits = measure_limits(root, limits_budget_s, disk=False, loopback=True)
    runs = []
    try:
        for layout_name in layouts:
            def on_kill(event, layout_name=layout_name) -> None:
                if progress:
                    progress(f"{layout_name}: killed {event.instance} (host {event.host}, term {event.term_before}): "
                             f"failover {fmt(event.failover_ms)} ms, election {fmt(event.election_ms)} ms, "
                             f"leaders per host then {event.leaders_per_host}, preferred leaders back "
                             f"{fmt(event.rebalance_ms)} ms after the restart")
            runs.append(_run_layout(layout_name, kills, durability, root, on_kill))
    finally:
        if directory is None:
            shutil.rmtree(root, ignore_errors=True)
    return bench_document("failover", dledger_failover_ms=DLEDGER_FAILOVER_MS, cpu_cores=os.cpu_count(),
                          limits=limits, runs=runs)


def render(doc: dict) -> str:
    """The terminal tables of a ``mqbench.bench-failover/1`` document."""
    rows = []
    for r in doc["runs"]:
        f, e = r["failover_ms"], r["election_ms"]
        rows.append([r["layout"], r["durability"], f"{f['count']}/{r['kills']}", fmt(f["median"]), fmt(f["max"]),
                     fmt(e["median"]), fmt(e["max"]), fmt_ratio(r["failover_p50_ratio_to_dledger"]),
                     fmt(r["client_cpu_us_per_msg"], ",.1f")])
    out = [limits_line(doc["limits"]),
           table(rows, ["layout", "durability", "failovers", "failover ms p50", "failover ms max", "election ms p50",
                        "election ms max", "p50 / DLedger ~10 s", "client CPU µs/msg"]),
           "",
           table([[r["layout"], " ".join(f"{h}={n}" for h, n in r["leaders_per_host_before"].items()),
                   r["max_leaders_on_one_host_after_failover"],
                   f"{fmt(r['rebalance_ms']['median'])} / {fmt(r['rebalance_ms']['max'])}",
                   " ".join(f"{h}={n}" for h, n in r["leaders_per_host_after"].items())] for r in doc["runs"]],
                 ["layout", "leaders per host before", "max on one host after a failover",
                  "restart -> preferred leaders back, ms p50 / max", "after the last restart"])]
    return "\n".join(out)
