"""``mqbench bench broker``: send throughput, latency and CPU per message against real broker processes.

For every layout, ``mqbench.cluster.launcher.up`` starts the name server and the broker processes
(one per replica) in a temporary folder at a free port offset; this process creates a topic of 4
queues, and ``senders`` load-generator processes (default: the cores the broker processes leave,
at least one; this process when one) keep ``concurrency`` requests in flight between them, each
through mqbench's pipelined sender (``mqbench.client.pipeline``: prebuilt headers, one connection
per broker, each response submitting the next request), sending ``body_bytes`` messages one at a
time (batch 1: SEND_MESSAGE_V2) or as SEND_BATCH_MESSAGE of ``batch`` messages, closed loop, for
``seconds`` after a 0.5 s warm-up.
Bodies are cut from the ``orders`` workload's realistic bodies (seeded), never random bytes.

``queue_types`` is the batching axis (one topic per queue type, created before the cells):

* ``simple`` (``SimpleCQ``, RocketMQ 4.x and 5.x's default topics): the broker stores each message
  of a batch as its own commitlog record (its own DLedger entry on a DLedger store) with its own
  consume-queue unit;
* ``batch`` (``BatchCQ``, a RocketMQ 5 topic with attribute ``queue.type=BatchCQ``): the broker
  stores a client batch as ONE inner-batch record (sysflag INNER_BATCH, spec 4.4), one DLedger
  entry, one batch-consume-queue unit (spec 6) covering its messages' queue offsets. The sender
  sends the same SEND_BATCH_MESSAGE either way; an acknowledged request counts its ``batch``
  messages in both (each has its own queue offset, and a pull hands them out one by one). A
  single message is one record on either, so BatchCQ cells are measured for ``batch`` > 1 only.

Reported per layout, batch and body size (one row each): acknowledged messages per second, requests
per second, per-request latency (submit to acknowledgement) p50/p99/max in ms, and CPU per
acknowledged message, split:

* ``broker_cpu_us_per_msg``: user + system CPU of every broker process of the layout (all
  replicas, summed; the name server is not counted), read at the start and the end of the
  measured phase (``mqbench.run.probes.cpu_seconds``, as ``mqbench run`` reads it);
  ``broker_cpu_s_leaders`` / ``broker_cpu_s_followers`` split it by role (the instances that led
  when the cell began; a leader's event loop is one core, so it is the first to saturate);
* ``client_cpu_us_per_msg``: the sender processes' CPU (the load generator) over the same phase,
  summed; ``senders`` says how many there were and ``failed_requests`` how many were not
  deliveries (not counted as messages);
* ``load_average_1m``: the machine's 1-minute load average at the end of the cell (msgs/s on a
  machine loaded by other work are not comparable; the CPU figures per message mostly are).

An acknowledgement means committed by the group's quorum (``durability`` as given). The machine's
loopback frame rate (and, under ``fsync``, its fdatasync rate) is measured first in the same run;
``throughput_ratio_to_loopback_frames`` divides msgs/s by it (one request is at least one frame
each way). The run is bounded: per cell ``seconds`` + 0.5 s, per layout its start (at most
``wait_s``) and stop.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from mqbench.bench import placement
from mqbench.bench.common import (bench_document, fmt, fmt_ratio, limits_line, measure_limits, own_cpu_s, payload,
                                  percentile, processes_cpu_s, ratio, us_per_msg)
from mqbench.event_loop import run_on_event_loop, use_event_loop
from mqbench.output import table

WARMUP_S = 0.5
TOPIC = "BenchSend"
#: ``--queue-types`` name -> (topic, the topic attributes it is created with)
QUEUE_TYPES = {"simple": (TOPIC, None), "batch": ("BenchSendBatchCQ", {"queue.type": "BatchCQ"})}
START_WAIT_S = 60.0


async def _send_closed_loop(namesrv: str, topic: str, batch: int, concurrency: int, body: bytes, start_at_s: float,
                            seconds: float) -> dict:
    """One sender: ``concurrency`` requests in flight through a ``PipelinedSender``, each response
    submitting the next (no task per request); counts what is acknowledged between ``start_at_s``
    and ``start_at_s + seconds`` (``time.time()``), and this process's CPU over that window."""
    from mqbench.client import OutgoingMessage, Producer
    from mqbench.client.pipeline import BatchBodyTemplate, PipelinedSender, delivered

    loop = asyncio.get_running_loop()
    latencies_ms: list[float] = []
    counts = {"messages": 0, "requests": 0, "failed": 0}
    state: dict = {"counting": False, "stop": False}
    async with Producer(namesrv, "PID_bench", send_timeout_ms=10_000) as producer:
        await producer.send(OutgoingMessage(topic, body))  # route lookup and connection outside the clock
        sender = await PipelinedSender(producer, topic).open()
        bodies = BatchBodyTemplate([body] * batch)     # each batch's messages get fresh UNIQ_KEYs
        outstanding = loop.create_future()
        in_flight = 0
        perf = time.perf_counter

        def submit() -> None:
            nonlocal in_flight
            future = sender.send(body) if batch == 1 else sender.send_batch(bodies)
            in_flight += 1
            started = perf()
            future.add_done_callback(lambda f: done(f, started))

        def done(future: asyncio.Future, started: float) -> None:
            nonlocal in_flight
            in_flight -= 1
            ok = not future.cancelled() and future.exception() is None and delivered(future.result())
            if state["counting"]:
                if ok:
                    latencies_ms.append((perf() - started) * 1000)
                    counts["messages"] += batch
                    counts["requests"] += 1
                else:
                    counts["failed"] += 1
            if not state["stop"]:
                submit()
            elif in_flight == 0 and not outstanding.done():
                outstanding.set_result(None)

        for _ in range(concurrency):
            submit()
        await asyncio.sleep(max(0.0, start_at_s - time.time()))
        state["counting"] = True
        cpu_start, begun = own_cpu_s(), time.monotonic()
        await asyncio.sleep(max(0.0, start_at_s + seconds - time.time()))
        state["counting"] = False
        client_cpu_s, elapsed = own_cpu_s() - cpu_start, time.monotonic() - begun
        state["stop"] = True
        await asyncio.wait_for(outstanding, 30)
    return {"latencies_ms": latencies_ms, "client_cpu_s": client_cpu_s, "elapsed_s": elapsed, **counts}


