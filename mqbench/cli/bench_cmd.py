"""``mqbench bench <what>``: the user-facing benchmarks (the code lives in ``mqbench.bench``)."""
from __future__ import annotations

import click

from mqbench.cli.options import IntList, json_option, seed_option
from mqbench.output import is_terminal, print_json

limits_budget_option = click.option(
    "--limits-budget-s", type=click.FloatRange(1, 60), default=4, show_default=True,
    help="Seconds spent measuring this machine's limits (the ratios' denominators) in the same run.")
dir_option = click.option(
    "--dir", "directory", type=click.Path(file_okay=False, writable=True), default=None,
    help="Where to write stores (default: the system temp folder); everything written is removed.")


def _names(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise click.BadParameter("give at least one name")
    return names


def _emit(doc: dict, as_json: bool, render) -> None:
    if as_json:
        print_json(doc)
    else:
        click.echo(render(doc))


def _stop_on_sigterm() -> None:
    """SIGTERM (``timeout``, a CI runner) ends the run through the same ``finally`` as ^C, so the
    clusters a benchmark started are stopped instead of left running."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _progress(as_json: bool, describe):
    """A per-row progress line on a terminal only (quiet when piped or with --json)."""
    if as_json or not is_terminal():
        return None
    return lambda row: click.echo(describe(row), err=True)


@click.group()
def bench() -> None:
    """The user-facing benchmarks, each with ratios to this machine's limits and CPU µs per message.

    Every benchmark measures the machine's limits (disk, loopback) in the same run, is bounded by
    its flags, and takes --json (schema mqbench.bench-<what>/1, units last in field names).
    """


@bench.command()
@click.option("--layouts", default="single,raft3", show_default=True,
              help="Built-in layouts or layout files, comma separated.")
@click.option("--batch", "batches", type=IntList(), default="1,64", show_default=True,
              help="Messages per request (1: SEND_MESSAGE_V2, more: SEND_BATCH_MESSAGE).")
@click.option("--queue-type", "queue_types", default="simple", show_default=True,
              help="Topic queue types, comma separated: simple (SimpleCQ: RocketMQ 4.x, and 5.x's default; a "
                   "batch is stored as one commitlog record, one DLedger entry, per message) and/or batch "
                   "(BatchCQ, RocketMQ 5 only, topic attribute queue.type=BatchCQ: one record and one DLedger "
                   "entry per batch). msgs/s counts the messages acknowledged either way.")
@click.option("--body-bytes", "body_sizes", type=IntList(), default="1024", show_default=True,
              help="Body sizes in bytes, comma separated (realistic order JSON, cut to size).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Requests in flight, shared by the sender processes (pipelined, no task per request).")
@click.option("--senders", type=click.IntRange(1, 64), default=None,
              help="Load-generator processes [default: the cores the layout's broker processes leave, at least 1].")
@click.option("--seconds", type=click.FloatRange(0.2, 300), default=3.0, show_default=True,
              help="Measured seconds per cell, after a 0.5 s warm-up.")
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True)
@click.option("--broker-cpus", default=None, metavar="LIST",
              help="Pin every broker process to these CPUs (taskset's list form: 0 or 0,1 or 0-3) "
                   "[default: where the scheduler puts them].")
@click.option("--sender-cpus", default=None, metavar="LIST",
              help="Pin the load generator to these CPUs. With --broker-cpus: the same CPU puts an "
                   "unbatched closed loop's two turn-takers on one core, different ones apart; the "
                   "'same CPU' column says where unpinned runs landed [default: not pinned].")
@limits_budget_option
@dir_option
@seed_option
@json_option
def broker(layouts, batches, queue_types, body_sizes, concurrency, senders, seconds, durability, broker_cpus,
           sender_cpus, limits_budget_s, directory, seed, as_json):
    """Send msgs/s, latency p50/p99, and broker and client CPU µs/msg, per layout, batch and body size.

    Starts each layout as real processes on loopback (free ports), sends closed-loop with mqbench's
    pipelined sender in --senders processes, then stops it. Broker CPU is every replica's process CPU
    summed; client CPU is the sender processes' (the load generator), summed.
    """
    from mqbench.bench import broker as bench_broker
    from mqbench.bench.placement import parse_cpus

    _stop_on_sigterm()

    describe = lambda r: (f"{r['layout']} {r['queue_type']} batch {r['batch_msgs']} body {r['body_bytes']} B: "  # noqa: E731
                          f"{r['throughput_msgs_per_s']:,.0f} msgs/s")
    doc = bench_broker.run(layouts=_names(layouts), batches=batches, body_sizes=body_sizes, concurrency=concurrency,
                           seconds=seconds, durability=durability, seed=seed, limits_budget_s=limits_budget_s,
                           directory=directory, progress=_progress(as_json, describe), senders=senders,
                           queue_types=tuple(_names(queue_types)),
                           broker_cpus=parse_cpus(broker_cpus), sender_cpus=parse_cpus(sender_cpus))
    _emit(doc, as_json, bench_broker.render)


@bench.command()
@click.option("--layout", "layout_name", default="single", show_default=True,
              help="Built-in layout or layout file whose first group is filled and drained.")
@click.option("--messages", type=click.IntRange(1, 100_000_000), default=1_000_000, show_default=True,
              help="Backlog size in messages, written straight into the stopped broker's store.")
@click.option("--body-bytes", type=click.IntRange(1, 4 << 20), default=128, show_default=True,
              help="Body size in bytes (realistic order JSON, cut to size).")
@click.option("--queues", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Queues of the topic the backlog is spread over (one pull loop each).")
@click.option("--pull-batch", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Messages asked for per PULL_MESSAGE (RocketMQ's pullBatchSize).")
@click.option("--consumers", type=click.IntRange(1, 64), default=None,
              help="Consumer processes of the one group, each on its share of the queues (at most --queues). "
                   "Default: one per core the layout's broker processes leave (at least 1, at most one per queue).")
@click.option("--timeout-s", type=click.FloatRange(1, 3600), default=300, show_default=True,
              help="The drain stops after this many seconds (the row says how many arrived).")
@limits_budget_option
@dir_option
@seed_option
@json_option
def pull(layout_name, messages, body_bytes, queues, pull_batch, consumers, timeout_s, limits_budget_s, directory, seed,
         as_json):
    """Drain msgs/s of consumer processes on a backlog, with broker and client CPU µs/msg.

    Starts the layout as real processes on loopback (free ports), creates the topic and sends one
    message, stops it, writes the backlog straight into the leader's store (the store's own append
    path: a million messages in seconds, not minutes of sends), starts it again and drains the
    backlog with --consumers processes of one group, each an mqbench Consumer on its share of the
    queues. Broker CPU is every replica's process CPU summed over the drain; client CPU is the
    consumer processes' summed, and each process's is shown too.
    """
    from mqbench.bench import pull as bench_pull

    _stop_on_sigterm()
    doc = bench_pull.run(layout_name=layout_name, messages=messages, body_bytes=body_bytes, queues=queues,
                         pull_batch=pull_batch, consumers=consumers, seed=seed, limits_budget_s=limits_budget_s,
                         timeout_s=timeout_s, directory=directory)
    _emit(doc, as_json, bench_pull.render)


@bench.command()
@click.option("--version", "store_version", type=click.Choice(["v4", "v5", "v4-dledger", "v5-dledger"]),
              default="v5", show_default=True, help="Storage format version of the benchmarked store.")
@click.option("--batch", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Messages per append_batch call.")
@click.option("--seconds", type=click.FloatRange(0.05, 60), default=2.0, show_default=True,
              help="Seconds per append cell (12 cells with the default body sizes).")
@click.option("--body-bytes", "body_sizes", type=IntList(), default="100,1024,16384", show_default=True,
              help="Body sizes in bytes, comma separated.")
@click.option("--recovery-bytes", type=click.IntRange(1 << 20, 64 << 30), default=1 << 30, show_default=True,
              help="Size of the commitlog whose crash recovery is timed.")
@limits_budget_option
@dir_option
@seed_option
@json_option
def store(store_version, batch, seconds, body_sizes, recovery_bytes, limits_budget_s, directory, seed, as_json):
    """Append, cold sequential read and crash-recovery throughput as ratios to this disk's bandwidth.

    Appends under the none, interval:200ms and sync flush policies (and sync with 4 writers sharing
    fdatasyncs), with CPU µs per message.
    """
    from mqbench.bench import store as bench_store

    describe = lambda r: f"{r['kind']} {r['flush_policy'] or ''} {r['body_bytes']} B: done"  # noqa: E731
    doc = bench_store.run(version=store_version, batch=batch, seconds=seconds, body_sizes=body_sizes,
                          recovery_bytes=recovery_bytes, seed=seed, limits_budget_s=limits_budget_s,
                          directory=directory, progress=_progress(as_json, describe))
    _emit(doc, as_json, bench_store.render)


@bench.command()
@click.option("--layouts", default="raft3,3x3", show_default=True,
              help="Built-in layouts or layout files, comma separated.")
@click.option("--kills", type=click.IntRange(1, 200), default=20, show_default=True,
              help="Leaders killed per layout (round-robin over its groups).")
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True)
@limits_budget_option
@click.option("--dir", "directory", type=click.Path(file_okay=False, writable=True), default=None,
              help="Keep the clusters' stores and logs here (default: a temp folder, removed).")
@json_option
def failover(layouts, kills, durability, limits_budget_s, directory, as_json):
    """Time from a leader's SIGKILL to the next acknowledged send, vs DLedger's ~10 s.

    Also the election time, leaders per host before the kills, after each failover and after the
    restarts, and the load generator's CPU µs per acknowledged send. Real processes on loopback.
    """
    from mqbench.bench import failover as bench_failover

    _stop_on_sigterm()
    progress = None if as_json else (lambda line: click.echo(line, err=True))
    doc = bench_failover.run(layouts=_names(layouts), kills=kills, durability=durability,
                             limits_budget_s=limits_budget_s, directory=directory, progress=progress)
    _emit(doc, as_json, bench_failover.render)


@bench.command()
@click.option("--pending", "pending_counts", default="10000,1000000", show_default=True,
              help="Pending timer counts, comma separated (one case each).")
@click.option("--probes", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Timers whose delivery error is measured.")
@click.option("--probe-seconds", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              help="The probes' due times are spread over this many seconds.")
@click.option("--burst", type=click.IntRange(1, 1_000_000), default=20000, show_default=True,
              help="Timers due at the same millisecond.")
@limits_budget_option
@dir_option
@seed_option
@json_option
def timer(pending_counts, probes, probe_seconds, burst, limits_budget_s, directory, seed, as_json):
    """Timer delivery error (p50/p99/max, count early) and expiry-burst msgs/s, vs RocketMQ's 1 s.

    Runs a one-replica Raft group with the broker's delay service in this process.
    """
    from mqbench.bench import timer as bench_timer

    try:
        counts = [int(part) for part in pending_counts.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{pending_counts!r} is not a list of integers", param_hint="--pending") from None
    if not counts or min(counts) < 0 or max(counts) > 100_000_000:
        raise click.BadParameter("give counts from 0 to 100000000", param_hint="--pending")
    describe = lambda r: f"done: {r['pending_timers']} pending"  # noqa: E731
    doc = bench_timer.run(pending_counts=counts, probes=probes, probe_seconds=probe_seconds, burst=burst, seed=seed,
                          limits_budget_s=limits_budget_s, directory=directory, progress=_progress(as_json, describe))
    _emit(doc, as_json, bench_timer.render)


@bench.command()
@click.option("--source", type=click.Choice(["v4", "v5", "v4-dledger", "v5-dledger"]), default="v5-dledger",
              show_default=True, help="Storage format version of the built source store.")
@click.option("--targets", default="v5,v4", show_default=True, help="Target versions, comma separated.")
@click.option("--size-bytes", type=click.IntRange(1 << 20, 256 << 30), default=2 << 30, show_default=True,
              help="Log size of the source store.")
@click.option("--small-bytes", type=click.IntRange(1 << 20, 256 << 30), default=256 << 20, show_default=True,
              help="Log size of the small store whose peak RSS is compared.")
@click.option("--verify", is_flag=True,
              help="Also run the full verify after each migration (a second pass, timed on its own).")
@click.option("--jobs", "jobs_list", default=None, metavar="N[,N...]",
              help="Worker processes of each migration (migrate --jobs), comma separated: each target is migrated "
                   "once per value (e.g. 0,2 shows the parallel speed-up in the same run). Default: migrate's.")
@click.option("--rolling", is_flag=True, help="Instead, time a rolling upgrade of a raft3 cluster under traffic.")
@click.option("--rolling-to", type=click.Choice(["v4-dledger", "v5-dledger"]), default="v4-dledger",
              show_default=True, help="Target version of the rolling upgrade.")
@limits_budget_option
@dir_option
@seed_option
@json_option
def migrate(source, targets, size_bytes, small_bytes, verify, jobs_list, rolling, rolling_to, limits_budget_s, directory,
            seed, as_json):
    """Migration MB/s as ratios to cp -r and to the disk, CPU µs/msg and peak RSS; or --rolling.

    Builds a --source store of --size-bytes, times cp -r of it (page cache dropped, synced) and
    then `mqbench migrate` to each of --targets in a child process, in the same run: the ratio to
    cp is the figure to compare across machines (cp sees the same disk and load). CPU µs/msg is the
    child's user+system time per message, its worker processes' included ("of it workers"; "cores
    used" is CPU time / elapsed, the parallel speed-up; --jobs 0,2 compares); peak RSS is its ru_maxrss, also shown for a
    --small-bytes store (equal peaks: memory does not grow with the store). --verify times the
    full verify separately (verify MB/s); it is not part of the migration's MB/s.

    --rolling starts raft3 as real processes, upgrades it replica by replica under traffic and
    prints each replica's write unavailability and whether anything acknowledged was lost.
    """
    from mqbench.bench import migrate as bench_migrate

    if rolling:
        _stop_on_sigterm()
        doc = bench_migrate.run_rolling(target=rolling_to, limits_budget_s=limits_budget_s, directory=directory)
        _emit(doc, as_json, bench_migrate.render_rolling)
        return
    known = ("v4", "v5", "v4-dledger", "v5-dledger")
    names = _names(targets)
    if any(name not in known for name in names):
        raise click.BadParameter(f"{targets!r}: each target is one of {', '.join(known)}", param_hint="--targets")
    jobs = None
    if jobs_list:
        try:
            jobs = [int(j) for j in _names(jobs_list)]
        except ValueError:
            raise click.BadParameter(f"{jobs_list!r}: whole numbers, comma separated", param_hint="--jobs") from None
        if any(j < 0 for j in jobs):
            raise click.BadParameter(f"{jobs_list!r}: 0 or more", param_hint="--jobs")
    doc = bench_migrate.run(source=source, targets=names, size_bytes=size_bytes, small_bytes=small_bytes,
                            verify=verify, seed=seed, limits_budget_s=limits_budget_s, directory=directory, jobs=jobs)
    _emit(doc, as_json, bench_migrate.render)


@bench.command()
@click.option("--profiles", default="orders,notifications,iot", show_default=True,
              help="Built-in workload profiles whose bodies are measured, comma separated.")
@click.option("--codecs", "codec_specs", default="zlib:5,zstd:3,lz4", show_default=True,
              help="Codec specs, comma separated (see mqbench codecs list).")
@click.option("--batches", "batch_sizes", type=IntList(), default="16,64,256", show_default=True,
              help="Whole-batch sizes in messages.")
@click.option("--messages", type=click.IntRange(1, 1_000_000), default=4096, show_default=True,
              help="Messages per profile.")
@click.option("--min-time-ms", type=click.IntRange(1, 60_000), default=100, show_default=True,
              help="Each path of each cell is repeated for at least this long.")
@limits_budget_option
@click.option("--no-limits", is_flag=True, help="Skip the raw codec speed (no ratios to it).")
@seed_option
@json_option
def compression(profiles, codec_specs, batch_sizes, messages, min_time_ms, limits_budget_s, no_limits, seed, as_json):
    """Per-message vs whole-batch compression: stored bytes, ratio, MB/s and CPU µs/msg vs the raw codec.

    Runs the client's and broker's own compression code on realistic bodies; nothing is sent. The
    raw codec speed (the limits) is measured per profile, sharing --limits-budget-s.
    """
    from mqbench.bench import compression as bench_compression

    describe = lambda c: f"{c['profile']} {c['codec']} {c['mode']}: done"  # noqa: E731
    profiles = _names(profiles)
    doc = bench_compression.run(profiles=profiles, codec_specs=_names(codec_specs), batch_sizes=batch_sizes,
                                messages=messages, min_time_ms=min_time_ms,
                                limits_budget_ms=None if no_limits else int(limits_budget_s * 1000 / len(profiles)),
                                seed=seed,
                                progress=_progress(as_json, describe))
    _emit(doc, as_json, bench_compression.render)


@bench.command()
@click.option("--replicas", type=click.IntRange(1, 7), default=3, show_default=True)
@click.option("--durability", type=click.Choice(["memory", "fsync", "both"]), default="both", show_default=True)
@click.option("--concurrency", "concurrencies", type=IntList(), default="1,64", show_default=True,
              help="Puts in flight, comma separated (one cell each).")
@click.option("--seconds", type=click.FloatRange(0.1, 300), default=3.0, show_default=True,
              help="Measured seconds per cell, after a 0.5 s warm-up.")
@click.option("--body-bytes", type=click.IntRange(1, 4 << 20), default=1024, show_default=True)
@limits_budget_option
@dir_option
@seed_option
@json_option
def replicated(replicas, durability, concurrencies, seconds, body_bytes, limits_budget_s, directory, seed, as_json):
    """Puts/s, latency and CPU µs per put through one Raft group whose replicas share this process."""
    from mqbench.bench import replicated as bench_replicated

    describe = lambda r: f"{r['durability']} x{r['concurrency']}: {r['puts_per_s']:,.0f} puts/s"  # noqa: E731
    doc = bench_replicated.run(replicas=replicas,
                               durabilities=["memory", "fsync"] if durability == "both" else [durability],
                               concurrencies=concurrencies, seconds=seconds, body_bytes=body_bytes, seed=seed,
                               limits_budget_s=limits_budget_s, directory=directory,
                               progress=_progress(as_json, describe))
    _emit(doc, as_json, bench_replicated.render)


@bench.command("raft-core")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--batch", "batches", type=IntList(), default="1,16,256", show_default=True,
              help="Entries proposed at once, comma separated.")
@click.option("--seconds", type=click.FloatRange(0.05, 120), default=2.0, show_default=True, help="Seconds per cell.")
@click.option("--body-bytes", type=click.IntRange(1, 4 << 20), default=1024, show_default=True)
@limits_budget_option
@seed_option
@json_option
def raft_core(nodes, batches, seconds, body_bytes, limits_budget_s, seed, as_json):
    """Entries/s and CPU µs per entry through the sans-I/O Raft core alone (no network, no disk)."""
    from mqbench.bench import raft_core as bench_raft_core

    describe = lambda c: f"{c['durability']} batch {c['batch_entries']}: {c['entries_per_s']:,} entries/s"  # noqa: E731
    doc = bench_raft_core.run(nodes=nodes, batches=batches, seconds=seconds, body_bytes=body_bytes, seed=seed,
                              limits_budget_s=limits_budget_s, progress=_progress(as_json, describe))
    _emit(doc, as_json, bench_raft_core.render)


@bench.command()
@click.option("--cluster", "address", required=True, metavar="ray://HEAD:10001",
              help="The Ray cluster whose worker nodes run the producer workers ('auto' inside a Ray job).")
@click.option("--workers", "counts", type=IntList(), default="1,2,4", show_default=True,
              help="Producer worker actors per measurement, comma separated.")
@click.option("--workers-per-node", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.5, 120), default=5.0, show_default=True,
              help="Measured seconds per count, after a 1 s warm-up.")
@click.option("--rate-per-worker", type=click.FloatRange(1), default=20000.0, show_default=True,
              help="Offered msgs/s per worker: far above what one can send, so each sends flat out.")
@click.option("--profile", default="orders", show_default=True, help="The workload whose messages are sent.")
@click.option("--sink-host", default="127.0.0.1", show_default=True,
              help="Address the sink listens on (this machine's address the nodes reach, on a real cluster).")
@seed_option
@json_option
def workers(address, counts, workers_per_node, seconds, rate_per_worker, profile, sink_host, seed, as_json):
    """Load-generator scale-out: msgs/s generated by N producer worker actors on Ray nodes, against a
    sink in this process that acknowledges without storing (not the bottleneck: its CPU share is
    shown), with the ratio to one worker."""
    from mqbench.bench.common import fmt, fmt_ratio
    from mqbench.bench.workers import run_bench
    from mqbench.output import document
    from mqbench.ray.engine import RayOptions

    # spread: every worker sends every topic (a topic cell would generate messages of other topics
    # only to drop them, and the figure is the workers' generation rate)
    options = RayOptions(address=address, workers_per_node=workers_per_node, placement="spread")
    options.validate()
    rows = run_bench(options, counts, profile=profile, rate_per_worker=rate_per_worker, seconds=seconds, seed=seed,
                     sink_host=sink_host,
                     progress=_progress(as_json, lambda r: f"{r['workers']} workers: {r['msgs_per_s']:,.0f} msgs/s"))

    def render(_doc) -> str:
        lines = ["workers  msgs/s  ratio to 1  worker CPU µs/msg  worker cores  machine busy  sink CPU share"]
        for r in rows:
            lines.append(f"{r['workers']:>7}  {fmt(r['msgs_per_s'])}  {fmt_ratio(r['ratio_to_1'])}  "
                         f"{fmt(r['worker_cpu_us_per_msg'])}  {fmt(r['workers_cpu_cores'], '.2f')}  "
                         f"{fmt(r['machine_cpu_busy_share'], '.2f')}  {r['sink_cpu_share']:.2f}")
        return "\n".join(lines) + "\n"

    _emit(document("mqbench.bench-workers/1", address=address, workers_per_node=workers_per_node,
                   seconds=seconds, rate_per_worker_msgs_per_s=rate_per_worker, rows=rows), as_json, render)
