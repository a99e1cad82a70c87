"""``mqbench bench pull``: how fast one consumer drains a backlog from a real broker process.

The run, on one layout (``single`` by default), in a temporary folder at a free port offset:

1. ``mqbench.cluster.launcher.up`` starts the name server and the broker(s); a topic of ``queues``
   queues is created and one message sent through mqbench's Producer (the route, the topic and the
   store exist as a client made them).
2. The cluster is stopped (a clean shutdown) and the backlog is written straight into the stopped
   group leader's store through its replicated log, as the broker writes it (``store.replicated``:
   one record per queue built by ``prepare_batch_records``, each copy placed and restamped with its
   own queue and physical offsets by ``append_replicated_batch``, then committed and dispatched,
   ``batch_write`` entries at a time, in the log's current term, round-robin over the queues):
   ``messages`` messages of ``body_bytes`` realistic order JSON (seeded), with ``UNIQ_KEY`` and
   ``WAIT`` properties as a client sends them (one ``UNIQ_KEY`` per queue: the drain does not
   look at it). When the broker had applied its whole log, its
   applied mark (``raft-applied.json``) is moved past the backlog, which the fill dispatched: the
   restarted broker serves at once instead of applying a million entries again. This fills a million messages in seconds, where sends
   through the broker would take minutes on a small machine. The other replicas of a replicated
   layout get the same entries when the leader replicates them after the restart.
3. The cluster is started again on the same stores; once its leader answers, ``consumers``
   processes (default ``default_consumers``: one per core the broker processes leave, at most one
   per queue; a real drain of a big backlog runs
   several consumers of one group) each run one mqbench Consumer of the same group
   (``consume_from="first"``, one long-poll loop per assigned queue, ``pull_batch`` messages per
   pull). Every process joins the group (a heartbeat) before any allocates queues, so RocketMQ's
   average allocation gives each its fixed share and no queue moves during the drain; then all
   start at once and receive until the backlog has arrived (they report their counts to this
   process every ``PROGRESS_S``).

Reported (``mqbench.bench-pull/1``): the fill time, the drain's messages per second (the go to the
last message received by any consumer), the CPU per message of the broker processes (all replicas,
summed) and of the consumer processes (summed: ``client_cpu_us_per_msg``; and each process's
received messages, CPU µs per message and share of a core over the drain: ``consumer_processes``), the machine's loopback limits measured in the same run
and ``drain_ratio_to_loopback_frames``, and the 1-minute load average (msgs/s on a machine shared
with other work are not comparable; the CPU figures mostly are). The run is bounded: the drain
stops after ``timeout_s`` (the row then says how many were received).
"""
from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import shutil
import tempfile
import time
from pathlib import Path

from mqbench.bench.common import (bench_document, fmt, fmt_ratio, limits_line, measure_limits, payload,
                                  processes_cpu_s, ratio, us_per_msg)
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY, PROPERTY_WAIT
from mqbench.errors import UserError
from mqbench.event_loop import use_event_loop
from mqbench.output import table

TOPIC = "BenchPull"
GROUP = "CID_bench_pull"
START_WAIT_S = 60.0
BATCH_WRITE = 4096
PROGRESS_S = 0.25


async def _first_send(namesrv: str, body: bytes) -> None:
    from mqbench.client import OutgoingMessage, Producer

    async with Producer(namesrv, "PID_bench_pull", send_timeout_ms=10_000) as producer:
        await producer.send(OutgoingMessage(TOPIC, body))


def fill_store(store_root: Path, *, messages: int, body: bytes, queues: int, batch_write: int = BATCH_WRITE) -> None:
    """Append ``messages`` messages of ``body`` to the stopped broker store at ``store_root``,
    round-robin over ``queues`` queues of ``TOPIC`` (see module doc)."""
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.store.raft_storage import AppliedMark
    from mqbench.broker.store.store import Store

    store = Store.open(store_root, raft_mode=True)
    try:
        log, dledger = store.replicated, store.dledger
        mark = AppliedMark(store)
        applied_all = mark.index >= dledger.last_index + 1          # Raft index = DLedger index + 1
        term = dledger.last_term
        # one record per queue, built by the store's leader path; every copy gets its own queue and
        # physical offsets when it is placed (restamped), as a follower places a leader's bytes
        props = [{PROPERTY_UNIQ_KEY: f"{q:032X}", PROPERTY_WAIT: "true"} for q in range(queues)]
        templates = [log.prepare_batch_records(TOPIC, q, [BatchItem(body, props[q])], consolidate=False)[0][0]
                     for q in range(queues)]
        written = 0
        while written < messages:
            n = min(batch_write, messages - written)
            entries = [(term, templates[(written + i) % queues], 1) for i in range(n)]
            with store.queues.combined_writes():
                log.append_replicated_batch(entries)
                log.commit(dledger.last_index)
            written += n
        if applied_all:
            # the broker had applied its whole log, and the backlog is dispatched already: without
            # this its restart would apply every backlog entry again before it serves
            mark.save(store, dledger.last_index + 1)
    finally:
        store.close()


