"""Store file-layer benchmark (a script, not a pytest module).

    .venv/bin/python tests/benchmarks/store_bench.py [--dir DIR] [--seconds 2] [--batch 32]
        [--version v5] [--recovery-bytes 1073741824] [--json]

Measures, in one run and on the disk holding ``--dir``:

* this machine's sequential write+fdatasync bandwidth (``mqbench.limits.measure_disk``), the
  denominator of every ratio printed;
* append throughput (messages/s and body MB/s) for 100 B, 1 KiB and 16 KiB bodies appended in
  batches of ``--batch`` (``Store.append_batch``, one record per message) under the ``none``,
  ``interval:200ms`` and ``sync`` flush policies, for ``--seconds`` per cell; the store is closed
  (flushed) after each cell, and that final flush is counted in the time; then ``sync`` again with
  4 writer threads (one queue each) whose waits share fdatasyncs (group commit);
* sequential read throughput (``read_queue`` of 32 messages from offset 0 to the end) of the
  1 KiB/``none`` cell's data, after the page cache of its files was dropped (``posix_fadvise``
  DONTNEED), so the disk is read;
* recovery time of a commitlog of ``--recovery-bytes`` (default 1 GiB, 16 KiB bodies) with the abort
  file present: (a) a crash with the checkpoint intact (only the tail segment is validated) and
  (b) the checkpoint lost too (every segment validated by magic/size/CRC and every consume queue
  rebuilt), both with a cold page cache.

Ratios are MB/s (of log bytes) divided by the measured write+fdatasync MB/s; for recovery, the
scanned MB/s divided by the same. Every run is bounded: about 20 s of appends, the recovery
build (about 1 GiB of writes) and two recoveries.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from mqbench.broker.store.batch import BatchItem
from mqbench.broker.store.store import Store
from mqbench.limits import measure_disk
from mqbench.output import table

MB = 1_000_000
BODY_SIZES = (100, 1024, 16 * 1024)
POLICIES = ("none", "interval:200ms", "sync")


def drop_cache(root: Path) -> None:
    """Ask the kernel to forget the cached pages of every file under ``root`` (clean pages only)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def bench_append(root: Path, version: str, policy: str, body_bytes: int, batch: int, seconds: float,
                 writers: int = 1) -> dict:
    """``writers`` threads append at once (each waits for its own acknowledgement), so under
    ``sync`` their waits share fdatasyncs (group commit)."""
    store = Store.open(root, version, create=True, flush_policy=policy)
    payload = os.urandom(body_bytes * batch)
    items = [BatchItem(payload[i * body_bytes:(i + 1) * body_bytes]) for i in range(batch)]
    counts = [[0, 0] for _ in range(writers)]
    start = time.perf_counter()
    deadline = start + seconds

    def run(slot: list[int], queue_id: int) -> None:
        while time.perf_counter() < deadline:
            r = store.append_batch("Bench", queue_id, items, consolidate=False)
            slot[0] += r.message_count
            slot[1] += r.size_bytes
    threads = [threading.Thread(target=run, args=(counts[i], i)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    syncs = store.group_commit.sync_count
    store.close()
    elapsed = time.perf_counter() - start
    messages = sum(c[0] for c in counts)
    log_bytes = sum(c[1] for c in counts)
    return {"messages": messages, "seconds": elapsed, "writers": writers, "fdatasyncs": syncs,
            "msgs_per_s": messages / elapsed, "body_mb_per_s": messages * body_bytes / MB / elapsed,
            "log_mb_per_s": log_bytes / MB / elapsed}


def bench_read(root: Path, version: str) -> dict:
    drop_cache(root)
    store = Store.open(root, version, background_flush=False)
    offset, messages, body_bytes = 0, 0, 0
    start = time.perf_counter()
    while True:
        got = store.read_queue("Bench", 0, offset, max_messages=32, max_bytes=1 << 30)
        if not got.messages:
            break
        messages += len(got.messages)
        body_bytes += sum(len(m.body) for m in got.messages)
        offset = got.next_offset
    elapsed = time.perf_counter() - start
    log_bytes = store.log.end_offset - store.log.min_offset
    store.close()
    return {"messages": messages, "seconds": elapsed, "msgs_per_s": messages / elapsed,
            "body_mb_per_s": body_bytes / MB / elapsed, "log_mb_per_s": log_bytes / MB / elapsed}


def bench_recovery(root: Path, version: str, total_bytes: int) -> list[dict]:
    store = Store.open(root, version, create=True, flush_policy="none")
    body = os.urandom(16 * 1024)
    items = [BatchItem(body) for _ in range(64)]
    while store.log.end_offset < total_bytes - 2 * len(body) * len(items):
        store.append_batch("Bench", 0, items, consolidate=False)
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
            raise SystemExit(f"recovery lost data: end {store.log.end_offset}, expected {log_bytes}")
        scanned = log_bytes - store.redispatched_from if case == "checkpoint lost" else None
        store.close()
        out.append({"case": case, "log_bytes": log_bytes, "seconds": elapsed, "scanned_bytes": scanned})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp folder)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per append cell")
    ap.add_argument("--batch", type=int, default=32, help="messages per append_batch call")
    ap.add_argument("--version", default="v5", choices=["v4", "v5", "v4-dledger", "v5-dledger"])
    ap.add_argument("--recovery-bytes", type=int, default=1 << 30)
    ap.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mqbench-store-bench-", dir=args.dir))
    try:
        disk = measure_disk(base)
        bw = disk["disk_write_fdatasync_mb_per_s"]
        rows, doc_rows = [], []
        for policy in POLICIES:
            for size in BODY_SIZES:
                root = base / f"append-{policy.replace(':', '-')}-{size}"
                r = bench_append(root, args.version, policy, size, args.batch, args.seconds)
                doc_rows.append({"kind": "append", "flush_policy": policy, "body_bytes": size, **r})
                rows.append(["append", policy, size, r["msgs_per_s"], r["body_mb_per_s"], r["log_mb_per_s"],
                             f"{r['log_mb_per_s'] / bw:.2f}x"])
                if policy == "none" and size == 1024:
                    read_root = root
                else:
                    shutil.rmtree(root)
        for size in BODY_SIZES:      # group commit: 4 writers waiting for sync at once
            root = base / f"append-sync4-{size}"
            r = bench_append(root, args.version, "sync", size, args.batch, args.seconds, writers=4)
            shutil.rmtree(root)
            doc_rows.append({"kind": "append", "flush_policy": "sync", "body_bytes": size, **r})
            rows.append(["append, 4 writers", f"sync ({r['messages'] / args.batch / max(1, r['fdatasyncs']):.1f} "
                         "batches/fdatasync)", size, r["msgs_per_s"], r["body_mb_per_s"], r["log_mb_per_s"],
                         f"{r['log_mb_per_s'] / bw:.2f}x"])
        r = bench_read(read_root, args.version)
        shutil.rmtree(read_root)
        doc_rows.append({"kind": "sequential read", "body_bytes": 1024, **r})
        rows.append(["sequential read (cold cache)", "-", 1024, r["msgs_per_s"], r["body_mb_per_s"],
                     r["log_mb_per_s"], f"{r['log_mb_per_s'] / bw:.2f}x"])
        for rec in bench_recovery(base / "recovery", args.version, args.recovery_bytes):
            doc_rows.append({"kind": "recovery", **rec})
            scanned = rec["scanned_bytes"] if rec["scanned_bytes"] is not None else None
            mbps = scanned / MB / rec["seconds"] if scanned else None
            rows.append([f"recovery, {rec['case']} ({rec['log_bytes'] / (1 << 30):.2f} GiB log)", "-", "-",
                         f"{rec['seconds']:.3f} s", "-", mbps if mbps else "-",
                         f"{mbps / bw:.2f}x" if mbps else "-"])
        if args.json:
            print(json.dumps({"schema": "mqbench.store_bench/1", "version": args.version, "batch": args.batch,
                              "disk": disk, "results": doc_rows}, indent=2))
            return
        print(f"store {args.version}, batches of {args.batch}, {args.seconds:g} s per append cell, dir {base}")
        print(f"disk: write+fdatasync {bw:,.1f} MB/s, {disk['disk_fdatasync_per_s']:,.0f} fdatasync/s")
        print(table(rows, ["what", "flush policy", "body B", "msgs/s (or time)", "body MB/s", "log MB/s",
                           "log MB/s / disk MB/s"]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
