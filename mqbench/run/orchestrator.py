"""One cell, and a whole run: from settings to a validated ``result.json`` document.

A cell, step by step (``run_cell``):

1. the environment: a fresh embedded cluster of the layout in ``OUT/.work/<run>-cell<k>/`` (removed
   afterwards unless ``keep_stores``; its processes die with this one however it ends, and the
   folders a killed run left are removed when the next run starts), or the ``--target`` cluster;
2. topics created (embedded) or checked (target); consumer groups are the workload's (suffixed
   with the run id on a target, so old committed offsets are never reused);
3. consumer and producer workers spawned; when all are ``ready`` every worker gets the same
   ``start_ns`` (0.3 s ahead); the warm-up runs, then the measured phase;
4. at the start and end of the measured phase: ``raftBytesSent`` (embedded); at every window edge
   of it: CPU seconds of the brokers (embedded) and of the load generator (workers + this process);
5. producers end at the end of the measured phase (or when a max-rate search has finished), then
   consumers get up to ``drain_ms`` to receive what is owed, and stop;
6. metrics of every worker merged (histograms added, never averaged), bytes on disk measured, the
   cell document built (``harness.results.build_cell``) plus backlog figures:
   ``publish_backlog_msgs_end`` / ``consume_backlog_msgs_end`` (at the end of the measured phase),
   ``consume_backlog_msgs_after_drain``, and per window the backlogs at its end;
7. embedded: the cluster stopped, its stores read (``run.stored``): the achieved batch, user and
   metadata bytes.

A cell fails (UserError naming why) when a worker fails, no message was acknowledged in the
measured phase, or the cluster does not start; ``run`` stops at the first failed cell unless
``keep_going``, then records failures in ``failed_cells`` and fails only if every cell failed.

``--rate max``: the search (``harness.maxrate``) starts after the warm-up. After each rate change
the load runs ``settle_ms`` unjudged (the pipeline fills at the new rate, so the first acks' lag is
not mistaken for overload), then for ``check_ms`` (a drain check at rate 0: at most
``DRAIN_CHECK_MS``) whose ``Observation`` (from the tracker, over the producers' own report span)
is fed to the search, and the rate it returns is sent to the producers. The measured phase ends
when the search ends (its length is then what ran) or at ``duration_ms``, the search's budget:
then ``give_up`` keeps the highest rate that held, if any.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field, replace
from pathlib import Path

from mqbench.cluster.owners import disown, remove_stale
from mqbench.errors import UserError
from mqbench.harness.maxrate import DRAIN, MaxRateSearch, SearchSettings, Thresholds
from mqbench.harness.histograms import percentile_us
from mqbench.harness.metrics import RunMetrics, merge_runs
from mqbench.harness.results import build_cell, build_result, workload_info
from mqbench.harness.verdict import Bounds
from mqbench.run.environment import Environment, prepare_topics, start_embedded, stop_embedded, target_layout
from mqbench.run.matrix import CellSettings
from mqbench.run.payload import measure_payload
from mqbench.run.plan import WorkloadPlan, plan_workload
from mqbench.run.producer_driver import LINGER_MS_DEFAULT
from mqbench.run.pace import PaceMeter, machine_pace
from mqbench.run.probes import CpuSample, WorkerCpu, allocated_bytes, cpu_figures, replication_bytes, sample_cpu
from mqbench.run.progress import ProgressLine, WindowLines, describe, window_line
from mqbench.run.stored import predicted_footprint, stored_figures
from mqbench.run.tracker import Tracker
from mqbench.run.workers import WorkerSet

NS_PER_MS = 1_000_000
READY_TIMEOUT_S = 90.0
DRAIN_CHECK_MS = 1000  # a drain check (rate 0) only waits for backlogs: shorter than a judged check
LEAD_NS = 300 * NS_PER_MS


@dataclass(frozen=True)
class ConsumerScenario:
    """How the consumer workers behave (``run_cmd``'s --group-members, --consumer-churn,
    --slow-consumer, --processing, --invisible-time; the consumer driver's contract)."""

    members: int = 1                 # consumers per group in each consumer worker
    churn_interval_ms: int = 0       # > 0: a rolling restart of the members, one every interval
    slow: bool = False               # member 0 of each group processes 10x slower
    processing_us: int = 0           # simulated processing per message before the ack
    invisible_time_ms: int = 10_000  # POP invisible time

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class RunSettings:
    source: str
    cells: list[CellSettings]
    layout: str = "raft3"
    target: str | None = None
    duration_ms: int = 30_000
    warmup_ms: int = 5_000
    window_ms: int = 10_000
    rate: float | str | None = 500.0  # msgs/s; None: as the workload records; "max": search
    seed: int = 1
    out_dir: Path = Path("results")
    producers: int = 1
    producers_basis: dict | None = None  # how --producers auto chose (run.worker_count); None: given
    consumers: int = 1
    in_flight_max: int = 1000
    compress_over_bytes: int = 4096
    linger_ms: int = LINGER_MS_DEFAULT
    durability: str = "memory"
    acl_file: Path | None = None  # embedded cluster with RocketMQ's ACL; the workers sign their requests
    ray: object = None  # mqbench.ray.engine.RayOptions: workers (and layout hosts) on a Ray cluster's nodes
    consumer_scenario: ConsumerScenario = field(default_factory=ConsumerScenario)
    keep_going: bool = False
    keep_stores: bool = False
    drain_ms: int = 10_000
    check_ms: int = 2_000
    settle_ms: int = 500  # after each rate change, before a check starts (acks of the new rate arrive)
    send_timeout_ms: int = 3_000
    limits: dict | None = None
    command_line: list[str] = field(default_factory=list)
    search: SearchSettings = field(default_factory=lambda: RunSettings.default_search())
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(backlog_s_max=1.0))
    bounds: Bounds = field(default_factory=Bounds)  # when a fixed-rate cell held (harness.verdict)
    progress: ProgressLine = field(default_factory=lambda: ProgressLine(enabled=False))
    window_lines: WindowLines = field(default_factory=WindowLines)  # one line per window when piped
    run_id: str = field(default_factory=lambda: f"{os.getpid() & 0xFFFF:04x}{time.time_ns() & 0xFFFFFF:06x}")

    @staticmethod
    def default_search() -> SearchSettings:
        """``--rate max``'s search (README, ``mqbench run --help``): a 2-check hold within 5 % of the
        first unheld rate, then a soak of 10 more checks in a row at it (about 25 s: the machine's
        slow phases come every few seconds, a rate that holds only in its fast phases must fail),
        a failed soak repeated once (a whole new soak) before the rate comes down, and a soak that
        held confirmed once by a whole new soak after a drain, while the budget affords it (a
        first soak can fit inside one of this machine's fast phases, which last up to a minute)."""
        return SearchSettings(start_rate_per_s=200.0, hold_checks=2, tolerance=0.05, hold_growth_share_max=0.02,
                              hold_growth_floor_s=0.5, soak_checks=10, soak_repeats=1, confirm_soaks=1)

    def validate(self) -> None:
        if self.duration_ms <= 0 or self.window_ms <= 0 or self.warmup_ms < 0:
            raise UserError("--duration and the window must be > 0 and --warmup >= 0")
        if self.producers < 1 or self.consumers < 1:
            raise UserError("at least one producer and one consumer worker are needed")
        if self.rate not in (None, "max") and not (isinstance(self.rate, (int, float)) and self.rate > 0):
            raise UserError(f"--rate must be a number > 0, 'profile' or 'max', not {self.rate!r}")
        if not self.cells:
            raise UserError("no cell to run")
        if self.target and any(cell.layout is not None for cell in self.cells):
            raise UserError("the layout axis needs the embedded cluster; a --target cluster has the layout it has")
        self.search.validate()