def default_consumers(queues: int, broker_processes: int) -> int:
    """``--consumers`` default: one process per core the brokers leave (each broker process is
    given a core), at least one, at most one per queue. On a shared machine more consumer
    processes than that only share the same cores, at more CPU per message (measured: 2 processes
    beside a ``single`` broker on 2 loaded cores spent 19.5 µs per message, 1 spent 13.1)."""
    return max(1, min(queues, (os.cpu_count() or 1) - broker_processes))


def _consumer_process(namesrv: str, pull_batch: int, conn) -> None:
    """One drain consumer process (module doc, step 3): join the group, wait for the go, receive
    until told to stop; reports ``("progress", n)`` every ``PROGRESS_S`` and ``("done", received,
    cpu_s, last_receipt_monotonic)`` at the end."""
    use_event_loop()
    asyncio.run(_consume(namesrv, pull_batch, conn))


async def _consume(namesrv: str, pull_batch: int, conn) -> None:
    from mqbench.client import Consumer

    consumer = Consumer(namesrv, GROUP, consume_from="first", pull_batch_size=pull_batch,
                        buffer_messages_max=max(4096, 4 * pull_batch))
    consumer.subscribe(TOPIC)
    received, last = 0, None
    try:
        # in the group before anyone allocates, so no queue moves mid-drain (the restarted broker may
        # not be routed yet: a heartbeat reaches no one until it is)
        deadline = time.monotonic() + START_WAIT_S
        while not await consumer.heartbeat() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        conn.send(("joined",))
        if conn.recv() != ("go",):
            return
        cpu_start = time.process_time()
        await consumer.start()
        next_report = time.monotonic() + PROGRESS_S
        while True:
            batch = await consumer.receive(1024, timeout_ms=200)
            now = time.monotonic()
            if batch:
                received += len(batch)
                last = now
            if now >= next_report:      # the pipe only on a tick: its syscalls cost a drain 10 % of its CPU
                if conn.poll():
                    break
                conn.send(("progress", received))
                next_report = now + PROGRESS_S
        cpu_s = time.process_time() - cpu_start
    finally:
        await consumer.close()
    conn.send(("done", received, cpu_s, last))


def _drain(namesrv: str, expected: int, broker_pids: list[int], pull_batch: int, timeout_s: float,
           consumers: int) -> dict:
    """Drain with ``consumers`` processes of one group (each its share of the queues, as
    ``allocate_averagely`` splits them); bounded by ``timeout_s``."""
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    try:
        for _ in range(consumers):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_consumer_process, args=(namesrv, pull_batch, child_end), daemon=True)
            process.start()
            child_end.close()
            pipes.append(parent_end)
            processes.append(process)
        for pipe in pipes:
            if not pipe.poll(START_WAIT_S) or pipe.recv() != ("joined",):
                raise UserError("a drain consumer process did not join its group")
        broker_cpu_start = processes_cpu_s(broker_pids)
        begun = time.monotonic()
        for pipe in pipes:
            pipe.send(("go",))
        counts = [0] * consumers
        deadline = begun + timeout_s
        while sum(counts) < expected and time.monotonic() < deadline:
            for pipe in multiprocessing.connection.wait(pipes, timeout=0.5):
                message = pipe.recv()
                if message[0] == "progress":
                    counts[pipes.index(pipe)] = message[1]
        for pipe in pipes:
            pipe.send(("stop",))
        done = []
        for pipe in pipes:
            message = pipe.recv()
            while message[0] != "done":
                message = pipe.recv()
            done.append(message)
        broker_cpu_s = processes_cpu_s(broker_pids) - broker_cpu_start
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    received = sum(d[1] for d in done)
    lasts = [d[3] for d in done if d[3] is not None]
    elapsed = (max(lasts) if lasts else time.monotonic()) - begun
    client_cpu_s = sum(d[2] for d in done)
    return {"received_msgs": received, "drained": received >= expected, "drain_s": round(elapsed, 3),
            "drain_msgs_per_s": round(received / elapsed, 1) if elapsed > 0 else None,
            "broker_cpu_s": round(broker_cpu_s, 3), "client_cpu_s": round(client_cpu_s, 3),
            "broker_cpu_us_per_msg": us_per_msg(broker_cpu_s, received),
            "client_cpu_us_per_msg": us_per_msg(client_cpu_s, received),
            "consumer_processes": [{"received_msgs": d[1], "cpu_s": round(d[2], 3),
                                    "cpu_us_per_msg": us_per_msg(d[2], d[1]),
                                    "cpu_share_of_drain": round(d[2] / elapsed, 3) if elapsed > 0 else None}
                                   for d in done],
            "load_average_1m": round(os.getloadavg()[0], 2)}


