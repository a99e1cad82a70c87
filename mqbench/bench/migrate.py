"""``mqbench bench migrate``: migration speed against ``cp -r``, and a rolling upgrade's write gaps.

Copy mode builds a source store of ``size_bytes`` (``Store.append_batch``, 64 messages per batch,
order bodies from the ``orders`` workload's body model, 16 queues) and measures, on the disk
holding the working folder:

* this disk's sequential write+fdatasync bandwidth (``mqbench.limits``), in the same run;
* ``cp -r`` of the whole source store (page cache dropped before, the copy ``sync -f``-ed after):
  the denominator of the ratio;
* ``mqbench migrate SRC --to T`` for each target (and each of ``jobs``, the migration's worker
  processes; None: its default) (page cache dropped before; the migration fdatasyncs as it goes),
  as MB/s of source log bytes, as ratios to ``cp``'s MB/s and to the disk's write bandwidth, and
  the migration's CPU per message (the child's user + system time plus its worker processes'),
  with the workers' part and the cores used on average (CPU time / elapsed: the parallel speed-up);
* the peak RSS of the migration (and of its largest worker): each runs in a child process that reports ``ru_maxrss``; the
  first target is also migrated from a store of ``small_bytes`` so the two peaks show whether
  memory grows with the store.

Every migration is checked to have carried every message (record counts); ``verify`` also runs the
full ``verify`` (a second, slower pass that decodes every message), timed on its own (``verify_s``,
``verify_mb_per_s``: source log MB per second of verify), never counted in the migration's MB/s. Everything written is deleted at the end.

Rolling mode (``rolling``) starts the ``raft3`` reference cluster (3 replica processes, free port
offset), sends and consumes numbered messages throughout, runs the rolling upgrade
(``migrate.rolling``) and reports per replica the write unavailability (the longest time without an
acknowledged send from its stop to the next replica's stop; for the last one, to 3 s after it
caught up), its down time, and whether every acknowledged message was consumed.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mqbench.bench.common import bench_document, drop_cache, fmt_ratio, limits_line, measure_limits, ratio, us_per_msg
from mqbench.errors import MqbenchError
from mqbench.output import table
from mqbench.broker.formats.properties import PROPERTY_KEYS, PROPERTY_TAGS

MB = 1_000_000
QUEUES = 16
BATCH = 64

CHILD = """
import json, resource, sys, time
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
t = time.perf_counter()
jobs = int(sys.argv[4]) if sys.argv[4] else None
summary = migrate(sys.argv[1], sys.argv[2], Options(target=sys.argv[3], jobs=jobs))
elapsed = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
workers = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"elapsed_s": elapsed, "peak_rss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "workers_cpu_s": workers.ru_utime + workers.ru_stime, "workers_peak_rss_kib": workers.ru_maxrss,
                  "records_in": summary["records_in"], "records_out": summary["records_out"],
                  "bytes_in": summary["bytes_in"]}))
"""


def bodies(count: int, seed: int) -> list[bytes]:
    """Order bodies from the workloads' ``orders`` body model (realistic JSON, seeded)."""
    from mqbench.workloads.bodies import iter_orders

    stream = iter_orders(random.Random(seed))
    return [next(stream) for _ in range(count)]