def _worker_specs(settings: RunSettings, plan: WorkloadPlan, cell: CellSettings, env: Environment) -> list[dict]:
    suffix = "" if env.embedded else f"-{settings.run_id}"
    subscriptions = [(group + suffix, topic, expression) for group, topic, expression in plan.subscriptions]
    common = {"namesrv": env.namesrv, "run_id": settings.run_id, "duration_ms": settings.duration_ms,
              "warmup_ms": settings.warmup_ms, "window_ms": settings.window_ms, "subscriptions": subscriptions,
              "progress_ms": 500}
    if env.credentials is not None:
        common["credentials"] = [env.credentials.access_key, env.credentials.secret_key]
    specs = []
    for index in range(settings.consumers):
        specs.append({**common, "role": "consumer", "worker_index": index, "workers": settings.consumers,
                      "consume_from": "first" if env.embedded else "last", "consume": cell.consume,
                      **settings.consumer_scenario.as_dict()})
    for index in range(settings.producers):
        specs.append({**common, "role": "producer", "worker_index": index, "workers": settings.producers,
                      "source": settings.source, "seed": settings.seed, "rate": settings.rate, "codec": cell.codec,
                      "compress_over_bytes": settings.compress_over_bytes, "batch_msgs": plan.batch_msgs(cell),
                      "linger_ms": settings.linger_ms, "delay": cell.delay == "on",
                      "batch_compression": cell.batch_compression == "on",
                      "in_flight_max": settings.in_flight_max, "send_timeout_ms": settings.send_timeout_ms,
                      "ack_grace_ms": settings.bounds.ack_grace_ms,
                      "group": "PID_mqbench", "topics": plan.topic_names})
    return specs


