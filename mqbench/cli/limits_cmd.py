"""``mqbench limits``: this machine's disk, loopback and codec limits, the denominators of every figure."""
from __future__ import annotations

from pathlib import Path

import click

from mqbench.cli.options import json_option
from mqbench.output import document, is_terminal, print_json, table


@click.command()
@click.option("--dir", "directory", type=click.Path(exists=True, file_okay=False, writable=True, path_type=Path),
              default=".", show_default=True, help="Measure the disk holding this directory (a temp file is written and removed).")
@click.option("--budget-s", type=click.IntRange(4, 300), default=24, show_default=True,
              help="Total measuring time; each part runs for its share of it.")
@json_option
def limits(directory: Path, budget_s: int, as_json: bool) -> None:
    """Measure sequential write+fdatasync, fdatasync/s, loopback TCP frames/s and MB/s, and raw codec speed.

    Later figures (mqbench run, store and broker benchmarks) are reported as ratios to these,
    measured in the same run.
    """
    from mqbench.limits import LIMITS_SCHEMA, measure_all

    if is_terminal() and not as_json:
        click.echo(f"measuring for about {budget_s} s...", err=True)
    result = measure_all(directory, budget_s * 1000)
    if as_json:
        print_json(document(LIMITS_SCHEMA, **result))
        return
    machine = result["machine"]
    click.echo(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, "
               f"{(machine['memory_bytes'] or 0) / 2**30:.1f} GiB, Linux {machine['kernel']}, Python {machine['python']}")
    click.echo(table([
        ["disk write+fdatasync (1 MiB writes)", f"{result['disk_write_fdatasync_mb_per_s']:.1f}", "MB/s"],
        ["fdatasync (4 KiB writes)", f"{result['disk_fdatasync_per_s']:,.0f}", "calls/s"],
        ["loopback TCP, 100 B frames", f"{result['loopback_small_frames_per_s']:,.0f}", "frames/s"],
        ["loopback TCP, 64 KiB frames", f"{result['loopback_mb_per_s']:,.1f}", "MB/s"],
    ], ["limit", "value", "unit"]))
    click.echo()
    click.echo(table(([c["codec"], c["batch_msgs"], f"{c['compression_ratio']:.2f}", c["compress_mb_per_s"],
                       c["decompress_mb_per_s"]] for c in result["codecs"]),
                     ["codec (library direct)", "batch", "ratio", "comp MB/s", "decomp MB/s"]))
