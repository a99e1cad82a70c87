"""Migration benchmark (a script, not a pytest module).

    .venv/bin/python tests/benchmarks/migrate_bench.py [--dir DIR] [--size-bytes 2147483648]
        [--small-bytes 268435456] [--source v5-dledger] [--targets v5,v4] [--json]

Builds a source store of ``--size-bytes`` (``Store.append_batch``, 64 messages per batch, order
bodies from the ``orders`` workload's body model, 16 queues) and measures, on the disk holding ``--dir``:

* ``cp -r`` of the whole source store (the page cache dropped before, the copy fdatasynced after:
  ``sync -f``), the denominator of the ratio;
* ``mqbench migrate SRC --to T`` for each target (page cache dropped before; the migration
  fdatasyncs as it goes), as MB/s of source log bytes and as a ratio to ``cp``'s MB/s;
* the peak RSS of the migration process: each migration runs in a child process that reports
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` when done; the first target is also migrated from a
  store of ``--small-bytes`` so the two peaks show whether memory grows with the store.

Every migration is verified to have carried every message (record counts); ``--verify`` also runs
the full ``verify`` (a second, slower pass). The source and targets are deleted at the end.

    .venv/bin/python tests/benchmarks/migrate_bench.py --rolling [--rolling-to v4-dledger] [--port-offset 4780]

instead starts the ``raft3`` reference cluster (3 replica processes), sends and consumes numbered
messages throughout, runs the rolling upgrade (``migrate.rolling``) and prints, per replica, the
write unavailability (the longest time without an acknowledged send from its stop to the next
replica's stop; for the last one, to 3 s after it caught up, so a move back to the preferred leader
counts), its down time, and whether every acknowledged message was consumed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mqbench.broker.store.batch import BatchItem
from mqbench.broker.store.store import Store
from mqbench.output import table
from mqbench.workloads.bodies import iter_orders

from store_bench import drop_cache  # same folder: the benchmarks run as scripts

MB = 1_000_000
QUEUES = 16
BATCH = 64

CHILD = """
import json, resource, sys, time
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
t = time.perf_counter()
summary = migrate(sys.argv[1], sys.argv[2], Options(target=sys.argv[3]))
elapsed = time.perf_counter() - t
print(json.dumps({"elapsed_s": elapsed, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "records_in": summary["records_in"], "records_out": summary["records_out"],
                  "bytes_in": summary["bytes_in"]}))
"""


def bodies(count: int, seed: int = 7) -> list[bytes]:
    """Order bodies from the workloads' ``orders`` body model (realistic JSON, seeded)."""
    stream = iter_orders(random.Random(seed))
    return [next(stream) for _ in range(count)]