def _bounds(settings: RunSettings, plan: WorkloadPlan, cell: CellSettings) -> Bounds:
    """The verdict's bounds for a cell: a batched message waits up to the linger by design, so the
    send-lateness bound of a cell that batches is raised by the linger (it is not a slipping schedule)."""
    if max(plan.batch_msgs(cell).values(), default=1) <= 1:
        return settings.bounds
    return replace(settings.bounds,
                   publish_delay_ms_p99_max=settings.bounds.publish_delay_ms_p99_max + settings.linger_ms)


def _hold_latency(search: MaxRateSearch, checks: list) -> dict:
    """Publish latency p50/p99 over the hold's checks at the capacity (merged histograms), so a max
    cell's latency is the one at the rate it reports, not the whole search's (overload included)."""
    from mqbench.harness.maxrate import HOLD, SOAK
    from mqbench.harness.histograms import merge_histograms

    at_capacity = [h for state, rate, h in checks if state in (HOLD, SOAK) and rate == search.capacity_msgs_per_s]
    merged = merge_histograms(at_capacity)
    p50, p99 = percentile_us(merged, 50.0), percentile_us(merged, 99.0)
    return {"hold_publish_latency_ms_p50": None if p50 is None else p50 / 1000,
            "hold_publish_latency_ms_p99": None if p99 is None else p99 / 1000}


def _search_outcome(search: MaxRateSearch) -> str:
    """``held 1,200 msgs/s, 1,250 did not (bracket 4.0% wide)`` or ``no rate held``."""
    result = search.result()
    held, unheld, width = (result["capacity_msgs_per_s"], result["first_unheld_rate_msgs_per_s"],
                           result["bracket_width_share"])
    if held is None:
        return "no rate held"
    return f"held {held:,.0f} msgs/s" + ("" if unheld is None else f", {unheld:,.0f} did not (bracket {width:.1%} wide)")


def _window_line(settings: RunSettings, tracker: Tracker, label: str, phase: str, elapsed_s: float,
                 window_s: float) -> None:
    if not settings.window_lines.enabled:
        return
    now, before, histogram = tracker.take_window()
    p50, p99 = percentile_us(histogram, 50.0), percentile_us(histogram, 99.0)
    clock = datetime.now(timezone.utc).strftime("%H:%M:%SZ")
    settings.window_lines.write(window_line(clock, label, phase, elapsed_s, window_s, now, before,
                                            None if p50 is None else p50 / 1000, None if p99 is None else p99 / 1000))


@dataclass
class _Probe:
    cpu: CpuSample
    replication_bytes: int | None = None
    nodes: dict | None = None  # Ray node id -> NodeAgent.counters (a run on a Ray cluster)

    @property
    def cpu_s(self) -> float | None:
        return self.cpu.broker_s