def run(*, layout_name: str = "single", messages: int = 1_000_000, body_bytes: int = 128, queues: int = 4,
        pull_batch: int = 32, seed: int = 0, limits_budget_s: float = 4, timeout_s: float = 300,
        directory: str | None = None, consumers: int | None = None) -> dict:
    """Fill, then drain (module doc); returns the ``mqbench.bench-pull/1`` document. Raises
    ``UserError`` for an unknown layout or a cluster that does not start."""
    from mqbench.broker.layout import load_layout
    from mqbench.cluster import launcher
    from mqbench.cluster.control import ensure_topic, group_leader
    from mqbench.run.environment import free_port_offset

    if messages < 1:
        raise UserError("--messages must be at least 1")
    layout = load_layout(layout_name)
    consumers = default_consumers(queues, len(layout.instances)) if consumers is None else consumers
    if not 1 <= consumers <= queues:
        raise UserError(f"--consumers must be 1..{queues} (the queues), got {consumers}: a consumer without a "
                        "queue would receive nothing")
    group = layout.instances[0].group
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-pull-", dir=directory))
    body = payload(body_bytes, seed)
    try:
        limits = measure_limits(base, limits_budget_s, disk=False, loopback=True)
        cluster_dir = base / layout_name
        state = launcher.up(layout_name, cluster_dir, port_offset=free_port_offset(layout), wait_s=START_WAIT_S)
        try:
            namesrv = launcher.cluster_layout(state).namesrv_addr
            asyncio.run(ensure_topic(state, group, TOPIC, queues=queues))   # the queues the backlog fills
            asyncio.run(_first_send(namesrv, body))
            leader = asyncio.run(group_leader(state, group))
        finally:
            launcher.down(state, timeout_s=10)
        if leader is None:
            raise UserError(f"no leader of {group} answered")
        store_root = Path(state.processes[leader.name].workdir) / "store"
        fill_begun = time.monotonic()
        fill_store(store_root, messages=messages - 1, body=body, queues=queues)
        fill_s = time.monotonic() - fill_begun
        state = launcher.up(layout_name, cluster_dir, port_offset=state.port_offset, wait_s=START_WAIT_S)
        try:
            broker_pids = [r.pid for r in state.processes.values() if r.kind == "broker"]
            row = {"layout": layout_name, "replicas": len(layout.instances), "body_bytes": body_bytes,
                   "backlog_msgs": messages, "queues": queues, "pull_batch_msgs": pull_batch,
                   "consumers": consumers, "fill_s": round(fill_s, 3)}
            row.update(_drain(launcher.cluster_layout(state).namesrv_addr, messages, broker_pids,
                              pull_batch, timeout_s, consumers))
        finally:
            launcher.down(state, timeout_s=10)
        row["drain_ratio_to_loopback_frames"] = ratio(row["drain_msgs_per_s"], limits.get("loopback_small_frames_per_s"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return bench_document("pull", seed=seed, cpu_cores=os.cpu_count(), limits=limits, rows=[row])


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-pull/1`` document."""
    rows = [[r["layout"], f"{r['backlog_msgs']:,}", r["body_bytes"], r["pull_batch_msgs"], r.get("consumers", 1),
             fmt(r["fill_s"], ".1f"),
             f"{r['received_msgs']:,}" + ("" if r["drained"] else " (timed out)"), fmt(r["drain_msgs_per_s"]),
             fmt(r["broker_cpu_us_per_msg"], ",.1f"), fmt(r["client_cpu_us_per_msg"], ",.1f"),
             fmt_ratio(r["drain_ratio_to_loopback_frames"], 3), fmt(r.get("load_average_1m"), ".1f")]
            for r in doc["rows"]]
    head = (f"drain of a backlog by consumer processes of one group, {doc['cpu_cores']} cores shared by brokers and "
            f"consumers\n{limits_line(doc['limits'])}\n")
    per_process = [f"{r['layout']}: consumer processes (received, CPU µs/msg, share of a core over the drain): "
                   + "; ".join(f"{p['received_msgs']:,}, {fmt(p['cpu_us_per_msg'], ',.1f')}, "
                               f"{fmt(p['cpu_share_of_drain'], '.0%')}" for p in r["consumer_processes"])
                   for r in doc["rows"] if r.get("consumer_processes")]
    return head + table(rows, ["layout", "backlog", "body B", "pull batch", "consumers", "fill s", "received", "msgs/s",
                               "broker CPU µs/msg", "client CPU µs/msg", "msgs/s / loopback frames/s", "load 1m"]) + (
        "\n" + "\n".join(per_process) if per_process else "")