def build(root: Path, version: str, size_bytes: int) -> int:
    """A store of about ``size_bytes`` of log; returns the messages written."""
    pool = bodies(1024)
    store = Store.open(root, version, create=True, background_flush=False, clock_ms=lambda: 1_700_000_000_000)
    written = 0
    try:
        for t in range(QUEUES // 4):
            store.create_topic(f"orders-{t}", read_queue_nums=4, write_queue_nums=4)
        while store.log.end_offset < size_bytes:
            q = written // BATCH % QUEUES
            items = [BatchItem(pool[(written + i) % len(pool)], {"KEYS": f"k{written + i}", "TAGS": "paid"})
                     for i in range(BATCH)]
            store.append_batch(f"orders-{q % 4}", q // 4, items, consolidate=False)
            written += BATCH
            if written % (BATCH * 64) == 0:
                store.commit_offset("billing", f"orders-{q % 4}", q // 4, written // QUEUES)
    finally:
        store.close()
    return written


def du_bytes(root: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)


def time_cp(src: Path, dst: Path) -> float:
    drop_cache(src)
    t = time.perf_counter()
    subprocess.run(["cp", "-r", "--sparse=always", str(src), str(dst)], check=True)
    subprocess.run(["sync", "-f", str(dst)], check=True)
    elapsed = time.perf_counter() - t
    shutil.rmtree(dst)
    return elapsed


def run_migration(src: Path, dst: Path, target: str) -> dict:
    drop_cache(src)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), target], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"migration to {target} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rolling(args) -> None:
    import asyncio

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "migrate"))
    from migrate_traffic import gap_ms, replica_windows, traffic_during
    from mqbench.cluster import launcher
    from mqbench.migrate.rolling import rolling_upgrade

    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="migrate-rolling-", dir=args.dir))
    state = launcher.up("raft3", base / "cluster", port_offset=args.port_offset, wait_s=60)
    try:
        async def scenario():
            async def upgrade():
                return await rolling_upgrade(state, args.rolling_to, wait_s=60)
            return await traffic_during(state, "broker-a", upgrade)

        result = asyncio.run(scenario())
    finally:
        launcher.down(state, timeout_s=5)
        shutil.rmtree(base, ignore_errors=True)
    lost = sorted(set(result["acked"]) - result["consumed"])
    rows, items = [], []
    for s, (start, end) in zip(result["steps"], replica_windows(result["steps"], result["t0"])):
        gap = gap_ms(result["acked"], start, end)
        items.append({"instance": s.instance, "was_leader": s.was_leader, "write_unavailable_ms": round(gap),
                      "down_s": round(s.down_s, 2), "migration_s": round(s.migrated_s, 2)})
        rows.append((s.instance, "leader" if s.was_leader else "follower", round(gap), f"{s.down_s:.1f}",
                     f"{s.migrated_s:.1f}"))
    doc = {"schema": "mqbench.migrate-rolling-bench/1", "target_version": args.rolling_to, "replicas": items,
           "acked": len(result["acked"]), "lost": len(lost), "failed_sends_retried": result["failures"]}
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print(f"rolling upgrade of raft3 to {args.rolling_to}: {doc['acked']} messages acknowledged, {doc['lost']} lost, "
          f"{doc['failed_sends_retried']} failed sends retried")
    print(table(rows, ["replica", "role", "write unavailable ms", "down s", "migration s"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--size-bytes", type=int, default=2 << 30)
    ap.add_argument("--small-bytes", type=int, default=256 << 20)
    ap.add_argument("--source", default="v5-dledger")
    ap.add_argument("--targets", default="v5,v4")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rolling", action="store_true")
    ap.add_argument("--rolling-to", default="v4-dledger")
    ap.add_argument("--port-offset", type=int, default=4780)
    args = ap.parse_args()
    if args.rolling:
        rolling(args)
        return
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="migrate-bench-", dir=args.dir))
    rows, doc = [], {"schema": "mqbench.migrate-bench/1", "source_version": args.source,
                     "body_bytes_mean": round(sum(map(len, bodies(1024))) / 1024), "results": []}
    try:
        small = base / "small"
        build(small, args.source, args.small_bytes)
        src = base / "src"
        t = time.perf_counter()
        messages = build(src, args.source, args.size_bytes)
        doc["build_s"] = round(time.perf_counter() - t, 1)
        src_bytes = du_bytes(src)
        with Store.open(src, background_flush=False) as s:
            log_bytes = s.log.end_offset
        doc.update(messages=messages, source_log_bytes=log_bytes, source_file_bytes=src_bytes)
        cp_s = time_cp(src, base / "cp")
        cp_mb_s = log_bytes / MB / cp_s
        doc["cp_s"], doc["cp_mb_per_s"] = round(cp_s, 2), round(cp_mb_s, 1)
        first = args.targets.split(",")[0]
        small_run = run_migration(small, base / "small-out", first)
        shutil.rmtree(base / "small-out")
        doc["small_store_log_bytes"] = small_run["bytes_in"]
        doc["small_store_peak_rss_kib"] = small_run["peak_rss_kib"]
        for target in args.targets.split(","):
            out = base / f"out-{target}"
            res = run_migration(src, out, target)
            mb_s = log_bytes / MB / res["elapsed_s"]
            ok = res["records_out"] >= messages
            if args.verify:
                from mqbench.migrate.verify import verify
                ok = ok and verify(str(src), str(out))["ok"]
            item = {"target": target, "elapsed_s": round(res["elapsed_s"], 2), "migrate_mb_per_s": round(mb_s, 1),
                    "ratio_to_cp": round(mb_s / cp_mb_s, 3), "peak_rss_mib": round(res["peak_rss_kib"] / 1024, 1),
                    "records_out": res["records_out"], "carried_every_message": ok}
            doc["results"].append(item)
            rows.append((f"{args.source} -> {target}", item["elapsed_s"], item["migrate_mb_per_s"],
                         f"{item['ratio_to_cp']:.3f}", item["peak_rss_mib"], ok))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print(f"source: {args.source}, {doc['messages']} messages of {doc['body_bytes_mean']} B on average, log {doc['source_log_bytes'] / MB:,.0f} MB "
          f"(built in {doc['build_s']} s)")
    print(f"cp -r: {doc['cp_s']} s = {doc['cp_mb_per_s']} MB/s")
    print(f"peak RSS migrating a {doc['small_store_log_bytes'] / MB:,.0f} MB store: {doc['small_store_peak_rss_kib'] / 1024:.1f} MiB")
    print(table(rows, ["migration", "seconds", "MB/s", "ratio to cp", "peak RSS MiB", "all carried"]))


if __name__ == "__main__":
    main()