def _sender_process(args: tuple) -> dict:
    """A sender in a process of its own (``senders`` > 1): the same closed loop on a fresh event
    loop, on ``sender_cpus`` (the last item of ``args``) when given."""
    *job, sender_cpus = args
    placement.pin([0], sender_cpus)
    use_event_loop()
    return asyncio.run(_send_closed_loop(*job))


def senders_default(broker_processes: int, cores: int | None = None) -> int:
    """As many sender processes as there are cores to spare beside the brokers, at least one."""
    return max(1, (cores or os.cpu_count() or 1) - broker_processes)


def _cell(namesrv: str, topic: str, broker_pids: list[int], batch: int, concurrency: int, seconds: float, body: bytes,
          senders: int, sender_cpus: frozenset[int] | None = None, leader_pids: frozenset[int] = frozenset()) -> dict:
    """One cell: ``senders`` processes (this one when 1) sharing ``concurrency`` requests in flight,
    on ``sender_cpus`` when given; broker CPU read at the start and end of the common measured
    window (split into ``leader_pids`` and the others), and where the first broker and the first
    sender ran sampled over it."""
    import multiprocessing
    import threading

    shares = [concurrency // senders + (1 if i < concurrency % senders else 0) for i in range(senders)]
    start_at_s = time.time() + WARMUP_S + (2.0 if senders > 1 else 0.3)   # processes need time to start
    readings: dict[str, float] = {}

    def read_broker_cpu(key: str, at_s: float) -> None:
        time.sleep(max(0.0, at_s - time.time()))
        readings[key] = processes_cpu_s(broker_pids)
        readings[key + "-leaders"] = processes_cpu_s(p for p in broker_pids if p in leader_pids)

    samplers: list[placement.PlacementSampler] = []

    def sample_placement() -> None:
        time.sleep(max(0.0, start_at_s - time.time()))
        children = multiprocessing.active_children()
        sender_pid = os.getpid() if len(jobs) == 1 else (children[0].pid if children else None)
        if sender_pid is not None:
            samplers.append(placement.PlacementSampler(broker_pids[0], sender_pid).start())

    readers = [threading.Thread(target=read_broker_cpu, args=("start", start_at_s), daemon=True),
               threading.Thread(target=read_broker_cpu, args=("end", start_at_s + seconds), daemon=True),
               threading.Thread(target=sample_placement, daemon=True)]
    jobs = [(namesrv, topic, batch, share, body, start_at_s, seconds) for share in shares if share > 0]
    for reader in readers:
        reader.start()
    if len(jobs) == 1:
        # the load generator on the loop the broker and run workers use, this process's policy left alone
        before = placement.available_cpus() if sender_cpus is not None else None
        placement.pin([0], sender_cpus)
        try:
            results = [run_on_event_loop(_send_closed_loop(*jobs[0]))]
        finally:
            placement.pin([0], before)
    else:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            results = pool.map(_sender_process, [(*job, sender_cpus) for job in jobs])
    for reader in readers:
        reader.join()
    same_share = samplers[0].stop() if samplers else None
    broker_cpu_s = readings["end"] - readings["start"]
    leader_cpu_s = readings["end-leaders"] - readings["start-leaders"]
    client_cpu_s = sum(r["client_cpu_s"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    messages = sum(r["messages"] for r in results)
    requests = sum(r["requests"] for r in results)
    latencies_ms = sorted(x for r in results for x in r["latencies_ms"])
    return {"batch_msgs": batch, "concurrency": concurrency, "senders": len(jobs), "acked_msgs": messages,
            "failed_requests": sum(r["failed"] for r in results),
            "measured_s": round(elapsed, 3),
            "throughput_msgs_per_s": round(messages / elapsed, 1),
            "requests_per_s": round(requests / elapsed, 1),
            "latency_ms_p50": _round(percentile(latencies_ms, 0.50)),
            "latency_ms_p99": _round(percentile(latencies_ms, 0.99)),
            "latency_ms_max": _round(latencies_ms[-1] if latencies_ms else None),
            "broker_cpu_s": round(broker_cpu_s, 3), "client_cpu_s": round(client_cpu_s, 3),
            # the split by role (leaders summed, followers summed): a leader's event loop is one
            # core, so it saturates long before the brokers' sum does; None without a known leader
            "broker_cpu_s_leaders": round(leader_cpu_s, 3) if leader_pids else None,
            "broker_cpu_s_followers": round(broker_cpu_s - leader_cpu_s, 3) if leader_pids else None,
            "broker_cpu_us_per_msg": us_per_msg(broker_cpu_s, messages),
            "client_cpu_us_per_msg": us_per_msg(client_cpu_s, messages),
            # the share of the measured window the first sender and the first broker were on the
            # same CPU (sampled every 10 ms; None where /proc cannot say): module doc of placement
            "sender_on_broker_cpu_share": None if same_share is None else round(same_share, 2),
            # CPU µs per message survives a machine shared with other work, msgs/s does not: the
            # 1-minute load average at the end of the cell says how shared it was
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(*, layouts: list[str], batches: list[int], body_sizes: list[int], concurrency: int, seconds: float,
        durability: str, seed: int, limits_budget_s: float, directory: str | None = None,
        progress=None, senders: int | None = None, queue_types: tuple[str, ...] = ("simple",),
        broker_cpus: frozenset[int] | None = None, sender_cpus: frozenset[int] | None = None) -> dict:
    """Measure every (layout, body size, queue type, batch) cell; returns the
    ``mqbench.bench-broker/1`` document (rows carry ``queue_type``: ``SimpleCQ`` or ``BatchCQ``).

    ``progress(row)`` is called after each cell. ``senders``: load-generator processes (None:
    ``senders_default``, the cores the layout's broker processes leave). ``queue_types``: names of
    ``QUEUE_TYPES`` (module doc). ``broker_cpus`` / ``sender_cpus``: the CPUs every broker process /
    every sender is pinned to (None: where the scheduler puts them; ``mqbench.bench.placement``).
    Raises ``UserError`` for an unknown layout or queue type or a cluster that does not start.
    """
    from mqbench.errors import UserError

    from mqbench.broker.layout import load_layout
    from mqbench.cluster import launcher
    from mqbench.cluster.control import ensure_topic
    from mqbench.run.environment import free_port_offset

    for name in layouts:
        load_layout(name)  # an unknown layout is a user error before anything is measured
    for name in queue_types:
        if name not in QUEUE_TYPES:
            raise UserError(f"unknown queue type {name!r} (choose from {', '.join(QUEUE_TYPES)})")
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-broker-", dir=directory))
    limits = measure_limits(base, limits_budget_s, disk=durability == "fsync", loopback=True)
    rows = []
    try:
        for layout_name in layouts:
            layout = load_layout(layout_name)
            state = launcher.up(layout_name, base / layout_name, port_offset=free_port_offset(layout),
                                durability=durability, wait_s=START_WAIT_S)
            try:
                namesrv = launcher.cluster_layout(state).namesrv_addr
                for name in queue_types:
                    topic, attributes = QUEUE_TYPES[name]
                    asyncio.run(ensure_topic(state, layout.instances[0].group, topic, attributes=attributes))
                broker_pids = [r.pid for r in state.processes.values() if r.kind == "broker"]
                leader_pids = frozenset(r.pid for r in launcher.status(state) if r.role == "leader" and r.pid)
                placement.pin(broker_pids, broker_cpus)
                for body_bytes in body_sizes:
                    body = payload(body_bytes, seed)
                    # a single message is one record on either queue type: BatchCQ cells are batch > 1 only
                    for name, batch in ((n, b) for n in queue_types for b in batches
                                        if b > 1 or QUEUE_TYPES[n][1] is None):
                        topic, attributes = QUEUE_TYPES[name]
                        row = {"layout": layout_name, "replicas": len(layout.instances), "durability": durability,
                               "body_bytes": body_bytes, "queue_type": "BatchCQ" if attributes else "SimpleCQ"}
                        row.update(_cell(namesrv, topic, broker_pids, batch, concurrency, seconds, body,
                                         senders or senders_default(len(broker_pids)), sender_cpus,
                                         leader_pids))
                        row["throughput_ratio_to_loopback_frames"] = ratio(
                            row["throughput_msgs_per_s"], limits.get("loopback_small_frames_per_s"))
                        if durability == "fsync":
                            row["requests_ratio_to_fdatasyncs"] = ratio(row["requests_per_s"],
                                                                        limits.get("disk_fdatasync_per_s"))
                        rows.append(row)
                        if progress:
                            progress(row)
            finally:
                launcher.down(state, timeout_s=10)
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return bench_document("broker", seed=seed, seconds_per_cell=seconds, warmup_s=WARMUP_S,
                          concurrency=concurrency, durability=durability, cpu_cores=os.cpu_count(),
                          broker_cpus=None if broker_cpus is None else sorted(broker_cpus),
                          sender_cpus=None if sender_cpus is None else sorted(sender_cpus),
                          limits=limits, rows=rows)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-broker/1`` document."""
    rows = [[r["layout"], r.get("queue_type", "SimpleCQ"), r["batch_msgs"], r["body_bytes"], r.get("senders", 1), r["throughput_msgs_per_s"],
             fmt(r["latency_ms_p50"], ".2f"), fmt(r["latency_ms_p99"], ".2f"),
             fmt(r["broker_cpu_us_per_msg"], ",.1f"), fmt(r["client_cpu_us_per_msg"], ",.1f"),
             fmt_ratio(r["throughput_ratio_to_loopback_frames"], 3), fmt(r.get("sender_on_broker_cpu_share"), ".2f"),
             fmt(r.get("load_average_1m"), ".1f")]
            for r in doc["rows"]]
    head = (f"send, {doc['concurrency']} in flight, durability {doc['durability']}, "
            f"{doc['seconds_per_cell']:g} s per cell after {doc['warmup_s']:g} s warm-up, "
            f"{doc['cpu_cores']} cores shared by brokers and load generator{_pinning(doc)}\n"
            f"{limits_line(doc['limits'])}\n")
    return head + table(rows, ["layout", "queue", "batch", "body B", "senders", "msgs/s", "p50 ms", "p99 ms", "broker CPU µs/msg",
                               "client CPU µs/msg", "msgs/s / loopback frames/s", "same CPU", "load 1m"])


def _pinning(doc: dict) -> str:
    parts = [f"{who} on CPU {','.join(map(str, doc[key]))}" for who, key in (("brokers", "broker_cpus"),
                                                                           ("senders", "sender_cpus"))
             if doc.get(key) is not None]
    return f" ({'; '.join(parts)})" if parts else ""
