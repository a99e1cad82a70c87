"""``mqbench run``: replay a workload open loop against the embedded cluster (or ``--target``), write a result."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mqbench.cli.options import DurationMs, json_option, seed_option
from mqbench.errors import UserError


def _parse_rate(text: str):
    text = text.strip().lower()
    if text in ("max", "profile"):
        return None if text == "profile" else "max"
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--rate {text!r} must be a number of msgs/s, 'profile' or 'max'") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UserError(f"--rate {text!r} must be more than 0")
    return value


def _load_limits(value: str | None) -> dict | None:
    if value is None or value == "none":
        return None
    if value == "measure":
        from mqbench.limits import measure_all

        return measure_all(".", 24_000)
    path = Path(value)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--limits file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--limits file {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != "mqbench.limits/1":
        raise UserError(f"--limits file {path} is not `mqbench limits --json` output (schema mqbench.limits/1)")
    return {k: v for k, v in doc.items() if k not in ("schema", "tool_version")}


@click.command()
@click.argument("workload", metavar="PROFILE|TRACE")
@click.option("--layout", default="raft3", show_default=True,
              help="Layout of the embedded cluster: single, raft3, 3x3 or a layout .toml file.")
@click.option("--codec", default="none", show_default=True,
              help="Producer compression of bodies of at least --compress-over bytes (none, zstd:3, lz4, zlib, snappy).")
@click.option("--batch", default="profile", show_default=True,
              help="Messages per batch send: an integer for every topic, or 'profile' for each topic's own.")
@click.option("--delay", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="on: keep the workload's delayed messages; off: send them undelayed.")
@click.option("--batch-compression", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="on: compress each whole batch body with --codec (mqbench's envelope; RocketMQ never does).")
@click.option("--matrix", default=None, help='Cells to compare, e.g. "codec=none,zstd:3;batch=1,64;delay=off,on".')
@click.option("--duration", "duration_ms", type=DurationMs(), default="30s", show_default=True,
              help="Measured phase (for --rate max: the search's time budget).")
@click.option("--warmup", "warmup_ms", type=DurationMs(), default="5s", show_default=True,
              help="Load before measuring, discarded.")
@click.option("--window", "window_ms", type=DurationMs(), default="10s", show_default=True,
              help="Time-series window.")
@click.option("--rate", "rate_text", default="500", show_default=True,
              help="Offered load in msgs/s, 'profile' (the workload's own timing) or 'max' (find the highest "
                   "sustainable rate).")
@click.option("--target", default="embedded", show_default=True,
              help="'embedded' (start a fresh cluster per cell) or a name server address host:port of an "
                   "existing RocketMQ-protocol cluster (its topics must exist).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="results",
              show_default=True, help="Folder that receives the result folder.")
@seed_option
@json_option
@click.option("--keep-going", is_flag=True, help="Run the remaining cells when one fails (exit 0 if any succeeded).")
@click.option("--producers", type=click.IntRange(1, 16), default=1, show_default=True, help="Producer worker processes.")
@click.option("--consumers", type=click.IntRange(1, 16), default=1, show_default=True, help="Consumer worker processes.")
@click.option("--in-flight", "in_flight_max", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Unacknowledged send requests per producer worker before the sender waits (shows as publish delay).")
@click.option("--compress-over", "compress_over_bytes", type=click.IntRange(0), default=4096, show_default=True,
              help="Compress bodies of at least this many bytes (RocketMQ's default 4096).")
@click.option("--linger", "linger_ms", type=DurationMs(), default="5ms", show_default=True,
              help="Longest wait for a batch to fill.")
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True,
              help="Embedded cluster: quorum in memory or quorum fsynced before an ack.")
@click.option("--drain", "drain_ms", type=DurationMs(), default="10s", show_default=True,
              help="After the producers stop, how long consumers may catch up.")
@click.option("--check-interval", "check_ms", type=DurationMs(), default="2s", show_default=True,
              help="--rate max: length of one check of the search.")
@click.option("--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=1000.0, show_default=True,
              help="--rate max: a check is unhealthy above this p99 publish latency.")
@click.option("--limits", "limits_source", default="none", show_default=True,
              help="Machine limits for the ratio columns: 'none', 'measure' (about 24 s) or a file from "
                   "`mqbench limits --json`.")
@click.option("--keep-stores", is_flag=True, help="Keep the embedded clusters' stores under OUT/.work.")
def run(workload: str, layout: str, codec: str, batch: str, delay: str, batch_compression: str, matrix: str | None, duration_ms: int,
        warmup_ms: int, window_ms: int, rate_text: str, target: str, out_dir: Path, seed: int, as_json: bool,
        keep_going: bool, producers: int, consumers: int, in_flight_max: int, compress_over_bytes: int,
        linger_ms: int, durability: str, drain_ms: int, check_ms: int, max_p99_ms: float, limits_source: str,
        keep_stores: bool) -> None:
    """Replay PROFILE (orders, notifications, iot, a profile file) or TRACE (.parquet) open loop.

    Starts a fresh embedded cluster per matrix cell (or drives --target), sends at the intended times,
    consumes with the workload's consumer groups and prints the result table; the result folder
    (result.json, timeseries.parquet, table.md) goes under --out.
    """
    from mqbench.harness.maxrate import SearchSettings, Thresholds
    from mqbench.harness.report import LoadedResult, render
    from mqbench.harness.results import write_result
    from mqbench.output import document, print_json
    from mqbench.run.matrix import CellSettings, check_value, parse_matrix
    from mqbench.run.orchestrator import RunSettings
    from mqbench.run.orchestrator import run as run_all
    from mqbench.run.progress import ProgressLine

    base = CellSettings(codec=check_value("codec", codec), batch=check_value("batch", batch),
                        delay=check_value("delay", delay), batch_compression=batch_compression)
    settings = RunSettings(
        source=workload, cells=parse_matrix(matrix, base), layout=layout,
        target=None if target == "embedded" else target, duration_ms=duration_ms, warmup_ms=warmup_ms,
        window_ms=window_ms, rate=_parse_rate(rate_text), seed=seed, out_dir=out_dir, producers=producers,
        consumers=consumers, in_flight_max=in_flight_max, compress_over_bytes=compress_over_bytes,
        linger_ms=linger_ms, durability=durability, keep_going=keep_going, keep_stores=keep_stores,
        drain_ms=drain_ms, check_ms=max(200, check_ms), limits=_load_limits(limits_source),
        command_line=["mqbench", *sys.argv[1:]],
        search=SearchSettings(start_rate_per_s=200.0, hold_checks=3),
        thresholds=Thresholds(publish_latency_ms_p99_max=max_p99_ms, published_share_min=0.8),
        progress=ProgressLine(enabled=None if not as_json else False))
    if settings.target is None:
        from mqbench.broker.layout import load_layout

        load_layout(layout)  # a bad layout name fails before anything starts
    doc, failures = run_all(settings)
    for failure in failures:
        click.echo(f"mqbench: cell {failure['name']} failed: {failure['error']}", err=True)
    if doc is None:
        raise UserError("every cell failed; nothing was written")
    folder = write_result(doc, out_dir)
    loaded = [LoadedResult(folder, doc)]
    if as_json:
        print_json(document("mqbench.run/1", result_dir=str(folder), run_id=doc["run_id"],
                            cells=[{"name": c["name"], "settings": c["settings"], "aggregates": c["aggregates"],
                                    "disk_bytes_per_msg": c["disk_bytes_per_msg"],
                                    "replication_bytes": c["replication_bytes"],
                                    "cpu_s_per_million_msgs": c["cpu_s_per_million_msgs"],
                                    "max_rate_search": c["max_rate_search"]} for c in doc["cells"]],
                            failed_cells=failures))
        return
    click.echo(render(loaded, "terminal"), nl=False)
    click.echo(f"result: {folder}", err=True)