def build(root: Path, version: str, size_bytes: int, seed: int) -> int:
    """A store of about ``size_bytes`` of log; returns the messages written."""
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.store.store import Store

    pool = bodies(1024, seed)
    store = Store.open(root, version, create=True, background_flush=False, clock_ms=lambda: 1_700_000_000_000)
    written = 0
    try:
        for t in range(QUEUES // 4):
            store.create_topic(f"orders-{t}", read_queue_nums=4, write_queue_nums=4)
        while store.log.end_offset < size_bytes:
            q = written // BATCH % QUEUES
            items = [BatchItem(pool[(written + i) % len(pool)], {PROPERTY_KEYS: f"k{written + i}", PROPERTY_TAGS: "paid"})
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


def run_migration(src: Path, dst: Path, target: str, jobs: int | None = None) -> dict:
    """Migrate ``src`` to ``dst`` in a child process; its timing, peak RSS, CPU (its own and its
    worker processes') and record counts."""
    drop_cache(src)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), target, "" if jobs is None else str(jobs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise MqbenchError(f"migration to {target} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(*, source: str, targets: list[str], size_bytes: int, small_bytes: int, verify: bool, seed: int,
        limits_budget_s: float, directory: str | None = None, jobs: list[int | None] | None = None) -> dict:
    """Copy mode; returns the ``mqbench.bench-migrate/1`` document."""
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-migrate-", dir=directory))
    results = []
    try:
        limits = measure_limits(base, limits_budget_s, disk=True, loopback=False)
        small = base / "small"
        build(small, source, small_bytes, seed)
        src = base / "src"
        t = time.perf_counter()
        messages = build(src, source, size_bytes, seed)
        build_s = time.perf_counter() - t
        from mqbench.broker.store.store import Store

        with Store.open(src, background_flush=False) as s:
            log_bytes = s.log.end_offset
        src_bytes = du_bytes(src)
        cp_s = time_cp(src, base / "cp")
        cp_mb_s = log_bytes / MB / cp_s
        small_run = run_migration(small, base / "small-out", targets[0])
        shutil.rmtree(base / "small-out")
        for target, n_jobs in [(t, j) for t in targets for j in (jobs or [None])]:
            out = base / f"out-{target}"
            res = run_migration(src, out, target, n_jobs)
            mb_s = log_bytes / MB / res["elapsed_s"]
            ok = res["records_out"] >= messages
            checked = {}
            if verify:
                from mqbench.migrate.verify import verify as verify_stores

                drop_cache(src)
                drop_cache(out)
                t = time.perf_counter()
                ok = ok and verify_stores(str(src), str(out))["ok"]
                verify_s = time.perf_counter() - t
                checked = {"verify_s": round(verify_s, 3), "verify_mb_per_s": round(log_bytes / MB / verify_s, 1)}
            cpu_s = res["cpu_s"] + res["workers_cpu_s"]
            results.append({"target": target, "jobs": n_jobs, "elapsed_s": round(res["elapsed_s"], 3), **checked,
                            "migrate_mb_per_s": round(mb_s, 1), "ratio_to_cp": ratio(mb_s, cp_mb_s),
                            "ratio_to_disk_write": ratio(mb_s, limits["disk_write_fdatasync_mb_per_s"]),
                            "cpu_us_per_msg": us_per_msg(cpu_s, res["records_in"]),
                            "workers_cpu_us_per_msg": us_per_msg(res["workers_cpu_s"], res["records_in"]),
                            "cores_used": round(cpu_s / res["elapsed_s"], 2),
                            "peak_rss_mib": round(res["peak_rss_kib"] / 1024, 1),
                            "workers_peak_rss_mib": round(res["workers_peak_rss_kib"] / 1024, 1),
                            "records_out": res["records_out"],
                            "carried_every_message": ok})
            shutil.rmtree(out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return bench_document("migrate", seed=seed, source_version=source, limits=limits,
                          body_bytes_mean=round(sum(map(len, bodies(1024, seed))) / 1024), build_s=round(build_s, 1),
                          messages=messages, source_log_bytes=log_bytes, source_file_bytes=src_bytes,
                          cp_s=round(cp_s, 3), cp_mb_per_s=round(cp_mb_s, 1),
                          small_store_log_bytes=small_run["bytes_in"],
                          small_store_peak_rss_mib=round(small_run["peak_rss_kib"] / 1024, 1), results=results)


def native_line(doc: dict) -> str:
    """Which compiled accelerators the migrations used (``native``: MQBENCH_NATIVE=0 runs the
    Python code everywhere, so an A/B of the two is told apart in the table too)."""
    used = doc.get("native") or {}
    if not used:
        return "compiled accelerators: none listed"
    return "compiled accelerators: " + ", ".join(f"{name.removeprefix('mqbench.')} {'on' if on else 'off'}"
                                                 for name, on in sorted(used.items()))


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-migrate/1`` document."""
    rows = [(f"{doc['source_version']} -> {r['target']}", "default" if r.get("jobs") is None else r["jobs"],
             r["elapsed_s"], r["migrate_mb_per_s"], fmt_ratio(r["ratio_to_cp"], 3),
             fmt_ratio(r["ratio_to_disk_write"], 3), r["cpu_us_per_msg"], r.get("workers_cpu_us_per_msg", "-"),
             r.get("cores_used", "-"), r["peak_rss_mib"], r.get("workers_peak_rss_mib", "-"), r["carried_every_message"],
             r.get("verify_mb_per_s", "-")) for r in doc["results"]]
    return "\n".join([
        f"source: {doc['source_version']}, {doc['messages']} messages of {doc['body_bytes_mean']} B on average, "
        f"log {doc['source_log_bytes'] / MB:,.0f} MB (built in {doc['build_s']} s)",
        limits_line(doc["limits"]),
        f"cp -r: {doc['cp_s']} s = {doc['cp_mb_per_s']} MB/s",
        native_line(doc),
        f"peak RSS migrating a {doc['small_store_log_bytes'] / MB:,.0f} MB store: "
        f"{doc['small_store_peak_rss_mib']} MiB",
        table(rows, ["migration", "jobs", "seconds", "MB/s", "MB/s / cp MB/s", "MB/s / disk MB/s", "CPU µs/msg",
                     "of it workers", "cores used", "peak RSS MiB", "worker RSS MiB", "all carried", "verify MB/s"])])


def run_rolling(*, target: str, limits_budget_s: float, directory: str | None = None) -> dict:
    """Rolling mode; returns the ``mqbench.bench-migrate-rolling/1`` document."""
    import asyncio

    from mqbench.bench.traffic import gap_ms, replica_windows, traffic_during
    from mqbench.broker.layout import load_layout
    from mqbench.cluster import launcher
    from mqbench.migrate.rolling import rolling_upgrade
    from mqbench.run.environment import free_port_offset

    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-rolling-", dir=directory))
    try:
        limits = measure_limits(base, limits_budget_s, disk=True, loopback=True)
        state = launcher.up("raft3", base / "cluster", port_offset=free_port_offset(load_layout("raft3")), wait_s=60)
        try:
            async def scenario():
                async def upgrade():
                    return await rolling_upgrade(state, target, wait_s=60)
                return await traffic_during(state, "broker-a", upgrade)

            result = asyncio.run(scenario())
        finally:
            launcher.down(state, timeout_s=5)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lost = sorted(set(result["acked"]) - result["consumed"])
    replicas = []
    for s, (start, end) in zip(result["steps"], replica_windows(result["steps"], result["t0"])):
        replicas.append({"instance": s.instance, "was_leader": s.was_leader,
                         "write_unavailable_ms": round(gap_ms(result["acked"], start, end)),
                         "down_s": round(s.down_s, 2), "migration_s": round(s.migrated_s, 2)})
    return bench_document("migrate-rolling", target_version=target, limits=limits, replicas=replicas,
                          acked_msgs=len(result["acked"]), lost_msgs=len(lost),
                          failed_sends_retried=result["failures"])


def render_rolling(doc: dict) -> str:
    rows = [(r["instance"], "leader" if r["was_leader"] else "follower", r["write_unavailable_ms"], r["down_s"],
             r["migration_s"]) for r in doc["replicas"]]
    return "\n".join([
        f"rolling upgrade of raft3 to {doc['target_version']}: {doc['acked_msgs']} messages acknowledged, "
        f"{doc['lost_msgs']} lost, {doc['failed_sends_retried']} failed sends retried",
        limits_line(doc["limits"]),
        table(rows, ["replica", "role", "write unavailable ms", "down s", "migration s"])])