def _cpu_now(env: Environment) -> CpuSample:
    """The brokers' CPU seconds and this process's (the workers' come from their own reports:
    ``probes.WorkerCpu``)."""
    if env.embedded and env.ray is not None and env.state is not None:
        # brokers on Ray nodes: their pids mean nothing here; each host's actor reads its own node's
        brokers = [r for r in env.state.processes.values() if r.kind == "broker"]
        readings = env.state.hosts().cpu_s(brokers)
        sample = sample_cpu(None, [os.getpid()], time.monotonic_ns())
        return replace(sample, broker_s=sum(v for v in readings.values() if v is not None))
    return sample_cpu(env.broker_pids if env.embedded else None, [os.getpid()], time.monotonic_ns())


async def _cpu_sample(env: Environment) -> CpuSample:
    """``_cpu_now``; on Ray nodes off the event loop (actor calls), locally at once as ever."""
    if env.ray is None:
        return _cpu_now(env)
    return await asyncio.to_thread(_cpu_now, env)


async def _probe(env: Environment) -> _Probe:
    cpu = await _cpu_sample(env)
    nodes = None if env.ray is None else await asyncio.to_thread(env.ray.sample_counters)
    if not env.embedded:
        return _Probe(cpu, nodes=nodes)
    return _Probe(cpu, await replication_bytes(env.broker_addrs, credentials=env.credentials), nodes=nodes)


def _truncate(metrics: RunMetrics, duration_ms: int) -> RunMetrics:
    """The same metrics over a shorter measured phase (a max-rate search that ended early)."""
    if duration_ms >= metrics.duration_ms:
        return metrics
    short = RunMetrics(metrics.start_ns, duration_ms=max(1, duration_ms), warmup_ms=metrics.warmup_ms,
                       window_ms=metrics.window_ms)
    short.events_in_warmup = metrics.events_in_warmup
    short.events_after_end = metrics.events_after_end
    for index, window in metrics.windows.items():
        if index < short.window_count:
            short.windows[index] = window
    return short


