"""``mqbench bench replicated``: puts through one in-process Raft group (``ReplicatedGroup``).

Puts per second of ``body_bytes`` messages through one ``ReplicatedGroup`` of ``replicas``
replicas, all in this process and one event loop (so all replicas share one core), over loopback
TCP and real store files in a temporary folder. ``concurrency`` puts are kept in flight (each put
awaits its commit); puts that arrive while a Ready is being persisted share the next Ready (and its
fdatasync with ``fsync``). Every cell runs on a fresh group, for ``seconds`` after a short warm-up;
latency figures are per put (submit to ack). ``cpu_us_per_msg`` is this process's CPU time (all
replicas, worker threads included) per put: the figure that survives a machine shared with other
work, where puts/s does not. Bodies are realistic order JSON (seeded). The machine's loopback frame
rate and fdatasync rate are measured first in the same run; puts/s are divided by them.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

from mqbench.bench.common import (bench_document, fmt, fmt_ratio, limits_line, measure_limits, own_cpu_s, payload,
                                  percentile, ratio, us_per_msg)
from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.output import table

WARMUP_S = 0.5


async def _open(root: Path, replicas: int, durability: str) -> list[ReplicatedGroup]:
    ids = list(range(1, replicas + 1))
    addresses = {i: ("127.0.0.1", 0) for i in ids}
    groups = []
    for i in ids:
        g = await ReplicatedGroup.open(root / f"n{i - 1}", self_id=i, peers=dict(addresses), durability=durability,
                                       rng=random.Random(i), tick_ms=20, heartbeat_ms=40, election_ms=400,
                                       commitlog_segment_bytes=256 << 20)
        addresses[i] = g.raft_address
        groups.append(g)
    for g in groups:
        for j, address in addresses.items():
            if j != g.self_id:
                g.set_peer_address(j, address)
    return groups


async def _measure(root: Path, replicas: int, durability: str, concurrency: int, seconds: float,
                   body: bytes) -> dict:
    from mqbench.broker.formats.record import Message

    groups = await _open(root, replicas, durability)
    try:
        async def leader():
            while True:
                found = [g for g in groups if g.leader_ready]
                if found:
                    return found[0]
                await asyncio.sleep(0.01)
        lead = await asyncio.wait_for(leader(), 20)
        latencies: list[float] = []
        counting = False
        done = 0
        stop_at = time.perf_counter() + WARMUP_S + seconds

        async def worker(n: int):
            nonlocal done
            q = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await lead.put(Message(topic="Bench", body=body, queue_id=(n + q) % 8))
                q += 1
                if counting:
                    done += 1
                    latencies.append((time.perf_counter() - t0) * 1000)

        tasks = [asyncio.ensure_future(worker(n)) for n in range(concurrency)]
        await asyncio.sleep(WARMUP_S)
        counting = True
        start = time.perf_counter()
        cpu0 = own_cpu_s()
        syncs0 = lead.store.group_commit.sync_count
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        cpu_s = own_cpu_s() - cpu0
        latencies.sort()
        return {"replicas": replicas, "durability": durability, "concurrency": concurrency,
                "body_bytes": len(body), "acked_msgs": done, "measured_s": round(elapsed, 3),
                "puts_per_s": round(done / elapsed, 1),
                "body_mb_per_s": round(done * len(body) / elapsed / 1e6, 2),
                "latency_ms_p50": round(percentile(latencies, 0.5), 3),
                "latency_ms_p99": round(percentile(latencies, 0.99), 3),
                "cpu_us_per_msg": us_per_msg(cpu_s, done),
                "leader_fdatasyncs": lead.store.group_commit.sync_count - syncs0}
    finally:
        for g in groups:
            await g.close()


def run(*, replicas: int, durabilities: list[str], concurrencies: list[int], seconds: float, body_bytes: int,
        seed: int, limits_budget_s: float, directory: str | None = None, progress=None) -> dict:
    """Every (durability, concurrency) cell on a fresh group; the ``mqbench.bench-replicated/1`` document."""
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-replicated-", dir=directory))
    rows = []
    try:
        limits = measure_limits(base, limits_budget_s, disk="fsync" in durabilities, loopback=True)
        body = payload(body_bytes, seed)
        for i, durability in enumerate(durabilities):
            for j, concurrency in enumerate(concurrencies):
                row = asyncio.run(_measure(base / f"cell{i}-{j}", replicas, durability, concurrency, seconds, body))
                row["puts_ratio_to_loopback_frames"] = ratio(row["puts_per_s"], limits["loopback_small_frames_per_s"])
                row["puts_ratio_to_fdatasyncs"] = (ratio(row["puts_per_s"], limits["disk_fdatasync_per_s"])
                                                   if durability == "fsync" else None)
                rows.append(row)
                if progress:
                    progress(row)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return bench_document("replicated", seed=seed, seconds_per_cell=seconds, warmup_s=WARMUP_S, limits=limits,
                          rows=rows)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-replicated/1`` document."""
    rows = [[r["replicas"], r["durability"], r["concurrency"], r["puts_per_s"], r["body_mb_per_s"],
             fmt(r["latency_ms_p50"], ".2f"), fmt(r["latency_ms_p99"], ".2f"), fmt(r["cpu_us_per_msg"], ",.1f"),
             r["leader_fdatasyncs"], fmt_ratio(r["puts_ratio_to_loopback_frames"], 3),
             fmt_ratio(r["puts_ratio_to_fdatasyncs"])] for r in doc["rows"]]
    return limits_line(doc["limits"]) + "\n" + table(
        rows, ["replicas", "durability", "in flight", "puts/s", "body MB/s", "p50 ms", "p99 ms", "CPU µs/put",
               "leader fdatasyncs", "puts/s / loopback frames/s", "puts/s / fdatasyncs/s"])
