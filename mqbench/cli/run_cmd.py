"""``mqbench run``: replay a workload open loop against the embedded cluster (or ``--target``), write a result."""
from __future__ import annotations

import json
from dataclasses import replace
import sys
from pathlib import Path

import click

from mqbench.cli.options import (DurationMs, json_option, ray_address, ray_head_workers_option, ray_mode_option,
                                 seed_option)
from mqbench.errors import UserError

# per-cell figures of issue 16 that --json repeats (documented in mqbench.harness.results)
MEASURED_FIELDS = ("batch_achieved", "disk_user_bytes_per_msg", "disk_meta_bytes_total", "disk_stamp_bytes_total",
                   "disk_batched_bytes_per_msg",
                   "broker_cpu_us_per_msg",
                   "client_cpu_us_per_msg", "broker_cpu_machine_share", "client_cpu_machine_share",
                   "producer_cpu_us_per_msg", "consumer_cpu_us_per_msg", "consumer_cpu_us_per_delivery")


def _parse_producers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"--producers {text!r} must be a number of worker processes (1-16) or 'auto'") from None
    if not 1 <= value <= 16:
        raise UserError(f"--producers {value} must be between 1 and 16")
    return value


def _auto_producers(settings) -> None:
    """``--producers auto`` (``run.worker_count``): from this machine's cores, the broker processes of
    the cells' largest layout (none for a target) and the consumer workers."""
    import os

    from mqbench.broker.layout import load_layout
    from mqbench.run.worker_count import default_producers

    brokers = None
    if settings.target is None:
        names = {settings.layout, *(cell.layout for cell in settings.cells if cell.layout is not None)}
        brokers = max(len(load_layout(name).instances) for name in names)
    count = default_producers(os.cpu_count() or 1, brokers, settings.consumers, ray=settings.ray is not None)
    settings.producers = count.producers
    settings.producers_basis = count.as_dict()
    if count.note:
        settings.progress.note(f"mqbench: {count.note}")


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


