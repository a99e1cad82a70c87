"""Replicated store throughput benchmark (a script, not a pytest module).

    .venv/bin/python tests/benchmarks/replicated_bench.py [--seconds 3] [--replicas 3]
        [--durability memory|fsync|both] [--concurrency 1,64] [--body-bytes 1024] [--json]

Puts per second of ``--body-bytes`` messages through one ``ReplicatedGroup`` of ``--replicas``
replicas, all in this process and one event loop (so all replicas share one core), over loopback
TCP and real store files in a temporary folder. ``--concurrency`` puts are kept in flight (each
put awaits its commit); puts that arrive while a Ready is being persisted share the next Ready (and
its fdatasync with ``fsync``). Every cell runs on a fresh group, for ``--seconds`` after a short
warm-up; latency figures are per put (submit to ack). ``cpu_ms_per_put`` is this process's CPU
time (all three replicas, worker threads included) per put: the figure that survives a machine
shared with other work, where puts/s does not.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.broker.store.record import Message

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


async def measure(replicas: int, durability: str, concurrency: int, seconds: float, body_bytes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mqbench-repl-bench-") as tmp:
        groups = await _open(Path(tmp), replicas, durability)
        try:
            async def leader():
                while True:
                    found = [g for g in groups if g.leader_ready]
                    if found:
                        return found[0]
                    await asyncio.sleep(0.01)
            lead = await asyncio.wait_for(leader(), 20)
            body = random.Random(7).randbytes(body_bytes)
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
                        latencies.append(time.perf_counter() - t0)

            tasks = [asyncio.ensure_future(worker(n)) for n in range(concurrency)]
            await asyncio.sleep(WARMUP_S)
            counting = True
            start = time.perf_counter()
            cpu0 = time.process_time()
            syncs0 = lead.store.group_commit.sync_count
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
            cpu_s = time.process_time() - cpu0
            latencies.sort()
            pick = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)
            return {"replicas": replicas, "durability": durability, "concurrency": concurrency,
                    "body_bytes": body_bytes, "puts": done, "elapsed_s": round(elapsed, 3),
                    "puts_per_s": round(done / elapsed, 1),
                    "mib_per_s": round(done * body_bytes / elapsed / (1 << 20), 2),
                    "latency_ms_p50": pick(0.5), "latency_ms_p99": pick(0.99),
                    "cpu_ms_per_put": round(cpu_s * 1000 / max(done, 1), 4),
                    "leader_fsyncs": lead.store.group_commit.sync_count - syncs0}
        finally:
            for g in groups:
                await g.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--durability", choices=["memory", "fsync", "both"], default="both")
    ap.add_argument("--concurrency", default="1,64")
    ap.add_argument("--body-bytes", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    modes = ["memory", "fsync"] if args.durability == "both" else [args.durability]
    try:
        levels = [int(x) for x in args.concurrency.split(",")]
    except ValueError:
        ap.error(f"--concurrency must be a comma-separated list of integers, not {args.concurrency!r}")
    if any(c < 1 for c in levels) or args.seconds <= 0 or args.replicas < 1 or args.body_bytes < 0:
        ap.error("concurrency, seconds and replicas must be positive, body bytes not negative")
    rows = [asyncio.run(measure(args.replicas, mode, c, args.seconds, args.body_bytes))
            for mode in modes for c in levels]
    if args.json:
        print(json.dumps({"schema": "mqbench.replicated-bench/1", "rows": rows}, indent=2))
    else:
        cols = ["durability", "concurrency", "puts_per_s", "mib_per_s", "latency_ms_p50", "latency_ms_p99",
                "cpu_ms_per_put", "leader_fsyncs"]
        print("  ".join(f"{c:>15}" for c in cols))
        for row in rows:
            print("  ".join(f"{row[c]!s:>15}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
