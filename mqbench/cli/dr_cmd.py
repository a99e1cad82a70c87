"""``mqbench dr``: machine-room disaster-recovery drills of the three DR schemes, compared."""
from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from mqbench.cli.options import (DurationMs, json_option, ray_address, ray_head_workers_option, ray_mode_option,
                                 seed_option)
from mqbench.errors import UserError
from mqbench.output import document, print_json

SCHEMES = ("A", "B", "C")


@click.command("dr")
@click.option("--scheme", type=click.Choice(["A", "B", "C", "all"], case_sensitive=False), default="all",
              show_default=True, help="A: one cluster over 3 rooms; B: 2+1 over 2 rooms; C: a cluster per room "
              "with asynchronous replication.")
@click.option("--fault", type=click.Choice(["instance", "host", "room", "partition"]), default="room",
              show_default=True, help="What fails: the leader instance, its host, its room, or its room cut off.")
@click.option("--target", default=None, help="Instance, host or room to hit instead of the leader's.")
@click.option("--workload", type=click.Choice(["orders", "notifications", "iot"]), default="orders",
              show_default=True, help="Body model of the drill's messages.")
@click.option("--rate", "rate_per_s", type=click.IntRange(1, 5000), default=100, show_default=True,
              help="Messages per second sent during the drill.")
@click.option("--phase", "phase_ms", type=DurationMs(), default="1500ms", show_default=True,
              help="Length of the no-rooms baseline, the pre-fault and the post-heal phases.")
@click.option("--outage", "outage_ms", type=DurationMs(), default="4s", show_default=True,
              help="How long the fault lasts before the drill heals it.")
@click.option("--burst", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Sends acknowledged just before the fault lands.")
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True)
@click.option("--port-offset", type=click.IntRange(0, 50000), default=0, show_default=True,
              help="Move every port of the layouts (to run beside another cluster).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the clusters' stores and logs go (default: a temporary folder, removed after).")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Folder the result folder is written into.")
@click.option("--no-save", is_flag=True, help="Do not write a result folder.")
@click.option("--cluster", "ray_cluster", default=None, metavar="ray://HEAD:10001",
              help="Place each host of the scheme's layout on a Ray node of its own (as `mqbench cluster up "
                   "--cluster`; needs `pip install 'mqbench[ray]'`, and this machine must reach the nodes' "
                   "addresses). Every scheme and fault: kills and restarts go through the hosts' node actors, the "
                   "inter-room proxies run on the nodes (a partition is cut there), scheme C's standby is a second "
                   "placed cluster and its replicator runs on a standby node.")
@ray_mode_option
@ray_head_workers_option
@seed_option
@json_option
def dr(scheme, fault, target, workload, rate_per_s, phase_ms, outage_ms, burst, durability, port_offset, directory,
       results_dir, no_save, ray_cluster, ray_mode, ray_head_workers, seed, as_json):
    """Run a DR drill per scheme under a steady workload and print the comparison table.

    Each drill starts the scheme's cluster(s) with delay proxies between rooms, measures the write
    latency the rooms add, injects the fault, heals it, and reports RTO (detection, election, leader
    readiness, client recovery), RPO (acknowledged messages lost), duplicates and cost. Exit code 1
    when a scheme lost acknowledged messages although its layout promises RPO 0 for that fault.

    With --cluster ray://HEAD:10001 (or --ray auto) the hosts run on Ray nodes. The inter-room
    proxies then run in the hosts' actors on the nodes and add no delay (the real network between
    the nodes is the link): no no-rooms baseline and no added latency (shown as -); the cross-room
    bytes are counted on the nodes, and a partition cuts the rooms there (no root needed). Scheme
    C's standby is placed on nodes of room2 (its ports moved by 20) and its replicator runs in the
    standby name server host's actor, where a partition or room loss cuts it.
    """
    from mqbench.dr.drill import DrillSettings, run_drill
    from mqbench.dr.report import build_document, render_table, write_document
    from mqbench.limits import machine_info

    logging.getLogger("mqbench.client").setLevel(logging.CRITICAL)  # failover noise: the table tells the story
    schemes = SCHEMES if scheme.lower() == "all" else (scheme.upper(),)
    if target is not None and len(schemes) > 1:
        raise UserError("--target names a room, host or instance of one layout: give --scheme too")
    ray_options = _ray_options(schemes, fault, ray_cluster, ray_mode, ray_head_workers)
    rows = []
    from mqbench.cluster.owners import DR_SCRATCH_PREFIX, remove_stale_scratch

    remove_stale_scratch()      # what a drill killed with SIGKILL left in the temp directory
    engine = None
    if ray_options is not None:
        from mqbench.ray.engine import RayEngine

        engine = RayEngine(ray_options)     # connects on this (the main) thread; UserError without Ray
    try:
        with tempfile.TemporaryDirectory(prefix=DR_SCRATCH_PREFIX) as scratch:
            base = directory if directory is not None else Path(scratch)
            for name in schemes:
                settings = DrillSettings(scheme=name, fault=fault, target=target, directory=base / f"scheme-{name}",
                                         workload=workload, rate_per_s=rate_per_s, baseline_ms=phase_ms,
                                         before_ms=phase_ms, outage_ms=outage_ms, after_ms=phase_ms, burst=burst,
                                         durability=durability, port_offset=port_offset, seed=seed,
                                         ray=None if ray_options is None else ray_options.address)
                if not as_json:
                    click.echo(f"scheme {name}: {fault} drill ...", err=True)
                placer = None if engine is None else engine.host_placer()
                rows.append(asyncio.run(run_drill(settings, placer)).row())
    finally:
        if engine is not None:
            engine.close()
    common = {k: v for k, v in asdict(settings).items() if k not in ("scheme", "directory", "target")}
    doc = build_document(rows, seed=seed, command_line=sys.argv, machine=machine_info(), settings=common)
    saved = None if no_save else write_document(doc, results_dir)
    if as_json:
        print_json(document("mqbench.dr/1", drills=rows, result_folder=None if saved is None else str(saved)))
    else:
        click.echo(render_table(rows))
        if saved is not None:
            click.echo(f"saved {saved}")
    broken = [r for r in rows if r["rpo_promised_zero"] and r["rpo_lost_msgs"]]
    if broken:
        click.echo("mqbench: error: " + "; ".join(f"scheme {r['scheme']} lost {r['rpo_lost_msgs']} acknowledged "
                                                   f"message(s) on a {r['fault']} of {r['target']}, which it promises "
                                                   "to survive" for r in broken), err=True)
        sys.exit(1)


def _ray_options(schemes, fault: str, ray_cluster: str | None, ray_mode: str | None, head_workers: bool):
    """The ``RayOptions`` of ``--cluster``/``--ray`` (None without them), after refusing, before anything
    starts, what cannot run on Ray nodes (``dr.drill.ray_refusal``) and contradicting flags."""
    address = ray_address(ray_cluster, head_workers, ray_mode)
    if address is None:
        return None
    from mqbench.dr.drill import ray_refusal
    from mqbench.ray.engine import RayOptions

    options = RayOptions(address=address, head_workers=head_workers)
    options.validate()
    for name in schemes:
        refusal = ray_refusal(name, fault)
        if refusal:
            raise UserError(refusal)
    return options
