"""Raft core throughput benchmark (a script, not a pytest module).

    .venv/bin/python tests/benchmarks/raft_core_bench.py [--seconds 2] [--nodes 3] [--json]

Measures entries per second committed through the sans-I/O core alone: one group of ``--nodes``
``RaftNode`` objects in one process, in-memory storage, messages handed over at once (no network,
no disk), every Ready processed in full (persist to ``MemoryStorage``, send, apply, advance). The
client proposes batches of 1, 16 and 256 entries of 1 KiB; a batch is proposed, then every node's
work is drained until the leader has committed it. The figure is an upper bound on what the core
costs the broker per entry (all replicas' CPU on one core), not a cluster throughput.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections import deque

from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.types import Role


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


def measure(nodes: int, batch: int, seconds: float, durability: Durability, body_bytes: int = 1024) -> dict:
    group, storages = build(nodes, durability)
    queue: deque = deque()
    group[1].campaign()
    drain(group, storages, queue)
    leader = group[1]
    if leader.role != Role.LEADER:
        raise SystemExit("benchmark group did not elect node 1")
    body = bytes(random.Random(0).getrandbits(8) for _ in range(body_bytes))
    payloads = [body] * batch
    entries = messages = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        last = leader.propose_batch(payloads)[-1]
        messages += drain(group, storages, queue)
        if leader.log.committed < last:
            raise SystemExit(f"batch up to {last} not committed (commit {leader.log.committed})")
        entries += batch
    elapsed = time.perf_counter() - started
    return dict(nodes=nodes, batch_entries=batch, durability=durability.value, body_bytes=body_bytes,
                entries_per_s=round(entries / elapsed), messages_per_s=round(messages / elapsed),
                body_mb_per_s=round(entries * body_bytes / elapsed / 1e6, 1), seconds=round(elapsed, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(args.nodes, batch, args.seconds, durability)
            for durability in (Durability.QUORUM_FSYNCED, Durability.QUORUM_MEMORY) for batch in (1, 16, 256)]
    if args.json:
        print(json.dumps({"schema": "mqbench.raft-core-bench/1", "cells": rows}, indent=2))
        return
    from mqbench.output import table
    print(table([(r["durability"], r["nodes"], r["batch_entries"], r["entries_per_s"], r["messages_per_s"],
                  r["body_mb_per_s"]) for r in rows],
                headers=("durability", "nodes", "batch", "entries/s", "messages/s", "body MB/s")))


if __name__ == "__main__":
    main()