def _load_limits(value: str, out_dir: Path) -> dict | None:
    if value in ("none", "auto", "measure"):
        from mqbench.limits import limits_for_run

        return limits_for_run(value, out_dir, note=lambda text: click.echo(f"mqbench: {text}", err=True))
    path = Path(value)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--limits file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--limits file {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != "mqbench.limits/1":
        raise UserError(f"--limits file {path} is not `mqbench limits --json` output (schema mqbench.limits/1)")
    return {k: v for k, v in doc.items() if k not in ("schema", "tool_version", "machine")}


#: Exit status of ``mqbench run`` (also in its --help and the README).
EXIT_ALL_HELD = 0
EXIT_SATURATED = 3
EXIT_FAILED_CELL = 4


def exit_status(doc: dict) -> int:
    """0 when every cell held; 4 when a cell failed (or a max search did not finish); else 3 when a
    cell saturated."""
    verdicts = [cell["verdict"] for cell in doc["cells"]]
    if doc.get("failed_cells") or "failed" in verdicts:
        return EXIT_FAILED_CELL
    if "saturated" in verdicts:
        return EXIT_SATURATED
    return EXIT_ALL_HELD


_EPILOG = """\b
Verdicts (one per cell, in the table and in result.json):
  held       >= 99% of the messages offered in the measured phase acknowledged within 1 s
             after it; send lateness, send and consume backlogs bounded, publish errors
             <= 0.1% (--rate max: the capacity held on repeat)
  saturated  the offered load was not carried; the signal is named: achieved under offered,
             publish delay growing, send backlog, consume backlog, errors. A valid measurement
             of an overload, never a capacity
  failed     nothing to judge: the cell failed, nothing was acknowledged, or the max search
             did not finish
A fixed-rate cell reports offered and achieved msgs/s, never a capacity. --rate max reports
the highest rate that held every check of its hold (2 checks, the repeat) and of its soak
(--soak-checks more in a row, none failing; a failed soak is repeated once) and, when the
budget affords it, of a confirmation soak after a drain (--confirm-soaks), and the first
rate above it that failed twice, never an average over the search: the bracket (held, first unheld) and its width are in the
verdict and in max_rate_search (bracket_msgs_per_s, bracket_width_share, capacity_checks_held,
capacity_soaked, capacity_soaks_held, soak_failed).

\b
--rate max, the search (mqbench/harness/maxrate.py): ramp x2 from 200 msgs/s; a check is
healthy when >= 95% of the load offered in it was acknowledged (counted over the producers'
own report span), both backlogs <= max(1000 msgs, 1 s of the load), publish errors <= 0.1%
and publish p99 <= --max-p99-ms. A failed check is repeated after a drain (backlogs and
requests in flight down to 50) before it counts; a candidate within 5% of the first unheld
rate is held for 2 checks (its backlogs may not grow by more than 2% of its load or 0.5 s of
it). A failed hold is repeated once, then backs off to what its failing checks absorbed
(--soak-checks 0: the best of its checks), each
failed hold in a row twice as far (3%, 6%, 12%, at most 20%), and once a rate held the
search narrows the bracket (held, failed) from above, at least to its midpoint, until it is
within 5%. Then the soak: the rate runs on for --soak-checks checks and stands only if none
fails and the backlog did not grow (a check failing on its acknowledged share alone is
judged with the check before it: acks lagging at a check's end land in the next). A failed
soak is repeated once, after a drain, as a whole new soak (every check of it must hold: one
stall no longer lowers the rate); failed again, the rate comes down to the median its soak
checks absorbed (80-95% of the rate), held and soaked in one go. A repeat the budget cannot
afford (a whole soak and one more hold) is skipped: the rate comes down at once, to the
median of its soak checks (what the failing check absorbed when fewer than 3 ran). A soak
that held is confirmed (--confirm-soaks): after a drain, a whole new soak at the rate, when
the budget affords it and a whole soak below it; a failed confirmation is not repeated (it is
the soak's repeat, later), the rate comes down as above.
--duration is the search's budget: when about two holds are left and nothing held yet, the
search secures one (holds what just kept up; a failed hold is not repeated and backs off
at least 10%); when it affords a soak and one more hold, the search soaks the rate that
held; a soak it cannot afford whole is shortened (capacity_soaked false); when it runs out,
the highest rate that held stands with its bracket (else the cell fails).
Each check lasts --check-interval after 0.5 s of settling at the new rate; drain checks
last 1 s. For a search bounded at about 90 s wall on an idle machine: --warmup 3s
--duration 60s (the soak then shortened, no confirmation); for three seeds that agree on this
machine (slow phases of 30-60 s, fast ones up to a minute or more): --duration 180s (a
confirmation is afforded when the first soak ends within about 110 s), 240s for capacities
above about 10,000 msgs/s (stepping down from there takes most of 180 s).

\b
Table: profile, layout, cell, offered msgs/s, achieved msgs/s, verdict, pub p50/p99 ms,
e2e p99 ms, achieved batch, broker CPU µs/msg, user disk B/msg (achieved msgs/s per host and
per instance too when the matrix varies the layout), and a legend under it; --wide adds every
other figure (capacity, first unheld rate, send lateness, delayed msg error, consumed msgs/s
(all groups), backlogs, delayed msgs pending, client CPU, shares of the machine's limits...).
result.json (mqbench.result/2, fields in mqbench/harness/results.py): each cell carries
verdict, verdict_signals, verdict_detail, offered_msgs_per_s, achieved_msgs_per_s,
capacity_msgs_per_s and first_unheld_rate_msgs_per_s (max only).

\b
Latencies: pub (publish latency) is the broker's ack time minus the time the send actually
started (its frame queued on the connection), so it holds the broker, the network and the
worker's own event loop, never the pacer; a sender behind its schedule shows as send lateness
(actual minus intended start), and e2e counts from the intended time. The brokers, name server
and workers freeze their start-up objects and collect young objects every 10,000 allocations
(full collections of 50-300 ms were the publish-latency tail); MQBENCH_GC=default keeps
CPython's collector settings, to compare.

\b
Exit status:
  0  every cell held (the result is written)
  2  bad input, or no result written (every cell failed, or a cell failed without --keep-going)
  3  the result is written and at least one cell saturated
  4  the result is written and at least one cell failed (--keep-going) or its max search did
     not finish
  128+N  interrupted by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP): clusters stopped,
         their stores removed, nothing written

\b
Limits (--limits): auto (default) uses this machine's limits measured less than a day ago,
cached in $MQBENCH_CACHE_DIR, else $XDG_CACHE_HOME/mqbench, else ~/.cache/mqbench
(limits-<hostname>.json), and measures them (about 25 s) when there are none; measure refreshes
them; none skips them; FILE takes `mqbench limits --json` output.
"""


@click.command(epilog=_EPILOG)
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
@click.option("--consume", type=click.Choice(["pull", "pop"]), default="pull", show_default=True,
              help="How the consumer groups consume: pull (client rebalance) or pop (RocketMQ 5's broker-side POP: "
                   "pop, ack, invisible time).")
@click.option("--consumer-churn", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="on: each group runs --group-members consumers and restarts them one after another "
                   "(--churn-interval apart, each down for 1 s), a rolling restart through the whole run.")
@click.option("--churn-interval", "churn_interval_ms", type=DurationMs(), default="4s", show_default=True,
              help="--consumer-churn on: time between two member restarts.")
@click.option("--slow-consumer", type=click.Choice(["on", "off"]), default="off", show_default=True,
              help="on: each group runs --group-members consumers that take --processing per message, one of "
                   "them 10x longer (a consumer holding its queues hostage under pull).")
@click.option("--group-members", type=click.IntRange(1, 16), default=None,
              help="Consumers per group in each consumer worker [default: 3 with --consumer-churn or "
                   "--slow-consumer, else 1].")
@click.option("--processing", "processing_us", type=click.IntRange(0, 1_000_000), default=None,
              help="Simulated processing time per message, µs, before the ack [default: 1000 with "
                   "--slow-consumer, else 0].")
@click.option("--invisible-time", "invisible_time_ms", type=DurationMs(), default="10s", show_default=True,
              help="--consume pop: how long a popped message stays invisible before it comes back unacked.")
@click.option("--matrix", default=None, help='Cells to compare, e.g. "codec=none,zstd:3;batch=1,64;delay=off,on", '
                                             '"layout=raft3,3x3" or "consume=pull,pop" (axes codec, batch, delay, '
                                             'batch_compression, consume, layout).')
@click.option("--duration", "duration_ms", type=DurationMs(), default="30s", show_default=True,
              help="Measured phase (for --rate max: the search's time budget; when it runs out, the highest "
                   "rate that held stands).")
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
@click.option("--keep-going", is_flag=True, help="Run the remaining cells when one fails (the failed cell shows "
                                                  "as failed; exit 4).")
@click.option("--producers", "producers_text", default="auto", show_default=True, metavar="N|auto",
              help="Producer worker processes (1-16). auto: one per core to spare, this machine's cores minus "
                   "the layout's broker processes and the consumer workers, at least 1 (with none to spare the "
                   "result says so: the producer then shares the brokers' cores).")
@click.option("--consumers", type=click.IntRange(1, 16), default=1, show_default=True, help="Consumer worker processes.")
@click.option("--in-flight", "in_flight_max", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Unacknowledged send requests per producer worker before the sender waits (shows as publish delay).")
@click.option("--compress-over", "compress_over_bytes", type=click.IntRange(0), default=4096, show_default=True,
              help="Compress bodies of at least this many bytes (RocketMQ's default 4096).")
@click.option("--linger", "linger_ms", type=DurationMs(), default="1s", show_default=True,
              help="A batch goes when it holds --batch messages or when its first message has waited this "
                   "long (one queue per batch, queues rotating per batch); the wait shows as publish delay.")
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True,
              help="Embedded cluster: quorum in memory or quorum fsynced before an ack.")
@click.option("--drain", "drain_ms", type=DurationMs(), default="10s", show_default=True,
              help="After the producers stop, how long consumers may catch up.")
@click.option("--check-interval", "check_ms", type=DurationMs(), default="2s", show_default=True,
              help="--rate max: length of one judged check of the search (drain checks: at most 1 s).")
@click.option("--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=1000.0, show_default=True,
              help="--rate max: a check is unhealthy above this p99 publish latency.")
@click.option("--soak-checks", type=click.IntRange(0, 100), default=10, show_default=True,
              help="--rate max: after its 2-check hold, the rate the search would report must hold this many "
                   "more checks in a row, none failing (about 25 s at the default --check-interval; a failed soak is "
                   "repeated once before the rate comes down); 0: the hold alone (a rate may then hold in a fast "
                   "phase only).")
@click.option("--confirm-soaks", type=click.IntRange(0, 10), default=1, show_default=True,
              help="--rate max: a rate whose soak held is soaked once more per count, after a drain, while the "
                   "budget affords that and a whole soak below it (a soak can fit in one of the machine's fast "
                   "phases, which last up to a minute or more here); a failed confirmation is not repeated, the "
                   "rate comes down; 0: the first soak stands.")
@click.option("--limits", "limits_source", default="auto", show_default=True,
              help="Machine limits for the ratio columns: 'auto' (this machine's cached limits if less than a day "
                   "old, else measured, about 25 s), 'measure' (measure and refresh the cache), 'none', or a file "
                   "from `mqbench limits --json`.")
@click.option("--wide", is_flag=True, help="Print every column, not only the default review table.")
@click.option("--quiet", is_flag=True, help="No progress: neither the live line on a terminal nor the per-window "
                                             "lines printed when stdout is not a terminal.")
@click.option("--keep-stores", is_flag=True, help="Keep the embedded clusters' stores under OUT/.work.")
@click.option("--acl", "acl_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Start the embedded cluster with RocketMQ's ACL (plain_acl.yml, as `cluster up --acl`); the "
                   "workload's clients sign every request (with the cluster's own account), so the run measures "
                   "what the ACL check costs.")
@click.option("--cluster", "ray_cluster", default=None, metavar="ray://HEAD:10001",
              help="Run the workers as Ray actors on a Ray cluster's nodes (needs `pip install 'mqbench[ray]'`; "
                   "mqbench installed on every node); an embedded --layout places each host (brokers, name server) on "
                   "a node of its own, listening on the node's address (a layout host whose address is a node's IP "
                   "goes to that node); broker CPU is read on those nodes. While it runs, `mqbench cluster kill/"
                   "start/status --dir OUT/.work/<run>-cell1` reach its processes through Ray. The result's `ray` "
                   "field names the nodes, their clock offsets, CPU and network.")
@ray_mode_option
@click.option("--workers-per-node", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --cluster: at most this many producer workers (and as many consumer workers) per Ray "
                   "node.")
@click.option("--ray-placement", type=click.Choice(["topic", "spread"]), default="topic", show_default=True,
              help="With --cluster: 'topic' puts a topic's producers and consumers on one node (each node's "
                   "producers send its topics at their share of the rate), so e2e latency is read on one clock; "
                   "'spread' (or when topic cells do not fit) puts producer i and consumer i on node "
                   "i / --workers-per-node, and the table shows the e2e clock bound.")
@ray_head_workers_option
def run(workload: str, layout: str, codec: str, batch: str, delay: str, batch_compression: str, consume: str,
        consumer_churn: str, churn_interval_ms: int, slow_consumer: str, group_members: int | None,
        processing_us: int | None, invisible_time_ms: int, matrix: str | None, duration_ms: int,
        warmup_ms: int, window_ms: int, rate_text: str, target: str, out_dir: Path, seed: int, as_json: bool,
        keep_going: bool, producers_text: str, consumers: int, in_flight_max: int, compress_over_bytes: int,
        linger_ms: int, durability: str, drain_ms: int, check_ms: int, max_p99_ms: float, soak_checks: int,
        confirm_soaks: int, limits_source: str,
        wide: bool, quiet: bool, keep_stores: bool, acl_file: Path | None, ray_cluster: str | None,
        ray_mode: str | None, workers_per_node: int, ray_placement: str, ray_head_workers: bool) -> None:
    """Replay PROFILE (orders, notifications, iot, a profile file) or TRACE (.parquet) open loop.

    Starts a fresh embedded cluster per matrix cell (or drives --target), sends at the intended times,
    consumes with the workload's consumer groups and prints the result table; the result folder
    (result.json, timeseries.parquet, table.md) goes under --out. Each cell gets a verdict, and the
    exit status says whether every cell held (below). When stdout is not a terminal, one line per
    window (time, offered, achieved, publish p50/p99, errors, backlogs) is printed as the run goes,
    unless --quiet (with --json those lines go to stderr).
    Each cell also records the batch the brokers stored (batch_achieved), user and metadata bytes,
    and broker and load-generator CPU.

    Ctrl-C, SIGTERM and SIGHUP stop the cells' clusters, remove their stores and exit 128 + the
    signal with one line; the clusters also die with the command on kill -9 (the next run, or
    `mqbench cluster down --all-stale`, removes what such a run left under --out/.work).
    """
    from mqbench.harness.maxrate import Thresholds
    from mqbench.harness.report import LoadedResult, render
    from mqbench.harness.results import write_result
    from mqbench.output import document, print_json
    from mqbench.run.matrix import CellSettings, check_value, parse_matrix
    from mqbench.run.orchestrator import ConsumerScenario, RunSettings
    from mqbench.run.orchestrator import run as run_all
    from mqbench.output import is_terminal
    from mqbench.run.progress import ProgressLine, WindowLines

    base = CellSettings(codec=check_value("codec", codec), batch=check_value("batch", batch),
                        delay=check_value("delay", delay), batch_compression=batch_compression, consume=consume)
    churn, slow = consumer_churn == "on", slow_consumer == "on"
    if churn_interval_ms < 1000:
        raise UserError("--churn-interval must be at least 1s (each restarted member is down for 1 s)")
    if invisible_time_ms < 1000:
        raise UserError("--invisible-time must be at least 1s")
    scenario = ConsumerScenario(
        members=group_members or (3 if churn or slow else 1), churn_interval_ms=churn_interval_ms if churn else 0,
        slow=slow, processing_us=processing_us if processing_us is not None else (1000 if slow else 0),
        invisible_time_ms=invisible_time_ms)
    producers = 1 if producers_text.strip().lower() == "auto" else _parse_producers(producers_text)
    settings = RunSettings(
        source=workload, cells=parse_matrix(matrix, base), layout=layout,
        target=None if target == "embedded" else target, duration_ms=duration_ms, warmup_ms=warmup_ms,
        window_ms=window_ms, rate=_parse_rate(rate_text), seed=seed, out_dir=out_dir, producers=producers,
        consumers=consumers, in_flight_max=in_flight_max, compress_over_bytes=compress_over_bytes,
        linger_ms=linger_ms, durability=durability, keep_going=keep_going, keep_stores=keep_stores,
        drain_ms=drain_ms, check_ms=max(200, check_ms), limits=None, acl_file=acl_file, consumer_scenario=scenario,
        command_line=["mqbench", *sys.argv[1:]],
        search=replace(RunSettings.default_search(), soak_checks=soak_checks, confirm_soaks=confirm_soaks),
        thresholds=Thresholds(publish_latency_ms_p99_max=max_p99_ms, backlog_s_max=1.0),
        progress=ProgressLine(enabled=False if (as_json or quiet) else None),
        window_lines=WindowLines(sys.stderr if as_json else None, enabled=not quiet and not is_terminal(sys.stdout)))
    address = ray_address(ray_cluster, ray_head_workers, ray_mode)
    if address is not None:
        from mqbench.ray.engine import RayOptions

        settings.ray = RayOptions(address=address, workers_per_node=workers_per_node,
                                  head_workers=ray_head_workers, placement=ray_placement)
        settings.ray.validate()
    if acl_file is not None and settings.target is not None:
        raise UserError("--acl configures the embedded cluster; a --target cluster has its own ACL")
    if acl_file is not None:
        from mqbench.broker.server.acl import load_acl_file

        load_acl_file(acl_file)  # a bad file fails before anything starts
    if settings.target is None:
        from mqbench.broker.layout import load_layout

        for name in {layout, *(cell.layout for cell in settings.cells if cell.layout is not None)}:
            load_layout(name)  # a bad layout name fails before anything starts
    if producers_text.strip().lower() == "auto":
        _auto_producers(settings)
    if limits_source not in ("auto", "measure", "none") and not Path(limits_source).exists():
        raise UserError(f"--limits file {limits_source} does not exist")
    settings.limits = _load_limits(limits_source, out_dir)
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
                                    "max_rate_search": c["max_rate_search"],
                                    **{k: c.get(k) for k in MEASURED_FIELDS},
                                    **{k: c[k] for k in ("verdict", "verdict_signals", "verdict_detail",
                                                         "offered_msgs_per_s", "achieved_msgs_per_s",
                                                         "capacity_msgs_per_s", "first_unheld_rate_msgs_per_s")}}
                                   for c in doc["cells"]],
                            workers=doc.get("workers"), failed_cells=failures, exit_status=exit_status(doc)))
    else:
        click.echo(render(loaded, "terminal", wide=wide), nl=False)
        click.echo(f"result: {folder}", err=True)
    sys.exit(exit_status(doc))
