"""``mqbench bench raft-core``: entries per second through the sans-I/O Raft core alone.

One group of ``nodes`` ``RaftNode`` objects in one process, in-memory storage, messages handed over
at once (no network, no disk), every Ready processed in full (persist to ``MemoryStorage``, send,
apply, advance). The client proposes batches of ``batches`` entries of ``body_bytes`` (realistic
order JSON); a batch is proposed, then every node's work is drained until the leader has committed
it. The figure is an upper bound on what the core costs the broker per entry (all replicas' CPU on
one core), not a cluster throughput: ``cpu_us_per_entry`` is this process's CPU per committed entry.
The machine's loopback frame rate is measured in the same run; Raft messages/s are divided by it
(in a cluster every one of those messages crosses the transport).
"""
from __future__ import annotations

import random
import tempfile
import time
from collections import deque

from mqbench.bench.common import (bench_document, fmt_ratio, limits_line, measure_limits, own_cpu_s, payload, ratio,
                                  us_per_msg)
from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.types import Role
from mqbench.errors import InvariantViolation
from mqbench.output import table


def build(nodes: int, durability: Durability):
    ids = tuple(range(1, nodes + 1))
    storages = {i: MemoryStorage() for i in ids}
    group = {i: RaftNode(RaftConfig(i, ids, durability=durability), storages[i], random.Random(i)) for i in ids}
    return group, storages


def drain(group, storages, queue: deque) -> int:
    """Process Readies and deliver messages until the group is quiet; returns messages delivered."""
    delivered = 0
    busy = True
    while busy:
        busy = False
        for node_id, node in group.items():
            while node.has_ready():
                busy = True
                rd = node.ready()
                storage = storages[node_id]
                storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                queue.extend(rd.messages)
                node.advance(rd)
        while queue:
            busy = True
            m = queue.popleft()
            group[m.dst].step(m)
            delivered += 1
    return delivered


def measure(nodes: int, batch: int, seconds: float, durability: Durability, body: bytes) -> dict:
    group, storages = build(nodes, durability)
    queue: deque = deque()
    group[1].campaign()
    drain(group, storages, queue)
    leader = group[1]
    if leader.role != Role.LEADER:
        raise InvariantViolation("benchmark group did not elect node 1")
    payloads = [body] * batch
    entries = messages = 0
    cpu_start = own_cpu_s()
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        last = leader.propose_batch(payloads)[-1]
        messages += drain(group, storages, queue)
        if leader.log.committed < last:
            raise InvariantViolation(f"batch up to {last} not committed (commit {leader.log.committed})")
        entries += batch
    elapsed = time.perf_counter() - started
    cpu_s = own_cpu_s() - cpu_start
    return dict(nodes=nodes, batch_entries=batch, durability=durability.value, body_bytes=len(body),
                entries_per_s=round(entries / elapsed), raft_messages_per_s=round(messages / elapsed),
                body_mb_per_s=round(entries * len(body) / elapsed / 1e6, 1), measured_s=round(elapsed, 2),
                cpu_us_per_entry=us_per_msg(cpu_s, entries))


def run(*, nodes: int, batches: list[int], seconds: float, body_bytes: int, seed: int, limits_budget_s: float,
        progress=None) -> dict:
    """Every (durability, batch) cell; returns the ``mqbench.bench-raft-core/1`` document."""
    with tempfile.TemporaryDirectory(prefix="mqbench-bench-raft-core-") as tmp:
        limits = measure_limits(tmp, limits_budget_s, disk=False, loopback=True)
    body = payload(body_bytes, seed)
    cells = []
    for durability in (Durability.QUORUM_FSYNCED, Durability.QUORUM_MEMORY):
        for batch in batches:
            cell = measure(nodes, batch, seconds, durability, body)
            cell["raft_messages_ratio_to_loopback_frames"] = ratio(cell["raft_messages_per_s"],
                                                                   limits["loopback_small_frames_per_s"])
            cells.append(cell)
            if progress:
                progress(cell)
    return bench_document("raft-core", seed=seed, seconds_per_cell=seconds, limits=limits, cells=cells)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-raft-core/1`` document."""
    return limits_line(doc["limits"]) + "\n" + table(
        [(r["durability"], r["nodes"], r["batch_entries"], r["entries_per_s"], r["raft_messages_per_s"],
          r["body_mb_per_s"], r["cpu_us_per_entry"], fmt_ratio(r["raft_messages_ratio_to_loopback_frames"], 3))
         for r in doc["cells"]],
        ["durability", "nodes", "batch", "entries/s", "Raft messages/s", "body MB/s", "CPU µs/entry",
         "messages/s / loopback frames/s"])
