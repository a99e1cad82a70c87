"""Broker send benchmark against real broker processes (a script, not a pytest module).

    .venv/bin/python tests/benchmarks/broker_send_bench.py [--seconds 3] [--layouts single,raft3]
        [--batch 1,64] [--concurrency 16] [--durability memory|fsync] [--body-bytes 1024] [--json]

For every layout, ``mqbench.cluster.launcher.up`` starts the name server and the broker processes
(one per replica) in a temporary folder, on a free port offset; this process creates a topic of 4
queues and runs ``--concurrency`` sender tasks of mqbench's own Producer (one connection, one event
loop: the client shares the machine's cores with the brokers), each sending ``--body-bytes``
messages one at a time (batch 1: SEND_MESSAGE_V2) or as SEND_BATCH_MESSAGE of ``--batch`` messages,
closed loop, for ``--seconds`` after a 0.5 s warm-up. Reported per cell: acknowledged messages per
second, requests per second, and per-request latency (submit to acknowledgement) p50/p99/max in ms.
An acknowledgement means committed by the group's quorum (durability as given). Then ``down``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

from mqbench.broker.layout import load_layout
from mqbench.broker.server.admin import create_topic
from mqbench.client import OutgoingMessage, Producer
from mqbench.cluster import launcher

WARMUP_S = 0.5
TOPIC = "BenchSend"


def free_offset(layout_name: str) -> int:
    layout = load_layout(layout_name)
    rng = random.Random()
    for _ in range(200):
        offset = rng.randrange(2000, 40000, 10)
        wanted = [(layout.hosts[layout.namesrv_host], layout.namesrv_port + offset)]
        wanted += [(i.address, p + offset) for i in layout.instances for p in (i.port, i.raft_port)]
        ok = True
        for address, port in wanted:
            with socket.socket() as s:
                try:
                    s.bind((address, port))
                except OSError:
                    ok = False
        if ok:
            return offset
    raise SystemExit("no free port offset found")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run_cell(namesrv: str, batch: int, concurrency: int, seconds: float, body_bytes: int) -> dict:
    body = random.Random(11).randbytes(body_bytes)
    latencies_ms: list[float] = []
    messages = requests = 0
    counting = False
    stop_at = time.monotonic() + WARMUP_S + seconds
    async with Producer(namesrv, "PID_bench", send_timeout_ms=10_000) as producer:
        await producer.send(OutgoingMessage(TOPIC, body))       # route lookup and connection outside the clock

        async def sender() -> None:
            nonlocal messages, requests
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                if batch == 1:
                    await producer.send(OutgoingMessage(TOPIC, body))
                else:
                    await producer.send_batch([OutgoingMessage(TOPIC, body) for _ in range(batch)])
                if counting:
                    latencies_ms.append((time.perf_counter() - started) * 1000)
                    messages += batch
                    requests += 1

        tasks = [asyncio.ensure_future(sender()) for _ in range(concurrency)]
        await asyncio.sleep(WARMUP_S)
        counting = True
        begun = time.monotonic()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - begun
    latencies_ms.sort()
    return {"batch": batch, "concurrency": concurrency, "messages": messages, "seconds": round(elapsed, 3),
            "throughput_msgs_per_s": round(messages / elapsed, 1), "requests_per_s": round(requests / elapsed, 1),
            "latency_ms_p50": round(percentile(latencies_ms, 0.50), 2),
            "latency_ms_p99": round(percentile(latencies_ms, 0.99), 2),
            "latency_ms_max": round(latencies_ms[-1], 2) if latencies_ms else None}


async def prepare(state) -> str:
    layout = launcher.cluster_layout(state)
    leader = next(r for r in await launcher.status_async(state, 2.0) if r.role == "leader")
    await create_topic(leader.addr, TOPIC, queues=4)
    deadline = time.monotonic() + 30
    async with Producer(layout.namesrv_addr, "PID_probe") as producer:
        while True:   # the topic is routed after the leader's next registration
            try:
                await producer.send(OutgoingMessage(TOPIC, b"probe"))
                return layout.namesrv_addr
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--layouts", default="single,raft3")
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--durability", choices=["memory", "fsync"], default="memory")
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for layout_name in [x for x in args.layouts.split(",") if x]:
        with tempfile.TemporaryDirectory(prefix="mqbench-send-bench-") as tmp:
            state = launcher.up(layout_name, Path(tmp), port_offset=free_offset(layout_name),
                                durability=args.durability, wait_s=60)
            try:
                namesrv = asyncio.run(prepare(state))
                for batch in [int(x) for x in args.batch.split(",") if x]:
                    row = asyncio.run(run_cell(namesrv, batch, args.concurrency, args.seconds, args.body_bytes))
                    row.update(layout=layout_name, replicas=len(load_layout(layout_name).instances),
                               durability=args.durability, body_bytes=args.body_bytes)
                    rows.append(row)
                    if not args.json:
                        print(f"{layout_name:8} batch {batch:3}  {row['throughput_msgs_per_s']:>9} msgs/s  "
                              f"{row['requests_per_s']:>8} req/s  p50 {row['latency_ms_p50']:>7} ms  "
                              f"p99 {row['latency_ms_p99']:>7} ms  ({row['messages']} msgs in {row['seconds']} s)",
                              flush=True)
            finally:
                launcher.down(state, timeout_s=10)
    if args.json:
        json.dump({"schema": "mqbench.broker-send-bench/1", "rows": rows}, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