async def _run_cell_async(settings: RunSettings, plan: WorkloadPlan, cell: CellSettings, env: Environment,
                          label: str) -> dict:
    routes = await prepare_topics(env, plan.topic_plans(cell))
    if not env.embedded:
        env.layout = await target_layout(env.namesrv, routes["brokers"])
    disk_before = await asyncio.to_thread(allocated_bytes, env.store_dirs)
    tracker = Tracker()
    workers = WorkerSet()
    if env.ray is None:
        workers.spawn(_worker_specs(settings, plan, cell, env))
    else:
        workers.workers = await asyncio.to_thread(env.ray.spawn_workers, _worker_specs(settings, plan, cell, env))
    search = MaxRateSearch(settings.search, settings.thresholds) if settings.rate == "max" else None
    progress = settings.progress
    worker_cpu = WorkerCpu()   # the workers' own CPU reports: the producer / consumer split
    try:
        for worker in workers.workers:
            worker_cpu.add_worker(worker.name, worker.role)

        def on_message(worker, message: dict) -> None:
            tracker.observe(worker.name, message)
            worker_cpu.observe(worker.name, worker.role, message)
        workers.on_message = on_message
        workers.attach()
        await workers.wait_until(lambda: all(w.ready for w in workers.workers), READY_TIMEOUT_S,
                                 "the driver workers to connect")
        producers, consumers = workers.of_role("producer"), workers.of_role("consumer")
        start_ns = time.monotonic_ns() + LEAD_NS
        measure_ns = start_ns + settings.warmup_ms * NS_PER_MS
        end_ns = measure_ns + settings.duration_ms * NS_PER_MS
        workers.send(workers.workers, {"op": "start", "start_ns": start_ns})
        rate_now = settings.rate if isinstance(settings.rate, (int, float)) else None
        if search is not None:
            rate_now = search.settings.start_rate_per_s
            workers.send(producers, {"op": "rate", "rate_per_s": rate_now, "from_ns": start_ns})
        probe_start = probe_end = None
        hold_checks: list = []  # (state, rate, publish latency histogram) of every check
        cpu_edges: list[CpuSample] = []     # at each window edge of the measured phase
        check_started_ns = None
        pace = PaceMeter()  # the machine's pace during each check: context for the capacity (run.pace)
        settle_until_ns = measure_ns
        stopped_ns = None
        total_s = (settings.warmup_ms + settings.duration_ms) / 1000
        last_acked, last_t, acked_rate = 0, time.monotonic_ns(), 0.0
        last_window_ns, next_window_ns = start_ns, start_ns + settings.window_ms * NS_PER_MS
        tracker.take_window()
        while not all(w.finished for w in producers):
            await workers.wait_until(lambda: True, 1, "")  # surfaces a worker failure
            await asyncio.sleep(0.25)
            now = time.monotonic_ns()
            if probe_start is None and now >= measure_ns:
                probe_start = await _probe(env)
                cpu_edges.append(probe_start.cpu)
            if probe_end is None and (now >= end_ns or stopped_ns is not None):
                probe_end = await _probe(env)
            elif probe_start is not None and now >= measure_ns + len(cpu_edges) * settings.window_ms * NS_PER_MS:
                cpu_edges.append(await _cpu_sample(env))
            if search is not None and now >= measure_ns and stopped_ns is None:
                check_ms = settings.check_ms if search.state != DRAIN else min(settings.check_ms, DRAIN_CHECK_MS)
                if check_started_ns is None:
                    if now >= settle_until_ns:  # the pipeline has filled at the new rate: judge from here
                        tracker.start_check()
                        pace.start()
                        check_started_ns = now
                elif now - check_started_ns >= check_ms * NS_PER_MS:
                    observation = tracker.take_check((now - check_started_ns) // NS_PER_MS, rate_now)
                    hold_checks.append((search.state, rate_now, tracker.last_check_histogram))
                    # what the budget (--duration) still affords, so a search short of it secures a hold
                    checks_left = max(0, end_ns - now) // ((settings.check_ms + settings.settle_ms) * NS_PER_MS)
                    rate_now = search.observe(observation, checks_left=int(checks_left))
                    pace.close(search.checks)
                    check_started_ns = None
                    settle_until_ns = now + (settings.settle_ms * NS_PER_MS if rate_now else 0)
                    if search.finished:
                        stopped_ns = now
                        workers.send(producers, {"op": "stop"})
                        progress.note(f"{label}: max-rate search {search.state} after {search.checks} checks: "
                                      + _search_outcome(search))
                    else:
                        workers.send(producers, {"op": "rate", "rate_per_s": rate_now, "from_ns": now})
                else:
                    pace.sample()
            totals = tracker.totals()
            elapsed_s = (now - start_ns) / 1e9
            if now - last_t >= 1_000_000_000:  # workers report twice a second: rate over >= 1 s
                acked_rate = (totals["acked"] - last_acked) / ((now - last_t) / 1e9)
                last_acked, last_t = totals["acked"], now
            phase = "warm-up" if now < measure_ns else "measuring"
            progress.show(describe(label, phase, max(0.0, elapsed_s), total_s, totals, rate_now, acked_rate))
            if now >= next_window_ns:
                _window_line(settings, tracker, label, phase, elapsed_s, (now - last_window_ns) / 1e9)
                last_window_ns, next_window_ns = now, now + settings.window_ms * NS_PER_MS
            if now > end_ns + 120 * 1_000_000_000:
                raise UserError("producers did not finish within 120 s after the end of the run")
        if search is not None and not search.finished:
            # The time budget (--duration) ran out: the highest rate that held stands (its bracket
            # says how wide it still was), else the search failed.
            search.give_up()
            progress.note(f"{label}: max-rate search out of time after {search.checks} checks: "
                          + _search_outcome(search))
        if probe_start is None:
            probe_start = await _probe(env)
        if probe_end is None:
            probe_end = await _probe(env)
        end_totals = tracker.totals()
        loop = asyncio.get_running_loop()
        drain_deadline = loop.time() + settings.drain_ms / 1000
        while not tracker.drained() and loop.time() < drain_deadline:
            progress.show(describe(label, "draining", (time.monotonic_ns() - start_ns) / 1e9, total_s,
                                   tracker.totals(), None, 0.0))
            await workers.wait_until(lambda: True, 1, "")
            await asyncio.sleep(0.1)
        workers.send(consumers, {"op": "stop"})
        await workers.wait_until(lambda: all(w.finished for w in consumers), 30, "the consumers to stop")
        failure = workers.failure()
        if failure:
            raise UserError(f"driver failed: {failure}")
        after_drain = tracker.totals()
    finally:
        progress.close()
        workers.terminate()
    parts = [RunMetrics.from_dict(w.done["metrics"], f"metrics of {w.name}") for w in workers.workers
             if w.done and w.done.get("metrics")]
    merged = merge_runs(parts)
    if stopped_ns is not None:
        merged = _truncate(merged, -(-(stopped_ns - measure_ns) // NS_PER_MS))
    last_error = next((w.done.get("last_error") for w in producers if w.done and w.done.get("last_error")), None)
    if merged.total().counters["published"] == 0:
        raise UserError("no message was acknowledged in the measured phase"
                        + (f" (last publish error: {last_error})" if last_error else ""))
    disk_after = await asyncio.to_thread(allocated_bytes, env.store_dirs)
    acked_all = after_drain["acked"]
    disk_per_msg = (disk_after - disk_before) / acked_all if env.embedded and acked_all else None
    replication = None
    if probe_start.replication_bytes is not None and probe_end.replication_bytes is not None:
        replication = max(0, probe_end.replication_bytes - probe_start.replication_bytes)
    cpu = None if probe_start.cpu_s is None else max(0.0, probe_end.cpu_s - probe_start.cpu_s)
    cell_settings = {**cell.as_dict(), "consume": cell.consume, "consumer_scenario": settings.consumer_scenario.as_dict(),
                     "batch_msgs_by_topic": plan.batch_msgs(cell),
                     "compress_over_bytes": settings.compress_over_bytes,
                     "rate": settings.rate if settings.rate is not None else "profile",
                     "payload": measure_payload(settings.source, settings.seed, cell.codec,
                                                settings.compress_over_bytes,
                                                max(plan.batch_msgs(cell).values(), default=1))}
    if isinstance(settings.rate, (int, float)):
        offered = float(settings.rate)
    elif settings.rate is None:  # profile timing: what the schedule wanted sent in the measured phase
        offered = (after_drain["measured_sent"] + end_totals["publish_backlog"]) / (merged.duration_ms / 1000)
    else:
        offered = None
    backlogs = tracker.window_backlogs(merged.measure_start_ns, merged.window_ms, merged.window_count)
    search_record = None if search is None else {
        **search.result(), **_hold_latency(search, hold_checks),
        "machine_pace": machine_pace(search.history, pace.samples, search.capacity_msgs_per_s)}
    doc = build_cell(cell.name, cell_settings, merged, disk_bytes_per_msg=disk_per_msg, replication_bytes=replication,
                     cpu_seconds=cpu, max_rate_search=search_record,
                     offered_msgs_per_s=offered, window_extras=backlogs, bounds=_bounds(settings, plan, cell),
                     extra_aggregates={
        "intended_msgs_total": end_totals["intended"], "acked_msgs_total": acked_all,
        "publish_errors_total": after_drain["errors"], "delayed_acked_total": after_drain["delayed_acked"],
        "expected_deliveries_total": after_drain["expected_deliveries"],
        "consumed_undelayed_total": after_drain["consumed_undelayed"],
        "foreign_msgs_consumed": after_drain["foreign"],
        "publish_backlog_msgs_end": end_totals["publish_backlog"],
        "consume_backlog_msgs_end": end_totals["consume_backlog"],
        "consume_backlog_msgs_after_drain": after_drain["consume_backlog"],
        "delayed_pending_msgs_end": after_drain["delayed_pending"],
        # By intended time: of the messages offered in the measured phase, how many were acknowledged.
        "measured_offered_msgs": after_drain["measured_sent"] + end_totals["publish_backlog"],
        "measured_acked_msgs": after_drain["measured_acked"],
        "measured_acked_on_time_msgs": after_drain["measured_acked_on_time"],
    })
    cpu_edges = [worker_cpu.split(edge) for edge in cpu_edges]
    probe_start.cpu, probe_end.cpu = worker_cpu.split(probe_start.cpu), worker_cpu.split(probe_end.cpu)
    doc.update(cpu_figures(probe_start.cpu, probe_end.cpu, merged.total().counters["published"],
                           broker_cpus=_broker_node_cpus(env, probe_end), consumed=merged.total().counters["consumed"],
                           client_cpus=_client_node_cpus(env, probe_end)))
    edges = cpu_edges[:len(doc["windows"])] + [probe_end.cpu]
    for index, window in enumerate(doc["windows"]):
        first, last = edges[index:index + 2] if index + 1 < len(edges) else (None, None)
        window["broker_cpu_s"] = None if first is None or first.broker_s is None else max(0.0, last.broker_s - first.broker_s)
        window["client_cpu_s"] = None if first is None else max(0.0, last.client_s - first.client_s)
    doc["last_publish_error"] = last_error
    if env.ray is not None:
        doc["ray"] = env.ray.report(probe_start.nodes, probe_end.nodes)
    return doc


def _client_node_cpus(env: Environment, probe: _Probe) -> int | None:
    """This machine's CPU count plus that of the Ray nodes that host driver workers (the client
    share's divisor on Ray: the workers report their own CPU, ``probes.WorkerCpu``); None locally
    or when no such node answered."""
    if env.ray is None or not probe.nodes:
        return None
    nodes = set(env.ray.placed["producer"]) | set(env.ray.placed["consumer"])
    counts = [probe.nodes[node]["cpu_count"] for node in nodes if node in probe.nodes]
    return (os.cpu_count() or 1) + sum(counts) if counts else None


def _broker_node_cpus(env: Environment, probe: _Probe) -> int | None:
    """The summed CPU count of the Ray nodes that host the brokers (the broker share's divisor on
    Ray: ``probes.cpu_figures``); None for brokers on this machine or nodes that did not answer."""
    if env.ray is None or not env.embedded or not probe.nodes:
        return None
    counts = [probe.nodes[node]["cpu_count"] for node in set(env.ray.host_nodes.values()) if node in probe.nodes]
    return sum(counts) or None


def _add_stored(doc: dict, env: Environment, plan: WorkloadPlan, cell: CellSettings,
                settings: RunSettings) -> None:
    """The cell's figures read from its stores (``stored`` module doc): the achieved batch of the
    topics the cell batches, user bytes per acknowledged message and metadata bytes, the stored
    messages by class, and what ``codecs.footprint`` predicts for the cell (``disk_predicted``)."""
    sizes = plan.batch_msgs(cell)
    batched = {topic for topic, size in sizes.items() if size > 1}
    codec = cell.codec
    figures = stored_figures(env.group_stores, batched, set(plan.topic_names), None if codec.is_none else codec)
    acked = doc["aggregates"]["acked_msgs_total"]
    asked = max((sizes[t] for t in batched), default=1)
    achieved = figures.batch.as_dict()
    mean = achieved["msgs_per_record_mean"]
    achieved.update(asked_msgs=asked, under_half_asked=mean is not None and mean < asked / 2)
    doc["batch_achieved"] = achieved
    doc["disk_user_bytes_per_msg"] = figures.user_bytes / acked if acked else None
    doc["disk_meta_bytes_total"] = figures.meta_bytes
    doc["disk_stamp_bytes_total"] = figures.stamp_bytes
    msgs = figures.batch.msgs_total
    doc["disk_batched_bytes_per_msg"] = figures.batched_bytes / msgs if batched and msgs else None
    doc["disk_stored_classes"] = {f"{kind}_{unit}": getattr(figures, f"{kind}_{unit}")
                                  for kind in ("plain", "parked", "delivered") for unit in ("msgs", "bytes")}
    doc["disk_predicted"] = predicted_footprint(plan, cell, settings.seed, settings.compress_over_bytes, sizes,
                                               figures.dledger_framing)


def run_cell(settings: RunSettings, plan: WorkloadPlan, cell: CellSettings, index: int,
             engine=None) -> tuple[dict, dict]:
    """(cell document, layout field) of one cell, in its own environment (``engine``: a RayEngine)."""
    label = f"cell {index + 1}/{len(settings.cells)} {cell.name}"
    work = Path(settings.out_dir) / ".work" / f"{settings.run_id}-cell{index + 1}"
    env = None
    try:
        if settings.target:
            env = Environment(namesrv=settings.target, layout={}, embedded=False, ray=engine)
        else:
            layout = cell.layout or settings.layout
            settings.progress.show(f"{label}: starting the {layout} cluster"
                                   + ("" if engine is None else " on the Ray cluster's nodes"))
            env = start_embedded(layout, work, settings.durability, acl_file=settings.acl_file, ray=engine)
        doc = asyncio.run(_run_cell_async(settings, plan, cell, env, label))
        if cell.layout is not None:
            doc["layout"] = dict(env.layout)  # the matrix varies the layout: each cell names its own
        if env.embedded and engine is None:
            stop_embedded(env)   # the stores are read whole once their brokers have stopped
            _add_stored(doc, env, plan, cell, settings)
        else:  # a target's stores, or stores on Ray nodes' own disks, are not read from here
            doc.update(batch_achieved=None, disk_user_bytes_per_msg=None, disk_meta_bytes_total=None,
                       disk_stamp_bytes_total=None, disk_batched_bytes_per_msg=None, disk_stored_classes=None,
                       disk_predicted=None)
        return doc, env.layout
    finally:
        settings.progress.close()
        if env is not None and env.embedded:
            stop_embedded(env)
        if engine is not None:
            engine.end_cell()
        if settings.keep_stores:
            disown(work)     # kept on purpose: not a leftover for the next run to remove
        else:
            shutil.rmtree(work, ignore_errors=True)
            try:
                (Path(settings.out_dir) / ".work").rmdir()
            except OSError:
                pass


def run(settings: RunSettings) -> tuple[dict | None, list[dict]]:
    """Every cell; returns (the result document or None when every cell failed, failed cells)."""
    from mqbench.limits import machine_info

    settings.validate()
    if settings.target is None:     # what a killed run left behind (its owner is gone)
        for folder in remove_stale(Path(settings.out_dir) / ".work"):
            settings.progress.note(f"removed {folder}, left by a run that was killed")
    started_utc = datetime.now(timezone.utc)
    plan = plan_workload(settings.source, settings.seed)
    cells, failures, layout = [], [], None
    engine = None
    if settings.ray is not None:
        from mqbench.ray.engine import RayEngine

        engine = RayEngine(settings.ray)
    try:
        for index, cell in enumerate(settings.cells):
            try:
                doc, cell_layout = run_cell(settings, plan, cell, index, engine)
            except UserError as exc:
                failures.append({"name": cell.name, "error": str(exc)})
                settings.progress.note(f"cell {cell.name} failed: {exc}")
                if not settings.keep_going:
                    raise UserError(f"cell {cell.name} failed: {exc}") from exc
                continue
            cells.append(doc)
            layout = layout or cell_layout
    finally:
        if engine is not None:
            engine.close()
    if not cells:
        return None, failures
    workload = plan.workload
    if workload.trace is not None:
        info = workload_info(trace_file=workload.trace.path,
                             description=workload.profile.description if workload.profile else "")
    else:
        info = workload_info(profile=workload.profile.name, description=workload.profile.description)
    base = settings.cells[0]
    doc = build_result(
        cells=cells, seed=settings.seed, command_line=settings.command_line, machine=machine_info(),
        limits=settings.limits, layout=layout, workload=info,
        codec={"spec": base.codec.spec, "compress_over_bytes": settings.compress_over_bytes,
               "applies_to": "each message body of at least compress_over_bytes; whole batch bodies only in "
                             "cells with batch_compression=on (RocketMQ never compresses batches)"},
        batch={"batch": base.batch, "linger_ms": settings.linger_ms, "delay": base.delay,
               "batch_consume_queue": "on topics batched in the cell (embedded cluster)"},
        payload_source={"kind": "trace" if workload.trace is not None else "profile",
                         "source": workload.payload_source,
                         "measured": [c["settings"]["payload"] for c in cells]},
        warmup_ms=settings.warmup_ms, duration_ms=max(c["aggregates"]["duration_ms"] for c in cells),
        window_ms=settings.window_ms, created_utc=started_utc)
    doc["run_id"] = settings.run_id
    doc["target"] = settings.target
    doc["rate"] = settings.rate if settings.rate is not None else "profile"
    doc["workers"] = {"producers": settings.producers, "consumers": settings.consumers,
                      "in_flight_max": settings.in_flight_max, "producers_basis": settings.producers_basis}
    doc["failed_cells"] = failures
    return doc, failures
