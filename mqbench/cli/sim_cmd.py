"""``mqbench sim``: deterministic fault simulation of the Raft core (library: ``broker.raft.sim``)."""
from __future__ import annotations

import os
import sys

import click

from mqbench.cli.options import json_option
from mqbench.output import document, is_terminal, print_json, table

SCHEMA = "mqbench.sim-raft/1"


@click.group()
def sim() -> None:
    """Deterministic simulations of the broker's parts under seeded faults."""


@sim.command("raft")
@click.option("--seeds", "count", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many seeds to run (seed S, S+1, ...).")
@click.option("--seed", "first_seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="First seed; rerun one failing seed with --seeds 1 --seed S.")
@click.option("--nodes", type=click.Choice(["3", "5"]), default="3", show_default=True, help="Replicas per group.")
@click.option("--durability", type=click.Choice(["both", "fsync", "memory"]), default="both", show_default=True,
              help="Quorum fsynced, quorum in memory, or both (alternating by seed).")
@click.option("--trace-events", type=click.IntRange(min=1, max=100_000), default=40, show_default=True,
              help="Events shown before a violation.")
@click.option("--jobs", type=click.IntRange(min=1, max=256), default=None,
              help="Worker processes running seeds in parallel [default: the machine's CPU count]. The "
                   "outcome per seed, and the first violation reported, do not depend on it.")
@json_option
def raft(count: int, first_seed: int, nodes: str, durability: str, trace_events: int, jobs: int | None,
         as_json: bool) -> None:
    """Run the Raft core through seeded fault schedules and check its invariants.

    Each seed draws its own fault rates (loss, duplication, delay and reordering, symmetric and
    one-way partitions, crashes with torn unsynced writes, leadership transfers), runs a safety
    phase, then heals and requires a leader to commit and all logs to converge, then crashes the
    leader and times the failover. The first violation prints its seed and the last events and
    exits with code 1.
    """
    from mqbench.broker.raft.sim.cluster import SimParams
    from mqbench.broker.raft.sim.runner import params_for_seed, percentile, run_seeds

    params = SimParams(nodes=int(nodes), trace_events=trace_events)
    progress = None
    if is_terminal() and not as_json:
        bar = click.progressbar(length=count, label="seeds", file=sys.stderr)
        bar.__enter__()
        done = [0]

        def progress(finished: int, _total: int) -> None:
            bar.update(finished - done[0])
            done[0] = finished
    try:
        summary = run_seeds(count, first_seed, params, durability=durability, progress=progress,
                            processes=jobs or os.cpu_count() or 1)
    finally:
        if progress is not None:
            bar.__exit__(None, None, None)
    failure = summary.failure
    fields = dict(
        seeds=summary.seeds, first_seed=first_seed, nodes=int(nodes), durability=durability,
        passed=summary.passed, failed=0 if failure is None else 1,
        elapsed_s=round(summary.elapsed_s, 3), seeds_per_s=round(summary.seeds_per_s, 1),
        events=summary.events, events_per_s=round(summary.events / summary.elapsed_s) if summary.elapsed_s else 0,
        tick_ms=params.tick_ms, heartbeat_ms=params.heartbeat_ms, election_timeout_ms=params.election_ms,
        failover_ticks_p50=percentile(summary.failover_ticks, 0.5),
        failover_ticks_p99=percentile(summary.failover_ticks, 0.99),
        failover_ms_p50=percentile(summary.failover_ms, 0.5),
        failover_ms_p99=percentile(summary.failover_ms, 0.99),
        acked_entries=summary.acked_entries, leaders_elected=summary.leaders_elected,
        torn_entries_dropped=summary.torn_entries_dropped, violation=None)
    if failure is not None:
        mode = params_for_seed(failure.seed, params, durability).durability.value
        fields["violation"] = dict(
            seed=failure.seed, durability=mode, message=failure.violation, trace_digest=failure.trace_digest,
            trace=failure.trace,
            repro=f"mqbench sim raft --seeds 1 --seed {failure.seed} --nodes {nodes} --durability {mode}")
    if as_json:
        print_json(document(SCHEMA, **fields))
    else:
        if failure is not None:
            violation = fields["violation"]
            click.echo(f"VIOLATION at seed {failure.seed} ({violation['durability']}): {failure.violation}")
            click.echo(f"last {len(failure.trace)} events:")
            for line in failure.trace:
                click.echo("  " + line)
            click.echo(f"reproduce: {violation['repro']}")
        rows = [(key, "-" if value is None else value) for key, value in fields.items()
                if key not in ("violation",)]
        click.echo(table(rows, headers=("field", "value")))
    if failure is not None:
        sys.exit(1)
