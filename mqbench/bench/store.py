"""``mqbench bench store``: the store's file layer against this disk's bandwidth.

Measures, in one run and on the disk holding the working folder:

* this machine's sequential write+fdatasync bandwidth (``mqbench.limits.measure_disk``), the
  denominator of every ratio printed;
* append throughput (messages/s, body MB/s, log MB/s) for each body size appended in batches of
  ``batch`` (``Store.append_batch``, one record per message) under the ``none``, ``interval:200ms``
  and ``sync`` flush policies, for ``seconds`` per cell; the store is closed (flushed) after each
  cell and that final flush is counted; then ``sync`` again with 4 writer threads (one queue each)
  whose waits share fdatasyncs (group commit);
* sequential read throughput (``read_queue`` of 32 messages from offset 0 to the end) of the
  ``none`` cell of 1 KiB bodies (else the first size), after the page cache of its files was
  dropped (``posix_fadvise`` DONTNEED), so the disk is read;
* recovery time of a commitlog of ``recovery_bytes`` (16 KiB bodies) with the abort file present:
  (a) a crash with the checkpoint intact (only the tail segment is validated) and (b) the
  checkpoint lost too (every segment validated and every consume queue rebuilt), cold cache.

Ratios are log MB/s divided by the measured write+fdatasync MB/s. ``cpu_us_per_msg`` is this
process's CPU (every thread) per message appended or read. Bodies are realistic order JSON.
Bounded: ``seconds`` per append cell (12 cells), the recovery build and two recoveries.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from mqbench.bench.common import (bench_document, drop_cache, fmt, fmt_ratio, measure_limits, own_cpu_s, payload, ratio,
                                  us_per_msg)
from mqbench.output import table

MB = 1_000_000
BODY_SIZES_DEFAULT = (100, 1024, 16 * 1024)
POLICIES = ("none", "interval:200ms", "sync")


def _append(root: Path, version: str, policy: str, body_bytes: int, batch: int, seconds: float, seed: int,
            writers: int = 1) -> dict:
    """``writers`` threads append at once (each waits for its own acknowledgement), so under
    ``sync`` their waits share fdatasyncs (group commit)."""
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.store.store import Store

    store = Store.open(root, version, create=True, flush_policy=policy)
    data = payload(body_bytes * batch, seed)
    items = [BatchItem(data[i * body_bytes:(i + 1) * body_bytes]) for i in range(batch)]
    counts = [[0, 0] for _ in range(writers)]
    cpu_start = own_cpu_s()
    start = time.perf_counter()
    deadline = start + seconds

    def write(slot: list[int], queue_id: int) -> None:
        while time.perf_counter() < deadline:
            r = store.append_batch("Bench", queue_id, items, consolidate=False)
            slot[0] += r.message_count
            slot[1] += r.size_bytes
    threads = [threading.Thread(target=write, args=(counts[i], i)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    syncs = store.group_commit.sync_count
    store.close()
    elapsed = time.perf_counter() - start
    cpu_s = own_cpu_s() - cpu_start
    messages = sum(c[0] for c in counts)
    log_bytes = sum(c[1] for c in counts)
    return {"messages": messages, "measured_s": round(elapsed, 3), "writers": writers, "fdatasyncs": syncs,
            "msgs_per_s": round(messages / elapsed, 1),
            "body_mb_per_s": round(messages * body_bytes / MB / elapsed, 2),
            "log_mb_per_s": round(log_bytes / MB / elapsed, 2), "cpu_us_per_msg": us_per_msg(cpu_s, messages)}


def _read(root: Path, version: str) -> dict:
    from mqbench.broker.store.store import Store

    drop_cache(root)
    store = Store.open(root, version, background_flush=False)
    offset, messages, body_bytes = 0, 0, 0
    cpu_start = own_cpu_s()
    start = time.perf_counter()
    while True:
        got = store.read_queue("Bench", 0, offset, max_messages=32, max_bytes=1 << 30)
        if not got.messages:
            break
        messages += len(got.messages)
        body_bytes += sum(len(m.body) for m in got.messages)
        offset = got.next_offset
    elapsed = time.perf_counter() - start
    cpu_s = own_cpu_s() - cpu_start
    log_bytes = store.log.end_offset - store.log.min_offset
    store.close()
    return {"messages": messages, "measured_s": round(elapsed, 3), "msgs_per_s": round(messages / elapsed, 1),
            "body_mb_per_s": round(body_bytes / MB / elapsed, 2), "log_mb_per_s": round(log_bytes / MB / elapsed, 2),
            "cpu_us_per_msg": us_per_msg(cpu_s, messages)}


def _recovery(root: Path, version: str, total_bytes: int, seed: int) -> list[dict]:
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.store.store import Store
    from mqbench.errors import InvariantViolation

    store = Store.open(root, version, create=True, flush_policy="none")
    body = payload(16 * 1024, seed)
    items = [BatchItem(body) for _ in range(64)]
    while True:  # at least one batch, however small the target
        store.append_batch("Bench", 0, items, consolidate=False)
        if store.log.end_offset >= total_bytes - 2 * len(body) * len(items):
            break
    store.close()
    log_bytes = store.log.end_offset
    out = []
    for case in ("checkpoint intact", "checkpoint lost"):
        if case == "checkpoint lost":
            os.unlink(root / "checkpoint")
        (root / "abort").write_text("1")
        drop_cache(root)
        start = time.perf_counter()
        store = Store.open(root, version, background_flush=False)
        elapsed = time.perf_counter() - start
        if not store.recovered_abnormally or store.log.end_offset != log_bytes:
            raise InvariantViolation(f"store recovery lost data: end {store.log.end_offset}, expected {log_bytes}")
        scanned = log_bytes - store.redispatched_from if case == "checkpoint lost" else None
        store.close()
        out.append({"case": case, "log_bytes": log_bytes, "recovery_s": round(elapsed, 4), "scanned_bytes": scanned,
                    "scanned_mb_per_s": round(scanned / MB / elapsed, 2) if scanned else None})
    return out


def run(*, version: str, batch: int, seconds: float, body_sizes: list[int], recovery_bytes: int, seed: int,
        limits_budget_s: float, directory: str | None = None, progress=None) -> dict:
    """Every append, read and recovery case; returns the ``mqbench.bench-store/1`` document."""
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-store-", dir=directory))
    try:
        limits = measure_limits(base, limits_budget_s, disk=True, loopback=False)
        bandwidth = limits["disk_write_fdatasync_mb_per_s"]
        read_size = 1024 if 1024 in body_sizes else body_sizes[0]
        results = []

        def add(row: dict) -> None:
            row["log_ratio_to_disk_write"] = ratio(row.get("log_mb_per_s") or row.get("scanned_mb_per_s"), bandwidth)
            results.append(row)
            if progress:
                progress(row)

        read_root = None
        for policy in POLICIES:
            for size in body_sizes:
                root = base / f"append-{policy.replace(':', '-')}-{size}"
                add({"kind": "append", "flush_policy": policy, "body_bytes": size,
                     **_append(root, version, policy, size, batch, seconds, seed)})
                if policy == "none" and size == read_size:
                    read_root = root
                else:
                    shutil.rmtree(root)
        for size in body_sizes:  # group commit: 4 writers waiting for sync at once
            root = base / f"append-sync4-{size}"
            add({"kind": "append, 4 writers", "flush_policy": "sync", "body_bytes": size,
                 **_append(root, version, "sync", size, batch, seconds, seed, writers=4)})
            shutil.rmtree(root)
        add({"kind": "sequential read (cold cache)", "flush_policy": None, "body_bytes": read_size,
             **_read(read_root, version)})
        shutil.rmtree(read_root)
        for rec in _recovery(base / "recovery", version, recovery_bytes, seed):
            add({"kind": f"recovery, {rec['case']}", "flush_policy": None, "body_bytes": 16 * 1024, **rec})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return bench_document("store", seed=seed, version=version, batch_msgs=batch, seconds_per_cell=seconds,
                          limits=limits, results=results)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-store/1`` document."""
    rows = []
    for r in doc["results"]:
        if r["kind"].startswith("recovery"):
            what = f"{r['kind']} ({r['log_bytes'] / MB:,.0f} MB log)"
            rows.append([what, "-", "-", f"{r['recovery_s']:.3f} s", "-", fmt(r["scanned_mb_per_s"], ",.1f"), "-",
                         fmt_ratio(r["log_ratio_to_disk_write"])])
            continue
        policy = r["flush_policy"] or "-"
        if r.get("writers", 1) > 1:
            policy += f" ({r['messages'] / doc['batch_msgs'] / max(1, r['fdatasyncs']):.1f} batches/fdatasync)"
        rows.append([r["kind"], policy, r["body_bytes"], r["msgs_per_s"], r["body_mb_per_s"], r["log_mb_per_s"],
                     fmt(r["cpu_us_per_msg"], ",.1f"), fmt_ratio(r["log_ratio_to_disk_write"])])
    limits = doc["limits"]
    head = (f"store {doc['version']}, batches of {doc['batch_msgs']}, {doc['seconds_per_cell']:g} s per append cell\n"
            f"disk (this run): write+fdatasync {limits['disk_write_fdatasync_mb_per_s']:,.1f} MB/s, "
            f"{limits['disk_fdatasync_per_s']:,.0f} fdatasync/s\n")
    return head + table(rows, ["what", "flush policy", "body B", "msgs/s (or time)", "body MB/s", "log MB/s",
                               "CPU µs/msg", "log MB/s / disk MB/s"])
