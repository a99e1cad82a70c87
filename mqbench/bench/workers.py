"""``mqbench bench workers``: load-generator scale-out on a Ray cluster: msgs/s that 1, 2, 4, ...
producer worker actors generate against a sink that stores nothing (``bench.sink``), so the figure
is what the workers can offer, not what a broker can take.

Each count is one measurement: the producer workers (the same worker process and open-loop schedule
as ``mqbench run``, placed by ``mqbench.ray.engine``) are offered ``rate_per_worker`` each (far above
what one worker can send, so each sends as fast as it can within its in-flight window); after a
warm-up, the acknowledged messages of the measured phase (merged worker metrics) give msgs/s; then
the workers are stopped (the unsent backlog is dropped). The
sink runs in this process; its process CPU share over the measured phase (sink + the relay threads)
says whether it was the bottleneck (well under 1.0 core: it was not). The worker processes' CPU
over the measured phase (from each node's agent) gives ``worker_cpu_us_per_msg`` (flat when the
workers scale: each message costs the same) and ``workers_cpu_cores``; ``machine_cpu_busy_share``
is the first node's machine busy share (on a one-machine cluster, all of it). Ratios are to the
1-worker row.
"""
from __future__ import annotations

import asyncio
import time

from mqbench.bench.sink import Sink
from mqbench.harness.metrics import RunMetrics, merge_runs
from mqbench.run.environment import Environment
from mqbench.run.matrix import CellSettings
from mqbench.run.orchestrator import RunSettings, _worker_specs
from mqbench.run.plan import plan_workload
from mqbench.run.workers import WorkerSet

NS_PER_MS = 1_000_000
LEAD_NS = 500 * NS_PER_MS


async def _one(engine, sink: Sink, profile: str, workers_count: int, rate_per_worker: float, seconds: float,
               warmup_s: float, in_flight_max: int, seed: int) -> dict:
    settings = RunSettings(source=profile, cells=[CellSettings(delay="off")], rate=rate_per_worker * workers_count,
                           producers=workers_count, consumers=1, duration_ms=int(seconds * 1000),
                           warmup_ms=int(warmup_s * 1000), window_ms=int(seconds * 1000), seed=seed,
                           in_flight_max=in_flight_max)
    plan = plan_workload(profile, seed)
    env = Environment(namesrv=sink.addr, layout={}, embedded=True)
    specs = [s for s in _worker_specs(settings, plan, settings.cells[0], env) if s["role"] == "producer"]
    workers = WorkerSet()
    workers.workers = await asyncio.to_thread(engine.spawn_workers, specs)
    try:
        workers.attach()
        await workers.wait_until(lambda: all(w.ready for w in workers.workers), 90, "the workers to connect")
        start_ns = time.monotonic_ns() + LEAD_NS
        measure_ns = start_ns + settings.warmup_ms * NS_PER_MS
        workers.send(workers.workers, {"op": "start", "start_ns": start_ns})
        await asyncio.sleep(max(0.0, (measure_ns - time.monotonic_ns()) / 1e9))
        cpu_first, t_first = sink.cpu_s(), time.monotonic_ns()
        nodes_first = await asyncio.to_thread(engine.sample_counters)
        await asyncio.sleep(seconds)
        nodes_last = await asyncio.to_thread(engine.sample_counters)
        cpu_last, t_last = sink.cpu_s(), time.monotonic_ns()
        workers.send(workers.workers, {"op": "stop"})   # the overdue backlog is not drained: only acks awaited
        await workers.wait_until(lambda: all(w.finished for w in workers.workers), 60,
                                 "the workers to finish (" + ", ".join(f"{w.name}: {w.last_progress}" for w in workers.workers
                                                                      if not w.finished) + ")")
    finally:
        workers.terminate()
        engine.end_cell()
    merged = merge_runs([RunMetrics.from_dict(w.done["metrics"], w.name) for w in workers.workers if w.done])
    published = merged.total().counters["published"]
    worker_cpu_s = _workers_cpu_s(nodes_first, nodes_last)
    return {"workers": workers_count, "msgs_per_s": published / seconds, "published_msgs": published,
            "offered_msgs_per_s": rate_per_worker * workers_count,
            "sink_cpu_share": (cpu_last - cpu_first) / ((t_last - t_first) / 1e9),
            "workers_cpu_cores": None if worker_cpu_s is None else worker_cpu_s / seconds,
            "worker_cpu_us_per_msg": None if worker_cpu_s is None or not published else worker_cpu_s * 1e6 / published,
            "machine_cpu_busy_share": _busy_share(nodes_first, nodes_last)}


def _workers_cpu_s(first: dict, last: dict) -> float | None:
    """The worker processes' CPU seconds between two ``RayEngine.sample_counters`` (summed over nodes)."""
    total = 0.0
    for node, b in last.items():
        a = first.get(node)
        if a is None or a["worker_cpu_s"] is None or b["worker_cpu_s"] is None:
            return None
        total += b["worker_cpu_s"] - a["worker_cpu_s"]
    return total


def _busy_share(first: dict, last: dict) -> float | None:
    """CPU busy share of the first node's machine (on one machine every node is the same cores)."""
    for node, b in sorted(last.items()):
        a = first.get(node)
        if a:
            return (b["cpu_busy_s"] - a["cpu_busy_s"]) / (max(1, b["t_ns"] - a["t_ns"]) / 1e9 * b["cpu_count"])
    return None


RECONNECT_PAUSE_S = 5.0


async def _all(options, counts: list[int], profile: str, rate_per_worker: float, seconds: float, warmup_s: float,
               in_flight_max: int, seed: int, sink_host: str, progress=None) -> list[dict]:
    from mqbench.ray.engine import RayEngine

    rows: list[dict] = []
    for index, count in enumerate(counts):
        # A fresh connection and sink per count: a second measurement on one Ray client connection
        # hung here (its workers' sends went unanswered); the pause lets Ray's client proxy reap
        # the previous connection's server (reconnecting at once failed on a zombie process).
        if index:
            await asyncio.sleep(RECONNECT_PAUSE_S)
        engine = await asyncio.to_thread(RayEngine, options)
        sink = Sink()
        await sink.start(sink_host, 0)
        try:
            row = await _one(engine, sink, profile, count, rate_per_worker, seconds, warmup_s, in_flight_max, seed)
        finally:
            await sink.close()
            engine.close()
        first = rows[0]["msgs_per_s"] if rows else row["msgs_per_s"]
        row["ratio_to_1"] = round(row["msgs_per_s"] / first, 2) if first else None
        rows.append(row)
        if progress:
            progress(row)
    return rows


def run_bench(options, counts: list[int], *, profile: str = "orders", rate_per_worker: float = 20000.0,
              seconds: float = 5.0, warmup_s: float = 1.0, in_flight_max: int = 1000, seed: int = 1,
              sink_host: str = "127.0.0.1", progress=None) -> list[dict]:
    """One row per worker count (module doc)."""
    return asyncio.run(_all(options, counts, profile, rate_per_worker, seconds, warmup_s, in_flight_max, seed,
                            sink_host, progress))
